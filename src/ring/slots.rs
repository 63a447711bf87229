//! What the two slot rings ([`mpmc`](super::mpmc) and [`broadcast`](super::broadcast)) share: the data
//! area cut into fixed-size slots, and a control block with claim cursors, wait cells and a table of
//! participants (every producer, consumer, publisher or subscriber attached, from any process).
//!
//! # Slots
//!
//! ```text
//!   slot i, at data offset i * stride (stride: a multiple of 64, so each slot starts a cache line)
//!   +----------------+----------------------------+---------------------------------+
//!   | seq: u64       | frame header: u64          | payload (up to max_message)     |
//!   +----------------+----------------------------+---------------------------------+
//! ```
//!
//! `seq` is the slot's state word; what it means is up to each algorithm, but both encode it so that the
//! all-zero memory of a new region is a valid initial state.
//!
//! # Participants
//!
//! Each endpoint holds one entry of the table, claimed through [`Storage::claim`] on lock byte = entry
//! index (an OFD lock across processes, released by the kernel when the process dies). Before it claims
//! a ring position (CAS on `tail` or `head`) an endpoint writes `position + 1` to its entry's `intent`,
//! and clears it once the position is committed or released. So a slot found stuck in mid-claim can be
//! traced to the entries whose intent names it; if none of them is alive, its owner died and the slot is
//! recovered (see each algorithm).

use super::error::AttachError;
use super::{endpoint, Header, RingConfig, RoleToken, Storage};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{WaitCell, WaitStrategy};
use crossbeam_utils::CachePadded;
use std::time::Duration;

/// Offset of the data area in a slot ring's region: five pages hold the control block and the table.
pub(crate) const DATA_OFFSET: usize = 5 * 4096;
/// Endpoints that can be attached to one slot ring at a time (all roles and processes together).
#[cfg(not(ringwire_loom))]
pub const MAX_PARTICIPANTS: usize = 128;
/// Endpoints that can be attached to one slot ring at a time (few under loom: each is explored).
#[cfg(ringwire_loom)]
pub const MAX_PARTICIPANTS: usize = 4;
/// A `try_` receive on an empty slot ring checks whether every writer has gone (and answers `PeerGone`)
/// on its first empty poll after a message and then on every this-many-th: the check scans the
/// participant table (and, across processes, asks the kernel about each writer's lock), too costly for
/// every poll of a busy-polling loop.
pub(crate) const POLLS_PER_CLOSE_CHECK: u32 = 1024;
/// Bytes before the payload in each slot: the state word and the frame header.
pub(crate) const SLOT_HEADER: usize = 16;

/// How long a slot may stay in mid-claim before the endpoint waiting on it asks whether its owner is
/// alive (default of `set_stuck_timeout`).
pub const DEFAULT_STUCK_TIMEOUT: Duration = Duration::from_millis(100);

/// What every slot-ring endpoint keeps in process-local memory: validated copies of the shared
/// header's facts (never re-read from the region) and its own settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Local {
    /// Start of the data area.
    pub data: *mut u8,
    pub geo: Geometry,
    pub max_message: usize,
    pub asymmetric: bool,
    /// Broadcast rings created with `Mode::Backpressure` (the flag is refused on other kinds).
    pub backpressure: bool,
    pub wait: WaitStrategy,
    pub liveness: Duration,
    pub stuck: Duration,
}

/// How many positions ahead of its claim a writer prefetches the slot it will claim then
/// ([`Local::prefetch_ahead`]). Measured on MPMC with buffered publication, 64-byte messages, Intel host
/// in the far placement: 2, 4, 8 and 16 all stream at ~1.0-1.4x the bare ring, against ~0.6-0.8x with
/// no prefetch; 4 keeps the hint within a few hundred bytes. Broadcast publishers use it too since the
/// seventh session (README).
pub(crate) const PREFETCH_AHEAD: u64 = 4;

