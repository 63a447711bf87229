//! The multi-producer multi-consumer ring: a work queue in which each message goes to exactly one
//! consumer. Producers and consumers attach and leave at run time, from any thread or process.
//!
//! # Algorithm
//!
//! A bounded queue with a sequence word per slot, after Dmitry Vyukov's: positions count messages
//! since creation; position `p` lives in slot `p mod N`. A slot's sequence says whose turn it is:
//! `p` — free for the producer of position `p`; `p + 1` — holds the message of `p`, for its consumer;
//! `p + N` — read and released, free for the producer of the next lap. Producers claim a position with
//! a CAS on `tail` once its slot says `p`; consumers claim with a CAS on `head` once it says `p + 1`.
//! Each claim touches only the claimed slot and one shared cursor, and a slow endpoint holds up only
//! its own slot: the others keep claiming past it. (The stored word is the sequence minus the slot
//! index, so that the zeroed memory of a new region is every slot's initial state.)
//!
//! Why slots and not a byte ring like SPSC: with many writers, a variable-length byte ring needs a
//! second cursor of committed bytes that each writer must wait its turn to advance, so one producer
//! stalled (or killed) between claim and commit stops every message behind it; per-slot sequences make
//! each commit independent and each stuck slot a local problem, which is what crash recovery needs.
//! The price is memory: every slot is `max_message` long.
//!
//! # Crash recovery
//!
//! Before a claim CAS an endpoint writes `p + 1` to its participant entry's `intent` (see
//! [`slots`]). An endpoint that finds a slot in mid-claim for longer than the stuck
//! timeout (default 100 ms) looks for a live participant whose intent is that position:
//! - a consumer waiting on a slot claimed by a producer that died before committing claims the
//!   position and releases the slot: the message is skipped (counted in [`Recovered::skipped`](slots::Recovered::skipped));
//! - a producer waiting on a slot claimed by a consumer that died while reading releases it: that
//!   message is lost (counted in [`Recovered::reclaimed`](slots::Recovered::reclaimed)); it may or may not have been processed;
//! - a consumer waiting on the first slot of a batch that a producer withheld
//!   ([`WriteGuard::commit_buffered`]) when it died skips that slot as a dead producer's claim
//!   (counted in `skipped`), then takes the rest of the batch, which was published behind it.
//!
//! Nothing else is lost: every published message is delivered to exactly one consumer that read it
//! to the end (its read guard dropped).

use super::error::{AttachError, Corruption};
use super::slots::{self, role, Batch, Local, Membership, SlotControl, StuckWatch, SLOT_HEADER};
use super::{check_kind, ControlBlock, Header, RingConfig, RingKind, Storage};
use crate::sync::Ordering;
use crate::wait::{Poll, WaitStrategy};
use crate::wire::{FrameHeader, Kind};
use std::time::{Duration, Instant};

/// The control block of an MPMC ring.
#[repr(transparent)]
#[derive(Debug)]
#[doc(hidden)]
pub struct Control(pub(crate) SlotControl);

// SAFETY: repr(transparent) over SlotControl, which is repr(C), starts with the Header, fits in the
// slot rings' data offset (asserted in slots.rs), and holds only atomics and integers.
unsafe impl ControlBlock for Control {
    const KIND: RingKind = RingKind::Mpmc;
    fn new(header: Header, _config: RingConfig) -> Self {
        Control(SlotControl::new(header))
    }
    fn header(&self) -> &Header {
        &self.0.header
    }
}

/// MPMC's sequence encoding on the shared [`Local`].
impl Local {
    /// The lap base of `pos`: `pos` with the slot index cleared (the stored sequence of a free slot).
    #[inline(always)]
    fn base(&self, pos: u64) -> u64 {
        pos & !(self.geo.slots - 1)
    }
}

fn ctl<S: Storage>(storage: &S) -> &SlotControl {
    &storage.control::<Control>().0
}

slots::endpoint_common!(Producer, waits_for: "space", peers: "consumer");
slots::endpoint_common!(Consumer, waits_for: "messages", peers: "producer");

/// Why an MPMC send or reservation failed. Nothing was written when this is returned. Variant names are
/// the shared vocabulary of [`ErrorKind`](super::ErrorKind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// `try_` forms: no slot is free right now.
    #[error("queue is full")]
    WouldBlock,
    /// `_timeout` / `_deadline` forms: still full when the time ran out.
    #[error("timed out waiting for a free slot")]
    Timeout,
    /// Every consumer that attached has gone (closed or died: MPMC does not tell them apart).
    #[error("every consumer has gone")]
    PeerGone,
    /// The message is larger than the ring's maximum.
    #[error("message of {len} bytes exceeds the ring maximum of {max}")]
    Oversize {
        /// Requested length.
        len: usize,
        /// The ring's maximum message size.
        max: usize,
    },
    /// A slot holds a sequence no correct endpoint writes.
    #[error("ring corrupted: {0}")]
    Corrupt(Corruption),
}

/// Why an MPMC receive failed. No message was consumed when this is returned. Variant names are the
/// shared vocabulary of [`ErrorKind`](super::ErrorKind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// `try_` forms: nothing to read right now.
    #[error("queue is empty")]
    Empty,
    /// `_timeout` / `_deadline` forms: still empty when the time ran out.
    #[error("timed out waiting for a message")]
    Timeout,
    /// Every producer that attached has gone and everything they committed has been taken.
    #[error("every producer has gone")]
    PeerGone,
    /// `recv_into`: the next message needs a buffer of `needed` bytes; it stays in the queue.
    #[error("buffer too small: message needs {needed} bytes")]
    BufferTooSmall {
        /// Length of the waiting message.
        needed: usize,
    },
    /// A slot holds something no correct producer writes.
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
            RecvError::BufferTooSmall { .. } => K::BufferTooSmall,
            RecvError::Corrupt(_) => K::Corrupt,
        }
    }
}

/// Creates an in-process MPMC ring (threads), returning its first producer and consumer; more attach
/// with [`Producer::clone_handle`] and [`Consumer::clone_handle`].
///
/// ```
/// let (mut tx, mut rx) = ringwire::mpmc::channel(ringwire::RingConfig::new(1 << 16, 256))?;
/// let mut rx2 = rx.clone_handle()?;
/// tx.send(b"job 1")?;
/// tx.send(b"job 2")?;
/// let a = rx.recv_vec()?;
/// let b = rx2.recv_vec()?;
/// assert_eq!((a.as_slice(), b.as_slice()), (&b"job 1"[..], &b"job 2"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel(config: RingConfig) -> Result<(HeapProducer, HeapConsumer), AttachError> {
    config.validate_for(RingKind::Mpmc).map_err(AttachError::Config)?;
    let storage = std::sync::Arc::new(super::heap::HeapStorage::new::<Control>(config));
    Ok((Producer::attach(storage.clone())?, Consumer::attach(storage)?))
}

/// A producer of an in-process ring.
pub type HeapProducer = Producer<std::sync::Arc<super::heap::HeapStorage>>;
/// A consumer of an in-process ring.
pub type HeapConsumer = Consumer<std::sync::Arc<super::heap::HeapStorage>>;

/// A writing end of an MPMC ring. Any number may be attached.
pub struct Producer<S: Storage> {
    local: Local,
    me: Membership,
    watch: StuckWatch,
    batch: Batch,
    storage: S,
}

pub use slots::DEFAULT_BATCH_BYTES;

/// A reading end of an MPMC ring. Any number may be attached; each message goes to one of them.
pub struct Consumer<S: Storage> {
    local: Local,
    me: Membership,
    watch: StuckWatch,
    /// `try_` receives that found the queue empty since the last message (see [`slots::POLLS_PER_CLOSE_CHECK`]).
    empty_polls: u32,
    storage: S,
}

