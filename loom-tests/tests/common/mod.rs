//! Shared helpers for the loom models. Every model drives the production ring through its public API
//! (`ringwire::spsc::channel`); built with `--cfg ringwire_loom`, its atomics, futex and heap storage are
//! loom's (see `src/sync.rs` and `src/ring/heap.rs`).
#![allow(dead_code)]

use ringwire::ring::heap::HeapStorage;
use ringwire::spsc::{Consumer, Producer};
use ringwire::{RingConfig, WaitStrategy};
use std::sync::Arc;
use std::time::Duration;

pub type Tx = Producer<Arc<HeapStorage>>;
pub type Rx = Consumer<Arc<HeapStorage>>;

/// The smallest ring loom accepts, with the largest message it allows: a record is at most ~half the
/// ring, so three big messages force a pad + wrap and two fill it.
pub const CAPACITY: usize = 4096;
pub const MAX_MESSAGE: usize = 2024;

/// Adaptive with no spin: under loom (no clock) every blocking call goes straight to the futex sleep
/// path, which is the protocol under test.
pub const ZERO_SPIN: WaitStrategy = WaitStrategy::Adaptive { spin: Duration::ZERO };

/// A fresh heap ring of `CAPACITY` bytes with both ends set to [`ZERO_SPIN`].
pub fn channel() -> (Tx, Rx) {
    let (mut tx, mut rx) = ringwire::spsc::channel(RingConfig::new(CAPACITY, MAX_MESSAGE)).expect("valid config");
    tx.set_wait_strategy(ZERO_SPIN);
    rx.set_wait_strategy(ZERO_SPIN);
    (tx, rx)
}

/// Ring bytes taken by a message of `len` payload bytes (8-byte header, padded to 8).
pub const fn record_len(len: usize) -> usize {
    (8 + len + 7) & !7
}

/// The content of message number `id` (`len` bytes): distinct for every id and position, so a message
/// read from the wrong place, too early, or half-overwritten fails the comparison.
pub fn payload(id: u8, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j as u8).wrapping_mul(7).wrapping_add(id.wrapping_mul(61)) ^ ((j >> 8) as u8) ^ 0xa5).collect()
}

/// Asserts that `got` is exactly message `id` of length `len`.
#[track_caller]
pub fn check(got: &[u8], id: u8, len: usize) {
    assert_eq!(got.len(), len, "message {id}: wrong length");
    let want = payload(id, len);
    if let Some(i) = (0..len).find(|&i| got[i] != want[i]) {
        panic!("message {id}: byte {i} is {:#04x}, expected {:#04x}", got[i], want[i]);
    }
}

/// Sends with `try_send`, yielding to loom's scheduler while the ring is full.
pub fn try_send_spin(tx: &mut Tx, msg: &[u8]) {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return,
            Err(ringwire::spsc::SendError::WouldBlock) => loom::thread::yield_now(),
            Err(e) => panic!("try_send: {e}"),
        }
    }
}

/// How many preemptions loom may insert in one execution of a model.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    /// No bound: loom explores every interleaving (for the small models, where that takes < 1 s).
    Exhaustive,
    /// `LOOM_MAX_PREEMPTIONS` (2 by default in `run.sh`), raised to at least this many.
    AtLeast(usize),
    /// `LOOM_MAX_PREEMPTIONS` as set (2 by default in `run.sh`, and 2 if unset): for the models too big
    /// for more.
    Env,
    /// `LOOM_MAX_PREEMPTIONS`, lowered to at most this many: for models with four or more threads,
    /// where each extra preemption multiplies the executions by ~100.
    AtMost(usize),
}

/// `loom::model(f)`, with the preemption bound chosen by `bound`, and a count of the executions
/// explored (`./run.sh -- --nocapture` shows it). Like `loom::model`, `LOOM_LOG=trace` logs each
/// execution; `LOOM_LOCATION=1` adds source locations to loom's reports.
// The execution counter is a std atomic on purpose: it counts across loom's executions, outside the model.
#[allow(clippy::disallowed_types)]
pub fn model<F>(name: &str, bound: Bound, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = match bound {
        Bound::Exhaustive => None,
        Bound::AtLeast(n) => Some(builder.preemption_bound.map_or(n, |env| env.max(n))),
        Bound::Env => builder.preemption_bound.or(Some(2)),
        Bound::AtMost(n) => Some(builder.preemption_bound.map_or(n, |env| env.min(n))),
    };
    let chosen = builder.preemption_bound;
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = std::time::Instant::now();
    let subscriber = tracing_subscriber::fmt::Subscriber::builder()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("LOOM_LOG"))
        .with_test_writer()
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        builder.check(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            f();
        })
    });
    let bound = chosen.map_or("none (exhaustive)".to_string(), |b| b.to_string());
    eprintln!(
        "{name}: {} executions in {:.1?}, preemption bound {bound}",
        runs.load(Ordering::Relaxed),
        start.elapsed()
    );
}
