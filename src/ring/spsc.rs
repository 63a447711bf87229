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

use super::error::{AttachError, Corruption};
use super::fence_mode;
use super::{check_kind, endpoint, ControlBlock, Header, RingConfig, RingKind, Role, RoleToken, Storage};
use crate::sync::Ordering;
use crate::sync::{AtomicU32, AtomicU64};
use crate::wait::WaitCell;
use crate::wait::DEFAULT_LIVENESS;
use crate::wait::{wait_for, Poll, WaitParams, WaitStrategy};
use crate::wire::{record_len, FrameHeader, Kind, HEADER_LEN};
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

/// The lock byte of an SPSC role.
fn lock_of(role: Role) -> u32 {
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

/// The writing end of an SPSC ring.
///
/// ```
/// let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
/// // Zero-copy: reserve, write in place, commit.
/// let mut slot = tx.try_reserve(5)?;
/// slot.copy_from_slice(b"hello");
/// slot.commit();
/// // Copying convenience.
/// tx.send(b"world")?;
/// assert_eq!(&*rx.recv()?, b"hello");
/// assert_eq!(rx.recv_vec()?, b"world");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Producer<S: Storage> {
    storage: S,
    st: ProducerState,
    wait: WaitStrategy,
    liveness: Duration,
    _token: RoleToken,
}

/// The producer's process-local state (kept apart from `storage` so that a wait loop can borrow both).
struct ProducerState {
    data: *mut u8,
    capacity: u64,
    mask: usize,
    max_message: usize,
    /// Our write position: the end of the last committed record. Authoritative (only we write it).
    tail: u64,
    /// The consumer's head as last read: free space is at least `capacity - (tail - cached_head)`.
    cached_head: u64,
    asymmetric: bool,
}

// SAFETY: `data` points into memory owned by `storage` (Send), and the producer is the only writer of the
// bytes it reserves; moving the handle to another thread moves that exclusive right with it.
unsafe impl<S: Storage> Send for Producer<S> {}

/// The reading end of an SPSC ring.
pub struct Consumer<S: Storage> {
    storage: S,
    st: ConsumerState,
    wait: WaitStrategy,
    liveness: Duration,
    _token: RoleToken,
}

/// The consumer's process-local state.
struct ConsumerState {
    data: *mut u8,
    capacity: u64,
    mask: usize,
    max_message: usize,
    /// Our read position (start of the next record to read).
    head: u64,
    /// The head value last stored to shared memory; the producer may write up to `published + capacity`.
    published: u64,
    /// Publish `head` once it is this many bytes past `published`.
    batch: u64,
    poisoned: Option<Corruption>,
    asymmetric: bool,
}

// SAFETY: as for Producer: the consumer only reads bytes that the protocol hands to it.
unsafe impl<S: Storage> Send for Consumer<S> {}

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

