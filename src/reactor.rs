//! Async waiting (feature `tokio`): the futures behind `recv_async`, `send_async` and `reserve_async`
//! on every ring handle, and the one reactor per process that wakes them.
//!
//! ```
//! use std::time::Duration;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
//! // Cancel-safe: a receive that loses the race to the timer takes no message.
//! tokio::select! {
//!     m = rx.recv_vec_async() => panic!("nothing was sent: {m:?}"),
//!     _ = tokio::time::sleep(Duration::from_millis(1)) => {}
//! }
//! tx.send_async(b"hello").await?;
//! assert_eq!(rx.recv_vec_async().await?, b"hello");
//! // Across processes the same calls work on `ShmRing`, `ShmQueue` and `ShmBroadcast` handles: the
//! // peer wakes this process's reactor through the ring's futex word.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # How an async waiter sleeps
//!
//! An async waiter is a sleeper of the ordinary protocol (`wait.rs`): it announces itself in the
//! ring's `WaitCell` (`sleepers += 1`, heavy barrier, `s = seq`), re-checks its condition, and then,
//! instead of calling `futex_wait(seq, s)` on its own thread, hands `(&seq, s, waker)` to the
//! process's reactor and returns `Pending`. The notifier, in this process or another, runs exactly
//! the code it runs for a blocked thread: nothing when `sleepers == 0`, else `seq += 1` and
//! `futex_wake(seq)`. So the Dekker argument, the no-syscall-when-nobody-sleeps property and the
//! cross-process wake path are the blocking ones, unchanged.
//!
//! The reactor is a set of *shards*, each one thread sleeping in `futex_waitv` (Linux 5.16) on up to
//! [`SHARD_WORDS`] (127) registered words plus one word of its own, `ctl`, which a registration bumps
//! and wakes so that the shard rebuilds its list. `futex_waitv` returns when any word is woken, or at
//! once when one already differs from its expected value; the shard then fires the registrations
//! whose word moved (their future is woken and re-checks) and sleeps again. A 128th concurrent
//! waiter makes a second shard (a second thread), and so on: threads grow with the number of futures
//! waiting *at the same time*, one per 127, never one per ring; idle shards sleep on `ctl` alone.
//!
//! A shard never dereferences a registered address: only the kernel reads it (`futex_waitv`, and
//! FUTEX_WAIT with a zero time-out to tell which word moved), so a registration outliving its ring
//! (a leaked future) costs a stale entry, never a read of freed memory.
//!
//! Liveness: a registration carries a deadline (the handle's liveness interval, 50 ms by default);
//! the shard fires it when it passes, and the future asks whether the peer is alive before it
//! registers again, as a blocked thread does between futex sleeps.
//!
//! Leaking a pending future (`mem::forget`) leaks its sleeper count: the ring's notifier then pays a
//! futex wake per message until the endpoint re-attaches (SPSC) or is reclaimed (slot rings), as
//! after a process that died asleep. Dropping it is always clean.
//!
//! Without `futex_waitv` (Linux < 5.16, or a seccomp filter refusing it) a shard falls back to
//! looking at its words every millisecond (FUTEX_WAIT on `ctl` with a 1 ms time-out, then a probe of
//! each word): correct, but a poll.

use crate::sync::{futex, now, AtomicU32, Mutex, Ordering};
use crate::wait::{Poll as Attempt, SleepMark, WaitCell};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Registered words per shard: `futex_waitv` takes at most 128, and each shard needs one for itself.
pub const SHARD_WORDS: usize = futex::WAITV_MAX - 1;

/// One waiting future, as its shard keeps it.
struct Slot {
    gen: u64,
    addr: usize,
    expected: u32,
    deadline: Option<Instant>,
    waker: Waker,
}

struct ShardState {
    slots: Vec<Option<Slot>>,
    used: usize,
    next_gen: u64,
}

/// One reactor thread's share of the waiting futures.
struct Shard {
    state: Mutex<ShardState>,
    /// Bumped (and woken) by every registration, so that the shard, asleep on the old list, rebuilds it.
    ctl: AtomicU32,
    /// Loom only: the model's reactor thread stops when this is set.
    #[cfg(ringwire_loom)]
    stop: AtomicU32,
}

/// The process's reactor: its shards (never removed).
struct Reactor {
    shards: Mutex<Vec<Arc<Shard>>>,
}

