//! Who is connected and which rooms they are in, and the emit builder that resolves a target
//! (rooms, exceptions) to connections — socket.io's `io.to(room).except(other).emit(...)`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::conn::{ConnId, ConnShared, Push};
use super::protocol;
use super::recovery::Target;
use super::{Hub, HubError, Shared};

pub(crate) struct Member {
    pub conn: Arc<ConnShared>,
    pub rooms: HashSet<Arc<str>>,
}

/// The registry: connections and rooms, under the hub's one `RwLock` (emits take it shared; join,
/// leave, connect and disconnect exclusively).
#[derive(Default)]
pub(crate) struct Registry {
    pub conns: HashMap<ConnId, Member>,
    pub rooms: HashMap<Arc<str>, HashMap<ConnId, Arc<ConnShared>>>,
}

impl Registry {
    /// Adds a connection in its own room and `rooms`.
    pub fn insert(&mut self, conn: Arc<ConnShared>, rooms: impl IntoIterator<Item = Arc<str>>) {
        let id = conn.id.clone();
        self.conns.insert(id.clone(), Member { conn: conn.clone(), rooms: HashSet::new() });
        self.join(&id, &id);
        for r in rooms {
            self.join(&id, &r);
        }
    }

    /// Whether `conn` is the registered connection of its id (a recovered session's new connection
    /// takes the id over from the old one).
    pub fn is_current(&self, conn: &Arc<ConnShared>) -> bool {
        self.conns.get(&conn.id).is_some_and(|m| Arc::ptr_eq(&m.conn, conn))
    }

    /// [`remove`](Self::remove), if `conn` is still the registered connection of its id.
    pub fn remove_if_current(&mut self, conn: &Arc<ConnShared>) -> Option<Member> {
        if self.is_current(conn) {
            self.remove(&conn.id)
        } else {
            None
        }
    }

    /// Adds `id` to `room`; false when it already was there (or is not connected).
    pub fn join(&mut self, id: &ConnId, room: &str) -> bool {
        let Some(m) = self.conns.get_mut(id) else { return false };
        let room: Arc<str> = self.rooms.get_key_value(room).map_or_else(|| Arc::from(room), |(k, _)| k.clone());
        if !m.rooms.insert(room.clone()) {
            return false;
        }
        self.rooms.entry(room).or_default().insert(id.clone(), m.conn.clone());
        true
    }

    /// Removes `id` from `room`; false when it was not there. An emptied room is dropped.
    pub fn leave(&mut self, id: &ConnId, room: &str) -> bool {
        let Some(m) = self.conns.get_mut(id) else { return false };
        if !m.rooms.remove(room) {
            return false;
        }
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
        true
    }

    /// Removes the connection and its memberships.
    pub fn remove(&mut self, id: &ConnId) -> Option<Member> {
        let m = self.conns.remove(id)?;
        for room in &m.rooms {
            if let Some(members) = self.rooms.get_mut(room) {
                members.remove(id);
                if members.is_empty() {
                    self.rooms.remove(room);
                }
            }
        }
        Some(m)
    }
}

/// Where an emit goes: socket.io's broadcast operator (`io.to(a).to(b).except(c)`,
/// `socket.broadcast`, `socket.to(room)`). Built by [`Hub::to`], [`Hub::except`],
/// [`Conn::broadcast`](super::Conn::broadcast) and [`Conn::to`](super::Conn::to); each connection in
/// the target gets one copy, however many of the rooms it is in.
#[must_use = "an Emit does nothing until .emit(...)"]
#[derive(Clone)]
pub struct Emit {
    pub(crate) hub: Arc<Shared>,
    pub(crate) rooms: Vec<Arc<str>>,
    pub(crate) except: Vec<Arc<str>>,
    pub(crate) except_conn: Option<ConnId>,
}

/// What an acknowledged broadcast got back ([`Emit::emit_with_ack`]): as socket.io's
/// `io.timeout(ms).emit(event, (err, responses) => ...)`, the replies that arrived in time and the
/// connections that gave none (timed out or disconnected first).
#[derive(Debug, Default)]
pub struct BroadcastAck {
    /// One reply body (JSON) per connection that answered, in arrival order.
    pub replies: Vec<(ConnId, Bytes)>,
    /// The targeted connections that did not answer in time or disconnected.
    pub missing: Vec<ConnId>,
}

