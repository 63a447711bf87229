//! Ring algorithms, written once over an abstract [`Storage`] so that the same code runs on the heap
//! (threads of one process), on a shared mapping (processes), and under loom.
//!
//! The storage provides a control page, which starts with the common [`Header`] and continues with the
//! control block of the ring's kind (cursors, endpoint states, wait cells: see ARCHITECTURE.md for each
//! byte layout), and a data area of `capacity` bytes. Nothing here knows about mmap, files or futex
//! system calls.

pub mod broadcast;
mod contract;
mod error;
#[cfg(not(ringwire_loom))]
pub mod inspect;
pub mod mpmc;
pub mod slots;
pub mod spsc;

#[cfg(not(ringwire_loom))]
pub(crate) mod heap;
#[cfg(ringwire_loom)]
#[doc(hidden)]
pub mod heap;

pub use contract::{Commit, ErrorKind, RingError, RingReceiver, RingSender};
pub(crate) use error::kind_name;
pub use error::{AttachError, Corruption};

use crate::sync::{AtomicU32, AtomicU64};

/// `b"RINGWIRE"` read as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"RINGWIRE");
/// Version of the shared layout; bumped on any incompatible change.
pub(crate) const LAYOUT_VERSION: u32 = 2;
/// Which algorithm a region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RingKind {
    /// One producer, one consumer, variable-length messages.
    Spsc = 1,
    /// Many producers, many consumers, each message to one consumer; fixed-size slots.
    Mpmc = 2,
    /// One or more publishers, every subscriber sees every message; fixed-size slots.
    Broadcast = 3,
}

impl RingKind {
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(RingKind::Spsc),
            2 => Some(RingKind::Mpmc),
            3 => Some(RingKind::Broadcast),
            _ => None,
        }
    }

    /// Offset of the data area from the start of a region of this kind: the control page(s) before it.
    /// The SPSC control block fits in one page; the slot rings keep a table of participants there too.
    pub(crate) const fn data_offset(self) -> usize {
        match self {
            RingKind::Spsc => 4096,
            RingKind::Mpmc | RingKind::Broadcast => slots::DATA_OFFSET,
        }
    }
}

impl std::fmt::Display for RingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RingKind::Spsc => "spsc",
            RingKind::Mpmc => "mpmc",
            RingKind::Broadcast => "broadcast",
        })
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
#[doc(hidden)]
pub struct Header {
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
/// Header flag (broadcast rings): publishers wait for the slowest subscriber instead of overwriting.
pub(crate) const FLAG_BACKPRESSURE: u32 = 2;

/// The header flags a ring of `kind` may carry.
pub(crate) const fn known_flags(kind: RingKind) -> u32 {
    match kind {
        RingKind::Broadcast => FLAG_ASYMMETRIC_FENCES | FLAG_BACKPRESSURE,
        _ => FLAG_ASYMMETRIC_FENCES,
    }
}

impl Header {
    /// A header for a region of `kind` and `config`, with `magic` still zero: the creator publishes
    /// [`MAGIC`] with a Release store once the whole control block is in place (see [`publish`]).
    pub(crate) fn new(kind: RingKind, config: RingConfig, flags: u32) -> Self {
        let data_offset = kind.data_offset();
        Header {
            magic: AtomicU64::new(0),
            version: LAYOUT_VERSION,
            kind: kind as u32,
            total_len: (data_offset + config.capacity) as u64,
            data_offset: data_offset as u64,
            capacity: config.capacity as u64,
            max_message: config.max_message as u32,
            creator_pid: std::process::id(),
            flags,
            _reserved0: 0,
            _reserved1: 0,
        }
    }
}

/// Marks a control block initialised.
pub(crate) fn publish<C: ControlBlock>(control: &C) {
    // SYNC POINT: Release; an opener's Acquire load of `magic` (shm::validate_header) then sees every
    // field the creator wrote before.
    control.header().magic.store(MAGIC, crate::sync::Ordering::Release);
}

/// The control block of one ring kind: the start of a region's control page.
///
/// # Safety
///
/// Implementors are `repr(C)`, start with a [`Header`], fit in `KIND.data_offset()` bytes, need no
/// alignment beyond 128, and are valid for any bit pattern (they hold only atomics and plain integers),
/// since a region written by another process is read through them.
#[doc(hidden)]
pub unsafe trait ControlBlock: Send + Sync + Sized + 'static {
    /// The kind whose block this is.
    const KIND: RingKind;
    /// A fresh block (magic still zero).
    fn new(header: Header, config: RingConfig) -> Self;
    /// The common header.
    fn header(&self) -> &Header;
}

