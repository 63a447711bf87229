//! Starting a peer and reaching it over one transport adapter: the parent side ([`connect`],
//! [`connect_via`]) and the child side ([`child`]), the one place that knows how each adapter's peer is
//! started and reached. Used by `ringwire bench`, the conformance tests and the criterion benches.

use super::args::{Adapter, PeerArgs};
use crate::util::CliResult;
use ringwire::transport::{
    fork, pipe, redis as redis_transport, shm, stdio, tcp, udp, unix, websocket, Receiver, Sender,
};
use std::io;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a UDP peer may take to announce its address.
const HELLO: Duration = Duration::from_secs(30);

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

/// The AMQP broker peers meet at unless told otherwise: `$RINGWIRE_AMQP_URL`, else
/// `amqp://127.0.0.1:5672` (guest/guest, vhost `/`).
pub fn amqp_url() -> String {
    std::env::var("RINGWIRE_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672".into())
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
    /// AMQP queues deleted when the connection is dropped.
    #[allow(dead_code)]
    queues: Option<AmqpQueues>,
}

/// Deletes a peer connection's AMQP queues when dropped (best effort).
pub struct AmqpQueues {
    addrs: Vec<String>,
}

impl Drop for AmqpQueues {
    fn drop(&mut self) {
        for a in &self.addrs {
            let _ = ringwire::transport::amqp::delete_queue(a, &Default::default());
        }
    }
}

/// Deletes a peer connection's stream keys when dropped (best effort).
pub struct StreamKeys {
    url: String,
    keys: Vec<String>,
}