impl BroadcastAck {
    /// Whether every targeted connection answered (socket.io's `err` is null).
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

impl Emit {
    /// Adds a room to the target (socket.io's `.to(room)` / `.in(room)`).
    pub fn to(mut self, room: &str) -> Self {
        self.rooms.push(Arc::from(room));
        self
    }

    /// Leaves out the members of `room` (socket.io's `.except(room)`; a connection id excludes that
    /// connection).
    pub fn except(mut self, room: &str) -> Self {
        self.except.push(Arc::from(room));
        self
    }

    /// Calls `f` on every target connection once.
    fn for_each_target(&self, mut f: impl FnMut(&Arc<ConnShared>)) {
        let reg = self.hub.registry.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let excluded = |id: &ConnId| {
            self.except_conn.as_ref() == Some(id)
                || self.except.iter().any(|r| reg.rooms.get(r).is_some_and(|m| m.contains_key(id)))
        };
        match self.rooms.as_slice() {
            [] => {
                for m in reg.conns.values() {
                    if !excluded(&m.conn.id) {
                        f(&m.conn)
                    }
                }
            }
            [room] => {
                for (id, c) in reg.rooms.get(room).into_iter().flatten() {
                    if !excluded(id) {
                        f(c)
                    }
                }
            }
            rooms => {
                // Several rooms: a connection in more than one of them gets one copy.
                let mut seen = HashSet::new();
                for room in rooms {
                    for (id, c) in reg.rooms.get(room).into_iter().flatten() {
                        if seen.insert(id.clone()) && !excluded(id) {
                            f(c)
                        }
                    }
                }
            }
        }
    }

    /// The target's connection ids.
    pub fn ids(&self) -> Vec<ConnId> {
        let mut out = Vec::new();
        self.for_each_target(|c| out.push(c.id.clone()));
        out
    }

    /// Emits `value` (JSON) as event `name` to every target connection; returns how many it was queued
    /// for. Never waits: a connection whose send queue is full is disconnected with close code 4001
    /// (a slow client) and the others are unaffected. The message is encoded once and shared.
    ///
    /// Errors: [`HubError::BadName`] (empty, over 255 bytes, or `ringwire:`-reserved),
    /// [`HubError::Json`], [`HubError::Oversize`] (over the hub's `max_message`).
    pub fn emit<T: serde::Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<usize, HubError> {
        self.emit_bytes(name, &serde_json::to_vec(value)?)
    }

    /// [`emit`](Self::emit) with a body already encoded (JSON bytes, or empty for no payload). With
    /// recovery on, the event takes the next offset and is kept for replay; in a cluster it is also
    /// published for the other hubs (after this hub's connections have it queued).
    ///
    /// With recovery across hubs (a `RedisStream` cluster with recovery on: ARCHITECTURE.md,
    /// "Recovery across hubs") the event is only added to the stream, and reaches this hub's
    /// connections too when the hub reads it back (with the stream's offset); the count returned is
    /// then the number of this hub's connections targeted now.
    pub fn emit_bytes(&self, name: &str, body: &[u8]) -> Result<usize, HubError> {
        super::check_user_name(name)?;
        // Outside a cluster and without recovery no target is recorded: the emit only pushes.
        let record = self.hub.cluster_record(|| self.target(), name, body)?;
        if self.hub.ordered() {
            if let Some(rec) = record {
                // Delivered here too when read back from the stream: checked now, encoded then.
                protocol::check(name, body, self.hub.config.max_message)?;
                let mut n = 0;
                self.for_each_target(|_| n += 1);
                self.hub.cluster_publish(rec);
                return Ok(n);
            }
        }
        let n = self.emit_local(name, body)?;
        if let Some(rec) = record {
            self.hub.cluster_publish(rec);
        }
        Ok(n)
    }

    /// Who this emit is for, as recovery's log and the cluster's records keep it.
    fn target(&self) -> Target {
        Target { rooms: self.rooms.clone(), except: self.except.clone(), except_conn: self.except_conn.clone() }
    }

    /// Delivers to this hub's connections (and its recovery log); what a record from another hub gets.
    pub(crate) fn emit_local(&self, name: &str, body: &[u8]) -> Result<usize, HubError> {
        self.emit_local_at(name, body, None)
    }