impl<S: Storage> Producer<S> {
    /// Attaches as the producer of the ring in `storage`. Fails if another producer is attached and
    /// alive. A producer that re-attaches after a crash resumes after the last committed record.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        let asymmetric = fence_mode(&storage)?;
        let token = {
            check_kind::<Control, _>(&storage)?;
            claim(&storage, Role::Producer)?
        };
        let cfg = storage.config();
        let control = storage.control::<Control>();
        let capacity = cfg.capacity as u64;
        let mask = cfg.capacity - 1;
        // The previous producer (if any) is gone, so nobody else sleeps on the space cell.
        control.space_ready.reset_sleepers();
        // Acquire: pairs with the consumer's Release publication; we must not overwrite what it reads.
        let head = control.head.load(Ordering::Acquire);
        // Relaxed: only a starting hint, validated and then confirmed by walking committed headers below.
        let hint = control.tail.load(Ordering::Relaxed);
        let corrupt = |at, what| AttachError::Corrupt(Corruption { at, what });
        // The hint can lag the committed records (a producer dies between committing a header, or a PAD,
        // and storing the hint), and the consumer may already have read past it; everything before `head`
        // was committed, so the walk starts at whichever is further.
        let start = hint.max(head);
        if head % 8 != 0 || hint % 8 != 0 || start - head > capacity {
            return Err(corrupt(hint, "tail hint and head are inconsistent"));
        }
        // Walk the committed records from there to the zero terminator after the last one.
        let mut tail = start;
        loop {
            let off = (tail as usize) & mask;
            // Acquire: pairs with the Release store that committed this header.
            let word = storage.word(off).load(Ordering::Acquire);
            if word == 0 {
                break;
            }
            let hdr = FrameHeader::from_word(word).map_err(|_| corrupt(tail, "bad record header"))?;
            let to_end = capacity - off as u64;
            let rec = match hdr.kind {
                Kind::Pad if hdr.len as u64 + HEADER_LEN as u64 == to_end => to_end,
                Kind::Data if hdr.len as usize <= cfg.max_message && record_len(hdr.len as usize) as u64 <= to_end => {
                    record_len(hdr.len as usize) as u64
                }
                _ => return Err(corrupt(tail, "bad record header")),
            };
            tail += rec;
            if tail - head > capacity {
                return Err(corrupt(tail, "committed records overrun the consumer"));
            }
        }
        control.tail.store(tail, Ordering::Relaxed);
        control.pid(Role::Producer).store(std::process::id(), Ordering::Relaxed);
        // Release: a consumer that sees ATTACHED also sees the pid.
        control.state(Role::Producer).store(endpoint::ATTACHED, Ordering::Release);
        Ok(Producer {
            st: ProducerState {
                data: storage.data(),
                capacity,
                mask,
                max_message: cfg.max_message,
                tail,
                cached_head: head,
                asymmetric,
            },
            storage,
            wait: WaitStrategy::default(),
            liveness: DEFAULT_LIVENESS,
            _token: token,
        })
    }

    /// Chooses how blocking calls wait for space.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// How often a blocked call checks that the consumer is still alive (default 50 ms).
    pub fn set_liveness_interval(&mut self, every: Duration) {
        self.liveness = every;
    }

    /// The largest payload this ring accepts.
    pub fn max_message(&self) -> usize {
        self.st.max_message
    }

    /// Reserves room for a `len`-byte message without blocking. Write the payload into the returned
    /// guard and [`commit`](WriteGuard::commit) it; dropping the guard abandons the message.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        let off = self.st.try_reserve_at(&self.storage, len)?;
        Ok(WriteGuard { off, len, producer: self })
    }

    /// Reserves room for a `len`-byte message, waiting for space as long as it takes.
    pub fn reserve(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_deadline_opt(len, None)
    }

    /// Reserves room for a `len`-byte message, waiting for space at most `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_deadline_opt(len, Instant::now().checked_add(timeout))
    }

    /// Reserves room for a `len`-byte message, waiting for space until `deadline`.
    pub fn reserve_deadline(&mut self, len: usize, deadline: Instant) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_deadline_opt(len, Some(deadline))
    }

    /// Copies `msg` into the ring without blocking.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut slot = self.try_reserve(msg.len())?;
        slot.copy_from_slice(msg);
        slot.commit();
        Ok(())
    }

    /// Copies `msg` into the ring, waiting for space as long as it takes.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline_opt(msg, None)
    }

    /// Copies `msg` into the ring, waiting for space at most `timeout`.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_deadline_opt(msg, Instant::now().checked_add(timeout))
    }

    /// Copies `msg` into the ring, waiting for space until `deadline`.
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<(), SendError> {
        self.send_deadline_opt(msg, Some(deadline))
    }

    /// Closes the producing end: the consumer receives what was committed, then [`RecvError::PeerGone`].
    /// Dropping the producer does the same.
    pub fn close(self) {}

    #[inline]
    fn send_deadline_opt(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        let mut slot = self.reserve_deadline_opt(msg.len(), deadline)?;
        slot.copy_from_slice(msg);
        slot.commit();
        Ok(())
    }

    fn reserve_deadline_opt(&mut self, len: usize, deadline: Option<Instant>) -> Result<WriteGuard<'_, S>, SendError> {
        let off = match self.st.try_reserve_at(&self.storage, len) {
            Ok(off) => off,
            Err(SendError::WouldBlock) => wait_for(
                &self.storage.control::<Control>().space_ready,
                None,
                params(self.wait, self.liveness, deadline, self.st.asymmetric),
                || match self.st.try_reserve_at(&self.storage, len) {
                    Err(SendError::WouldBlock) => Poll::Pending,
                    r => Poll::Ready(r),
                },
                || consumer_gone(&self.storage),
                || SendError::Timeout,
            )?,
            Err(e) => return Err(e),
        };
        Ok(WriteGuard { off, len, producer: self })
    }
}

