//! Ring algorithms, written once over an abstract [`Storage`] so that the same code runs on the heap
//! (threads of one process), on a shared mapping (processes), and under loom.
//!
//! The storage provides a [`Control`] block (header, cursors, states, wait cells: see ARCHITECTURE.md
//! for the byte layout) and a data area of `capacity` bytes. Nothing here knows about mmap, files or
//! futex system calls.

pub mod spsc;

#[cfg(not(ringwire_loom))]
pub(crate) mod heap;
#[cfg(ringwire_loom)]
#[doc(hidden)]
pub mod heap;

use crate::sync::{AtomicU32, AtomicU64};
use crate::wait::WaitCell;
use crossbeam_utils::CachePadded;

/// `b"RINGWIRE"` read as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"RINGWIRE");
/// Version of the shared layout; bumped on any incompatible change.
pub(crate) const LAYOUT_VERSION: u32 = 1;
/// Offset of the data area from the start of a shared region (the control block fits in one page).
pub(crate) const DATA_OFFSET: usize = 4096;

/// Which algorithm a region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RingKind {
    /// One producer, one consumer, variable-length messages.
    Spsc = 1,
}

impl RingKind {
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(RingKind::Spsc),
            _ => None,
        }
    }
}

/// The two ends of an SPSC ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The writing end.
    Producer,
    /// The reading end.
    Consumer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

/// Immutable description of a ring, written once by its creator before the magic number is published.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    /// [`MAGIC`]; stored last, with Release, once everything else is initialised.
    pub magic: AtomicU64,
    pub version: u32,
    pub kind: u32,
    /// Size of the whole region (control page + data), which must equal the file size.
    pub total_len: u64,
    pub data_offset: u64,
    /// Size of the data area in bytes: a power of two.
    pub capacity: u64,
    pub max_message: u32,
    pub creator_pid: u32,
    /// [`FLAG_ASYMMETRIC_FENCES`] or 0.
    pub flags: u32,
    pub _reserved0: u32,
    pub _reserved1: u64,
}

/// Header flag: the sleep/wake protocol uses a compiler fence on the notifying side and
/// `membarrier(GLOBAL_EXPEDITED)` on the sleeping side (see `sync::heavy_barrier`). Every process that
/// attaches must be able to register for membarrier.
pub(crate) const FLAG_ASYMMETRIC_FENCES: u32 = 1;

/// Values of an endpoint's state word.
pub(crate) mod endpoint {
    /// Nobody has attached yet.
    pub const VACANT: u32 = 0;
    /// An endpoint is attached (and, across processes, holds its role lock).
    pub const ATTACHED: u32 = 1;
    /// The endpoint closed cleanly.
    pub const CLOSED: u32 = 2;
}

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

/// The control block at offset 0 of a region. Every field that is written by a different side sits in
/// its own 128-byte block (two x86 cache lines: the adjacent-line prefetcher pairs them).
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
    assert!(size_of::<Control>() <= DATA_OFFSET);
};

/// Sizes fixed when a ring is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes in the data area. A power of two, at least 4 KiB, at most 1 TiB.
    pub capacity: usize,
    /// Largest payload one message may carry. Its record (header + payload, rounded up to 8) must fit
    /// in half the capacity, so that a message always fits contiguously after at most one wrap.
    pub max_message: usize,
}

impl Default for RingConfig {
    /// 1 MiB of data, messages up to 64 KiB.
    fn default() -> Self {
        RingConfig { capacity: 1 << 20, max_message: 64 << 10 }
    }
}

/// Why a [`RingConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Capacity is not a power of two in [4 KiB, 1 TiB].
    #[error("capacity {0} is not a power of two between 4096 and 2^40")]
    Capacity(usize),
    /// The largest record would not fit in half the capacity (with 8 bytes to spare).
    #[error("max_message {max_message} is too large for capacity {capacity} (its record must fit in half)")]
    MaxMessage {
        /// The requested maximum.
        max_message: usize,
        /// The requested capacity.
        capacity: usize,
    },
}

impl RingConfig {
    /// A configuration with the given sizes (validated when the ring is created).
    pub const fn new(capacity: usize, max_message: usize) -> Self {
        RingConfig { capacity, max_message }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = self.capacity;
        if !c.is_power_of_two() || !(4096..=1 << 40).contains(&c) {
            return Err(ConfigError::Capacity(c));
        }
        if self.max_message > u32::MAX as usize - 16 || crate::frame::record_len(self.max_message) + 8 > c / 2 {
            return Err(ConfigError::MaxMessage { max_message: self.max_message, capacity: c });
        }
        Ok(())
    }
}

