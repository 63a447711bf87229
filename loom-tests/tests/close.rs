//! Model 3: closing. A producer that sends and then drops its end delivers everything before the
//! consumer sees `RecvError::PeerGone`; a consumer that drops its end while the producer is blocked on a
//! full ring wakes it with `SendError::PeerGone`.
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;
use ringwire::spsc::{RecvError, SendError};

/// m0, m1, m2 with a PAD + wrap before m2 (see `wrap.rs`), then the producer drops its end.
const LENS: [usize; 3] = [1200, 2000, 1000];

/// The producer sends three messages (blocking, zero spin; the third must wait for space and wraps)
/// and drops its end. The consumer's blocking `recv` (zero spin) gets all three, intact and in order,
/// and only then `PeerGone`, every time it asks after that: "closed and empty" must mean drained, however
/// the CLOSED store and the futex wake of the drop interleave with the consumer's last polls and sleep.
#[test]
fn producer_drop_after_sends_delivers_everything_then_closed() {
    model("close/producer drop", Bound::Env, || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            for (i, len) in LENS.into_iter().enumerate() {
                tx.send(&payload(i as u8, len)).expect("send");
            }
            drop(tx);
        });
        for (i, len) in LENS.into_iter().enumerate() {
            check(&rx.recv().expect("recv"), i as u8, len);
        }
        assert_eq!(rx.recv().map(|m| m.len()), Err(RecvError::PeerGone));
        assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::PeerGone));
        p.join().unwrap();
    });
}

/// The producer drops right after a single small send; a consumer asleep in `recv` must be woken and
/// get the message, then `PeerGone` (never `PeerGone` first, never a hang).
#[test]
fn producer_drop_wakes_sleeping_consumer_after_last_message() {
    model("close/producer drop wakes sleeper", Bound::AtLeast(4), || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            tx.try_send(&payload(7, 24)).expect("try_send");
        });
        check(&rx.recv().expect("recv"), 7, 24);
        assert_eq!(rx.recv().map(|m| m.len()), Err(RecvError::PeerGone));
        p.join().unwrap();
    });
}

/// A consumer that never sleeps (it polls with `try_recv`, yielding on Empty) against a producer that
/// sends two messages and drops its end. No futex connects the two threads here, only the header words
/// and the CLOSED state, so this is the plain model of "closed and empty means drained": the consumer
/// sees both messages, then `PeerGone`, never `PeerGone` while a committed message is still unread.
#[test]
fn polling_consumer_sees_closed_only_after_every_commit() {
    model("close/polling consumer", Bound::Exhaustive, || {
        let (mut tx, mut rx) = channel();
        let p = loom::thread::spawn(move || {
            tx.try_send(&payload(0, 24)).expect("try_send");
            tx.try_send(&payload(1, 40)).expect("try_send");
        });
        let mut got = 0u8;
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    check(&m, got, [24, 40][got as usize]);
                    got += 1;
                }
                Err(RecvError::Empty) => loom::thread::yield_now(),
                Err(RecvError::PeerGone) => break,
                Err(e) => panic!("try_recv: {e}"),
            }
        }
        assert_eq!(got, 2, "PeerGone before every committed message was received");
        p.join().unwrap();
    });
}

/// Two 2000-byte messages fill the ring for a third (it would need both released). The consumer takes
/// m0 and drops its end; the producer, blocked in `send` (zero spin) on the full ring, or about to be,
/// must return `Disconnected` (and so must every later send), never hang or succeed.
#[test]
fn consumer_drop_wakes_producer_blocked_on_full_ring_with_disconnected() {
    const BIG: usize = 2000;
    model("close/consumer drop", Bound::AtLeast(4), || {
        let (mut tx, mut rx) = channel();
        tx.try_send(&payload(0, BIG)).expect("m0 fits");
        tx.try_send(&payload(1, BIG)).expect("m1 fits");
        assert_eq!(tx.try_send(&payload(2, BIG)), Err(SendError::WouldBlock));
        let p = loom::thread::spawn(move || {
            assert_eq!(tx.send(&payload(2, BIG)), Err(SendError::PeerGone));
            assert_eq!(tx.try_send(&payload(3, 8)), Err(SendError::PeerGone));
            tx
        });
        let c = loom::thread::spawn(move || {
            check(&rx.recv().expect("recv"), 0, BIG);
            drop(rx);
        });
        c.join().unwrap();
        let _tx = p.join().unwrap();
    });
}