impl Local {
    /// Asks (`prefetchw`) for the second line of the slot at data offset `off` (a one-line slot asks
    /// for its own line: harmless), before the writer's locked instruction (the claim or take CAS) would
    /// hold its stores back: the line a message of more than 48 bytes spills into. Not the first line: a
    /// waiting reader polls it, and taking it early makes it cross twice (measured: worse). Not the
    /// rest of a large message's lines either: a broadcast publisher that asked for up to 4 KiB of them
    /// measured 6% faster at 4 KiB on the Intel host but 30-40% slower on the AMD Zen 5 one (4 KiB round
    /// trip 651-691 -> 411-461 ns near, ~1950 -> 1182 ns far, without them; README, sixth session).
    /// A hint only.
    #[inline(always)]
    pub(crate) fn prefetch_for_write(&self, off: usize) {
        crate::sync::prefetch_write(self.data.wrapping_add(off + (self.geo.stride - 8).min(64)));
    }

    /// Asks (`prefetchw`) for the first line of the slot [`PREFETCH_AHEAD`] positions past `pos`, which
    /// this writer will likely claim a few messages from now: that line is probably still in the cache
    /// of the reader that read it last, and a claim that finds it there waits for the transfer. Fetched
    /// now, the transfer overlaps the messages between. A hint only.
    /// With `whole_small`, a two-line slot (messages up to 112 bytes) is asked for whole, its second line
    /// too (broadcast publishers; MPMC producers ask for the second line of the slot they claim instead).
    #[inline(always)]
    pub(crate) fn prefetch_ahead(&self, pos: u64, whole_small: bool) {
        let off = self.geo.offset(pos.wrapping_add(PREFETCH_AHEAD));
        crate::sync::prefetch_write(self.data.wrapping_add(off));
        if whole_small && self.geo.stride <= 128 {
            self.prefetch_for_write(off);
        }
    }

    pub(crate) fn new<S: Storage>(storage: &S) -> Result<Self, AttachError> {
        let cfg = storage.config();
        let geo = Geometry::of(cfg).ok_or(AttachError::BadHeader("slot geometry"))?;
        Ok(Local {
            data: storage.data(),
            geo,
            max_message: cfg.max_message,
            asymmetric: super::fence_mode(storage)?,
            backpressure: storage.flags() & super::FLAG_BACKPRESSURE != 0,
            wait: WaitStrategy::default(),
            liveness: crate::wait::DEFAULT_LIVENESS,
            stuck: DEFAULT_STUCK_TIMEOUT,
        })
    }

    pub(crate) fn params(&self, deadline: Option<std::time::Instant>) -> crate::wait::WaitParams {
        crate::wait::WaitParams { strategy: self.wait, deadline, liveness: self.liveness, asymmetric: self.asymmetric }
    }
}

/// How the data area is cut into slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Bytes per slot (a multiple of 64).
    pub stride: usize,
    /// Number of slots (a power of two, at least 2).
    pub slots: u64,
    /// log2(slots).
    pub shift: u32,
}

impl Geometry {
    /// The slots of `config`, or `None` if fewer than two slots of `max_message` fit.
    pub(crate) fn of(config: RingConfig) -> Option<Geometry> {
        let stride = (SLOT_HEADER + config.max_message).checked_add(63)? & !63;
        let fit = config.capacity / stride;
        if fit < 2 {
            return None;
        }
        // The largest power of two that fits, so that a position's slot is a mask away.
        let slots = 1u64 << (usize::BITS - 1 - fit.leading_zeros());
        Some(Geometry { stride, slots, shift: slots.trailing_zeros() })
    }

    /// Data offset of the slot that holds ring position `pos`.
    #[inline(always)]
    pub(crate) fn offset(&self, pos: u64) -> usize {
        (pos & (self.slots - 1)) as usize * self.stride
    }
}

/// The default bound on a writer's withheld bytes (`set_batch_bytes` of MPMC producers and broadcast
/// publishers): 4 KiB of slots (32 slots of 64-byte messages, whose slots take 128 bytes), as SPSC's
/// [`DEFAULT_BATCH_BYTES`](crate::spsc::DEFAULT_BATCH_BYTES).
pub const DEFAULT_BATCH_BYTES: usize = 4096;

/// `Batch::pending` when nothing is withheld.
pub(crate) const NOTHING_PENDING: u64 = u64::MAX;

