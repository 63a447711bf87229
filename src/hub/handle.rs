//! One connection as the application sees it: [`Conn`] (socket.io's server-side `socket`) and the
//! events its client sends ([`HubEvent`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use super::conn::{ConnId, ConnShared, Push};
use super::protocol::{self, close};
use super::rooms::Emit;
use super::{Hub, HubError};

/// A handle to one connection (socket.io's server-side `socket`). Cheap to clone; stays valid after
/// the connection ends (its operations then do nothing and return `false` / [`HubError::Closed`]).
#[derive(Clone)]
pub struct Conn(pub(crate) Arc<ConnShared>);

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Conn").field(&self.0.id).finish()
    }
}

impl Conn {
    /// The connection's id (socket.io's `socket.id`): also a room it is always in.
    pub fn id(&self) -> &ConnId {
        &self.0.id
    }

    /// Adds the connection to `room` (socket.io's `socket.join`) and runs the
    /// [`on_join_room`](Hub::on_join_room) hooks; false when it already was a member or the connection
    /// is closed. The application may join any room name (the client's own
    /// `ringwire:join` requests go through the hub's join check first).
    pub fn join(&self, room: &str) -> bool {
        let hub = &self.0.hub;
        let joined = {
            // With recovery, the join's offset is read under the log's mutex (taken before the
            // registry's lock, the hub's lock order): an event with a later offset was emitted after
            // the join, one at or before it, before.
            let log = hub.config.recovery.as_ref().map(|_| hub.log.lock().unwrap_or_else(PoisonError::into_inner));
            let mut reg = hub.registry.write().unwrap_or_else(PoisonError::into_inner);
            let joined = reg.is_current(&self.0) && reg.join(&self.0.id, room);
            if let (true, Some(log)) = (joined, &log) {
                self.0.floors.lock().unwrap_or_else(PoisonError::into_inner).rooms.insert(Arc::from(room), log.last);
            }
            joined
        };
        if joined {
            let hooks = hub.hooks.read().unwrap_or_else(PoisonError::into_inner).join_room.clone();
            for h in &hooks {
                h(self, room);
            }
        }
        joined
    }

    /// Removes the connection from `room` (socket.io's `socket.leave`) and runs the
    /// [`on_leave_room`](Hub::on_leave_room) hooks; false when it was not a member. A connection can't
    /// leave the room named after its id.
    pub fn leave(&self, room: &str) -> bool {
        if room == &*self.0.id {
            return false;
        }
        let hub = &self.0.hub;
        let left = {
            let mut reg = hub.registry.write().unwrap_or_else(PoisonError::into_inner);
            let left = reg.is_current(&self.0) && reg.leave(&self.0.id, room);
            if left {
                self.0.floors.lock().unwrap_or_else(PoisonError::into_inner).rooms.remove(room);
            }
            left
        };
        if left {
            let hooks = hub.hooks.read().unwrap_or_else(PoisonError::into_inner).leave_room.clone();
            for h in &hooks {
                h(self, room);
            }
        }
        left
    }

    /// Sends a non-fatal complaint, `ringwire:error` `{"code", "message"}` (the client's `error`
    /// listeners get it; the connection stays open). False when the connection is closed.
    pub fn send_error(&self, code: &str, message: &str) -> bool {
        let body = serde_json::json!({"code": code, "message": message}).to_string();
        self.0.push(Push::Frame(protocol::encode(protocol::ERROR, body.as_bytes())))
    }

