//! The frame header shared by the shared-memory ring and every stream and datagram transport: the
//! lowest layer above the atomics facade, used by the rings (records) and by the transports' codec
//! (`transport::codec`, feature `transport`).
//!
//! A frame is an 8-byte little-endian header followed by `len` payload bytes:
//!
//! ```text
//!  byte  0       4      5       6        8
//!        +-------+------+-------+--------+----------------------+
//!        |  len  | kind | flags |  ext   | payload (len bytes)  |
//!        |  u32  |  u8  |  u8   |  u16   |                      |
//!        +-------+------+-------+--------+----------------------+
//! ```
//!
//! * `len`: payload length in bytes (the header not included).
//! * `kind`: [`Kind`]. `0` is never a valid kind, so an all-zero header word never is a frame: the ring
//!   uses zero as its "nothing committed here yet" marker. `0x7f` ([`Kind::Pad`]) exists only in the ring.
//! * `flags`: reserved, must be 0 in layout version 1.
//! * `ext`: length of an event name placed at the start of the payload (the events layer, feature
//!   `events`): the first `ext` of the `len` payload bytes are the name, the rest the event's payload.
//!   0 for a plain message. `ext <= len` always (a header with `ext > len` is refused:
//!   [`HeaderDecodeError::ExtTooLong`]); a [`Kind::Pad`] has `ext = 0`.
//!
//! In the ring a record is a frame padded with zeros to the next multiple of 8 bytes, so every header
//! is 8-byte aligned and can be read and published as one atomic `u64`.
//!
//! # Kinds
//!
//! | value | kind | where |
//! |------:|------|-------|
//! | 0 | never valid | the ring's "nothing committed here yet" marker |
//! | 1 | [`Kind::Data`] | everywhere: an application message |
//! | 2..=0x7e | reserved | refused ([`HeaderDecodeError::UnknownKind`]) until a later version defines them |
//! | 0x7f | [`Kind::Pad`] | ring only: skip to the end of the data area; refused on streams and datagrams |
//! | 0x80..=0xff | reserved | refused |
//!
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An application message.
    Data = 1,
    /// Ring only: skip to the end of the data area (the next record starts at offset 0).
    Pad = 0x7f,
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// Frame kind.
    pub kind: Kind,
    /// How many of the `len` payload bytes, at its start, are an event name (0: a plain message).
    pub ext: u16,
}

/// Why 8 header bytes are not a valid frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderDecodeError {
    /// The kind byte names no known kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The reserved flags byte is not zero (or a padding record has a non-zero `ext`).
    #[error("reserved frame header bits set: flags={flags:#x} ext={ext:#x}")]
    Reserved {
        /// The flags byte found.
        flags: u8,
        /// The ext field found.
        ext: u16,
    },
    /// `ext` (the event-name length) is larger than the whole payload.
    #[error("event name of {ext} bytes in a payload of {len}")]
    ExtTooLong {
        /// The ext field found.
        ext: u16,
        /// The payload length found.
        len: u32,
    },
}

impl FrameHeader {
    /// Packs the header into its 8 wire bytes, as a little-endian `u64` (the ring publishes it with one
    /// atomic store).
    #[inline]
    pub const fn to_word(self) -> u64 {
        self.len as u64 | (self.kind as u64) << 32 | (self.ext as u64) << 48
    }

    /// A data frame header with a `len`-byte payload, no event name.
    #[inline]
    pub const fn data(len: u32) -> Self {
        FrameHeader { len, kind: Kind::Data, ext: 0 }
    }

