//! The hub's wire: one WebSocket binary message is one frame ([`crate::wire`]) carrying one named event
//! (the `socket` encoding: `ext` = name length). Encoding, checked decoding, the reserved names and the
//! close codes; shared by the server and [`HubClient`](super::HubClient).

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{FrameHeader, Kind, HEADER_LEN};

/// The hello event, the server's first message: `{"id", "pingInterval", "pingTimeout", "maxMessage"}`.
pub const HELLO: &str = "ringwire:hello";
/// The server's heartbeat request (empty body), every `pingInterval`.
pub const PING: &str = "ringwire:ping";
/// The client's heartbeat answer (empty body), due within `pingTimeout` of a ping.
pub const PONG: &str = "ringwire:pong";
/// A client's request to join a room (body: the room name as a JSON string).
pub const JOIN: &str = "ringwire:join";
/// A client's request to leave a room (body: the room name as a JSON string).
pub const LEAVE: &str = "ringwire:leave";
/// The close of a connection without WebSocket close frames (long-polling): S->C, the last frame of
/// the last poll, `{"code", "reason"}`; C->S, the client's own close (its session ends, as with code
/// 1000).
pub const CLOSE: &str = "ringwire:close";
/// A non-fatal complaint from the server: `{"code", "message"}`.
pub const ERROR: &str = "ringwire:error";
/// The prefix of acknowledgement names, `ringwire:ack:<token>.<id>:<event>`, both directions.
pub const ACK_PREFIX: &str = "ringwire:ack:";

/// WebSocket close codes the hub uses (RFC 6455 section 7.4 and the private range 4000-4999).
pub mod close {
    /// The connection was closed normally (by either side).
    pub const NORMAL: u16 = 1000;
    /// The hub is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A message that is not a well-formed frame (reason says what).
    pub const PROTOCOL: u16 = 1002;
    /// A text message: the hub speaks binary frames only.
    pub const UNSUPPORTED: u16 = 1003;
    /// A client sent an event reserved to the server (e.g. `ringwire:hello`).
    pub const POLICY: u16 = 1008;
    /// A message over the hub's `max_message`.
    pub const TOO_BIG: u16 = 1009;
    /// An internal error in the hub.
    pub const INTERNAL: u16 = 1011;
    /// No `ringwire:pong` within `pingTimeout` of a ping.
    pub const PING_TIMEOUT: u16 = 4000;
    /// The connection's send queue filled up: a client that does not read is dropped.
    pub const SLOW_CLIENT: u16 = 4001;
    /// The application disconnected this connection ([`Conn::disconnect`](crate::hub::Conn::disconnect)).
    pub const KICKED: u16 = 4002;
    /// A newer connection of the same session took over (recovery); the client must not reconnect.
    pub const REPLACED: u16 = 4003;
}

/// Why a received WebSocket message is not a hub frame. The server closes with [`close::PROTOCOL`]
/// and this as the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than the 8-byte header.
    #[error("message of {0} bytes is shorter than the 8-byte frame header")]
    Short(usize),
    /// The header does not decode (kind, flags, ext).
    #[error("bad frame header: {0}")]
    Header(#[from] crate::wire::HeaderDecodeError),
    /// The header's `len` disagrees with the message's length.
    #[error("frame header says {header} payload bytes, the message has {actual}")]
    Length {
        /// The header's `len`.
        header: u32,
        /// The payload bytes the message actually has.
        actual: usize,
    },
    /// `ext = 0`: a plain message where a named event is expected.
    #[error("a frame without an event name")]
    NoName,
    /// The event name is not UTF-8.
    #[error("an event name that is not UTF-8")]
    BadName,
}

/// One event as read from the wire: name and body are slices of the message (no copy).
#[derive(Clone, Debug)]
pub struct WireEvent {
    msg: Bytes,
    name_len: usize,
}

impl WireEvent {
    /// The event name.
    pub fn name(&self) -> &str {
        // `decode` checked these bytes are UTF-8, so the fallback is never taken.
        std::str::from_utf8(&self.msg[HEADER_LEN..HEADER_LEN + self.name_len]).unwrap_or_default()
    }

    /// The whole message's length (header, name, body), as the size limit counts it.
    pub fn len(&self) -> usize {
        self.msg.len()
    }

    /// Never: a decoded event has at least its header and a name.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The body (JSON, possibly empty).
    pub fn body(&self) -> Bytes {
        self.msg.slice(HEADER_LEN + self.name_len..)
    }
}

