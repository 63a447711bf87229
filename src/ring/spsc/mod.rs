//! The single-producer single-consumer ring of variable-length messages.
//!
//! # Positions
//!
//! `tail` (producer) and `head` (consumer) count bytes since the ring was created; they never wrap (a
//! u64 of bytes lasts centuries) and the data offset of a position is `pos & (capacity - 1)`. Every
//! record starts on an 8-byte boundary, with an 8-byte [frame header](crate::wire) word.
//!
//! # Publication
//!
//! The consumer never reads the producer's cursor. It polls the header word at its own position:
//! zero means "nothing committed here yet", anything else is a committed record, stored last, with
//! Release, after its payload. To keep that true across laps, a producer that reserves a record first
//! zeroes the header slot *after* it (the terminator), and it never lets its terminator reach the
//! consumer's position (it keeps 8 bytes of slack). So the consumer, on arriving at a position through a
//! committed record, finds either that terminator or the next committed header, never stale bytes.
//! One cache line (header + start of payload) carries both the signal and the data, which is what lets a
//! round trip cost about what two bare cache-line transfers cost.
//!
//! A record that would not fit before the end of the data area is preceded by a padding record that
//! fills the rest of the area; the message then starts at offset 0, contiguous. A record is at most half
//! the capacity, so one always fits after at most one pad.
//!
//! The consumer publishes `head` in batches (every `capacity / 16` bytes, and whenever it finds the ring
//! empty or closes). The producer reads `head` only when its process-local copy says the ring is full.
//!
//! # Untrusted memory
//!
//! Every header word and cursor read from the ring is read once into a local and checked (kind, reserved
//! bits, length against the validated maximum, record against the end of the data area, cursor against
//! the capacity) before it is used. A peer that breaks the protocol gets [`RecvError::Corrupt`] or
//! [`SendError::Corrupt`] out of us, never an out-of-bounds access. It can still make payload bytes
//! change under a reader's feet: the trust model in ARCHITECTURE.md spells that out.

mod consumer;
mod producer;

pub use consumer::{Consumer, ReadGuard};
pub use producer::{Producer, WriteGuard, DEFAULT_BATCH_BYTES};

use super::error::{AttachError, Corruption};
use super::{endpoint, ControlBlock, Header, RingConfig, RingKind, Role, RoleToken, Storage};
use crate::sync::Ordering;
use crate::sync::{AtomicU32, AtomicU64};
use crate::wait::WaitCell;
use crate::wait::{WaitParams, WaitStrategy};
use crossbeam_utils::CachePadded;
use std::time::{Duration, Instant};

/// Lifecycle of the two endpoints; written only at attach and close, read by the peer on slow paths
/// and by the producer on each send (it stays in both caches as a shared line).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct States {
    pub producer: AtomicU32,
    pub consumer: AtomicU32,
    pub producer_pid: AtomicU32,
    pub consumer_pid: AtomicU32,
}

/// The SPSC control block at offset 0 of a region. Every field that is written by a different side sits
/// in its own 128-byte block (two x86 cache lines: the adjacent-line prefetcher pairs them).
#[repr(C)]
#[derive(Debug)]
#[doc(hidden)]
pub struct Control {
    pub(crate) header: CachePadded<Header>,
    /// Producer block: a hint of the committed write position (bytes since creation). Written on every
    /// commit, read only when a producer re-attaches, so it never leaves the producer's cache in steady
    /// state. The consumer does not need it: it polls each record's header word instead.
    pub(crate) tail: CachePadded<AtomicU64>,
    /// Consumer block: the read position (bytes since creation), published in batches.
    pub(crate) head: CachePadded<AtomicU64>,
    pub(crate) states: CachePadded<States>,
    /// The consumer sleeps here when the ring is empty.
    pub(crate) data_ready: CachePadded<WaitCell>,
    /// The producer sleeps here when the ring is full.
    pub(crate) space_ready: CachePadded<WaitCell>,
}

#[cfg(not(ringwire_loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Header>() == 64);
    assert!(offset_of!(Control, tail) == 128);
    assert!(offset_of!(Control, head) == 256);
    assert!(offset_of!(Control, states) == 384);
    assert!(offset_of!(Control, data_ready) == 512);
    assert!(offset_of!(Control, space_ready) == 640);
    assert!(size_of::<Control>() == 768);
    assert!(size_of::<Control>() <= RingKind::Spsc.data_offset());
};

