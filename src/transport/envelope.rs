//! The 16-byte envelope (publisher id, sequence number) in front of every message of the brokered
//! adapters (redis, amqp), and the receive-side bookkeeping that turns it into a [`DeliveryReport`].

use crate::transport::codec::{decode_datagram, FrameError};
use crate::wire::{FrameHeader, HeaderDecodeError, Kind};
use std::collections::HashMap;

/// Bytes of the envelope in front of every message: publisher id and sequence number.
pub const ENVELOPE_LEN: usize = 16;

/// A message lost: `count` messages of `publisher`, from sequence number `first` on, never arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The publisher (its random id, from the envelope).
    pub publisher: u64,
    /// The first missing sequence number.
    pub first: u64,
    /// How many are missing.
    pub count: u64,
}

/// What a brokered receiver noticed about delivery since the last time it was asked (`take_report()` of
/// the redis `Subscriber` and `StreamConsumer` and of the amqp `Consumer`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Times the connection was lost and made again. On pub/sub each one may have lost messages: those
    /// of publishers that have sent again since are counted in `gaps`; a publisher that has not sent since
    /// can't be accounted for.
    pub reconnects: u64,
    /// Jumps in a publisher's sequence numbers: messages that never arrived. Exact for pub/sub and for a
    /// stream group with one consumer; in a group of several each consumer gets a share of every
    /// producer's messages, so gaps there say only that another consumer got them (or they were trimmed).
    pub gaps: Vec<Gap>,
    /// Messages delivered although their publisher's sequence number had been seen already (a sender that
    /// sent again after losing the server's reply).
    pub duplicates: u64,
    /// Messages delivered again: redis stream entries from a pending list (this consumer's own after it
    /// was created again under the same name, or entries claimed from a consumer that stopped
    /// acknowledging); AMQP messages the broker marked `redelivered` (a consumer's connection or channel
    /// closed before it acknowledged them).
    pub redelivered: u64,
    /// Sequence jumps too large to be real losses (more than [`MAX_PLAUSIBLE_GAP`]: a forged or corrupted
    /// envelope, or a publisher that starts its numbering over): not counted as lost; tracking of that
    /// publisher starts again from the new number.
    pub resets: u64,
    /// Publishers no longer tracked, to bound memory (more than [`MAX_TRACKED_PUBLISHERS`] seen; the
    /// least recently heard is forgotten). A forgotten publisher that sends again starts afresh: what it
    /// lost meanwhile is not counted.
    pub forgotten: u64,
}

/// A jump in a publisher's sequence numbers larger than this is taken as a reset, not as that many lost
/// messages (2^32: more than a day of an outage at 40,000 messages a second).
pub const MAX_PLAUSIBLE_GAP: u64 = 1 << 32;

/// Publishers a receiver keeps sequence state for (16 bytes each plus the map's overhead); past it the
/// least recently heard is forgotten (and counted in [`DeliveryReport::forgotten`]).
pub const MAX_TRACKED_PUBLISHERS: usize = 4096;

impl DeliveryReport {
    /// Messages known lost (the sum of the gaps).
    pub fn lost(&self) -> u64 {
        self.gaps.iter().map(|g| g.count).sum()
    }

    /// Whether nothing was noticed.
    pub fn is_empty(&self) -> bool {
        *self == DeliveryReport::default()
    }
}

/// Per-publisher sequence tracking, bounded to [`MAX_TRACKED_PUBLISHERS`] entries.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    /// Publisher id -> (next sequence number expected, when it was last heard from).
    pub(super) next: HashMap<u64, (u64, u64)>,
    /// A clock of messages observed (for "least recently heard").
    pub(super) tick: u64,
    pub(super) report: DeliveryReport,
}

impl Tracker {
    /// Records message `seq` of `publisher`; `redelivered`: it came from a pending list.
    pub(super) fn observe(&mut self, publisher: u64, seq: u64, redelivered: bool) {
        if redelivered {
            self.report.redelivered += 1;
        }
        self.tick += 1;
        let tick = self.tick;
        match self.next.get_mut(&publisher) {
            None => {
                if self.next.len() >= MAX_TRACKED_PUBLISHERS {
                    self.forget_oldest();
                }
                // Messages a publisher sent before we first heard from it were not ours to receive.
                self.next.insert(publisher, (seq.wrapping_add(1), tick));
            }
            Some((next, heard)) => {
                *heard = tick;
                if seq == *next {
                    *next = seq.wrapping_add(1);
                } else if seq > *next && seq - *next <= MAX_PLAUSIBLE_GAP {
                    self.report.gaps.push(Gap { publisher, first: *next, count: seq - *next });
                    *next = seq.wrapping_add(1);
                } else if seq > *next {
                    self.report.resets += 1;
                    *next = seq.wrapping_add(1);
                } else if !redelivered {
                    self.report.duplicates += 1;
                }
            }
        }
    }

    /// Drops the publisher heard from least recently (a scan: only when a new publisher arrives at the
    /// bound).
    fn forget_oldest(&mut self) {
        if let Some(&oldest) = self.next.iter().min_by_key(|(_, &(_, heard))| heard).map(|(id, _)| id) {
            self.next.remove(&oldest);
            self.report.forgotten += 1;
        }
    }

