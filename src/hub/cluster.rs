//! Scale-out (socket.io's adapters): several hubs share their rooms through an engine that exists —
//! ringwire's shared-memory broadcast ring for hubs on one host, Redis (pub/sub or Streams) for hubs on
//! several. Every emit a hub's application makes is delivered to its own connections and published as
//! one record; every other hub delivers the record to its connections in the same target (rooms,
//! exceptions). ARCHITECTURE.md, "Scale-out", has the record byte for byte and what each engine can
//! lose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::recovery::Target;
use super::rooms::Emit;
use super::{Hub, HubError, Shared};
use crate::socket::{FrameSink, FrameSource, Ring};
use crate::transport::{TransportRecvError, TransportSendError, Wait};

/// Records queued for a hub's publisher thread before emits fail over to counting them lost.
const OUTBOX: usize = 4096;
/// How often the receiver thread looks at whether the hub is still there.
const POLL: Duration = Duration::from_millis(100);

/// Where a hub meets the others ([`Hub::join_cluster`]).
#[derive(Clone, Debug)]
pub enum Cluster {
    /// Hubs on one host: a named shared-memory broadcast ring (created by the first hub, opened by the
    /// others; one left by hubs that died is taken over). Overwrite mode: a hub that falls a lap behind
    /// loses records, and counts them ([`HubStats::cluster_lost`](super::HubStats::cluster_lost)).
    Shm {
        /// The ring's name under /dev/shm.
        name: String,
        /// Bytes of the ring's data area (a power of two; 64 MiB is 1,024 records of 64 KiB).
        capacity: usize,
        /// The largest record (name, body and target, plus 8 bytes per room); an emit that does not
        /// fit is refused with [`HubError::Oversize`] before anything is sent.
        max_message: usize,
    },
    /// Hubs anywhere: Redis pub/sub on `channel`. At most once: what is published while a hub is
    /// disconnected from Redis never reaches it (reported as lost).
    #[cfg(feature = "redis")]
    RedisPubSub {
        /// `redis://host:port`.
        url: String,
        /// The channel.
        channel: String,
    },
    /// Hubs anywhere: a Redis stream at `key`, each hub reading it with its own consumer group. At least
    /// once and resumable: a hub that loses Redis goes on from its group's position when it is back, and
    /// its own records wait in its outbox (bounded) until they can be added.
    #[cfg(feature = "redis")]
    RedisStream {
        /// `redis://host:port`.
        url: String,
        /// The stream's key.
        key: String,
        /// The stream is trimmed to about this many entries (`MAXLEN ~`): how far back a hub that lost
        /// Redis can resume.
        max_len: usize,
    },
}

impl Cluster {
    /// A shared-memory cluster with the defaults (64 MiB ring, records up to 64 KiB).
    pub fn shm(name: &str) -> Cluster {
        Cluster::Shm { name: name.to_owned(), capacity: 64 << 20, max_message: 64 << 10 }
    }
}

/// Cluster counters (in [`HubStats`](super::HubStats)).
#[derive(Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub lost: AtomicU64,
    pub bad: AtomicU64,
    pub outages: AtomicU64,
}

/// The publishing side a hub holds.
pub(crate) struct Outlet {
    pub node: u64,
    pub max_record: usize,
    path: Path,
    /// Recovery across hubs: the stream that is the shared log (ARCHITECTURE.md, "Recovery across
    /// hubs"). `Some` only for a `RedisStream` cluster with recovery on.
    #[cfg(feature = "redis")]
    pub shared_log: Option<Arc<SharedLog>>,
}

impl Outlet {
    /// Whether recoverable emits go through the stream first (recovery across hubs).
    pub fn ordered(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.shared_log.is_some();
        #[cfg(not(feature = "redis"))]
        return false;
    }
}

