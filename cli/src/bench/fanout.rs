//! `ringwire bench --transports hub`: fan-out. One broadcast to a room of N WebSocket clients (N = 1, 10,
//! 100, 1,000 by default), measured on `ringwire hub` and, as the reference, on Node's socket.io server
//! running the same chat handler, in the same run; plus the server's memory per idle connection.
//!
//! Server against server, one client for both:
//!
//! * Both servers are separate processes: `ringwire hub --quiet` (this executable) and
//!   `node tests/js/socketio_fanout_server.mjs` (socket.io, WebSocket transport only). Each prints the
//!   port it listens on as its first stdout line.
//! * One load generator, here, drives both with the same code: raw WebSockets (tokio-tungstenite), the
//!   hub's frames ([`ringwire::hub::protocol`]) on one side and the minimal Engine.IO v4 / Socket.IO v5
//!   text packets on the other ([`SocketIo`](Server::SocketIo)). So the client cost per delivery is the
//!   same on both sides (a read, a WebSocket frame, a substring search for the sequence number), and the
//!   difference between the rows is the servers'. It runs on one thread (a current-thread tokio
//!   runtime): it then takes at most one CPU, whatever the server does, and on a 2-CPU machine it does
//!   not crowd out the server's threads (in trial runs here, a 2-thread load generator cost the hub
//!   about a third of its 1,000-client throughput and moved socket.io's little). It needs about 2 µs
//!   of CPU per delivery when messages stream, so on this 2-vCPU machine it is not the limit of either
//!   server's throughput (each row reports both sides' CPU use: `cpu`). On a many-core machine one
//!   thread is the hub's limit (the client's `cores` reads 1.00): `--fanout-threads N` runs it on N.
//!
//! The workload of one row: N connections join room `bench`; one of them, the sender, sends `chat
//! message` `{"room": "bench", "text": T}` (T: 64 bytes, a 12-digit sequence number then padding) and
//! the server emits `{"room", "text", "from", "at"}` to every member, the sender included. The sender
//! is one of the N: the hub's chat handler (cli/src/hub.rs) refuses a message to a room its sender is
//! not in, and socket.io's `io.to(room).emit` includes the sender, so a room of N clients gets N
//! deliveries per broadcast on both servers (for N = 1 the sender hears its own echo).
//!
//! * Latency: one message at a time; the time from just before the sender's write to the moment the
//!   LAST of the N clients has read it (every client is in this process: one clock). p50 / p99 over
//!   `samples` messages after `warmup` ones (which also flush the set-up traffic: the hub's `presence`
//!   events, O(N²) of them while a room of N fills).
//! * Throughput: the sender keeps [`WINDOW`] messages in flight (a message leaves the window once the
//!   last client has it) for `secs` seconds; deliveries per second summed over the N clients, i.e.
//!   broadcasts completed x N / time from the first send to the last completion.
//! * Every client checks that it gets every message once, in order; a gap, a close or a stall of
//!   [`STALL`] fails the row (listed as skipped, with the reason), never the run.
//! * Idle memory: the server's RSS (`/proc/PID/status` `VmRSS`) before and after opening `idle` (1,000)
//!   connections that then stay idle (the handshake done: for socket.io the namespace `CONNECT` too),
//!   divided by `idle`; each server measured fresh, before its fan-out rows.
//!
//! Nothing is pinned: the bench's own thread leaves cpu 0 for this group, and the servers and the load
//! generator's threads (one per CPU) go where the scheduler puts them, as a deployed server would. The
//! rows of the two servers alternate (socket.io then hub for each N) so that a slow phase of a shared
//! machine hits both. The file-descriptor limit is raised to its hard limit first (the servers inherit
//! it): a 1,000-client row holds 2,000 sockets on this machine.

use super::plan::histogram;
use super::report::{ns, rate, Percentiles, Skipped};
use crate::util::{available_cpus, CliResult};
use futures_util::{SinkExt, StreamExt};
use indicatif::ProgressBar;
use ringwire::hub::protocol;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Room sizes measured by default.
pub const CLIENTS: &[usize] = &[1, 10, 100, 1000];
/// Room sizes of a `--quick` run (a smoke run also made by the debug-build tests).
pub const QUICK_CLIENTS: &[usize] = &[1, 10, 100];
/// Bytes of `text` in each chat message.
pub const PAYLOAD: usize = 64;
/// Messages in flight during the throughput phase. Under the hub's per-connection send queue (1,024
/// messages, over which a client counts as slow and is dropped: a client never has more than the
/// window queued), and enough to keep either server busy at every N. Trial runs on the 2-vCPU machine
/// of README.md's numbers, 1,000 clients: the hub delivered 171-176k/s with 16 in flight, 251-291k/s
/// with 64 and 258-338k/s with 256 or 512 (fewer wake-ups per delivery: 4.3 against 8.5 µs of server CPU
/// at 16); socket.io 44-70k/s whatever the window (one core busy throughout).
pub const WINDOW: usize = 256;
/// Any single wait of the load generator (a handshake, a join, one message reaching every client)
/// longer than this fails the row.
const STALL: Duration = Duration::from_secs(10);
/// Handshakes (and joins) in progress at once while a room fills.
const SETUP_CONCURRENCY: usize = 32;
/// The `--token` the hub runs with.
const TOKEN: &str = "ringwire-bench";
const ROOM: &str = "bench";
/// The ack token of the load generator's `ringwire:join` requests: any 16 hex digits but the hub's own.
const JOIN_ACK_TOKEN: u64 = 0x0062_656e_6368_0001;
/// Digits of the sequence number at the start of each message's text.
const SEQ_DIGITS: usize = 12;
/// Completion counters, indexed by sequence number modulo this (more than [`WINDOW`] messages are never
/// in flight, so a counter is back to zero long before its slot is reused).
const SLOTS: usize = 4096;

/// The socket.io reference server (Node.js), run from the folder given by `--socketio-dir`.
pub const SOCKETIO_SCRIPT: &str = "socketio_fanout_server.mjs";

/// The folder with [`SOCKETIO_SCRIPT`] and `node_modules/socket.io` (installed by scripts/setup.sh):
/// this source tree's `tests/js`.
pub fn default_socketio_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/js"))
}

