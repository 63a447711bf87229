//! The synchronisation facade.
//!
//! Every atomic, fence, spin hint and futex call in the crate goes through this module. Built normally it
//! re-exports `std`'s atomics and calls the Linux futex; built with `RUSTFLAGS="--cfg ringwire_loom"` it
//! swaps in [loom](https://docs.rs/loom)'s atomics and models the futex with a loom `Mutex` + `Condvar`,
//! so that `loom-tests/` model-checks the production ring code, not a copy of it.
//!
//! `scripts/test-all.sh` refuses `std::sync::atomic` anywhere else in the library.

#[cfg(not(ringwire_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(ringwire_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// The mutex of the async reactor (`crate::reactor`): std's, or loom's under loom.
#[cfg(all(feature = "tokio", not(ringwire_loom)))]
pub(crate) use std::sync::Mutex;

#[cfg(all(feature = "tokio", ringwire_loom))]
pub(crate) use loom::sync::Mutex;

use std::time::Instant;

/// One step of a busy wait: a CPU pause hint (`pause` on x86), or a scheduler yield under loom so that
/// the model checker can run the thread we are waiting for.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(not(ringwire_loom))]
    std::hint::spin_loop();
    #[cfg(ringwire_loom)]
    loom::thread::yield_now();
}

/// A hint that this thread is about to write the cache line holding `p`: `prefetchw` on x86_64, which
/// starts fetching the line in the exclusive state now, so that the stores that come a few messages
/// later find it owned instead of stalling on the transfer from the reader's cache. Nothing elsewhere
/// (and under loom). Never faults, whatever `p` is; callers still pass an address inside their data
/// area.
#[inline(always)]
pub(crate) fn prefetch_write(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(ringwire_loom)))]
    // SAFETY: a prefetch reads no memory architecturally and can't fault (x86: an invalid address is
    // ignored); on CPUs without PREFETCHW the opcode is a NOP. It changes no register or flag.
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(all(target_arch = "x86_64", not(ringwire_loom))))]
    let _ = p;
}

/// The light half of an asymmetric barrier pair, used by the notifying side of the sleep/wake protocol
/// on every publication. With `asymmetric` it is only a compiler fence (free at run time): the rare
/// sleeping side pays instead, with [`heavy_barrier`]. Without it, a full `fence(SeqCst)`.
#[inline(always)]
pub(crate) fn light_barrier(asymmetric: bool) {
    #[cfg(not(ringwire_loom))]
    if asymmetric {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
    // loom has no asymmetric barriers: it checks the protocol with a full fence on both sides.
    #[cfg(ringwire_loom)]
    {
        let _ = asymmetric;
        fence(Ordering::SeqCst);
    }
}

/// The heavy half: a full fence here and, with `asymmetric`, `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`,
/// which makes every thread of every registered process (each ringwire endpoint registers, see
/// [`asymmetric_barrier_available`]) execute a full memory barrier before it returns. Any light barrier
/// on another CPU is then either entirely before that point (its earlier stores are visible to us) or
/// entirely after it (its later loads see our earlier stores) — the same guarantee a pair of SeqCst
/// fences gives, with the cost moved to this side.
#[cold]
pub(crate) fn heavy_barrier(asymmetric: bool) {
    fence(Ordering::SeqCst);
    #[cfg(not(ringwire_loom))]
    if asymmetric {
        // SAFETY: membarrier takes no pointers. It cannot fail once registration succeeded (checked by
        // `asymmetric_barrier_available` before any endpoint runs the asymmetric protocol).
        let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) };
        debug_assert_eq!(r, 0, "membarrier failed after successful registration");
    }
    #[cfg(ringwire_loom)]
    let _ = asymmetric;
}

#[cfg(not(ringwire_loom))]
const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
#[cfg(not(ringwire_loom))]
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
#[cfg(not(ringwire_loom))]
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// Registers this process for expedited global membarriers (once) and says whether that worked: a kernel
/// older than 4.16, or a seccomp filter, makes it fail, and then endpoints must use symmetric fences.
pub(crate) fn asymmetric_barrier_available() -> bool {
    #[cfg(not(ringwire_loom))]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            // SAFETY: membarrier takes no pointers; QUERY returns a bitmask of supported commands or -1.
            let supported = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
            let needed = (MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) as libc::c_long;
            // SAFETY: as above; registration affects only this process.
            supported >= 0
                && supported & needed == needed
                && unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) } == 0
        })
    }
    #[cfg(ringwire_loom)]
    true
}

