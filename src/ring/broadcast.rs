//! The broadcast ring: one or more publishers, any number of subscribers, and every subscriber sees
//! every message, in one order, from the point it joined. Publishers and subscribers attach and leave
//! at run time, from any thread or process.
//!
//! # Algorithm
//!
//! Positions count messages since creation; position `p` lives in slot `p mod N`, lap `p / N`.
//! Publishers claim positions with a CAS on `tail` (as Aeron publications claim with an atomic add;
//! a CAS lets a publisher record its intent first, for crash recovery). Each slot's state word is a
//! sequence lock: `2·lap + 1` while a publisher of that lap writes it, `2·lap + 2` once written
//! (zero: never written). A publisher takes the slot with a CAS from an older even value, so two
//! publishers never write one slot at once; payloads are copied in and out between the two sequence
//! updates with a copy that may race without undefined behaviour (inline assembly on x86_64, relaxed
//! atomic words elsewhere; see `racy_copy`), and a subscriber checks the sequence again
//! after copying (behind an Acquire fence): if it moved, the copy is discarded, never returned torn.
//!
//! # Slow subscribers
//!
//! By default ([`Mode::Overwrite`]) a publisher never waits for subscribers: it overwrites the oldest
//! slot. (It waits only for another *publisher* that claimed the same slot a whole lap earlier and is
//! still writing it, or withholds it as the first slot of a buffered batch: a claim sleeps until that
//! publisher's commit or flush wakes it, or its deadline; a publisher that claimed and then finds the
//! slot taken yields up to the stuck timeout, then sleeps with a doubling back-off, and gives the
//! position up when the deadline passes. Either takes the slot over once that publisher is found dead.)
//! A subscriber
//! that fell a lap behind gets [`RecvError::Lagged`]`(n)` — `n` messages it will never see — and resumes
//! at the oldest message still in the ring. With [`Mode::Backpressure`] publishers wait instead until the
//! slowest live subscriber has read the slot they need (Disruptor style); subscribers then publish their
//! cursor after each message.
//!
//! # Crash recovery
//!
//! A publisher killed between claim and commit leaves a slot in mid-write. A subscriber waiting on it
//! (and a publisher of a later lap that needs the slot) checks, after the stuck timeout, whether a live
//! publisher's intent names that position; if not, the subscriber skips the position (counted in
//! [`Recovered::skipped`](slots::Recovered::skipped)) and the publisher takes the slot over. A killed subscriber costs nothing in
//! `Overwrite` mode; in `Backpressure` mode publishers stop waiting for it once its process is gone.

use super::error::{AttachError, Corruption};
use super::slots::{self, role, Batch, Local, Membership, SlotControl, StuckWatch, SLOT_HEADER};
use super::{check_kind, ControlBlock, Header, RingConfig, RingKind, Storage, FLAG_BACKPRESSURE};
use crate::sync::{fence, Ordering};
use crate::wait::{Poll, WaitStrategy};
use crate::wire::{FrameHeader, Kind};
pub use slots::DEFAULT_BATCH_BYTES;
use std::time::{Duration, Instant};

/// The control block of a broadcast ring.
#[repr(transparent)]
#[derive(Debug)]
#[doc(hidden)]
pub struct Control(pub(crate) SlotControl);

// SAFETY: repr(transparent) over SlotControl, which is repr(C), starts with the Header, fits in the
// slot rings' data offset (asserted in slots.rs), and holds only atomics and integers.
unsafe impl ControlBlock for Control {
    const KIND: RingKind = RingKind::Broadcast;
    fn new(header: Header, _config: RingConfig) -> Self {
        Control(SlotControl::new(header))
    }
    fn header(&self) -> &Header {
        &self.0.header
    }
}

fn ctl<S: Storage>(storage: &S) -> &SlotControl {
    &storage.control::<Control>().0
}

slots::endpoint_common!(Publisher, waits_for: "space (back-pressure mode; in overwrite mode only for a publisher stalled a lap behind on the same slot)", peers: "subscriber");
slots::endpoint_common!(Subscriber, waits_for: "messages", peers: "publisher");

/// What publishers do when the ring is full of messages some subscriber has not read yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Overwrite the oldest message; a subscriber that falls a lap behind is told how many it lost
    /// ([`RecvError::Lagged`]). Publishers never wait for subscribers.
    #[default]
    Overwrite,
    /// Wait for the slowest live subscriber. Nobody loses a message; one slow subscriber slows everyone.
    Backpressure,
}

impl Mode {
    pub(crate) fn flags(self) -> u32 {
        match self {
            Mode::Overwrite => 0,
            Mode::Backpressure => FLAG_BACKPRESSURE,
        }
    }
}

/// Why a publish or reservation failed. Nothing was published when this is returned. Variant names are
/// the shared vocabulary of [`ErrorKind`](super::ErrorKind); publishers never see a subscriber go (a
/// broadcast ring has no `PeerGone` on the sending side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// `try_send`: in [`Mode::Backpressure`], the slowest subscriber has not freed a slot yet; in either
    /// mode, another publisher stalled a whole lap behind (alive, but not finishing its write) still
    /// holds the slot.
    #[error("ring is full (a subscriber, or a stalled publisher, is a lap behind)")]
    WouldBlock,
    /// `_timeout` / `_deadline` forms: still full (as for `WouldBlock`) when the time ran out.
    #[error("timed out waiting for room (the slowest subscriber, or another publisher's slot of an earlier lap)")]
    Timeout,
    /// The message is larger than the ring's maximum.
    #[error("message of {len} bytes exceeds the ring maximum of {max}")]
    Oversize {
        /// Requested length.
        len: usize,
        /// The ring's maximum message size.
        max: usize,
    },
}

/// Why a receive failed. Variant names are the shared vocabulary of [`ErrorKind`](super::ErrorKind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// `try_` forms: no new message yet.
    #[error("no new message")]
    Empty,
    /// `_timeout` / `_deadline` forms: still nothing when the time ran out.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The subscriber fell behind and `n` messages were overwritten before it could read them. It now
    /// stands at the oldest message still in the ring; the next receive continues from there.
    #[error("lagged behind: {0} messages lost")]
    Lagged(u64),
    /// Every publisher that attached has gone, and this subscriber has read everything they published.
    #[error("every publisher has gone")]
    PeerGone,
    /// `recv_into`: the next message needs `needed` bytes; it is not consumed.
    #[error("buffer too small: message needs {needed} bytes")]
    BufferTooSmall {
        /// Length of the waiting message.
        needed: usize,
    },
    /// A slot holds something no correct publisher writes; it is skipped (the next call goes on).
    #[error("ring corrupted: {0}")]
    Corrupt(Corruption),
}

impl super::RingError for SendError {
    fn kind(&self) -> super::ErrorKind {
        use super::ErrorKind as K;
        match self {
            SendError::WouldBlock => K::WouldBlock,
            SendError::Timeout => K::Timeout,
            SendError::Oversize { .. } => K::Oversize,
        }
    }
}

impl super::RingError for RecvError {
    fn kind(&self) -> super::ErrorKind {
        use super::ErrorKind as K;
        match self {
            RecvError::Empty => K::Empty,
            RecvError::Timeout => K::Timeout,
            RecvError::Lagged(_) => K::Lagged,
            RecvError::PeerGone => K::PeerGone,
            RecvError::BufferTooSmall { .. } => K::BufferTooSmall,
            RecvError::Corrupt(_) => K::Corrupt,
        }
    }
}

/// Creates an in-process broadcast ring (threads), returning a publisher and a first subscriber;
/// more attach with `clone_handle` (subscribers start at the newest position).
///
/// ```
/// use ringwire::broadcast::{self, Mode};
/// let (mut tx, mut a) = broadcast::channel(ringwire::RingConfig::new(1 << 16, 256), Mode::Overwrite)?;
/// let mut b = a.clone_handle()?;
/// tx.send(b"tick")?;
/// assert_eq!(a.recv_vec()?, b"tick");
/// assert_eq!(b.recv_vec()?, b"tick");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel(config: RingConfig, mode: Mode) -> Result<(HeapPublisher, HeapSubscriber), AttachError> {
    config.validate_for(RingKind::Broadcast).map_err(AttachError::Config)?;
    let storage = std::sync::Arc::new(super::heap::HeapStorage::with_flags::<Control>(config, mode.flags()));
    Ok((Publisher::attach(storage.clone())?, Subscriber::attach(storage)?))
}

/// A publisher of an in-process ring.
pub type HeapPublisher = Publisher<std::sync::Arc<super::heap::HeapStorage>>;
/// A subscriber of an in-process ring.
pub type HeapSubscriber = Subscriber<std::sync::Arc<super::heap::HeapStorage>>;

