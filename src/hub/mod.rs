//! The hub (feature `hub`): socket.io's real-time model — connections, rooms, broadcasts,
//! acknowledgements both ways, server push — over WebSocket, with ringwire's framing on the wire, and
//! the limits a server facing the internet needs (token and origin checks before the upgrade,
//! heartbeats, a maximum message size, a bounded send queue per connection, a connection cap, a
//! handshake deadline).
//!
//! One HTTP/1.1 listener serves the chat page at `/`, its ES-module JavaScript client at `/client.js`
//! and the WebSocket endpoint at `/ws`. The wire protocol, byte for byte, is in ARCHITECTURE.md ("Hub
//! protocol"); [`protocol`] has its names and close codes. `ringwire hub` runs one as is.
//!
//! ```no_run
//! use ringwire::hub::{Hub, HubConfig};
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::new(HubConfig { token: Some("secret".into()), ..HubConfig::default() });
//! // Every "chat message" goes to the sender's rooms, the sender left out (socket.io's
//! // `socket.to(room).emit`), and is acknowledged.
//! hub.on("chat message", |ev| {
//!     let text: String = ev.decode().unwrap_or_default();
//!     for room in ev.conn().rooms() {
//!         let _ = ev.conn().to(&room).emit("chat message", &text);
//!     }
//!     let _ = ev.ack(&"ok");
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! hub.serve(listener).await
//! # }
//! ```
//!
//! # Atomics
//!
//! The hub runs on tokio and is not model-checked with loom (the rings and the wait protocol are); its
//! atomics are std's, and all `Relaxed`: counters (statistics, ids, the connection cap's count, where
//! only the count itself matters) and flags that publish no data — each read either under the mutex
//! that ordered its write (`replaced`, under the recovery log's mutex), in the task that wrote it
//! (`client_closed`), or after a tokio `Notify` / lock handoff that synchronizes (`upgraded`, the
//! client's `closing`); a stale read there costs one more wait or ping, never a wrong result.
//!
//! # Threads
//!
//! Listeners run on the connection's reader task, in the order that connection's events arrive; a
//! listener that blocks holds up that connection only (use `tokio::spawn` for slow work). Emitting
//! never waits: messages go to each connection's bounded queue, drained by its writer task.

mod client;
mod cluster;
mod conn;
mod handle;
mod polling;
pub mod protocol;
mod recovery;
mod rooms;
mod server;

pub use client::{ClientEvent, ClientOptions, ClientState, HubClient};
pub use cluster::Cluster;
pub use conn::{ConnId, DisconnectReason};
pub use handle::{Conn, HubEvent};
pub use recovery::{Recovery, OFFSET_PREFIX};
pub use rooms::{BroadcastAck, Emit};
pub use server::Handshake;

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::events::{EventEmitter, ListenerId};

/// How a hub runs. `Default` gives socket.io's defaults where it has them.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The token a client must present (`?token=` or `Authorization: Bearer`); `None`: no token check.
    /// Replaced by [`Hub::auth`] when set.
    pub token: Option<String>,
    /// Which `Origin` headers may open a WebSocket (browsers send one; other clients usually don't, and
    /// are not checked). Default: [`Origins::SameHost`].
    pub origins: Origins,
    /// How often the hub pings each client (socket.io's `pingInterval`, 25 s).
    pub ping_interval: Duration,
    /// How long a client has to answer a ping (socket.io's `pingTimeout`, 20 s): a stalled client is
    /// dropped within `ping_interval + ping_timeout`.
    pub ping_timeout: Duration,
    /// The largest message a client may send, in bytes, frame header included (socket.io's
    /// `maxHttpBufferSize`, 1 MB); over it the connection is closed with 1009. Also the largest the hub
    /// sends.
    pub max_message: usize,
    /// Messages queued for one connection before it counts as a slow client and is dropped (4001).
    pub send_queue: usize,
    /// Open WebSocket connections at most; further handshakes get HTTP 503.
    pub max_connections: usize,
    /// How long a TCP connection may take to deliver its HTTP request headers (slow clients and idle
    /// keep-alive connections are closed after it).
    pub handshake_timeout: Duration,
    /// Connection-state recovery (socket.io's `connectionStateRecovery`): `None` (the default) for
    /// none. With it, a client that lost its connection and comes back within the window gets its id,
    /// its rooms and every event it missed, once and in order (ARCHITECTURE.md, "Connection-state
    /// recovery"). With a [`Cluster::RedisStream`] cluster it works across hubs: a client may come
    /// back to any hub of the cluster, or to a restarted one (ARCHITECTURE.md, "Recovery across hubs").
    pub recovery: Option<Recovery>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            token: None,
            origins: Origins::SameHost,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_message: 1 << 20,
            send_queue: 1024,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            recovery: None,
        }
    }
}