// SAFETY: `local.data` points into the storage, which the endpoint owns (a clone of it) and which is
// Send + Sync; the endpoint's process-local state moves with it.
unsafe impl<S: Storage> Send for Producer<S> {}
// SAFETY: as above.
unsafe impl<S: Storage> Send for Consumer<S> {}

impl<S: Storage> Producer<S> {
    /// Attaches a producer to the MPMC ring in `storage`. Fails with [`AttachError::Full`] when
    /// [`slots::MAX_PARTICIPANTS`] endpoints are attached.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        check_kind::<Control, _>(&storage)?;
        let local = Local::new(&storage)?;
        let me = slots::join(&storage, ctl(&storage), role::PRODUCER)?;
        let batch = Batch::new(&local.geo);
        Ok(Producer { local, me, watch: StuckWatch::default(), batch, storage })
    }

    /// Copies `msg` into a slot like [`send`](Self::send), but withholds its publication (see
    /// [`WriteGuard::commit_buffered`], which lists what publishes the batch and what it costs others):
    /// consumers see it after [`flush`](Self::flush), a plain commit, an abandoned reservation, a full
    /// batch, a claim that finds no free slot (`try_` forms included), or this producer's drop. With a
    /// batch bound of one slot or less (see [`set_batch_bytes`](Self::set_batch_bytes): a small ring,
    /// or slots over 4 KiB) nothing is withheld and this is [`send`](Self::send).
    ///
    /// ```
    /// let (mut tx, mut rx) = ringwire::mpmc::channel(ringwire::RingConfig::new(1 << 16, 64))?;
    /// for i in 0..10u8 {
    ///     tx.send_buffered(&[i])?;
    /// }
    /// assert!(rx.try_recv().is_err()); // withheld until the flush
    /// tx.flush();
    /// for i in 0..10u8 {
    ///     assert_eq!(*rx.recv()?, [i]);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_buffered(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut slot = self.reserve_opt(msg.len(), None, false)?;
        slot.copy_from_slice(msg);
        slot.commit_buffered();
        Ok(())
    }

    /// Publishes every slot committed with [`WriteGuard::commit_buffered`] and not yet published (one
    /// Release store: the first withheld slot's sequence) and wakes a sleeping consumer. Cheap when
    /// nothing is withheld (one comparison). Never blocks.
    #[inline]
    pub fn flush(&mut self) {
        if self.batch.is_pending() {
            self.publish_pending();
        }
    }

    /// Bytes of slots committed with [`WriteGuard::commit_buffered`] and not yet published, counted in
    /// whole slots (each message takes one slot of `max_message` + 16 bytes, rounded up to 64); 0 after
    /// [`flush`](Self::flush).
    pub fn buffered_bytes(&self) -> usize {
        self.batch.buffered_bytes(self.local.geo.stride)
    }

    /// Sets how many withheld bytes (whole slots, see [`buffered_bytes`](Self::buffered_bytes)) make a
    /// buffered commit publish the batch by itself: default [`DEFAULT_BATCH_BYTES`] (or a quarter of
    /// the ring if that is less). One slot or less publishes every commit, as a plain one: so with the
    /// default bound nothing is withheld on a ring of four slots or fewer, or with slots over 4 KiB
    /// (`max_message` over 4016 bytes; [`RingConfig::default`](crate::RingConfig::default) is such a
    /// ring). A bound beyond the ring's slot bytes leaves publication to `flush`, plain commits and the
    /// full ring.
    pub fn set_batch_bytes(&mut self, bytes: usize) {
        self.batch.bytes = bytes as u64;
    }

    /// Publishes the withheld slots (`batch.pending` is set): the first one's sequence, with Release.
    fn publish_pending(&mut self) {
        let pos = self.batch.pending;
        debug_assert!(self.batch.is_pending());
        let (storage, l) = (&self.storage, &self.local);
        let c = ctl(storage);
        // SYNC POINT: Release publishes this slot's header and payload, as in `WriteGuard::publish`;
        // pairs with the consumer's Acquire load of the sequence in `try_take`. The slots committed after
        // it were published already (each with its own Release store) but could not be taken before it.
        storage.word(l.geo.offset(pos)).store(l.base(pos) + 1, Ordering::Release);
        slots::batch_published(c, self.me.index, &mut self.batch, l.asymmetric);
    }

    /// Test hook: forgets the withheld batch without publishing it, as a producer killed while
    /// buffering does (its participant entry still names the withheld slot; dropping the producer
    /// afterwards closes the entry: the "dead owner" that recovery looks for).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn __forget_withheld(&mut self) {
        self.batch.clear();
    }

    /// Reserves a slot for a `len`-byte message without waiting: [`SendError::WouldBlock`] if none is free.
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_opt(len, None, true)
    }

    /// Reserves a slot, blocking until one is free or no consumer is left.
    pub fn reserve(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_opt(len, None, false)
    }

    /// Reserves a slot, waiting `timeout` at most. A timeout too large to be a deadline
    /// (`Duration::MAX`) waits without one.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_opt(len, Instant::now().checked_add(timeout), false)
    }

    /// Reserves a slot, waiting until `deadline` at most.
    pub fn reserve_deadline(&mut self, len: usize, deadline: Instant) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_opt(len, Some(deadline), false)
    }

    /// Sends a copy of `msg` if a slot is free now.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_opt(msg, None, true)
    }

    /// Sends a copy of `msg`, blocking until a slot is free or no consumer is left
    /// ([`SendError::PeerGone`]: every consumer that attached has gone).
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_opt(msg, None, false)
    }

    /// Sends a copy of `msg`, waiting until `deadline` at most.
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<(), SendError> {
        self.send_opt(msg, Some(deadline), false)
    }

    /// Sends a copy of `msg`, waiting for `timeout` at most.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        // An unrepresentable deadline (`Duration::MAX`) saturates to waiting without one.
        self.send_opt(msg, Instant::now().checked_add(timeout), false)
    }

    /// Reserves up to `max` consecutive slots for messages of up to `len` bytes each with one claim
    /// (one CAS on the shared `tail` instead of one per message) if at least one slot is free:
    /// [`SendError::WouldBlock`] otherwise. `max` is clamped to `1..=`[`RECV_MANY_MAX`]; the batch holds
    /// the free slots found back to back at the tail, at most `max`. Fill them in place
    /// ([`WriteBatch::get_mut`], [`WriteBatch::set_len`]) and [`commit`](WriteBatch::commit): the
    /// messages become visible together, in order. The producer-side half of batched claims, as
    /// [`Consumer::recv_many`] is the consumer's. Publishes this producer's withheld batch first (see
    /// [`send_buffered`](Self::send_buffered)).
    ///
    /// A producer killed while it holds a reservation loses the batch: consumers skip each of its slots
    /// after the stuck timeout, as a dead producer's claimed slot. A batch leaked with `mem::forget`
    /// holds consumers at its first slot while this producer claims nothing else; once it claims again,
    /// consumers skip the leaked slots (counted in `recovered().skipped`) after the stuck timeout.
    /// Async: `reserve_many_async`.
    ///
    /// ```
    /// let (mut tx, mut rx) = ringwire::mpmc::channel(ringwire::RingConfig::new(1 << 16, 64))?;
    /// let mut batch = tx.reserve_many(16, 8)?;
    /// let n = batch.len();
    /// for i in 0..n {
    ///     batch.get_mut(i).unwrap().copy_from_slice(&(i as u64).to_le_bytes());
    /// }
    /// batch.commit();
    /// for i in 0..n as u64 {
    ///     assert_eq!(*rx.recv()?, i.to_le_bytes());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_reserve_many(&mut self, max: usize, len: usize) -> Result<WriteBatch<'_, S>, SendError> {
        self.reserve_many_opt(max, len, None, true)
    }

    /// Reserves up to `max` slots (see [`try_reserve_many`](Self::try_reserve_many)), blocking until at
    /// least one is free or no consumer is left ([`SendError::PeerGone`]).
    pub fn reserve_many(&mut self, max: usize, len: usize) -> Result<WriteBatch<'_, S>, SendError> {
        self.reserve_many_opt(max, len, None, false)
    }

    /// Reserves up to `max` slots, waiting for `timeout` at most. A timeout too large to be a deadline
    /// (`Duration::MAX`) waits without one.
    pub fn reserve_many_timeout(
        &mut self,
        max: usize,
        len: usize,
        timeout: Duration,
    ) -> Result<WriteBatch<'_, S>, SendError> {
        self.reserve_many_opt(max, len, Instant::now().checked_add(timeout), false)
    }

    fn reserve_many_opt(
        &mut self,
        max: usize,
        len: usize,
        deadline: Option<Instant>,
        once: bool,
    ) -> Result<WriteBatch<'_, S>, SendError> {
        if len > self.local.max_message {
            return Err(SendError::Oversize { len, max: self.local.max_message });
        }
        // A run claimed behind our own withheld slot would be invisible until the flush anyway; and
        // with nothing withheld, `try_claim` (the one-slot path) needs no flush before waiting.
        self.flush();
        let first = self.try_claim_run(max);
        let (start, n) = self.claim_waiting(first, deadline, once, |p| p.try_claim_run(max))?;
        Ok(WriteBatch { producer: self, start, n, reserved: len, lens: [len as u32; RECV_MANY_MAX], done: false })
    }

    /// Claims the run of free slots at the tail, `max` (clamped to `1..=RECV_MANY_MAX`) at most, with one
    /// CAS: its first position and length. A tail slot that is not free goes to the one-slot path
    /// (`try_claim`: full, recovery of a dead consumer's slot, catching up, corruption).
    fn try_claim_run(&mut self, max: usize) -> Result<(u64, usize), SendError> {
        let max = max.clamp(1, RECV_MANY_MAX);
        let storage = &self.storage;
        let c = ctl(storage);
        let me = &c.participants[self.me.index];
        let l = &self.local;
        loop {
            // Relaxed: a starting guess, confirmed by the slots' sequences and the CAS.
            let pos = c.tail.load(Ordering::Relaxed);
            let mut n = 0;
            while n < max {
                let at = pos.wrapping_add(n as u64);
                // SYNC POINT: Acquire pairs with the consumer's Release store that freed the slot (or a
                // producer's that reclaimed it), so our payload writes come after its reads.
                if storage.word(l.geo.offset(at)).load(Ordering::Acquire) != l.base(at) {
                    break;
                }
                n += 1;
            }
            if n == 0 {
                return self.try_claim().map(|pos| (pos, 1));
            }
            // A free slot at or past `tail` changes only once someone claims it, so a claim from `pos`
            // proves every slot of the run is still free.
            if slots::claim_run(me, &c.tail, pos, pos.wrapping_add(n as u64)) {
                self.watch.reset();
                return Ok((pos, n));
            }
        }
    }

    fn send_opt(&mut self, msg: &[u8], deadline: Option<Instant>, once: bool) -> Result<(), SendError> {
        let mut slot = self.reserve_opt(msg.len(), deadline, once)?;
        slot.copy_from_slice(msg);
        slot.commit();
        Ok(())
    }

    fn reserve_opt(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
        once: bool,
    ) -> Result<WriteGuard<'_, S>, SendError> {
        if len > self.local.max_message {
            return Err(SendError::Oversize { len, max: self.local.max_message });
        }
        let first = self.try_claim_flushing();
        let pos = self.claim_waiting(first, deadline, once, Self::try_claim)?;
        Ok(WriteGuard { producer: self, pos, len, done: false })
    }

    /// Finishes a claim whose first attempt gave `first`: if no slot was free, waits (unless `once`)
    /// until `attempt` claims one, no consumer is left, or `deadline` passes.
    fn claim_waiting<T>(
        &mut self,
        first: Result<T, SendError>,
        deadline: Option<Instant>,
        once: bool,
        mut attempt: impl FnMut(&mut Self) -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        match first {
            Err(SendError::WouldBlock) if !once => {
                let params = self.local.params(deadline);
                let index = self.me.index;
                slots::block(
                    self,
                    |p| ctl(&p.storage),
                    index,
                    slots::ASLEEP_SPACE,
                    params,
                    |p| match attempt(p) {
                        Err(SendError::WouldBlock) => Poll::Pending,
                        r => Poll::Ready(r),
                    },
                    |p| no_consumers(&p.storage).then_some(SendError::PeerGone),
                    || SendError::Timeout,
                )
            }
            r => r,
        }
    }

    /// [`try_claim`](Self::try_claim), and if no slot is free while this producer withholds a batch,
    /// publishes the batch and tries once more: consumers may be stuck behind our withheld slot, and a
    /// producer that waited for space with it withheld would wait for ever.
    #[inline]
    fn try_claim_flushing(&mut self) -> Result<u64, SendError> {
        match self.try_claim() {
            Err(SendError::WouldBlock) if self.batch.is_pending() => {
                self.publish_pending();
                self.try_claim()
            }
            r => r,
        }
    }

    /// Claims the next position whose slot is free.
    fn try_claim(&mut self) -> Result<u64, SendError> {
        let storage = &self.storage;
        let c = ctl(storage);
        let me = &c.participants[self.me.index];
        let l = &self.local;
        // Relaxed: a starting guess, confirmed by the slot's sequence and the CAS.
        let mut pos = c.tail.load(Ordering::Relaxed);
        loop {
            let off = l.geo.offset(pos);
            let base = l.base(pos);
            // The slot's second line, which a message of more than 48 bytes spills into, while the load
            // below fetches the first, instead of after the locked CAS on `tail`: 64-byte streaming
            // ~10 -> ~15 M msgs/s (medians of 7 alternating runs, Intel host, ~300 ns probe; README,
            // 2026-12-01); round trip unchanged.
            l.prefetch_for_write(off);
            // SYNC POINT: Acquire pairs with the consumer's Release store that freed the slot (or a
            // producer's that skipped it), so our payload writes come after its reads.
            let seq = storage.word(off).load(Ordering::Acquire);
            let dif = seq.wrapping_sub(base) as i64;
            if dif == 0 {
                // Intent before claim: a recoverer that sees our claim must see the intent.
                me.intent.store(pos.wrapping_add(1), Ordering::Release);
                // SYNC POINT: Release orders the intent store before the claim; pairs with the Acquire
                // load of `tail` in the consumer's stuck check. Relaxed on failure: we re-read the slot.
                match c.tail.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Release, Ordering::Relaxed) {
                    Ok(_) => {
                        self.watch.reset();
                        // The slot we will write a few messages from now: its line is likely still in
                        // the cache of the consumer that freed it.
                        l.prefetch_ahead(pos, false);
                        return Ok(pos);
                    }
                    Err(now) => pos = now,
                }
            } else if dif < 0 {
                // The slot still holds the previous lap. Full, unless a dead consumer holds it.
                me.intent.store(0, Ordering::Release);
                let prev = pos.wrapping_sub(l.geo.slots);
                if seq == base.wrapping_sub(l.geo.slots).wrapping_add(1) && self.watch.due(prev, l.stuck) {
                    // SYNC POINT: Acquire pairs with the consumer's Release claim CAS on `head`, so its
                    // intent is visible to `owner_alive`.
                    let claimed = c.head.load(Ordering::Acquire) > prev;
                    if claimed && !slots::owner_alive(storage, c, [role::CONSUMER, role::CONSUMER], prev) {
                        // Its owner is dead and makes no more stores: release the slot if still held.
                        // AcqRel: Release frees it like a consumer would; Acquire keeps our later writes
                        // after the dead consumer's reads.
                        let freed = base;
                        if storage.word(off).compare_exchange(seq, freed, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                            // Relaxed: a statistic.
                            c.stats.reclaimed.fetch_add(1, Ordering::Relaxed);
                            c.space_ready.wake();
                        }
                        self.watch.recovered(prev);
                        continue;
                    }
                }
                return Err(SendError::WouldBlock);
            } else {
                // Relaxed: someone claimed `pos` already; catch up.
                let now = c.tail.load(Ordering::Relaxed);
                if now == pos {
                    // The slot says a later lap, yet nobody claimed `pos`: no correct endpoint does that.
                    me.intent.store(0, Ordering::Release);
                    return Err(SendError::Corrupt(Corruption { at: pos, what: "slot ahead of the tail" }));
                }
                pos = now;
            }
        }
    }
}