/// Broadcast's sequence-lock encoding on the shared [`Local`].
impl Local {
    /// The sequence value of a slot being written for `pos`; +1 once written.
    #[inline(always)]
    fn writing(&self, pos: u64) -> u64 {
        (pos >> self.geo.shift).wrapping_mul(2).wrapping_add(1)
    }
}

/// A publishing end. Any number may be attached.
pub struct Publisher<S: Storage> {
    local: Local,
    me: Membership,
    watch: StuckWatch,
    /// Back-pressure: the lowest subscriber cursor seen last time we looked.
    min_cursor: u64,
    /// Back-pressure: subscriber entries (index, pid) found dead, ignored until their entry changes hands.
    dead: Vec<(usize, u32)>,
    /// Back-pressure: when a `WouldBlock` last made us look for dead subscribers.
    dead_checked: Option<Instant>,
    /// Where a reservation's bytes are written before its commit copies them into the slot (allocated
    /// at the first reservation, `max_message` bytes).
    staging: Vec<u8>,
    /// Buffered publication ([`WriteGuard::commit_buffered`]).
    batch: Batch,
    /// Why the last `try_claim` returned `WouldBlock`: the slot is still odd for a live publisher of an
    /// earlier lap (true), or back-pressure (false). It picks the wait cell (see [`Publisher::claim_cell`]).
    writer_blocked: bool,
    storage: S,
}

/// A subscribing end. Any number may be attached; each sees every message published after it joined.
///
/// ```
/// use ringwire::broadcast::{self, Mode, RecvError};
/// let (mut tx, mut a) = broadcast::channel(ringwire::RingConfig::new(1 << 16, 64), Mode::Overwrite)?;
/// let mut b = a.clone_handle()?; // a second subscriber
/// tx.send(b"tick")?;
/// assert_eq!(a.recv()?, b"tick"); // a view of `a`'s own copy
/// let mut buf = [0u8; 64];
/// assert_eq!(b.try_recv_into(&mut buf)?, 4);
/// drop(tx);
/// assert_eq!(a.recv_vec(), Err(RecvError::PeerGone)); // every publisher has gone
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subscriber<S: Storage> {
    local: Local,
    me: Membership,
    watch: StuckWatch,
    /// The next position to read.
    pos: u64,
    /// `try_` receives that found nothing new since the last message (see `slots::POLLS_PER_CLOSE_CHECK`).
    empty_polls: u32,
    /// Where `recv`/`try_recv` copy a message and `recv_vec` copies it before cutting a vector of its
    /// exact length (allocated at first use, `max_message` bytes).
    scratch: Vec<u8>,
    /// The `ext` (event-name length) of the last message returned.
    last_ext: u16,
    storage: S,
}

// SAFETY: the endpoints own their storage handle (Send + Sync) and process-local state only.
unsafe impl<S: Storage> Send for Publisher<S> {}
// SAFETY: as above.
unsafe impl<S: Storage> Send for Subscriber<S> {}

