//! Named events on the wire (feature `events`): [`EventSender`] / [`EventReceiver`] over any transport
//! half or ring handle, and a duplex [`Socket`] that dispatches incoming events to an
//! [`EventEmitter`](crate::events::EventEmitter) and answers acknowledgements.
//!
//! ```
//! use ringwire::socket::{EventReceiver, EventSender, Ring};
//! let (tx, rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
//! let (mut tx, mut rx) = (EventSender::new(Ring(tx)), EventReceiver::new(Ring(rx)));
//! tx.emit("chat message", &serde_json::json!({"text": "hi"}))?;
//! let ev = rx.recv()?;
//! assert_eq!(ev.name(), "chat message");
//! assert_eq!(ev.decode::<serde_json::Value>()?["text"], "hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Encoding (byte for byte)
//!
//! An event is one frame ([`crate::wire`]) whose header's `ext` is the length `n` of the event name, and
//! whose `len` payload bytes are the name (`n` bytes of UTF-8) followed by the body:
//!
//! ```text
//!  0       4      5       6        8          8+n                 8+len
//!  +-------+------+-------+--------+-----------+-------------------+
//!  |  len  |  1   |   0   |   n    |   name    | body (len - n)    |
//!  +-------+------+-------+--------+-----------+-------------------+
//! ```
//!
//! * **Name**: 1..=[`MAX_NAME`] (255) bytes of UTF-8, checked on emit ([`EmitError::BadName`]). Names
//!   starting with [`RESERVED_PREFIX`] (`"ringwire:"`) belong to this layer (acknowledgements) and are
//!   refused on emit ([`EmitError::Reserved`]).
//! * **Body**: the payload encoded with the [`Codec`] both sides agree on (the wire does not say which):
//!   [`Codec::Json`] by default (what a browser speaks), [`Codec::MsgPack`] (feature `msgpack`), or raw
//!   bytes ([`EventSender::emit_bytes`], read with [`Event::bytes`]).
//! * **Size**: name plus body within the transport's `max_message` (else [`EmitError::Send`] with
//!   `Oversize`, nothing sent).
//! * **Receiving something malformed**: a frame with `ext = 0` (a plain message) is
//!   [`EventRecvError::NotAnEvent`]; a name that is not UTF-8 is [`EventRecvError::BadName`]; a body
//!   that does not decode is an error of [`Event::decode`] alone. Each is that one message skipped: the
//!   receiver stays usable. A header with `ext > len` is refused below, by the transport: `Broken` on a
//!   stream (nothing after it can be trusted), `BadFrame` on a datagram / WebSocket / Redis message
//!   (skipped), `Corrupt` in a ring.
//!
//! # Acknowledgements
//!
//! [`Socket::emit_with_ack`] sends the event under the reserved name
//! `ringwire:ack:<token>.<id>:<event>` (`token`: 16 hex digits drawn per socket, `id`: a counter) and
//! waits for a frame with that same name to come back; its body is the reply. A socket that receives
//! an ack name with another socket's token is being asked: it dispatches `<event>` to its listeners
//! with an [`Incoming::ack`] handle, which sends the reply under the same name. So the reply format is
//! the request format, and a peer that echoes frames (the bench's echo peer, `ringwire echo`) answers
//! every ack with the request's own payload, while two sockets tell request from reply by the token.
//! Ack names may exceed [`MAX_NAME`] (they carry the user's name; the `ext` field allows 65535).
//!
//! A pending ack ends in one of three ways, each removing its entry: the reply
//! ([`Socket::emit_with_ack`] returns it), the timeout ([`AckError::Timeout`]), or the connection's end
//! ([`AckError::Closed`], for every pending ack at once, the moment the receive loop sees the end or
//! [`Socket::close`] is called). A reply arriving after its timeout is dropped and counted
//! ([`SocketStats::stale_acks`]).

mod channel;
mod duplex;
mod frames;