#[cfg(not(ringwire_loom))]
fn reactor() -> &'static Reactor {
    static REACTOR: std::sync::OnceLock<Reactor> = std::sync::OnceLock::new();
    REACTOR.get_or_init(|| Reactor { shards: Mutex::new(Vec::new()) })
}

#[cfg(ringwire_loom)]
loom::lazy_static! {
    static ref REACTOR: Reactor = Reactor { shards: Mutex::new(Vec::new()) };
}

#[cfg(ringwire_loom)]
fn reactor() -> &'static Reactor {
    &REACTOR
}

/// A registered waiter: which slot of which shard, and the generation that says it is still ours.
struct Registration {
    shard: Arc<Shard>,
    index: usize,
    gen: u64,
}

impl Reactor {
    /// Registers a future waiting for the word at `addr` to move from `expected`.
    fn register(&self, addr: usize, expected: u32, deadline: Option<Instant>, waker: Waker) -> Registration {
        let mut slot = Slot { gen: 0, addr, expected, deadline, waker };
        let mut shards = lock(&self.shards);
        for shard in shards.iter() {
            match shard.insert(slot) {
                Ok(reg) => {
                    drop(shards);
                    reg.shard.poke();
                    return reg;
                }
                Err(s) => slot = s,
            }
        }
        let shard = Arc::new(Shard::new());
        shards.push(shard.clone());
        #[cfg(not(ringwire_loom))]
        {
            let run = shard.clone();
            std::thread::Builder::new()
                .name("ringwire-reactor".into())
                .spawn(move || run.run())
                .expect("ringwire: cannot start an async reactor thread");
        }
        drop(shards);
        let reg = shard.insert(slot).unwrap_or_else(|_| unreachable!("a new shard has room"));
        reg.shard.poke();
        reg
    }
}