/// What the group runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub clients: Vec<usize>,
    pub warmup: usize,
    pub samples: usize,
    pub secs: f64,
    pub idle: usize,
    /// Threads of the load generator (1: a current-thread runtime).
    pub threads: usize,
    pub socketio_dir: PathBuf,
    /// Also the scale-out rows (`hub-cluster`): two processes per server sharing rooms.
    pub cluster: bool,
    /// The Redis server of the Redis-backed scale-out rows, and why they can't run if none answers.
    pub redis: String,
    pub redis_down: Option<String>,
}

impl Settings {
    /// The defaults (`quick`: a smoke run), with the command line's overrides.
    pub fn new(
        quick: bool,
        clients: Option<Vec<usize>>,
        secs: Option<f64>,
        idle: Option<usize>,
        threads: usize,
        socketio_dir: Option<PathBuf>,
    ) -> CliResult<Self> {
        let s = Settings {
            clients: clients.unwrap_or_else(|| if quick { QUICK_CLIENTS } else { CLIENTS }.to_vec()),
            warmup: if quick { 10 } else { 50 },
            samples: if quick { 50 } else { 300 },
            secs: secs.unwrap_or(if quick { 0.3 } else { 1.5 }),
            idle: idle.unwrap_or(if quick { 100 } else { 1000 }),
            threads,
            socketio_dir: socketio_dir.unwrap_or_else(default_socketio_dir),
            cluster: false,
            redis: String::new(),
            redis_down: None,
        };
        if s.clients.is_empty() || s.clients.iter().any(|&n| n == 0 || n > 20_000) {
            return Err("--fanout-clients: each between 1 and 20000".into());
        }
        if !(s.secs > 0.0 && s.secs <= 60.0) {
            return Err("--fanout-secs: between 0 and 60 seconds".into());
        }
        if s.threads == 0 || s.threads > 256 {
            return Err("--fanout-threads: between 1 and 256".into());
        }
        if s.idle == 0 || s.idle > 20_000 {
            return Err("--fanout-idle: between 1 and 20000".into());
        }
        Ok(s)
    }

    /// Adds the scale-out rows (`hub-cluster`), their Redis-backed ones on `redis` (skipped, with
    /// `redis_down` as the reason, when it does not answer).
    pub fn with_cluster(mut self, redis: String, redis_down: Option<String>) -> Self {
        self.cluster = true;
        self.redis = redis;
        self.redis_down = redis_down;
        self
    }

    /// Progress-bar steps: one per row and one per memory measurement.
    pub fn steps(&self) -> u64 {
        let deployments = self.deployments().len() as u64;
        deployments * self.clients.len() as u64 + 2
    }

    /// What runs: the two single servers, and with `cluster` the scale-out deployments (socket.io's
    /// first, the reference of the hubs' Redis rows).
    fn deployments(&self) -> Vec<Deployment> {
        let mut d = vec![Deployment::SocketIo, Deployment::Hub];
        if self.cluster {
            d.extend([
                Deployment::SocketIoRedis,
                Deployment::HubShm,
                Deployment::HubRedisStream,
                Deployment::HubRedisPubSub,
            ]);
        }
        d
    }
}

/// One fan-out row.
#[derive(Serialize, Debug)]
pub struct FanoutRow {
    /// `hub` or `socket.io` (one process); `hub-2-shm`, `hub-2-redis-stream`, `hub-2-redis-pubsub`,
    /// `socket.io-2-redis` (the scale-out rows: two processes sharing rooms).
    pub server: &'static str,
    /// Server processes; the room's clients are split between them, the sender on the first.
    pub processes: usize,
    /// What the processes share rooms through: `none`, `shm` (ringwire's broadcast ring),
    /// `redis-stream`, `redis-pubsub` (the hub's `--cluster`), `redis-adapter` (`@socket.io/redis-adapter`).
    pub engine: &'static str,
    /// Connections in the room, the sender included.
    pub clients: usize,
    /// Bytes of `text` per message.
    pub size: usize,
    /// From the sender's send to the last client's receipt, over `samples` messages sent one at a time.
    pub latency_ns: Percentiles,
    pub samples: usize,
    pub throughput: FanoutThroughput,
    /// CPU time used during the throughput phase: whether the server or the load generator was the
    /// limit, and each server's cost per delivery whichever it was.
    pub cpu: FanoutCpu,
    /// Hub rows: hub / the socket.io row of the same N in this run (null on socket.io rows, and when
    /// that row did not run). The scale-out hub rows are compared with `socket.io-2-redis` (target:
    /// throughput ≥ 5 at 1,000 clients).
    pub socketio_ratio: Option<FanoutRatio>,
    /// Scale-out hub rows: this row / the one-process `hub` row of the same N (target for `hub-2-shm`:
    /// latency ≤ 1.2).
    pub one_hub_ratio: Option<FanoutRatio>,
}

#[derive(Serialize, Clone, Copy, Debug)]
pub struct FanoutThroughput {
    /// Messages received per second, summed over the clients.
    pub deliveries_per_sec: f64,
    /// Broadcasts completed (received by every client) per second.
    pub broadcasts_per_sec: f64,
    /// Messages the sender kept in flight.
    pub window: usize,
    /// Seconds the sender kept sending.
    pub secs: f64,
}

#[derive(Serialize, Clone, Copy, Debug)]
pub struct FanoutCpu {
    /// Server process CPU time (user + system, all threads) per delivery, in ns.
    pub server_ns_per_delivery: f64,
    /// The load generator's (this process's) CPU time per delivery, in ns.
    pub client_ns_per_delivery: f64,
    /// CPU time / wall time of the phase: cores kept busy by the server and by the load generator.
    pub server_cores: f64,
    pub client_cores: f64,
}

/// A hub row over the socket.io row of the same N. The issue's targets: `throughput` ≥ 5 at 1,000
/// clients, `p99_to_socketio_p50` ≤ 1.
#[derive(Serialize, Clone, Copy, Debug)]
pub struct FanoutRatio {
    /// Deliveries per second, hub / socket.io (above 1: the hub delivers more).
    pub throughput: f64,
    /// Latency p50, hub / socket.io (below 1: the hub is faster).
    pub latency_p50: f64,
    /// Latency p99, hub / socket.io.
    pub latency_p99: f64,
    /// The hub's latency p99 over socket.io's p50.
    pub p99_to_socketio_p50: f64,
}