impl<S: Storage> Publisher<S> {
    /// Attaches a publisher to the broadcast ring in `storage`.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        check_kind::<Control, _>(&storage)?;
        let local = Local::new(&storage)?;
        let me = slots::join(&storage, ctl(&storage), role::PUBLISHER)?;
        Ok(Publisher {
            batch: Batch::new(&local.geo),
            local,
            me,
            watch: StuckWatch::default(),
            min_cursor: 0,
            dead: Vec::new(),
            dead_checked: None,
            staging: Vec::new(),
            writer_blocked: false,
            storage,
        })
    }

    /// The wait cell for a claim blocked as the last `try_claim` said: `data_ready` when a publisher of
    /// an earlier lap holds the slot (every publication notifies that cell, so its commit or flush wakes
    /// us, in either mode and with no subscriber at all), `space_ready` for back-pressure (subscribers
    /// notify it as they advance). Publications notify only `data_ready`, so the streaming hot path pays
    /// nothing for this.
    fn claim_cell(&self) -> u32 {
        if self.writer_blocked {
            slots::ASLEEP_DATA
        } else {
            slots::ASLEEP_SPACE
        }
    }

    /// One attempt of a claim asleep on wait cell `cell` (`claim_opt`, `claim_async`): pending while
    /// blocked for the reason that cell serves; `WouldBlock` when the reason changed, so that the caller
    /// goes round to sleep on the other cell.
    fn poll_claim(&mut self, cell: u32) -> Poll<u64, SendError> {
        match self.try_claim() {
            Err(SendError::WouldBlock) if self.claim_cell() != cell => Poll::Ready(Err(SendError::WouldBlock)),
            Err(SendError::WouldBlock) => Poll::Pending,
            r => Poll::Ready(r),
        }
    }

    /// Publishes a copy of `msg` like [`send`](Self::send), but withholds its publication (see
    /// [`WriteGuard::commit_buffered`], which lists what publishes the batch and what it costs others):
    /// subscribers see it after [`flush`](Self::flush), a plain commit, an abandoned reservation, a
    /// full batch, a claim that cannot proceed at once (a back-pressure wait, `WouldBlock`), a claim
    /// that comes round to its own withheld slot, or this publisher's drop. With a batch bound of one
    /// slot or less (see [`set_batch_bytes`](Self::set_batch_bytes)) nothing is withheld and this is
    /// [`send`](Self::send).
    ///
    /// ```
    /// use ringwire::broadcast::{self, Mode};
    /// let (mut tx, mut rx) = broadcast::channel(ringwire::RingConfig::new(1 << 16, 64), Mode::Overwrite)?;
    /// for i in 0..10u8 {
    ///     tx.send_buffered(&[i])?;
    /// }
    /// assert!(rx.try_recv().is_err()); // withheld until the flush
    /// tx.flush();
    /// for i in 0..10u8 {
    ///     assert_eq!(rx.recv()?, [i]);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_buffered(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_opt(msg, None, false, true)
    }

    /// Publishes every slot committed with [`WriteGuard::commit_buffered`] and not yet published (one
    /// Release store: the first withheld slot's sequence) and wakes sleeping subscribers. Cheap when
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
    /// ring). At most half the ring's slot bytes (a publisher must never come round to its own withheld
    /// slot).
    pub fn set_batch_bytes(&mut self, bytes: usize) {
        let half = self.local.geo.slots / 2 * self.local.geo.stride as u64;
        self.batch.bytes = (bytes as u64).min(half);
    }

    /// Publishes the withheld slots (`batch.pending` is set): the first one's sequence, with Release.
    fn publish_pending(&mut self) {
        let pos = self.batch.pending;
        debug_assert!(self.batch.is_pending());
        let (storage, l) = (&self.storage, &self.local);
        let c = ctl(storage);
        // SYNC POINT: Release publishes this slot's header and payload, as in `commit_slot`; pairs with
        // the subscriber's Acquire load of the sequence. The slots committed after it were published
        // already, each with its own Release store, but can't be read before it.
        storage.word(l.geo.offset(pos)).store(l.writing(pos).wrapping_add(1), Ordering::Release);
        slots::batch_published(c, self.me.index, &mut self.batch, l.asymmetric);
    }

    /// Test hook: forgets the withheld batch without publishing it, as a publisher killed while
    /// buffering does (dropping the publisher afterwards closes its entry: the dead owner).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn __forget_withheld(&mut self) {
        self.batch.clear();
    }

    /// Publishes a copy of `msg` without waiting: [`SendError::WouldBlock`] in back-pressure mode while
    /// the slowest subscriber is a lap behind, and in either mode while another publisher that claimed
    /// the same slot a lap earlier is still writing it (given up after the stuck timeout).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_opt(msg, None, true, false)
    }

    /// Publishes a copy of `msg`, in back-pressure mode waiting for the slowest subscriber.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_opt(msg, None, false, false)
    }

    /// Publishes a copy of `msg`, waiting until `deadline` at most (back-pressure mode).
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<(), SendError> {
        self.send_opt(msg, Some(deadline), false, false)
    }

    /// Publishes a copy of `msg`, waiting `timeout` at most (back-pressure mode). A timeout too large to
    /// be a deadline (`Duration::MAX`) waits without one.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_opt(msg, Instant::now().checked_add(timeout), false, false)
    }

    /// Reserves the next position for a `len`-byte message without waiting (as [`try_send`](Self::try_send)).
    /// The position and its slot are ours until the guard commits or drops; the bytes are written into
    /// the publisher's staging buffer and copied into the slot at commit (subscribers read slots through
    /// a sequence lock, so the slot itself can't be handed out as a `&mut [u8]`). Dropped uncommitted,
    /// the position is published empty and subscribers skip it.
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_opt(len, None, true)
    }

    /// Reserves the next position for a `len`-byte message, in back-pressure mode waiting for the
    /// slowest subscriber.
    pub fn reserve(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_opt(len, None, false)
    }

    /// Reserves the next position, waiting `timeout` at most (saturating, as [`send_timeout`](Self::send_timeout)).
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_opt(len, Instant::now().checked_add(timeout), false)
    }

    /// Reserves the next position, waiting until `deadline` at most.
    pub fn reserve_deadline(&mut self, len: usize, deadline: Instant) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_opt(len, Some(deadline), false)
    }

    fn send_opt(&mut self, msg: &[u8], deadline: Option<Instant>, once: bool, buffered: bool) -> Result<(), SendError> {
        if msg.len() > self.local.max_message {
            return Err(SendError::Oversize { len: msg.len(), max: self.local.max_message });
        }
        let pos = self.claim_opt(deadline, once)?;
        if self.take(pos, deadline, once)? {
            self.write_slot(pos, Kind::Data, msg, 0);
            self.commit_slot(pos, buffered);
        }
        Ok(())
    }

    fn reserve_opt(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
        once: bool,
    ) -> Result<WriteGuard<'_, S>, SendError> {
        let max = self.local.max_message;
        if len > max {
            return Err(SendError::Oversize { len, max });
        }
        let pos = self.claim_opt(deadline, once)?;
        let owned = self.take(pos, deadline, once)?;
        if self.staging.len() < max {
            self.staging.resize(max, 0);
        }
        Ok(WriteGuard { publisher: self, pos, len, owned, done: false })
    }

    /// [`try_claim`](Self::try_claim), publishing the withheld batch first where waiting with it
    /// withheld could wait for ever: before a back-pressure wait (the slowest subscriber may be stuck
    /// behind our withheld slot), and when the claimed position comes round to the withheld slot's
    /// (it would wait for itself as for a stalled publisher of an earlier lap).
    #[inline]
    fn try_claim_flushing(&mut self) -> Result<u64, SendError> {
        if !self.batch.is_pending() {
            return self.try_claim();
        }
        let pos = match self.try_claim() {
            Err(SendError::WouldBlock) => {
                self.publish_pending();
                return self.try_claim();
            }
            r => r?,
        };
        if pos.wrapping_sub(self.batch.pending) >= self.local.geo.slots {
            self.publish_pending();
        }
        Ok(pos)
    }

    /// Claims the next position, waiting as `deadline` / `once` say.
    fn claim_opt(&mut self, deadline: Option<Instant>, once: bool) -> Result<u64, SendError> {
        Ok(match self.try_claim_flushing() {
            Ok(pos) => pos,
            Err(SendError::WouldBlock) if once => {
                // A poller must also stop waiting for subscribers that died: look, at most once per
                // liveness interval, then try once more.
                let now = Instant::now();
                if self.dead_checked.map_or(true, |t| now.duration_since(t) >= self.local.liveness) {
                    self.dead_checked = Some(now);
                    self.forget_dead_subscribers();
                    self.try_claim()?
                } else {
                    return Err(SendError::WouldBlock);
                }
            }
            Err(SendError::WouldBlock) => {
                let params = self.local.params(deadline);
                let index = self.me.index;
                // Sleep on the cell for the reason we are blocked; if the reason changes, go round and
                // sleep on the other one (the deadline is absolute).
                loop {
                    let cell = self.claim_cell();
                    match slots::block(
                        self,
                        |p| ctl(&p.storage),
                        index,
                        cell,
                        params,
                        |p| p.poll_claim(cell),
                        |p| {
                            p.forget_dead_subscribers();
                            None
                        },
                        || SendError::Timeout,
                    ) {
                        Err(SendError::WouldBlock) => continue,
                        r => break r?,
                    }
                }
            }
            Err(e) => return Err(e),
        })
    }

    /// Claims the next position (in back-pressure mode, only once every live subscriber is past the
    /// message it overwrites).
    fn try_claim(&mut self) -> Result<u64, SendError> {
        let c = ctl(&self.storage);
        let n = self.local.geo.slots;
        // Relaxed: a starting guess, confirmed by the CAS.
        let mut pos = c.tail.load(Ordering::Relaxed);
        loop {
            if self.local.backpressure && pos >= self.min_cursor.saturating_add(n) {
                self.min_cursor = self.slowest(pos);
                if pos >= self.min_cursor.saturating_add(n) {
                    self.writer_blocked = false;
                    return Err(SendError::WouldBlock);
                }
            }
            // A publisher of an earlier lap still writing the slot (odd sequence below ours): don't claim
            // a position we could not write now, unless that publisher is dead. Acquire: pairs with the
            // Release half of its CAS to odd, so its intent is visible to `owner_alive`.
            let cur = self.storage.word(self.local.geo.offset(pos)).load(Ordering::Acquire);
            if cur % 2 == 1 && cur < self.local.writing(pos) {
                let theirs = ((cur - 1) / 2) << self.local.geo.shift | (pos & (n - 1));
                // Taken for a live writer until it has looked stuck for the stuck timeout; then asked
                // (a lock probe), and asked again only after another timeout while it lives.
                self.writer_blocked = true;
                if !self.watch.stuck(theirs, self.local.stuck) {
                    return Err(SendError::WouldBlock);
                }
                if slots::owner_alive(&self.storage, c, [role::PUBLISHER, role::PUBLISHER], theirs) {
                    self.watch.reset();
                    return Err(SendError::WouldBlock);
                }
                // Its writer died: claim, and `write` takes the slot over.
            }
            c.participants[self.me.index].intent.store(pos.wrapping_add(1), Ordering::Release);
            // SYNC POINT: Release orders the intent before the claim (for stuck checks, which load
            // `tail` with Acquire). Relaxed on failure: we retry with the new value.
            match c.tail.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return Ok(pos),
                Err(now) => pos = now,
            }
        }
    }

    /// The lowest cursor of the live subscribers (`upto` if there is none).
    fn slowest(&self, upto: u64) -> u64 {
        let c = ctl(&self.storage);
        let mut min = upto;
        for (i, p) in c.participants.iter().enumerate() {
            // SYNC POINT: Acquire pairs with the subscriber's Release store of ATTACHED (its cursor was
            // set before) and of each cursor (it finished reading the slots before it).
            if p.state.load(Ordering::Acquire) != crate::ring::endpoint::ATTACHED
                || p.role.load(Ordering::Relaxed) != role::SUBSCRIBER
            {
                continue;
            }
            let pid = p.pid.load(Ordering::Relaxed);
            if self.dead.contains(&(i, pid)) {
                continue;
            }
            min = min.min(p.cursor.load(Ordering::Acquire));
        }
        min
    }

    /// Notes which attached subscribers' processes are gone, so back-pressure stops waiting for them.
    #[cold]
    fn forget_dead_subscribers(&mut self) {
        let storage = &self.storage;
        let c = ctl(storage);
        self.dead.clear();
        for (i, p) in c.participants.iter().enumerate() {
            if p.role.load(Ordering::Relaxed) == role::SUBSCRIBER
                && p.state.load(Ordering::Acquire) == crate::ring::endpoint::ATTACHED
                && !storage.alive(i as u32, &p.state)
            {
                self.dead.push((i, p.pid.load(Ordering::Relaxed)));
            }
        }
        self.min_cursor = 0;
    }

    #[cfg(feature = "test-hooks")]
    /// Test hook: claims the next position and takes its slot, then stops as if killed mid-write.
    #[doc(hidden)]
    pub fn __abandon_mid_write(&mut self) {
        if let Ok(pos) = self.try_claim() {
            let off = self.local.geo.offset(pos);
            let mine = self.local.writing(pos);
            // Relaxed: a test hook imitating the first step of `write`.
            let cur = self.storage.word(off).load(Ordering::Relaxed);
            let _ = self.storage.word(off).compare_exchange(cur, mine, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Takes the slot of claimed position `pos` (its sequence to odd: ours to write; its second line
    /// prefetched for writing first). `Ok(false)`: a publisher of a later lap took it
    /// first, and our message is one every subscriber is told it lagged past. If a live publisher of an
    /// earlier lap is still writing the slot (it stalled for a whole lap), waits for it, yielding until
    /// the stuck timeout and then sleeping with a doubling back-off (up to the liveness interval), until
    /// `deadline` (without one: the stuck timeout for `try_` forms, as long as it lives for blocking
    /// ones), then gives the position up: subscribers skip it.
    fn take(&mut self, pos: u64, deadline: Option<Instant>, once: bool) -> Result<bool, SendError> {
        let storage = &self.storage;
        let c = ctl(storage);
        let l = &self.local;
        let off = l.geo.offset(pos);
        let seq = storage.word(off);
        let mine = l.writing(pos);
        let mut nap = Duration::from_micros(50);
        // The CAS below is a locked instruction: it waits for the slot's first line to come over
        // (subscribers read it last), and only then may the stores of `write_slot` ask for the rest.
        // Ask for the second line now, so that the transfers overlap: 64-byte round trip ~735 -> ~500 ns
        // (Intel host, ~300 ns probe; README, 2026-12-01). Only that one (see `prefetch_for_write`).
        l.prefetch_for_write(off);
        // And the slot we will likely take a few messages from now, whose first line a subscriber read
        // last (see `prefetch_ahead`; README, seventh session). A two-line slot (messages up to 112
        // bytes) is asked for whole: 64-byte streaming 11.6 -> 18.2 M msgs/s, 0.64x -> 1.01x the bare
        // ring (4 alternating pairs, Intel host), round trip unchanged. Not the lines of larger slots
        // (see `prefetch_for_write`).
        l.prefetch_ahead(pos, true);
        loop {
            // Acquire: if the value is odd, its writer's intent is visible (see the CAS below). An even
            // value needs no ordering: readers never write the slot.
            let cur = seq.load(Ordering::Acquire);
            if cur >= mine {
                // A publisher of a later lap took the slot while we were between claim and write:
                // every subscriber has been (or will be) told it lagged past this message.
                c.participants[self.me.index].intent.store(0, Ordering::Release);
                return Ok(false);
            }
            if cur % 2 == 1 {
                // A publisher of an earlier lap is still writing here. Wait for it, unless it died.
                let theirs = ((cur - 1) / 2) << l.geo.shift | (pos & (l.geo.slots - 1));
                let stuck = self.watch.stuck(theirs, l.stuck);
                if !stuck || slots::owner_alive(storage, c, [role::PUBLISHER, role::PUBLISHER], theirs) {
                    let out = match deadline {
                        Some(d) => crate::sync::now().is_some_and(|t| t >= d),
                        None => once && stuck,
                    };
                    if out {
                        // Alive but stalled: two writers on one slot would tear it, so give our
                        // position up (our intent cleared: subscribers find it ownerless and skip it).
                        c.participants[self.me.index].intent.store(0, Ordering::Release);
                        self.watch.reset();
                        return Err(if deadline.is_some() { SendError::Timeout } else { SendError::WouldBlock });
                    }
                    if stuck {
                        // Alive and stalled past the stuck timeout: nobody will signal us when it is done,
                        // so check back at growing intervals instead of spinning a CPU.
                        let left = deadline.and_then(|d| crate::sync::now().map(|t| d.saturating_duration_since(t)));
                        crate::sync::pause(left.map_or(nap, |left| left.min(nap)));
                        nap = (nap * 2).min(l.liveness);
                    } else {
                        crate::sync::yield_now();
                    }
                    continue;
                }
                // Its writer is dead: take the slot over (subscribers waiting on it skip it).
            }
            // Release: a publisher that later finds this odd value (Acquire) sees our intent. The fence
            // below orders our payload stores after it. Relaxed on failure: we re-read.
            if seq.compare_exchange(cur, mine, Ordering::Release, Ordering::Relaxed).is_ok() {
                break;
            }
        }
        self.watch.reset();
        Ok(true)
    }

    /// Writes a frame of `kind` with `payload` into the slot of `pos`, taken by [`take`](Self::take);
    /// [`commit_slot`](Self::commit_slot) publishes it. [`Kind::Pad`] (empty) marks a position given up
    /// by an abandoned reservation.
    fn write_slot(&self, pos: u64, kind: Kind, payload: &[u8], ext: u16) {
        let storage = &self.storage;
        let l = &self.local;
        let off = l.geo.offset(pos);
        // SYNC POINT (seqlock, writer): orders the odd sequence before every payload store; pairs with the
        // Acquire fence a subscriber issues after copying, so a copy that saw any of our stores also sees
        // the odd (or a later) sequence on its re-check.
        fence(Ordering::Release);
        // Relaxed: published by the Release store of the sequence in `commit_slot` (or of the withheld
        // first slot of the batch, which comes after this store in program order).
        storage.word(off + 8).store(FrameHeader { len: payload.len() as u32, kind, ext }.to_word(), Ordering::Relaxed);
        store_payload(storage, l, off + SLOT_HEADER, payload);
    }

    /// Publishes the slot of `pos`, written by [`write_slot`](Self::write_slot): or, if `buffered`,
    /// withholds it (the first of a batch) or publishes it behind the withheld first one.
    fn commit_slot(&mut self, pos: u64, buffered: bool) {
        let (storage, l) = (&self.storage, &self.local);
        // Withheld, the sequence stays odd ("being written"), so subscribers stop here. Published, a plain
        // store: nobody else writes this word while it is odd and ours, because a slot is only taken
        // over from a writer whose process (or endpoint) is gone, and we are here.
        let word = storage.word(l.geo.offset(pos));
        let committed = l.writing(pos).wrapping_add(1);
        let c = ctl(storage);
        if slots::commit(c, self.me.index, &mut self.batch, pos, buffered, l.geo.stride, word, committed, l.asymmetric)
        {
            self.publish_pending();
        }
    }
}

/// A reserved broadcast position: dereferences to `len` bytes of the publisher's staging buffer;
/// [`commit`](Self::commit) copies them into the slot and publishes them. Dropped without a commit, the
/// position is published empty and subscribers skip it.
pub struct WriteGuard<'a, S: Storage> {
    publisher: &'a mut Publisher<S>,
    pos: u64,
    len: usize,
    /// False when a publisher of a later lap took the slot first: nothing is written at commit.
    owned: bool,
    done: bool,
}

impl<S: Storage> WriteGuard<'_, S> {
    /// Publishes the message (and every slot this publisher withholds, see
    /// [`commit_buffered`](Self::commit_buffered)).
    pub fn commit(mut self) {
        self.finish(Kind::Data, self.len, 0, false);
    }

    /// Commits the message but withholds its publication, so that a burst reaches subscribers with one
    /// store they wait on instead of one per message (the SPSC ring's
    /// [`commit_buffered`](crate::spsc::WriteGuard::commit_buffered), on slots). The batch is published
    /// by [`Publisher::flush`], by this publisher's next plain commit or abandoned reservation, when it
    /// holds [`Publisher::set_batch_bytes`] bytes of slots (4 KiB of slots by default; with a bound of
    /// one slot or less nothing is withheld), when a claim cannot proceed at once (before a
    /// back-pressure wait, and in `try_` forms before returning `WouldBlock`), when a claim comes round
    /// to its own withheld slot, and when the publisher is dropped. **Flush before waiting for an
    /// answer.**
    ///
    /// What a withheld batch costs others: subscribers read positions in order, so messages that other
    /// publishers commit after the first withheld one wait for the flush too; and another publisher
    /// that comes round to the withheld slot a lap later waits for it, in either [`Mode`], as for a
    /// stalled publisher (`try_send`: `WouldBlock`; `send_timeout`: `Timeout`), woken by the flush. A
    /// subscriber that attaches while a batch is withheld starts after it (at the claim cursor), so it
    /// never sees that batch. A publisher leaked with `mem::forget` while it withholds a batch never
    /// publishes it: subscribers and publishers wait at its slot for as long as its process lives. A
    /// publisher that dies (SIGKILL) with a batch withheld loses its first withheld message:
    /// subscribers skip that slot after the stuck timeout, as a dead publisher's (counted in
    /// [`Recovered::skipped`](slots::Recovered::skipped)), and then read the rest of the batch.
    pub fn commit_buffered(mut self) {
        self.finish(Kind::Data, self.len, 0, true);
    }

    /// Publishes the first `len` bytes, of which the first `ext` are an event name (the frame header's
    /// `ext`, see [`crate::wire`]). Panics if `len` exceeds the reservation or `ext` exceeds `len`.
    pub fn commit_ext(mut self, len: usize, ext: u16) {
        assert!(len <= self.len, "commit_ext({len}) beyond the reserved {} bytes", self.len);
        assert!(ext as usize <= len, "an ext of {ext} bytes in a {len}-byte message");
        self.finish(Kind::Data, len, ext, false);
    }

    /// Publishes the first `len` bytes only (`len` at most the reserved length).
    pub fn commit_len(mut self, len: usize) {
        assert!(len <= self.len, "commit_len({len}) beyond the reserved {} bytes", self.len);
        self.finish(Kind::Data, len, 0, false);
    }

    fn finish(&mut self, kind: Kind, len: usize, ext: u16, buffered: bool) {
        self.done = true;
        if self.owned {
            let p = &*self.publisher;
            p.write_slot(self.pos, kind, &p.staging[..len], ext);
            self.publisher.commit_slot(self.pos, buffered);
        }
    }
}

impl<S: Storage> Drop for WriteGuard<'_, S> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Kind::Pad, 0, 0, false);
        }
    }
}