/// A writer's buffered publication (`commit_buffered` of both slot rings): readers take positions in
/// order, so withholding the first buffered slot's sequence withholds every slot committed after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batch {
    /// The first position committed but withheld, or [`NOTHING_PENDING`]. Its slot's sequence still
    /// says "being written", so readers stop there; the slots committed after it are published one by
    /// one but can't be read before it.
    pub pending: u64,
    /// Slots committed since `pending` (it included): what `buffered_bytes` counts in strides.
    pub slots: u64,
    /// Withheld bytes (in slot strides) after which a buffered commit publishes by itself.
    pub bytes: u64,
}

/// What a writer does with the sequence of a slot it commits ([`Batch::commit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Publication {
    /// Withhold it: the first slot of a batch.
    Withhold,
    /// Publish it; `notify`: wake readers (nothing is withheld before it); `then_flush`: then publish
    /// the withheld batch (a plain commit, or the bound reached).
    Publish { notify: bool, then_flush: bool },
}

impl Batch {
    /// Nothing withheld; the default bound, or a quarter of the ring's slot bytes if that is less.
    pub(crate) fn new(geo: &Geometry) -> Batch {
        let room = geo.slots * geo.stride as u64;
        Batch { pending: NOTHING_PENDING, slots: 0, bytes: (DEFAULT_BATCH_BYTES as u64).min(room / 4) }
    }

    #[inline(always)]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending != NOTHING_PENDING
    }

    /// Decides what a commit of `pos` (`buffered` or plain) does, and records it. A batch bound of one
    /// slot or less makes every buffered commit a plain one. For `Withhold` the caller must store its
    /// participant's `withheld` before clearing the claim's intent ([`withhold`]).
    #[inline(always)]
    pub(crate) fn commit(&mut self, pos: u64, buffered: bool, stride: usize) -> Publication {
        let buffered = buffered && self.bytes > stride as u64;
        if !self.is_pending() {
            if buffered {
                self.pending = pos;
                self.slots = 1;
                return Publication::Withhold;
            }
            return Publication::Publish { notify: true, then_flush: false };
        }
        self.slots += 1;
        Publication::Publish { notify: false, then_flush: !buffered || self.slots * stride as u64 >= self.bytes }
    }

    /// Forgets the batch (after publishing it, or in the test hook that imitates a kill).
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.pending = NOTHING_PENDING;
        self.slots = 0;
    }

    /// Bytes of the withheld slots, counted in whole strides.
    pub(crate) fn buffered_bytes(&self, stride: usize) -> usize {
        (self.slots * stride as u64) as usize
    }
}

/// Marks `pos` as withheld by participant `me`, then clears the intent that claimed it, both Release,
/// in that order (see `Participant::withheld` and [`owner_alive`]).
#[inline]
fn withhold(me: &Participant, pos: u64) {
    me.withheld.store(pos.wrapping_add(1), Ordering::Release);
    me.intent.store(0, Ordering::Release);
}

/// Commits the slot of `pos` for participant `me` (a writer), its payload and frame header written:
/// withholds it (the first of a `buffered` batch: its sequence keeps saying "being written", readers
/// stop there) or stores `committed` into its sequence word `seq` with Release, clears the claim's
/// intent, and wakes readers unless a withheld slot is in front of it (and so, in broadcast overwrite
/// mode, publishers of a later lap waiting for this slot: they sleep on `data_ready` too). Returns whether
/// the caller must now publish its withheld batch (a plain commit behind it, or the batch bound reached).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn commit(
    control: &SlotControl,
    me: usize,
    batch: &mut Batch,
    pos: u64,
    buffered: bool,
    stride: usize,
    seq: &AtomicU64,
    committed: u64,
    asymmetric: bool,
) -> bool {
    let entry = &control.participants[me];
    let (notify, then_flush) = match batch.commit(pos, buffered, stride) {
        Publication::Withhold => {
            withhold(entry, pos);
            return false;
        }
        Publication::Publish { notify, then_flush } => (notify, then_flush),
    };
    // SYNC POINT: Release publishes the frame header and payload; pairs with the reader's Acquire load of
    // the sequence (MPMC `try_take`, broadcast `read_at_pos`). Behind a withheld slot this is Release
    // too: the reader of this position may not be the one that read the withheld one, so it must
    // synchronise with this store itself (a plain store on x86 either way).
    seq.store(committed, Ordering::Release);
    entry.intent.store(0, Ordering::Release);
    if notify {
        control.data_ready.notify(asymmetric);
    }
    then_flush
}