/// A server's memory per idle connection.
#[derive(Serialize, Debug)]
pub struct IdleMemory {
    pub server: &'static str,
    /// Idle connections opened.
    pub connections: usize,
    /// Server RSS (bytes) before opening them, and with them open.
    pub rss_before: u64,
    pub rss_after: u64,
    /// (rss_after - rss_before) / connections.
    pub bytes_per_connection: f64,
}

#[derive(Debug, Default)]
pub struct FanoutReport {
    pub rows: Vec<FanoutRow>,
    pub memory: Vec<IdleMemory>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    /// `ringwire hub`: binary WebSocket messages, one hub frame each.
    Hub,
    /// Node's socket.io 4 (Engine.IO v4, Socket.IO v5), WebSocket transport only: text messages.
    SocketIo,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Hub => "hub",
            Server::SocketIo => "socket.io",
        }
    }
}

/// How many server processes of which kind, sharing rooms through what.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Deployment {
    Hub,
    SocketIo,
    /// Two hubs, `--cluster shm:NAME`.
    HubShm,
    /// Two hubs, `--cluster redis-stream:URL/KEY`.
    HubRedisStream,
    /// Two hubs, `--cluster redis-pubsub:URL/CHANNEL`.
    HubRedisPubSub,
    /// Two socket.io servers with `@socket.io/redis-adapter`.
    SocketIoRedis,
}

impl Deployment {
    fn name(self) -> &'static str {
        match self {
            Deployment::Hub => "hub",
            Deployment::SocketIo => "socket.io",
            Deployment::HubShm => "hub-2-shm",
            Deployment::HubRedisStream => "hub-2-redis-stream",
            Deployment::HubRedisPubSub => "hub-2-redis-pubsub",
            Deployment::SocketIoRedis => "socket.io-2-redis",
        }
    }

    fn engine(self) -> &'static str {
        match self {
            Deployment::Hub | Deployment::SocketIo => "none",
            Deployment::HubShm => "shm",
            Deployment::HubRedisStream => "redis-stream",
            Deployment::HubRedisPubSub => "redis-pubsub",
            Deployment::SocketIoRedis => "redis-adapter",
        }
    }

    fn server(self) -> Server {
        match self {
            Deployment::SocketIo | Deployment::SocketIoRedis => Server::SocketIo,
            _ => Server::Hub,
        }
    }

    fn processes(self) -> usize {
        match self {
            Deployment::Hub | Deployment::SocketIo => 1,
            _ => 2,
        }
    }

    fn needs_redis(self) -> bool {
        matches!(self, Deployment::HubRedisStream | Deployment::HubRedisPubSub | Deployment::SocketIoRedis)
    }

    /// The socket.io deployment a hub row is compared with.
    fn socketio_reference(self) -> Option<Deployment> {
        match self {
            Deployment::Hub => Some(Deployment::SocketIo),
            Deployment::HubShm | Deployment::HubRedisStream | Deployment::HubRedisPubSub => {
                Some(Deployment::SocketIoRedis)
            }
            _ => None,
        }
    }
}

/// A deployment's processes, killed on drop, and what they left behind removed (the shm ring's file,
/// the Redis stream).
struct Running {
    dep: Deployment,
    procs: Vec<Proc>,
    /// The shm ring's name, or the stream's key and the Redis URL.
    shm: Option<String>,
    stream: Option<(String, String)>,
}

impl Running {
    fn ports(&self) -> Vec<u16> {
        self.procs.iter().map(|p| p.port).collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.procs.clear();
        if let Some(name) = &self.shm {
            let _ = ringwire::ShmRing::unlink(ringwire::shm::DEFAULT_DIR, name);
        }
        if let Some((url, key)) = &self.stream {
            let del = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                .and_then(|mut con| redis::cmd("DEL").arg(key).exec(&mut con));
            if let Err(e) = del {
                eprintln!("fan-out: could not delete the Redis stream {key}: {e}");
            }
        }
    }
}

/// Starts a deployment's processes, one after the other (the first hub of a shm cluster creates the
/// ring, the second opens it).
fn start_deployment(dep: Deployment, settings: &Settings) -> CliResult<Running> {
    let tag = format!("ringwire-bench-fanout-{}", std::process::id());
    let redis = settings.redis.trim_end_matches('/');
    let mut run = Running { dep, procs: Vec::new(), shm: None, stream: None };
    let extra: Vec<String> = match dep {
        Deployment::Hub | Deployment::SocketIo => Vec::new(),
        Deployment::HubShm => {
            run.shm = Some(tag.clone());
            vec!["--cluster".into(), format!("shm:{tag}")]
        }
        Deployment::HubRedisStream => {
            let key = format!("{tag}-stream");
            run.stream = Some((redis.to_string(), key.clone()));
            vec!["--cluster".into(), format!("redis-stream:{redis}/{key}")]
        }
        Deployment::HubRedisPubSub => vec!["--cluster".into(), format!("redis-pubsub:{redis}/{tag}-pubsub")],
        Deployment::SocketIoRedis => vec![redis.to_string(), format!("{tag}-sio")],
    };
    for _ in 0..dep.processes() {
        run.procs.push(start(dep.server(), settings, &extra)?);
    }
    Ok(run)
}

