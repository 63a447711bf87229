//! Model 1: messages pushed by one thread come out of the other in order, with exact content, and no
//! wake-up of a sleeping consumer or producer is lost.
//!
//! Each thread hands its endpoint back through `join`, so neither end is dropped (which would wake the
//! peer unconditionally) until both threads are done: a lost wake-up is a loom deadlock.
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;

const LENS: [usize; 3] = [5, 16, 29];

/// Three small messages sent with `try_send` (yielding to the scheduler on Full) are received with
/// blocking `recv` (Adaptive, zero spin: the consumer sleeps on the futex) in order and intact.
#[test]
fn try_send_then_blocking_recv_delivers_in_order_with_exact_content() {
    model("push_pop/try_send+recv", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            for (i, len) in LENS.into_iter().enumerate() {
                try_send_spin(&mut tx, &payload(i as u8, len));
            }
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

/// The zero-copy path: blocking `reserve` of more than is written, then `commit_len` with a shorter
/// length (which moves the terminator back), received with blocking `recv_into` (both Adaptive, zero
/// spin). The consumer must stop at the moved terminator and see each message exactly.
#[test]
fn reserve_commit_len_shrunk_records_received_in_order_with_exact_content() {
    model("push_pop/reserve+commit_len", Bound::AtLeast(3), || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            for (i, len) in LENS.into_iter().enumerate() {
                let mut slot = tx.reserve(len + 24).expect("reserve");
                slot[..len].copy_from_slice(&payload(i as u8, len));
                slot.commit_len(len);
            }
            tx
        });
        let c = loom::thread::spawn(move || {
            let mut buf = [0u8; 64];
            for (i, len) in LENS.into_iter().enumerate() {
                let n = rx.recv_into(&mut buf).expect("recv_into");
                check(&buf[..n], i as u8, len);
            }
            rx
        });
        let _rx = c.join().unwrap();
        let _tx = p.join().unwrap();
    });
}