impl<S: Storage> std::ops::Deref for WriteGuard<'_, S> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.publisher.staging[..self.len]
    }
}

impl<S: Storage> std::ops::DerefMut for WriteGuard<'_, S> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.publisher.staging[..self.len]
    }
}

#[cfg(feature = "tokio")]
impl<S: Storage> Publisher<S> {
    /// Sends a copy of `msg`. In `Mode::Overwrite` this never waits for subscribers (as
    /// [`send`](Self::send)); in `Mode::Backpressure` it waits, without blocking the thread, until the
    /// slowest live subscriber has read the message it would overwrite (woken through the ring's own
    /// wake-up, see `ringwire::reactor`; subscribers found dead stop counting, as for `send`).
    ///
    /// Cancel-safe: the position is claimed and the message written in the poll that completes the
    /// future; dropping it before that sends nothing. (One corner blocks briefly: a publisher of an
    /// earlier lap still writing the same slot is waited for as in `send`, a copy of at most
    /// `max_message` bytes unless that publisher stalls mid-write.)
    ///
    /// ```
    /// use ringwire::broadcast::{self, Mode};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (mut tx, mut a) = broadcast::channel(ringwire::RingConfig::new(1 << 16, 64), Mode::Backpressure)?;
    /// let mut b = a.clone_handle()?;
    /// tx.send_async(b"tick").await?;
    /// assert_eq!(a.recv_async().await?, b"tick");
    /// assert_eq!(b.recv_vec_async().await?, b"tick");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() > self.local.max_message {
            return Err(SendError::Oversize { len: msg.len(), max: self.local.max_message });
        }
        let pos = self.claim_async().await?;
        if self.take(pos, None, false)? {
            self.write_slot(pos, Kind::Data, msg, 0);
            self.commit_slot(pos, false);
        }
        Ok(())
    }

    /// Reserves the next position for a `len`-byte message, waiting as
    /// [`send_async`](Self::send_async) does. Cancel-safe likewise; a reservation dropped uncommitted
    /// publishes an empty PAD that subscribers skip, as with [`try_reserve`](Self::try_reserve).
    pub async fn reserve_async(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        let max = self.local.max_message;
        if len > max {
            return Err(SendError::Oversize { len, max });
        }
        let pos = self.claim_async().await?;
        let owned = self.take(pos, None, false)?;
        if self.staging.len() < max {
            self.staging.resize(max, 0);
        }
        Ok(WriteGuard { publisher: self, pos, len, owned, done: false })
    }

    async fn claim_async(&mut self) -> Result<u64, SendError> {
        match self.try_claim_flushing() {
            Err(SendError::WouldBlock) => {}
            r => return r,
        }
        let (index, asymmetric, liveness) = (self.me.index, self.local.asymmetric, self.local.liveness);
        // As `claim_opt`: the cell for the reason we are blocked, changed when the reason changes.
        loop {
            let cell = self.claim_cell();
            match slots::block_async(
                self,
                |p| ctl(&p.storage),
                index,
                cell,
                asymmetric,
                liveness,
                |p| p.poll_claim(cell),
                |p| {
                    p.forget_dead_subscribers();
                    None
                },
            )
            .await
            {
                Err(SendError::WouldBlock) => continue,
                r => return r,
            }
        }
    }
}