/// Runs the group: both servers, their idle memory, then the rows for each N (socket.io, then hub).
/// A server that can't start, or a row that fails, is listed in `skipped` with the reason.
pub fn run(settings: &Settings, bar: &ProgressBar, skipped: &mut Vec<Skipped>) -> CliResult<FanoutReport> {
    raise_nofile_limit();
    unpin_this_thread();
    // The load generator runs on this one thread (see the module's comment).
    let rt = match settings.threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    let mut report = FanoutReport::default();
    let mut skip = |dep: Deployment, clients: usize, reason: String| {
        bar.suspend(|| eprintln!("{} fan-out ({clients} clients) skipped: {reason}", dep.name()));
        skipped.push(Skipped { transport: dep.name(), wait: "block", size: PAYLOAD, clients: Some(clients), reason });
    };
    // socket.io first: the reference, and the row each hub row is compared with.
    let mut servers = Vec::new();
    for dep in settings.deployments() {
        bar.set_message(format!("fan-out: starting {}", dep.name()));
        let started = match (&settings.redis_down, dep.needs_redis()) {
            (Some(why), true) => Err(format!("no Redis server: {why}").into()),
            _ => start_deployment(dep, settings),
        };
        match started {
            Ok(r) => servers.push(r),
            Err(e) => {
                for &n in &settings.clients {
                    skip(dep, n, e.to_string());
                    bar.inc(1);
                }
            }
        }
    }
    for r in servers.iter().filter(|r| r.procs.len() == 1) {
        let p = &r.procs[0];
        bar.set_message(format!("fan-out: {} idle memory, {} connections", r.dep.name(), settings.idle));
        match rt.block_on(idle_memory(p, settings.idle)) {
            Ok(m) => report.memory.push(m),
            Err(e) => skip(r.dep, settings.idle, format!("idle memory: {e}")),
        }
        bar.inc(1);
    }
    for &n in &settings.clients {
        for r in &servers {
            bar.inc(1);
            // A room of one has nobody on the second process.
            if n < r.procs.len() {
                continue;
            }
            bar.set_message(format!("fan-out: {}, {n} clients", r.dep.name()));
            let row = rt.block_on(async {
                let row = fanout_row(r.dep, &r.ports(), &r.pids(), n, settings).await;
                // Let the servers finish with the row's disconnects before the next row starts.
                for pid in r.pids() {
                    wait_quiet(pid).await;
                }
                row
            });
            match row {
                Ok(row) => report.rows.push(row),
                Err(e) => skip(r.dep, n, e.to_string()),
            }
        }
    }
    drop(servers);
    fill_ratios(&mut report.rows);
    Ok(report)
}

fn ratio(row: &FanoutRow, base: &FanoutRow) -> FanoutRatio {
    let (p50, p99) = (base.latency_ns.p50.max(1) as f64, base.latency_ns.p99.max(1) as f64);
    FanoutRatio {
        throughput: row.throughput.deliveries_per_sec / base.throughput.deliveries_per_sec.max(1e-9),
        latency_p50: row.latency_ns.p50 as f64 / p50,
        latency_p99: row.latency_ns.p99 as f64 / p99,
        p99_to_socketio_p50: row.latency_ns.p99 as f64 / p50,
    }
}

fn fill_ratios(rows: &mut [FanoutRow]) {
    let find = |rows: &[FanoutRow], dep: Deployment, n: usize| {
        rows.iter().position(|r| r.server == dep.name() && r.clients == n)
    };
    for i in 0..rows.len() {
        let Some(dep) = ALL.iter().copied().find(|d| d.name() == rows[i].server) else { continue };
        let n = rows[i].clients;
        if let Some(j) = dep.socketio_reference().and_then(|s| find(rows, s, n)) {
            rows[i].socketio_ratio = Some(ratio(&rows[i], &rows[j]));
        }
        if dep.processes() > 1 && dep.server() == Server::Hub {
            if let Some(j) = find(rows, Deployment::Hub, n) {
                rows[i].one_hub_ratio = Some(ratio(&rows[i], &rows[j]));
            }
        }
    }
}

const ALL: [Deployment; 6] = [
    Deployment::Hub,
    Deployment::SocketIo,
    Deployment::HubShm,
    Deployment::HubRedisStream,
    Deployment::HubRedisPubSub,
    Deployment::SocketIoRedis,
];

// ---------------------------------------------------------------------------------------------------
// The server processes.

/// A running server, killed and reaped on drop.
struct Proc {
    server: Server,
    child: Child,
    port: u16,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `server` on a free port of 127.0.0.1 and waits (at most 10 s) for the line naming the port.
fn start(server: Server, settings: &Settings, extra: &[String]) -> CliResult<Proc> {
    let mut cmd = match server {
        Server::Hub => {
            let mut c = Command::new(std::env::current_exe()?);
            // Defaults otherwise: a runtime thread per CPU, a 1,024-message send queue per connection,
            // heartbeat every 25 s (as socket.io's pingInterval).
            c.args(["hub", "--listen", "127.0.0.1:0", "--token", TOKEN, "--quiet"]).args(extra);
            c
        }
        Server::SocketIo => {
            let dir = &settings.socketio_dir;
            let script = dir.join(SOCKETIO_SCRIPT);
            if !script.is_file() {
                return Err(format!("{} not found (pass --socketio-dir DIR)", script.display()).into());
            }
            if !dir.join("node_modules/socket.io/package.json").is_file() {
                return Err(format!(
                    "socket.io is not installed in {} (scripts/setup.sh installs it; or `npm ci` there)",
                    dir.join("node_modules").display()
                )
                .into());
            }
            let mut c = Command::new("node");
            c.arg(SOCKETIO_SCRIPT).arg("0").args(extra).current_dir(dir);
            c
        }
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && server == Server::SocketIo => {
            return Err(
                "node is not installed (the socket.io reference needs Node.js; scripts/setup.sh installs it)".into()
            )
        }
        Err(e) => return Err(format!("could not start {}: {e}", server.name()).into()),
    };
    // The first stdout line names the port; both pipes are drained after it (a server that writes to
    // a full pipe would stall), stderr's tail kept for the error message.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let err_tail = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().expect("piped stderr");
    std::thread::spawn({
        let tail = err_tail.clone();
        move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
                t.push_str(&String::from_utf8_lossy(&buf[..n]));
                if t.len() > 2000 {
                    let cut = t.len() - 1000;
                    let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(t.len());
                    t.drain(..cut);
                }
            }
        }
    });
    let mut proc = Proc { server, child, port: 0 };
    let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    let port = line.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    match port {
        Some(p) if line.contains("listening on") => proc.port = p,
        _ => {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
            let tail = err_tail.lock().unwrap_or_else(PoisonError::into_inner).trim().to_string();
            return Err(format!("{} did not start (stdout {:?}; stderr: {tail})", server.name(), line.trim()).into());
        }
    }
    Ok(proc)
}

/// Resident memory of `pid`, in bytes (`VmRSS` of /proc/PID/status).
fn rss(pid: u32) -> CliResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmRSS in /proc/PID/status")?;
    Ok(kb * 1024)
}

/// CPU time (user + system) of `pid` so far, in ns (clock-tick resolution: 10 ms).
fn proc_cpu_ns(pid: u32) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(cpu_ticks(pid)? * 1_000_000_000 / hz)
}

