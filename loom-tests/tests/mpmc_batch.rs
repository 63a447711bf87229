//! Model 9: the MPMC ring's buffered publication (`mpmc::WriteGuard::commit_buffered`,
//! `Producer::send_buffered`, `flush`, `src/ring/mpmc.rs`). The producer withholds the sequence of the
//! first buffered slot (it keeps saying "claimed"), publishes the slots after it one by one, and
//! publishes the batch with one Release store of the withheld sequence. Consumers take positions in
//! order, so they must never take a withheld message or one behind it, must get every message of a
//! published batch intact and in order, must never be left waiting on a batch whose producer itself
//! waits for space, and their stuck-slot recovery (which under loom runs at once, see `mpmc.rs`) must
//! never skip a live producer's withheld slot, yet skip a dead one's.
//!
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;
use ringwire::mpmc::{self, HeapConsumer, HeapProducer, RecvError};
use ringwire::RingConfig;

/// 4096 bytes cut into two slots of 2048.
fn queue() -> (HeapProducer, HeapConsumer) {
    let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 2000)).expect("valid config");
    tx.set_wait_strategy(ZERO_SPIN);
    rx.set_wait_strategy(ZERO_SPIN);
    (tx, rx)
}

const LENS: [usize; 3] = [24, 40, 16];

/// Three buffered sends into the two-slot ring with no batch bound: the first is withheld, the second
/// published behind it, and the third finds no free slot, so the producer publishes the batch before it
/// sleeps for space (else both sides would wait for ever: a loom deadlock); the drop publishes the third.
/// The consumer (blocking, zero spin) gets all three in order and intact, and then, after the join,
/// `PeerGone` (a close waking a blocked consumer is `mpmc.rs`'s
/// `producer_drop_wakes_a_sleeping_consumer_with_peer_gone`; here it would only grow the model).
#[test]
fn a_full_ring_publishes_the_batch_before_waiting_and_the_drop_publishes_the_rest() {
    model("mpmc-batch/full ring+drop", Bound::Env, || {
        let (mut tx, mut rx) = queue();
        tx.set_batch_bytes(usize::MAX);
        let p = loom::thread::spawn(move || {
            for (i, len) in LENS.into_iter().enumerate() {
                tx.send_buffered(&payload(i as u8, len)).expect("send_buffered");
            }
            drop(tx);
        });
        for (i, len) in LENS.into_iter().enumerate() {
            check(&rx.recv().expect("recv"), i as u8, len);
        }
        p.join().unwrap();
        assert!(matches!(rx.try_recv().map(|m| m.len()), Err(RecvError::PeerGone)));
        assert_eq!(rx.recovered().skipped, 0);
    });
}

/// A live producer buffers two messages and flushes while a consumer polls (`try_recv`), its stuck
/// check asking at every poll whether the withheld slot's owner is alive: whatever the interleaving,
/// the consumer sees nothing or a prefix starting with the first message, gets both, and skips nothing.
#[test]
fn a_live_producers_withheld_slot_is_never_skipped() {
    model("mpmc-batch/live withheld", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = queue();
        tx.set_batch_bytes(usize::MAX);
        let p = loom::thread::spawn(move || {
            tx.send_buffered(&payload(0, LENS[0])).expect("send_buffered");
            tx.send_buffered(&payload(1, LENS[1])).expect("send_buffered");
            tx.flush();
            tx
        });
        for (i, len) in LENS.into_iter().take(2).enumerate() {
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        check(&m, i as u8, len);
                        break;
                    }
                    Err(RecvError::Empty) => loom::thread::yield_now(),
                    Err(e) => panic!("try_recv: {e}"),
                }
            }
        }
        assert_eq!(rx.recovered().skipped, 0);
        let _tx = p.join().unwrap();
    });
}

/// A producer that dies with a batch withheld (its batch forgotten, its entry closed: what a killed
/// process looks like in one process) while the consumer polls: the consumer skips the withheld first
/// slot once it finds the owner gone, and gets the message published behind it.
#[test]
fn a_dead_producers_withheld_slot_is_skipped_and_the_rest_delivered() {
    model("mpmc-batch/dead withheld", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = queue();
        tx.set_batch_bytes(usize::MAX);
        let p = loom::thread::spawn(move || {
            tx.send_buffered(&payload(0, LENS[0])).expect("send_buffered");
            tx.send_buffered(&payload(1, LENS[1])).expect("send_buffered");
            tx.__forget_withheld();
            drop(tx);
        });
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    check(&m, 1, LENS[1]);
                    break;
                }
                Err(RecvError::Empty) => loom::thread::yield_now(),
                Err(e) => panic!("try_recv: {e}"),
            }
        }
        assert_eq!(rx.recovered().skipped, 1);
        p.join().unwrap();
    });
}
