//! The stream and datagram codec of the transports: frames (see [`crate::wire`] for the header) written
//! back to back on a stream, or one per datagram.
//!
//! Stream transports (pipes, sockets, child stdio) write frames back to back, unpadded: header, payload,
//! next header. [`encode_into`] writes one; a [`FrameDecoder`] takes the bytes in whatever pieces the
//! reads delivered (one byte at a time, or several frames at once) and gives back whole frames. The
//! decoder checks every header the moment its 8 bytes are in, before it buffers anything for the payload:
//! a header claiming more than the decoder's maximum is [`FrameError::Oversize`] and its payload is
//! skipped without being buffered, so a decoder never holds more than
//! `max(HEADER_LEN + max_payload, READ_CHUNK)` bytes whatever its input claims. A datagram transport sends
//! exactly one frame per datagram; [`decode_datagram`] checks that the header's length matches the
//! datagram's.
//!
//! ```
//! use ringwire::transport::codec::{encode_into, FrameDecoder};
//! use ringwire::wire::Kind;
//! let mut wire = Vec::new();
//! encode_into(&mut wire, Kind::Data, b"hello")?;
//! encode_into(&mut wire, Kind::Data, b"world")?;
//! let mut dec = FrameDecoder::new(1024);
//! let mut got = Vec::new();
//! for byte in wire.chunks(1) {
//!     // Partial input is fine: push takes what fits, next_frame returns whole frames only.
//!     assert_eq!(dec.push(byte), 1);
//!     while let Some(frame) = dec.next_frame()? {
//!         got.push(frame.payload.to_vec());
//!     }
//! }
//! assert_eq!(got, [b"hello".to_vec(), b"world".to_vec()]);
//! dec.finish()?; // at a frame boundary: a clean end
//! # Ok::<(), ringwire::transport::codec::FrameError>(())
//! ```

use crate::wire::{FrameHeader, HeaderDecodeError, Kind, HEADER_LEN};

/// Why bytes from a stream or a datagram are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header announces a payload larger than the configured maximum (or, when encoding, the payload
    /// does not fit the 32-bit length field). A [`FrameDecoder`] skips that payload without buffering it
    /// and goes on with the next frame.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    Oversize {
        /// The announced (or offered) payload length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },
    /// The 8 header bytes are not a valid header (garbage, or a newer protocol). On a stream nothing after
    /// it can be trusted: the decoder refuses everything from then on.
    #[error("bad frame header: {0}")]
    BadHeader(HeaderDecodeError),
    /// A valid header of a kind that this medium never carries ([`Kind::Pad`] outside the ring).
    #[error("frame kind {0:?} is not allowed here")]
    UnexpectedKind(Kind),
    /// The input ended inside a frame: `missing` more bytes were announced (end of stream mid-frame, or a
    /// datagram shorter than its header says, or shorter than a header).
    #[error("input ended {missing} bytes short of the end of the frame")]
    Truncated {
        /// Bytes announced but never delivered.
        missing: usize,
    },
    /// A datagram carries `extra` bytes after the payload its header announces.
    #[error("{extra} bytes after the end of the frame")]
    TrailingBytes {
        /// Bytes past the announced end.
        extra: usize,
    },
}

/// A frame decoded from a stream or a datagram: its kind and a payload borrowed from the decoder (or the
/// datagram buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame's kind (only [`Kind::Data`] in this version).
    pub kind: Kind,
    /// How many of the payload's first bytes are an event name (the header's `ext`, checked `<= len`).
    pub ext: u16,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// Appends one frame (header and payload, no padding) to `out`, as a stream transport writes it.
/// Fails with [`FrameError::Oversize`] only for a payload that does not fit the 32-bit length field.
pub fn encode_into(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) -> Result<(), FrameError> {
    encode_parts_into(out, kind, 0, &[payload])
}