/// After the withheld slot's sequence was published (Release): clears participant `me`'s `withheld`
/// (Release: a recoverer that reads 0 there, with Acquire in [`owner_alive`], sees the slot committed),
/// forgets the batch, and wakes sleeping readers (and publishers waiting for the withheld slot: see
/// [`commit`]).
#[inline]
pub(crate) fn batch_published(control: &SlotControl, me: usize, batch: &mut Batch, asymmetric: bool) {
    control.participants[me].withheld.store(0, Ordering::Release);
    batch.clear();
    control.data_ready.notify(asymmetric);
}

/// Roles in the participant table.
pub(crate) mod role {
    pub const PRODUCER: u32 = 1;
    pub const CONSUMER: u32 = 2;
    pub const PUBLISHER: u32 = 3;
    pub const SUBSCRIBER: u32 = 4;
}

/// One entry of the participant table, in its own 128-byte block: `intent` and `cursor` are written by
/// their owner on every message and read by others only on slow paths.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Participant {
    /// `endpoint::VACANT`, `ATTACHED` or `CLOSED`.
    pub state: AtomicU32,
    pub pid: AtomicU32,
    /// One of [`role`].
    pub role: AtomicU32,
    /// Which wait cell this endpoint is counted in as a sleeper (`ASLEEP_DATA`, `ASLEEP_SPACE`), 0 if
    /// none: lets a survivor take back the count of a process that died asleep.
    pub asleep: AtomicU32,
    /// `position + 1` of the position this endpoint is claiming or holds uncommitted; 0 for none.
    /// Every store is Release and every foreign load Acquire (see `owner_alive`).
    pub intent: AtomicU64,
    /// Broadcast subscribers: the next position they will read (published for back-pressure).
    pub cursor: AtomicU64,
    /// Writers (MPMC producers, broadcast publishers): `position + 1` of the slot they committed but
    /// withhold (buffered publication, [`Batch`]), 0 for none. Set (Release) before the intent that claimed
    /// the slot is cleared, cleared (Release) after the slot's sequence is published, so a recoverer
    /// (`owner_alive`) that no longer finds the intent finds this, or the published slot.
    pub withheld: AtomicU64,
    /// MPMC consumers: the end (exclusive) of the run of positions claimed by one `recv_many`, whose
    /// start is `intent - 1`; meaningful only while `intent` is set. Stored (Relaxed) before the Release
    /// store of the run's intent, so a recoverer whose Acquire load of `intent` saw the run sees its end
    /// (or a later one: positions only grow, so a later end covers the run too). An older run's end
    /// never reaches past a later intent, so a single-message intent (which leaves this word alone)
    /// names exactly its own position.
    pub claim_end: AtomicU64,
}

/// Counters of recovered slots, for reports.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Stats {
    /// Slots whose producer / publisher died before committing: skipped.
    pub skipped: AtomicU64,
    /// Slots whose consumer died while reading: released (their message is lost).
    pub reclaimed: AtomicU64,
    /// Participants that ever attached as a writer (producer, publisher).
    pub writers_ever: AtomicU32,
    /// Participants that ever attached as a reader (consumer, subscriber).
    pub readers_ever: AtomicU32,
}

/// The control block of a slot ring.
#[repr(C)]
#[derive(Debug)]
#[doc(hidden)]
pub struct SlotControl {
    pub(crate) header: CachePadded<Header>,
    /// Next position a writer claims.
    pub(crate) tail: CachePadded<AtomicU64>,
    /// MPMC: next position a consumer claims. Broadcast: unused.
    pub(crate) head: CachePadded<AtomicU64>,
    /// Readers sleep here when there is nothing to read.
    pub(crate) data_ready: CachePadded<WaitCell>,
    /// Writers sleep here when the ring is full.
    pub(crate) space_ready: CachePadded<WaitCell>,
    pub(crate) stats: CachePadded<Stats>,
    pub(crate) participants: [CachePadded<Participant>; MAX_PARTICIPANTS],
}