/// CPU time (user + system) of this process so far, in ns.
fn self_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of `pid` so far, in clock ticks (utime + stime of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, hence the last ')'): state is field 3,
    // utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Waits (at most 5 s) until `pid` has used at most one clock tick in each of two consecutive 100 ms
/// windows: the server is done with what the last step left it (closing connections, a GC).
async fn wait_quiet(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = cpu_ticks(pid);
    let mut calm = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = cpu_ticks(pid);
        match (last, now) {
            (Some(a), Some(b)) if b.saturating_sub(a) <= 1 => {
                calm += 1;
                if calm >= 2 {
                    return;
                }
            }
            (_, None) => return,
            _ => calm = 0,
        }
        last = now;
    }
}

/// Raises the soft limit on open files to the hard limit (this process and the servers it starts).
fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write/read the one struct passed, which lives across the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Lets this thread (pinned to cpu 0 by the rows before) run on every CPU again, so that the servers
/// and the runtime threads started from it are not pinned either.
fn unpin_this_thread() {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    for cpu in 0..available_cpus().min(CpuSet::count()) {
        let _ = set.set(cpu);
    }
    let _ = sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

// ---------------------------------------------------------------------------------------------------
// The load generator's client: the two protocols, as little of each as the workload needs.

fn url(server: Server, port: u16) -> String {
    match server {
        Server::Hub => format!("ws://127.0.0.1:{port}/ws?token={TOKEN}"),
        // Engine.IO v4 straight over WebSocket (no long-polling first): what socket.io-client does with
        // `transports: ['websocket']`.
        Server::SocketIo => format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"),
    }
}

/// The next message, within [`STALL`].
async fn next_msg(ws: &mut Ws) -> CliResult<Message> {
    match tokio::time::timeout(STALL, ws.next()).await {
        Ok(Some(Ok(m))) => Ok(m),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(None) => Err("the server closed the connection".into()),
        Err(_) => Err("the server sent nothing for 10 s".into()),
    }
}

/// Opens a connection and completes the server's handshake: the hub's `ringwire:hello`; for socket.io
/// the Engine.IO open packet `0{"sid",...}`, then the Socket.IO CONNECT to the main namespace (`40`),
/// answered with `40{"sid":...}` (socket.io's `connection` event has run then).
async fn open(server: Server, port: u16) -> CliResult<Ws> {
    // A small read buffer (tungstenite's default is 128 KiB per connection, allocated eagerly); TCP_NODELAY
    // as on both servers' side.
    let cfg = WebSocketConfig::default().read_buffer_size(8192);
    let connect = tokio_tungstenite::connect_async_with_config(url(server, port), Some(cfg), true);
    let (mut ws, _) =
        tokio::time::timeout(STALL, connect).await.map_err(|_| "the WebSocket handshake took over 10 s")??;
    match server {
        Server::Hub => match next_msg(&mut ws).await? {
            Message::Binary(b) if protocol::decode(b.clone()).is_ok_and(|e| e.name() == protocol::HELLO) => {}
            other => return Err(format!("expected the hub's hello, got {other:?}").into()),
        },
        Server::SocketIo => {
            match next_msg(&mut ws).await? {
                Message::Text(t) if t.as_str().starts_with('0') => {}
                other => return Err(format!("expected the Engine.IO open packet, got {other:?}").into()),
            }
            ws.send(Message::text("40")).await?;
            match next_msg(&mut ws).await? {
                Message::Text(t) if t.as_str().starts_with("40") => {}
                other => return Err(format!("expected the Socket.IO CONNECT reply, got {other:?}").into()),
            }
        }
    }
    Ok(ws)
}

/// Joins room `bench` and waits for the server's acknowledgement (other messages meanwhile, such as
/// the hub's `presence` events, are dropped; heartbeats answered).
async fn join(server: Server, ws: &mut Ws) -> CliResult {
    let ack_name = protocol::ack_name(JOIN_ACK_TOKEN, 1, protocol::JOIN);
    match server {
        // `ringwire:join` in ack form; the reply comes under the same name.
        Server::Hub => ws.send(Message::binary(protocol::encode(&ack_name, format!("\"{ROOM}\"").as_bytes()))).await?,
        // An EVENT with ack id 1 (`42` + `1`); the ACK comes back as `431[...]`.
        Server::SocketIo => ws.send(Message::text(format!("421[\"join\",\"{ROOM}\"]"))).await?,
    }
    loop {
        let m = next_msg(ws).await?;
        let reply: Option<String> = match (&m, server) {
            (Message::Binary(b), Server::Hub) => {
                let ev = protocol::decode(b.clone())?;
                (ev.name() == ack_name).then(|| String::from_utf8_lossy(&ev.body()).into_owned())
            }
            (Message::Text(t), Server::SocketIo) => t.as_str().strip_prefix("431").map(str::to_owned),
            _ => None,
        };
        match reply {
            Some(r) if r.contains("\"ok\":true") => return Ok(()),
            Some(r) => return Err(format!("join refused: {r}").into()),
            None => {
                if let In::Ping = classify(server, m)? {
                    ws.send(pong(server)).await?;
                }
            }
        }
    }
}

/// A message as the load generator sees it.
enum In {
    /// `chat message` number `seq`.
    Chat(u64),
    /// The server's heartbeat: answer with [`pong`].
    Ping,
    /// Anything else (`presence`, join acks, WebSocket pings): dropped.
    Other,
}

fn classify(server: Server, m: Message) -> CliResult<In> {
    match (server, m) {
        (Server::Hub, Message::Binary(b)) => {
            let ev = protocol::decode(b)?;
            match ev.name() {
                "chat message" => {
                    seq_of(&ev.body()).map(In::Chat).ok_or_else(|| "a chat message without a number".into())
                }
                protocol::PING => Ok(In::Ping),
                protocol::ERROR => Err(format!("the hub complained: {}", String::from_utf8_lossy(&ev.body())).into()),
                _ => Ok(In::Other),
            }
        }
        (Server::SocketIo, Message::Text(t)) => {
            let s = t.as_str();
            // Engine.IO packet types: 0 open, 1 close, 2 ping, 3 pong, 4 message; a message's Socket.IO
            // packet types: 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR.
            if s == "2" {
                Ok(In::Ping)
            } else if let Some(rest) = s.strip_prefix("42[\"chat message\",") {
                seq_of(rest.as_bytes()).map(In::Chat).ok_or_else(|| "a chat message without a number".into())
            } else if s.starts_with("42[\"chat error\"") || s.starts_with("41") || s.starts_with("44") || s == "1" {
                Err(format!("socket.io ended or refused the session: {s}").into())
            } else {
                Ok(In::Other)
            }
        }
        (_, Message::Close(f)) => Err(format!("the server closed the connection ({f:?})").into()),
        _ => Ok(In::Other),
    }
}

fn pong(server: Server) -> Message {
    match server {
        Server::Hub => Message::binary(protocol::encode(protocol::PONG, b"")),
        Server::SocketIo => Message::text("3"),
    }
}

/// Message `seq`: a chat line to room `bench` whose 64-byte text starts with the number.
fn chat(server: Server, seq: u64) -> Message {
    let text = format!("{seq:0SEQ_DIGITS$}{}", "x".repeat(PAYLOAD - SEQ_DIGITS));
    match server {
        Server::Hub => Message::binary(protocol::encode(
            "chat message",
            format!("{{\"room\":\"{ROOM}\",\"text\":\"{text}\"}}").as_bytes(),
        )),
        Server::SocketIo => Message::text(format!("42[\"chat message\",{{\"room\":\"{ROOM}\",\"text\":\"{text}\"}}]")),
    }
}

/// The sequence number of a delivered chat message's JSON: the digits starting its `text`. A substring
/// search, not a JSON parse: the client's work per delivery stays small and the same for both servers.
fn seq_of(json: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"text\":\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    std::str::from_utf8(json.get(at..at + SEQ_DIGITS)?).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------------
// One row.

enum Done {
    /// Message `seq` reached its last client at this instant.
    Complete(u64, Instant),
    /// A client saw something wrong.
    Failed(String),
}

/// Per-message delivery counts, shared by every client of a row.
struct Tally {
    members: u32,
    slots: Box<[AtomicU32]>,
    done: mpsc::UnboundedSender<Done>,
}

impl Tally {
    fn delivered(&self, seq: u64, at: Instant) {
        let slot = &self.slots[seq as usize % SLOTS];
        // AcqRel: the client that brings the count to `members` sees every other client's increment,
        // and resets the slot before the sender can reuse it (it only hears of completion after).
        if slot.fetch_add(1, Ordering::AcqRel) + 1 == self.members {
            slot.store(0, Ordering::Release);
            let _ = self.done.send(Done::Complete(seq, at));
        }
    }

    fn fail(&self, why: String) {
        let _ = self.done.send(Done::Failed(why));
    }
}

/// One client's checks: every message once, in order.
struct Order(u64);

impl Order {
    fn check(&mut self, seq: u64) -> Result<(), String> {
        if seq != self.0 {
            return Err(format!("a client got message {seq} where {} was due", self.0));
        }
        self.0 += 1;
        Ok(())
    }
}

/// A client other than the sender: counts each message it reads, answers heartbeats, until aborted.
async fn receive(server: Server, mut ws: Ws, tally: Arc<Tally>) {
    let mut order = Order(0);
    loop {
        let m = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return tally.fail(format!("a client's connection failed: {e}")),
            None => return tally.fail("the server closed a client's connection".into()),
        };
        let at = Instant::now();
        match classify(server, m) {
            Ok(In::Chat(seq)) => match order.check(seq) {
                Ok(()) => tally.delivered(seq, at),
                Err(e) => return tally.fail(e),
            },
            Ok(In::Ping) => {
                if let Err(e) = ws.send(pong(server)).await {
                    return tally.fail(format!("a client could not answer a ping: {e}"));
                }
            }
            Ok(In::Other) => {}
            Err(e) => return tally.fail(e.to_string()),
        }
    }
}

/// The sender, also a member of the room (it counts its own copies as any client does).
struct SenderSide {
    server: Server,
    ws: Ws,
    order: Order,
    tally: Arc<Tally>,
    done: mpsc::UnboundedReceiver<Done>,
}

impl SenderSide {
    /// A completion already reported, if any (never waits).
    fn ready_done(&mut self) -> CliResult<Option<Instant>> {
        match self.done.try_recv() {
            Ok(Done::Complete(_, at)) => Ok(Some(at)),
            Ok(Done::Failed(why)) => Err(why.into()),
            Err(_) => Ok(None),
        }
    }

    /// Waits for the next completed message, reading the sender's own socket meanwhile.
    async fn next_done(&mut self, deadline: Instant) -> CliResult<(u64, Instant)> {
        loop {
            let got = tokio::select! {
                d = self.done.recv() => Ok(d),
                m = self.ws.next() => Err(m),
                _ = tokio::time::sleep_until(deadline.into()) => {
                    return Err("a message did not reach every client within 10 s".into())
                }
            };
            match got {
                Ok(Some(Done::Complete(seq, at))) => return Ok((seq, at)),
                Ok(Some(Done::Failed(why))) => return Err(why.into()),
                Ok(None) => return Err("the clients are gone".into()),
                Err(m) => {
                    let m = match m {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => return Err(format!("the sender's connection failed: {e}").into()),
                        None => return Err("the server closed the sender's connection".into()),
                    };
                    let at = Instant::now();
                    match classify(self.server, m)? {
                        In::Chat(seq) => {
                            self.order.check(seq)?;
                            self.tally.delivered(seq, at);
                        }
                        In::Ping => self.ws.send(pong(self.server)).await?,
                        In::Other => {}
                    }
                }
            }
        }
    }
}

/// Fills a room of `n` (the sender included), measures latency then throughput, and closes the
/// connections (their tasks are aborted, which drops the sockets).
async fn fanout_row(dep: Deployment, ports: &[u16], pids: &[u32], n: usize, s: &Settings) -> CliResult<FanoutRow> {
    let server = dep.server();
    let (tx, rx) = mpsc::unbounded_channel();
    let tally = Arc::new(Tally { members: n as u32, slots: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(), done: tx });
    // The receivers first, each reading from the moment it has joined (so that it keeps up with the
    // hub's presence events while the room fills: a client that falls 1,024 messages behind is dropped).
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    // Every receiver task, to abort (which drops its socket) when the row ends, however it ends.
    let receivers: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
    let mut setups = Vec::with_capacity(n - 1);
    for i in 1..n {
        let (gate, tally, receivers) = (gate.clone(), tally.clone(), receivers.clone());
        // Client i on process i mod P: the sender (client 0) and every P-th client on the first.
        let port = ports[i % ports.len()];
        setups.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let mut ws = open(server, port).await.map_err(|e| e.to_string())?;
            join(server, &mut ws).await.map_err(|e| e.to_string())?;
            drop(permit);
            // (No await between the spawn and the push: an abort of this task can't come in between.)
            let task = tokio::spawn(receive(server, ws, tally));
            receivers.lock().unwrap_or_else(PoisonError::into_inner).push(task.abort_handle());
            Ok::<_, String>(())
        }));
    }
    let result = async {
        for t in &mut setups {
            t.await.map_err(|e| e.to_string())??;
        }
        let mut ws = open(server, ports[0]).await?;
        join(server, &mut ws).await?;
        let mut tx = SenderSide { server, ws, order: Order(0), tally: tally.clone(), done: rx };
        measure(&mut tx, dep, pids, n, s).await
    }
    .await;
    // Closing (the sender's socket has dropped with `result`'s future).
    for t in &setups {
        t.abort();
    }
    for r in receivers.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
        r.abort();
    }
    result
}