/// Where a ring's memory lives. Implemented by the heap storage and the shared-memory region.
///
/// # Safety
///
/// Implementors guarantee, for as long as the storage value lives: `control()` is a valid, initialised
/// control block whose header fields were validated against the real size of the memory; `data()` points
/// to `capacity` readable and writable bytes, 8-byte aligned, where `capacity` is the value in the header;
/// and `word(off)` for any 8-aligned `off < capacity` returns the atomic view of those 8 bytes.
pub unsafe trait Storage: Send + Sync {
    /// The control block.
    #[doc(hidden)]
    fn control(&self) -> &Control;
    /// Start of the data area.
    #[doc(hidden)]
    fn data(&self) -> *mut u8;
    /// The validated sizes of this ring, from process-local memory (never re-read from the shared header,
    /// which a peer could rewrite after validation).
    #[doc(hidden)]
    fn config(&self) -> RingConfig;
    /// Whether the ring uses the asymmetric sleep/wake barriers (validated, process-local copy).
    #[doc(hidden)]
    fn asymmetric_fences(&self) -> bool;
    /// The record-header word at data offset `off` (8-aligned, in bounds).
    #[doc(hidden)]
    #[inline(always)]
    fn word(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0);
        // SAFETY: the trait contract makes `data()` valid and 8-aligned for `capacity` bytes, and callers
        // pass an 8-aligned in-bounds offset. AtomicU64 has the size and alignment of u64.
        unsafe { &*(self.data().add(off) as *const AtomicU64) }
    }
    /// Loom hook: `len` payload bytes at `off` were written non-atomically. No-op in production.
    #[doc(hidden)]
    #[inline(always)]
    fn note_write(&self, _off: usize, _len: usize) {}
    /// Loom hook: `len` payload bytes at `off` were read. No-op in production.
    #[doc(hidden)]
    #[inline(always)]
    fn note_read(&self, _off: usize, _len: usize) {}
    /// Claims `role` for the caller. The returned token is held by the endpoint and dropped with it;
    /// across processes it is an advisory lock that the kernel releases if the process dies.
    #[doc(hidden)]
    fn claim(&self, role: Role) -> Result<RoleToken, crate::OpenError>;
    /// Whether an endpoint in `role` is attached and alive right now. Called on slow paths only.
    #[doc(hidden)]
    fn alive(&self, role: Role) -> bool;
}

/// Proof that an endpoint holds its role; releases it on drop.
#[doc(hidden)]
pub struct RoleToken(#[allow(dead_code)] pub(crate) Option<std::os::fd::OwnedFd>);

impl Control {
    /// A fresh control block for a ring of `config`, with `magic` still zero: the creator publishes
    /// [`MAGIC`] with a Release store once the block is in place (see `publish`).
    pub(crate) fn new(kind: RingKind, config: RingConfig, total_len: u64, data_offset: u64, flags: u32) -> Self {
        Control {
            header: CachePadded::new(Header {
                magic: AtomicU64::new(0),
                version: LAYOUT_VERSION,
                kind: kind as u32,
                total_len,
                data_offset,
                capacity: config.capacity as u64,
                max_message: config.max_message as u32,
                creator_pid: std::process::id(),
                flags,
                _reserved0: 0,
                _reserved1: 0,
            }),
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

    /// Marks the block initialised.
    pub(crate) fn publish(&self) {
        // SYNC POINT: Release; an opener's Acquire load of `magic` (region::validate) then sees every
        // field written by `new`.
        self.header.magic.store(MAGIC, crate::sync::Ordering::Release);
    }

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

// SAFETY: forwards to `S`, whose guarantees hold for as long as the Arc keeps it alive.
unsafe impl<S: Storage> Storage for std::sync::Arc<S> {
    #[inline(always)]
    fn control(&self) -> &Control {
        (**self).control()
    }
    #[inline(always)]
    fn data(&self) -> *mut u8 {
        (**self).data()
    }
    #[inline(always)]
    fn config(&self) -> RingConfig {
        (**self).config()
    }
    #[inline(always)]
    fn asymmetric_fences(&self) -> bool {
        (**self).asymmetric_fences()
    }
    #[inline(always)]
    fn word(&self, off: usize) -> &AtomicU64 {
        (**self).word(off)
    }
    #[inline(always)]
    fn note_write(&self, off: usize, len: usize) {
        (**self).note_write(off, len)
    }
    #[inline(always)]
    fn note_read(&self, off: usize, len: usize) {
        (**self).note_read(off, len)
    }
    fn claim(&self, role: Role) -> Result<RoleToken, crate::OpenError> {
        (**self).claim(role)
    }
    fn alive(&self, role: Role) -> bool {
        (**self).alive(role)
    }
}