/// Values of an endpoint's state word.
pub(crate) mod endpoint {
    /// Nobody has attached yet.
    pub const VACANT: u32 = 0;
    /// An endpoint is attached (and, across processes, holds its role lock).
    pub const ATTACHED: u32 = 1;
    /// The endpoint closed cleanly.
    pub const CLOSED: u32 = 2;
}

#[cfg(not(ringwire_loom))]
const _: () = assert!(std::mem::size_of::<Header>() == 64);

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
    /// The largest record would not fit in half the capacity (with 8 bytes to spare), or, for a slot
    /// ring, fewer than two slots of the largest message fit.
    #[error("max_message {max_message} is too large for capacity {capacity}")]
    MaxMessage {
        /// The requested maximum.
        max_message: usize,
        /// The requested capacity.
        capacity: usize,
    },
}

impl RingConfig {
    /// A configuration with the given sizes (validated when the ring is created).
    ///
    /// For the slot rings (MPMC, broadcast) the data area is cut into fixed slots of `max_message`
    /// plus a 16-byte slot header, rounded up to 64 bytes, and the slot count is the largest power of
    /// two that fits (a position maps to its slot by a mask): up to half the capacity can go unused.
    /// [`slots`](Self::slots) says what a configuration gives; [`for_slots`](Self::for_slots) builds
    /// one from a slot count.
    ///
    /// ```
    /// use ringwire::RingConfig;
    /// // 1 KiB messages: 1088-byte slots, 512 of them (557 KB of the 1 MiB).
    /// assert_eq!(RingConfig::new(1 << 20, 1024).slots(), Some((512, 1088)));
    /// // 1008-byte messages: 1024-byte slots, and all 1 MiB is used.
    /// assert_eq!(RingConfig::new(1 << 20, 1008).slots(), Some((1024, 1024)));
    /// ```
    pub const fn new(capacity: usize, max_message: usize) -> Self {
        RingConfig { capacity, max_message }
    }

    /// For the slot rings (MPMC, broadcast): `(slot count, bytes per slot)` of this configuration, or
    /// `None` if fewer than two slots fit. (SPSC rings use the whole capacity for variable-length
    /// records.)
    pub fn slots(&self) -> Option<(usize, usize)> {
        slots::Geometry::of(*self).map(|g| (g.slots as usize, g.stride))
    }

    /// The smallest slot-ring configuration with at least `count` slots (rounded up to a power of two,
    /// at least 2) of messages up to `max_message` bytes: its capacity is the next power of two of the
    /// slots' bytes, so it is all used when a slot's size (`max_message + 16`, rounded up to 64) is a
    /// power of two. `None` if that would exceed the 1 TiB limit.
    ///
    /// ```
    /// use ringwire::RingConfig;
    /// let cfg = RingConfig::for_slots(1000, 1008).unwrap();
    /// assert_eq!((cfg.capacity, cfg.slots()), (1 << 20, Some((1024, 1024))));
    /// ```
    pub fn for_slots(count: usize, max_message: usize) -> Option<RingConfig> {
        let stride = (slots::SLOT_HEADER + max_message).checked_add(63)? & !63;
        let bytes = count.max(2).checked_next_power_of_two()?.checked_mul(stride)?;
        let capacity = bytes.checked_next_power_of_two()?.max(4096);
        (capacity <= 1 << 40).then_some(RingConfig { capacity, max_message })
    }

    /// Checks the sizes for an SPSC ring.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(RingKind::Spsc)
    }

    /// Checks the sizes for a ring of `kind`: SPSC records must fit in half the capacity; the slot rings
    /// (MPMC, broadcast) need room for at least two slots of `max_message`.
    pub fn validate_for(&self, kind: RingKind) -> Result<(), ConfigError> {
        let c = self.capacity;
        if !c.is_power_of_two() || !(4096..=1 << 40).contains(&c) {
            return Err(ConfigError::Capacity(c));
        }
        let bad = Err(ConfigError::MaxMessage { max_message: self.max_message, capacity: c });
        if self.max_message > u32::MAX as usize - 256 {
            return bad;
        }
        match kind {
            RingKind::Spsc if crate::wire::record_len(self.max_message) + 8 > c / 2 => bad,
            RingKind::Mpmc | RingKind::Broadcast if slots::Geometry::of(*self).is_none() => bad,
            _ => Ok(()),
        }
    }
}