#[cfg(feature = "tokio")]
impl<S: Storage> Subscriber<S> {
    /// The next message, waiting without blocking the thread until there is one (woken through the
    /// ring's own wake-up, see `ringwire::reactor`), or with the error a blocking
    /// [`recv`](Self::recv) would return (`PeerGone` once every publisher has gone and everything was
    /// read, `Lagged` after an overwrite). A view of this subscriber's own copy, as `recv`.
    ///
    /// Cancel-safe: the subscriber's position moves only in the poll that completes the future, so a
    /// future dropped before that loses no message.
    pub async fn recv_async(&mut self) -> Result<&[u8], RecvError> {
        let mut buf = std::mem::take(&mut self.scratch);
        if buf.len() < self.local.max_message {
            buf.resize(self.local.max_message, 0);
        }
        let r = self.recv_into_async(&mut buf).await;
        self.scratch = buf;
        r.map(|n| &self.scratch[..n])
    }

    /// Receives the next message into a new vector of exactly its length (see
    /// [`recv_async`](Self::recv_async)).
    pub async fn recv_vec_async(&mut self) -> Result<Vec<u8>, RecvError> {
        self.recv_async().await.map(<[u8]>::to_vec)
    }

    /// Copies the next message into `buf`: its length (see [`recv_async`](Self::recv_async)).
    pub async fn recv_into_async(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        match self.try_read(buf) {
            Err(RecvError::Empty) => {}
            r => {
                if r.is_ok() {
                    self.empty_polls = 0;
                }
                return r;
            }
        }
        let (index, asymmetric, liveness) = (self.me.index, self.local.asymmetric, self.local.liveness);
        slots::block_async(
            self,
            |s| ctl(&s.storage),
            index,
            slots::ASLEEP_DATA,
            asymmetric,
            liveness,
            |s| match s.try_read(buf) {
                Err(RecvError::Empty) => Poll::Pending,
                r => Poll::Ready(r),
            },
            |s| s.publishers_gone().then_some(RecvError::PeerGone),
        )
        .await
    }
}

impl<S: Storage> Drop for Publisher<S> {
    fn drop(&mut self) {
        // A clean close publishes what was withheld.
        self.flush();
        let c = ctl(&self.storage);
        slots::leave(c, &self.me);
        // Subscribers blocked on an empty ring re-check whether any publisher is left.
        c.data_ready.wake();
    }
}

