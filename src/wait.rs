//! Waiting and waking: the strategies a blocked sender or receiver can use, and the sleep/wake protocol
//! on a futex word in shared memory.
//!
//! # Protocol
//!
//! A `WaitCell` lives in the shared control block, one per direction ("data ready" for the consumer,
//! "space ready" for the producer). It holds a wake sequence number (the futex word) and a count of
//! sleepers.
//!
//! ```text
//!   sleeper                                   notifier
//!   -------                                   --------
//!   sleepers += 1                             store condition (Release)
//!   heavy barrier          <--- Dekker --->   light barrier
//!   s = seq.load(Acquire)                     if sleepers != 0 {
//!   if condition: sleepers -= 1, done             seq += 1 (Release)
//!   futex_wait(seq, s, timeout)                   futex_wake(seq)
//!   sleepers -= 1                             }
//! ```
//!
//! The barriers are two `fence(SeqCst)`s, or — in a ring created with asymmetric fences, the default
//! where the kernel has `membarrier` — a compiler fence for the notifier (who publishes on every message)
//! and `membarrier(GLOBAL_EXPEDITED)` for the sleeper (who is about to make a syscall anyway); see
//! `sync::heavy_barrier` for why that pair is as strong as two fences. Either way the barriers forbid
//! the outcome where the notifier reads `sleepers == 0` *and* the sleeper
//! misses the condition: at least one of them sees the other's store. If the notifier sees the sleeper,
//! it bumps `seq`; the sleeper either read `seq` before the bump (so FUTEX_WAIT returns at once, or the
//! wake finds it queued) or after it (then the Acquire load synchronises with the Release bump, and the
//! re-check sees the condition). So no wake-up is lost, and the notifier makes no syscall unless
//! somebody sleeps. `loom-tests/` checks this on this very code.
//!
//! An async waiter (feature `tokio`, `crate::reactor`) runs the same sleeper half
//! (`WaitCell::announce`, re-check, `WaitCell::retire`), with the process's reactor thread sleeping
//! on `seq` in its place; the notifier's half is the same for both.

use crate::sync::{futex, heavy_barrier, light_barrier, now, spin_hint, yield_now, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Default interval at which a blocked endpoint checks that its peer process is still alive.
pub const DEFAULT_LIVENESS: std::time::Duration = std::time::Duration::from_millis(50);

/// How a blocking call waits for the other side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Spin on the shared memory with a CPU pause between polls. Lowest latency; burns a core while
    /// waiting. Liveness and the deadline are still checked.
    Spin,
    /// Spin for a few polls, then `sched_yield` between polls.
    SpinYield,
    /// Spin for `spin`, then sleep on the futex until woken (default). An idle waiter uses no CPU, and
    /// the other side makes no syscall unless this side sleeps.
    Adaptive {
        /// How long to spin before sleeping. A wake-up through the kernel costs tens of microseconds on a
        /// VM, so spinning about that long first catches every prompt reply without a syscall.
        spin: Duration,
    },
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::Adaptive { spin: Duration::from_micros(50) }
    }
}

/// The wait state of one direction, in shared memory. See the module docs for the protocol.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WaitCell {
    /// The futex word: bumped by each wake.
    seq: AtomicU32,
    /// How many threads have announced they are about to sleep on `seq`.
    sleepers: AtomicU32,
}

impl WaitCell {
    pub(crate) fn new() -> Self {
        WaitCell { seq: AtomicU32::new(0), sleepers: AtomicU32::new(0) }
    }