#[cfg(not(ringwire_loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(SlotControl, tail) == 128);
    assert!(offset_of!(SlotControl, head) == 256);
    assert!(offset_of!(SlotControl, data_ready) == 384);
    assert!(offset_of!(SlotControl, space_ready) == 512);
    assert!(offset_of!(SlotControl, stats) == 640);
    assert!(offset_of!(SlotControl, participants) == 768);
    assert!(size_of::<SlotControl>() == 768 + 128 * MAX_PARTICIPANTS);
    assert!(size_of::<SlotControl>() <= DATA_OFFSET);
};

impl SlotControl {
    pub(crate) fn new(header: Header) -> Self {
        SlotControl {
            header: CachePadded::new(header),
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            data_ready: CachePadded::new(WaitCell::new()),
            space_ready: CachePadded::new(WaitCell::new()),
            stats: CachePadded::new(Stats {
                skipped: AtomicU64::new(0),
                reclaimed: AtomicU64::new(0),
                writers_ever: AtomicU32::new(0),
                readers_ever: AtomicU32::new(0),
            }),
            participants: std::array::from_fn(|_| {
                CachePadded::new(Participant {
                    state: AtomicU32::new(endpoint::VACANT),
                    pid: AtomicU32::new(0),
                    role: AtomicU32::new(0),
                    asleep: AtomicU32::new(0),
                    intent: AtomicU64::new(0),
                    cursor: AtomicU64::new(0),
                    withheld: AtomicU64::new(0),
                    claim_end: AtomicU64::new(0),
                })
            }),
        }
    }
}

/// An endpoint's entry in the participant table: released (CLOSED) on drop.
pub(crate) struct Membership {
    pub index: usize,
    _token: RoleToken,
}

/// Takes a free entry of the table for an endpoint of `role`; `cursor` is its initial cursor.
pub(crate) fn join<S: Storage>(storage: &S, control: &SlotControl, role: u32) -> Result<Membership, AttachError> {
    for (index, p) in control.participants.iter().enumerate() {
        // Cheap pre-filter: skip entries that look attached and whose owner is alive.
        // Relaxed: only a hint; the claim below decides.
        if p.state.load(Ordering::Relaxed) == endpoint::ATTACHED && storage.alive(index as u32, &p.state) {
            continue;
        }
        let Some(token) = storage.claim(index as u32, &p.state)? else { continue };
        // The entry is ours (a dead owner's entry may still say ATTACHED, hold an intent, and count as
        // a sleeper: clear all that).
        reclaim_sleep(control, p);
        p.intent.store(0, Ordering::Release);
        p.withheld.store(0, Ordering::Release);
        p.claim_end.store(0, Ordering::Relaxed);
        p.role.store(role, Ordering::Relaxed);
        p.pid.store(std::process::id(), Ordering::Relaxed);
        // Release: whoever sees ATTACHED sees the role, pid and cleared intent.
        p.state.store(endpoint::ATTACHED, Ordering::Release);
        let ever = match role {
            role::PRODUCER | role::PUBLISHER => &control.stats.writers_ever,
            _ => &control.stats.readers_ever,
        };
        // Relaxed: a statistic read on slow paths (is anyone ever going to write / read here?).
        ever.fetch_add(1, Ordering::Relaxed);
        return Ok(Membership { index, _token: token });
    }
    Err(AttachError::Full)
}

/// `Participant::asleep` values.
pub(crate) const ASLEEP_DATA: u32 = 1;
pub(crate) const ASLEEP_SPACE: u32 = 2;