async fn measure(tx: &mut SenderSide, dep: Deployment, pids: &[u32], n: usize, s: &Settings) -> CliResult<FanoutRow> {
    let server_cpu_ns = || pids.iter().map(|&p| proc_cpu_ns(p).unwrap_or(0)).sum::<u64>();
    let mut seq = 0u64;
    let mut h = histogram();
    for i in 0..s.warmup + s.samples {
        let t0 = Instant::now();
        tx.ws.send(chat(tx.server, seq)).await?;
        let (done, at) = tx.next_done(t0 + STALL).await?;
        if done != seq {
            return Err(format!("message {done} completed where {seq} was due").into());
        }
        if i >= s.warmup {
            h.saturating_record(at.saturating_duration_since(t0).as_nanos() as u64);
        }
        seq += 1;
    }
    // Throughput: refill the window after each completion, for `secs`; then let the last ones land.
    let (server_cpu0, client_cpu0) = (server_cpu_ns(), self_cpu_ns());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(s.secs);
    let (first, mut sent, mut done) = (seq, 0u64, 0u64);
    let mut last = start;
    let window = WINDOW as u64;
    loop {
        if Instant::now() < end && sent - done < window {
            while sent - done < window {
                tx.ws.feed(chat(tx.server, first + sent)).await?;
                sent += 1;
            }
            tx.ws.flush().await?;
        }
        if done == sent {
            break;
        }
        // One completion waited for, then every other one already reported taken at once, so that the
        // window is refilled with one write (not one per message: the sender's cost stays small).
        let (_, at) = tx.next_done(Instant::now() + STALL).await?;
        done += 1;
        last = at;
        while let Some(at) = tx.ready_done()? {
            done += 1;
            last = at;
        }
    }
    let elapsed = last.saturating_duration_since(start).as_secs_f64().max(1e-9);
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    let server_cpu = server_cpu_ns().saturating_sub(server_cpu0) as f64;
    let client_cpu = self_cpu_ns().saturating_sub(client_cpu0) as f64;
    let deliveries = (done * n as u64).max(1) as f64;
    Ok(FanoutRow {
        server: dep.name(),
        processes: dep.processes(),
        engine: dep.engine(),
        clients: n,
        size: PAYLOAD,
        latency_ns: Percentiles::of(&h),
        samples: s.samples,
        throughput: FanoutThroughput {
            deliveries_per_sec: (done * n as u64) as f64 / elapsed,
            broadcasts_per_sec: done as f64 / elapsed,
            window: WINDOW,
            secs: s.secs,
        },
        cpu: FanoutCpu {
            server_ns_per_delivery: server_cpu / deliveries,
            client_ns_per_delivery: client_cpu / deliveries,
            server_cores: server_cpu / 1e9 / wall,
            client_cores: client_cpu / 1e9 / wall,
        },
        socketio_ratio: None,
        one_hub_ratio: None,
    })
}

