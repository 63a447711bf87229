//! Models 6-8: the MPMC ring (`src/ring/mpmc.rs`): Vyukov-style slot sequences with CAS claims on
//! `tail` and `head` (one CAS for a consumer's batch, `recv_many`), a two-slot ring so that every model wraps, and the crash recovery of slots left
//! in mid-claim. Under loom the stuck timeout elapses at once (no clock), so every poll of a claimed but
//! uncommitted slot explores the "is its owner alive?" path: it must never skip a live owner's slot.
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;
use ringwire::mpmc::{self, HeapConsumer, HeapProducer};
use ringwire::mpmc::{RecvError, SendError};
use ringwire::RingConfig;

/// 4096 bytes cut into two slots of 2048 (16-byte slot header + up to 2032 payload bytes).
fn queue() -> (HeapProducer, HeapConsumer) {
    let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 2000)).expect("valid config");
    tx.set_wait_strategy(ZERO_SPIN);
    rx.set_wait_strategy(ZERO_SPIN);
    (tx, rx)
}

fn try_send_mpmc(tx: &mut HeapProducer, msg: &[u8]) {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return,
            Err(SendError::WouldBlock) => loom::thread::yield_now(),
            Err(e) => panic!("try_send: {e}"),
        }
    }
}

/// Two producers and two consumers, one message each, placed so that they straddle the wrap of the
/// two-slot ring (one message went through first). Each consumer blocks (zero spin: straight to the
/// futex) until it claims a message: each gets exactly one, intact, whatever the interleaving of the
/// four CAS loops, the sequence stores and the payload copies (loom's cell tracking catches a consumer
/// reading a slot a producer is still writing), and no wake-up is lost with two sleepers on one cell.
/// Five threads: one preemption per execution (~160k executions, ~30 s); two would take hours.
#[test]
fn two_producers_two_consumers_each_message_once() {
    model("mpmc/2p2c", Bound::AtMost(1), || {
        let (mut tx0, mut rx0) = queue();
        tx0.try_send(&payload(9, 8)).unwrap();
        check(&rx0.try_recv().unwrap(), 9, 8);
        let mut tx1 = tx0.clone_handle().unwrap();
        tx1.set_wait_strategy(ZERO_SPIN);
        let mut rx1 = rx0.clone_handle().unwrap();
        rx1.set_wait_strategy(ZERO_SPIN);
        let p0 = loom::thread::spawn(move || {
            tx0.try_send(&payload(0, 24)).unwrap();
            tx0
        });
        let p1 = loom::thread::spawn(move || {
            tx1.try_send(&payload(1, 32)).unwrap();
            tx1
        });
        let c1 = loom::thread::spawn(move || {
            let id = identify(&rx1.recv().expect("recv"));
            (id, rx1)
        });
        let a = identify(&rx0.recv().expect("recv"));
        let (b, _rx1) = c1.join().unwrap();
        assert_ne!(a, b, "a message delivered twice");
        let _ = (p0.join().unwrap(), p1.join().unwrap());
    });
}

/// Which of messages 0 (24 bytes) and 1 (32 bytes) `m` is, checking its content.
fn identify(m: &[u8]) -> u8 {
    let id = if m.len() == 24 { 0 } else { 1 };
    check(m, id, [24, 32][id as usize]);
    id
}

/// A blocked consumer (zero spin: straight to the futex) is woken by a producer's commit, and a blocked
/// producer on the full two-slot ring by a consumer's release: no lost wake-up in either direction.
#[test]
fn blocking_send_and_recv_wake_each_other_across_the_wrap() {
    model("mpmc/wake", Bound::Env, || {
        let (mut tx, mut rx) = queue();
        let p = loom::thread::spawn(move || {
            for id in 0..3u8 {
                tx.send(&payload(id, 100)).expect("send");
            }
            tx
        });
        for id in 0..3u8 {
            check(&rx.recv().expect("recv"), id, 100);
        }
        let _tx = p.join().unwrap();
    });
}