impl ProducerState {
    /// The reservation itself: returns the data offset of the record header slot.
    #[inline]
    fn try_reserve_at<S: Storage>(&mut self, storage: &S, len: usize) -> Result<usize, SendError> {
        if len > self.max_message {
            return Err(SendError::Oversize { len, max: self.max_message });
        }
        let control = storage.control::<Control>();
        // Relaxed: a hint that lets a send fail early once the consumer has closed; nothing is read on its
        // strength. The authoritative check is on the slow path (`consumer_gone`).
        if control.states.consumer.load(Ordering::Relaxed) == endpoint::CLOSED {
            return Err(SendError::PeerGone);
        }
        let rec = record_len(len) as u64;
        let off = (self.tail as usize) & self.mask;
        let to_end = self.capacity - off as u64;
        let pad = if rec <= to_end { 0 } else { to_end };
        // Room for the pad, the record, and the 8-byte terminator slot after it.
        let need = pad + rec + HEADER_LEN as u64;
        if self.tail + need - self.cached_head > self.capacity {
            // SYNC POINT: Acquire pairs with the consumer's Release store of `head` (publish_head): the
            // consumer is done reading everything before it, so we may overwrite it.
            let head = control.head.load(Ordering::Acquire);
            if head % 8 != 0 || head < self.cached_head || head > self.tail {
                return Err(SendError::Corrupt(Corruption { at: head, what: "consumer head out of range" }));
            }
            self.cached_head = head;
            if self.tail + need - head > self.capacity {
                return Err(SendError::WouldBlock);
            }
        }
        let mut off = off;
        if pad != 0 {
            // Terminator for the pad: offset 0 reads "nothing yet" until our record there commits.
            storage.word(0).store(0, Ordering::Relaxed);
            let pad_hdr = FrameHeader { len: (pad - HEADER_LEN as u64) as u32, kind: Kind::Pad };
            // SYNC POINT: Release publishes the zeroed slot at offset 0 before the pad that leads there;
            // pairs with the consumer's Acquire load of this header in `poll`.
            storage.word(off).store(pad_hdr.to_word(), Ordering::Release);
            self.tail += pad;
            off = 0;
        }
        // Terminator after the record (published with the record's own header, by Release).
        let next = (off + rec as usize) & self.mask;
        storage.word(next).store(0, Ordering::Relaxed);
        Ok(off)
    }

    /// Publishes the record reserved at `off` with a `len`-byte payload.
    #[inline]
    fn commit_at<S: Storage>(&mut self, storage: &S, off: usize, reserved: usize, len: usize) {
        debug_assert!(len <= reserved && off == (self.tail as usize) & self.mask);
        let rec = record_len(len);
        if rec != record_len(reserved) {
            // The record shrank: move the terminator to its new end (still inside the reserved space).
            storage.word((off + rec) & self.mask).store(0, Ordering::Relaxed);
        }
        storage.note_write(off + HEADER_LEN, len);
        let hdr = FrameHeader { len: len as u32, kind: Kind::Data };
        // SYNC POINT: Release publishes the payload and the terminator after it; pairs with the consumer's
        // Acquire load of this header word in `poll`.
        storage.word(off).store(hdr.to_word(), Ordering::Release);
        self.tail += rec as u64;
        // Relaxed: the hint is only read by a re-attaching producer, which re-validates it.
        storage.control::<Control>().tail.store(self.tail, Ordering::Relaxed);
        storage.control::<Control>().data_ready.notify(self.asymmetric);
    }
}

