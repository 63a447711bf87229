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

    /// The adapters a peer can be reached over (`fifo` is the named-pipe adapter; `redis-pubsub` and
    /// `redis-stream` go through a Redis server, [`redis_url`] unless [`connect_via`] names one).
    pub const ADAPTERS: &[&str] = &[
        "stdio",
        "fork",
        "fifo",
        "unix",
        "unix-abstract",
        "tcp",
        "udp",
        "shm",
        "websocket",
        "redis-pubsub",
        "redis-stream",
    ];

    /// The WebSocket path peers connect to.
    pub const WS_PATH: &str = "/ringwire";

    /// Stream entries kept by the `redis-stream` peers' producers (`MAXLEN ~`): far more than a benchmark
    /// window, so nothing unread is trimmed, while a long run does not fill the server's memory.
    pub const STREAM_CAP: usize = 10_000;

    /// The Redis server peers meet at unless told otherwise: `$RINGWIRE_REDIS_URL`, else
    /// `redis://127.0.0.1:6379`.
    pub fn redis_url() -> String {
        std::env::var("RINGWIRE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

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
        /// Redis: the peer is reached through a server that outlives it, so there is no end-of-peer to
        /// see (neither a clean close nor a death); messages to a dead peer wait (streams) or are dropped
        /// (pub/sub).
        pub brokered: bool,
        /// Stream keys deleted when the connection is dropped.
        #[allow(dead_code)]
        keys: Option<StreamKeys>,
    }

    /// Deletes a peer connection's stream keys when dropped (best effort).
    pub struct StreamKeys {
        #[cfg(feature = "redis")]
        url: String,
        #[cfg(feature = "redis")]
        keys: Vec<String>,
    }

    impl Drop for StreamKeys {
        fn drop(&mut self) {
            #[cfg(feature = "redis")]
            if let Ok(client) = redis::Client::open(self.url.as_str()) {
                if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) {
                    let _ = con.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = redis::cmd("DEL").arg(&self.keys).exec(&mut con);
                }
            }
        }
    }

    fn unique(tag: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!("ringwire-peer-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
    }

    fn path_str(p: &std::path::Path) -> io::Result<&str> {
        p.to_str().ok_or_else(|| io::Error::other("temporary directory is not UTF-8"))
    }

    /// Starts `cmd` (a `ringwire __peer <role>-<adapter> ...` command line, without `--addr`) and connects
    /// to it over `adapter` (one of [`ADAPTERS`]), adding the `--addr` the adapter needs. The redis
    /// adapters meet the peer at [`redis_url`].
    pub fn connect(cmd: Command, adapter: &str) -> io::Result<PeerConn> {
        connect_via(cmd, adapter, &redis_url())
    }

    /// As [`connect`], with the redis adapters meeting the peer at the server `redis_url`
    /// (`redis://host:port`). The peer's `--addr` is `redis_url/NAME`: pub/sub peers subscribe to `NAME`
    /// and reply on `NAME.reply`; stream peers consume `NAME.down` (group `ringwire`) and produce
    /// `NAME.up`.
    pub fn connect_via(mut cmd: Command, adapter: &str, redis_url: &str) -> io::Result<PeerConn> {
        let _ = redis_url;
        let conn = |tx: Box<dyn Sender>, rx: Box<dyn Receiver>, peer| PeerConn {
            tx,
            rx,
            peer,
            datagram: false,
            brokered: false,
            keys: None,
        };
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
            #[cfg(feature = "websocket")]
            "websocket" => {
                use crate::transport::websocket;
                let listener = websocket::Listener::bind("127.0.0.1:0", WS_PATH)?;
                let peer = spawn_at(&mut cmd, &listener.url()?)?;
                let (tx, rx, _) = listener.accept()?;
                conn(Box::new(tx), Box::new(rx), peer)
            }
            #[cfg(feature = "redis")]
            "redis-pubsub" => {
                use crate::transport::redis::{Publisher, Subscriber};
                use crate::transport::TransportRecvError;
                let name = unique("pubsub");
                let opts = redis_options(&cmd);
                // Subscribe to the replies first; the peer says hello once it is subscribed itself.
                let mut rx = Subscriber::with_options(redis_url, &format!("{name}.reply"), opts.clone())?;
                let tx = Publisher::with_options(redis_url, &name, opts)?;
                let peer = spawn_at(&mut cmd, &format!("{redis_url}/{name}"))?;
                match rx.recv_deadline(Instant::now() + HELLO) {
                    Ok(m) if m == b"hello" => {}
                    Ok(_) => return Err(io::Error::other("redis-pubsub peer: bad greeting")),
                    Err(TransportRecvError::Timeout) => {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "redis-pubsub peer did not say hello"))
                    }
                    Err(e) => return Err(io::Error::other(e)),
                }
                PeerConn { brokered: true, ..conn(Box::new(tx), Box::new(rx), peer) }
            }
            #[cfg(feature = "redis")]
            "redis-stream" => {
                use crate::transport::redis::{StreamConsumer, StreamProducer};
                let name = unique("stream");
                let opts = redis_options(&cmd);
                let (down, up) = (format!("{name}.down"), format!("{name}.up"));
                let mut tx = StreamProducer::with_options(redis_url, &down, opts.clone())?;
                tx.set_max_len(Some(STREAM_CAP));
                let rx = StreamConsumer::with_options(redis_url, &up, "ringwire", "parent", opts)?;
                let keys = StreamKeys { url: redis_url.to_string(), keys: vec![down, up] };
                let peer = spawn_at(&mut cmd, &format!("{redis_url}/{name}"))?;
                PeerConn { brokered: true, keys: Some(keys), ..conn(Box::new(tx), Box::new(rx), peer) }
            }
            other => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no adapter {other}"))),
        })
    }

    /// Redis options for our side of a peer connection: the message limit the peer was given.
    #[cfg(feature = "redis")]
    fn redis_options(cmd: &Command) -> crate::transport::redis::Options {
        let mut opts = crate::transport::redis::Options::default();
        let args: Vec<_> = cmd.get_args().collect();
        if let Some(w) = args.windows(2).find(|w| w[0] == "--max-message") {
            if let Some(n) = w[1].to_str().and_then(|s| s.parse().ok()) {
                opts.max_message = n;
            }
        }
        opts
    }
}

/// A private `redis-server` for tests: started from the installed binary on a free port, killed (and its
/// directory removed) when dropped.
#[cfg(all(not(ringwire_loom), feature = "redis"))]
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
        /// so that its data survives [`restart`](Self::restart) (even after SIGKILL: Redis writes the
        /// log before it replies).
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
                    cmd.args(["--appendonly", "yes", "--dir"]).arg(d);
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