    pub(super) fn take(&mut self) -> Option<DeliveryReport> {
        (!self.report.is_empty()).then(|| std::mem::take(&mut self.report))
    }
}

/// A fresh random non-zero publisher id.
pub(super) fn new_publisher_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() | 1
}

/// Encodes the message made of `parts` (whose first `ext` bytes are an event name) of `publisher`
/// number `seq` as the value stored in Redis: header (`ext` as given), envelope, message. The caller
/// checked `ext <= ` the message's length.
pub(super) fn encode(out: &mut Vec<u8>, publisher: u64, seq: u64, ext: u16, parts: &[&[u8]]) {
    out.clear();
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let len = (ENVELOPE_LEN + n) as u32;
    out.extend_from_slice(&FrameHeader { len, kind: Kind::Data, ext }.to_bytes());
    out.extend_from_slice(&publisher.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Decodes a value read from Redis: (publisher, seq, ext, message). `ext` counts the event-name bytes
/// at the start of the message (after the envelope); more than the message holds is a bad frame.
pub(crate) fn decode(value: &[u8], max: usize) -> Result<(u64, u64, u16, &[u8]), FrameError> {
    let frame = decode_datagram(value, max + ENVELOPE_LEN).map_err(|e| match e {
        FrameError::Oversize { len, .. } => FrameError::Oversize { len: len.saturating_sub(ENVELOPE_LEN), max },
        e => e,
    })?;
    let Some((env, msg)) = frame.payload.split_first_chunk::<ENVELOPE_LEN>() else {
        return Err(FrameError::Truncated { missing: ENVELOPE_LEN - frame.payload.len() });
    };
    let publisher = u64::from_le_bytes(env[..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(env[8..].try_into().expect("8 bytes"));
    if frame.ext as usize > msg.len() {
        return Err(FrameError::BadHeader(HeaderDecodeError::ExtTooLong { ext: frame.ext, len: msg.len() as u32 }));
    }
    Ok((publisher, seq, frame.ext, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::HEADER_LEN;

    #[test]
    fn envelope_round_trip() {
        let mut v = Vec::new();
        encode(&mut v, 7, 42, 0, &[b"hello"]);
        assert_eq!(v.len(), HEADER_LEN + ENVELOPE_LEN + 5);
        assert_eq!(&v[..4], &21u32.to_le_bytes());
        assert_eq!(v[4], 1);
        assert_eq!(decode(&v, 5).unwrap(), (7, 42, 0, &b"hello"[..]));
        assert_eq!(decode(&v, 4), Err(FrameError::Oversize { len: 5, max: 4 }));
        encode(&mut v, 7, 43, 2, &[b"hi", b"!"]);
        assert_eq!(&v[6..8], &2u16.to_le_bytes());
        assert_eq!(decode(&v, 5).unwrap(), (7, 43, 2, &b"hi!"[..]));
        v[6] = 4; // ext 4 > the 3 message bytes, though <= len (16 + 3)
        assert!(matches!(decode(&v, 5), Err(FrameError::BadHeader(HeaderDecodeError::ExtTooLong { .. }))));
        encode(&mut v, 7, 42, 0, &[]);
        v.truncate(HEADER_LEN + 3);
        v[0] = 3;
        assert_eq!(decode(&v, 10), Err(FrameError::Truncated { missing: 13 }));
        assert!(matches!(decode(b"garbage!garbage", 10), Err(FrameError::BadHeader(_))));
    }

    #[test]
    fn tracker_counts_gaps_and_duplicates() {
        let mut t = Tracker::default();
        for s in [5, 6, 9, 9, 10] {
            t.observe(1, s, false);
        }
        t.observe(2, 0, false);
        t.observe(1, 3, true);
        let r = t.take().unwrap();
        assert_eq!(r.gaps, [Gap { publisher: 1, first: 7, count: 2 }]);
        assert_eq!((r.lost(), r.duplicates, r.redelivered), (2, 1, 1));
        assert!(t.take().is_none());
    }

    #[test]
    fn tracker_takes_implausible_jumps_as_resets() {
        let mut t = Tracker::default();
        t.observe(1, 0, false);
        t.observe(1, u64::MAX - 2, false); // a forged jump of almost 2^64
        t.observe(1, 1, false); // the real publisher's next: it looks like a duplicate, not 2^64 lost
        let r = t.take().unwrap();
        assert_eq!((r.lost(), r.resets, r.duplicates), (0, 1, 1), "{r:?}");
    }

    #[test]
    fn tracker_memory_is_bounded() {
        let mut t = Tracker::default();
        let n = MAX_TRACKED_PUBLISHERS as u64 + 1000;
        for id in 0..n {
            t.observe(id, 0, false);
        }
        assert_eq!(t.next.len(), MAX_TRACKED_PUBLISHERS);
        let r = t.take().unwrap();
        assert_eq!(r.forgotten, 1000);
        // The most recent publishers are the ones kept: their next message is in order.
        t.observe(n - 1, 1, false);
        assert!(t.take().is_none());
    }
}