#[cfg(feature = "tokio")]
impl<S: Storage> Producer<S> {
    /// Reserves a slot, waiting without blocking the thread until one is free (woken through the
    /// ring's own wake-up, see `ringwire::reactor`), or with the error a blocking
    /// [`reserve`](Self::reserve) would return (`PeerGone` once every consumer that attached has gone).
    ///
    /// Cancel-safe: the slot is claimed in the poll that completes the future; dropping the future
    /// before that claims nothing. A reservation dropped uncommitted is skipped by consumers, as with
    /// [`try_reserve`](Self::try_reserve).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (mut tx, mut rx) = ringwire::mpmc::channel(ringwire::RingConfig::new(1 << 16, 64))?;
    /// let mut slot = tx.reserve_async(2).await?;
    /// slot.copy_from_slice(b"hi");
    /// slot.commit();
    /// assert_eq!(rx.recv_vec_async().await?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn reserve_async(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        if len > self.local.max_message {
            return Err(SendError::Oversize { len, max: self.local.max_message });
        }
        let first = self.try_claim_flushing();
        let pos = self.claim_async(first, Self::try_claim).await?;
        Ok(WriteGuard { producer: self, pos, len, done: false })
    }

    /// Reserves up to `max` slots with one claim (see [`reserve_many`](Self::reserve_many)), waiting for
    /// at least one free slot without blocking the thread, as [`reserve_async`](Self::reserve_async).
    /// Cancel-safe likewise: the slots are claimed in the poll that completes the future.
    pub async fn reserve_many_async(&mut self, max: usize, len: usize) -> Result<WriteBatch<'_, S>, SendError> {
        if len > self.local.max_message {
            return Err(SendError::Oversize { len, max: self.local.max_message });
        }
        self.flush();
        let first = self.try_claim_run(max);
        let (start, n) = self.claim_async(first, |p| p.try_claim_run(max)).await?;
        Ok(WriteBatch { producer: self, start, n, reserved: len, lens: [len as u32; RECV_MANY_MAX], done: false })
    }

    /// The async [`claim_waiting`](Self::claim_waiting): if `first` found no free slot, awaits the
    /// ring's wake-up until `attempt` claims, or no consumer is left.
    async fn claim_async<T>(
        &mut self,
        first: Result<T, SendError>,
        mut attempt: impl FnMut(&mut Self) -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        match first {
            Err(SendError::WouldBlock) => {
                let (index, asymmetric, liveness) = (self.me.index, self.local.asymmetric, self.local.liveness);
                slots::block_async(
                    self,
                    |p| ctl(&p.storage),
                    index,
                    slots::ASLEEP_SPACE,
                    asymmetric,
                    liveness,
                    |p| match attempt(p) {
                        Err(SendError::WouldBlock) => Poll::Pending,
                        r => Poll::Ready(r),
                    },
                    |p| no_consumers(&p.storage).then_some(SendError::PeerGone),
                )
                .await
            }
            r => r,
        }
    }

    /// Sends a copy of `msg`, waiting for a free slot without blocking the thread (see
    /// [`reserve_async`](Self::reserve_async)). Cancel-safe: sent in the poll that completes the
    /// future, or not at all.
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut slot = self.reserve_async(msg.len()).await?;
        slot.copy_from_slice(msg);
        slot.commit();
        Ok(())
    }
}

