//! Models 9-11: the broadcast ring (`src/ring/broadcast.rs`): a sequence lock per slot, publishers that
//! take a slot by CAS and may lap a subscriber in the middle of its copy, and the wake-up of sleeping
//! subscribers. Payload words are loom atomics (relaxed), so these models check the sequence-lock
//! argument itself: a copy that overlapped a rewrite must be discarded, never returned. (Production
//! x86_64 builds copy payloads with inline assembly instead, `broadcast::racy_copy`: a copy of relaxed
//! per-byte accesses, ordered like the word copies modelled here; see ARCHITECTURE.md, "Payload
//! copies".)
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;
use ringwire::broadcast::{self, HeapPublisher, HeapSubscriber, Mode, RecvError};
use ringwire::RingConfig;

fn ring(mode: Mode) -> (HeapPublisher, HeapSubscriber) {
    let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 2000), mode).expect("valid config");
    tx.set_wait_strategy(ZERO_SPIN);
    rx.set_wait_strategy(ZERO_SPIN);
    (tx, rx)
}

/// The publisher sends three messages into two slots while the subscriber reads: the third overwrites
/// the first, possibly in the middle of the subscriber's copy of it. Every message the subscriber
/// returns is intact and in order; what it misses it is told about (`Lagged`), and the count adds up.
#[test]
fn publisher_laps_reader_mid_read_never_torn() {
    model("broadcast/lap mid-read", Bound::Env, || {
        let (mut tx, mut rx) = ring(Mode::Overwrite);
        let p = loom::thread::spawn(move || {
            for id in 0..3u8 {
                tx.try_send(&payload(id, 24)).expect("overwrite mode never waits");
            }
            tx
        });
        let mut next = 0u8;
        let mut accounted = 0u64;
        let mut buf = [0u8; 64];
        while accounted < 3 {
            match rx.try_recv_into(&mut buf) {
                Ok(n) => {
                    check(&buf[..n], next, 24);
                    next += 1;
                    accounted += 1;
                }
                Err(RecvError::Lagged(lost)) => {
                    next += lost as u8;
                    accounted += lost;
                }
                Err(RecvError::Empty) => loom::thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(accounted, 3);
        let _tx = p.join().unwrap();
    });
}

/// Two publishers, back-pressure mode, two slots, one subscriber: the subscriber gets all three
/// messages, each publisher's in its order, and no publisher overwrites a slot the subscriber has not
/// read (a publisher that must wait sleeps on the futex and is woken by the subscriber's progress).
#[test]
fn two_publishers_backpressure_lose_nothing() {
    model("broadcast/2 publishers backpressure", Bound::Env, || {
        let (mut tx0, mut rx) = ring(Mode::Backpressure);
        let mut tx1 = tx0.clone_handle().unwrap();
        tx1.set_wait_strategy(ZERO_SPIN);
        let p0 = loom::thread::spawn(move || {
            tx0.send(&payload(0, 24)).unwrap();
            tx0.send(&payload(2, 24)).unwrap();
            tx0
        });
        let p1 = loom::thread::spawn(move || {
            tx1.send(&payload(1, 24)).unwrap();
            tx1
        });
        let mut order = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            let n = rx.recv_into(&mut buf).expect("recv");
            let id = (0..3u8).find(|&i| buf[..n] == payload(i, 24)[..]).expect("an intact message");
            order.push(id);
        }
        let pos0 = order.iter().position(|&i| i == 0).unwrap();
        let pos2 = order.iter().position(|&i| i == 2).unwrap();
        assert!(pos0 < pos2, "publisher 0's messages out of order: {order:?}");
        let _ = (p0.join().unwrap(), p1.join().unwrap());
    });
}

/// A subscriber asleep on an empty ring (zero spin) is woken by a publish: no lost wake-up.
/// Back-pressure: the subscriber reads each message in place (`recv_in_place`) while the publisher
/// sends three messages into two slots, the third into the first one's slot: the publisher waits until
/// the guard on that message is dropped (the guard's drop, under loom, checks that nobody wrote the slot
/// while it was held), and every message arrives intact and in order.
#[test]
fn a_message_read_in_place_is_not_overwritten_while_held() {
    model("broadcast/in place", Bound::Env, || {
        let (mut tx, mut rx) = ring(Mode::Backpressure);
        let p = loom::thread::spawn(move || {
            for id in 0..3u8 {
                tx.send(&payload(id, 24)).expect("send");
            }
            tx
        });
        for id in 0..3u8 {
            let m = rx.recv_in_place().expect("recv_in_place");
            check(&m, id, 24);
        }
        let _tx = p.join().unwrap();
    });
}

#[test]
fn sleeping_subscriber_is_woken_by_publish() {
    model("broadcast/wake", Bound::Exhaustive, || {
        let (mut tx, mut rx) = ring(Mode::Overwrite);
        let p = loom::thread::spawn(move || {
            tx.try_send(&payload(9, 40)).unwrap();
            tx
        });
        check(&rx.recv_vec().expect("recv"), 9, 40);
        let _tx = p.join().unwrap();
    });
}

/// A publisher that took a slot and went away mid-write is skipped by the subscriber, which then gets
/// the live publisher's message; a live publisher in mid-write is never skipped.
#[test]
fn dead_publishers_slot_is_skipped() {
    model("broadcast/dead publisher", Bound::Env, || {
        let (mut dead, mut rx) = ring(Mode::Overwrite);
        let mut live = dead.clone_handle().unwrap();
        dead.__abandon_mid_write();
        drop(dead);
        let p = loom::thread::spawn(move || {
            live.try_send(&payload(4, 32)).unwrap();
            live
        });
        let mut buf = [0u8; 64];
        loop {
            match rx.try_recv_into(&mut buf) {
                Ok(n) => {
                    check(&buf[..n], 4, 32);
                    break;
                }
                Err(RecvError::Empty) => loom::thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(rx.recovered().skipped, 1);
        let _live = p.join().unwrap();
    });
}

/// A reservation dropped without a commit publishes its position empty (a PAD frame), and a subscriber
/// sleeping on the ring skips it and gets the next message: the abandon path is a publication like any
/// other (same sequence-lock stores and wake-up), and the skip never loses or repeats a message.
#[test]
fn abandoned_reservation_is_skipped_by_a_sleeping_subscriber() {
    model("broadcast/abandoned reservation", Bound::Env, || {
        let (mut tx, mut rx) = ring(Mode::Backpressure);
        let p = loom::thread::spawn(move || {
            let mut slot = tx.reserve(8).expect("room");
            slot.copy_from_slice(b"abandon!");
            drop(slot);
            tx.send(&payload(1, 24)).expect("room");
            tx
        });
        let mut buf = [0u8; 64];
        let n = rx.recv_into(&mut buf).expect("the message after the abandoned position");
        check(&buf[..n], 1, 24);
        let tx = p.join().unwrap();
        drop(tx);
        assert_eq!(rx.recv_into(&mut buf), Err(RecvError::PeerGone));
    });
}

/// As `mpmc.rs`'s model: the only publisher sends one message and drops its end in its own thread; a
/// subscriber asleep in a blocking `recv_into` (zero spin) gets the message, then `PeerGone`, never a
/// hang, however the close's CLOSED store and wake interleave with the subscriber's sleep.
#[test]
fn publisher_drop_wakes_a_sleeping_subscriber_with_peer_gone() {
    model("broadcast/publisher drop wakes sleeper", Bound::AtLeast(4), || {
        let (mut tx, mut rx) = ring(Mode::Overwrite);
        let p = loom::thread::spawn(move || {
            tx.try_send(&payload(5, 24)).expect("overwrite mode never waits");
        });
        let mut buf = [0u8; 64];
        let n = rx.recv_into(&mut buf).expect("the message before the close");
        check(&buf[..n], 5, 24);
        assert_eq!(rx.recv_into(&mut buf), Err(RecvError::PeerGone));
        p.join().unwrap();
    });
}
