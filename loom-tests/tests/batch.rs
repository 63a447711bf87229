//! Model 8: buffered publication (`WriteGuard::commit_buffered`, `Producer::send_buffered`, `flush`).
//! The producer withholds the first buffered record's header (its slot keeps reading zero, the
//! previous record's terminator), stores the headers of the records after it with Relaxed, and
//! publishes the whole batch with one Release store of the withheld header. The consumer must never see
//! a withheld record, must see every record of a published batch intact and in order, and must never
//! be left waiting on a batch the producer withholds while itself waiting for space.
//!
//! Endpoints are handed back through `join` where a drop would wake the peer unconditionally.
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;
use ringwire::spsc::RecvError;

const LENS: [usize; 3] = [5, 16, 29];

/// Three buffered sends and a flush: the consumer (blocking `recv`, zero spin) gets all three, in
/// order and intact, and nothing before the flush (it checks that nothing is there while the producer
/// says it still withholds them).
#[test]
fn a_flushed_batch_arrives_whole_and_in_order() {
    model("batch/send_buffered+flush", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            for (i, len) in LENS.into_iter().enumerate() {
                tx.send_buffered(&payload(i as u8, len)).expect("send_buffered");
            }
            assert_eq!(tx.buffered_bytes(), LENS.iter().map(|&l| record_len(l)).sum::<usize>());
            tx.flush();
            assert_eq!(tx.buffered_bytes(), 0);
            tx
        });
        let c = loom::thread::spawn(move || {
            for (i, len) in LENS.into_iter().enumerate() {
                check(&rx.recv().expect("recv"), i as u8, len);
            }
            assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
            rx
        });
        let _rx = c.join().unwrap();
        let _tx = p.join().unwrap();
    });
}

/// Nothing of a withheld batch is visible: the consumer polls while the producer buffers two records
/// and then commits a third plainly (which publishes all three); whatever the consumer sees is a prefix
/// of the three that starts with the first: never the second or third alone.
#[test]
fn a_plain_commit_publishes_the_batch_before_it() {
    model("batch/buffered+plain commit", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            tx.send_buffered(&payload(0, LENS[0])).expect("send_buffered");
            tx.send_buffered(&payload(1, LENS[1])).expect("send_buffered");
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

/// A batch that fills the ring: m0 and m1 are withheld, m2 does not fit (PAD and wrap to offset 0,
/// see `wrap.rs`), so the producer's reservation publishes m0 and m1 before it sleeps for space (else
/// both would wait for ever: a loom deadlock), writes the PAD and m2 (withheld again) once the consumer
/// has released m0, and the drop publishes m2 before CLOSED.
#[test]
fn a_full_ring_publishes_the_batch_before_waiting_and_the_drop_publishes_the_rest() {
    const WRAP_LENS: [usize; 3] = [1200, 2000, 1000];
    model("batch/full ring+wrap+drop", Bound::AtLeast(2), || {
        let (mut tx, mut rx) = channel();
        tx.set_batch_bytes(CAPACITY);
        let p = loom::thread::spawn(move || {
            for (i, len) in WRAP_LENS.into_iter().enumerate() {
                tx.send_buffered(&payload(i as u8, len)).expect("send_buffered");
            }
            drop(tx);
        });
        let c = loom::thread::spawn(move || {
            for (i, len) in WRAP_LENS.into_iter().enumerate() {
                check(&rx.recv().expect("recv"), i as u8, len);
            }
            assert!(matches!(rx.recv().map(|m| m.len()), Err(RecvError::PeerGone)));
            rx
        });
        let _rx = c.join().unwrap();
        p.join().unwrap();
    });
}

/// The batch bound publishes by itself: with a bound of one small record and a byte, the second
/// buffered send publishes the first two without a flush (a record of 16 bytes is withheld, two reach
/// the bound), and the consumer can take them while the third (16 bytes again) is still withheld.
#[test]
fn the_batch_bound_publishes_without_a_flush() {
    const BOUND_LENS: [usize; 3] = [5, 16, 5];
    model("batch/bound", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = channel();
        tx.set_batch_bytes(record_len(BOUND_LENS[0]) + 1);
        let p = loom::thread::spawn(move || {
            for (i, len) in BOUND_LENS.into_iter().enumerate() {
                tx.send_buffered(&payload(i as u8, len)).expect("send_buffered");
            }
            tx
        });
        let c = loom::thread::spawn(move || {
            for (i, len) in BOUND_LENS.into_iter().take(2).enumerate() {
                check(&rx.recv().expect("recv"), i as u8, len);
            }
            rx
        });
        let mut rx = c.join().unwrap();
        let mut tx = p.join().unwrap();
        assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
        assert_eq!(tx.buffered_bytes(), record_len(BOUND_LENS[2]));
        tx.flush();
        check(&rx.try_recv().expect("the third after the flush"), 2, BOUND_LENS[2]);
    });
}