#[cfg(feature = "tokio")]
impl<S: Storage> Consumer<S> {
    /// Takes the next message, waiting without blocking the thread until one is published (woken
    /// through the ring's own wake-up, see `ringwire::reactor`), or with the error a blocking
    /// [`recv`](Self::recv) would return (`PeerGone` once the ring is drained and every producer that
    /// attached has gone).
    ///
    /// Cancel-safe: a message is claimed only in the poll that completes the future, so a future
    /// dropped before that loses no message (another consumer, or the next receive, gets it).
    pub async fn recv_async(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        self.recv_async_fitting(usize::MAX).await
    }

    /// Receives the next message into a new vector (see [`recv_async`](Self::recv_async)).
    pub async fn recv_vec_async(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_async().await?.to_vec())
    }

    /// Copies the next message into `buf` (see [`recv_async`](Self::recv_async)). A message longer
    /// than `buf` stays in the ring ([`RecvError::BufferTooSmall`]).
    pub async fn recv_into_async(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let guard = self.recv_async_fitting(buf.len()).await?;
        buf[..guard.len].copy_from_slice(&guard);
        Ok(guard.len)
    }

    /// Takes up to `max` messages with one claim (see [`recv_many`](Self::recv_many)), waiting without
    /// blocking the thread until at least one is published, as [`recv_async`](Self::recv_async).
    /// Cancel-safe in the same way: the batch is claimed only in the poll that completes the future.
    pub async fn recv_many_async(&mut self, max: usize) -> Result<ReadBatch<'_, S>, RecvError> {
        let mut lens = [0u32; RECV_MANY_MAX];
        let (start, n) = self.take_async(|c| c.try_take_run(max, &mut lens)).await?;
        Ok(ReadBatch { consumer: self, start, n, lens })
    }

    async fn recv_async_fitting(&mut self, room: usize) -> Result<ReadGuard<'_, S>, RecvError> {
        let (pos, len) = self.take_async(|c| c.try_take_fitting(room)).await?;
        Ok(ReadGuard { consumer: self, pos, len })
    }

    /// The async [`take_waiting`](Self::take_waiting): takes with `take`, awaiting the ring's wake-up
    /// while nothing is published.
    async fn take_async<T>(&mut self, mut take: impl FnMut(&mut Self) -> Result<T, RecvError>) -> Result<T, RecvError> {
        let t = match take(self) {
            Ok(t) => t,
            Err(RecvError::Empty) => {
                let (index, asymmetric, liveness) = (self.me.index, self.local.asymmetric, self.local.liveness);
                slots::block_async(
                    self,
                    |c| ctl(&c.storage),
                    index,
                    slots::ASLEEP_DATA,
                    asymmetric,
                    liveness,
                    |c| match take(c) {
                        Err(RecvError::Empty) => Poll::Pending,
                        r => Poll::Ready(r),
                    },
                    |c| drained_and_no_producers(&c.storage).then_some(RecvError::PeerGone),
                )
                .await?
            }
            Err(e) => return Err(e),
        };
        self.empty_polls = 0;
        Ok(t)
    }
}

