//! Dev-only support for ringwire's test suites and benches (this crate is never published, and nothing
//! in the `ringwire` library or the `ringwire` binary depends on it):
//!
//! * the deterministic test stream ([`len_for`], [`fill`], [`message`], [`check`]): message `seq` has a
//!   length and content derived from `seq` alone, so a receiver in another process can check every byte
//!   (and notice a torn, duplicated, reordered or lost message) without being told anything;
//! * [`peer`]: the fault-injecting peers of the `ringwire-testpeer` binary, described by a typed
//!   [`peer::TestPeer`] that the test (parent) and the peer (child) share;
//! * [`peers`]: starting a peer and reaching it over one transport adapter (the same code `ringwire
//!   bench` uses, from `ringwire-cli`);
//! * [`redis_server`]: a private `redis-server` on a free port;
//! * [`rabbitmq`]: a private virtual host on the machine's RabbitMQ broker;
//! * [`watchdog`]: runs a test body on a thread and fails the test if it does not finish in time.

pub mod peer;
pub mod rabbitmq;
pub use ringwire_cli::peer::connect as peers;
pub use ringwire_cli::peer::{Adapter, PeerArgs, PeerMode};

/// Runs `f` on its own thread and fails the calling test if it has not returned within `limit` (a test
/// that hangs is a failure, not a stuck CI run). A panic in `f` is re-raised here with its message.
pub fn watchdog<T: Send + 'static>(limit: std::time::Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let body = std::thread::Builder::new()
        .name("watched test body".into())
        .spawn(move || {
            let r = f();
            let _ = tx.send(());
            r
        })
        .expect("spawn the test body");
    match rx.recv_timeout(limit) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match body.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: the test did not finish within {limit:?} (a hang)")
        }
    }
}

/// One segmented `sendmsg` (`UDP_SEGMENT`, the UDP segmentation offload a ringwire UDP sender's flush
/// uses) of `buf` on a connected `sock`, which the kernel cuts into datagrams of `segment` bytes (the
/// last may be shorter): what a receiver with `UDP_GRO` then gets as one coalesced run. A hostile
/// peer's tool: any bytes, any segment size. The bytes sent, or the socket's error.
pub fn udp_send_segmented(sock: &std::net::UdpSocket, buf: &[u8], segment: u16) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: buf.len() };
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
    // SAFETY: `control` holds one header and a u16 (CMSG_SPACE(2) <= 32 bytes); it outlives the writes.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = 103; // UDP_SEGMENT
        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
    }
    // SAFETY: `msg` points at one iovec over `buf` and at `control`, alive until the call returns
    // (sendmsg only reads them); `sock` is open.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

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

/// A private `redis-server` for tests: started from the installed binary on a free port, killed (and its
/// directory removed) when dropped.
pub mod redis_server {
    use std::io;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// How long a server may take to answer its first PING.
    const START: Duration = Duration::from_secs(30);

    /// A running private server.
    pub struct RedisServer {
        child: Option<Child>,
        port: u16,
        /// `--appendonly yes --dir DIR`: data survives a restart.
        dir: Option<PathBuf>,
    }

    impl RedisServer {
        /// Starts a server that keeps nothing (`--save '' --appendonly no`).
        pub fn start() -> io::Result<RedisServer> {
            Self::start_with(false)
        }

        /// Starts a server that logs every write to an append-only file in a fresh temporary directory,
        /// fsynced before it replies (`appendfsync always`), so that every acknowledged write survives
        /// [`restart`](Self::restart), even after SIGKILL.
        pub fn start_persistent() -> io::Result<RedisServer> {
            Self::start_with(true)
        }

        fn start_with(persistent: bool) -> io::Result<RedisServer> {
            let mut last = None;
            for _ in 0..5 {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                let dir = persistent
                    .then(|| std::env::temp_dir().join(format!("ringwire-redis-{}-{port}", std::process::id())));
                let mut s = RedisServer { child: None, port, dir };
                if let Some(d) = &s.dir {
                    std::fs::create_dir_all(d)?;
                }
                match s.launch() {
                    Ok(()) => return Ok(s),
                    Err(e) => last = Some(e), // the port was taken meanwhile: another one
                }
            }
            Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
        }

        fn launch(&mut self) -> io::Result<()> {
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
            match &self.dir {
                Some(d) => {
                    // `always`: a write the server acknowledged is on disk, so a kill loses none of them.
                    // (With the default `everysec`, a write acknowledged while a background fsync runs
                    // may wait up to 2 s for its own write(2): a SIGKILL then loses it, as one run here
                    // lost the first 256 messages of a stream.)
                    cmd.args(["--appendonly", "yes", "--appendfsync", "always", "--dir"]).arg(d);
                }
                None => {
                    cmd.args(["--appendonly", "no"]);
                }
            }
            let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
            let client = redis::Client::open(self.url().as_str()).map_err(io::Error::other)?;
            let deadline = Instant::now() + START;
            loop {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!("redis-server exited: {status}")));
                }
                let pong = client.get_connection_with_timeout(Duration::from_secs(1)).and_then(|mut con| {
                    con.set_read_timeout(Some(Duration::from_secs(1)))?;
                    redis::cmd("PING").query::<String>(&mut con)
                });
                if pong.is_ok() {
                    self.child = Some(child);
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "redis-server does not answer PING"));
                }
                // Not listening yet (or still loading its data): ask again shortly.
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        /// `redis://127.0.0.1:PORT`.
        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        /// The port.
        pub fn port(&self) -> u16 {
            self.port
        }

        /// A plain connection for test commands (`CLIENT KILL`, `XADD` of garbage, ...).
        pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
            let con = redis::Client::open(self.url().as_str())?.get_connection_with_timeout(Duration::from_secs(5))?;
            con.set_read_timeout(Some(Duration::from_secs(10)))?;
            Ok(con)
        }

        /// Kills the server (SIGKILL) and waits for it.
        pub fn kill(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        /// Kills the server if it runs, and starts it again on the same port (and directory).
        pub fn restart(&mut self) -> io::Result<()> {
            self.kill();
            self.launch()
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.kill();
            if let Some(d) = &self.dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}
