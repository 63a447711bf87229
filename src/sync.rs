//! The synchronisation facade.
//!
//! Every atomic, fence, spin hint and futex call in the crate goes through this module. Built normally it
//! re-exports `std`'s atomics and calls the Linux futex; built with `RUSTFLAGS="--cfg ringwire_loom"` it
//! swaps in [loom](https://docs.rs/loom)'s atomics and models the futex with a loom `Mutex` + `Condvar`,
//! so that `loom-tests/` model-checks the production ring code, not a copy of it.
//!
//! `clippy.toml` forbids `std::sync::atomic` types outside this module.

#[cfg(not(ringwire_loom))]
#[allow(clippy::disallowed_types)]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(ringwire_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

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

/// Give up the CPU to another runnable thread (used by the spin-then-yield strategy).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(ringwire_loom))]
    std::thread::yield_now();
    #[cfg(ringwire_loom)]
    loom::thread::yield_now();
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
}