    /// Wakes the sleepers, if any, after the caller made the condition true with a Release store.
    /// `asymmetric`: the ring's fence mode (see `sync::light_barrier`).
    #[inline]
    pub(crate) fn notify(&self, asymmetric: bool) {
        // SYNC POINT (Dekker, notifier side): orders the caller's store of the condition before our load
        // of `sleepers`; pairs with the heavy barrier in `wait_for`'s sleep path.
        light_barrier(asymmetric);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake();
        }
    }

    /// Wakes everybody sleeping on this cell, unconditionally (close, or a sleeper was seen).
    #[cold]
    pub(crate) fn wake(&self) {
        // SYNC POINT: Release, so that a sleeper whose Acquire load of `seq` sees this bump also sees the
        // condition the caller stored before calling us.
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake_all(&self.seq);
    }

    /// How many sleepers are announced right now (tests and diagnostics).
    #[cfg_attr(not(any(feature = "test-hooks", ringwire_loom)), allow(dead_code))]
    pub(crate) fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed)
    }

    /// Takes back the sleeper count of one endpoint that died while counted (slot rings, see
    /// `slots::reclaim_sleep`).
    pub(crate) fn forget_sleeper(&self) {
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Forgets sleepers announced by a process that died while asleep. Only sound when the caller is
    /// the only process that may sleep on this cell (an SPSC endpoint re-attaching).
    pub(crate) fn reset_sleepers(&self) {
        self.sleepers.store(0, Ordering::Relaxed);
    }
}

/// Where a sleeper records that it is counted in a cell's `sleepers` (slot rings: the participant's
/// `asleep` word, set to `value` while counted), so that if its process dies asleep, whoever finds it
/// dead can take its count back (`slots::reclaim_sleep`) instead of every later notify paying a wake.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SleepMark<'a> {
    pub word: &'a AtomicU32,
    pub value: u32,
}

/// Everything a blocking call needs to know about how to wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitParams {
    pub strategy: WaitStrategy,
    pub deadline: Option<Instant>,
    /// How often to ask whether the peer process is still alive while waiting.
    pub liveness: Duration,
    /// The ring's fence mode: notifiers use a light barrier, so sleepers must use the heavy one.
    pub asymmetric: bool,
}

/// Polls between looks at the clock while spinning.
const POLLS_PER_CLOCK_CHECK: u32 = 64;
/// Polls that `SpinYield` spins before it starts yielding.
const SPIN_YIELD_SPINS: u32 = 128;

/// Outcome of one poll of the waited-for condition.
pub(crate) enum Poll<T, E> {
    Ready(Result<T, E>),
    Pending,
}

