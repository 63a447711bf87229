//! What the hub keeps for one connection: the bounded send queue, the close request, the pending
//! acknowledgements the hub asked for.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::protocol::close;
use super::Shared;

/// A connection's id: 16 lowercase hex digits, unique in the hub. Also the name of the room every
/// connection is in (as socket.io's `socket.id` room).
pub type ConnId = Arc<str>;

/// What the writer task is asked to send.
pub(crate) enum Push {
    /// One encoded message.
    Frame(Bytes),
}

/// Why a connection ended, as [`Hub::on_disconnect`](super::Hub::on_disconnect) sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisconnectReason {
    /// The WebSocket close code (1000 when the client closed normally, 1006 when the TCP connection
    /// dropped without a close frame; the hub's own codes are in [`close`](super::protocol::close)).
    pub code: u16,
    /// The close reason, or what happened.
    pub reason: String,
}

/// A reply sink for an ack the hub is waiting for: connection id and reply body.
pub(crate) type AckWaiter = mpsc::UnboundedSender<(ConnId, Bytes)>;

pub(crate) struct ConnShared {
    pub id: ConnId,
    /// The session id (with recovery on).
    pub sid: Option<Arc<str>>,
    /// Whether this connection resumed a session (its hello said `recovered: true`).
    pub recovered: bool,
    /// A newer connection of the same session took over (close 4003): this one keeps no session.
    pub replaced: AtomicBool,
    /// Set by the connection's end (its hooks run once, whatever carried it).
    pub finished: AtomicBool,
    /// The client closed with a close frame: its session ends with it.
    pub client_closed: AtomicBool,
    /// Recovery: where this session's replay may start (its first hello, its joins).
    pub floors: Mutex<Floors>,
    /// The hub (a cycle through the registry while connected; the registry lets go at disconnect).
    pub hub: Arc<Shared>,
    queue: mpsc::Sender<Push>,
    /// The first close request wins; the connection's tasks watch it.
    pub closing: watch::Sender<Option<DisconnectReason>>,
    /// Acks the hub asked this connection for, by id. `None` once the connection ended: no new ones.
    acks: Mutex<Option<HashMap<u64, AckWaiter>>>,
}

impl ConnShared {
    pub fn new(
        id: ConnId,
        sid: Option<Arc<str>>,
        recovered: bool,
        hub: Arc<Shared>,
        queue: mpsc::Sender<Push>,
    ) -> Self {
        ConnShared {
            id,
            sid,
            recovered,
            replaced: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            client_closed: AtomicBool::new(false),
            floors: Mutex::default(),
            hub,
            queue,
            closing: watch::channel(None).0,
            acks: Mutex::new(Some(HashMap::new())),
        }
    }

    /// Queues a message without waiting. A full queue means a client that does not read: it is
    /// disconnected (4001) and this returns false, as for a connection already closing.
    pub fn push(&self, p: Push) -> bool {
        match self.queue.try_send(p) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(close::SLOW_CLIENT, "send queue full: the client is not reading") {
                    self.hub.stats.slow_client();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the connection's tasks to close it with `code`; the first request wins (and returns true).
    pub fn close(&self, code: u16, reason: &str) -> bool {
        // A close frame holds at most 123 bytes of reason (RFC 6455, 5.5): cut on a UTF-8 boundary.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = &reason[..end];
        self.closing.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some(DisconnectReason { code, reason: reason.to_owned() });
            true
        })
    }

    pub fn register_ack(&self, id: u64, w: AckWaiter) -> bool {
        match &mut *self.acks.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(m) => {
                m.insert(id, w);
                true
            }
            None => false,
        }
    }

    pub fn cancel_ack(&self, id: u64) {
        if let Some(m) = &mut *self.acks.lock().unwrap_or_else(PoisonError::into_inner) {
            m.remove(&id);
        }
    }

    /// A reply to ack `id` arrived; false when nobody waits for it (late or unknown).
    pub fn resolve_ack(&self, id: u64, body: Bytes) -> bool {
        let w = self.acks.lock().unwrap_or_else(PoisonError::into_inner).as_mut().and_then(|m| m.remove(&id));
        w.is_some_and(|w| w.send((self.id.clone(), body)).is_ok())
    }

    /// The connection ended: every pending ack is given up (its waiter sees the sender dropped).
    pub fn end_acks(&self) {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// Whether the connection has ended or is closing.
    pub fn is_closed(&self) -> bool {
        self.closing.borrow().is_some() || self.queue.is_closed()
    }

    pub fn pending_acks(&self) -> usize {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map_or(0, HashMap::len)
    }
}

/// Gives back a connection slot when dropped.
pub(crate) struct Slot(pub Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        // Relaxed: a counter for the cap; nothing else is published through it.
        if self.0.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Where a session's replay may start: the offset of its first hello, and for each room it joined
/// later, the offset at its join. Rooms not listed (its own, those joined before the hello) count
/// from `start`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Floors {
    pub start: u64,
    pub rooms: HashMap<Arc<str>, u64>,
}

impl Floors {
    /// The offset after which events to `room` are this session's.
    pub fn of(&self, room: &str) -> u64 {
        self.rooms.get(room).copied().unwrap_or(self.start).max(self.start)
    }
}