impl<S: Storage> Drop for Producer<S> {
    fn drop(&mut self) {
        let control = self.storage.control::<Control>();
        // SYNC POINT: Release orders every commit before CLOSED; pairs with the consumer's Acquire load of
        // the state before its last poll, so "closed and empty" really means drained.
        control.state(Role::Producer).store(endpoint::CLOSED, Ordering::Release);
        control.data_ready.wake();
    }
}

/// A reserved, not yet published message. Dereferences to its payload bytes (which hold stale data
/// until written). [`commit`](Self::commit) publishes it; dropping the guard abandons it.
pub struct WriteGuard<'a, S: Storage> {
    producer: &'a mut Producer<S>,
    off: usize,
    len: usize,
}

impl<S: Storage> WriteGuard<'_, S> {
    /// Publishes the message with its full reserved length.
    #[inline]
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len);
    }

    /// Publishes only the first `len` bytes (at most the reserved length) as the message.
    ///
    /// # Panics
    /// If `len` exceeds the reserved length.
    #[inline]
    pub fn commit_len(self, len: usize) {
        assert!(len <= self.len, "commit_len({len}) exceeds the reserved {} bytes", self.len);
        self.producer.st.commit_at(&self.producer.storage, self.off, self.len, len);
    }
}

impl<S: Storage> std::ops::Deref for WriteGuard<'_, S> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: try_reserve_at checked that [off + 8, off + 8 + len) lies inside the data area (a record
        // never crosses its end) and in free space, which only this producer touches until commit.
        unsafe { std::slice::from_raw_parts(self.producer.st.data.add(self.off + HEADER_LEN), self.len) }
    }
}

impl<S: Storage> std::ops::DerefMut for WriteGuard<'_, S> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.producer.st.data.add(self.off + HEADER_LEN), self.len) }
    }
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