/// The receiving side: any engine's frames, or a stream consumer whose entry ids are offsets.
enum Source {
    Any(Box<dyn FrameSource>),
    #[cfg(feature = "redis")]
    Stream(Box<crate::transport::redis::StreamConsumer>),
}

impl Source {
    fn recv_frame_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<u16, crate::socket::EventRecvError> {
        match self {
            Source::Any(s) => s.recv_frame_into(wait, buf),
            #[cfg(feature = "redis")]
            Source::Stream(s) => s.recv_frame_into(wait, buf),
        }
    }

    /// The offset of the record just received (a stream's entry id), when this source has them.
    fn position(&self) -> Option<u64> {
        match self {
            Source::Any(_) => None,
            #[cfg(feature = "redis")]
            Source::Stream(s) => s.last_id().and_then(stream_offset),
        }
    }
}

/// A stream entry id `MS-SEQ` as one offset, `MS << 20 | SEQ`; `None` when it does not fit (a SEQ of
/// 2^20 or more, an MS of 2^44 or more: year 2527) or is not an id.
#[cfg(feature = "redis")]
pub(crate) fn stream_offset(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    (ms < 1 << 44 && seq < 1 << 20).then_some(ms << 20 | seq)
}

/// The stream entry id of an offset (the inverse of [`stream_offset`]).
#[cfg(feature = "redis")]
pub(crate) fn stream_id(offset: u64) -> String {
    format!("{}-{}", offset >> 20, offset & ((1 << 20) - 1))
}

/// Stream records with their offsets, in stream order.
pub(crate) type Records = Vec<(u64, Vec<u8>)>;

/// A kept session as stored in Redis (recovery across hubs).
pub(crate) struct RemoteSession {
    pub id: super::conn::ConnId,
    pub rooms: std::collections::HashSet<Arc<str>>,
    pub floors: super::conn::Floors,
    /// The stream's records after the client's offset, with their offsets, when this hub's own log
    /// can't replay them (`None`: not replayable: trimmed, too many, or Redis did not answer).
    pub entries: Option<Records>,
}

/// Recovery across hubs: the sessions kept in Redis and the stream read back for a replay. The
/// commands run on one thread per hub, in the order they were asked for (so a session stored when
/// its connection was lost is there for a reconnect to the same hub, however soon it comes); the
/// queue is bounded.
#[cfg(feature = "redis")]
pub(crate) struct SharedLog {
    ops: SyncSender<SessionOp>,
}

#[cfg(feature = "redis")]
enum SessionOp {
    Keep {
        sid: Arc<str>,
        id: super::conn::ConnId,
        rooms: Vec<Arc<str>>,
        floors: super::conn::Floors,
        ttl: Duration,
    },
    Take {
        sid: String,
        offset: u64,
        max: usize,
        local_covers: bool,
        reply: tokio::sync::oneshot::Sender<Option<RemoteSession>>,
    },
    Flush(std::sync::mpsc::Sender<()>),
}

/// Session commands queued before a `keep` is dropped (and counted as a warning).
#[cfg(feature = "redis")]
const SESSION_OPS: usize = 4096;

/// How long one command of the session thread may take to write or read.
#[cfg(feature = "redis")]
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a reconnect waits for its session from Redis at most.
#[cfg(feature = "redis")]
const TAKE_DEADLINE: Duration = Duration::from_secs(4);

/// After a failed connection to Redis, the session thread fails its commands at once for this long
/// (a backlog of keeps behind an unreachable server drains in moments, not one timeout each).
#[cfg(feature = "redis")]
const DOWN_PAUSE: Duration = Duration::from_secs(1);

/// The most rooms a stored session may hold (a bound on what a reply can make this hub allocate).
#[cfg(feature = "redis")]
const MAX_SESSION_ROOMS: usize = 100_000;