    /// Unpacks a header from its little-endian `u64` form. Validates everything but `len`, whose bound
    /// depends on the reader's configured maximum.
    #[inline]
    pub fn from_word(word: u64) -> Result<Self, HeaderDecodeError> {
        let len = word as u32;
        // The hot path of every ring and stream: a plain data frame (kind 1, flags 0, ext 0) is one
        // comparison of the upper half, as before ext existed.
        if word >> 32 == Kind::Data as u64 {
            return Ok(FrameHeader { len, kind: Kind::Data, ext: 0 });
        }
        // Next, an event: kind 1, flags 0, a name that fits.
        let ext = (word >> 48) as u16;
        if (word >> 32) as u16 == Kind::Data as u16 && ext as u32 <= len {
            return Ok(FrameHeader { len, kind: Kind::Data, ext });
        }
        Self::from_word_other(word)
    }

    /// Everything but a data frame: padding, and what is refused.
    #[cold]
    fn from_word_other(word: u64) -> Result<Self, HeaderDecodeError> {
        let len = word as u32;
        let kind = (word >> 32) as u8;
        let flags = (word >> 40) as u8;
        let ext = (word >> 48) as u16;
        if flags != 0 {
            return Err(HeaderDecodeError::Reserved { flags, ext });
        }
        if ext as u32 > len {
            return Err(HeaderDecodeError::ExtTooLong { ext, len });
        }
        let kind = match kind {
            1 => Kind::Data,
            0x7f if ext == 0 => Kind::Pad,
            0x7f => return Err(HeaderDecodeError::Reserved { flags, ext }),
            k => return Err(HeaderDecodeError::UnknownKind(k)),
        };
        Ok(FrameHeader { len, kind, ext })
    }

    /// The 8 header bytes as they appear on a stream.
    #[inline]
    pub const fn to_bytes(self) -> [u8; HEADER_LEN] {
        self.to_word().to_le_bytes()
    }

    /// Decodes 8 header bytes read from a stream.
    #[inline]
    pub fn from_bytes(bytes: [u8; HEADER_LEN]) -> Result<Self, HeaderDecodeError> {
        Self::from_word(u64::from_le_bytes(bytes))
    }
}

/// Size of a ring record holding a `len`-byte payload: header plus payload, rounded up to 8.
#[inline]
pub const fn record_len(len: usize) -> usize {
    (HEADER_LEN + len + 7) & !7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        for len in [0u32, 1, 7, 8, 4096, u32::MAX] {
            let h = FrameHeader::data(len);
            assert_eq!(FrameHeader::from_bytes(h.to_bytes()), Ok(h));
            let e = FrameHeader { len, kind: Kind::Data, ext: len.min(u16::MAX as u32) as u16 };
            assert_eq!(FrameHeader::from_bytes(e.to_bytes()), Ok(e));
        }
        let pad = FrameHeader { len: 0, kind: Kind::Pad, ext: 0 };
        assert_ne!(pad.to_word(), 0, "an empty pad must not look uncommitted");
        assert_eq!(FrameHeader::from_word(pad.to_word()), Ok(pad));
        assert_eq!(FrameHeader::from_word(0), Err(HeaderDecodeError::UnknownKind(0)));
    }

    #[test]
    fn header_rejects_unknown_and_reserved() {
        assert_eq!(FrameHeader::from_word(9 << 32), Err(HeaderDecodeError::UnknownKind(9)));
        assert!(matches!(FrameHeader::from_word(1 << 32 | 1 << 40), Err(HeaderDecodeError::Reserved { .. })));
        assert_eq!(FrameHeader::from_word(1 << 32 | 1 << 48), Err(HeaderDecodeError::ExtTooLong { ext: 1, len: 0 }));
        assert_eq!(FrameHeader::from_word(3 | 1 << 32 | 3 << 48).map(|h| h.ext), Ok(3));
        assert!(matches!(FrameHeader::from_word(8 | 0x7f << 32 | 1 << 48), Err(HeaderDecodeError::Reserved { .. })));
    }

    #[test]
    fn record_len_is_aligned() {
        assert_eq!(record_len(0), 8);
        assert_eq!(record_len(1), 16);
        assert_eq!(record_len(8), 16);
        assert_eq!(record_len(9), 24);
        assert_eq!(record_len(64), 72);
    }
}