/// Blocks the endpoint `ep` (participant entry `index`) on its ring's wait cell `which`
/// (`ASLEEP_DATA`: data_ready, `ASLEEP_SPACE`: space_ready): [`wait_for`](crate::wait::wait_for) with
/// the endpoint's sleep mark, where `attempt` and `gone` both get the endpoint. `control` finds the
/// ring's control block from the endpoint.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block<Ep, T, E>(
    ep: &mut Ep,
    control: fn(&Ep) -> &SlotControl,
    index: usize,
    which: u32,
    params: crate::wait::WaitParams,
    mut attempt: impl FnMut(&mut Ep) -> crate::wait::Poll<T, E>,
    mut gone: impl FnMut(&mut Ep) -> Option<E>,
    timed_out: impl FnOnce() -> E,
) -> Result<T, E> {
    let c: *const SlotControl = control(ep);
    // SAFETY: the control block lives in the endpoint's storage, which `ep` — borrowed for this whole
    // call — keeps mapped and never moves. The raw pointer only frees the block's lifetime from that
    // borrow, which `attempt` and `gone` need (one at a time, through the RefCell below).
    let c = unsafe { &*c };
    let cell = if which == ASLEEP_DATA { &*c.data_ready } else { &*c.space_ready };
    let mark = crate::wait::SleepMark { word: &c.participants[index].asleep, value: which };
    let ep = std::cell::RefCell::new(ep);
    crate::wait::wait_for(
        cell,
        Some(mark),
        params,
        || attempt(&mut ep.borrow_mut()),
        || gone(&mut ep.borrow_mut()),
        timed_out,
    )
}

/// The async form of [`block`]: waits for the endpoint `ep` on its ring's wait cell `which` through
/// the process's reactor (`crate::reactor::AsyncWait`), with the endpoint's sleep mark.
#[cfg(feature = "tokio")]
#[allow(clippy::too_many_arguments)]
pub(crate) async fn block_async<Ep, T, E>(
    ep: &mut Ep,
    control: fn(&Ep) -> &SlotControl,
    index: usize,
    which: u32,
    asymmetric: bool,
    liveness: std::time::Duration,
    mut attempt: impl FnMut(&mut Ep) -> crate::wait::Poll<T, E>,
    mut gone: impl FnMut(&mut Ep) -> Option<E>,
) -> Result<T, E> {
    let c: *const SlotControl = control(ep);
    // SAFETY: as in `block`: the control block lives in the endpoint's storage, which `ep` — borrowed
    // for the whole future — keeps mapped and never moves.
    let c = unsafe { &*c };
    let cell = if which == ASLEEP_DATA { &*c.data_ready } else { &*c.space_ready };
    let mark = crate::wait::SleepMark { word: &c.participants[index].asleep, value: which };
    let mut w = crate::reactor::AsyncWait::new(cell, Some(mark), asymmetric, liveness);
    std::future::poll_fn(|cx| w.poll(cx, &mut *ep, &mut attempt, &mut gone)).await
}

/// Entry `p`'s owner is dead: if it died counted as a sleeper, take its count back (once, whoever
/// gets here first), so that writers stop paying a futex wake per message for a sleeper that is gone.
fn reclaim_sleep(control: &SlotControl, p: &Participant) {
    // Relaxed: the owner is dead; its last stores reached memory before the kernel released its lock,
    // which our liveness syscall observed.
    let which = p.asleep.load(Ordering::Relaxed);
    if which != 0 && p.asleep.compare_exchange(which, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        let cell = if which == ASLEEP_DATA { &control.data_ready } else { &control.space_ready };
        cell.forget_sleeper();
    }
}

/// Marks `m`'s entry closed (its token, dropped right after, releases the lock byte).
pub(crate) fn leave(control: &SlotControl, m: &Membership) {
    let p = &control.participants[m.index];
    p.intent.store(0, Ordering::Release);
    // Release: everything this endpoint did happens-before a reader of CLOSED (and an in-process reuse).
    p.state.store(endpoint::CLOSED, Ordering::Release);
}

/// Whether entry `index` is attached and its owner alive. An owner found dead has its sleeper count
/// taken back.
fn entry_alive<S: Storage>(storage: &S, control: &SlotControl, index: usize) -> bool {
    let p = &control.participants[index];
    // Acquire: pairs with the Release store of ATTACHED / CLOSED.
    if p.state.load(Ordering::Acquire) != endpoint::ATTACHED {
        return false;
    }
    if storage.alive(index as u32, &p.state) {
        return true;
    }
    reclaim_sleep(control, p);
    false
}

