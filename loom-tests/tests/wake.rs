//! Model 4: the sleep/wake protocol of `wait.rs` (Dekker fences on `sleepers` and the condition, futex
//! on `seq`), in both directions, with one wake-up at stake each time. Blocking calls use Adaptive with
//! zero spin, which under loom goes straight to the futex sleep path; the futex model ignores time-outs,
//! so a missed wake-up is reported by loom as a deadlock. Each endpoint is handed back through `join`
//! so that no drop (which wakes the peer unconditionally) can hide a lost wake-up.
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;

/// Data direction: the consumer's blocking `recv` on an empty ring races one `try_send`. Whichever way
/// the announce (`sleepers += 1`, fence, re-check) and the commit (header store, fence, `sleepers` load)
/// interleave, the consumer gets the message.
#[test]
fn sleeping_recv_is_woken_by_send_no_lost_wakeup() {
    model("wake/data ready", Bound::Exhaustive, || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            tx.try_send(&payload(1, 40)).expect("try_send");
            tx
        });
        let c = loom::thread::spawn(move || {
            check(&rx.recv().expect("recv"), 1, 40);
            rx
        });
        let _rx = c.join().unwrap();
        let _tx = p.join().unwrap();
    });
}

/// Space direction: the ring is pre-filled so that m2 needs m0 released (see `wrap.rs`). The producer's
/// blocking `send` of m2 races the consumer's `try_recv` of m0, whose release publishes `head` and
/// notifies the space cell. Whichever way they interleave, the producer gets through; then everything
/// is read back intact.
#[test]
fn sleeping_send_is_woken_by_recv_no_lost_wakeup() {
    const LENS: [usize; 3] = [1500, 2000, 1200];
    model("wake/space ready", Bound::Exhaustive, || {
        let (mut tx, mut rx) = channel();
        tx.try_send(&payload(0, LENS[0])).expect("m0 fits");
        tx.try_send(&payload(1, LENS[1])).expect("m1 fits");
        assert_eq!(tx.try_send(&payload(2, LENS[2])), Err(ringwire::spsc::SendError::WouldBlock));
        let p = loom::thread::spawn(move || {
            tx.send(&payload(2, LENS[2])).expect("send");
            tx
        });
        let c = loom::thread::spawn(move || {
            check(&rx.try_recv().expect("m0 is committed"), 0, LENS[0]);
            rx
        });
        let mut rx = c.join().unwrap();
        let _tx = p.join().unwrap();
        check(&rx.try_recv().expect("m1"), 1, LENS[1]);
        check(&rx.try_recv().expect("m2"), 2, LENS[2]);
    });
}

/// Space direction through the consumer's *batched* head publication. m0 = [0, 1936), m1 = [1936, 2136)
/// (a 200-byte record, under the consumer's publication batch of capacity / 16 = 256 bytes). m2 (record
/// 2032) needs a PAD of 1960 and head >= 2040, i.e. m1 released: but releasing m1 does not publish
/// (batch not reached). Only the consumer's next poll, which finds the ring empty, publishes `head` and
/// notifies the space cell. The producer (blocking `send`) and the consumer (blocking `recv` of m0, m1,
/// m2) may both sleep; a lost wake-up, or a consumer that sleeps without publishing, is a deadlock.
#[test]
fn sleeping_send_is_woken_by_head_published_when_consumer_finds_ring_empty() {
    const LENS: [usize; 3] = [1928, 192, 2024];
    assert_eq!((record_len(LENS[0]), record_len(LENS[1])), (1936, 200));
    model("wake/space ready via publish-on-empty", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = channel();
        tx.try_send(&payload(0, LENS[0])).expect("m0 fits");
        tx.try_send(&payload(1, LENS[1])).expect("m1 fits");
        assert_eq!(tx.try_send(&payload(2, LENS[2])), Err(ringwire::spsc::SendError::WouldBlock));
        let p = loom::thread::spawn(move || {
            tx.send(&payload(2, LENS[2])).expect("send");
            tx
        });
        let c = loom::thread::spawn(move || {
            for (i, len) in LENS.into_iter().enumerate() {
                check(&rx.recv().expect("recv"), i as u8, len);
            }
            rx
        });
        let _rx = c.join().unwrap();
        let _tx = p.join().unwrap();
    });
}
