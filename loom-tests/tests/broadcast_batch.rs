//! Model 12: the broadcast ring's buffered publication (`broadcast::WriteGuard::commit_buffered`,
//! `Publisher::send_buffered`, `flush`, `src/ring/broadcast.rs`). The publisher leaves the first
//! buffered slot's sequence odd ("being written"), publishes the slots after it one by one, and
//! publishes the batch with one Release store of the withheld sequence. Subscribers read positions in
//! order: they must never read past a withheld slot, must read every message of a published batch intact
//! and in order, must never be left waiting on a batch whose publisher waits for them (back-pressure),
//! and their stuck-slot recovery (at once under loom) must never skip a live publisher's withheld slot,
//! yet skip a dead one's.
//!
//! Rings of 4096 bytes cut into eight slots of 448 (`max_message` 400): a batch may hold up to half the
//! ring, four slots.
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;
use ringwire::broadcast::{self, HeapPublisher, HeapSubscriber, Mode, RecvError};
use ringwire::RingConfig;

fn ring(mode: Mode) -> (HeapPublisher, HeapSubscriber) {
    let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 400), mode).expect("valid config");
    tx.set_wait_strategy(ZERO_SPIN);
    rx.set_wait_strategy(ZERO_SPIN);
    tx.set_batch_bytes(usize::MAX);
    (tx, rx)
}

/// Polls until a message, `Lagged` or an error other than `Empty`.
fn poll(rx: &mut HeapSubscriber) -> Result<Vec<u8>, RecvError> {
    loop {
        match rx.try_recv_vec() {
            Err(RecvError::Empty) => loom::thread::yield_now(),
            r => return r,
        }
    }
}

/// Back-pressure, a blocking subscriber (zero spin): ten buffered sends through eight slots (two batches
/// published by the bound, the rest by the back-pressure wait or the drop) arrive whole and in order,
/// with no lost wake-up between a publisher waiting for space and a subscriber waiting for a batch.
/// Two threads, but long: one preemption (6 906 executions, 2 s); two passed once (3 542 195 executions,
/// 20 minutes), too long for every run.
#[test]
fn backpressure_batches_arrive_whole_and_in_order() {
    model("broadcast-batch/backpressure", Bound::AtMost(1), || {
        let (mut tx, mut rx) = ring(Mode::Backpressure);
        let p = loom::thread::spawn(move || {
            for id in 0..10u8 {
                tx.send_buffered(&payload(id, 16)).expect("send_buffered");
            }
            drop(tx);
        });
        for id in 0..10u8 {
            check(&rx.recv_vec().expect("recv"), id, 16);
        }
        p.join().unwrap();
        assert_eq!(rx.recovered().skipped, 0);
    });
}

/// A live publisher buffers two messages and flushes while the subscriber polls with its stuck check
/// on every poll: the subscriber gets both, in order, and skips nothing.
#[test]
fn a_live_publishers_withheld_slot_is_never_skipped() {
    model("broadcast-batch/live withheld", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = ring(Mode::Overwrite);
        let p = loom::thread::spawn(move || {
            tx.send_buffered(&payload(0, 24)).expect("send_buffered");
            tx.send_buffered(&payload(1, 40)).expect("send_buffered");
            tx.flush();
            tx
        });
        check(&poll(&mut rx).expect("first"), 0, 24);
        check(&poll(&mut rx).expect("second"), 1, 40);
        assert_eq!(rx.recovered().skipped, 0);
        let _tx = p.join().unwrap();
    });
}

/// A publisher that "dies" with a batch withheld (forgotten, its entry closed): the subscriber skips
/// the withheld first slot once it finds the owner gone, and reads the message published behind it.
#[test]
fn a_dead_publishers_withheld_slot_is_skipped_and_the_rest_delivered() {
    model("broadcast-batch/dead withheld", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = ring(Mode::Overwrite);
        let p = loom::thread::spawn(move || {
            tx.send_buffered(&payload(0, 24)).expect("send_buffered");
            tx.send_buffered(&payload(1, 40)).expect("send_buffered");
            tx.__forget_withheld();
            drop(tx);
        });
        check(&poll(&mut rx).expect("the message behind the withheld one"), 1, 40);
        assert_eq!(rx.recovered().skipped, 1);
        p.join().unwrap();
    });
}

/// Publisher A withholds a batch at position 0; publisher B fills positions 1-7 and its next `send`
/// (position 8, slot 0 again) finds A's slot still odd, so it sleeps (zero spin). A's `flush` must wake
/// it: B sleeps on `data_ready`, which every publication notifies. Overwrite mode, and back-pressure mode
/// with no subscriber left: in neither does any subscriber notify `space_ready`, where B slept before
/// (out its liveness interval: here, with no clock, a loom deadlock).
#[test]
fn a_flush_wakes_a_publisher_waiting_for_the_withheld_slot() {
    for mode in [Mode::Overwrite, Mode::Backpressure] {
        flush_wakes_a_later_lap(mode);
    }
}

fn flush_wakes_a_later_lap(mode: Mode) {
    model("broadcast-batch/flush wakes a later lap", Bound::AtLeast(4), move || {
        let (mut a, rx) = ring(mode);
        drop(rx);
        let mut b = a.clone_handle().unwrap();
        b.set_wait_strategy(ZERO_SPIN);
        a.send_buffered(&payload(0, 24)).expect("send_buffered");
        for id in 1..8 {
            b.try_send(&payload(id, 24)).expect("room up to A's slot");
        }
        let p = loom::thread::spawn(move || {
            b.send(&payload(8, 24)).expect("send, once A has published its slot");
            b
        });
        a.flush();
        let _b = p.join().unwrap();
        drop(a);
    });
}
