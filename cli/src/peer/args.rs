//! The typed description of a peer that parent and child share.

/// The environment variable naming the memfd of ring A (parent to peer) of a ring row.
pub const RING_A_VAR: &str = "RINGWIRE_BENCH_A";
/// The environment variable naming the memfd of ring B (peer to parent) of a ring row.
pub const RING_B_VAR: &str = "RINGWIRE_BENCH_B";

/// What a peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerMode {
    /// The `limit` probe's echo side (shared memory from [`crate::probe::PROBE_FD_VAR`]).
    LimitEcho,
    /// The `limit` probe's streaming sink.
    LimitSink,
    /// Echoes every message of SPSC ring A back on ring B.
    RingEcho,
    /// Checks `count` messages of SPSC ring A, answers the verdict on ring B.
    RingSink,
    /// As `ring-echo`, on two MPMC rings.
    MpmcEcho,
    /// As `ring-sink`, on two MPMC rings.
    MpmcSink,
    /// As `mpmc-sink`, taking up to 64 messages per claim (`recv_many`): the `shm-mpmc+batch` sink.
    MpmcSinkMany,
    /// As `ring-echo`, on two broadcast rings.
    BcastEcho,
    /// As `ring-sink`, on two broadcast rings.
    BcastSink,
    /// Echoes every message back over `--adapter` until the parent closes.
    Echo,
    /// Checks `count` messages of the bench stream over `--adapter`, acknowledging every
    /// [`super::sink_ack_every`] messages, then answers the verdict.
    Sink,
}

/// The transport adapters a peer can be reached over (see [`super::connect::connect_via`] for how each is set
/// up). `fifo` is the named-pipe adapter; the redis ones go through a Redis server, `amqp` through
/// a RabbitMQ broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Adapter {
    /// The child's stdin/stdout.
    Stdio,
    /// A socketpair end inherited by the child.
    Fork,
    /// Two named FIFOs in a temporary directory.
    Fifo,
    /// A Unix stream socket at a path.
    Unix,
    /// A Unix stream socket with an abstract name.
    UnixAbstract,
    /// TCP on loopback.
    Tcp,
    /// Connected UDP sockets on loopback.
    Udp,
    /// Two anonymous SPSC rings inherited by the child.
    Shm,
    /// WebSocket on loopback.
    Websocket,
    /// Redis pub/sub.
    RedisPubsub,
    /// Redis streams.
    RedisStream,
    /// An AMQP 0-9-1 broker (RabbitMQ): two durable work queues.
    Amqp,
}

impl Adapter {
    /// Every adapter, in the conformance suites' order.
    pub const ALL: [Adapter; 12] = [
        Adapter::Stdio,
        Adapter::Fork,
        Adapter::Fifo,
        Adapter::Unix,
        Adapter::UnixAbstract,
        Adapter::Tcp,
        Adapter::Udp,
        Adapter::Shm,
        Adapter::Websocket,
        Adapter::RedisPubsub,
        Adapter::RedisStream,
        Adapter::Amqp,
    ];

    /// The name on the command line (`unix-abstract`, `redis-pubsub`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Adapter::Stdio => "stdio",
            Adapter::Fork => "fork",
            Adapter::Fifo => "fifo",
            Adapter::Unix => "unix",
            Adapter::UnixAbstract => "unix-abstract",
            Adapter::Tcp => "tcp",
            Adapter::Udp => "udp",
            Adapter::Shm => "shm",
            Adapter::Websocket => "websocket",
            Adapter::RedisPubsub => "redis-pubsub",
            Adapter::RedisStream => "redis-stream",
            Adapter::Amqp => "amqp",
        }
    }
}

impl PeerMode {
    fn name(self) -> &'static str {
        match self {
            PeerMode::LimitEcho => "limit-echo",
            PeerMode::LimitSink => "limit-sink",
            PeerMode::RingEcho => "ring-echo",
            PeerMode::RingSink => "ring-sink",
            PeerMode::MpmcEcho => "mpmc-echo",
            PeerMode::MpmcSink => "mpmc-sink",
            PeerMode::MpmcSinkMany => "mpmc-sink-many",
            PeerMode::BcastEcho => "bcast-echo",
            PeerMode::BcastSink => "bcast-sink",
            PeerMode::Echo => "echo",
            PeerMode::Sink => "sink",
        }
    }
}

/// Everything a peer is told. Built by the parent, turned into arguments by [`PeerArgs::to_args`],
/// parsed back by clap in the child.
#[derive(clap::Args, Clone, Debug)]
pub struct PeerArgs {
    /// What the peer does.
    #[arg(value_enum)]
    pub mode: PeerMode,
    /// `echo` / `sink`: the transport to the parent (the parent adds `--addr` where the adapter needs one).
    #[arg(long, value_enum)]
    pub adapter: Option<Adapter>,
    /// Message size of the bench stream.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Messages a sink checks.
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Rings: spin | yield | adaptive | block (= adaptive). Kernel transports: block | spin | adaptive.
    #[arg(long, default_value = "block")]
    pub wait: String,
    /// The CPU to pin the peer to.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// `echo` / `sink`: where to connect (a path, abstract name, host:port, FIFO directory,
    /// ws://host:port/path, or redis://host:port/NAME).
    #[arg(long)]
    pub addr: Option<String>,
    /// `echo` / `sink`: the largest message each half accepts.
    #[arg(long, default_value_t = ringwire::transport::DEFAULT_MAX_MESSAGE)]
    pub max_message: usize,
}

impl PeerArgs {
    /// A peer in `mode` with every option at its default.
    pub fn new(mode: PeerMode) -> Self {
        PeerArgs {
            mode,
            adapter: None,
            size: 64,
            count: 0,
            wait: "block".into(),
            cpu: None,
            addr: None,
            max_message: ringwire::transport::DEFAULT_MAX_MESSAGE,
        }
    }

    /// `echo` or `sink` over `adapter`.
    pub fn transport(mode: PeerMode, adapter: Adapter) -> Self {
        PeerArgs { adapter: Some(adapter), ..PeerArgs::new(mode) }
    }

    /// The command-line arguments that [`PeerArgs`]'s clap parser turns back into `self`.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![self.mode.name().to_string()];
        if let Some(a) = self.adapter {
            v.extend(["--adapter".into(), a.name().into()]);
        }
        v.extend(["--size".into(), self.size.to_string(), "--count".into(), self.count.to_string()]);
        v.extend(["--wait".into(), self.wait.clone(), "--max-message".into(), self.max_message.to_string()]);
        if let Some(cpu) = self.cpu {
            v.extend(["--cpu".into(), cpu.to_string()]);
        }
        if let Some(addr) = &self.addr {
            v.extend(["--addr".into(), addr.clone()]);
        }
        v
    }
}