/// Whether some live endpoint of `roles` has `intent == pos + 1`, a claimed run (`recv_many`:
/// `intent - 1 <= pos < claim_end`) holding `pos`, or `withheld == pos + 1`: the owner of a slot stuck at
/// `pos` may still commit or release it, or has committed it and withholds its publication. Called only
/// after the slot was seen stuck for the stuck timeout, and after the caller loaded the claim cursor past
/// `pos` with Acquire (so the owner's intent store, made before its Release claim, is visible).
pub(crate) fn owner_alive<S: Storage>(storage: &S, control: &SlotControl, roles: [u32; 2], pos: u64) -> bool {
    control.participants.iter().enumerate().any(|(i, p)| {
        // Relaxed role: written before the entry's Release store of ATTACHED, which the caller's chain
        // of Acquire loads (cursor, intent) orders before this.
        roles.contains(&p.role.load(Ordering::Relaxed))
            // SYNC POINT: Acquire pairs with the owner's Release stores of `intent`. If we read the value
            // it stored after committing or releasing (0, or the next position it claims), we also see
            // the commit or release, so the caller's re-check of the slot finds it and leaves it alone.
            && (holds(p.intent.load(Ordering::Acquire), pos, p)
                // SYNC POINT: Acquire pairs with the owner's Release stores of `withheld`. It sets
                // `withheld` before it clears the intent that claimed the slot (both Release), so an
                // intent load that saw the clear (or a later claim) makes this load see the set, or the
                // clear that followed the slot's publication (and then the caller's re-check of the
                // slot finds it committed).
                || p.withheld.load(Ordering::Acquire) == pos.wrapping_add(1))
            && entry_alive(storage, control, i)
    })
}

/// Claims positions `pos..end` for entry `me` with one CAS of `cursor` (`tail` for a producer, `head`
/// for a consumer) from `pos` to `end`: the run's end and intent first, so that whoever sees the claim
/// sees what it holds (see `Participant::claim_end` and [`owner_alive`]). `false`: the cursor had moved.
#[inline]
pub(crate) fn claim_run(me: &Participant, cursor: &AtomicU64, pos: u64, end: u64) -> bool {
    // Relaxed: published by the Release store of the intent right after.
    me.claim_end.store(end, Ordering::Relaxed);
    me.intent.store(pos.wrapping_add(1), Ordering::Release);
    // SYNC POINT: Release orders the run's intent and end before the claim; pairs with the Acquire load
    // of the cursor in the other side's stuck check. Relaxed on failure: the caller starts over.
    cursor.compare_exchange_weak(pos, end, Ordering::Release, Ordering::Relaxed).is_ok()
}

/// Whether an entry whose `intent` reads `intent` holds `pos`: its single claim, or its claimed run.
fn holds(intent: u64, pos: u64, p: &Participant) -> bool {
    if intent == pos.wrapping_add(1) {
        return true;
    }
    // Relaxed: loaded after the Acquire load of `intent`, which ordered the run's end (stored before
    // it) before this load; see `Participant::claim_end`.
    intent != 0 && intent - 1 <= pos && pos < p.claim_end.load(Ordering::Relaxed)
}

/// How many live endpoints of `roles` are attached.
pub(crate) fn live_count<S: Storage>(storage: &S, control: &SlotControl, roles: [u32; 2]) -> usize {
    (0..MAX_PARTICIPANTS)
        .filter(|&i| {
            roles.contains(&control.participants[i].role.load(Ordering::Relaxed)) && entry_alive(storage, control, i)
        })
        .count()
}

/// Slot recovery counters of a slot ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Slots skipped because their writer died (or abandoned them) before committing.
    pub skipped: u64,
    /// Slots released because the consumer reading them died: their messages are lost.
    pub reclaimed: u64,
}

pub(crate) fn recovered(control: &SlotControl) -> Recovered {
    // Relaxed: statistics.
    Recovered {
        skipped: control.stats.skipped.load(Ordering::Relaxed),
        reclaimed: control.stats.reclaimed.load(Ordering::Relaxed),
    }
}

/// Tracks how long the slot at one position has looked stuck, reading the clock only every so often.
#[derive(Debug, Default)]
pub(crate) struct StuckWatch {
    pos: u64,
    polls: u32,
    since: Option<std::time::Instant>,
    /// The position after the last slot this endpoint recovered (see [`recovered`](Self::recovered)).
    after_recovery: Option<u64>,
}

