//! Model 2: wrap-around. Sizes are chosen (capacity 4096, see `common`) so that the third message does
//! not fit before the end of the data area: the producer writes a PAD record, zeroes offset 0 and wraps,
//! while the consumer may still be reading the second message. The producer can only do so once the
//! consumer has published a head past the first message.
//!
//! Endpoints are handed back through `join`, so no drop can mask a lost wake-up (it would deadlock).
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;
use ringwire::spsc::RecvError;

/// m0 = [0, 1208), m1 = [1208, 3216); m2 (record 1008) does not fit in the 880 bytes left, so PAD at
/// 3216 and m2 at [0, 1008), which needs m0 released (head >= 1016) but not m1.
const WRAP_LENS: [usize; 3] = [1200, 2000, 1000];

/// The producer sends with `try_send`, yielding while full; the consumer receives with blocking
/// `recv` (zero spin). The PAD + wrap to offset 0 races the consumer's read of m1, and the consumer
/// must skip the PAD and find m2 at offset 0 intact.
#[test]
fn pad_and_wrap_to_offset_zero_while_consumer_reads_previous_record() {
    assert!(record_len(WRAP_LENS[0]) + record_len(WRAP_LENS[1]) + record_len(WRAP_LENS[2]) > CAPACITY);
    model("wrap/pad+wrap", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            for (i, len) in WRAP_LENS.into_iter().enumerate() {
                try_send_spin(&mut tx, &payload(i as u8, len));
            }
            tx
        });
        let c = loom::thread::spawn(move || {
            for (i, len) in WRAP_LENS.into_iter().enumerate() {
                check(&rx.recv().expect("recv"), i as u8, len);
            }
            // Past m2 the consumer must find the terminator the producer zeroed after it (the bytes
            // there are m0's old payload), not a stale or scribbled header.
            assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
            rx
        });
        let _rx = c.join().unwrap();
        let _tx = p.join().unwrap();
    });
}

/// m0 = [0, 1512), m1 = [1512, 3520); m2 (record 1208) needs a PAD of 576 and head >= 1216: the ring is
/// full for m2 until the consumer has released m0 and published its head.
const FULL_LENS: [usize; 3] = [1500, 2000, 1200];

/// The producer's blocking `send` (Adaptive, zero spin) of m2 finds the ring full and sleeps on the
/// space cell; only the consumer's head publication (with its `notify`) can wake it. The consumer's
/// blocking `recv` sleeps on the data cell in turn. A lost wake-up on either side is a deadlock.
#[test]
fn blocked_send_on_full_ring_is_woken_by_head_publication_then_wraps() {
    assert!(record_len(FULL_LENS[0]) + record_len(FULL_LENS[1]) + record_len(FULL_LENS[2]) > CAPACITY);
    model("wrap/full+blocking send", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            for (i, len) in FULL_LENS.into_iter().enumerate() {
                tx.send(&payload(i as u8, len)).expect("send");
            }
            tx
        });
        let c = loom::thread::spawn(move || {
            for (i, len) in FULL_LENS.into_iter().enumerate() {
                check(&rx.recv().expect("recv"), i as u8, len);
            }
            // Past m2 the consumer must find the terminator the producer zeroed after it (the bytes
            // there are m0's old payload), not a stale or scribbled header.
            assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
            rx
        });
        let _rx = c.join().unwrap();
        let _tx = p.join().unwrap();
    });
}