    /// The rooms the connection is in (socket.io's `socket.rooms`), its own included; empty once it
    /// is disconnected (as in socket.io's `disconnect`, while `disconnecting` still sees them).
    pub fn rooms(&self) -> Vec<String> {
        let hub = &self.0.hub;
        let reg = hub.registry.read().unwrap_or_else(PoisonError::into_inner);
        match reg.conns.get(&self.0.id) {
            Some(m) if Arc::ptr_eq(&m.conn, &self.0) => m.rooms.iter().map(|r| r.to_string()).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether this connection resumed a lost one's session (socket.io's `socket.recovered`): same id,
    /// same rooms, missed events replayed. Always false without [`HubConfig::recovery`](super::HubConfig::recovery).
    pub fn recovered(&self) -> bool {
        self.0.recovered
    }

    /// Emits to this connection only (socket.io's `socket.emit`); false when it is closed (or was
    /// just dropped as a slow client). See [`Emit::emit`] for the errors.
    pub fn emit<T: serde::Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<bool, HubError> {
        self.emit_bytes(name, &serde_json::to_vec(value)?)
    }

    /// [`emit`](Self::emit) with a body already encoded.
    pub fn emit_bytes(&self, name: &str, body: &[u8]) -> Result<bool, HubError> {
        super::check_user_name(name)?;
        let only =
            Emit { hub: self.0.hub.clone(), rooms: vec![self.0.id.clone()], except: Vec::new(), except_conn: None };
        Ok(only.emit_bytes(name, body)? > 0)
    }

    /// Emits and waits up to `timeout` for this connection's reply (socket.io's
    /// `socket.timeout(ms).emitWithAck(...)`). Errors: [`HubError::Timeout`] (the bookkeeping is freed;
    /// a late reply is dropped), [`HubError::Closed`] (the connection ended first).
    pub async fn emit_with_ack<T: serde::Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<Bytes, HubError> {
        let hub = self.0.hub.clone();
        let target = Emit { hub, rooms: vec![self.0.id.clone()], except: Vec::new(), except_conn: None };
        let mut r = target.emit_with_ack(name, value, timeout).await?;
        match r.replies.pop() {
            Some((_, body)) => Ok(body),
            None if self.is_closed() => Err(HubError::Closed),
            None => Err(HubError::Timeout),
        }
    }

    /// Targets every connection but this one (socket.io's `socket.broadcast`).
    pub fn broadcast(&self) -> Emit {
        Emit { hub: self.0.hub.clone(), rooms: Vec::new(), except: Vec::new(), except_conn: Some(self.0.id.clone()) }
    }

    /// Targets the members of `room` but this connection (socket.io's `socket.to(room)`).
    pub fn to(&self, room: &str) -> Emit {
        self.broadcast().to(room)
    }

    /// Closes the connection with close code 4002 and `reason` (socket.io's `socket.disconnect()`).
    pub fn disconnect(&self, reason: &str) {
        self.0.close(close::KICKED, reason);
    }

    /// Whether the connection has ended or is closing.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// How many acks the hub is waiting for from this connection.
    pub fn pending_acks(&self) -> usize {
        self.0.pending_acks()
    }
}

/// An event a client sent, as a listener registered with [`Hub::on`](super::Hub::on) receives it.
pub struct HubEvent {
    pub(crate) conn: Conn,
    pub(crate) name: Arc<str>,
    pub(crate) body: Bytes,
    /// The wire name to reply under, when the client asked for an ack; taken by the first reply.
    pub(crate) ack: Mutex<Option<String>>,
}

impl std::fmt::Debug for HubEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubEvent").field("conn", &self.conn).field("name", &self.name).finish()
    }
}

impl HubEvent {
    /// The sender.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The body as sent (JSON bytes; empty for no payload).
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body decoded from JSON (an empty body decodes as JSON `null`).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, HubError> {
        if self.body.is_empty() {
            return Ok(serde_json::from_slice(b"null")?);
        }
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// Whether the client asked for an acknowledgement (socket.io: the listener got a callback).
    pub fn wants_ack(&self) -> bool {
        self.ack.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// Sends the acknowledgement (socket.io's `callback(value)`). Only the first call sends; returns
    /// whether this one did (false also when no ack was asked for or the connection is gone).
    pub fn ack<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<bool, HubError> {
        let body = serde_json::to_vec(value)?;
        let Some(name) = self.ack.lock().unwrap_or_else(PoisonError::into_inner).take() else { return Ok(false) };
        let max = self.conn.0.hub.config.max_message;
        Ok(self.conn.0.push(Push::Frame(protocol::encode_checked(&name, &body, max)?)))
    }
}

impl Hub {
    /// The connection with this id, if open.
    pub fn conn(&self, id: &str) -> Option<Conn> {
        let reg = self.shared.registry.read().unwrap_or_else(PoisonError::into_inner);
        reg.conns.get(id).map(|m| Conn(m.conn.clone()))
    }
}