#[cfg(not(ringwire_loom))]
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the lists consistent (every update is one step).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(ringwire_loom)]
fn lock<T>(m: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

impl Shard {
    fn new() -> Self {
        Shard {
            state: Mutex::new(ShardState { slots: (0..SHARD_WORDS).map(|_| None).collect(), used: 0, next_gen: 1 }),
            ctl: AtomicU32::new(0),
            #[cfg(ringwire_loom)]
            stop: AtomicU32::new(0),
        }
    }

    fn insert(self: &Arc<Self>, mut slot: Slot) -> Result<Registration, Slot> {
        let mut st = lock(&self.state);
        if st.used == SHARD_WORDS {
            return Err(slot);
        }
        let index = st.slots.iter().position(Option::is_none).expect("used < SHARD_WORDS");
        let gen = st.next_gen;
        st.next_gen += 1;
        slot.gen = gen;
        st.slots[index] = Some(slot);
        st.used += 1;
        Ok(Registration { shard: self.clone(), index, gen })
    }

    /// Tells the shard its list changed.
    fn poke(&self) {
        // SYNC POINT: Release, after the insertion (made under the state mutex): a shard whose Acquire
        // load of `ctl` (taken before it locks the state to build its list) read the old value either
        // built its list after our insertion (the mutex orders it) or sleeps on the old value, which
        // now differs: futex_waitv returns at once.
        self.ctl.fetch_add(1, Ordering::Release);
        futex::wake_all(&self.ctl);
    }

    /// Fires the registrations `keys` (index, generation) if they are still there: removes them and
    /// wakes their futures.
    fn fire(&self, keys: impl Iterator<Item = (usize, u64)>) {
        let mut wakers = Vec::new();
        {
            let mut st = lock(&self.state);
            for (i, gen) in keys {
                if st.slots[i].as_ref().is_some_and(|s| s.gen == gen) {
                    wakers.extend(st.slots[i].take().map(|s| s.waker));
                    st.used -= 1;
                }
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The shard's thread: sleep on every registered word and `ctl`; fire what moved or timed out.
    fn run(&self) {
        let mut words: Vec<(usize, u32)> = Vec::with_capacity(futex::WAITV_MAX);
        let mut keys: Vec<(usize, u64)> = Vec::with_capacity(SHARD_WORDS);
        let mut buf = Vec::with_capacity(futex::WAITV_MAX);
        let mut waitv = true;
        loop {
            // SYNC POINT: Acquire pairs with `poke`'s Release (see there); loaded before the list is built.
            let seen = self.ctl.load(Ordering::Acquire);
            #[cfg(ringwire_loom)]
            if self.stop.load(Ordering::Acquire) != 0 {
                return;
            }
            let t = now();
            let mut due = Vec::new();
            let mut earliest: Option<Instant> = None;
            words.clear();
            keys.clear();
            {
                let mut st = lock(&self.state);
                for i in 0..st.slots.len() {
                    let Some(s) = &st.slots[i] else { continue };
                    if let (Some(t), Some(d)) = (t, s.deadline) {
                        if t >= d {
                            due.extend(st.slots[i].take().map(|s| s.waker));
                            st.used -= 1;
                            continue;
                        }
                    }
                    earliest = match (earliest, s.deadline) {
                        (Some(e), Some(d)) => Some(e.min(d)),
                        (e, d) => e.or(d),
                    };
                    words.push((s.addr, s.expected));
                    keys.push((i, s.gen));
                }
            }
            due.into_iter().for_each(Waker::wake);
            words.push((&self.ctl as *const AtomicU32 as usize, seen));
            let outcome =
                if waitv { futex::wait_many(&words, earliest, &mut buf) } else { futex::WaitMany::Unsupported };
            match outcome {
                futex::WaitMany::Woken(Some(i)) if i < keys.len() => self.fire(std::iter::once(keys[i])),
                futex::WaitMany::Woken(Some(_)) | futex::WaitMany::TimedOut => {}
                futex::WaitMany::Woken(None) | futex::WaitMany::Changed => self.probe(&words, &keys),
                futex::WaitMany::Unsupported => {
                    waitv = false;
                    futex::wait(&self.ctl, seen, Some(Duration::from_millis(1)));
                    self.probe(&words, &keys);
                }
            }
        }
    }

    /// Fires every registration in `keys` whose word (same index in `words`) moved.
    fn probe(&self, words: &[(usize, u32)], keys: &[(usize, u64)]) {
        let moved: Vec<(usize, u64)> =
            keys.iter().zip(words).filter(|(_, &(addr, val))| futex::changed(addr, val)).map(|(k, _)| *k).collect();
        if !moved.is_empty() {
            self.fire(moved.into_iter());
        }
    }
}

impl Registration {
    /// Still waiting? Then keep `waker` for the wake-up. `false`: the shard fired (or timed out) this
    /// registration, which is no longer in its list.
    fn refresh(&self, waker: &Waker) -> bool {
        let mut st = lock(&self.shard.state);
        match &mut st.slots[self.index] {
            Some(s) if s.gen == self.gen => {
                if !s.waker.will_wake(waker) {
                    s.waker = waker.clone();
                }
                true
            }
            _ => false,
        }
    }

    /// Leaves the shard's list, if still in it. The shard may still be asleep with our word in its
    /// kernel list: a later wake of it finds the slot gone (or reused, with a new generation) and does
    /// nothing.
    fn cancel(self) {
        let mut st = lock(&self.shard.state);
        if st.slots[self.index].as_ref().is_some_and(|s| s.gen == self.gen) {
            st.slots[self.index] = None;
            st.used -= 1;
        }
    }
}

/// The async counterpart of `wait::wait_for`: one waiting future's state over its polls. Dropping it
/// (a cancelled future) leaves the reactor and takes back its sleeper count.
pub(crate) struct AsyncWait<'a> {
    cell: &'a WaitCell,
    mark: Option<SleepMark<'a>>,
    asymmetric: bool,
    liveness: Duration,
    next_liveness: Option<Instant>,
    /// The cell's `seq` read by the announcement after which `gone` was last asked (see `wait_for`).
    checked_at: Option<u32>,
    /// Announced in `cell` (counted in `sleepers`).
    counted: bool,
    reg: Option<Registration>,
}

impl<'a> AsyncWait<'a> {
    /// A waiter on `cell` (with the endpoint's sleep mark, slot rings), for a ring in fence mode
    /// `asymmetric`, that asks whether the peer is alive every `liveness`.
    pub(crate) fn new(cell: &'a WaitCell, mark: Option<SleepMark<'a>>, asymmetric: bool, liveness: Duration) -> Self {
        AsyncWait { cell, mark, asymmetric, liveness, next_liveness: None, checked_at: None, counted: false, reg: None }
    }

    /// One poll: `attempt` is the non-blocking operation (it must complete the operation when it says
    /// `Ready`, and change nothing when `Pending`: that is what makes every future built on this
    /// cancel-safe); `gone` reports a dead or departed peer, asked before the future sleeps: the first
    /// time, after a wake-up that brought nothing, and once per liveness interval, as in `wait_for`
    /// (its error is returned after one last `attempt`).
    ///
    /// `ep` is what both need mutably (the endpoint, or its local state), passed to each in turn.
    pub(crate) fn poll<X: ?Sized, T, E>(
        &mut self,
        cx: &mut Context<'_>,
        ep: &mut X,
        mut attempt: impl FnMut(&mut X) -> Attempt<T, E>,
        mut gone: impl FnMut(&mut X) -> Option<E>,
    ) -> Poll<Result<T, E>> {
        if let Some(reg) = &self.reg {
            if reg.refresh(cx.waker()) {
                // Polled again before our word moved (a `select!` sibling woke the task): look anyway,
                // it is cheap, and stay registered if there is still nothing.
                if let Attempt::Ready(r) = attempt(ep) {
                    self.retire();
                    return Poll::Ready(r);
                }
                return Poll::Pending;
            }
            // Fired: our word moved, or the liveness deadline passed.
            self.retire();
        }
        if let Attempt::Ready(r) = attempt(ep) {
            return Poll::Ready(r);
        }
        let t = now();
        if self.next_liveness.is_none() {
            self.next_liveness = t.and_then(|t| t.checked_add(self.liveness));
        }
        let seq = self.cell.announce(self.mark, self.asymmetric);
        self.counted = true;
        if let Attempt::Ready(r) = attempt(ep) {
            self.retire();
            return Poll::Ready(r);
        }
        // After the announcement, as in `wait_for` (which explains why a clean close cannot be missed):
        // due, or woken since the last ask, or no clock (loom).
        let due = match (t, self.next_liveness) {
            (Some(t), Some(n)) => t >= n,
            _ => true,
        };
        if due || self.checked_at != Some(seq) {
            if let Some(e) = gone(ep) {
                self.retire();
                if let Attempt::Ready(r) = attempt(ep) {
                    return Poll::Ready(r);
                }
                return Poll::Ready(Err(e));
            }
            self.checked_at = Some(seq);
            self.next_liveness = t.and_then(|t| t.checked_add(self.liveness));
        }
        let addr = self.cell.seq_word() as *const AtomicU32 as usize;
        self.reg = Some(reactor().register(addr, seq, self.next_liveness, cx.waker().clone()));
        Poll::Pending
    }

    /// Leaves the reactor (if registered) and the cell's sleepers (if counted).
    fn retire(&mut self) {
        if let Some(reg) = self.reg.take() {
            reg.cancel();
        }
        if self.counted {
            self.counted = false;
            self.cell.retire(self.mark);
        }
    }
}

impl Drop for AsyncWait<'_> {
    fn drop(&mut self) {
        self.retire();
    }
}

/// How many reactor shards (threads) this process has started: one per [`SHARD_WORDS`] futures
/// waiting at the same time, at the peak. Diagnostics and tests.
pub fn reactor_threads() -> usize {
    lock(&reactor().shards).len()
}

/// Loom hook: runs the model's reactor (its first shard, created if needed) on the calling loom
/// thread until [`__loom_stop`]. The caller keeps every ring that a future registered alive until this
/// returns (the loom futex model reads the registered words directly).
#[cfg(ringwire_loom)]
#[doc(hidden)]
pub fn __loom_run() {
    let shard = {
        let mut shards = lock(&reactor().shards);
        if shards.is_empty() {
            shards.push(Arc::new(Shard::new()));
        }
        shards[0].clone()
    };
    shard.run();
}

/// Loom hook: stops [`__loom_run`].
#[cfg(ringwire_loom)]
#[doc(hidden)]
pub fn __loom_stop() {
    let shard = {
        let mut shards = lock(&reactor().shards);
        if shards.is_empty() {
            shards.push(Arc::new(Shard::new()));
        }
        shards[0].clone()
    };
    // Release: the reactor's Acquire load of `stop` (after `ctl`) sees it once it sees the bump below.
    shard.stop.store(1, Ordering::Release);
    shard.poke();
}