impl<S: Storage> Consumer<S> {
    /// Attaches as the consumer of the ring in `storage`. Fails if another consumer is attached and alive.
    /// A consumer that re-attaches after a crash resumes at the last published head: a message that the
    /// dead consumer was reading (or had read but not yet published) is delivered again.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        let asymmetric = fence_mode(&storage)?;
        let token = {
            check_kind::<Control, _>(&storage)?;
            claim(&storage, Role::Consumer)?
        };
        let cfg = storage.config();
        let control = storage.control::<Control>();
        control.data_ready.reset_sleepers();
        // Relaxed: we are the only writer of head; this just reads back the last published value.
        let head = control.head.load(Ordering::Relaxed);
        if head % 8 != 0 {
            return Err(AttachError::Corrupt(Corruption { at: head, what: "misaligned head" }));
        }
        control.pid(Role::Consumer).store(std::process::id(), Ordering::Relaxed);
        // Release: a producer that sees ATTACHED also sees the pid.
        control.state(Role::Consumer).store(endpoint::ATTACHED, Ordering::Release);
        Ok(Consumer {
            st: ConsumerState {
                data: storage.data(),
                capacity: cfg.capacity as u64,
                mask: cfg.capacity - 1,
                max_message: cfg.max_message,
                head,
                published: head,
                batch: (cfg.capacity / 16) as u64,
                poisoned: None,
                asymmetric,
            },
            storage,
            wait: WaitStrategy::default(),
            liveness: DEFAULT_LIVENESS,
            _token: token,
        })
    }

    /// Chooses how blocking calls wait for messages.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// How often a blocked call checks that the producer is still alive (default 50 ms).
    pub fn set_liveness_interval(&mut self, every: Duration) {
        self.liveness = every;
    }

    /// The largest payload this ring carries.
    pub fn max_message(&self) -> usize {
        self.st.max_message
    }

    /// Takes the next message without blocking. The message stays in the ring (zero-copy) until the
    /// guard is dropped.
    #[inline]
    pub fn try_recv(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.try_recv_at()?;
        Ok(self.guard(off, len))
    }

    /// Takes the next message, waiting as long as it takes.
    #[inline]
    pub fn recv(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.recv_at(None)?;
        Ok(self.guard(off, len))
    }

    /// Takes the next message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.recv_at(Instant::now().checked_add(timeout))?;
        Ok(self.guard(off, len))
    }

    /// Takes the next message, waiting until `deadline`.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.recv_at(Some(deadline))?;
        Ok(self.guard(off, len))
    }

    /// Copies the next message into `buf` (waiting as long as it takes) and returns its length. If `buf`
    /// is too small the message stays in the ring and [`RecvError::BufferTooSmall`] says how much is needed.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let (off, len) = self.recv_at(None)?;
        if len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        let msg = self.guard(off, len);
        buf[..len].copy_from_slice(&msg);
        Ok(len)
    }

    /// Like [`recv_into`](Self::recv_into) without blocking.
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let (off, len) = self.try_recv_at()?;
        if len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        let msg = self.guard(off, len);
        buf[..len].copy_from_slice(&msg);
        Ok(len)
    }

    /// Receives the next message into a new `Vec` (waiting as long as it takes).
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv()?.to_vec())
    }

    /// Closes the consuming end: the producer's next send fails with [`SendError::PeerGone`].
    /// Dropping the consumer does the same.
    pub fn close(self) {}

    #[inline]
    fn guard(&mut self, off: usize, len: usize) -> ReadGuard<'_, S> {
        self.storage.note_read(off + HEADER_LEN, len);
        ReadGuard { consumer: self, off, len }
    }

    #[inline]
    fn try_recv_at(&mut self) -> Result<(usize, usize), RecvError> {
        try_recv_at(&self.storage, &mut self.st)
    }

    fn recv_at(&mut self, deadline: Option<Instant>) -> Result<(usize, usize), RecvError> {
        match self.try_recv_at() {
            Err(RecvError::Empty) => {}
            r => return r,
        }
        wait_for(
            &self.storage.control::<Control>().data_ready,
            None,
            params(self.wait, self.liveness, deadline, self.st.asymmetric),
            || match try_recv_at(&self.storage, &mut self.st) {
                Err(RecvError::Empty) => Poll::Pending,
                r => Poll::Ready(r),
            },
            || producer_gone(&self.storage),
            || RecvError::Timeout,
        )
    }
}

impl ConsumerState {
    /// Finds the next message: `Some((header offset, payload length))`, or `None` if nothing is committed
    /// at our position (after publishing our head, so that a producer waiting for space can go on).
    #[inline]
    fn poll<S: Storage>(&mut self, storage: &S) -> Result<Option<(usize, usize)>, RecvError> {
        if let Some(c) = self.poisoned {
            return Err(RecvError::Corrupt(c));
        }
        loop {
            let off = (self.head as usize) & self.mask;
            // SYNC POINT: Acquire pairs with the producer's Release store of this header (commit_at, or the
            // pad in try_reserve_at): the payload and the terminator after the record are visible.
            let word = storage.word(off).load(Ordering::Acquire);
            if word == 0 {
                if self.head != self.published {
                    self.publish_head(storage);
                }
                return Ok(None);
            }
            let to_end = self.capacity - off as u64;
            let hdr = match FrameHeader::from_word(word) {
                Ok(h) => h,
                Err(_) => return Err(self.poison("bad record header")),
            };
            let rec = match hdr.kind {
                Kind::Pad if hdr.len as u64 + HEADER_LEN as u64 == to_end => to_end,
                Kind::Pad => return Err(self.poison("padding record does not end at the end of the ring")),
                Kind::Data if hdr.len as usize > self.max_message => {
                    return Err(self.poison("message length exceeds the ring maximum"))
                }
                Kind::Data => record_len(hdr.len as usize) as u64,
            };
            if rec > to_end {
                return Err(self.poison("record crosses the end of the ring"));
            }
            // The producer can't have written more than one capacity past what we published.
            if self.head + rec - self.published > self.capacity {
                return Err(self.poison("records overrun the published head"));
            }
            if hdr.kind == Kind::Pad {
                self.head += rec;
                continue;
            }
            return Ok(Some((off, hdr.len as usize)));
        }
    }