/// Decodes one WebSocket binary message. Every field is read once and checked before use.
pub fn decode(msg: Bytes) -> Result<WireEvent, FrameError> {
    if msg.len() < HEADER_LEN {
        return Err(FrameError::Short(msg.len()));
    }
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&msg[..HEADER_LEN]);
    let h = FrameHeader::from_bytes(head)?;
    if h.kind != Kind::Data {
        return Err(FrameError::Header(crate::wire::HeaderDecodeError::UnknownKind(h.kind as u8)));
    }
    let actual = msg.len() - HEADER_LEN;
    if h.len as usize != actual {
        return Err(FrameError::Length { header: h.len, actual });
    }
    let name_len = h.ext as usize;
    if name_len == 0 {
        return Err(FrameError::NoName);
    }
    // `FrameHeader::from_bytes` refuses ext > len, so the name is within the message.
    if std::str::from_utf8(&msg[HEADER_LEN..HEADER_LEN + name_len]).is_err() {
        return Err(FrameError::BadName);
    }
    Ok(WireEvent { msg, name_len })
}

/// Encodes one event: header, name, body. `name` must be 1..=65535 bytes (checked by the callers'
/// name rules; longer is cut to a refusal by [`encode_checked`]).
pub fn encode(name: &str, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + name.len() + body.len());
    let len = (name.len() + body.len()) as u32;
    out.put_u32_le(len);
    out.put_u8(Kind::Data as u8);
    out.put_u8(0);
    out.put_u16_le(name.len() as u16);
    out.put_slice(name.as_bytes());
    out.put_slice(body);
    out.freeze()
}

/// [`encode`] after checking the name fits the `ext` field and the whole message fits `max`.
pub fn encode_checked(name: &str, body: &[u8], max: usize) -> Result<Bytes, super::HubError> {
    check(name, body, max)?;
    Ok(encode(name, body))
}

/// The checks of [`encode_checked`], without encoding.
pub(crate) fn check(name: &str, body: &[u8], max: usize) -> Result<(), super::HubError> {
    if name.is_empty() || name.len() > u16::MAX as usize {
        return Err(super::HubError::BadName(name.len()));
    }
    let size = HEADER_LEN + name.len() + body.len();
    if size > max || size - HEADER_LEN > u32::MAX as usize {
        return Err(super::HubError::Oversize { size, max });
    }
    Ok(())
}

/// An ack name: `ringwire:ack:<token as 16 hex>.<id>:<event>`.
pub fn ack_name(token: u64, id: u64, event: &str) -> String {
    format!("{ACK_PREFIX}{token:016x}.{id}:{event}")
}

/// Splits an ack name's rest (after [`ACK_PREFIX`]) into token, id and event.
pub fn parse_ack(rest: &str) -> Option<(u64, u64, &str)> {
    let (tag, event) = rest.split_once(':')?;
    let (token, id) = tag.split_once('.')?;
    if token.len() != 16 || event.is_empty() {
        return None;
    }
    Some((u64::from_str_radix(token, 16).ok()?, id.parse().ok()?, event))
}

/// Whether `s` is shaped like a connection id (16 lowercase hex digits, [`random_u64`] in hex): such
/// a room is a connection's own, which no client may join but the connection itself.
pub fn is_conn_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A random non-zero 64-bit value (connection ids, ack tokens): std's per-process random SipHash keys
/// over the time, a counter and the process id. Not a cryptographic secret; unguessable enough that a
/// client can't name another connection's room by chance, and the hub refuses joining those anyway.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    // Relaxed: only uniqueness of the value matters, not ordering with anything.
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let m = encode("chat message", b"{\"text\":\"hi\"}");
        let ev = decode(m.clone()).unwrap();
        assert_eq!(ev.name(), "chat message");
        assert_eq!(&ev.body()[..], b"{\"text\":\"hi\"}");
        assert_eq!(decode(m.slice(..5)).unwrap_err(), FrameError::Short(5));
        let mut bad = m.to_vec();
        bad[0] += 1;
        assert!(matches!(decode(Bytes::from(bad)), Err(FrameError::Length { .. })));
        let mut bad = m.to_vec();
        bad[6] = 0;
        bad[7] = 0;
        assert_eq!(decode(Bytes::from(bad)).unwrap_err(), FrameError::NoName);
        let mut bad = m.to_vec();
        bad[6] = 0xff;
        assert!(matches!(decode(Bytes::from(bad)), Err(FrameError::Header(_))));
        let mut bad = encode("é", b"").to_vec();
        bad[8] = 0xff;
        assert_eq!(decode(Bytes::from(bad)).unwrap_err(), FrameError::BadName);
        assert_eq!(parse_ack("00000000000000ab.7:x"), Some((0xab, 7, "x")));
        assert_eq!(parse_ack(&ack_name(5, 9, "a:b")[ACK_PREFIX.len()..]), Some((5, 9, "a:b")));
    }
}