    /// [`emit_local`](Self::emit_local), with recovery across hubs: under the stream's offset `at`
    /// (an offset not above the last one delivered is a redelivery, dropped: each is sent once).
    pub(crate) fn emit_local_at(&self, name: &str, body: &[u8], at: Option<u64>) -> Result<usize, HubError> {
        let max = self.hub.config.max_message;
        let Some(cfg) = &self.hub.config.recovery else {
            return Ok(self.push(&protocol::encode_checked(name, body, max)?));
        };
        let mut log = self.hub.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let offset = match at {
            Some(o) if o <= log.last => return Ok(0),
            Some(o) => o,
            None => log.next_offset(),
        };
        let wire = format!("{}{offset}:{name}", super::OFFSET_PREFIX);
        let msg = protocol::encode_checked(&wire, body, max)?;
        // Queued to every target and logged under the one mutex: offsets reach each client in order.
        let n = self.push(&msg);
        log.append_at(offset, msg, self.target(), cfg);
        Ok(n)
    }

    /// Emits without an offset and without keeping it for replay (socket.io's `volatile`): a client
    /// that was disconnected never gets it. Otherwise as [`emit`](Self::emit).
    pub fn emit_volatile<T: serde::Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<usize, HubError> {
        super::check_user_name(name)?;
        let msg = protocol::encode_checked(name, &serde_json::to_vec(value)?, self.hub.config.max_message)?;
        Ok(self.push(&msg))
    }

    pub(crate) fn push(&self, msg: &Bytes) -> usize {
        let mut n = 0;
        self.for_each_target(|c| n += usize::from(c.push(Push::Frame(msg.clone()))));
        n
    }

    /// Emits and collects one reply per target connection, waiting at most `timeout` (socket.io's
    /// `io.timeout(ms).emitWithAck(...)`): the replies that came in time and the connections that did
    /// not answer. The ack bookkeeping of every target is freed when this returns (timeout or not) and
    /// when a connection ends.
    pub async fn emit_with_ack<T: serde::Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<BroadcastAck, HubError> {
        super::check_user_name(name)?;
        let body = serde_json::to_vec(value)?;
        let id = self.hub.next_ack.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wire_name = protocol::ack_name(self.hub.token, id, name);
        let msg = protocol::encode_checked(&wire_name, &body, self.hub.config.max_message)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut targets = Vec::new();
        self.for_each_target(|c| {
            // The entry holds a sender; a reply or the connection's end drops it. When all are gone
            // the channel closes and the wait ends early. At most one message per target: bounded.
            if c.register_ack(id, tx.clone()) && c.push(Push::Frame(msg.clone())) {
                targets.push(c.clone());
            } else {
                c.cancel_ack(id);
            }
        });
        drop(tx);
        let mut out = BroadcastAck::default();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.replies.len() < targets.len() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(reply)) => out.replies.push(reply),
                Ok(None) | Err(_) => break,
            }
        }
        for c in &targets {
            c.cancel_ack(id);
        }
        let answered: HashSet<&ConnId> = out.replies.iter().map(|(id, _)| id).collect();
        out.missing = targets.iter().filter(|c| !answered.contains(&c.id)).map(|c| c.id.clone()).collect();
        Ok(out)
    }
}

impl Hub {
    /// Targets the members of `room` (socket.io's `io.to(room)`); chain `.to(...)` / `.except(...)`.
    pub fn to(&self, room: &str) -> Emit {
        self.all().to(room)
    }

    /// Targets every connection except the members of `room` (socket.io's `io.except(room)`).
    pub fn except(&self, room: &str) -> Emit {
        self.all().except(room)
    }

    /// Targets every connection (socket.io's `io` / `io.sockets`).
    pub fn all(&self) -> Emit {
        Emit { hub: self.shared.clone(), rooms: Vec::new(), except: Vec::new(), except_conn: None }
    }

    /// Emits to every connection (socket.io's `io.emit`); see [`Emit::emit`].
    pub fn emit<T: serde::Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<usize, HubError> {
        self.all().emit(name, value)
    }

    /// The rooms that have members, with their member counts (each connection's own room included).
    pub fn rooms(&self) -> Vec<(String, usize)> {
        let reg = self.shared.registry.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        reg.rooms.iter().map(|(r, m)| (r.to_string(), m.len())).collect()
    }

    /// The connections in `room`.
    pub fn room_members(&self, room: &str) -> Vec<ConnId> {
        self.to(room).ids()
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.read().unwrap_or_else(std::sync::PoisonError::into_inner).conns.len()
    }
}