impl StuckWatch {
    /// Call each time the slot at `pos` is found in mid-claim; `true` once it has looked so for `limit`.
    /// Under loom (no clock) it is `true` at once, so the models explore the recovery path.
    pub(crate) fn stuck(&mut self, pos: u64, limit: Duration) -> bool {
        if self.pos != pos || self.since.is_none() {
            self.pos = pos;
            self.polls = 0;
            self.since = crate::sync::now();
            return self.since.is_none();
        }
        // The first polls of a stuck-looking slot are the normal race with a writer or reader that is
        // between claim and commit: don't read the clock for those. After that, every call reads it
        // (a waiter asleep on the futex polls only a few times per liveness interval).
        if self.polls < 64 {
            self.polls += 1;
            return false;
        }
        match (self.since, crate::sync::now()) {
            (Some(since), Some(now)) => now.duration_since(since) >= limit,
            _ => true,
        }
    }

    /// [`stuck`](Self::stuck), at most once per `limit`: when it says so the watch restarts, so a
    /// caller that then finds the slot's owner alive asks again only a stuck timeout later (each ask
    /// probes a lock across processes: a syscall), and one that skipped or reclaimed the slot starts
    /// afresh on the next.
    ///
    /// Right after a recovery at `pos - 1` it is `true` at once for `pos`: a dead endpoint's claims come
    /// in runs (`reserve_many`, `recv_many`), and its next slot should not wait a stuck timeout of its
    /// own (with a blocked waiter, whose polls are a few per liveness interval, that is over a second a
    /// slot). The caller's owner check still decides; a live owner just restarts the watch.
    pub(crate) fn due(&mut self, pos: u64, limit: Duration) -> bool {
        if self.after_recovery.take() == Some(pos) {
            self.reset();
            return true;
        }
        let due = self.stuck(pos, limit);
        if due {
            self.reset();
        }
        due
    }

    pub(crate) fn reset(&mut self) {
        self.since = None;
    }

    /// This endpoint just recovered the slot of `pos` (skipped or reclaimed it: its owner was dead).
    pub(crate) fn recovered(&mut self, pos: u64) {
        self.after_recovery = Some(pos.wrapping_add(1));
    }
}

/// The settings and reports every slot-ring endpoint has. `$ty<S>` has the fields `local` (with `wait`,
/// `liveness`, `stuck` and `max_message`) and `storage`, an `attach(S)` constructor, and its module has
/// `ctl(&S) -> &SlotControl`.
macro_rules! endpoint_common {
    ($ty:ident, waits_for: $waits:literal, peers: $peers:literal) => {
        impl<S: Storage> $ty<S> {
            /// Another endpoint of this kind on the same ring, attached as by `attach`.
            pub fn clone_handle(&self) -> Result<Self, AttachError>
            where
                S: Clone,
            {
                $ty::attach(self.storage.clone())
            }

            #[doc = concat!("Chooses how blocking calls wait for ", $waits, ".")]
            pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
                self.local.wait = wait;
            }

            #[doc = concat!(
                        "How often a blocked call checks whether any ", $peers, " is still attached (default 50 ms): ",
                        "a process that died is noticed within about two intervals. A clean close (the last ",
                        "one dropped) wakes sleeping calls, which notice it at once whatever the interval ",
                        "(the default `Adaptive` wait sleeps after its spin); a call still spinning looks once ",
                        "per interval."
                    )]
            pub fn set_liveness_interval(&mut self, every: Duration) {
                self.local.liveness = every;
            }

            #[cfg(feature = "test-hooks")]
            /// Diagnostics: how many endpoints are announced asleep on (data, space) right now.
            #[doc(hidden)]
            pub fn __sleepers(&self) -> (u32, u32) {
                let c = ctl(&self.storage);
                (c.data_ready.sleepers(), c.space_ready.sleepers())
            }

            /// How long a slot may look stuck in mid-claim before this endpoint checks whether the
            /// endpoint that claimed it died (default 100 ms).
            pub fn set_stuck_timeout(&mut self, after: Duration) {
                self.local.stuck = after;
            }

            /// The largest message the ring takes.
            pub fn max_message(&self) -> usize {
                self.local.max_message
            }

            /// What crash recovery has done on this ring so far (all endpoints, all processes).
            pub fn recovered(&self) -> slots::Recovered {
                slots::recovered(ctl(&self.storage))
            }
        }
    };
}
pub(crate) use endpoint_common;