/// Give up the CPU to another runnable thread (used by the spin-then-yield strategy).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(ringwire_loom))]
    std::thread::yield_now();
    #[cfg(ringwire_loom)]
    loom::thread::yield_now();
}

/// Sleeps for `d` (a back-off between checks of a condition nobody signals); under loom, a yield.
#[inline]
pub(crate) fn pause(d: std::time::Duration) {
    #[cfg(not(ringwire_loom))]
    std::thread::sleep(d);
    #[cfg(ringwire_loom)]
    {
        let _ = d;
        loom::thread::yield_now();
    }
}

/// The current time, or `None` under loom (which has no clock: every wait is untimed there, so a lost
/// wake-up shows up as a deadlock instead of a time-out).
#[inline]
pub(crate) fn now() -> Option<Instant> {
    #[cfg(not(ringwire_loom))]
    return Some(Instant::now());
    #[cfg(ringwire_loom)]
    return None;
}

#[cfg(not(ringwire_loom))]
pub(crate) mod futex {
    //! Linux futex on a *shared* (non-private) word, so that waiter and waker may live in different
    //! processes that map the same page.
    use super::AtomicU32;
    use std::time::Duration;

    /// Sleeps while `*word == expected`, for at most `timeout`. Returns on wake-up, time-out, signal, or
    /// at once when the word already differs (the kernel compares under its own lock, which is what makes
    /// the check-then-sleep atomic with respect to [`wake_all`]).
    pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a valid, aligned u32 for the duration of the call (we hold a reference to it);
        // FUTEX_WAIT only reads it. `ts_ptr` is null or points at a live timespec. Every outcome (0,
        // EAGAIN, ETIMEDOUT, EINTR) is fine for the caller, which re-checks its condition in a loop.
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, 0usize, 0u32);
        }
    }

    /// Wakes every thread of every process sleeping in [`wait`] on `word`.
    pub(crate) fn wake_all(word: &AtomicU32) {
        // SAFETY: `word` is a valid aligned u32; FUTEX_WAKE does not access user memory beyond its address.
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0usize, 0usize, 0u32);
        }
    }

    /// How a [`wait_many`] ended.
    #[cfg(feature = "tokio")]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum WaitMany {
        /// Woken through the word at this index (others may have changed too: their wakes are lost,
        /// but their values differ, so the next `wait_many` returns `Changed`). `None`: some word.
        Woken(Option<usize>),
        /// A word already differed from its expected value (or could not be read): look at each.
        Changed,
        /// The deadline passed, or a signal interrupted the wait.
        TimedOut,
        /// The kernel has no `futex_waitv` (Linux < 5.16), or refused the call.
        Unsupported,
    }

    /// One entry of `futex_waitv`'s array (`struct futex_waitv`, include/uapi/linux/futex.h).
    #[cfg(feature = "tokio")]
    #[repr(C)]
    pub(crate) struct Waitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }

    /// `futex_waitv`'s limit on the number of words (`FUTEX_WAITV_MAX`).
    #[cfg(feature = "tokio")]
    pub(crate) const WAITV_MAX: usize = 128;

    /// Sleeps until one of `words` (address, expected value) is woken, one already differs, or
    /// `deadline` passes: `futex_waitv` (Linux 5.16) on shared 32-bit futexes, the same keys
    /// [`wake_all`] wakes. `buf` is the caller's reusable array. The addresses are only handed to
    /// the kernel, never dereferenced here, so a word whose memory went away meanwhile makes the call
    /// fail (`Changed`), not this process.
    #[cfg(feature = "tokio")]
    pub(crate) fn wait_many(
        words: &[(usize, u32)],
        deadline: Option<std::time::Instant>,
        buf: &mut Vec<Waitv>,
    ) -> WaitMany {
        const FUTEX2_SIZE_U32: u32 = 0x02;
        debug_assert!(words.len() <= WAITV_MAX);
        buf.clear();
        buf.extend(words.iter().map(|&(addr, val)| Waitv {
            val: val as u64,
            uaddr: addr as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        }));
        // futex_waitv takes an absolute CLOCK_MONOTONIC time, the clock `Instant` reads on Linux.
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(std::time::Instant::now());
            let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
            let nsec = now.tv_nsec as u64 + left.subsec_nanos() as u64;
            libc::timespec {
                tv_sec: now.tv_sec.saturating_add(
                    left.as_secs().min(i32::MAX as u64) as libc::time_t + (nsec / 1_000_000_000) as libc::time_t,
                ),
                tv_nsec: (nsec % 1_000_000_000) as libc::c_long,
            }
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `buf` holds `buf.len()` initialised `struct futex_waitv`s (repr(C), reserved zero) for
        // the duration of the call; the kernel reads each `uaddr` itself and reports a bad one as
        // EFAULT. `ts_ptr` is null or points at a live timespec.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex_waitv,
                buf.as_ptr(),
                buf.len() as libc::c_uint,
                0u32,
                ts_ptr,
                libc::CLOCK_MONOTONIC,
            )
        };
        if r >= 0 {
            return WaitMany::Woken(Some(r as usize));
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EFAULT) => WaitMany::Changed,
            Some(libc::ETIMEDOUT) | Some(libc::EINTR) => WaitMany::TimedOut,
            _ => WaitMany::Unsupported,
        }
    }

    /// Whether the word at `addr` no longer holds `expected` (or can't be read any more). The kernel
    /// reads it (FUTEX_WAIT with a zero time-out: EAGAIN when it differs, ETIMEDOUT when it doesn't),
    /// so an address whose memory went away is an error code here, never a fault.
    #[cfg(feature = "tokio")]
    pub(crate) fn changed(addr: usize, expected: u32) -> bool {
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: the kernel validates `addr` (EFAULT if unmapped) and only reads it; `zero` is a live
        // timespec.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                addr,
                libc::FUTEX_WAIT,
                expected,
                &zero as *const libc::timespec,
                0usize,
                0u32,
            )
        };
        r != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ETIMEDOUT)
    }
}