/// The `Origin` policy of [`HubConfig::origins`]. A handshake with a refused origin gets HTTP 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origins {
    /// Only pages served by the hub itself: the origin's `host[:port]` equals the `Host` header.
    SameHost,
    /// Any origin (socket.io's default without `cors`). Leaves cross-site pages free to connect with a
    /// token they know; fine for a token-less local hub.
    Any,
    /// Exactly these origins (`scheme://host[:port]`, compared case-insensitively).
    List(Vec<String>),
}

/// The hub's errors (one vocabulary for emits, acks and the server).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// An event name that is empty, longer than 255 bytes, or starts with `ringwire:`.
    #[error("event name of {0} bytes: names are 1 to 255 bytes and may not start with \"ringwire:\"")]
    BadName(usize),
    /// A message over `max_message` (`size` counts the 8-byte header).
    #[error("message of {size} bytes exceeds the limit of {max}")]
    Oversize {
        /// The encoded message size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A payload that does not encode, or a body that does not decode as the type asked for.
    #[error("event payload: {0}")]
    Json(#[from] serde_json::Error),
    /// No reply within the timeout.
    #[error("no acknowledgement within the timeout")]
    Timeout,
    /// The hub refused: the HTTP status of a refused handshake (401 token, 403 origin, 503 full) or 0
    /// for a refused request (a join), and the hub's reason.
    #[error("refused ({status}): {reason}")]
    Refused {
        /// The HTTP status, or 0 for a refusal after the handshake.
        status: u16,
        /// What the hub said.
        reason: String,
    },
    /// The client is disconnected and its send buffer (of this many messages) is full.
    #[error("disconnected, and the send buffer of {0} messages is full")]
    BufferFull(usize),
    /// The connection (or the hub) is closed.
    #[error("the connection is closed")]
    Closed,
    /// The listener or the connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The checks on a name an application emits.
pub(crate) fn check_user_name(name: &str) -> Result<(), HubError> {
    if name.is_empty() || name.len() > crate::socket::MAX_NAME || name.starts_with(crate::socket::RESERVED_PREFIX) {
        return Err(HubError::BadName(name.len()));
    }
    Ok(())
}

type ConnHook = Arc<dyn Fn(&Conn) + Send + Sync>;
type EndHook = Arc<dyn Fn(&Conn, &DisconnectReason) + Send + Sync>;
type RoomHook = Arc<dyn Fn(&Conn, &str) + Send + Sync>;
type JoinCheck = Arc<dyn Fn(&Conn, &str) -> Result<(), String> + Send + Sync>;
type AuthCheck = Arc<dyn Fn(&Handshake) -> Result<(), String> + Send + Sync>;

#[derive(Default)]
struct Hooks {
    connection: Vec<ConnHook>,
    disconnecting: Vec<EndHook>,
    disconnect: Vec<EndHook>,
    join_room: Vec<RoomHook>,
    leave_room: Vec<RoomHook>,
    join: Option<JoinCheck>,
    auth: Option<AuthCheck>,
}

/// The most rooms one connection may be in (its own included); a client's join beyond it is refused
/// (`{"ok": false}`), so that one connection can't grow the hub's room table without bound.
/// [`Conn::join`] (the application's own joins) is not limited.
pub const MAX_ROOMS_PER_CONNECTION: usize = 1024;

/// What the hub's tasks and handles share.
pub(crate) struct Shared {
    config: HubConfig,
    registry: RwLock<rooms::Registry>,
    /// Recovery's log and sessions (used only with `config.recovery`). Lock order: this, then
    /// `registry`.
    log: std::sync::Mutex<recovery::Log>,
    events: EventEmitter<HubEvent>,
    hooks: RwLock<Hooks>,
    /// This hub's ack token (the `<token>` of the acks it asks for).
    token: u64,
    next_ack: AtomicU64,
    /// WebSocket connections open or being opened (the cap counts these).
    open: AtomicUsize,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The cluster this hub publishes to ([`Hub::join_cluster`]).
    /// Set once; read without a lock on every emit.
    cluster: std::sync::OnceLock<cluster::Outlet>,
    cluster_counters: Arc<cluster::Counters>,
    /// Polling sessions by pid.
    polls: std::sync::Mutex<std::collections::HashMap<Arc<str>, Arc<polling::PollSession>>>,
    /// Notified when the last open connection ends.
    drained: tokio::sync::Notify,
    stats: server::Stats,
}

impl Shared {
    /// In a cluster: the record for this emit, or `Oversize` when it does not fit the engine (checked
    /// before anything is sent). `None` outside a cluster.
    fn cluster_record(
        &self,
        target: impl FnOnce() -> recovery::Target,
        name: &str,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, HubError> {
        let Some(out) = self.cluster.get() else { return Ok(None) };
        let rec = cluster::encode(out.node, &target(), name, body);
        if rec.len() > out.max_record {
            return Err(HubError::Oversize { size: rec.len(), max: out.max_record });
        }
        Ok(Some(rec))
    }

    /// Whether recovery goes across hubs: recoverable emits reach even this hub's connections through
    /// the stream (ARCHITECTURE.md, "Recovery across hubs").
    fn ordered(&self) -> bool {
        self.cluster.get().is_some_and(cluster::Outlet::ordered)
    }

    /// The shared log of recovery across hubs, if this hub has one.
    #[cfg(feature = "redis")]
    fn shared_log(&self) -> Option<Arc<cluster::SharedLog>> {
        self.cluster.get().and_then(|o| o.shared_log.clone())
    }

    /// Hands a record to the cluster's publisher thread.
    fn cluster_publish(&self, rec: Vec<u8>) {
        if let Some(out) = self.cluster.get() {
            out.publish(rec, &self.cluster_counters);
        }
    }
}

/// A hub: the registry of connections and rooms, the application's listeners, and the server that
/// feeds them ([`Hub::serve`]). Cheap to clone (one shared hub); every method may be called from any
/// thread, inside or outside the tokio runtime, except [`serve`](Self::serve) and the `_with_ack`
/// emits, which are async.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("connections", &self.connection_count()).finish()
    }
}

impl Hub {
    /// A hub with this configuration; nothing listens until [`serve`](Self::serve).
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            shared: Arc::new(Shared {
                config,
                registry: RwLock::default(),
                log: std::sync::Mutex::default(),
                events: EventEmitter::new(),
                hooks: RwLock::default(),
                token: protocol::random_u64(),
                next_ack: AtomicU64::new(1),
                open: AtomicUsize::new(0),
                shutdown: tokio::sync::watch::channel(false).0,
                drained: tokio::sync::Notify::new(),
                polls: std::sync::Mutex::default(),
                cluster: std::sync::OnceLock::new(),
                cluster_counters: Arc::default(),
                stats: server::Stats::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// Calls `listener` for every event `name` a client sends (socket.io's `socket.on(name, ...)`,
    /// registered once for all connections). Events nobody listens to are dropped (counted in
    /// [`HubStats::unhandled`]). More registration forms (`once`, `off`, ...) are on
    /// [`emitter`](Self::emitter).
    pub fn on(&self, name: &str, listener: impl Fn(&HubEvent) + Send + Sync + 'static) -> ListenerId {
        self.shared.events.on(name, listener)
    }

    /// The emitter client events are dispatched to.
    pub fn emitter(&self) -> &EventEmitter<HubEvent> {
        &self.shared.events
    }

    fn hooks(&self) -> std::sync::RwLockWriteGuard<'_, Hooks> {
        self.shared.hooks.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `f` for each new connection before its hello is sent and before any of its events is
    /// dispatched (socket.io's `io.on("connection")`): rooms it joins here are joined by the time the
    /// client sees its hello.
    pub fn on_connection(&self, f: impl Fn(&Conn) + Send + Sync + 'static) {
        self.hooks().connection.push(Arc::new(f));
    }

    /// Calls `f` when a connection is ending, while it is still in its rooms (socket.io's
    /// `disconnecting`).
    pub fn on_disconnecting(&self, f: impl Fn(&Conn, &DisconnectReason) + Send + Sync + 'static) {
        self.hooks().disconnecting.push(Arc::new(f));
    }

    /// Calls `f` after a connection ended and left every room (socket.io's `disconnect`).
    pub fn on_disconnect(&self, f: impl Fn(&Conn, &DisconnectReason) + Send + Sync + 'static) {
        self.hooks().disconnect.push(Arc::new(f));
    }

    /// Calls `f` after a connection joined a room, by its client's request or the application's
    /// [`Conn::join`] (socket.io's adapter event `join-room`); not for the room of its own id.
    pub fn on_join_room(&self, f: impl Fn(&Conn, &str) + Send + Sync + 'static) {
        self.hooks().join_room.push(Arc::new(f));
    }

    /// Calls `f` after a connection left a room by request or [`Conn::leave`] (socket.io's
    /// `leave-room`); a connection that disconnects leaves its rooms without it (see
    /// [`on_disconnecting`](Self::on_disconnecting)).
    pub fn on_leave_room(&self, f: impl Fn(&Conn, &str) + Send + Sync + 'static) {
        self.hooks().leave_room.push(Arc::new(f));
    }

    /// Decides the clients' `ringwire:join` requests (`Err(reason)` refuses, and the client's ack gets
    /// `{"ok": false, "error": reason}`). Without one, any room may be joined except another
    /// connection's own room.
    pub fn on_join(&self, f: impl Fn(&Conn, &str) -> Result<(), String> + Send + Sync + 'static) {
        self.hooks().join = Some(Arc::new(f));
    }

    /// Replaces the token check of [`HubConfig::token`] with `f`: `Err(reason)` refuses the handshake
    /// with HTTP 401 and `reason` as the body. Runs after the origin check.
    pub fn auth(&self, f: impl Fn(&Handshake) -> Result<(), String> + Send + Sync + 'static) {
        self.hooks().auth = Some(Arc::new(f));
    }

    /// Counters since the hub started.
    pub fn stats(&self) -> HubStats {
        let mut s = self.shared.stats.snapshot();
        let c = &self.shared.cluster_counters;
        // Relaxed: independent counters.
        s.cluster_published = c.published.load(std::sync::atomic::Ordering::Relaxed);
        s.cluster_received = c.received.load(std::sync::atomic::Ordering::Relaxed);
        s.cluster_lost = c.lost.load(std::sync::atomic::Ordering::Relaxed);
        s.cluster_bad = c.bad.load(std::sync::atomic::Ordering::Relaxed);
        s.cluster_outages = c.outages.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(rec) = &self.shared.config.recovery {
            let mut log = self.shared.log.lock().unwrap_or_else(PoisonError::into_inner);
            log.expire(rec);
            s.replay_window = log.window_len() as u64;
            s.kept_sessions = log.kept_len() as u64;
        }
        s
    }

    /// Stops accepting, closes every connection with 1001 and makes [`serve`](Self::serve) return.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let reg = self.shared.registry.read().unwrap_or_else(PoisonError::into_inner);
        for m in reg.conns.values() {
            m.conn.close(protocol::close::GOING_AWAY, "the hub is shutting down");
        }
    }
}

/// Hub counters ([`Hub::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// Handshakes refused (401, 403, 503, 426, 400).
    pub refused: u64,
    /// TCP connections closed at accept because too many were open.
    pub shed: u64,
    /// Connections dropped because their send queue was full.
    pub slow_clients: u64,
    /// Client events no listener handled.
    pub unhandled: u64,
    /// Ack replies that arrived after their timeout, or for no pending ack.
    pub stale_acks: u64,
    /// Cluster: records this hub published.
    pub cluster_published: u64,
    /// Cluster: records from other hubs delivered here.
    pub cluster_received: u64,
    /// Cluster: records lost (a full outbox, a failed publish, a lap lost on the ring, a Redis
    /// subscriber's gap).
    pub cluster_lost: u64,
    /// Cluster: malformed records skipped.
    pub cluster_bad: u64,
    /// Cluster: times this hub's receiver found the engine unreachable (each outage once); it keeps
    /// retrying and goes on when the engine is back.
    pub cluster_outages: u64,
    /// Recovery: events in the replay window now.
    pub replay_window: u64,
    /// Recovery: sessions of lost connections kept for a reconnect now, in this hub's memory (with
    /// recovery across hubs they are kept in Redis instead, and this is 0).
    pub kept_sessions: u64,
}
