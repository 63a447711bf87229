//! Connection-state recovery (ARCHITECTURE.md, "Connection-state recovery"): the hub-wide log of
//! offsets with its replay window, and the sessions kept for connections that were lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::conn::{ConnId, ConnShared, Floors};

/// Recovery settings ([`HubConfig::recovery`](super::HubConfig::recovery)); `Default` is socket.io's
/// `connectionStateRecovery` defaults where it has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Events kept for replay, at most (the oldest go first).
    pub max_messages: usize,
    /// How long an event stays replayable, and how long a lost connection's session is kept
    /// (socket.io's `maxDisconnectionDuration`, 2 min).
    pub max_age: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery { max_messages: 10_000, max_age: Duration::from_secs(120) }
    }
}

/// The prefix of a recoverable event's name: `ringwire:o:<offset>:<event>`.
pub const OFFSET_PREFIX: &str = "ringwire:o:";

/// Who an emit was for, kept to decide a replay for a connection that was not there.
#[derive(Clone, Debug, Default)]
pub(crate) struct Target {
    /// Empty: everyone.
    pub rooms: Vec<Arc<str>>,
    pub except: Vec<Arc<str>>,
    pub except_conn: Option<ConnId>,
}

impl Target {
    /// Whether a connection with this id, in these rooms (its own included), was targeted.
    pub fn includes(&self, id: &ConnId, rooms: &HashSet<Arc<str>>) -> bool {
        if self.except_conn.as_ref() == Some(id) || self.except.iter().any(|r| rooms.contains(r)) {
            return false;
        }
        self.rooms.is_empty() || self.rooms.iter().any(|r| rooms.contains(r))
    }

    /// Whether the event at `offset` is one to replay to a session: targeted at it, after the
    /// session began, and — sent to rooms — after it joined one of those rooms (a session is never
    /// replayed what was emitted before it could have received it).
    pub fn replays(&self, offset: u64, id: &ConnId, rooms: &HashSet<Arc<str>>, floors: &Floors) -> bool {
        if offset <= floors.start || !self.includes(id, rooms) {
            return false;
        }
        self.rooms.is_empty() || self.rooms.iter().any(|r| rooms.contains(r) && offset > floors.of(r))
    }
}

struct Entry {
    offset: u64,
    at: Instant,
    msg: Bytes,
    target: Target,
}

/// A lost connection's session, kept for a reconnect.
pub(crate) struct Kept {
    pub id: ConnId,
    pub rooms: HashSet<Arc<str>>,
    pub floors: Floors,
    at: Instant,
}

/// The log and the sessions, under the hub's one recovery mutex. Emits assign offsets and queue their
/// message to every target while holding it, so each connection sees offsets in increasing order, and
/// a recovering connection's replay is queued before any later emit.
#[derive(Default)]
pub(crate) struct Log {
    /// The last offset assigned (0: none yet).
    pub last: u64,
    /// The highest offset dropped from the window (0: none).
    pub trimmed: u64,
    entries: VecDeque<Entry>,
    kept: HashMap<Arc<str>, Kept>,
    /// The session of every open connection.
    pub live: HashMap<Arc<str>, Arc<ConnShared>>,
}

impl Log {
    /// The next offset (not yet assigned).
    pub fn next_offset(&self) -> u64 {
        self.last + 1
    }

    /// Records an emitted message under `offset` (above `self.last`: the caller checked; the next one,
    /// `self.last + 1`, within one hub), which becomes the last; then trims the window. With recovery across hubs, offsets are stream entry ids: sparse.
    pub fn append_at(&mut self, offset: u64, msg: Bytes, target: Target, cfg: &Recovery) {
        debug_assert!(offset > self.last);
        self.last = offset;
        self.entries.push_back(Entry { offset, at: Instant::now(), msg, target });
        while self.entries.len() > cfg.max_messages {
            self.drop_front();
        }
    }

    fn drop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.trimmed = e.offset;
        }
    }

    /// Drops what is older than `max_age`: events from the window, and kept sessions.
    pub fn expire(&mut self, cfg: &Recovery) {
        let now = Instant::now();
        while self.entries.front().is_some_and(|e| now.duration_since(e.at) > cfg.max_age) {
            self.drop_front();
        }
        self.kept.retain(|_, k| now.duration_since(k.at) <= cfg.max_age);
    }

    /// Keeps a lost connection's session; at most `bound` are kept (the oldest is dropped).
    pub fn keep(&mut self, sid: Arc<str>, id: ConnId, rooms: HashSet<Arc<str>>, floors: Floors, bound: usize) {
        if self.kept.len() >= bound.max(1) {
            if let Some(oldest) = self.kept.iter().min_by_key(|(_, k)| k.at).map(|(s, _)| s.clone()) {
                self.kept.remove(&oldest);
            }
        }
        self.kept.insert(sid, Kept { id, rooms, floors, at: Instant::now() });
    }

    /// Takes a kept session out (a reconnect uses it, or it is spent).
    pub fn take_kept(&mut self, sid: &str) -> Option<Kept> {
        self.kept.remove(sid)
    }

    /// How many sessions are kept.
    pub fn kept_len(&self) -> usize {
        self.kept.len()
    }

    /// Whether a client that received everything up to `offset` can be given everything after it.
    pub fn can_resume(&self, offset: u64) -> bool {
        self.trimmed <= offset && offset <= self.last
    }

    /// Starts the log at `offset` (recovery across hubs: the stream's last entry when this hub
    /// joined): nothing at or before it can be replayed from this log.
    #[cfg(feature = "redis")]
    pub fn start_at(&mut self, offset: u64) {
        self.last = self.last.max(offset);
        self.trimmed = self.trimmed.max(offset);
    }

    /// The logged messages after `offset` to replay to this session (see [`Target::replays`]), in order.
    pub fn replay(&self, offset: u64, id: &ConnId, rooms: &HashSet<Arc<str>>, floors: &Floors) -> Vec<Bytes> {
        self.entries
            .iter()
            .filter(|e| e.offset > offset && e.target.replays(e.offset, id, rooms, floors))
            .map(|e| e.msg.clone())
            .collect()
    }

    /// Events in the window now.
    pub fn window_len(&self) -> usize {
        self.entries.len()
    }
}