// SAFETY: repr(C), starts with the Header, 768 bytes (< one page, asserted above), 128-byte alignment,
// and holds only atomics and integers, valid for any bit pattern.
unsafe impl ControlBlock for Control {
    const KIND: RingKind = RingKind::Spsc;
    fn new(header: Header, _config: RingConfig) -> Self {
        Control {
            header: CachePadded::new(header),
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            states: CachePadded::new(States {
                producer: AtomicU32::new(endpoint::VACANT),
                consumer: AtomicU32::new(endpoint::VACANT),
                producer_pid: AtomicU32::new(0),
                consumer_pid: AtomicU32::new(0),
            }),
            data_ready: CachePadded::new(WaitCell::new()),
            space_ready: CachePadded::new(WaitCell::new()),
        }
    }
    fn header(&self) -> &Header {
        &self.header
    }
}

impl Control {
    pub(crate) fn state(&self, role: Role) -> &AtomicU32 {
        match role {
            Role::Producer => &self.states.producer,
            Role::Consumer => &self.states.consumer,
        }
    }

    pub(crate) fn pid(&self, role: Role) -> &AtomicU32 {
        match role {
            Role::Producer => &self.states.producer_pid,
            Role::Consumer => &self.states.consumer_pid,
        }
    }
}

/// The 8-byte word at data offset `off` of `storage`'s ring, whose data area starts at `data` (the
/// storage's `data()`, cached by each endpoint at attach): what `storage.word(off)` returns, without
/// recomputing the data pointer on every access of the hot path (production), or loom's tracked word
/// (model checking, where the storage keeps its words apart).
#[inline(always)]
fn word_at<S: Storage>(storage: &S, data: *mut u8, off: usize) -> &AtomicU64 {
    #[cfg(ringwire_loom)]
    {
        let _ = data;
        storage.word(off)
    }
    #[cfg(not(ringwire_loom))]
    {
        debug_assert!(off % 8 == 0 && off < storage.config().capacity && data == storage.data());
        let _ = storage;
        // SAFETY: `data` is `storage.data()`, which the Storage contract makes valid and 8-aligned for
        // `capacity` bytes for as long as `storage` lives (the returned borrow); callers pass an 8-aligned
        // in-bounds offset (as for `Storage::word`); AtomicU64 has the size and alignment of u64.
        unsafe { &*(data.add(off) as *const AtomicU64) }
    }
}

/// The control block of `storage`, through the pointer an endpoint took from `storage.control()` at
/// attach (which checked the kind): the same block, without the kind check on every access.
#[inline(always)]
fn control_at<S: Storage>(storage: &S, control: *const Control) -> &Control {
    debug_assert!(std::ptr::eq(control, storage.control::<Control>()));
    let _ = storage;
    // SAFETY: `control` came from `storage.control::<Control>()`, a reference into memory that `storage`
    // owns and keeps at one address for as long as it lives (a mapping or a heap block, never moved);
    // the returned borrow is tied to `storage`.
    unsafe { &*control }
}

/// The lock byte of an SPSC role.
pub(crate) fn lock_of(role: Role) -> u32 {
    match role {
        Role::Producer => 0,
        Role::Consumer => 1,
    }
}

/// Claims `role` in `storage`.
fn claim<S: Storage>(storage: &S, role: Role) -> Result<RoleToken, AttachError> {
    storage.claim(lock_of(role), storage.control::<Control>().state(role))?.ok_or(AttachError::RoleTaken(role))
}

/// Whether the endpoint in `role` is attached and alive.
fn alive<S: Storage>(storage: &S, role: Role) -> bool {
    storage.alive(lock_of(role), storage.control::<Control>().state(role))
}

/// Why an SPSC send or reservation failed. Nothing was written when this is returned. Variant names are
/// the shared vocabulary of [`ErrorKind`](super::ErrorKind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// `try_` forms: not enough free space right now.
    #[error("ring is full")]
    WouldBlock,
    /// `_timeout` / `_deadline` forms: still full when the time ran out.
    #[error("timed out waiting for space")]
    Timeout,
    /// The consumer closed its end.
    #[error("consumer closed the ring")]
    PeerGone,
    /// The consumer process died without closing (detected by its role lock).
    #[error("consumer process died")]
    PeerReset,
    /// The message is larger than the ring's maximum.
    #[error("message of {len} bytes exceeds the ring maximum of {max}")]
    Oversize {
        /// Requested length.
        len: usize,
        /// The ring's maximum message size.
        max: usize,
    },
    /// The consumer's cursor is impossible; the ring can't be used any more.
    #[error("ring corrupted: {0}")]
    Corrupt(Corruption),
}