    #[cold]
    fn poison(&mut self, what: &'static str) -> RecvError {
        let c = Corruption { at: self.head, what };
        self.poisoned = Some(c);
        RecvError::Corrupt(c)
    }

    #[inline]
    fn release<S: Storage>(&mut self, storage: &S, len: usize) {
        self.head += record_len(len) as u64;
        if self.head - self.published >= self.batch {
            self.publish_head(storage);
        }
    }

    fn publish_head<S: Storage>(&mut self, storage: &S) {
        let control = storage.control::<Control>();
        // SYNC POINT: Release: our reads of everything before `head` happen-before the producer's Acquire
        // load of it (try_reserve_at), after which it overwrites that space.
        control.head.store(self.head, Ordering::Release);
        self.published = self.head;
        control.space_ready.notify(self.asymmetric);
    }
}

/// One non-blocking receive attempt: `(header offset, payload length)` of the next message.
#[inline]
fn try_recv_at<S: Storage>(storage: &S, st: &mut ConsumerState) -> Result<(usize, usize), RecvError> {
    match st.poll(storage)? {
        Some(r) => Ok(r),
        None => match producer_closed_flag(storage) {
            // Look again after seeing CLOSED: its Acquire load makes every commit visible.
            true => st.poll(storage)?.ok_or(RecvError::PeerGone),
            false => Err(RecvError::Empty),
        },
    }
}

/// Relaxed-free look at the producer's state: `true` once it has closed cleanly.
#[inline]
fn producer_closed_flag<S: Storage>(storage: &S) -> bool {
    // Acquire: pairs with the Release store of CLOSED in Producer::drop, so a poll after this sees every
    // commit the producer made.
    storage.control::<Control>().state(Role::Producer).load(Ordering::Acquire) == endpoint::CLOSED
}

impl<S: Storage> Drop for Consumer<S> {
    fn drop(&mut self) {
        if self.st.head != self.st.published {
            self.st.publish_head(&self.storage);
        }
        let control = self.storage.control::<Control>();
        // Release: orders our last head publication before CLOSED.
        control.state(Role::Consumer).store(endpoint::CLOSED, Ordering::Release);
        control.space_ready.wake();
    }
}

/// A received message, still in the ring. Dereferences to the payload; dropping it frees the space.
pub struct ReadGuard<'a, S: Storage> {
    consumer: &'a mut Consumer<S>,
    off: usize,
    len: usize,
}

impl<S: Storage> std::ops::Deref for ReadGuard<'_, S> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: poll checked that the record [off, off + record_len(len)) lies inside the data area and
        // is committed; the producer does not write it again until we publish a head past it, which only
        // happens after this guard is dropped.
        unsafe { std::slice::from_raw_parts(self.consumer.st.data.add(self.off + HEADER_LEN), self.len) }
    }
}

impl<S: Storage> Drop for ReadGuard<'_, S> {
    #[inline]
    fn drop(&mut self) {
        self.consumer.st.release(&self.consumer.storage, self.len);
    }
}

impl<S: Storage> std::fmt::Debug for ReadGuard<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard").field("len", &self.len).finish()
    }
}