/// Where a ring's memory lives. Implemented by the heap storage and the shared-memory region.
///
/// # Safety
///
/// Implementors guarantee, for as long as the storage value lives, at addresses that stay the same
/// when the value is moved (endpoints cache both pointers): `control_page()` points to an
/// initialised control block of the type whose [`ControlBlock::KIND`] is `kind()`, whose header fields
/// were validated against the real size of the memory; `data()` points to `capacity` readable and
/// writable bytes, 8-byte aligned, where `capacity` is the value in the header; and `word(off)` for any
/// 8-aligned `off < capacity` returns the atomic view of those 8 bytes.
pub unsafe trait Storage: Send + Sync {
    /// The ring kind the region was created for (validated, process-local copy).
    #[doc(hidden)]
    fn kind(&self) -> RingKind;
    /// Start of the control page.
    #[doc(hidden)]
    fn control_page(&self) -> *const u8;
    /// The control block, typed. Endpoints check the kind when they attach, so the check here never
    /// fails for them; it keeps this safe for any caller.
    #[doc(hidden)]
    #[inline(always)]
    fn control<C: ControlBlock>(&self) -> &C {
        if self.kind() != C::KIND {
            wrong_kind(self.kind(), C::KIND);
        }
        // SAFETY: the trait contract makes `control_page()` an initialised block of the type for `kind()`,
        // which we just compared with `C::KIND`; ControlBlock implementors are the only such types.
        unsafe { &*(self.control_page() as *const C) }
    }
    /// Start of the data area.
    #[doc(hidden)]
    fn data(&self) -> *mut u8;
    /// The validated sizes of this ring, from process-local memory (never re-read from the shared header,
    /// which a peer could rewrite after validation).
    #[doc(hidden)]
    fn config(&self) -> RingConfig;
    /// Whether the ring uses the asymmetric sleep/wake barriers (validated, process-local copy).
    #[doc(hidden)]
    fn asymmetric_fences(&self) -> bool {
        self.flags() & FLAG_ASYMMETRIC_FENCES != 0
    }
    /// The header flags (validated, process-local copy).
    #[doc(hidden)]
    fn flags(&self) -> u32;
    /// The 8-byte word at data offset `off` (8-aligned, in bounds).
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
    /// Claims endpoint slot `lock` (SPSC: 0 producer, 1 consumer; slot rings: the participant index),
    /// whose state word is `state`; `None` if someone holds it. The token is held by the endpoint and dropped with it;
    /// across processes it is an advisory lock on byte `lock` of the region file, which the kernel
    /// releases if the process dies. In one process the claim moves `state` to ATTACHED.
    #[doc(hidden)]
    fn claim(&self, lock: u32, state: &AtomicU32) -> Result<Option<RoleToken>, AttachError>;
    /// Whether the endpoint in slot `lock` (state word `state`) is attached and alive right now. Called
    /// on slow paths only.
    #[doc(hidden)]
    fn alive(&self, lock: u32, state: &AtomicU32) -> bool;
}

#[cold]
#[inline(never)]
fn wrong_kind(have: RingKind, want: RingKind) -> ! {
    panic!("ringwire: a {have} ring's storage used as a {want} ring (endpoints check the kind at attach)")
}

/// Proof that an endpoint holds its role; releases it on drop.
#[doc(hidden)]
pub struct RoleToken(#[allow(dead_code)] pub(crate) Option<std::os::fd::OwnedFd>);

// SAFETY: forwards to `S`, whose guarantees hold for as long as the Arc keeps it alive.
unsafe impl<S: Storage> Storage for std::sync::Arc<S> {
    #[inline(always)]
    fn kind(&self) -> RingKind {
        (**self).kind()
    }
    #[inline(always)]
    fn control_page(&self) -> *const u8 {
        (**self).control_page()
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
    fn flags(&self) -> u32 {
        (**self).flags()
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
    fn claim(&self, lock: u32, state: &AtomicU32) -> Result<Option<RoleToken>, AttachError> {
        (**self).claim(lock, state)
    }
    fn alive(&self, lock: u32, state: &AtomicU32) -> bool {
        (**self).alive(lock, state)
    }
}

/// Checks that `storage` holds a ring of kind `C` before an endpoint attaches to it.
pub(crate) fn check_kind<C: ControlBlock, S: Storage>(storage: &S) -> Result<(), AttachError> {
    if storage.kind() != C::KIND {
        return Err(AttachError::WrongKind(storage.kind() as u32));
    }
    Ok(())
}

/// The ring's fence mode, checked against what this process can do.
pub(crate) fn fence_mode<S: Storage>(storage: &S) -> Result<bool, AttachError> {
    let asymmetric = storage.asymmetric_fences();
    if asymmetric && !crate::sync::asymmetric_barrier_available() {
        return Err(AttachError::Membarrier);
    }
    Ok(asymmetric)
}