#[cfg(ringwire_loom)]
pub(crate) mod futex {
    //! The futex, modelled for loom: one global mutex + condvar. `wait` re-checks the word under the
    //! mutex and `wake_all` takes the mutex before notifying, which gives the same atomicity the kernel
    //! gives FUTEX_WAIT/FUTEX_WAKE. Time-outs are ignored, so a missed wake-up is a loom deadlock.
    use super::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};
    use std::time::Duration;

    loom::lazy_static! {
        static ref LOCK: Mutex<()> = Mutex::new(());
        static ref COND: Condvar = Condvar::new();
    }

    pub(crate) fn wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
        let guard = LOCK.lock().unwrap();
        if word.load(Ordering::SeqCst) == expected {
            drop(COND.wait(guard).unwrap());
        }
    }

    pub(crate) fn wake_all(_word: &AtomicU32) {
        let _guard = LOCK.lock().unwrap();
        COND.notify_all();
    }

    /// As the production `WaitMany` (the model never times out).
    #[cfg(feature = "tokio")]
    #[allow(dead_code)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum WaitMany {
        Woken(Option<usize>),
        Changed,
        TimedOut,
        Unsupported,
    }

    /// Unused under loom (the model keeps no array).
    #[cfg(feature = "tokio")]
    pub(crate) struct Waitv;

    #[cfg(feature = "tokio")]
    pub(crate) const WAITV_MAX: usize = 128;

    /// `futex_waitv`, modelled like [`wait`]: under the one mutex, sleep if every word still holds its
    /// expected value; a wake of any word wakes us (`Woken(None)`: the caller looks at each).
    #[cfg(feature = "tokio")]
    pub(crate) fn wait_many(
        words: &[(usize, u32)],
        _deadline: Option<std::time::Instant>,
        _buf: &mut Vec<Waitv>,
    ) -> WaitMany {
        let guard = LOCK.lock().unwrap();
        if words.iter().any(|&(addr, val)| load(addr) != val) {
            return WaitMany::Changed;
        }
        drop(COND.wait(guard).unwrap());
        WaitMany::Woken(None)
    }

    /// Whether the word at `addr` no longer holds `expected`.
    #[cfg(feature = "tokio")]
    pub(crate) fn changed(addr: usize, expected: u32) -> bool {
        load(addr) != expected
    }

    #[cfg(feature = "tokio")]
    fn load(addr: usize) -> u32 {
        // SAFETY: under loom the addresses are those of wait cells (and the reactor's own word) in rings
        // the models keep alive until the reactor has stopped (`reactor::__loom_run`'s contract).
        unsafe { &*(addr as *const AtomicU32) }.load(Ordering::SeqCst)
    }
}