pub use channel::{Event, EventReceiver, EventRef, EventSender};
pub use duplex::{AckError, Incoming, Socket, SocketStats};
pub use frames::{FrameSink, FrameSource, Ring};

use crate::transport::{TransportRecvError, TransportSendError};

/// The longest event name a user may emit, in bytes.
pub const MAX_NAME: usize = 255;

/// Event names starting with this belong to the event layer itself and are refused on emit.
pub const RESERVED_PREFIX: &str = "ringwire:";

/// The prefix of acknowledgement frames' names (request and reply alike).
pub(crate) const ACK_PREFIX: &str = "ringwire:ack:";

/// How an event's body is encoded. Both sides must use the same one (the wire does not say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Codec {
    /// JSON (serde_json): what a browser speaks; the default.
    #[default]
    Json,
    /// MessagePack (rmp-serde, feature `msgpack`): smaller and faster to encode than JSON, schemaless
    /// like it, and what socket.io's msgpack parser speaks. Structs are encoded as maps (field names
    /// included), so either side may add fields.
    #[cfg(feature = "msgpack")]
    MsgPack,
}

impl Codec {
    /// Encodes `value` into `out` (cleared first).
    pub fn encode<T: serde::Serialize + ?Sized>(self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        match self {
            Codec::Json => serde_json::to_writer(out, value).map_err(|e| CodecError(e.to_string())),
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => rmp_serde::encode::write_named(out, value).map_err(|e| CodecError(e.to_string())),
        }
    }

    /// Decodes a body.
    pub fn decode<T: serde::de::DeserializeOwned>(self, body: &[u8]) -> Result<T, CodecError> {
        match self {
            Codec::Json => serde_json::from_slice(body).map_err(|e| CodecError(e.to_string())),
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => rmp_serde::from_slice(body).map_err(|e| CodecError(e.to_string())),
        }
    }
}

/// A payload could not be encoded, or a body is not the expected type in the codec in use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event payload: {0}")]
pub struct CodecError(pub String);

/// Why an event was not sent. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The name is empty, longer than [`MAX_NAME`] bytes.
    #[error("event name of {0} bytes: names are 1 to 255 bytes")]
    BadName(usize),
    /// The name starts with [`RESERVED_PREFIX`]: the event layer uses those itself.
    #[error("event name {0:?} is reserved: names starting with \"ringwire:\" belong to the event layer")]
    Reserved(String),
    /// The payload could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The transport refused the frame (`Oversize` when name and body exceed its maximum, `WouldBlock`,
    /// `Timeout`, `PeerGone`, ...; ring errors are mapped onto the same names).
    #[error(transparent)]
    Send(#[from] TransportSendError),
}

/// Why no event was received.
#[derive(Debug, thiserror::Error)]
pub enum EventRecvError {
    /// The transport's (or ring's, mapped onto the same names) receive error. `Empty`, `Timeout` and
    /// `BadFrame` leave the receiver usable; see [`TransportRecvError::is_fatal`].
    #[error(transparent)]
    Transport(#[from] TransportRecvError),
    /// Broadcast rings: this subscriber fell a lap behind and lost messages; it goes on.
    #[error("fell behind the broadcast ring and lost messages")]
    Lagged,
    /// A plain message (`ext = 0`) arrived where an event was expected; skipped.
    #[error("a frame without an event name ({0} bytes); skipped")]
    NotAnEvent(usize),
    /// The event name is not UTF-8; that event was skipped.
    #[error("an event name that is not UTF-8; skipped")]
    BadName,
}

impl EventRecvError {
    /// Whether the receiver is finished (nothing more will arrive): a fatal transport error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, EventRecvError::Transport(e) if e.is_fatal())
    }
}

/// Checks a user's event name.
pub(crate) fn check_name(name: &str) -> Result<(), EmitError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(EmitError::BadName(name.len()));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(EmitError::Reserved(name.to_owned()));
    }
    Ok(())
}