impl<S: Storage> Subscriber<S> {
    /// Attaches a subscriber to the broadcast ring in `storage`. It sees every message claimed from now
    /// on: it starts at the claim cursor, so a message another publisher claimed before (an open
    /// reservation, or a withheld batch, see [`WriteGuard::commit_buffered`]) is not delivered to it,
    /// even when published after.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        check_kind::<Control, _>(&storage)?;
        let local = Local::new(&storage)?;
        let c = ctl(&storage);
        // Register with a cursor no higher than where we will start (so back-pressure holds from now),
        // then start at the tail read after registering: a publisher that did not see us yet only
        // overwrites positions before that.
        // Relaxed: an initial guess published with ATTACHED below.
        let guess = c.tail.load(Ordering::Relaxed);
        let me = slots::join(&storage, c, role::SUBSCRIBER)?;
        c.participants[me.index].cursor.store(guess, Ordering::Relaxed);
        // SYNC POINT: SeqCst store/fence/load: our registration is ordered before our read of `tail`, and
        // a publisher's scan (after its claim) either sees us or claimed before our read.
        fence(Ordering::SeqCst);
        let pos = c.tail.load(Ordering::SeqCst).max(guess);
        c.participants[me.index].cursor.store(pos, Ordering::Release);
        Ok(Subscriber {
            local,
            me,
            watch: StuckWatch::default(),
            pos,
            empty_polls: 0,
            scratch: Vec::new(),
            last_ext: 0,
            storage,
        })
    }

    /// How many of the first bytes of the message last returned (by any receive) are an event name: the
    /// frame header's `ext`, validated `<= len` (0 for a plain message).
    pub fn last_ext(&self) -> u16 {
        self.last_ext
    }

    /// The position of the next message this subscriber will read (messages since the ring's creation).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next message, if there is one: a view of this subscriber's own copy (valid until the next
    /// call). Payloads are always copied out of the slot, which a publisher may overwrite.
    pub fn try_recv(&mut self) -> Result<&[u8], RecvError> {
        self.scratch_opt(None, true)
    }

    /// The next message, blocking until there is one or every publisher has gone.
    pub fn recv(&mut self) -> Result<&[u8], RecvError> {
        self.scratch_opt(None, false)
    }

    /// The next message if there is one, read in place: in a back-pressure ring the guard views the
    /// slot itself (no copy), and publishers wait for it to be dropped, which passes the message (it
    /// holds this subscriber's cursor at the message, as a slow reader would); in an overwrite ring,
    /// whose publishers never wait, it views a copy, as [`try_recv`](Self::try_recv). The zero-copy
    /// counterpart of `recv`, as MPMC's [`ReadGuard`](crate::mpmc::ReadGuard). Only the guard's drop
    /// passes the message: in a back-pressure ring, a guard leaked with `mem::forget` leaves this
    /// subscriber at the message, which the next receive returns again.
    ///
    /// ```
    /// use ringwire::broadcast::{self, Mode};
    /// let (mut tx, mut rx) = broadcast::channel(ringwire::RingConfig::new(1 << 16, 64), Mode::Backpressure)?;
    /// tx.send(b"in place")?;
    /// let m = rx.recv_in_place()?;
    /// assert_eq!(&*m, b"in place");
    /// drop(m); // the slot may now be written again
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv_in_place(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        self.in_place_opt(None, true)
    }

    /// The next message read in place (see [`try_recv_in_place`](Self::try_recv_in_place)), blocking
    /// until there is one or every publisher has gone.
    pub fn recv_in_place(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        self.in_place_opt(None, false)
    }

    /// The next message read in place, waiting `timeout` at most. A timeout too large to be a deadline
    /// (`Duration::MAX`) waits without one.
    pub fn recv_in_place_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, S>, RecvError> {
        self.in_place_opt(Instant::now().checked_add(timeout), false)
    }

    fn in_place_opt(&mut self, deadline: Option<Instant>, once: bool) -> Result<ReadGuard<'_, S>, RecvError> {
        if !self.local.backpressure {
            let len = self.scratch_opt(deadline, once)?.len();
            return Ok(ReadGuard { subscriber: self, len, in_place: false });
        }
        let len = self.recv_with(deadline, once, Self::try_read_in_place)?;
        #[cfg(ringwire_loom)]
        {
            // Loom models the payload as atomic words, not bytes: view a copy, still holding the cursor
            // at the message until the drop, which is the protocol under test.
            let mut buf = std::mem::take(&mut self.scratch);
            buf.resize(len, 0);
            load_payload(&self.storage, &self.local, self.local.geo.offset(self.pos) + SLOT_HEADER, &mut buf);
            self.scratch = buf;
        }
        Ok(ReadGuard { subscriber: self, len, in_place: true })
    }

    /// The next message, waiting `timeout` at most. A timeout too large to be a deadline
    /// (`Duration::MAX`) waits without one.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<&[u8], RecvError> {
        self.scratch_opt(Instant::now().checked_add(timeout), false)
    }

    /// The next message, waiting until `deadline` at most.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<&[u8], RecvError> {
        self.scratch_opt(Some(deadline), false)
    }

    /// Copies the next message into `buf` if there is one: its length.
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_opt(buf, None, true)
    }

    /// Copies the next message into `buf`, blocking until there is one or every publisher has gone.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_opt(buf, None, false)
    }

    /// Copies the next message into `buf`, waiting until `deadline` at most.
    pub fn recv_into_deadline(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, RecvError> {
        self.recv_opt(buf, Some(deadline), false)
    }

    /// Copies the next message into `buf`, waiting `timeout` at most. A timeout too large to be a
    /// deadline (`Duration::MAX`) waits without one.
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        self.recv_opt(buf, Instant::now().checked_add(timeout), false)
    }

    /// Receives the next message into a new vector of exactly its length (blocking).
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        self.scratch_opt(None, false).map(<[u8]>::to_vec)
    }

    /// Receives the next message into a new vector if there is one.
    pub fn try_recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        self.scratch_opt(None, true).map(<[u8]>::to_vec)
    }

    /// Receives the next message into a new vector, waiting until `deadline` at most.
    pub fn recv_vec_deadline(&mut self, deadline: Instant) -> Result<Vec<u8>, RecvError> {
        self.scratch_opt(Some(deadline), false).map(<[u8]>::to_vec)
    }

    /// Receives the next message into a new vector, waiting `timeout` at most (saturating, as
    /// [`recv_into_timeout`](Self::recv_into_timeout)).
    pub fn recv_vec_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.scratch_opt(Instant::now().checked_add(timeout), false).map(<[u8]>::to_vec)
    }

    /// Receives into the scratch buffer (sized `max_message` once) and views the message there.
    fn scratch_opt(&mut self, deadline: Option<Instant>, once: bool) -> Result<&[u8], RecvError> {
        let mut buf = std::mem::take(&mut self.scratch);
        if buf.len() < self.local.max_message {
            buf.resize(self.local.max_message, 0);
        }
        let r = self.recv_opt(&mut buf, deadline, once);
        self.scratch = buf;
        r.map(|n| &self.scratch[..n])
    }

    fn recv_opt(&mut self, buf: &mut [u8], deadline: Option<Instant>, once: bool) -> Result<usize, RecvError> {
        self.recv_with(deadline, once, |s| s.try_read(buf))
    }

    /// Reads with `read` (a copy, or a message left in place): if nothing is published, waits (unless
    /// `once`) until it reads something, every publisher has gone, or `deadline` passes.
    fn recv_with(
        &mut self,
        deadline: Option<Instant>,
        once: bool,
        mut read: impl FnMut(&mut Self) -> Result<usize, RecvError>,
    ) -> Result<usize, RecvError> {
        match read(self) {
            Err(RecvError::Empty) if !once => {}
            Err(RecvError::Empty) => {
                // As MPMC's try_ receives: notice that every publisher has gone on the first empty poll
                // after a message, then on every POLLS_PER_CLOSE_CHECK-th.
                let check = self.empty_polls % slots::POLLS_PER_CLOSE_CHECK == 0;
                self.empty_polls = self.empty_polls.wrapping_add(1);
                if check && self.publishers_gone() {
                    return Err(RecvError::PeerGone);
                }
                return Err(RecvError::Empty);
            }
            r => {
                if r.is_ok() {
                    self.empty_polls = 0;
                }
                return r;
            }
        }
        let params = self.local.params(deadline);
        let index = self.me.index;
        slots::block(
            self,
            |s| ctl(&s.storage),
            index,
            slots::ASLEEP_DATA,
            params,
            |s| match read(s) {
                Err(RecvError::Empty) => Poll::Pending,
                r => Poll::Ready(r),
            },
            |s| s.publishers_gone().then_some(RecvError::PeerGone),
            || RecvError::Timeout,
        )
    }

    /// Whether every publisher that attached has gone and nothing claimed is left to read.
    fn publishers_gone(&self) -> bool {
        let storage = &self.storage;
        let c = ctl(storage);
        c.stats.writers_ever.load(Ordering::Relaxed) > 0
            && slots::live_count(storage, c, [role::PUBLISHER, role::PUBLISHER]) == 0
            // Acquire: pairs with the publishers' Release claims.
            && self.pos >= c.tail.load(Ordering::Acquire)
    }

    /// Reads the next message, if it is there, skipping positions given up by abandoned reservations.
    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            match self.read_at_pos(Some(&mut *buf)) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// As [`try_read`](Self::try_read), but leaves the message in its slot and this subscriber at its
    /// position (back-pressure rings only: see [`recv_in_place`](Self::recv_in_place)): its length.
    fn try_read_in_place(&mut self) -> Result<usize, RecvError> {
        loop {
            match self.read_at_pos(None) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the message at our position into `buf`: `Ok(None)` if it was an empty PAD (skipped). With
    /// no `buf` (in place), a message is checked but neither copied nor passed: the caller reads it in
    /// the slot and advances after.
    fn read_at_pos(&mut self, buf: Option<&mut [u8]>) -> Result<Option<usize>, RecvError> {
        let storage = &self.storage;
        let l = &self.local;
        let pos = self.pos;
        let off = l.geo.offset(pos);
        let want = l.writing(pos).wrapping_add(1);
        // SYNC POINT (seqlock, reader): Acquire pairs with the publisher's Release store of `want`.
        let s1 = storage.word(off).load(Ordering::Acquire);
        if s1 < want {
            return Err(self.not_yet(pos, want));
        }
        if s1 > want {
            return Err(self.lagged());
        }
        // Relaxed: validated by the sequence re-check below.
        let word = storage.word(off + 8).load(Ordering::Relaxed);
        let hdr = FrameHeader::from_word(word);
        let pad = matches!(hdr, Ok(FrameHeader { kind: Kind::Pad, len: 0, .. }));
        let mut ext = 0;
        let len = match hdr {
            Ok(FrameHeader { kind: Kind::Data, len, ext: e }) if (len as usize) <= l.max_message => {
                ext = e;
                len as usize
            }
            _ if pad => 0,
            _ => usize::MAX,
        };
        let in_place = buf.is_none();
        let copied = match buf {
            Some(buf) if len != usize::MAX && len <= buf.len() => {
                load_payload(storage, l, off + SLOT_HEADER, &mut buf[..len]);
                true
            }
            Some(_) => false,
            None => len != usize::MAX,
        };
        // SYNC POINT (seqlock, reader): orders the copies above before the re-check; pairs with the
        // publisher's Release fence after it took the slot.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence.
        if storage.word(off).load(Ordering::Relaxed) != s1 {
            return Err(self.lagged());
        }
        if len == usize::MAX {
            // Consistent, yet no correct publisher wrote it: skip it.
            self.advance(pos.wrapping_add(1));
            return Err(RecvError::Corrupt(Corruption { at: pos, what: "bad slot header" }));
        }
        if pad {
            // An abandoned reservation: nothing to deliver.
            self.advance(pos.wrapping_add(1));
            return Ok(None);
        }
        if !copied {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        self.last_ext = ext;
        if !in_place {
            self.advance(pos.wrapping_add(1));
        }
        Ok(Some(len))
    }

    /// Nothing committed at `pos` yet (`s1 < want`): empty, or a publisher is writing, or died writing.
    fn not_yet(&mut self, pos: u64, want: u64) -> RecvError {
        let storage = &self.storage;
        let c = ctl(storage);
        // In mid-write for our lap, or not yet taken for it. Claimed (tail past us) by a dead publisher?
        if self.watch.due(pos, self.local.stuck) {
            // SYNC POINT: Acquire pairs with the publisher's Release claim, so its intent is visible.
            let claimed = c.tail.load(Ordering::Acquire) > pos;
            if claimed && !slots::owner_alive(storage, c, [role::PUBLISHER, role::PUBLISHER], pos) {
                // Its writer died before committing (a dead writer makes no more stores): re-check that it
                // did not commit just before dying, then skip.
                // Acquire: as in try_read.
                if storage.word(self.local.geo.offset(pos)).load(Ordering::Acquire) < want {
                    // Relaxed: a statistic; every subscriber that skips counts once.
                    c.stats.skipped.fetch_add(1, Ordering::Relaxed);
                    self.advance(pos.wrapping_add(1));
                }
            }
        }
        RecvError::Empty
    }

    /// We fell behind: jump to the oldest message still in the ring.
    #[cold]
    fn lagged(&mut self) -> RecvError {
        let c = ctl(&self.storage);
        // Acquire: pairs with the publishers' Release claims.
        let tail = c.tail.load(Ordering::Acquire);
        let oldest = tail.saturating_sub(self.local.geo.slots);
        let new = oldest.max(self.pos.wrapping_add(1));
        let lost = new.wrapping_sub(self.pos);
        self.advance(new);
        RecvError::Lagged(lost)
    }

    fn advance(&mut self, to: u64) {
        self.pos = to;
        if self.local.backpressure {
            let c = ctl(&self.storage);
            // SYNC POINT: Release orders our reads of the slots before `to` ahead of a publisher's Acquire
            // load of the cursor that lets it overwrite them.
            c.participants[self.me.index].cursor.store(to, Ordering::Release);
            c.space_ready.notify(self.local.asymmetric);
        }
    }
}

impl<S: Storage> Drop for Subscriber<S> {
    fn drop(&mut self) {
        let c = ctl(&self.storage);
        slots::leave(c, &self.me);
        // Publishers waiting for this subscriber (back-pressure) re-check.
        c.space_ready.wake();
    }
}

/// Copies `msg` into the payload of a slot at data offset `off` (8-aligned): memory that subscribers
/// may be reading at the same time (they discard what they read if the sequence moved).
///
/// On x86_64 this is inline assembly (`rep movsb`, or `mov`s for short payloads); elsewhere, and under
/// loom, a loop of relaxed atomic words. See `racy_copy` for why both are sound, and ARCHITECTURE.md,
/// "Broadcast", "Payload copies".
#[inline]
fn store_payload<S: Storage>(storage: &S, l: &Local, off: usize, msg: &[u8]) {
    #[cfg(all(target_arch = "x86_64", not(ringwire_loom)))]
    {
        let _ = storage;
        // The caller checked `msg.len() <= max_message`; a slot holds SLOT_HEADER + max_message bytes.
        // SAFETY: so `off + msg.len()` lies inside our slot of the data area (`l.data`, kept mapped by
        // `storage`); `msg` is private, not overlapping it. Racing readers: see `racy_copy`.
        unsafe { racy_copy(l.data.add(off), msg.as_ptr(), msg.len()) }
    }
    #[cfg(not(all(target_arch = "x86_64", not(ringwire_loom))))]
    {
        let _ = l;
        store_words(storage, off, msg);
    }
}

/// Copies `buf.len()` bytes of a slot's payload at data offset `off` (8-aligned) into `buf`; a publisher
/// may be rewriting them at the same time (the caller's sequence re-check then discards the copy). The
/// counterpart of `store_payload`, with the same two implementations.
#[inline]
fn load_payload<S: Storage>(storage: &S, l: &Local, off: usize, buf: &mut [u8]) {
    #[cfg(all(target_arch = "x86_64", not(ringwire_loom)))]
    {
        let _ = storage;
        // SAFETY: the caller checked `buf.len() <= max_message`, so the source lies inside one slot of the
        // data area (`l.data`, kept mapped by `storage`); `buf` is private and does not overlap it. Racing
        // writers: see `racy_copy`.
        unsafe { racy_copy(buf.as_mut_ptr(), l.data.add(off), buf.len()) }
    }
    #[cfg(not(all(target_arch = "x86_64", not(ringwire_loom))))]
    {
        let _ = l;
        load_words(storage, off, buf);
    }
}

/// From this many bytes on, [`racy_copy`] is one `rep movsb`; below it, a loop of 16-byte moves. A
/// fast-string copy pays a start-up cost and, reading lines another core just wrote, measured slower at
/// 64 bytes than separate loads (a broadcast round trip 10% slower); at 4 KiB it beats the loop (the
/// round trip 4% faster than 16-byte moves, 11% faster than 8-byte atomic words). Two threads, one
/// process, medians of 3 alternating runs; see README, "MPMC and broadcast rings".
#[cfg(all(target_arch = "x86_64", not(ringwire_loom)))]
const REP_MOVSB_FROM: usize = 512;

/// Copies `len` bytes from `src` to `dst`, where one side is a broadcast slot's payload that another
/// thread or process may write (or read) at the same time: inline assembly, `rep movsb` from
/// [`REP_MOVSB_FROM`] bytes on (fast on every x86_64 since Ivy Bridge and Zen: ERMS/FSRM); below it,
/// 64-byte blocks of four 16-byte `movups` and a last 16-byte piece that may overlap (from 16 bytes),
/// two overlapping 8-byte `mov`s (8 to 15), single bytes (under 8).
///
/// # Why a racing copy is sound here
///
/// * Rust: a race between two non-atomic accesses is undefined behaviour, so a plain `memcpy` of a slot
///   that a publisher may be rewriting is not allowed, even though the sequence lock throws the result
///   away. Inline assembly is outside the language's memory model: the compiler assumes each block may
///   read and write the memory it can reach through the pointers given, and what a block does must be
///   explainable by operations the abstract machine has. Each block here is a copy made of one relaxed
///   atomic access per byte (every byte access of x86 is single-copy atomic, and a wider `mov` is at
///   least that; RFC 3301's `atomic_load_per_byte_memcpy` is exactly this operation). Racing relaxed
///   atomic accesses are not a data race. Every access to broadcast payload bytes in a production
///   x86_64 build goes through this function, so no payload byte is ever accessed with two different
///   access sizes at once; the slot's sequence and frame-header words (the 16 bytes before the payload)
///   are never touched by it.
/// * Hardware ordering (Intel SDM vol. 3A, "Out-of-Order Stores For String Operations"; the AMD64 APM
///   gives fast-string stores the same latitude): the stores *within* one fast-string operation may
///   become visible out of order, but string operations are not reordered with other stores, and plain
///   `mov` stores are ordered with all stores (TSO). So the publisher's Release store of the even
///   sequence after the copy is seen after every payload byte (the SDM's "discrete semaphore stored
///   after the string operation"), and the odd sequence (a locked CAS, a full barrier) before any of
///   them. The loads of either form are ordinary x86 loads, never reordered with the subscriber's later
///   load of the sequence (TSO orders loads with loads); the Acquire fence the caller issues between
///   them keeps the compiler from moving that load up. The Linux kernel's x86 `memcpy` (also
///   `rep movsb`) followed by `smp_store_release` (a plain `mov`) relies on the same guarantee.
/// * Rust's inline-assembly rules: the direction flag is clear on entry (so `rep movsb` ascends); no
///   block changes flags or uses the stack; SSE2 (`movups`) is part of the x86_64 baseline.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and the two ranges must not
/// overlap. Memory that another thread or process may access concurrently must be a broadcast slot
/// payload, accessed by others only through this function, under the sequence lock.
#[cfg(all(target_arch = "x86_64", not(ringwire_loom)))]
#[inline(always)]
unsafe fn racy_copy(dst: *mut u8, src: *const u8, len: usize) {
    if len >= REP_MOVSB_FROM {
        // SAFETY: the caller's contract (valid, non-overlapping ranges of `len` bytes); the block copies
        // exactly those bytes (see above for the concurrency argument), clobbering rcx, rdi and rsi.
        unsafe {
            core::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags),
            );
        }
        return;
    }
    if len >= 16 {
        // 64 bytes per block, then the last 16-byte pieces; the final piece may overlap bytes already
        // copied (it ends exactly at `len`): copying a byte twice is two more per-byte relaxed accesses.
        let mut i = 0;
        while i + 64 <= len {
            // SAFETY: `i + 64 <= len`: bytes `i..i + 64` of both ranges are valid (caller's contract);
            // `movups` needs no alignment. Concurrency: see above.
            unsafe {
                core::arch::asm!(
                    "movups {a}, xmmword ptr [{s}]",
                    "movups {b}, xmmword ptr [{s} + 16]",
                    "movups {c}, xmmword ptr [{s} + 32]",
                    "movups {e}, xmmword ptr [{s} + 48]",
                    "movups xmmword ptr [{d}], {a}",
                    "movups xmmword ptr [{d} + 16], {b}",
                    "movups xmmword ptr [{d} + 32], {c}",
                    "movups xmmword ptr [{d} + 48], {e}",
                    s = in(reg) src.add(i),
                    d = in(reg) dst.add(i),
                    a = out(xmm_reg) _,
                    b = out(xmm_reg) _,
                    c = out(xmm_reg) _,
                    e = out(xmm_reg) _,
                    options(nostack, preserves_flags),
                );
            }
            i += 64;
        }
        while i < len {
            // The last piece is moved back to end at `len` (16 <= len, so it stays inside both ranges).
            let at = if i + 16 <= len { i } else { len - 16 };
            // SAFETY: `at + 16 <= len`: bytes `at..at + 16` of both ranges are valid; as above.
            unsafe {
                core::arch::asm!(
                    "movups {x}, xmmword ptr [{s}]",
                    "movups xmmword ptr [{d}], {x}",
                    s = in(reg) src.add(at),
                    d = in(reg) dst.add(at),
                    x = out(xmm_reg) _,
                    options(nostack, preserves_flags),
                );
            }
            i = at + 16;
        }
        return;
    }
    if len >= 8 {
        // Two 8-byte moves, the second ending at `len` (they overlap unless `len` is 16).
        // SAFETY: `8 <= len < 16`: bytes `0..8` and `len - 8..len` of both ranges are valid; as above.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [{s}]",
                "mov {u}, qword ptr [{s} + {last}]",
                "mov qword ptr [{d}], {t}",
                "mov qword ptr [{d} + {last}], {u}",
                s = in(reg) src,
                d = in(reg) dst,
                last = in(reg) len - 8,
                t = out(reg) _,
                u = out(reg) _,
                options(nostack, preserves_flags),
            );
        }
        return;
    }
    for i in 0..len {
        // SAFETY: `i < len`, as above.
        unsafe {
            core::arch::asm!(
                "mov {t:l}, byte ptr [{s}]",
                "mov byte ptr [{d}], {t:l}",
                s = in(reg) src.add(i),
                d = in(reg) dst.add(i),
                t = out(reg) _,
                options(nostack, preserves_flags),
            );
        }
    }
}