impl<S: Storage> Drop for Producer<S> {
    fn drop(&mut self) {
        // A clean close publishes what was withheld, as SPSC's producer does.
        self.flush();
        let c = ctl(&self.storage);
        slots::leave(c, &self.me);
        // Consumers blocked on an empty ring re-check whether any producer is left.
        c.data_ready.wake();
    }
}

/// Whether every consumer that ever attached has gone (a blocked send then gives up).
fn no_consumers<S: Storage>(storage: &S) -> bool {
    let c = ctl(storage);
    c.stats.readers_ever.load(Ordering::Relaxed) > 0
        && slots::live_count(storage, c, [role::CONSUMER, role::CONSUMER]) == 0
}

/// Whether every producer that ever attached has gone and nothing claimed is left to read.
fn drained_and_no_producers<S: Storage>(storage: &S) -> bool {
    let c = ctl(storage);
    if c.stats.writers_ever.load(Ordering::Relaxed) == 0
        || slots::live_count(storage, c, [role::PRODUCER, role::PRODUCER]) != 0
    {
        return false;
    }
    // Acquire: pairs with the Release claims, so a message claimed before its producer left is seen.
    c.head.load(Ordering::Acquire) >= c.tail.load(Ordering::Acquire)
}

/// A reserved slot. Dereferences to `len` bytes to fill; [`commit`](Self::commit) publishes it.
/// Dropped without a commit, the slot is published as empty and consumers skip it.
pub struct WriteGuard<'a, S: Storage> {
    producer: &'a mut Producer<S>,
    pos: u64,
    len: usize,
    done: bool,
}

impl<S: Storage> WriteGuard<'_, S> {
    /// Publishes the message (and every slot this producer withholds, see
    /// [`commit_buffered`](Self::commit_buffered)).
    pub fn commit(mut self) {
        self.publish(Kind::Data, self.len, 0, false);
    }

    /// Commits the message with its full reserved length but withholds its publication, so that a burst
    /// reaches consumers with one store they wait on instead of one per message: the line a waiting
    /// consumer polls changes hands once per batch (the SPSC ring's
    /// [`commit_buffered`](crate::spsc::WriteGuard::commit_buffered), on slots). The batch is published
    /// by [`Producer::flush`], by this producer's next plain commit or abandoned reservation, when it
    /// holds [`Producer::set_batch_bytes`] bytes of slots (4 KiB of slots by default; with a bound of
    /// one slot or less nothing is withheld), when a claim finds no free slot (before waiting, and in
    /// `try_` forms before returning `WouldBlock`), and when the producer is dropped. **Flush before
    /// waiting for an answer.**
    ///
    /// What a withheld batch costs others: consumers take positions in order, so messages that other
    /// producers commit after the first withheld one wait for the flush too, and once the ring has
    /// come round to the withheld slot, other producers' claims wait for it as well (`try_send`:
    /// `WouldBlock`). A producer leaked with `mem::forget` while it withholds a batch never publishes
    /// it: consumers and producers wait at its slot for as long as its process lives (as at a
    /// leaked reservation). A producer that dies (SIGKILL) with a batch withheld loses its first
    /// withheld message: consumers skip that slot after the stuck timeout, as a dead producer's claimed
    /// slot (counted in [`Recovered::skipped`](slots::Recovered::skipped)), and then take the rest of
    /// the batch.
    pub fn commit_buffered(mut self) {
        self.publish(Kind::Data, self.len, 0, true);
    }

    /// Publishes the first `len` bytes, of which the first `ext` are an event name (the frame header's
    /// `ext`, see [`crate::wire`]). Panics if `len` exceeds the reservation or `ext` exceeds `len`.
    pub fn commit_ext(mut self, len: usize, ext: u16) {
        assert!(len <= self.len, "commit_ext({len}) beyond the reserved {} bytes", self.len);
        assert!(ext as usize <= len, "an ext of {ext} bytes in a {len}-byte message");
        self.publish(Kind::Data, len, ext, false);
    }

    /// Publishes the first `len` bytes only (`len` at most the reserved length).
    pub fn commit_len(mut self, len: usize) {
        assert!(len <= self.len, "commit_len({len}) beyond the reserved {} bytes", self.len);
        self.publish(Kind::Data, len, 0, false);
    }

    /// Commits the slot: publishes it (and the producer's withheld batch), or, if `buffered`, withholds
    /// it (the first of a batch) or publishes it behind the withheld first one.
    #[inline]
    fn publish(&mut self, kind: Kind, len: usize, ext: u16, buffered: bool) {
        let p = &mut *self.producer;
        let storage = &p.storage;
        let l = &p.local;
        let off = l.geo.offset(self.pos);
        if kind == Kind::Data {
            storage.note_write(off + SLOT_HEADER, len);
        }
        // Relaxed: published by the Release store of the sequence below (or of the withheld first slot
        // of the batch, whose publication comes after this store in program order).
        storage.word(off + 8).store(FrameHeader { len: len as u32, kind, ext }.to_word(), Ordering::Relaxed);
        self.done = true;
        // Withheld, the sequence keeps saying "claimed", so consumers stop here.
        let word = storage.word(off);
        let committed = l.base(self.pos) + 1;
        let c = ctl(storage);
        if slots::commit(c, p.me.index, &mut p.batch, self.pos, buffered, l.geo.stride, word, committed, l.asymmetric) {
            p.publish_pending();
        }
    }
}

impl<S: Storage> Drop for WriteGuard<'_, S> {
    fn drop(&mut self) {
        if !self.done {
            // Abandoned: publish an empty pad, which consumers skip, so the slot does not look stuck.
            self.publish(Kind::Pad, 0, 0, false);
        }
    }
}

impl<S: Storage> std::ops::Deref for WriteGuard<'_, S> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we own the slot of `pos` (claimed by CAS on `tail` after its sequence said it was free)
        // until we publish it; `len` <= max_message fits in the slot after its 16-byte header.
        unsafe {
            let off = self.producer.local.geo.offset(self.pos) + SLOT_HEADER;
            std::slice::from_raw_parts(self.producer.local.data.add(off), self.len)
        }
    }
}

impl<S: Storage> std::ops::DerefMut for WriteGuard<'_, S> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the slot is ours alone until published.
        unsafe {
            let off = self.producer.local.geo.offset(self.pos) + SLOT_HEADER;
            std::slice::from_raw_parts_mut(self.producer.local.data.add(off), self.len)
        }
    }
}

/// Consecutive slots reserved with one claim by [`Producer::reserve_many`], filled in place and
/// published together by [`commit`](Self::commit). Dropped without a commit, every slot is published
/// as empty and consumers skip them (as an abandoned [`WriteGuard`]).
pub struct WriteBatch<'a, S: Storage> {
    producer: &'a mut Producer<S>,
    start: u64,
    n: usize,
    /// The reserved length of every slot.
    reserved: usize,
    lens: [u32; RECV_MANY_MAX],
    done: bool,
}