/// Blocks until `attempt` is ready, the deadline passes (`timed_out()`), or `peer_gone` reports the
/// peer gone (its error is returned after one last `attempt`, so whatever the peer committed before
/// dying is still delivered).
///
/// `attempt` must be cheap (it is polled in the spin loop); `peer_gone` may make a syscall and is called
/// about every `params.liveness`, and before a sleep unless nothing woke us since the last call (so a
/// peer that leaves cleanly, which wakes the cell's sleepers as it goes, is noticed at once).
pub(crate) fn wait_for<T, E>(
    cell: &WaitCell,
    mark: Option<SleepMark<'_>>,
    params: WaitParams,
    mut attempt: impl FnMut() -> Poll<T, E>,
    mut peer_gone: impl FnMut() -> Option<E>,
    timed_out: impl FnOnce() -> E,
) -> Result<T, E> {
    macro_rules! try_ready {
        () => {
            if let Poll::Ready(r) = attempt() {
                return r;
            }
        };
    }
    try_ready!();

    let start = now();
    let mut next_liveness = start.map(|t| t + params.liveness);
    let spin_budget = match params.strategy {
        WaitStrategy::Adaptive { spin } => Some(spin),
        _ => None,
    };
    // Spin phase (the whole wait for Spin and SpinYield). Under loom there is no clock: Adaptive goes to
    // sleep at once and the other strategies rely on `attempt` seeing a close.
    let mut polls: u32 = 0;
    loop {
        if start.is_none() && spin_budget.is_some() {
            break;
        }
        polls = polls.wrapping_add(1);
        match params.strategy {
            WaitStrategy::SpinYield if polls > SPIN_YIELD_SPINS => yield_now(),
            _ => spin_hint(),
        }
        try_ready!();
        if polls % POLLS_PER_CLOCK_CHECK == 0 {
            if let (Some(start), Some(t)) = (start, now()) {
                if params.deadline.is_some_and(|d| t >= d) {
                    return Err(timed_out());
                }
                if next_liveness.is_some_and(|n| t >= n) {
                    if let Some(e) = peer_gone() {
                        try_ready!();
                        return Err(e);
                    }
                    next_liveness = Some(t + params.liveness);
                }
                if spin_budget.is_some_and(|b| t.duration_since(start) >= b) {
                    break;
                }
            }
        }
    }

    // Sleep phase (Adaptive only). The peer check (a syscall across processes) runs after the sleeper's
    // announcement and re-check, just before it sleeps: on the first sleep of this call, after every
    // wake-up that brought nothing (the cell's `seq` moved since the last check), and once per liveness
    // interval; not after a wake-up that brings what we wait for. Placed after the announcement, it
    // cannot miss a clean close: a departing peer marks itself closed and then bumps `seq`. If our
    // announcement read `seq` before that bump, the futex returns and the next round checks; if after,
    // this round's check sees the close (the Acquire load of `seq` pairs with the bump's Release).
    // A dead peer never bumps: each sleep is bounded by the liveness interval, so it is noticed within
    // about two intervals. Without a clock (loom) the check runs before every sleep.
    let mut checked_at: Option<u32> = None;
    loop {
        let t = now();
        let timeout = match (params.deadline, t) {
            (Some(d), Some(t)) => {
                if t >= d {
                    try_ready!();
                    return Err(timed_out());
                }
                Some((d - t).min(params.liveness))
            }
            (None, Some(_)) => Some(params.liveness),
            (_, None) => None,
        };
        let seq = cell.announce(mark, params.asymmetric);
        if let Poll::Ready(r) = attempt() {
            cell.retire(mark);
            return r;
        }
        let due = match (t, next_liveness) {
            (Some(t), Some(n)) => t >= n,
            _ => true,
        };
        if due || checked_at != Some(seq) {
            if let Some(e) = peer_gone() {
                cell.retire(mark);
                try_ready!();
                return Err(e);
            }
            checked_at = Some(seq);
            next_liveness = t.map(|t| t + params.liveness);
        }
        futex::wait(&cell.seq, seq, timeout);
        cell.retire(mark);
        try_ready!();
    }
}

impl WaitCell {
    /// The sleeper's half of the protocol, up to the re-check: counts the caller as a sleeper (and sets
    /// its sleep mark), runs the heavy barrier, and returns the `seq` to sleep on. The caller must
    /// re-check its condition next, then either sleep on `seq` (the futex, or the async reactor) or
    /// give up; either way it ends with [`retire`](Self::retire).
    pub(crate) fn announce(&self, mark: Option<SleepMark<'_>>, asymmetric: bool) -> u32 {
        // Relaxed: the heavy barrier below orders it before the re-check (the Dekker pair).
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = mark {
            // Relaxed: read only by a process that found ours dead (its lock released by the kernel).
            m.word.store(m.value, Ordering::Relaxed);
        }
        // SYNC POINT (Dekker, sleeper side): orders our announcement before the caller's re-check of the
        // condition; pairs with the light barrier in `WaitCell::notify`.
        heavy_barrier(asymmetric);
        // SYNC POINT: Acquire pairs with the Release bump in `WaitCell::wake`: if we read a bumped value,
        // the caller's re-check sees the condition that the bump announced.
        self.seq.load(Ordering::Acquire)
    }

    /// Takes back what [`announce`](Self::announce) did (the sleep mark, then the count).
    pub(crate) fn retire(&self, mark: Option<SleepMark<'_>>) {
        unmark(mark);
        // Relaxed: a notifier that still reads the old count only makes one wake nobody needs.
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// The futex word (for the async reactor, which sleeps on it with `futex_waitv`).
    #[cfg(feature = "tokio")]
    pub(crate) fn seq_word(&self) -> &AtomicU32 {
        &self.seq
    }
}

/// Clears a sleep mark before the sleeper takes its own count back.
#[inline]
fn unmark(mark: Option<SleepMark<'_>>) {
    if let Some(m) = mark {
        // Relaxed: as in `wait_for`.
        m.word.store(0, Ordering::Relaxed);
    }
}
