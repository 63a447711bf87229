//! One direction of events: [`EventSender`] writes name and body as one frame, [`EventReceiver`] reads
//! them back as an [`Event`].

use super::frames::{FrameSink, FrameSource};
use super::{check_name, Codec, CodecError, EmitError, EventRecvError};
use crate::transport::{TransportSendError, Wait};
use std::time::Instant;

/// Sends named events over a transport half or a ring handle (see the [module docs](super)).
#[derive(Debug)]
pub struct EventSender<S: FrameSink> {
    sink: S,
    codec: Codec,
    /// Where bodies are encoded (reused, so a steady stream of events allocates nothing).
    buf: Vec<u8>,
}

impl<S: FrameSink> EventSender<S> {
    /// Events with JSON bodies over `sink`.
    pub fn new(sink: S) -> Self {
        Self::with_codec(sink, Codec::Json)
    }

    /// Events with bodies in `codec` over `sink`.
    pub fn with_codec(sink: S, codec: Codec) -> Self {
        EventSender { sink, codec, buf: Vec::new() }
    }

    /// The codec bodies are encoded with.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The transport half or ring handle underneath.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Gives back the transport half or ring handle.
    pub fn into_inner(self) -> S {
        self.sink
    }

    /// Emits `name` with `value` encoded by the codec, blocking until the transport took it.
    pub fn emit<T: serde::Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), EmitError> {
        self.emit_wait(name, value, Wait::Forever)
    }

    /// Emits `name` with `value`, waiting as `wait` allows.
    pub fn emit_wait<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
        wait: Wait,
    ) -> Result<(), EmitError> {
        check_name(name)?;
        let mut buf = std::mem::take(&mut self.buf);
        let r = self
            .codec
            .encode(value, &mut buf)
            .map_err(EmitError::from)
            .and_then(|()| self.send_named(name, &buf, wait).map_err(EmitError::from));
        self.buf = buf;
        r
    }

    /// Emits `name` with `bytes` as the body, as they are (no codec), blocking.
    pub fn emit_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), EmitError> {
        self.emit_bytes_wait(name, bytes, Wait::Forever)
    }

    /// Emits `name` with raw `bytes`, waiting as `wait` allows.
    #[inline]
    pub fn emit_bytes_wait(&mut self, name: &str, bytes: &[u8], wait: Wait) -> Result<(), EmitError> {
        check_name(name)?;
        Ok(self.send_named(name, bytes, wait)?)
    }

    /// Emits raw `bytes` until `deadline`.
    pub fn emit_bytes_deadline(&mut self, name: &str, bytes: &[u8], deadline: Instant) -> Result<(), EmitError> {
        self.emit_bytes_wait(name, bytes, Wait::Until(deadline))
    }

    /// Sends a frame under any name, reserved ones included (the layer's own acks); the name's length
    /// must fit the `ext` field.
    #[inline]
    pub(crate) fn send_named(&mut self, name: &str, body: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        let ext = u16::try_from(name.len())
            .map_err(|_| TransportSendError::Oversize { len: name.len() + body.len(), max: self.sink.max_message() })?;
        self.sink.send_frame(ext, &[name.as_bytes(), body], wait)
    }

    /// Encodes `value` and sends it under any name (for acks).
    pub(crate) fn send_named_value<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
        wait: Wait,
    ) -> Result<(), EmitError> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self
            .codec
            .encode(value, &mut buf)
            .map_err(EmitError::from)
            .and_then(|()| self.send_named(name, &buf, wait).map_err(EmitError::from));
        self.buf = buf;
        r
    }

    /// Closes the sending side: the peer sees the end after the last event.
    pub fn close(&mut self) -> Result<(), TransportSendError> {
        self.sink.close()
    }
}

/// A received event: its name and its body, still encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    frame: Vec<u8>,
    ext: usize,
    codec: Codec,
}

impl Event {
    /// An event called `name` with `body` (for ack replies, named after the request's event).
    pub(crate) fn new(name: &str, body: &[u8], codec: Codec) -> Self {
        let mut frame = Vec::with_capacity(name.len() + body.len());
        frame.extend_from_slice(name.as_bytes());
        frame.extend_from_slice(body);
        Event { frame, ext: name.len(), codec }
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        // Checked to be UTF-8 when the event was received.
        std::str::from_utf8(&self.frame[..self.ext]).unwrap_or_default()
    }