/// A producer that claimed a slot and went away without committing (its reservation forgotten, its
/// entry closed: what a killed process looks like in one process) is skipped; a live producer's
/// message behind it is delivered, and the skip is counted once. Racing the consumer's stuck check
/// against the live producer's claim: the live producer's slot is never skipped.
#[test]
fn dead_producers_slot_is_skipped_live_ones_never() {
    model("mpmc/dead producer", Bound::Env, || {
        let (mut dead, mut rx) = queue();
        let mut live = dead.clone_handle().unwrap();
        std::mem::forget(dead.try_reserve(8).unwrap());
        drop(dead);
        let p = loom::thread::spawn(move || {
            try_send_mpmc(&mut live, &payload(5, 64));
            live
        });
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    check(&m, 5, 64);
                    break;
                }
                Err(RecvError::Empty) => loom::thread::yield_now(),
                Err(e) => panic!("try_recv: {e}"),
            }
        }
        assert_eq!(rx.recovered().skipped, 1);
        let _live = p.join().unwrap();
    });
}

/// A consumer that took a message and went away without releasing it: a producer that needs the slot
/// reclaims it, while a live consumer's read of the other slot is never cut short.
#[test]
fn dead_consumers_slot_is_reclaimed() {
    model("mpmc/dead consumer", Bound::Env, || {
        let (mut tx, mut dead) = queue();
        let mut live = dead.clone_handle().unwrap();
        tx.try_send(&payload(0, 16)).unwrap();
        std::mem::forget(dead.try_recv().unwrap());
        drop(dead);
        tx.try_send(&payload(1, 16)).unwrap();
        let c = loom::thread::spawn(move || {
            loop {
                match live.try_recv() {
                    Ok(m) => {
                        check(&m, 1, 16);
                        break;
                    }
                    Err(RecvError::Empty) => loom::thread::yield_now(),
                    Err(e) => panic!("try_recv: {e}"),
                }
            }
            live
        });
        // Needs slot 0, held by the dead consumer.
        try_send_mpmc(&mut tx, &payload(2, 16));
        let mut live = c.join().unwrap();
        check(&live.try_recv().unwrap(), 2, 16);
        assert_eq!(tx.recovered().reclaimed, 1);
    });
}

/// A consumer holding a batch (`recv_many`: both slots of the full ring, claimed with one CAS) while a
/// producer that needs them polls with its stuck check on every poll (loom: no clock): the producer
/// never takes back a live batch's slot — before the claim, while it is held, or while its drop
/// releases the slots one by one (the run's intent and end, `Participant::claim_end`, cover the slot
/// not yet released) — and sends into each slot once it is free.
#[test]
fn a_live_consumers_batch_is_never_reclaimed_even_while_it_releases() {
    model("mpmc/live batch", Bound::Env, || {
        let (mut tx, mut rx) = queue();
        tx.try_send(&payload(0, 16)).unwrap();
        tx.try_send(&payload(1, 16)).unwrap();
        let c = loom::thread::spawn(move || {
            let batch = rx.try_recv_many(2).expect("two published messages");
            assert_eq!(batch.len(), 2);
            check(batch.get(0).unwrap(), 0, 16);
            check(batch.get(1).unwrap(), 1, 16);
            drop(batch);
            rx
        });
        try_send_mpmc(&mut tx, &payload(2, 16));
        try_send_mpmc(&mut tx, &payload(3, 16));
        assert_eq!(tx.recovered().reclaimed, 0, "a live consumer's batch was taken back");
        let mut rx = c.join().unwrap();
        check(&rx.try_recv().unwrap(), 2, 16);
        check(&rx.try_recv().unwrap(), 3, 16);
    });
}