/// Appends one frame whose payload is the concatenation of `parts`, the first `ext` bytes of which are
/// an event name (the header's `ext` field). Fails with [`FrameError::Oversize`] for a payload that does
/// not fit the 32-bit length field, and with [`FrameError::BadHeader`] if `ext` exceeds the payload.
pub fn encode_parts_into(out: &mut Vec<u8>, kind: Kind, ext: u16, parts: &[&[u8]]) -> Result<(), FrameError> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(total).map_err(|_| FrameError::Oversize { len: total, max: u32::MAX as usize })?;
    if ext as u32 > len {
        return Err(FrameError::BadHeader(HeaderDecodeError::ExtTooLong { ext, len }));
    }
    encode_checked(out, kind, ext, len, parts);
    Ok(())
}

/// Appends one frame whose `len` (the parts' total) and `ext` the caller has already checked
/// (`transport::check_frame`: `len <= max <= u32::MAX`, `ext <= len`): [`encode_parts_into`] without
/// summing and checking again, for the senders' hot paths.
#[inline]
pub(crate) fn encode_checked(out: &mut Vec<u8>, kind: Kind, ext: u16, len: u32, parts: &[&[u8]]) {
    debug_assert!(ext as u32 <= len && parts.iter().map(|p| p.len()).sum::<usize>() == len as usize);
    out.reserve(HEADER_LEN + len as usize);
    out.extend_from_slice(&FrameHeader { len, kind, ext }.to_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Checks a header read from a stream or a datagram: valid, a kind allowed there, within `max`.
fn check_header(bytes: [u8; HEADER_LEN], max: usize) -> Result<FrameHeader, FrameError> {
    let hdr = FrameHeader::from_bytes(bytes).map_err(FrameError::BadHeader)?;
    if hdr.kind != Kind::Data {
        return Err(FrameError::UnexpectedKind(hdr.kind));
    }
    if hdr.len as usize > max {
        return Err(FrameError::Oversize { len: hdr.len as usize, max });
    }
    Ok(hdr)
}

/// Decodes a datagram that must hold exactly one frame of at most `max` payload bytes.
pub fn decode_datagram(datagram: &[u8], max: usize) -> Result<Frame<'_>, FrameError> {
    let Some((head, payload)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::Truncated { missing: HEADER_LEN - datagram.len() });
    };
    let hdr = check_header(*head, max)?;
    let len = hdr.len as usize;
    match payload.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(FrameError::Truncated { missing: len - payload.len() }),
        std::cmp::Ordering::Greater => Err(FrameError::TrailingBytes { extra: payload.len() - len }),
        std::cmp::Ordering::Equal => Ok(Frame { kind: hdr.kind, ext: hdr.ext, payload }),
    }
}

/// Bytes a [`FrameDecoder`] asks a reader for at a time once data is flowing (the buffer grows to it as
/// bytes arrive).
pub const READ_CHUNK: usize = 64 << 10;

/// The first buffer a [`FrameDecoder`] allocates; it then at most doubles with the bytes that arrive.
const FIRST_CHUNK: usize = 4 << 10;

/// An incremental stream decoder: feed it bytes in any pieces ([`push`](Self::push) or
/// [`read_from`](Self::read_from)), take whole frames out with [`next_frame`](Self::next_frame).
///
/// Memory is bounded by `max(HEADER_LEN + max_payload, READ_CHUNK)` bytes whatever the input says: a
/// header is checked as soon as its 8 bytes are in, and the payload of an oversize frame is discarded as
/// it arrives. After [`FrameError::BadHeader`] or [`FrameError::UnexpectedKind`] the stream cannot be
/// re-synchronised, and every later call returns the same error.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    /// `buf[start..end]` holds received bytes not yet returned; `buf.len()` is what is allocated.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Payload bytes of an oversize frame still to be thrown away.
    skip: usize,
    /// Set once the stream is out of sync.
    failed: Option<FrameError>,
    /// Whether the last read filled all the room it was given (the writer is ahead of us).
    last_full: bool,
}