impl<S: Storage> WriteBatch<'_, S> {
    /// How many slots the batch holds (at least one).
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always `false`: a reservation that finds no free slot returns `WouldBlock` (or waits).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Slot `i`'s payload: the reserved length, or what [`set_len`](Self::set_len) set; `None` past the end.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if i >= self.n {
            return None;
        }
        let l = &self.producer.local;
        let off = l.geo.offset(self.start.wrapping_add(i as u64)) + SLOT_HEADER;
        // SAFETY: the run's positions were claimed by one CAS on `tail` after each slot's sequence said
        // free; the slots are ours alone until `commit` (or the drop) publishes them, and a length of at
        // most `len` <= max_message fits in a slot after its 16-byte header.
        Some(unsafe { std::slice::from_raw_parts_mut(l.data.add(off), self.lens[i] as usize) })
    }

    /// Sets message `i`'s length (at most the reserved length). Panics past the end or beyond it.
    pub fn set_len(&mut self, i: usize, len: usize) {
        assert!(i < self.n, "slot {i} of a batch of {}", self.n);
        assert!(len <= self.reserved, "set_len({len}) beyond the reserved {} bytes", self.reserved);
        self.lens[i] = len as u32;
    }

    /// Publishes every slot of the batch, in order.
    pub fn commit(self) {
        let n = self.n;
        self.commit_first(n);
    }

    /// Publishes the first `k` slots as messages and the rest as empty slots, which consumers skip
    /// (`k` is clamped to the batch's length).
    pub fn commit_first(mut self, k: usize) {
        self.publish(k.min(self.n));
    }

    /// Writes every header (`k` data, the rest padding), then the sequences from the last slot to the
    /// first, so that a consumer, which takes positions in order, sees the run all at once.
    fn publish(&mut self, k: usize) {
        self.done = true;
        let p = &*self.producer;
        let (storage, l) = (&p.storage, &p.local);
        for i in 0..self.n {
            let off = l.geo.offset(self.start.wrapping_add(i as u64));
            let header = if i < k {
                storage.note_write(off + SLOT_HEADER, self.lens[i] as usize);
                FrameHeader { len: self.lens[i], kind: Kind::Data, ext: 0 }
            } else {
                FrameHeader { len: 0, kind: Kind::Pad, ext: 0 }
            };
            // Relaxed: published by the Release store of the slot's sequence below.
            storage.word(off + 8).store(header.to_word(), Ordering::Relaxed);
        }
        for i in (0..self.n as u64).rev() {
            let pos = self.start.wrapping_add(i);
            // SYNC POINT: Release publishes the slot's header and payload; pairs with the consumer's
            // Acquire load of the sequence (`try_take_fitting`, `try_take_run`).
            storage.word(l.geo.offset(pos)).store(l.base(pos) + 1, Ordering::Release);
        }
        let c = ctl(storage);
        // Release: after every commit, so a recoverer that reads the cleared intent (Acquire) finds each
        // slot committed and does not skip it.
        c.participants[p.me.index].intent.store(0, Ordering::Release);
        c.data_ready.notify(l.asymmetric);
    }
}

impl<S: Storage> Drop for WriteBatch<'_, S> {
    fn drop(&mut self) {
        if !self.done {
            // Abandoned: empty pads, which consumers skip, so that no slot looks stuck.
            self.publish(0);
        }
    }
}

impl<S: Storage> std::fmt::Debug for WriteBatch<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch").field("start", &self.start).field("len", &self.n).finish()
    }
}