impl Drop for StreamKeys {
    fn drop(&mut self) {
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

/// Starts `cmd` (a peer command line whose [`PeerArgs`] name `adapter`, without `--addr`) and connects
/// to it over `adapter`, adding the `--addr` the adapter needs. The redis adapters meet the peer at
/// [`redis_url`].
pub fn connect(cmd: Command, adapter: Adapter) -> io::Result<PeerConn> {
    connect_via(cmd, adapter, &redis_url())
}

/// As [`connect`], with the redis adapters meeting the peer at the server `redis_url`
/// (`redis://host:port`). The peer's `--addr` is `redis_url/NAME`: pub/sub peers subscribe to `NAME`
/// and reply on `NAME.reply`; stream peers consume `NAME.down` (group `ringwire`) and produce
/// `NAME.up`. The amqp adapter meets its peer at the broker `redis_url` names if it is an `amqp://`
/// URL, else at [`amqp_url`]: the peer consumes queue `NAME.down` and publishes on `NAME.up` (both
/// deleted when the connection is dropped).
pub fn connect_via(cmd: Command, adapter: Adapter, redis_url: &str) -> io::Result<PeerConn> {
    connect_via_window(cmd, adapter, redis_url, 1)
}

/// As [`connect_via`], our redis sender keeping up to `redis_window` commands unacknowledged
/// (`ringwire::transport::redis::Options::window`; 1: each send waits for its reply).
pub fn connect_via_window(
    mut cmd: Command,
    adapter: Adapter,
    redis_url: &str,
    redis_window: usize,
) -> io::Result<PeerConn> {
    let conn = |tx: Box<dyn Sender>, rx: Box<dyn Receiver>, peer| PeerConn {
        tx,
        rx,
        peer,
        datagram: false,
        brokered: false,
        keys: None,
        queues: None,
    };
    let spawn_at = |cmd: &mut Command, addr: &str| -> io::Result<PeerProcess> {
        Ok(PeerProcess::Std(cmd.args(["--addr", addr]).stdin(Stdio::null()).spawn()?))
    };
    Ok(match adapter {
        Adapter::Stdio => {
            let (tx, rx, child) = stdio::spawn(&mut cmd)?;
            conn(Box::new(tx), Box::new(rx), PeerProcess::Ours(child))
        }
        Adapter::Fork => {
            let (tx, rx, child) = fork::spawn(cmd.stdin(Stdio::null()))?;
            conn(Box::new(tx), Box::new(rx), PeerProcess::Ours(child))
        }
        Adapter::Fifo => {
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
        Adapter::Unix => {
            let path = std::env::temp_dir().join(unique("sock"));
            let listener = unix::Listener::bind(&path)?;
            let peer = spawn_at(&mut cmd, path_str(&path)?)?;
            let (tx, rx) = listener.accept()?;
            conn(Box::new(tx), Box::new(rx), peer)
        }
        Adapter::UnixAbstract => {
            let name = unique("abstract");
            let listener = unix::Listener::bind_abstract(name.as_bytes())?;
            let peer = spawn_at(&mut cmd, &name)?;
            let (tx, rx) = listener.accept()?;
            conn(Box::new(tx), Box::new(rx), peer)
        }
        Adapter::Tcp => {
            let listener = tcp::Listener::bind("127.0.0.1:0")?;
            let peer = spawn_at(&mut cmd, &listener.local_addr()?.to_string())?;
            let (tx, rx, _) = listener.accept()?;
            conn(Box::new(tx), Box::new(rx), peer)
        }
        Adapter::Udp => {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
            let peer = spawn_at(&mut cmd, &sock.local_addr()?.to_string())?;
            // The peer's first datagram tells us its address.
            sock.set_read_timeout(Some(HELLO))?;
            let mut hello = [0u8; 64];
            let (_, from) = sock.recv_from(&mut hello)?;
            sock.connect(from)?;
            sock.set_read_timeout(None)?;
            let (tx, mut rx) = udp::from_socket(sock)?;
            // Datagrams as large as the peer's messages (`--max-message`; at most UDP's own limit): a
            // receiver limited to small datagrams takes them in batches (`recvmmsg`).
            rx.set_max_datagram(redis_options(&cmd).max_message.saturating_add(ringwire::wire::HEADER_LEN));
            PeerConn { datagram: true, ..conn(Box::new(tx), Box::new(rx), peer) }
        }
        Adapter::Shm => {
            let duplex = shm::Duplex::anonymous(ringwire::RingConfig::default()).map_err(io::Error::other)?;
            duplex.share_with(&mut cmd);
            let peer = PeerProcess::Std(cmd.stdin(Stdio::null()).spawn()?);
            let (tx, rx) = duplex.parent().map_err(io::Error::other)?;
            conn(Box::new(tx), Box::new(rx), peer)
        }
        Adapter::Websocket => {
            use ringwire::transport::websocket;
            let listener = websocket::Listener::bind("127.0.0.1:0", WS_PATH)?;
            let peer = spawn_at(&mut cmd, &listener.url()?)?;
            let (tx, rx, _) = listener.accept()?;
            conn(Box::new(tx), Box::new(rx), peer)
        }
        Adapter::RedisPubsub => {
            use ringwire::transport::redis::{Publisher, Subscriber};
            use ringwire::transport::TransportRecvError;
            let name = unique("pubsub");
            let opts = redis_transport::Options { window: redis_window, ..redis_options(&cmd) };
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
        Adapter::RedisStream => {
            use ringwire::transport::redis::{StreamConsumer, StreamProducer};
            let name = unique("stream");
            let opts = redis_transport::Options { window: redis_window, ..redis_options(&cmd) };
            let (down, up) = (format!("{name}.down"), format!("{name}.up"));
            let mut tx = StreamProducer::with_options(redis_url, &down, opts.clone())?;
            tx.set_max_len(Some(STREAM_CAP));
            let rx = StreamConsumer::with_options(redis_url, &up, "ringwire", "parent", opts)?;
            let keys = StreamKeys { url: redis_url.to_string(), keys: vec![down, up] };
            let peer = spawn_at(&mut cmd, &format!("{redis_url}/{name}"))?;
            PeerConn { brokered: true, keys: Some(keys), ..conn(Box::new(tx), Box::new(rx), peer) }
        }
        Adapter::Amqp => {
            use ringwire::transport::amqp;
            let broker = if redis_url.starts_with("amqp://") { redis_url.to_string() } else { amqp_url() };
            let name = unique("amqp");
            let opts = amqp::Options { max_message: redis_options(&cmd).max_message, ..Default::default() };
            let (down, up) = (format!("{broker}/{name}.down"), format!("{broker}/{name}.up"));
            let queues = AmqpQueues { addrs: vec![down.clone(), up.clone()] };
            let tx = amqp::Producer::with_options(&down, opts.clone())?;
            let rx = amqp::Consumer::with_options(&up, opts)?;
            let peer = spawn_at(&mut cmd, &format!("{broker}/{name}"))?;
            PeerConn { brokered: true, queues: Some(queues), ..conn(Box::new(tx), Box::new(rx), peer) }
        }
    })
}

/// Redis options for our side of a peer connection: the message limit the peer was given.
fn redis_options(cmd: &Command) -> redis_transport::Options {
    let mut opts = redis_transport::Options::default();
    let args: Vec<_> = cmd.get_args().collect();
    if let Some(w) = args.windows(2).find(|w| w[0] == "--max-message") {
        if let Some(n) = w[1].to_str().and_then(|s| s.parse().ok()) {
            opts.max_message = n;
        }
    }
    opts
}
/// The child side of [`connect_via`]: reaches the parent over `adapter` as `args` says (`--addr`,
/// `--max-message`), in the order the parent expects (see each arm of [`connect_via`]).
pub fn child(adapter: Adapter, args: &PeerArgs) -> CliResult<(Box<dyn Sender>, Box<dyn Receiver>)> {
    let addr = || args.addr.clone().ok_or("this peer needs --addr");
    let limit = |(mut tx, mut rx): (ringwire::transport::FdSender, ringwire::transport::FdReceiver)| {
        tx.set_max_message(args.max_message);
        rx.set_max_message(args.max_message);
        (Box::new(tx) as Box<dyn Sender>, Box::new(rx) as Box<dyn Receiver>)
    };
    let redis_opts = || redis_transport::Options { max_message: args.max_message, ..Default::default() };
    let io_wait = crate::util::parse_io_wait(&args.wait)?;
    let (mut tx, mut rx): (Box<dyn Sender>, Box<dyn Receiver>) = match adapter {
        Adapter::Stdio => limit(stdio::from_process_stdio()?),
        Adapter::Fork => limit(fork::from_env()?),
        Adapter::Fifo => {
            let dir = std::path::PathBuf::from(addr()?);
            // The parent opens down for writing first, then up for reading: same order here.
            let rx = pipe::open_fifo_receiver(dir.join("down"))?;
            let tx = pipe::open_fifo_sender(dir.join("up"))?;
            limit((tx, rx))
        }
        Adapter::Unix => limit(unix::connect(addr()?)?),
        Adapter::UnixAbstract => limit(unix::connect_abstract(addr()?.as_bytes())?),
        Adapter::Tcp => limit(tcp::connect(addr()?)?),
        Adapter::Udp => {
            let (mut tx, mut rx) = udp::connect("127.0.0.1:0", addr()?)?;
            // As the parent's receiver: datagrams up to `--max-message` (batched when small).
            rx.set_max_datagram(args.max_message.saturating_add(ringwire::wire::HEADER_LEN));
            tx.send(b"hello")?; // tells the parent our address
            (Box::new(tx), Box::new(rx))
        }
        Adapter::Shm => {
            let (tx, rx) = shm::from_env()?;
            (Box::new(tx), Box::new(rx))
        }
        Adapter::Websocket => {
            let opts = websocket::Options { max_message: args.max_message, ..Default::default() };
            let (tx, rx) = websocket::connect_with(&addr()?, &opts)?;
            (Box::new(tx), Box::new(rx))
        }
        Adapter::RedisPubsub => {
            use redis_transport::{split_addr, Publisher, Subscriber};
            let (url, name) = split_addr(&addr()?).ok_or("--addr must be redis://host:port/NAME")?;
            let rx = Subscriber::with_options(&url, &name, redis_opts())?;
            let mut tx = Publisher::with_options(&url, &format!("{name}.reply"), redis_opts())?;
            tx.send(b"hello")?; // subscribed: the parent may start
            (Box::new(tx), Box::new(rx))
        }
        Adapter::RedisStream => {
            use redis_transport::{split_addr, StreamConsumer, StreamProducer};
            let (url, name) = split_addr(&addr()?).ok_or("--addr must be redis://host:port/NAME")?;
            let rx = StreamConsumer::with_options(&url, &format!("{name}.down"), "ringwire", "peer", redis_opts())?;
            let mut tx = StreamProducer::with_options(&url, &format!("{name}.up"), redis_opts())?;
            tx.set_max_len(Some(STREAM_CAP));
            (Box::new(tx), Box::new(rx))
        }
        Adapter::Amqp => {
            use ringwire::transport::amqp;
            let opts = amqp::Options { max_message: args.max_message, ..Default::default() };
            let a = addr()?;
            let rx = amqp::Consumer::with_options(&format!("{a}.down"), opts.clone())?;
            let tx = amqp::Producer::with_options(&format!("{a}.up"), opts)?;
            (Box::new(tx), Box::new(rx))
        }
    };
    // Kernel transports wait as asked (a no-op for the others).
    tx.set_io_wait(io_wait);
    rx.set_io_wait(io_wait);
    Ok((tx, rx))
}