/// Opens `count` connections to a fresh server and leaves them idle (no room, nothing sent); the
/// server's RSS growth per connection. Ten connections opened and closed first, so that the first
/// connection's one-time costs (code paths, allocator arenas, JIT) are not counted.
async fn idle_memory(p: &Proc, count: usize) -> CliResult<IdleMemory> {
    for _ in 0..10 {
        drop(open(p.server, p.port).await?);
    }
    wait_quiet(p.pid()).await;
    let rss_before = rss(p.pid())?;
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut opening = Vec::with_capacity(count);
    for _ in 0..count {
        let (gate, server, port) = (gate.clone(), p.server, p.port);
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            open(server, port).await.map_err(|e| e.to_string())
        }));
    }
    let mut conns = Vec::with_capacity(count);
    for t in opening {
        conns.push(t.await.map_err(|e| e.to_string())??);
    }
    wait_quiet(p.pid()).await;
    let rss_after = rss(p.pid())?;
    drop(conns);
    wait_quiet(p.pid()).await;
    Ok(IdleMemory {
        server: p.server.name(),
        connections: count,
        rss_before,
        rss_after,
        bytes_per_connection: rss_after.saturating_sub(rss_before) as f64 / count as f64,
    })
}

// ---------------------------------------------------------------------------------------------------
// The table.