#[cfg(feature = "redis")]
impl SharedLog {
    /// Reads the stream's last entry (the offset this hub's log starts at) and starts the session
    /// thread, which ends when this is dropped.
    fn start(client: redis::Client, key: String) -> Result<(SharedLog, u64), String> {
        let mut store = SessionStore { client, key, con: None, down_until: None };
        let tail = store.tail()?;
        let (ops, rx) = sync_channel(SESSION_OPS);
        std::thread::Builder::new()
            .name("hub sessions".into())
            .spawn(move || {
                while let Ok(op) = rx.recv() {
                    store.serve(op);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok((SharedLog { ops }, tail))
    }

    /// Stores a lost connection's session for `ttl`.
    pub fn keep(
        &self,
        sid: Arc<str>,
        id: super::conn::ConnId,
        rooms: Vec<Arc<str>>,
        floors: super::conn::Floors,
        ttl: Duration,
    ) {
        if self.ops.try_send(SessionOp::Keep { sid, id, rooms, floors, ttl }).is_err() {
            log::warn!("hub recovery: the session queue is full; a lost connection's session is not kept");
        }
    }

    /// Takes a stored session (one reconnect gets it), with the stream's records after `offset`
    /// unless `local_covers`. `None`: no such session, or Redis did not answer within
    /// [`TAKE_DEADLINE`] (the reconnect then starts clean rather than wait behind an outage).
    pub async fn take(&self, sid: String, offset: u64, max: usize, local_covers: bool) -> Option<RemoteSession> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.ops.try_send(SessionOp::Take { sid, offset, max, local_covers, reply }).ok()?;
        tokio::time::timeout(TAKE_DEADLINE, rx).await.ok()?.ok().flatten()
    }

    /// Waits (at most `limit`) until every session queued so far is stored.
    pub fn flush(&self, limit: Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.ops.try_send(SessionOp::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(limit);
        }
    }
}

/// The session thread's connection and commands. Every command blocks at most [`IO_TIMEOUT`] per
/// read or write.
#[cfg(feature = "redis")]
struct SessionStore {
    client: redis::Client,
    key: String,
    con: Option<redis::Connection>,
    /// Until when commands fail at once (Redis was unreachable).
    down_until: Option<Instant>,
}

#[cfg(feature = "redis")]
impl SessionStore {
    fn serve(&mut self, op: SessionOp) {
        match op {
            SessionOp::Keep { sid, id, rooms, floors, ttl } => {
                if let Err(e) = self.store(&sid, &id, &rooms, &floors, ttl) {
                    log::warn!("hub recovery: a session could not be kept in Redis: {e}");
                }
            }
            SessionOp::Take { sid, offset, max, local_covers, reply } => {
                let taken = self.take(&sid, offset, max, local_covers).unwrap_or_else(|e| {
                    log::warn!("hub recovery: a session could not be read from Redis: {e}");
                    None
                });
                let _ = reply.send(taken);
            }
            SessionOp::Flush(done) => {
                let _ = done.send(());
            }
        }
    }

    /// One command on the connection, made (again) if there is none; a failed command drops it.
    fn run<T>(&mut self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, String> {
        if self.down_until.is_some_and(|t| Instant::now() < t) {
            return Err("Redis was unreachable a moment ago".into());
        }
        if self.con.is_none() {
            let con = self.client.get_connection_with_timeout(IO_TIMEOUT).map_err(|e| {
                self.down_until = Some(Instant::now() + DOWN_PAUSE);
                e.to_string()
            })?;
            con.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
            con.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
            self.con = Some(con);
        }
        let r = f(self.con.as_mut().expect("made above"));
        if let Err(e) = &r {
            self.con = None;
            if e.is_io_error() || e.is_timeout() {
                self.down_until = Some(Instant::now() + DOWN_PAUSE);
            }
        }
        r.map_err(|e| e.to_string())
    }

    fn session_key(&self, sid: &str) -> String {
        format!("{}:session:{sid}", self.key)
    }

    /// The stream's last entry, as an offset (0: empty or no stream).
    fn tail(&mut self) -> Result<u64, String> {
        let key = self.key.clone();
        let reply: redis::streams::StreamRangeReply =
            self.run(|con| redis::cmd("XREVRANGE").arg(&key).arg("+").arg("-").arg("COUNT").arg(1).query(con))?;
        Ok(reply.ids.first().and_then(|e| stream_offset(&e.id)).unwrap_or(0))
    }

    /// `SET KEY:session:SID {"id","start","rooms":{ROOM: offset at its join}} PX ttl`.
    fn store(
        &mut self,
        sid: &str,
        id: &str,
        rooms: &[Arc<str>],
        floors: &super::conn::Floors,
        ttl: Duration,
    ) -> Result<(), String> {
        let rooms: serde_json::Map<String, serde_json::Value> =
            rooms.iter().map(|r| (r.to_string(), floors.of(r).into())).collect();
        let value = serde_json::json!({"id": id, "start": floors.start, "rooms": rooms}).to_string();
        let ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let key = self.session_key(sid);
        self.run(|con| redis::cmd("SET").arg(&key).arg(&value).arg("PX").arg(ms).exec(con))
    }

    /// `GETDEL` the session, then (unless `local_covers`) the stream after `offset`. A stored value
    /// that is not a session is an error: it is never trusted, but checked field by field.
    fn take(
        &mut self,
        sid: &str,
        offset: u64,
        max: usize,
        local_covers: bool,
    ) -> Result<Option<RemoteSession>, String> {
        let key = self.session_key(sid);
        let raw: Option<Vec<u8>> = self.run(|con| redis::cmd("GETDEL").arg(&key).query(con))?;
        let Some(raw) = raw else { return Ok(None) };
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| format!("a stored session: {e}"))?;
        let id =
            v["id"].as_str().filter(|id| !id.is_empty() && id.len() <= 255).ok_or("a stored session without an id")?;
        let start = v["start"].as_u64().ok_or("a stored session without a start")?;
        let rooms =
            v["rooms"].as_object().filter(|r| r.len() <= MAX_SESSION_ROOMS).ok_or("a stored session's rooms")?;
        let mut set = std::collections::HashSet::new();
        let mut floors = super::conn::Floors { start, rooms: Default::default() };
        for (r, at) in rooms {
            let at = at.as_u64().ok_or("a stored session's join offset")?;
            if r.is_empty() || r.len() > 255 {
                return Err("a stored session's room".into());
            }
            let r = Arc::<str>::from(r.as_str());
            floors.rooms.insert(r.clone(), at);
            set.insert(r);
        }
        let entries = if local_covers {
            None
        } else {
            self.entries_after(offset, max).unwrap_or_else(|e| {
                log::warn!("hub recovery: the stream could not be read for a replay: {e}");
                None
            })
        };
        Ok(Some(RemoteSession { id: Arc::from(id), rooms: set, floors, entries }))
    }

    /// The records after `offset`, if the stream still holds entry `offset` itself (nothing after it
    /// trimmed; offset 0: from the start) and no more than `max` follow.
    fn entries_after(&mut self, offset: u64, max: usize) -> Result<Option<Records>, String> {
        let start = if offset == 0 { "-".to_string() } else { stream_id(offset) };
        let count = max.saturating_add(2);
        let key = self.key.clone();
        let reply: redis::streams::StreamRangeReply =
            self.run(|con| redis::cmd("XRANGE").arg(&key).arg(&start).arg("+").arg("COUNT").arg(count).query(con))?;
        let mut ids = reply.ids.into_iter();
        if offset != 0 {
            match ids.next() {
                Some(first) if stream_offset(&first.id) == Some(offset) => {}
                _ => return Ok(None), // trimmed: what came right after N may be gone
            }
        }
        let mut out = Vec::new();
        for e in ids {
            let Some(o) = stream_offset(&e.id) else { return Ok(None) };
            let Some(redis::Value::BulkString(v)) = e.map.get(crate::transport::redis::FIELD) else {
                continue; // not a hub record: skipped, as the receiver skips it
            };
            let Ok((_, _, _, rec)) = crate::transport::envelope::decode(v, usize::MAX >> 1) else { continue };
            out.push((o, rec.to_vec()));
        }
        Ok((out.len() <= max).then_some(out))
    }
}

/// How a record leaves.
enum Path {
    /// Redis: a publisher thread, fed through a bounded outbox (a send is a round trip, and blocks
    /// while Redis is away).
    Thread(SyncSender<Vec<u8>>),
    /// The shm ring: published by the emitting thread itself. An Overwrite-mode publish never waits
    /// (a slow reader loses records instead), so an emit stays wait-free but for this mutex, which
    /// serialises the hub's emitting threads on its one publisher handle; it saves a thread hand-off
    /// (a wake-up, tens of µs) per record.
    Inline(Mutex<Box<dyn FrameSink>>),
}

impl Outlet {
    /// Publishes a record (shm) or queues it for the publisher thread (Redis); a full outbox (the
    /// engine is down or slow) counts it lost rather than blocking the emit.
    pub fn publish(&self, record: Vec<u8>, counters: &Counters) {
        // Relaxed, here and below: counters.
        match &self.path {
            Path::Thread(queue) => match queue.try_send(record) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                }
            },
            Path::Inline(sink) => {
                let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
                match sink.send_frame(0, &[&record], Wait::Never) {
                    Ok(()) => counters.published.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        log::warn!("hub cluster: a record could not be published: {e}");
                        counters.lost.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
    }
}

/// Why a record from another hub was refused (it is skipped and counted).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadRecord(&'static str);

/// Encodes a record:
///
/// ```text
/// node u64 LE | rooms: u16 count, then (u16 len, bytes) each | except: same | except_conn: u16 len
/// (0: none), bytes | name: u16 len, bytes | body: the rest
/// ```
pub(crate) fn encode(node: u64, target: &Target, name: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + name.len() + body.len() + 8 * (target.rooms.len() + target.except.len()));
    out.extend_from_slice(&node.to_le_bytes());
    for list in [&target.rooms, &target.except] {
        out.extend_from_slice(&(list.len() as u16).to_le_bytes());
        for r in list.iter() {
            out.extend_from_slice(&(r.len() as u16).to_le_bytes());
            out.extend_from_slice(r.as_bytes());
        }
    }
    let ex = target.except_conn.as_deref().unwrap_or("");
    out.extend_from_slice(&(ex.len() as u16).to_le_bytes());
    out.extend_from_slice(ex.as_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(body);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadRecord> {
        if self.0.len() < n {
            return Err(BadRecord("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<usize, BadRecord> {
        Ok(u16::from_le_bytes([self.take(1)?[0], self.take(1)?[0]]) as usize)
    }
    fn str(&mut self) -> Result<&'a str, BadRecord> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| BadRecord("not UTF-8"))
    }
}

/// Decodes a record: every length is read once and checked against what is left.
pub(crate) fn decode(rec: &[u8]) -> Result<(u64, Target, &str, &[u8]), BadRecord> {
    let mut r = Reader(rec);
    let node = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| BadRecord("truncated"))?);
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        for _ in 0..r.u16()? {
            list.push(Arc::<str>::from(r.str()?));
        }
    }
    let ex = r.str()?;
    let name = r.str()?;
    super::check_user_name(name).map_err(|_| BadRecord("not a user event name"))?;
    let [rooms, except] = lists;
    let target = Target { rooms, except, except_conn: (!ex.is_empty()).then(|| Arc::from(ex)) };
    Ok((node, target, name, r.0))
}

impl Hub {
    /// Joins a cluster: from now on this hub's emits reach the connections of every hub in it, and
    /// theirs reach this hub's (socket.io's adapters). Connections stay with their hub; rooms are
    /// cluster-wide for emits, local for listing ([`Hub::room_members`] shows this hub's members).
    /// Acknowledged broadcasts stay local. One cluster per hub.
    ///
    /// With [`HubConfig::recovery`](super::HubConfig::recovery) on, a [`Cluster::RedisStream`] makes
    /// recovery work across hubs: the stream is the replay log and lost sessions are kept in Redis, so
    /// a client may come back to any hub of the cluster or to a restarted one; recoverable emits then
    /// reach even this hub's connections through the stream (ARCHITECTURE.md, "Recovery across hubs").
    /// With the other engines recovery stays per hub.
    ///
    /// Starts threads (shm: a receiver; Redis: a publisher and a receiver, and with recovery a session
    /// thread) that end when the hub is dropped. Errors: the ring can't be created or opened
    /// ([`HubError::Io`]), Redis does not answer, a cluster was already joined.
    pub fn join_cluster(&self, cluster: Cluster) -> Result<(), HubError> {
        let io = |e: &dyn std::fmt::Display| HubError::Io(std::io::Error::other(e.to_string()));
        if self.shared.cluster.get().is_some() {
            return Err(io(&"this hub already joined a cluster"));
        }
        #[cfg(feature = "redis")]
        let mut shared_log = None;
        let (mut sink, source, max_record): (Box<dyn FrameSink>, Source, usize) = match &cluster {
            Cluster::Shm { name, capacity, max_message } => {
                let cfg = crate::RingConfig { capacity: *capacity, max_message: *max_message };
                let opts = crate::ShmOptions::new(cfg).reuse_stale(true);
                // Created by the first hub (or taken over from hubs that died); the others open it.
                let ring = match opts.create_broadcast(name, crate::broadcast::Mode::Overwrite) {
                    Ok(r) => r,
                    Err(created) => crate::ShmBroadcast::open(name).map_err(|e| io(&format!("{created}; {e}")))?,
                };
                let max = ring.config().max_message;
                let mut sub = ring.subscriber().map_err(|e| io(&e))?;
                // The receiver spins a little longer than the default before it sleeps: a record that
                // arrives within 200 µs of the last is taken without a wake-up through the kernel
                // (tens of µs on a VM, on the path of every cross-hub delivery).
                sub.set_wait_strategy(crate::WaitStrategy::Adaptive { spin: Duration::from_micros(200) });
                let publ = ring.publisher().map_err(|e| io(&e))?;
                (Box::new(Ring(publ)), Source::Any(Box::new(Ring(sub))), max)
            }
            #[cfg(feature = "redis")]
            Cluster::RedisPubSub { url, channel } => {
                use crate::transport::redis::{Publisher, Subscriber};
                let sub = Subscriber::connect(url, channel)?;
                let publ = Publisher::connect(url, channel)?;
                (Box::new(publ), Source::Any(Box::new(sub)), self.shared.config.max_message + 4096)
            }
            #[cfg(feature = "redis")]
            Cluster::RedisStream { url, key, max_len } => {
                use crate::transport::redis::{StreamConsumer, StreamProducer};
                let group = format!("hub-{:016x}", protocol_node(&self.shared));
                // The hub's group starts at the stream's end (`$`): a hub that joins does not replay the
                // history to its connections. (The consumer would create it at `0`.)
                let client = redis::Client::open(url.as_str()).map_err(|e| io(&e))?;
                let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).map_err(|e| io(&e))?;
                let mut start = "$".to_string();
                if self.shared.config.recovery.is_some() {
                    // Recovery across hubs: the group starts right after the entry the log starts
                    // at, read first (so no entry falls between the two).
                    let (log, tail) = SharedLog::start(client.clone(), key.clone()).map_err(|e| io(&e))?;
                    start = if tail == 0 { "0".into() } else { stream_id(tail) };
                    self.shared.log.lock().unwrap_or_else(PoisonError::into_inner).start_at(tail);
                    shared_log = Some(Arc::new(log));
                }
                let created: redis::RedisResult<()> =
                    redis::cmd("XGROUP").arg("CREATE").arg(key).arg(&group).arg(&start).arg("MKSTREAM").query(&mut con);
                if let Err(e) = created {
                    if e.code() != Some("BUSYGROUP") {
                        return Err(io(&e));
                    }
                }
                let cons = StreamConsumer::connect(url, key, &group, "hub")?;
                let mut prod = StreamProducer::connect(url, key)?;
                prod.set_max_len(Some(*max_len));
                (Box::new(prod), Source::Stream(Box::new(cons)), self.shared.config.max_message + 4096)
            }
        };
        let node = protocol_node(&self.shared);
        let weak = Arc::downgrade(&self.shared);
        let counters = self.shared.cluster_counters.clone();
        if matches!(cluster, Cluster::Shm { .. }) {
            let outlet = Outlet {
                node,
                max_record,
                path: Path::Inline(Mutex::new(sink)),
                #[cfg(feature = "redis")]
                shared_log: None,
            };
            if self.shared.cluster.set(outlet).is_err() {
                return Err(HubError::Io(std::io::Error::other("this hub already joined a cluster")));
            }
            return spawn_receiver(weak, source);
        }
        let (tx, rx) = sync_channel::<Vec<u8>>(OUTBOX);
        let outlet = Outlet {
            node,
            max_record,
            path: Path::Thread(tx),
            #[cfg(feature = "redis")]
            shared_log,
        };
        if self.shared.cluster.set(outlet).is_err() {
            return Err(HubError::Io(std::io::Error::other("this hub already joined a cluster")));
        }
        std::thread::Builder::new().name("hub cluster publisher".into()).spawn(move || {
            // Ends when the hub (holding the queue's sender) is dropped.
            while let Ok(rec) = rx.recv() {
                // Blocks while the engine is unreachable (the redis halves reconnect by themselves);
                // meanwhile records wait in the bounded outbox.
                loop {
                    match sink.send_frame(0, &[&rec], Wait::Until(Instant::now() + Duration::from_secs(5))) {
                        Ok(()) => {
                            counters.published.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // The engine is away (a redis half reconnects by itself): try again.
                        Err(
                            TransportSendError::Timeout
                            | TransportSendError::PeerReset
                            | TransportSendError::WouldBlock,
                        ) => continue,
                        Err(e) => {
                            log::warn!("hub cluster: a record could not be published: {e}");
                            counters.lost.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        })?;
        spawn_receiver(weak, source)
    }
}

/// Starts the receiver thread: delivers other hubs' records until the hub is dropped.
fn spawn_receiver(weak: std::sync::Weak<Shared>, mut source: Source) -> Result<(), HubError> {
    std::thread::Builder::new().name("hub cluster receiver".into()).spawn(move || {
        let mut buf = Vec::new();
        let mut away = false;
        loop {
            let Some(shared) = weak.upgrade() else { return };
            let r = source.recv_frame_into(Wait::Until(Instant::now() + POLL), &mut buf);
            if away && r.is_ok() {
                log::warn!("hub cluster: the engine answers again");
                away = false;
            }
            match r {
                Ok(_) => deliver(&shared, &buf, source.position()),
                // The engine does not answer (Redis down or cut off): not the end. The redis halves
                // reconnect on a later call (a Streams consumer goes on from its group's position);
                // meanwhile this hub serves its own connections. Counted once per outage, and
                // paced so an unreachable server is not asked more than once per POLL.
                Err(crate::socket::EventRecvError::Transport(TransportRecvError::PeerReset)) => {
                    if !away {
                        log::warn!("hub cluster: the engine does not answer; retrying");
                        shared.cluster_counters.outages.fetch_add(1, Ordering::Relaxed);
                        away = true;
                    }
                    drop(shared);
                    std::thread::sleep(POLL);
                }
                Err(crate::socket::EventRecvError::Lagged) => {
                    log::warn!("hub cluster: this hub fell behind the ring and lost records");
                    shared.cluster_counters.lost.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.is_fatal() => {
                    log::warn!("hub cluster: the receiver ended: {e}");
                    return;
                }
                Err(_) => {}
            }
        }
    })?;
    Ok(())
}

/// This hub's node id in records: its ack token (random per hub).
fn protocol_node(shared: &Shared) -> u64 {
    shared.token
}

/// Delivers another hub's record to this hub's connections. With recovery across hubs, every
/// record, this hub's own included, under its stream offset `at`.
fn deliver(shared: &Arc<Shared>, rec: &[u8], at: Option<u64>) {
    let counters = &shared.cluster_counters;
    let ordered = shared.cluster.get().is_some_and(Outlet::ordered);
    match decode(rec) {
        Ok((node, _, _, _)) if node == protocol_node(shared) && !ordered => {}
        Ok((_, target, name, body)) => {
            counters.received.fetch_add(1, Ordering::Relaxed);
            let emit = Emit {
                hub: shared.clone(),
                rooms: target.rooms,
                except: target.except,
                except_conn: target.except_conn,
            };
            let delivered = match (ordered, at) {
                (true, Some(at)) => emit.emit_local_at(name, body, Some(at)),
                // An entry id that is not an offset: delivered, not replayable.
                (true, None) => {
                    super::protocol::encode_checked(name, body, shared.config.max_message).map(|m| emit.push(&m))
                }
                (false, _) => emit.emit_local(name, body),
            };
            if let Err(e) = delivered {
                log::warn!("hub cluster: a record could not be delivered: {e}");
            }
        }
        Err(BadRecord(why)) => {
            log::warn!("hub cluster: a malformed record ({why}), skipped");
            counters.bad.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "redis")]
    #[test]
    fn stream_ids_and_offsets_map_both_ways_and_misfits_are_refused() {
        for id in ["0-1", "1764536400123-0", "1764536400123-1048575", "17592186044415-7"] {
            let o = stream_offset(id).unwrap();
            assert_eq!(stream_id(o), id);
        }
        // Increasing ids, increasing offsets.
        assert!(stream_offset("5-1048575").unwrap() < stream_offset("6-0").unwrap());
        for bad in ["", "5", "5-", "-5", "a-1", "5-1048576", "17592186044416-0", "1-2-3", "18446744073709551616-0"] {
            assert_eq!(stream_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let t =
            Target { rooms: vec!["a".into(), "bé".into()], except: vec!["x".into()], except_conn: Some("c1".into()) };
        let rec = encode(7, &t, "chat", b"{}");
        let (node, got, name, body) = decode(&rec).unwrap();
        assert_eq!((node, name, body), (7, "chat", &b"{}"[..]));
        assert_eq!(
            (got.rooms, got.except, got.except_conn),
            (t.rooms.clone(), t.except.clone(), t.except_conn.clone())
        );
        // Cut anywhere before the body: refused, never read past the end.
        for cut in 0..rec.len() - 2 {
            assert!(decode(&rec[..cut]).is_err(), "{cut}");
        }
        let mut bad = rec.clone();
        bad[8] = 0xff; // 65,535 rooms in a short record
        assert_eq!(decode(&bad).unwrap_err(), BadRecord("truncated"));
        // Random damage anywhere: refused or accepted, never a panic, never a read past the end.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = rec.clone();
            let at = (x as usize) % b.len();
            b[at] = (x >> 40) as u8;
            let _ = decode(&b);
        }
        let reserved = encode(7, &Target::default(), "ringwire:hello", b"");
        assert_eq!(decode(&reserved).unwrap_err(), BadRecord("not a user event name"));
    }
}