impl FrameDecoder {
    /// A decoder accepting payloads of up to `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder { max: max_payload, buf: Vec::new(), start: 0, end: 0, skip: 0, failed: None, last_full: false }
    }

    /// The largest payload accepted.
    pub fn max_payload(&self) -> usize {
        self.max
    }

    /// Changes the largest payload accepted (for frames whose header is not in yet).
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max = max_payload;
    }

    /// Bytes received and not yet returned as (or skipped with) a frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Bytes of memory the decoder holds now (never more than [`max_buffer`](Self::max_buffer)).
    pub fn allocated(&self) -> usize {
        self.buf.capacity()
    }

    /// The most memory the decoder will ever hold.
    pub fn max_buffer(&self) -> usize {
        (HEADER_LEN + self.max).max(READ_CHUNK)
    }

    /// Whether the input so far ends exactly at a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.buffered() == 0 && self.skip == 0
    }

    /// Call at end of input: `Ok` if it ended at a frame boundary, [`FrameError::Truncated`] if it ended
    /// inside a frame (or the error that stopped the stream).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.at_boundary() {
            return Ok(());
        }
        let have = self.buffered();
        let missing = if self.skip > 0 {
            self.skip
        } else if have < HEADER_LEN {
            HEADER_LEN - have
        } else {
            let len = u32::from_le_bytes(self.buf[self.start..self.start + 4].try_into().expect("4 bytes"));
            (HEADER_LEN + len as usize).saturating_sub(have)
        };
        Err(FrameError::Truncated { missing })
    }

    /// Bytes the frame in progress still needs in the buffer before it is whole (0: nothing pending yet).
    fn frame_total(&self) -> usize {
        let have = self.buffered();
        if have < HEADER_LEN {
            return HEADER_LEN;
        }
        let len = u32::from_le_bytes(self.buf[self.start..self.start + 4].try_into().expect("4 bytes"));
        // A header in the buffer has been checked by next_frame unless it just arrived; cap at the bound
        // anyway, next_frame refuses it.
        HEADER_LEN + (len as usize).min(self.max)
    }

    /// Makes room for `want` more bytes after `end`, within the bound. Returns the free room.
    #[inline]
    fn make_room(&mut self, want: usize) -> usize {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // The usual case: the room is there (nothing to move, nothing to grow).
        if self.buf.len() - self.end >= want {
            return self.buf.len() - self.end;
        }
        let bound = self.max_buffer();
        let target = (self.end - self.start + want).min(bound);
        if self.buf.len() - self.end < want && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < target {
            // Exact: the bound is on what is allocated, not just on what is used.
            self.buf.reserve_exact(target - self.buf.len());
            self.buf.resize(target, 0);
        }
        self.buf.len() - self.end
    }

    /// Discards as much of an oversize payload as is buffered.
    #[inline]
    fn drain_skip(&mut self) {
        if self.skip == 0 {
            return;
        }
        let n = self.skip.min(self.buffered());
        self.start += n;
        self.skip -= n;
    }

    /// Takes bytes from `input` into the decoder and returns how many it took: all of them unless that
    /// would exceed the memory bound, in which case take frames out with [`next_frame`](Self::next_frame)
    /// and push the rest. Bytes of an oversize payload being skipped are consumed without being stored.
    pub fn push(&mut self, input: &[u8]) -> usize {
        if self.failed.is_some() {
            return 0;
        }
        let mut taken = 0;
        if self.skip > 0 && self.buffered() == 0 {
            taken = self.skip.min(input.len());
            self.skip -= taken;
        }
        let rest = &input[taken..];
        if rest.is_empty() {
            return taken;
        }
        let room = self.make_room(rest.len());
        let n = room.min(rest.len());
        self.buf[self.end..self.end + n].copy_from_slice(&rest[..n]);
        self.end += n;
        taken + n
    }

    /// Whether the last read took less than the room it offered: the reader had nothing more at that
    /// moment (a blocking receiver then sleeps in `poll` before its next read instead of after a read
    /// that would most likely fail with `EAGAIN`).
    pub(crate) fn drained(&self) -> bool {
        !self.last_full
    }

    /// Reads once from `reader` into the decoder (at most what the frame in progress needs, or
    /// [`READ_CHUNK`]) and returns the byte count, 0 meaning end of input. Errors, `WouldBlock` included,
    /// are the reader's.
    pub fn read_from<R: std::io::Read + ?Sized>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        self.read_from_retrying(reader, |_| false)
    }

    /// As [`read_from`](Self::read_from), retrying the read at once, into the same room, for as long as
    /// `retry` says of its error (a busy-polling receiver's `EAGAIN` loop: the room is found once, not
    /// on every try).
    pub(crate) fn read_from_retrying<R: std::io::Read + ?Sized>(
        &mut self,
        reader: &mut R,
        mut retry: impl FnMut(&std::io::Error) -> bool,
    ) -> std::io::Result<usize> {
        if self.failed.is_some() {
            // Out of sync: nothing more will be decoded; read into a scratch so the caller still sees EOF.
            let mut scratch = [0u8; 512];
            return loop {
                match reader.read(&mut scratch) {
                    Err(e) if retry(&e) => {}
                    r => break r,
                }
            };
        }
        self.drain_skip();
        let want = if self.skip > 0 { self.skip.min(READ_CHUNK) } else { self.frame_total().max(READ_CHUNK) };
        let want = want.saturating_sub(self.buffered()).max(1);
        // Grow with what actually arrives, not with what a header announces: the buffer (what is held
        // plus the room asked for) may reach the size it already has (twice that when the last read
        // filled it: the writer is ahead, and larger reads take its backlog in fewer syscalls), or twice
        // what is buffered, or a first small chunk; never more. So a peer that sends a header announcing
        // 1 MiB and then dribbles makes us hold about twice what it sent, not 1 MiB. (The room asked
        // for is free space *after* what is held: asking for the whole target as room grew the buffer
        // by what was held on every read, to the limit after a few hundred dribbled bytes.)
        let have = if self.last_full { 2 * self.buf.len() } else { self.buf.len() };
        let target = have.max(2 * self.buffered()).max(FIRST_CHUNK);
        let want = want.min(target.saturating_sub(self.buffered()).max(1));
        let room = self.make_room(want);
        let ask = room.min(want);
        let into = &mut self.buf[self.end..self.end + ask];
        let n = loop {
            match reader.read(into) {
                Err(e) if retry(&e) => {}
                r => break r?,
            }
        };
        self.last_full = n == ask;
        self.end += n;
        self.drain_skip();
        Ok(n)
    }

    /// The next whole frame if the buffered bytes hold one, `None` if more input is needed. An oversize
    /// frame is reported once ([`FrameError::Oversize`]) and then skipped; a bad header stops the stream.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.drain_skip();
        if self.skip > 0 || self.buffered() < HEADER_LEN {
            return Ok(None);
        }
        let head: [u8; HEADER_LEN] = self.buf[self.start..self.start + HEADER_LEN].try_into().expect("8 bytes");
        let hdr = match check_header(head, self.max) {
            Ok(h) => h,
            Err(e) => return Err(self.refuse(e)),
        };
        let total = HEADER_LEN + hdr.len as usize;
        if self.buffered() < total {
            return Ok(None);
        }
        let from = self.start + HEADER_LEN;
        self.start += total;
        Ok(Some(Frame { kind: hdr.kind, ext: hdr.ext, payload: &self.buf[from..from + hdr.len as usize] }))
    }

    /// A header that [`check_header`] refused: an oversize frame's payload is skipped from now on; any
    /// other error stops the stream. Returns the error. (Out of line: the receive path stays short.)
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, e: FrameError) -> FrameError {
        if let FrameError::Oversize { len, .. } = e {
            self.start += HEADER_LEN;
            self.skip = len;
            self.drain_skip();
        } else {
            self.failed = Some(e);
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
        e
    }
}