    /// The body as it arrived (for events emitted with `emit_bytes`, or to decode yourself).
    pub fn bytes(&self) -> &[u8] {
        &self.frame[self.ext..]
    }

    /// The body decoded with the receiver's codec.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, CodecError> {
        self.codec.decode(self.bytes())
    }

    /// The codec the receiver decodes with.
    pub fn codec(&self) -> Codec {
        self.codec
    }
}

/// A received event borrowed from its receiver's buffer ([`EventReceiver::recv_ref_wait`]): no
/// allocation per event once the buffer has grown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    name: &'a str,
    body: &'a [u8],
    codec: Codec,
}

impl<'a> EventRef<'a> {
    /// The event's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The body as it arrived.
    pub fn bytes(&self) -> &'a [u8] {
        self.body
    }

    /// The body decoded with the receiver's codec.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, CodecError> {
        self.codec.decode(self.body)
    }

    /// An owned copy.
    pub fn to_event(&self) -> Event {
        Event::new(self.name, self.body, self.codec)
    }
}

/// Checks an event frame's name: `Ok(n)` (the name's length) or the typed error for that frame.
#[inline]
fn check_received(ext: u16, bytes: &[u8]) -> Result<usize, EventRecvError> {
    let ext = ext as usize;
    if ext == 0 {
        return Err(EventRecvError::NotAnEvent(bytes.len()));
    }
    let name = &bytes[..ext];
    // Short ASCII names (the common case) skip the general UTF-8 validation.
    if !name.is_ascii() && std::str::from_utf8(name).is_err() {
        return Err(EventRecvError::BadName);
    }
    Ok(ext)
}

/// Receives named events from a transport half or a ring handle (see the [module docs](super)).
#[derive(Debug)]
pub struct EventReceiver<R: FrameSource> {
    source: R,
    codec: Codec,
    /// Where [`recv_ref_wait`](Self::recv_ref_wait) receives (reused).
    buf: Vec<u8>,
}

impl<R: FrameSource> EventReceiver<R> {
    /// Events with JSON bodies from `source`.
    pub fn new(source: R) -> Self {
        Self::with_codec(source, Codec::Json)
    }

    /// Events with bodies in `codec` from `source`.
    pub fn with_codec(source: R, codec: Codec) -> Self {
        EventReceiver { source, codec, buf: Vec::new() }
    }

    /// The transport half or ring handle underneath.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.source
    }

    /// Gives back the transport half or ring handle.
    pub fn into_inner(self) -> R {
        self.source
    }

    /// The next event, blocking until one arrives or the peer is gone.
    pub fn recv(&mut self) -> Result<Event, EventRecvError> {
        self.recv_wait(Wait::Forever)
    }

    /// The next event if one has arrived.
    pub fn try_recv(&mut self) -> Result<Event, EventRecvError> {
        self.recv_wait(Wait::Never)
    }

    /// The next event, waiting until `deadline` at most.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<Event, EventRecvError> {
        self.recv_wait(Wait::Until(deadline))
    }

    /// The next event, waiting as `wait` allows. A malformed one (no name, a name that is not UTF-8)
    /// is an error for that event alone; the next call goes on with the next frame.
    #[inline]
    pub fn recv_wait(&mut self, wait: Wait) -> Result<Event, EventRecvError> {
        let f = self.source.recv_frame(wait)?;
        let ext = check_received(f.ext, &f.bytes)?;
        Ok(Event { frame: f.bytes, ext, codec: self.codec })
    }

    /// The next event, borrowed from this receiver's buffer until the next call: over a ring, no
    /// allocation per event (the bytes are copied once, out of the ring); over a transport, no more than
    /// the transport makes. Errors as [`recv_wait`](Self::recv_wait).
    #[inline]
    pub fn recv_ref_wait(&mut self, wait: Wait) -> Result<EventRef<'_>, EventRecvError> {
        let ext = self.source.recv_frame_into(wait, &mut self.buf)?;
        let n = check_received(ext, &self.buf)?;
        let (name, body) = self.buf.split_at(n);
        // SAFETY: check_received validated exactly these bytes as UTF-8 (ASCII, or `from_utf8`).
        let name = unsafe { std::str::from_utf8_unchecked(name) };
        Ok(EventRef { name, body, codec: self.codec })
    }

    /// Closes the receiving side.
    pub fn close(&mut self) {
        self.source.close()
    }
}
