//! Scale-out (socket.io's adapters): several hubs share their rooms through an engine that exists —
//! ringwire's shared-memory broadcast ring for hubs on one host, Redis (pub/sub or Streams) for hubs on
//! several. Every emit a hub's application makes is delivered to its own connections and published as
//! one record; every other hub delivers the record to its connections in the same target (rooms,
//! exceptions). ARCHITECTURE.md, "Scale-out", has the record byte for byte and what each engine can
//! lose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
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
    queue: SyncSender<Vec<u8>>,
}

impl Outlet {
    /// Queues a record for the publisher thread; a full outbox (the engine is down or slow) counts it
    /// lost rather than blocking the emit.
    pub fn publish(&self, record: Vec<u8>, counters: &Counters) {
        match self.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                // Relaxed: a counter.
                counters.lost.fetch_add(1, Ordering::Relaxed);
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
    /// Starts two threads (publisher, receiver) that end when the hub is dropped. Errors: the ring can't
    /// be created or opened ([`HubError::Io`]), Redis does not answer, a cluster was already joined.
    pub fn join_cluster(&self, cluster: Cluster) -> Result<(), HubError> {
        let io = |e: &dyn std::fmt::Display| HubError::Io(std::io::Error::other(e.to_string()));
        if self.shared.cluster.get().is_some() {
            return Err(io(&"this hub already joined a cluster"));
        }
        let (mut sink, mut source, max_record): (Box<dyn FrameSink>, Box<dyn FrameSource>, usize) = match &cluster {
            Cluster::Shm { name, capacity, max_message } => {
                let cfg = crate::RingConfig { capacity: *capacity, max_message: *max_message };
                let opts = crate::ShmOptions::new(cfg).reuse_stale(true);
                // Created by the first hub (or taken over from hubs that died); the others open it.
                let ring = match opts.create_broadcast(name, crate::broadcast::Mode::Overwrite) {
                    Ok(r) => r,
                    Err(created) => crate::ShmBroadcast::open(name).map_err(|e| io(&format!("{created}; {e}")))?,
                };
                let max = ring.config().max_message;
                let sub = ring.subscriber().map_err(|e| io(&e))?;
                let publ = ring.publisher().map_err(|e| io(&e))?;
                (Box::new(Ring(publ)), Box::new(Ring(sub)), max)
            }
            #[cfg(feature = "redis")]
            Cluster::RedisPubSub { url, channel } => {
                use crate::transport::redis::{Publisher, Subscriber};
                let sub = Subscriber::connect(url, channel)?;
                let publ = Publisher::connect(url, channel)?;
                (Box::new(publ), Box::new(sub), self.shared.config.max_message + 4096)
            }
            #[cfg(feature = "redis")]
            Cluster::RedisStream { url, key, max_len } => {
                use crate::transport::redis::{StreamConsumer, StreamProducer};
                let group = format!("hub-{:016x}", protocol_node(&self.shared));
                // The hub's group starts at the stream's end (`$`): a hub that joins does not replay the
                // history to its connections. (The consumer would create it at `0`.)
                let client = redis::Client::open(url.as_str()).map_err(|e| io(&e))?;
                let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).map_err(|e| io(&e))?;
                let created: redis::RedisResult<()> =
                    redis::cmd("XGROUP").arg("CREATE").arg(key).arg(&group).arg("$").arg("MKSTREAM").query(&mut con);
                if let Err(e) = created {
                    if e.code() != Some("BUSYGROUP") {
                        return Err(io(&e));
                    }
                }
                let cons = StreamConsumer::connect(url, key, &group, "hub")?;
                let mut prod = StreamProducer::connect(url, key)?;
                prod.set_max_len(Some(*max_len));
                (Box::new(prod), Box::new(cons), self.shared.config.max_message + 4096)
            }
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(OUTBOX);
        let outlet = Outlet { node: protocol_node(&self.shared), max_record, queue: tx };
        if self.shared.cluster.set(outlet).is_err() {
            return Err(HubError::Io(std::io::Error::other("this hub already joined a cluster")));
        }
        let weak = Arc::downgrade(&self.shared);
        let counters = self.shared.cluster_counters.clone();
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
                    Ok(_) => deliver(&shared, &buf),
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
}

/// This hub's node id in records: its ack token (random per hub).
fn protocol_node(shared: &Shared) -> u64 {
    shared.token
}

/// Delivers another hub's record to this hub's connections.
fn deliver(shared: &Arc<Shared>, rec: &[u8]) {
    let counters = &shared.cluster_counters;
    match decode(rec) {
        Ok((node, _, _, _)) if node == protocol_node(shared) => {}
        Ok((_, target, name, body)) => {
            counters.received.fetch_add(1, Ordering::Relaxed);
            let emit = Emit {
                hub: shared.clone(),
                rooms: target.rooms,
                except: target.except,
                except_conn: target.except_conn,
            };
            if let Err(e) = emit.emit_local(name, body) {
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
