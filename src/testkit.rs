//! Deterministic test messages shared by the test suite and the `ringwire __peer` test modes: message
//! `seq` has a length and content derived from `seq` alone, so a receiver in another process can check
//! every byte (and notice a torn, duplicated, reordered or lost message) without being told anything.

/// Length of message `seq` in a stream whose messages are at most `max` bytes.
pub fn len_for(seq: u64, max: usize) -> usize {
    let h = seq.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(29);
    // Mostly small, sometimes up to the maximum: both the common case and the wrap paths get traffic.
    match h % 8 {
        0 => (h >> 8) as usize % (max + 1),
        _ => (h >> 8) as usize % (max.min(256) + 1),
    }
}

/// Writes message `seq` into `buf` (whose length is the message length): the sequence number in the
/// first 8 bytes (as many as fit), then a xorshift stream seeded by `seq` and the length.
pub fn fill(buf: &mut [u8], seq: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    let mut x = seq ^ (buf.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in &mut buf[n..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// Message `seq` as a vector.
pub fn message(seq: u64, max: usize) -> Vec<u8> {
    let mut v = vec![0; len_for(seq, max)];
    fill(&mut v, seq);
    v
}

/// The sequence number a message claims to be (from its first bytes), if it is long enough to say.
pub fn seq_of(msg: &[u8]) -> Option<u64> {
    (msg.len() >= 8).then(|| u64::from_le_bytes(msg[..8].try_into().expect("8 bytes")))
}

/// Whether `msg` is exactly message `seq` of a stream with maximum `max`.
pub fn check(msg: &[u8], seq: u64, max: usize) -> bool {
    if msg.len() != len_for(seq, max) {
        return false;
    }
    let mut want = vec![0; msg.len()];
    fill(&mut want, seq);
    want == msg
}

/// Connecting to a `ringwire __peer <role>-<adapter>` process over one transport adapter: the one place
/// that knows how each adapter's peer is started and reached. Used by the conformance tests, `ringwire
/// bench` and the criterion benches.
#[cfg(not(ringwire_loom))]
pub mod peers {
    use crate::sync::{AtomicU32, Ordering};
    use crate::transport::{fork, pipe, shm, stdio, tcp, udp, unix, Receiver, Sender};
    use std::io;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// How long a UDP peer may take to announce its address.
    const HELLO: Duration = Duration::from_secs(30);

    /// The adapters a peer can be reached over (`fifo` is the named-pipe adapter).
    pub const ADAPTERS: &[&str] = &["stdio", "fork", "fifo", "unix", "unix-abstract", "tcp", "udp", "shm"];

    /// The peer's process; a plain child is killed and reaped on drop (a `ChildProcess` does that itself).
    pub enum PeerProcess {
        /// Started by the stdio or fork adapter.
        Ours(stdio::ChildProcess),
        /// Started here, reached over a socket, FIFO or ring.
        Std(Child),
    }

    impl PeerProcess {
        /// Kills the peer (SIGKILL) and reaps it.
        pub fn kill(&mut self) {
            match self {
                PeerProcess::Ours(c) => {
                    let _ = c.kill();
                }
                PeerProcess::Std(c) => {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }

        /// Waits for the peer to exit; `None` if it is still running at `deadline` (a plain child is
        /// waited for without a deadline).
        pub fn wait_success(&mut self, deadline: Instant) -> io::Result<Option<bool>> {
            match self {
                PeerProcess::Ours(c) => Ok(c.wait_deadline(deadline)?.map(|s| s.success())),
                PeerProcess::Std(c) => Ok(Some(c.wait()?.success())),
            }
        }
    }

    impl Drop for PeerProcess {
        fn drop(&mut self) {
            if let PeerProcess::Std(c) = self {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// A transport connected to a peer process.
    pub struct PeerConn {
        /// Our sending half.
        pub tx: Box<dyn Sender>,
        /// Our receiving half.
        pub rx: Box<dyn Receiver>,
        /// The peer.
        pub peer: PeerProcess,
        /// UDP: no clean close, no connection to lose.
        pub datagram: bool,
    }

    fn unique(tag: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!("ringwire-peer-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
    }

    fn path_str(p: &std::path::Path) -> io::Result<&str> {
        p.to_str().ok_or_else(|| io::Error::other("temporary directory is not UTF-8"))
    }

    /// Starts `cmd` (a `ringwire __peer <role>-<adapter> ...` command line, without `--addr`) and connects
    /// to it over `adapter` (one of [`ADAPTERS`]), adding the `--addr` the adapter needs.
    pub fn connect(mut cmd: Command, adapter: &str) -> io::Result<PeerConn> {
        let conn = |tx: Box<dyn Sender>, rx: Box<dyn Receiver>, peer| PeerConn { tx, rx, peer, datagram: false };
        let spawn_at = |cmd: &mut Command, addr: &str| -> io::Result<PeerProcess> {
            Ok(PeerProcess::Std(cmd.args(["--addr", addr]).stdin(Stdio::null()).spawn()?))
        };
        Ok(match adapter {
            "stdio" => {
                let (tx, rx, child) = stdio::spawn(&mut cmd)?;
                conn(Box::new(tx), Box::new(rx), PeerProcess::Ours(child))
            }
            "fork" => {
                let (tx, rx, child) = fork::spawn(cmd.stdin(Stdio::null()))?;
                conn(Box::new(tx), Box::new(rx), PeerProcess::Ours(child))
            }
            "fifo" => {
                let dir = std::env::temp_dir().join(unique("fifo"));
                std::fs::create_dir(&dir)?;
                pipe::create_fifo(dir.join("down"))?;
                pipe::create_fifo(dir.join("up"))?;
                let peer = spawn_at(&mut cmd, path_str(&dir)?)?;
                // The peer opens down for reading, then up for writing: the same order here.
                let tx = pipe::open_fifo_sender(dir.join("down"))?;
                let rx = pipe::open_fifo_receiver(dir.join("up"))?;
                std::fs::remove_dir_all(&dir)?; // open FIFOs outlive their names
                conn(Box::new(tx), Box::new(rx), peer)
            }
            "unix" => {
                let path = std::env::temp_dir().join(unique("sock"));
                let listener = unix::Listener::bind(&path)?;
                let peer = spawn_at(&mut cmd, path_str(&path)?)?;
                let (tx, rx) = listener.accept()?;
                conn(Box::new(tx), Box::new(rx), peer)
            }
            "unix-abstract" => {
                let name = unique("abstract");
                let listener = unix::Listener::bind_abstract(name.as_bytes())?;
                let peer = spawn_at(&mut cmd, &name)?;
                let (tx, rx) = listener.accept()?;
                conn(Box::new(tx), Box::new(rx), peer)
            }
            "tcp" => {
                let listener = tcp::Listener::bind("127.0.0.1:0")?;
                let peer = spawn_at(&mut cmd, &listener.local_addr()?.to_string())?;
                let (tx, rx, _) = listener.accept()?;
                conn(Box::new(tx), Box::new(rx), peer)
            }
            "udp" => {
                let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
                let peer = spawn_at(&mut cmd, &sock.local_addr()?.to_string())?;
                // The peer's first datagram tells us its address.
                sock.set_read_timeout(Some(HELLO))?;
                let mut hello = [0u8; 64];
                let (_, from) = sock.recv_from(&mut hello)?;
                sock.connect(from)?;
                sock.set_read_timeout(None)?;
                let (tx, rx) = udp::from_socket(sock)?;
                PeerConn { datagram: true, ..conn(Box::new(tx), Box::new(rx), peer) }
            }
            "shm" => {
                let duplex = shm::Duplex::anonymous(crate::RingConfig::default()).map_err(io::Error::other)?;
                duplex.share_with(&mut cmd);
                let peer = PeerProcess::Std(cmd.stdin(Stdio::null()).spawn()?);
                let (tx, rx) = duplex.parent().map_err(io::Error::other)?;
                conn(Box::new(tx), Box::new(rx), peer)
            }
            other => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no adapter {other}"))),
        })
    }
}