/// Why an SPSC receive failed. No message was consumed when this is returned. Variant names are the
/// shared vocabulary of [`ErrorKind`](super::ErrorKind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// `try_` forms: nothing to read right now.
    #[error("ring is empty")]
    Empty,
    /// `_timeout` / `_deadline` forms: still empty when the time ran out.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The producer closed its end and every message it sent has been received (end of stream).
    #[error("producer closed the ring")]
    PeerGone,
    /// The producer process died without closing, and every message it committed has been received.
    #[error("producer process died")]
    PeerReset,
    /// `recv_into`: the next message needs a buffer of `needed` bytes; it stays in the ring.
    #[error("buffer too small: message needs {needed} bytes")]
    BufferTooSmall {
        /// Length of the waiting message.
        needed: usize,
    },
    /// The ring holds something no correct producer writes; every later call returns this too.
    #[error("ring corrupted: {0}")]
    Corrupt(Corruption),
}

impl super::RingError for SendError {
    fn kind(&self) -> super::ErrorKind {
        use super::ErrorKind as K;
        match self {
            SendError::WouldBlock => K::WouldBlock,
            SendError::Timeout => K::Timeout,
            SendError::PeerGone => K::PeerGone,
            SendError::PeerReset => K::PeerReset,
            SendError::Oversize { .. } => K::Oversize,
            SendError::Corrupt(_) => K::Corrupt,
        }
    }
}

impl super::RingError for RecvError {
    fn kind(&self) -> super::ErrorKind {
        use super::ErrorKind as K;
        match self {
            RecvError::Empty => K::Empty,
            RecvError::Timeout => K::Timeout,
            RecvError::PeerGone => K::PeerGone,
            RecvError::PeerReset => K::PeerReset,
            RecvError::BufferTooSmall { .. } => K::BufferTooSmall,
            RecvError::Corrupt(_) => K::Corrupt,
        }
    }
}

fn params(wait: WaitStrategy, liveness: Duration, deadline: Option<Instant>, asymmetric: bool) -> WaitParams {
    WaitParams { strategy: wait, deadline, liveness, asymmetric }
}

/// The producer end of an in-process ring.
pub type HeapProducer = Producer<std::sync::Arc<super::heap::HeapStorage>>;
/// The consumer end of an in-process ring.
pub type HeapConsumer = Consumer<std::sync::Arc<super::heap::HeapStorage>>;

/// Creates an in-process ring on the heap (threads of one process) and returns both ends.
pub fn channel(config: super::RingConfig) -> Result<(HeapProducer, HeapConsumer), super::ConfigError> {
    config.validate()?;
    let storage = std::sync::Arc::new(super::heap::HeapStorage::new::<Control>(config));
    let tx = Producer::attach(storage.clone()).expect("a fresh heap ring has a free producer role");
    let rx = Consumer::attach(storage).expect("a fresh heap ring has a free consumer role");
    Ok((tx, rx))
}

fn consumer_gone<S: Storage>(storage: &S) -> Option<SendError> {
    peer_gone(storage, Role::Consumer).map(|clean| if clean { SendError::PeerGone } else { SendError::PeerReset })
}

fn producer_gone<S: Storage>(storage: &S) -> Option<RecvError> {
    peer_gone(storage, Role::Producer).map(|clean| if clean { RecvError::PeerGone } else { RecvError::PeerReset })
}

/// `Some(true)` if `role` closed, `Some(false)` if it died, `None` if it is alive or not yet attached.
fn peer_gone<S: Storage>(storage: &S, role: Role) -> Option<bool> {
    // Acquire: pairs with the Release store of CLOSED in the peer's Drop.
    match storage.control::<Control>().state(role).load(Ordering::Acquire) {
        endpoint::CLOSED => Some(true),
        endpoint::ATTACHED if !alive(storage, role) => {
            // The state may have moved to CLOSED between our two looks (a clean close releases the lock
            // after storing CLOSED).
            let clean = storage.control::<Control>().state(role).load(Ordering::Acquire) == endpoint::CLOSED;
            Some(clean)
        }
        _ => None,
    }
}