/// The fan-out section of the table (empty when the group did not run).
pub fn table(r: &FanoutReport, skipped: &[Skipped]) -> String {
    let mut out = String::new();
    let fan_skips: Vec<&Skipped> = skipped.iter().filter(|s| s.clients.is_some()).collect();
    if r.rows.is_empty() && r.memory.is_empty() && fan_skips.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nfan-out: one broadcast to a room of N WebSocket clients ({PAYLOAD} B text; latency: send to the last client's receipt)"
    );
    let _ = writeln!(
        out,
        "{:<10} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>11} {:>9} | {:>9} {:>9} | {:>8} {:>8} {:>8} {:>10}",
        "server",
        "clients",
        "p50",
        "p90",
        "p99",
        "max",
        "deliveries/s",
        "bcasts/s",
        "srv ns/dl",
        "cores s/c",
        "tput/sio",
        "p50/sio",
        "p99/sio",
        "p99/sio-p50"
    );
    let _ = writeln!(out, "{}", "-".repeat(146));
    for row in r.rows.iter().filter(|r| r.processes == 1) {
        let ratio = row.socketio_ratio.map_or_else(
            || ["-".to_string(), "-".into(), "-".into(), "-".into()],
            |x| {
                [
                    format!("{:.2}", x.throughput),
                    format!("{:.2}", x.latency_p50),
                    format!("{:.2}", x.latency_p99),
                    format!("{:.2}", x.p99_to_socketio_p50),
                ]
            },
        );
        let _ = writeln!(
            out,
            "{:<10} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>11} {:>9} | {:>9.0} {:>9} | {:>8} {:>8} {:>8} {:>10}",
            row.server,
            row.clients,
            ns(row.latency_ns.p50),
            ns(row.latency_ns.p90),
            ns(row.latency_ns.p99),
            ns(row.latency_ns.max),
            rate(row.throughput.deliveries_per_sec),
            rate(row.throughput.broadcasts_per_sec),
            row.cpu.server_ns_per_delivery,
            format!("{:.2}/{:.2}", row.cpu.server_cores, row.cpu.client_cores),
            ratio[0],
            ratio[1],
            ratio[2],
            ratio[3]
        );
    }
    let scale: Vec<&FanoutRow> = r.rows.iter().filter(|r| r.processes > 1).collect();
    if !scale.is_empty() {
        let _ = writeln!(
            out,
            "\nscale-out: two server processes sharing the room through an engine, the clients split between them \
             (the sender on the first)"
        );
        let _ = writeln!(
            out,
            "{:<19} {:>7} | {:>8} {:>8} {:>8} | {:>11} | {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>8} {:>8}",
            "server",
            "clients",
            "p50",
            "p99",
            "max",
            "deliveries/s",
            "srv ns/dl",
            "cores s/c",
            "p50/1hub",
            "p99/1hub",
            "tput/1hub",
            "tput/sio",
            "p50/sio"
        );
        let _ = writeln!(out, "{}", "-".repeat(143));
        let f = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x:.2}"));
        for row in scale {
            let _ = writeln!(
                out,
                "{:<19} {:>7} | {:>8} {:>8} {:>8} | {:>11} | {:>9.0} {:>9} | {:>8} {:>8} {:>8} | {:>8} {:>8}",
                row.server,
                row.clients,
                ns(row.latency_ns.p50),
                ns(row.latency_ns.p99),
                ns(row.latency_ns.max),
                rate(row.throughput.deliveries_per_sec),
                row.cpu.server_ns_per_delivery,
                format!("{:.2}/{:.2}", row.cpu.server_cores, row.cpu.client_cores),
                f(row.one_hub_ratio.map(|x| x.latency_p50)),
                f(row.one_hub_ratio.map(|x| x.latency_p99)),
                f(row.one_hub_ratio.map(|x| x.throughput)),
                f(row.socketio_ratio.map(|x| x.throughput)),
                f(row.socketio_ratio.map(|x| x.latency_p50)),
            );
        }
        let _ = writeln!(
            out,
            "p50/1hub, p99/1hub, tput/1hub: this row / the one-process hub row of the same N (target for hub-2-shm: latency <= 1.2);\n\
             tput/sio, p50/sio: this row / socket.io-2-redis (socket.io's redis-adapter; target for the hub's Redis rows: tput >= 5 at 1000)."
        );
    }
    for s in &fan_skips {
        let _ = writeln!(out, "{:<10} {:>7} | skipped: {}", s.transport, s.clients.unwrap_or(0), s.reason);
    }
    for m in &r.memory {
        let _ = writeln!(
            out,
            "idle memory: {:<10} {:>6.1} KiB per connection (RSS {:.1} -> {:.1} MiB with {} idle connections)",
            m.server,
            m.bytes_per_connection / 1024.0,
            m.rss_before as f64 / (1 << 20) as f64,
            m.rss_after as f64 / (1 << 20) as f64,
            m.connections
        );
    }
    let _ = writeln!(
        out,
        "srv ns/dl: the server's CPU time per delivery in the throughput phase; cores s/c: CPU time / wall time of the\n\
         server / the load generator (this process) in that phase (the two share the machine's CPUs).\n\
         tput/sio: deliveries/s, hub / socket.io (target >= 5 at 1000 clients); p50/sio, p99/sio: latency, hub / socket.io;\n\
         p99/sio-p50: the hub's p99 / socket.io's p50 (target <= 1). Idle memory target: <= 16 KiB per connection."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip_through_both_wires() {
        for server in [Server::Hub, Server::SocketIo] {
            let body = match chat(server, 42) {
                Message::Binary(b) => protocol::decode(b).unwrap().body().to_vec(),
                Message::Text(t) => t.as_str().strip_prefix("42[\"chat message\",").unwrap().as_bytes().to_vec(),
                other => panic!("{other:?}"),
            };
            let v: serde_json::Value = serde_json::from_slice(body.strip_suffix(b"]").unwrap_or(&body)).unwrap();
            assert_eq!(v["text"].as_str().unwrap().len(), PAYLOAD);
            assert_eq!(seq_of(&body), Some(42));
        }
        // As the servers send it back: other keys around, either order.
        assert_eq!(seq_of(br#"{"at":1,"from":"x","room":"bench","text":"000000000007xxxx"}"#), Some(7));
        assert_eq!(seq_of(br#"{"text":"nope"}"#), None);
    }

    #[test]
    fn a_row_leaves_the_window_only_when_every_member_has_it() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = Tally { members: 3, slots: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(), done: tx };
        let now = Instant::now();
        t.delivered(5, now);
        t.delivered(5, now);
        assert!(rx.try_recv().is_err());
        t.delivered(5, now);
        assert!(matches!(rx.try_recv(), Ok(Done::Complete(5, _))));
        assert_eq!(t.slots[5].load(Ordering::Relaxed), 0, "reset for reuse");
        let mut o = Order(0);
        assert!(o.check(0).is_ok() && o.check(1).is_ok() && o.check(3).is_err());
    }
}