/// A consumer that took a batch of both slots and went away without releasing it: the producer takes
/// each slot back as it comes round to it, and a live consumer gets what it sends after.
#[test]
fn dead_consumers_batch_is_reclaimed_slot_by_slot() {
    model("mpmc/dead batch", Bound::Env, || {
        let (mut tx, mut dead) = queue();
        let mut live = dead.clone_handle().unwrap();
        tx.try_send(&payload(0, 16)).unwrap();
        tx.try_send(&payload(1, 16)).unwrap();
        std::mem::forget(dead.try_recv_many(2).unwrap());
        drop(dead);
        let c = loom::thread::spawn(move || {
            for id in 2..4 {
                loop {
                    match live.try_recv() {
                        Ok(m) => {
                            check(&m, id, 16);
                            break;
                        }
                        Err(RecvError::Empty) => loom::thread::yield_now(),
                        Err(e) => panic!("try_recv: {e}"),
                    }
                }
            }
            live
        });
        try_send_mpmc(&mut tx, &payload(2, 16));
        try_send_mpmc(&mut tx, &payload(3, 16));
        let _live = c.join().unwrap();
        assert_eq!(tx.recovered().reclaimed, 2);
    });
}

/// A producer reserves both slots with one claim (`reserve_many`), fills and commits them (last slot
/// first), while a consumer polls with its stuck check on every poll (loom: no clock): it never skips a
/// slot of the live reservation, and gets both messages, in order.
#[test]
fn a_live_producers_reservation_is_never_skipped() {
    model("mpmc/live reservation", Bound::Env, || {
        let (mut tx, mut rx) = queue();
        let p = loom::thread::spawn(move || {
            let mut b = loop {
                match tx.try_reserve_many(2, 16) {
                    Ok(b) => break b,
                    Err(SendError::WouldBlock) => loom::thread::yield_now(),
                    Err(e) => panic!("try_reserve_many: {e}"),
                }
            };
            assert_eq!(b.len(), 2);
            b.get_mut(0).unwrap().copy_from_slice(&payload(0, 16));
            b.get_mut(1).unwrap().copy_from_slice(&payload(1, 16));
            b.commit();
            tx
        });
        for id in 0..2 {
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        check(&m, id, 16);
                        break;
                    }
                    Err(RecvError::Empty) => loom::thread::yield_now(),
                    Err(e) => panic!("try_recv: {e}"),
                }
            }
        }
        assert_eq!(rx.recovered().skipped, 0, "a live producer's reserved slot was skipped");
        let _tx = p.join().unwrap();
    });
}

/// A producer that reserved both slots and went away without committing: the consumer skips each (2
/// skipped), and a live producer's message, sent into a slot once it is skipped, is delivered.
#[test]
fn dead_producers_reservation_is_skipped_slot_by_slot() {
    model("mpmc/dead reservation", Bound::Env, || {
        let (mut dead, mut rx) = queue();
        let mut live = dead.clone_handle().unwrap();
        std::mem::forget(dead.try_reserve_many(2, 16).unwrap());
        drop(dead);
        let p = loom::thread::spawn(move || {
            try_send_mpmc(&mut live, &payload(5, 16));
            live
        });
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    check(&m, 5, 16);
                    break;
                }
                Err(RecvError::Empty) => loom::thread::yield_now(),
                Err(e) => panic!("try_recv: {e}"),
            }
        }
        assert_eq!(rx.recovered().skipped, 2);
        let _live = p.join().unwrap();
    });
}

/// A clean close wakes a consumer asleep in a blocking `recv` (zero spin: straight to the futex) with
/// `PeerGone`, after the message sent before it, and never hangs: the producer sends one message and
/// drops its end (CLOSED, then a wake of `data_ready`), however that interleaves with the consumer's
/// announcement, re-check and liveness check (`wait::wait_for` asks about the producers after it
/// announces; loom has no clock, so only the close's wake can end the sleep).
#[test]
fn producer_drop_wakes_a_sleeping_consumer_with_peer_gone() {
    model("mpmc/producer drop wakes sleeper", Bound::AtLeast(4), || {
        let (mut tx, mut rx) = queue();
        let p = loom::thread::spawn(move || {
            tx.try_send(&payload(4, 24)).expect("try_send");
        });
        check(&rx.recv().expect("recv"), 4, 24);
        assert!(matches!(rx.recv().map(|m| m.len()), Err(RecvError::PeerGone)));
        p.join().unwrap();
    });
}