/// Writes `msg` into the data area at `off` (8-aligned) as relaxed atomic words: the payload of a slot
/// that subscribers may be reading at the same time (they discard what they read if the sequence moved).
/// The portable (and loom) form of `store_payload`.
#[cfg(not(all(target_arch = "x86_64", not(ringwire_loom))))]
#[inline]
fn store_words<S: Storage>(storage: &S, off: usize, msg: &[u8]) {
    let mut chunks = msg.chunks_exact(8);
    let mut w = off;
    for c in &mut chunks {
        // Relaxed: published by the Release store of the sequence after the payload.
        storage.word(w).store(u64::from_le_bytes(c.try_into().expect("8 bytes")), Ordering::Relaxed);
        w += 8;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        // Relaxed: as above.
        storage.word(w).store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

/// Reads `buf.len()` bytes at `off` (8-aligned) as relaxed atomic words (see [`store_words`]).
#[cfg(not(all(target_arch = "x86_64", not(ringwire_loom))))]
#[inline]
fn load_words<S: Storage>(storage: &S, off: usize, buf: &mut [u8]) {
    let mut chunks = buf.chunks_exact_mut(8);
    let mut w = off;
    for c in &mut chunks {
        // Relaxed: validated by the caller's fence and sequence re-check.
        c.copy_from_slice(&storage.word(w).load(Ordering::Relaxed).to_le_bytes());
        w += 8;
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let n = rest.len();
        // Relaxed: as above.
        rest.copy_from_slice(&storage.word(w).load(Ordering::Relaxed).to_le_bytes()[..n]);
    }
}

#[cfg(all(test, target_arch = "x86_64", not(ringwire_loom)))]
mod tests {
    /// `racy_copy` copies exactly `len` bytes for every length class (bytes, overlapping words, 16-byte
    /// pieces with an overlapping last one, 64-byte blocks, `rep movsb`) and nothing outside them, at
    /// every alignment of either side.
    #[test]
    fn racy_copy_copies_exactly_the_bytes_asked_for() {
        let src: Vec<u8> = (0..1200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=1100usize {
            for (s_off, d_off) in [(0, 0), (1, 3), (8, 5), (7, 0)] {
                let mut dst = vec![0xeeu8; 1200];
                // SAFETY: both ranges are in bounds (len + offsets <= 1108 < 1200) and in distinct Vecs.
                unsafe { super::racy_copy(dst.as_mut_ptr().add(d_off), src.as_ptr().add(s_off), len) };
                assert_eq!(&dst[d_off..d_off + len], &src[s_off..s_off + len], "len {len} at {s_off}/{d_off}");
                assert!(dst[..d_off].iter().all(|&b| b == 0xee), "len {len}: wrote before the range");
                assert!(dst[d_off + len..].iter().all(|&b| b == 0xee), "len {len}: wrote past the range");
            }
        }
    }
}

/// A message from [`Subscriber::recv_in_place`]: in a back-pressure ring, the slot itself, which no
/// publisher writes until the guard is dropped (the drop passes the message); otherwise a copy.
pub struct ReadGuard<'a, S: Storage> {
    subscriber: &'a mut Subscriber<S>,
    len: usize,
    in_place: bool,
}

impl<S: Storage> std::ops::Deref for ReadGuard<'_, S> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let s = &*self.subscriber;
        if self.in_place && !cfg!(ringwire_loom) {
            // The slot of `s.pos` held a committed message of `len` <= max_message bytes (checked, with
            // the sequence read with Acquire, by `read_at_pos`). In a back-pressure ring no publisher
            // takes this slot again until every live subscriber's cursor is past `s.pos`, and ours stays
            // there until this guard is dropped.
            let off = s.local.geo.offset(s.pos) + SLOT_HEADER;
            // SAFETY: so the bytes are the message's and nobody writes them while we borrow; `len` fits in
            // the slot after its 16-byte header, inside the data area (`local.data`, kept mapped).
            return unsafe { std::slice::from_raw_parts(s.local.data.add(off), self.len) };
        }
        &s.scratch[..self.len]
    }
}

impl<S: Storage> ReadGuard<'_, S> {
    /// How many of the message's first bytes are an event name (the frame header's `ext`, validated
    /// `<= len`; 0 for a plain message).
    pub fn ext(&self) -> u16 {
        self.subscriber.last_ext
    }
}

impl<S: Storage> Drop for ReadGuard<'_, S> {
    fn drop(&mut self) {
        if self.in_place {
            let s = &mut *self.subscriber;
            // Loom reads a copy (see `in_place_opt`): check that the slot still holds it, which is what
            // a production guard, reading the slot itself, relies on.
            #[cfg(ringwire_loom)]
            {
                let mut now = vec![0u8; self.len];
                load_payload(&s.storage, &s.local, s.local.geo.offset(s.pos) + SLOT_HEADER, &mut now);
                assert!(now == s.scratch[..self.len], "a publisher wrote a slot held by recv_in_place");
            }
            s.advance(s.pos.wrapping_add(1));
        }
    }
}

impl<S: Storage> std::fmt::Debug for ReadGuard<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard").field("len", &self.len).field("in_place", &self.in_place).finish()
    }
}