impl<S: Storage> Consumer<S> {
    /// Attaches a consumer to the MPMC ring in `storage`. Fails with [`AttachError::Full`] when
    /// [`slots::MAX_PARTICIPANTS`] endpoints are attached.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        check_kind::<Control, _>(&storage)?;
        let local = Local::new(&storage)?;
        let me = slots::join(&storage, ctl(&storage), role::CONSUMER)?;
        Ok(Consumer { local, me, watch: StuckWatch::default(), empty_polls: 0, storage })
    }

    /// Takes the next message if one is published: [`RecvError::Empty`] otherwise (also while the next
    /// position is a withheld slot of a buffering producer, see [`WriteGuard::commit_buffered`]).
    pub fn try_recv(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        self.recv_opt(None, true)
    }

    /// Takes the next message, blocking until one is published or the ring is drained and every
    /// producer that attached has gone ([`RecvError::PeerGone`]).
    pub fn recv(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        self.recv_opt(None, false)
    }

    /// Takes the next message, waiting until `deadline` at most.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<ReadGuard<'_, S>, RecvError> {
        self.recv_opt(Some(deadline), false)
    }

    /// Takes the next message, waiting for `timeout` at most.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, S>, RecvError> {
        // An unrepresentable deadline (`Duration::MAX`) saturates to waiting without one.
        self.recv_opt(Instant::now().checked_add(timeout), false)
    }

    /// Receives the next message into a new vector (blocking).
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        self.recv().map(|m| m.to_vec())
    }

    /// Receives the next message into a new vector, waiting until `deadline` at most.
    pub fn recv_vec_deadline(&mut self, deadline: Instant) -> Result<Vec<u8>, RecvError> {
        self.recv_deadline(deadline).map(|m| m.to_vec())
    }

    /// Copies the next message into `buf` if one is published: its length. A message longer than `buf`
    /// stays in the ring ([`RecvError::BufferTooSmall`]).
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_into_opt(buf, None, true)
    }

    /// Copies the next message into `buf`, blocking (see [`recv`](Self::recv)).
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_into_opt(buf, None, false)
    }

    /// Copies the next message into `buf`, waiting until `deadline` at most.
    pub fn recv_into_deadline(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, RecvError> {
        self.recv_into_opt(buf, Some(deadline), false)
    }

    /// Takes up to `max` published messages with one claim (one CAS on the shared `head` instead of
    /// one per message) if at least one is published: [`RecvError::Empty`] otherwise. `max` is clamped
    /// to `1..=`[`RECV_MANY_MAX`]. The batch holds the messages that were published back to back at the
    /// head when it was taken (it stops before an abandoned reservation; one at the head is skipped and
    /// the message after it returned alone):
    /// they are this consumer's alone, in ring order, until the batch is dropped, which frees their
    /// slots. The consumer-side half of batching, as [`send_buffered`](Producer::send_buffered) is the
    /// producer's; with several consumers it trades fairness for throughput, as AMQP's prefetch count
    /// does.
    ///
    /// A consumer killed while it holds a batch loses the batch's messages (producers reclaim the
    /// slots after the stuck timeout, as for one message). A batch leaked with `mem::forget` is
    /// treated the same way once this consumer claims again: its messages are lost (counted in
    /// `recovered().reclaimed`).
    ///
    /// ```
    /// let (mut tx, mut rx) = ringwire::mpmc::channel(ringwire::RingConfig::new(1 << 16, 64))?;
    /// for i in 0..10u8 {
    ///     tx.send(&[i])?;
    /// }
    /// let batch = rx.recv_many(8)?;
    /// assert_eq!(batch.len(), 8);
    /// assert!(batch.iter().enumerate().all(|(i, m)| m == [i as u8]));
    /// drop(batch);
    /// assert_eq!(rx.try_recv_many(8)?.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv_many(&mut self, max: usize) -> Result<ReadBatch<'_, S>, RecvError> {
        self.recv_many_opt(max, None, true)
    }

    /// Takes up to `max` messages (see [`try_recv_many`](Self::try_recv_many)), blocking until at least
    /// one is published or the ring is drained and every producer that attached has gone
    /// ([`RecvError::PeerGone`]).
    pub fn recv_many(&mut self, max: usize) -> Result<ReadBatch<'_, S>, RecvError> {
        self.recv_many_opt(max, None, false)
    }

    /// Takes up to `max` messages, waiting until `deadline` at most.
    pub fn recv_many_deadline(&mut self, max: usize, deadline: Instant) -> Result<ReadBatch<'_, S>, RecvError> {
        self.recv_many_opt(max, Some(deadline), false)
    }

    /// Takes up to `max` messages, waiting for `timeout` at most. A timeout too large to be a deadline
    /// (`Duration::MAX`) waits without one.
    pub fn recv_many_timeout(&mut self, max: usize, timeout: Duration) -> Result<ReadBatch<'_, S>, RecvError> {
        self.recv_many_opt(max, Instant::now().checked_add(timeout), false)
    }

    fn recv_many_opt(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        once: bool,
    ) -> Result<ReadBatch<'_, S>, RecvError> {
        let mut lens = [0u32; RECV_MANY_MAX];
        let (start, n) = self.take_waiting(deadline, once, |c| c.try_take_run(max, &mut lens))?;
        Ok(ReadBatch { consumer: self, start, n, lens })
    }

    fn recv_into_opt(&mut self, buf: &mut [u8], deadline: Option<Instant>, once: bool) -> Result<usize, RecvError> {
        let room = buf.len();
        let guard = self.recv_opt_fitting(deadline, once, room)?;
        buf[..guard.len].copy_from_slice(&guard);
        Ok(guard.len)
    }

    fn recv_opt(&mut self, deadline: Option<Instant>, once: bool) -> Result<ReadGuard<'_, S>, RecvError> {
        self.recv_opt_fitting(deadline, once, usize::MAX)
    }

    fn recv_opt_fitting(
        &mut self,
        deadline: Option<Instant>,
        once: bool,
        room: usize,
    ) -> Result<ReadGuard<'_, S>, RecvError> {
        let (pos, len) = self.take_waiting(deadline, once, |c| c.try_take_fitting(room))?;
        Ok(ReadGuard { consumer: self, pos, len })
    }

    /// Takes with `take`: if nothing is published, waits (unless `once`) until it takes something, the
    /// ring is drained with no producer left, or `deadline` passes; a `try_` that finds nothing looks
    /// now and then whether the producers have gone (`PeerGone` instead of `Empty`).
    fn take_waiting<T>(
        &mut self,
        deadline: Option<Instant>,
        once: bool,
        mut take: impl FnMut(&mut Self) -> Result<T, RecvError>,
    ) -> Result<T, RecvError> {
        let t = match take(self) {
            Ok(t) => t,
            Err(RecvError::Empty) if !once => {
                let params = self.local.params(deadline);
                let index = self.me.index;
                slots::block(
                    self,
                    |c| ctl(&c.storage),
                    index,
                    slots::ASLEEP_DATA,
                    params,
                    |c| match take(c) {
                        Err(RecvError::Empty) => Poll::Pending,
                        r => Poll::Ready(r),
                    },
                    |c| drained_and_no_producers(&c.storage).then_some(RecvError::PeerGone),
                    || RecvError::Timeout,
                )?
            }
            Err(RecvError::Empty) => {
                let check = self.empty_polls % slots::POLLS_PER_CLOSE_CHECK == 0;
                self.empty_polls = self.empty_polls.wrapping_add(1);
                if check && drained_and_no_producers(&self.storage) {
                    return Err(RecvError::PeerGone);
                }
                return Err(RecvError::Empty);
            }
            Err(e) => return Err(e),
        };
        self.empty_polls = 0;
        Ok(t)
    }

    /// Claims the run of committed messages at the head, `max` (clamped to `1..=RECV_MANY_MAX`) at most,
    /// with one CAS: its first position and length, their lengths in `lens`. The run holds only
    /// well-formed data slots; a head slot that is anything else (empty, stuck, abandoned, corrupt, taken
    /// by another consumer) goes to the one-message path, which deals with it.
    fn try_take_run(&mut self, max: usize, lens: &mut [u32; RECV_MANY_MAX]) -> Result<(u64, usize), RecvError> {
        let max = max.clamp(1, RECV_MANY_MAX);
        let storage = &self.storage;
        let c = ctl(storage);
        let me = &c.participants[self.me.index];
        let l = &self.local;
        loop {
            // Relaxed: a starting guess, confirmed by the slots' sequences and the CAS.
            let pos = c.head.load(Ordering::Relaxed);
            let mut n = 0;
            while n < max {
                let at = pos.wrapping_add(n as u64);
                let off = l.geo.offset(at);
                // SYNC POINT: Acquire pairs with the producer's Release store that committed the slot
                // (or published its withheld batch), as in `try_take_fitting`.
                if storage.word(off).load(Ordering::Acquire) != l.base(at).wrapping_add(1) {
                    break;
                }
                // Relaxed: ordered after the producer's writes by the Acquire above. Read once: the run's
                // lengths are these, whatever a hostile peer writes into the header later.
                match FrameHeader::from_word(storage.word(off + 8).load(Ordering::Relaxed)) {
                    Ok(FrameHeader { kind: Kind::Data, len, .. }) if len as usize <= l.max_message => lens[n] = len,
                    _ => break,
                }
                n += 1;
            }
            if n == 0 {
                // Nothing well-formed at the head: the one-message path (it waits, skips, recovers and
                // reports).
                let (pos, len) = self.try_take_fitting(usize::MAX)?;
                lens[0] = len as u32;
                return Ok((pos, 1));
            }
            // A committed slot at or past `head` changes only once a consumer claims it, so a claim
            // from `pos` proves every slot of the run is still as scanned.
            if slots::claim_run(me, &c.head, pos, pos.wrapping_add(n as u64)) {
                self.watch.reset();
                return Ok((pos, n));
            }
        }
    }

    /// Claims the next committed message: its position and length. A message longer than `room` is
    /// left in the ring: `BufferTooSmall`.
    fn try_take_fitting(&mut self, room: usize) -> Result<(u64, usize), RecvError> {
        let storage = &self.storage;
        let c = ctl(storage);
        let me = &c.participants[self.me.index];
        let l = &self.local;
        // Relaxed: a starting guess, confirmed by the slot's sequence and the CAS.
        let mut pos = c.head.load(Ordering::Relaxed);
        // Dead slots skipped in this call. Skips run on at once only within one lap (a dead run is
        // shorter): a hostile `tail` far ahead would otherwise keep one call skipping for ever, past
        // every deadline; beyond that each slot waits out its own stuck timeout, between calls.
        let mut skips = 0u64;
        loop {
            let off = l.geo.offset(pos);
            let base = l.base(pos);
            // SYNC POINT: Acquire pairs with the producer's Release store that committed the slot.
            let seq = storage.word(off).load(Ordering::Acquire);
            let dif = seq.wrapping_sub(base.wrapping_add(1)) as i64;
            if dif == 0 {
                if room != usize::MAX {
                    // The committed slot does not change until someone claims it, so its length can be
                    // looked at first. Relaxed: ordered after the producer's writes by the Acquire above.
                    let word = storage.word(off + 8).load(Ordering::Relaxed);
                    if let Ok(FrameHeader { kind: Kind::Data, len, .. }) = FrameHeader::from_word(word) {
                        if len as usize > room && len as usize <= l.max_message {
                            return Err(RecvError::BufferTooSmall { needed: len as usize });
                        }
                    }
                }
                me.intent.store(pos.wrapping_add(1), Ordering::Release);
                // SYNC POINT: Release orders the intent before the claim (for a producer's stuck check).
                if let Err(now) =
                    c.head.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Release, Ordering::Relaxed)
                {
                    pos = now;
                    continue;
                }
                self.watch.reset();
                // Relaxed: the Acquire load of the sequence above ordered this after the producer's store.
                let word = storage.word(off + 8).load(Ordering::Relaxed);
                match FrameHeader::from_word(word) {
                    Ok(FrameHeader { kind: Kind::Data, len, .. }) if len as usize <= l.max_message => {
                        return Ok((pos, len as usize));
                    }
                    Ok(FrameHeader { kind: Kind::Pad, .. }) => {
                        // An abandoned reservation: release it and go on.
                        self.release(pos);
                        pos += 1;
                        continue;
                    }
                    _ => {
                        // No correct producer writes this. Drop the slot, report it; the ring goes on.
                        self.release(pos);
                        return Err(RecvError::Corrupt(Corruption { at: pos, what: "bad slot header" }));
                    }
                }
            } else if dif < 0 {
                me.intent.store(0, Ordering::Release);
                // Nothing committed at `pos`. Claimed by a producer (tail past it) that may have died?
                if seq == base && self.watch.due(pos, l.stuck) {
                    // SYNC POINT: Acquire pairs with the producer's Release claim CAS on `tail`, so its
                    // intent is visible to `owner_alive`.
                    let claimed = c.tail.load(Ordering::Acquire) > pos;
                    if claimed && !slots::owner_alive(storage, c, [role::PRODUCER, role::PRODUCER], pos) {
                        Self::skip_dead(storage, l, self.me.index, pos, off, base);
                        skips += 1;
                        if skips < l.geo.slots {
                            self.watch.recovered(pos);
                        }
                        pos = c.head.load(Ordering::Relaxed);
                        continue;
                    }
                }
                return Err(RecvError::Empty);
            } else {
                // Relaxed: another consumer took `pos`; catch up.
                let now = c.head.load(Ordering::Relaxed);
                if now == pos {
                    // The slot says a later lap, yet nobody took `pos`: no correct endpoint does that.
                    return Err(RecvError::Corrupt(Corruption { at: pos, what: "slot ahead of the head" }));
                }
                pos = now;
            }
        }
    }

    /// Skips position `pos`, whose producer died before committing: claim it, then free its slot.
    #[cold]
    fn skip_dead(storage: &S, l: &Local, me: usize, pos: u64, off: usize, base: u64) {
        let c = ctl(storage);
        // The owner is dead and makes no more stores; but it may have committed just before dying,
        // in which case the slot is an ordinary message: re-read and let the normal path take it.
        // Acquire: as in try_take.
        if storage.word(off).load(Ordering::Acquire) != base {
            return;
        }
        c.participants[me].intent.store(pos.wrapping_add(1), Ordering::Release);
        // Release: as for a normal claim. Only one consumer wins the position.
        if c.head.compare_exchange(pos, pos.wrapping_add(1), Ordering::Release, Ordering::Relaxed).is_ok() {
            // Relaxed: a statistic.
            c.stats.skipped.fetch_add(1, Ordering::Relaxed);
            Self::release_in(storage, l, me, pos);
        }
        c.participants[me].intent.store(0, Ordering::Release);
    }

    /// Frees the slot of `pos` for the producer of the next lap.
    #[inline]
    fn release(&self, pos: u64) {
        Self::release_in(&self.storage, &self.local, self.me.index, pos)
    }

    #[inline]
    fn release_in(storage: &S, l: &Local, me: usize, pos: u64) {
        let c = ctl(storage);
        // SYNC POINT: Release orders our reads of the slot before a producer's Acquire load that sees it
        // free (and its writes after them).
        storage.word(l.geo.offset(pos)).store(l.base(pos).wrapping_add(l.geo.slots), Ordering::Release);
        c.participants[me].intent.store(0, Ordering::Release);
        c.space_ready.notify(l.asymmetric);
    }
}

impl<S: Storage> Drop for Consumer<S> {
    fn drop(&mut self) {
        let c = ctl(&self.storage);
        slots::leave(c, &self.me);
        // Producers blocked on a full ring re-check whether any consumer is left.
        c.space_ready.wake();
    }
}

/// A received message, still in its slot. Dereferences to the payload; dropping it frees the slot.
pub struct ReadGuard<'a, S: Storage> {
    consumer: &'a mut Consumer<S>,
    pos: u64,
    len: usize,
}

impl<S: Storage> std::ops::Deref for ReadGuard<'_, S> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let l = &self.consumer.local;
        let off = l.geo.offset(self.pos) + SLOT_HEADER;
        self.consumer.storage.note_read(off, self.len);
        // SAFETY: we claimed `pos` by CAS on `head` after its sequence said committed; no producer
        // writes the slot until we release it (on drop), and `len` <= max_message fits in the slot.
        unsafe { std::slice::from_raw_parts(l.data.add(off), self.len) }
    }
}

impl<S: Storage> ReadGuard<'_, S> {
    /// How many of the message's first bytes are an event name (the frame header's `ext`; 0 for a plain
    /// message). Read from the slot header, which was validated (`ext <= len`) when the message was
    /// taken; clamped to the length in case a hostile peer rewrote it since.
    pub fn ext(&self) -> u16 {
        let l = &self.consumer.local;
        // Relaxed: the Acquire load of the slot's sequence in `try_take` ordered the header before us.
        let word = self.consumer.storage.word(l.geo.offset(self.pos) + 8).load(Ordering::Relaxed);
        ((word >> 48) as usize).min(self.len) as u16
    }
}

impl<S: Storage> Drop for ReadGuard<'_, S> {
    fn drop(&mut self) {
        self.consumer.release(self.pos);
    }
}

impl<S: Storage> std::fmt::Debug for ReadGuard<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard").field("pos", &self.pos).field("len", &self.len).finish()
    }
}

/// The most messages one [`Consumer::recv_many`] takes, and the most slots one
/// [`Producer::reserve_many`] reserves.
pub const RECV_MANY_MAX: usize = 64;

/// Messages taken with one claim by [`Consumer::recv_many`], still in their slots, in ring order.
/// Dropping the batch frees every slot (and wakes a producer waiting for space).
pub struct ReadBatch<'a, S: Storage> {
    consumer: &'a mut Consumer<S>,
    start: u64,
    n: usize,
    lens: [u32; RECV_MANY_MAX],
}

impl<S: Storage> ReadBatch<'_, S> {
    /// How many messages the batch holds (at least one).
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always `false`: a receive that finds nothing returns `Empty` (or waits) instead of a batch.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The `i`th message's payload, `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.n {
            return None;
        }
        let l = &self.consumer.local;
        let len = self.lens[i] as usize;
        let off = l.geo.offset(self.start.wrapping_add(i as u64)) + SLOT_HEADER;
        self.consumer.storage.note_read(off, len);
        // SAFETY: the run's positions were claimed by one CAS on `head` after each slot's sequence said
        // committed; no producer writes them until the batch's drop releases them. `len` was read once
        // and checked against `max_message`, which fits in a slot after its 16-byte header.
        Some(unsafe { std::slice::from_raw_parts(l.data.add(off), len) })
    }

    /// The messages' payloads, in ring order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.n).map(|i| self.get(i).unwrap_or_default())
    }
}

impl<S: Storage> Drop for ReadBatch<'_, S> {
    fn drop(&mut self) {
        let c = &*self.consumer;
        let (storage, l) = (&c.storage, &c.local);
        for i in 0..self.n as u64 {
            let pos = self.start.wrapping_add(i);
            // SYNC POINT: Release orders our reads of the slot before a producer's Acquire load that sees
            // it free, as in `release_in`.
            storage.word(l.geo.offset(pos)).store(l.base(pos).wrapping_add(l.geo.slots), Ordering::Release);
        }
        let ctl = ctl(storage);
        // Release: after the slots' releases, so a recoverer that reads the cleared intent (Acquire)
        // finds them free and leaves them alone.
        ctl.participants[c.me.index].intent.store(0, Ordering::Release);
        ctl.space_ready.notify(l.asymmetric);
    }
}

impl<S: Storage> std::fmt::Debug for ReadBatch<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBatch").field("start", &self.start).field("len", &self.n).finish()
    }
}
