//! MPMC and broadcast rings in one process (threads): delivery, ordering, limits, closing, and the
//! recovery of slots abandoned by endpoints that went away mid-message.

use ringwire::broadcast::{self, Mode};
use ringwire::mpmc::{self, RecvError, SendError};
use ringwire::ring::AttachError;
use ringwire::RingConfig;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Every test here runs under a watchdog that fails it (as a hang) after this long.
const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

fn msg(producer: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len.max(12));
    m.extend_from_slice(&producer.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    while m.len() < len {
        m.push((seq as u8).wrapping_mul(31).wrapping_add(m.len() as u8));
    }
    m
}

fn parse(m: &[u8]) -> (u32, u64) {
    let p = u32::from_le_bytes(m[..4].try_into().unwrap());
    let s = u64::from_le_bytes(m[4..12].try_into().unwrap());
    assert_eq!(m, msg(p, s, m.len()), "payload of {p}/{s} corrupted");
    (p, s)
}

/// An MPMC ring of 8 KiB of 100-byte messages, two producers and two consumers on it.
fn two_and_two() -> ([mpmc::HeapProducer; 2], [mpmc::HeapConsumer; 2]) {
    let (tx, rx) = mpmc::channel(RingConfig::new(1 << 13, 100)).unwrap();
    let (tx2, rx2) = (tx.clone_handle().unwrap(), rx.clone_handle().unwrap());
    ([tx, tx2], [rx, rx2])
}

/// A thread per producer, each running `send_all(its index, it)`.
fn spawn_producers(
    producers: [mpmc::HeapProducer; 2],
    send_all: fn(u32, &mut mpmc::HeapProducer),
) -> Vec<std::thread::JoinHandle<()>> {
    producers
        .into_iter()
        .enumerate()
        .map(|(p, mut tx)| std::thread::spawn(move || send_all(p as u32, &mut tx)))
        .collect()
}

/// What one consumer thread got: (producer, sequence) pairs, each producer's checked to come in order.
#[derive(Default)]
struct Receipts {
    got: Vec<(u32, u64)>,
    last: [Option<u64>; 2],
}

impl Receipts {
    fn take(&mut self, m: &[u8]) {
        let (p, s) = parse(m);
        if let Some(l) = self.last[p as usize] {
            assert!(l < s, "producer {p} out of order");
        }
        self.last[p as usize] = Some(s);
        self.got.push((p, s));
    }
}

/// A thread receiving with `recv` (one call: one or more messages into the receipts) until the
/// producers have gone; it returns what it got.
fn spawn_consumer(
    mut rx: mpmc::HeapConsumer,
    mut recv: impl FnMut(&mut mpmc::HeapConsumer, &mut Receipts) -> Result<(), RecvError> + Send + 'static,
) -> std::thread::JoinHandle<Vec<(u32, u64)>> {
    std::thread::spawn(move || {
        let mut r = Receipts::default();
        loop {
            match recv(&mut rx, &mut r) {
                Ok(()) => {}
                Err(RecvError::PeerGone) => return r.got,
                Err(e) => panic!("{e}"),
            }
        }
    })
}

/// Joins the producer and consumer threads: the consumers together got `total` messages, none twice.
fn assert_each_delivered_once(
    producers: Vec<std::thread::JoinHandle<()>>,
    consumers: Vec<std::thread::JoinHandle<Vec<(u32, u64)>>>,
    total: u64,
) {
    for p in producers {
        p.join().unwrap();
    }
    let mut all = HashSet::new();
    for c in consumers {
        for x in c.join().unwrap() {
            assert!(all.insert(x), "{x:?} delivered twice");
        }
    }
    assert_eq!(all.len() as u64, total);
}

#[test]
fn mpmc_two_producers_two_consumers_deliver_each_message_once_in_producer_order() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        const N: u64 = 100_000;
        let (tx, rx) = mpmc::channel(RingConfig::new(1 << 14, 100)).unwrap();
        let mut producers = vec![tx];
        producers.push(producers[0].clone_handle().unwrap());
        let mut consumers = vec![rx];
        consumers.push(consumers[0].clone_handle().unwrap());
        let prod: Vec<_> = producers
            .into_iter()
            .enumerate()
            .map(|(p, mut tx)| {
                std::thread::spawn(move || {
                    for s in 0..N {
                        tx.send(&msg(p as u32, s, 12 + (s % 89) as usize)).unwrap();
                    }
                })
            })
            .collect();
        let cons: Vec<_> =
            consumers.into_iter().map(|rx| spawn_consumer(rx, |rx, r| rx.recv().map(|m| r.take(&m)))).collect();
        assert_each_delivered_once(prod, cons, 2 * N);
    });
}

#[test]
fn mpmc_limits_full_timeout_and_too_large() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 100)).unwrap();
        // 4096 / 128-byte slots = 32 slots.
        let mut n = 0;
        while tx.try_send(&msg(0, n, 20)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 32);
        assert_eq!(tx.try_send(b"x"), Err(SendError::WouldBlock));
        assert_eq!(tx.send_deadline(b"x", Instant::now() + Duration::from_millis(5)), Err(SendError::Timeout));
        assert_eq!(tx.try_send(&[0; 101]), Err(SendError::Oversize { len: 101, max: 100 }));
        for s in 0..n {
            assert_eq!(parse(&rx.try_recv().unwrap()), (0, s));
        }
        assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
        assert_eq!(rx.recv_timeout(Duration::from_millis(5)).map(|m| m.len()), Err(RecvError::Timeout));
        // Copying out: a message too long for the buffer stays in the ring.
        tx.send(b"twelve bytes").unwrap();
        let mut small = [0u8; 4];
        assert_eq!(rx.try_recv_into(&mut small), Err(RecvError::BufferTooSmall { needed: 12 }));
        let mut big = [0u8; 100];
        assert_eq!(rx.recv_into(&mut big), Ok(12));
        assert_eq!(&big[..12], b"twelve bytes");
        // Zero-copy with a shorter commit.
        let mut w = tx.try_reserve(50).unwrap();
        w[..3].copy_from_slice(b"abc");
        w.commit_len(3);
        assert_eq!(&*rx.try_recv().unwrap(), b"abc");
    });
}

#[test]
fn mpmc_config_needs_two_slots() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        assert!(matches!(mpmc::channel(RingConfig::new(4096, 4000)), Err(AttachError::Config(_))));
        assert!(mpmc::channel(RingConfig::new(4096, 2000)).is_ok());
    });
}

#[test]
fn mpmc_closing_both_ways() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
        tx.send(b"last").unwrap();
        drop(tx);
        assert_eq!(&*rx.recv().unwrap(), b"last");
        assert_eq!(rx.recv().map(|m| m.len()), Err(RecvError::PeerGone));

        let (mut tx, rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
        let t = std::thread::spawn(move || loop {
            match tx.send(b"fill") {
                Ok(()) => continue,
                Err(e) => return e,
            }
        });
        // The producer fills the ring and blocks (or will); dropping the only consumer must end that.
        drop(rx);
        assert_eq!(t.join().unwrap(), SendError::PeerGone);
    });
}

#[test]
fn mpmc_abandoned_reservation_is_skipped() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
        drop(tx.try_reserve(10).unwrap());
        tx.send(b"after").unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"after");
    });
}

#[test]
fn mpmc_producer_gone_mid_message_is_skipped_after_the_stuck_timeout() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
        let mut tx2 = tx.clone_handle().unwrap();
        rx.set_stuck_timeout(Duration::from_millis(1));
        // A claimed slot that will never be committed, and an owner that is gone.
        std::mem::forget(tx.try_reserve(10).unwrap());
        drop(tx);
        tx2.send(b"behind it").unwrap();
        assert_eq!(&*rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"behind it");
        assert_eq!(rx.recovered().skipped, 1);
    });
}

#[test]
fn mpmc_consumer_gone_mid_read_is_reclaimed_when_the_ring_is_full() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 100)).unwrap();
        let mut rx2 = rx.clone_handle().unwrap();
        tx.set_stuck_timeout(Duration::from_millis(1));
        tx.send(b"held forever").unwrap();
        std::mem::forget(rx.try_recv().unwrap());
        drop(rx);
        // Fill the other 31 slots, then one more needs the held slot back.
        for s in 0..31 {
            tx.send(&msg(0, s, 20)).unwrap();
        }
        tx.send_timeout(&msg(0, 31, 20), Duration::from_secs(10)).unwrap();
        assert_eq!(tx.recovered().reclaimed, 1);
        for s in 0..32 {
            assert_eq!(parse(&rx2.try_recv().unwrap()), (0, s));
        }
    });
}

#[test]
fn mpmc_recv_many_takes_the_published_run_in_order_and_stops_before_an_abandoned_slot() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(1 << 14, 100)).unwrap();
        assert_eq!(rx.try_recv_many(8).map(|b| b.len()), Err(RecvError::Empty));
        assert_eq!(rx.recv_many_timeout(8, Duration::from_millis(5)).map(|b| b.len()), Err(RecvError::Timeout));
        for s in 0..10 {
            tx.send(&msg(0, s, 12 + s as usize)).unwrap();
        }
        drop(tx.try_reserve(10).unwrap()); // abandoned: a padding slot
        for s in 10..13 {
            tx.send(&msg(0, s, 40)).unwrap();
        }
        let batch = rx.recv_many(8).unwrap();
        assert_eq!(batch.len(), 8);
        assert!(batch.get(8).is_none());
        assert_eq!(batch.iter().map(parse).collect::<Vec<_>>(), (0..8).map(|s| (0, s)).collect::<Vec<_>>());
        drop(batch);
        // The rest of the run, up to the padding slot; the next claim skips it.
        let batch = rx.try_recv_many(usize::MAX).unwrap();
        assert_eq!(batch.iter().map(parse).collect::<Vec<_>>(), vec![(0, 8), (0, 9)]);
        drop(batch);
        let batch = rx.try_recv_many(0).unwrap(); // clamped to 1
        assert_eq!(batch.iter().map(parse).collect::<Vec<_>>(), vec![(0, 10)]);
        drop(batch);
        assert_eq!(rx.try_recv_many(64).unwrap().iter().map(parse).collect::<Vec<_>>(), vec![(0, 11), (0, 12)]);
        // The batch's slots were freed: the whole ring (128 slots of 128 bytes) takes messages again.
        for s in 0..128 {
            tx.try_send(&msg(1, s, 20)).unwrap();
        }
        assert_eq!(tx.try_send(b"x"), Err(SendError::WouldBlock));
        let mut got = 0;
        while got < 128 {
            let batch = rx.recv_many(mpmc::RECV_MANY_MAX).unwrap();
            assert!(batch.len() <= mpmc::RECV_MANY_MAX);
            for m in batch.iter() {
                assert_eq!(parse(m), (1, got));
                got += 1;
            }
        }
        drop(tx);
        assert_eq!(rx.recv_many(8).map(|b| b.len()), Err(RecvError::PeerGone));
    });
}

#[test]
fn mpmc_two_producers_and_a_batch_consumer_and_a_plain_one_deliver_each_message_once() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        const N: u64 = 50_000;
        let ([tx, tx2], [rx, rx2]) = two_and_two();
        let prod = spawn_producers([tx, tx2], |p, tx| {
            for s in 0..N {
                if s % 3 == 0 {
                    tx.send(&msg(p, s, 12 + (s % 89) as usize)).unwrap();
                } else {
                    tx.send_buffered(&msg(p, s, 12 + (s % 89) as usize)).unwrap();
                }
            }
        });
        let cons: Vec<_> = [rx, rx2]
            .into_iter()
            .enumerate()
            .map(|(c, rx)| {
                let mut round = 0usize;
                spawn_consumer(rx, move |rx, r| {
                    round += 1;
                    if c == 0 {
                        rx.recv_many(1 + round % 40).map(|b| b.iter().for_each(|m| r.take(m)))
                    } else {
                        rx.recv().map(|m| r.take(&m))
                    }
                })
            })
            .collect();
        assert_each_delivered_once(prod, cons, 2 * N);
    });
}

#[test]
fn mpmc_reserve_many_claims_the_free_run_and_publishes_it_in_order_padding_what_is_left() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // 32 slots of 128 bytes.
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 100)).unwrap();
        assert_eq!(tx.try_reserve_many(4, 101).map(|b| b.len()), Err(SendError::Oversize { len: 101, max: 100 }));
        let mut b = tx.reserve_many(8, 40).unwrap();
        assert_eq!(b.len(), 8);
        assert!(b.get_mut(8).is_none());
        for i in 0..8 {
            let m = msg(0, i as u64, 12 + i);
            b.set_len(i, m.len());
            b.get_mut(i).unwrap().copy_from_slice(&m);
        }
        // Nothing is visible before the commit.
        assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
        b.commit_first(5);
        // The last three became padding, which receives skip.
        let got: Vec<_> = rx.try_recv_many(64).unwrap().iter().map(parse).collect();
        assert_eq!(got, (0..5).map(|s| (0, s)).collect::<Vec<_>>());
        drop(tx.try_reserve_many(3, 10).unwrap()); // abandoned: three more pads
        tx.send(&msg(0, 5, 20)).unwrap();
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, 5));
        // A withheld buffered batch is published first, so the order holds.
        tx.send_buffered(&msg(0, 6, 20)).unwrap();
        let mut b = tx.try_reserve_many(64, 20).unwrap();
        // 32 slots: positions 0..12 used and freed, 12 holding message 6 (published by the flush):
        // the run is the other 31 (positions 13..44).
        assert_eq!(b.len(), 31);
        for i in 0..b.len() {
            b.get_mut(i).unwrap().copy_from_slice(&msg(0, 7 + i as u64, 20));
        }
        b.commit();
        assert_eq!(tx.try_reserve_many(4, 20).map(|b| b.len()), Err(SendError::WouldBlock));
        assert_eq!(tx.reserve_many_timeout(4, 20, Duration::from_millis(5)).map(|b| b.len()), Err(SendError::Timeout));
        let mut got = Vec::new();
        while let Ok(b) = rx.try_recv_many(64) {
            got.extend(b.iter().map(|m| parse(m).1));
        }
        assert_eq!(got, (6..38).collect::<Vec<_>>());
        drop(rx);
        assert_eq!(tx.reserve_many(4, 20).map(|b| b.len()), Ok(4), "free slots: no wait, no PeerGone check");
    });
}

#[test]
fn mpmc_reserve_many_producers_and_recv_many_consumers_deliver_each_message_once_in_order() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        const N: u64 = 50_000;
        let ([tx, tx2], [rx, rx2]) = two_and_two();
        let prod = spawn_producers([tx, tx2], |p, tx| {
            let mut s = 0;
            while s < N {
                if p == 1 && s % 7 == 0 {
                    tx.send(&msg(p, s, 12 + (s % 89) as usize)).unwrap();
                    s += 1;
                    continue;
                }
                let mut b = tx.reserve_many((1 + s % 50).min(N - s) as usize, 100).unwrap();
                for i in 0..b.len() {
                    let m = msg(p, s + i as u64, 12 + ((s + i as u64) % 89) as usize);
                    b.set_len(i, m.len());
                    b.get_mut(i).unwrap().copy_from_slice(&m);
                }
                s += b.len() as u64;
                b.commit();
            }
        });
        let cons: Vec<_> = [rx, rx2]
            .into_iter()
            .map(|rx| spawn_consumer(rx, |rx, r| rx.recv_many(17).map(|b| b.iter().for_each(|m| r.take(m)))))
            .collect();
        assert_each_delivered_once(prod, cons, 2 * N);
    });
}

#[test]
fn mpmc_a_live_producers_reservation_is_never_skipped_and_a_gone_ones_is() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 100)).unwrap();
        let mut tx2 = tx.clone_handle().unwrap();
        rx.set_stuck_timeout(Duration::from_millis(1));
        // Live: the consumer waits at the reservation (asking after its owner every millisecond) and
        // skips nothing; the messages arrive once committed.
        let mut b = tx.reserve_many(6, 20).unwrap();
        tx2.send(&msg(1, 0, 20)).unwrap(); // behind the reservation
        assert_eq!(rx.recv_timeout(Duration::from_millis(30)).map(|m| m.len()), Err(RecvError::Timeout));
        assert_eq!(rx.recovered().skipped, 0);
        for i in 0..6 {
            b.get_mut(i).unwrap().copy_from_slice(&msg(0, i as u64, 20));
        }
        b.commit();
        let got: Vec<_> = rx.try_recv_many(64).unwrap().iter().map(parse).collect();
        assert_eq!(got, [(0..6).map(|s| (0, s)).collect::<Vec<_>>(), vec![(1, 0)]].concat());
        // Gone: every slot of the reservation is skipped; what was sent behind it is delivered.
        std::mem::forget(tx.reserve_many(5, 20).unwrap());
        drop(tx);
        tx2.send(&msg(1, 1, 20)).unwrap();
        assert_eq!(parse(&rx.recv_timeout(Duration::from_secs(10)).unwrap()), (1, 1));
        assert_eq!(rx.recovered().skipped, 5);
    });
}

#[test]
fn mpmc_a_live_consumers_batch_is_never_reclaimed_and_a_gone_ones_is_when_the_ring_wraps() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // 32 slots of 128 bytes.
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 100)).unwrap();
        let mut rx2 = rx.clone_handle().unwrap();
        tx.set_stuck_timeout(Duration::from_millis(1));
        for s in 0..32 {
            tx.send(&msg(0, s, 20)).unwrap();
        }
        let batch = rx.recv_many(8).unwrap();
        assert_eq!(batch.len(), 8);
        // The ring is full and the next slot is in the live batch: the producer waits (asking after
        // the batch's owner every millisecond) and takes nothing back.
        assert_eq!(tx.send_timeout(&msg(0, 32, 20), Duration::from_millis(30)), Err(SendError::Timeout));
        assert_eq!(tx.recovered().reclaimed, 0);
        // Gone without releasing it: each of its slots is taken back as the producer comes round to it.
        std::mem::forget(batch);
        drop(rx);
        for s in 32..40 {
            tx.send_timeout(&msg(0, s, 20), Duration::from_secs(10)).unwrap();
        }
        assert_eq!(tx.recovered().reclaimed, 8);
        let mut got = Vec::new();
        while let Ok(b) = rx2.try_recv_many(64) {
            got.extend(b.iter().map(|m| parse(m).1));
        }
        assert_eq!(got, (8..40).collect::<Vec<_>>());
    });
}

#[test]
fn mpmc_buffered_batch_is_withheld_until_flushed_then_arrives_whole_and_in_order() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(1 << 16, 64)).unwrap();
        let mut rx2 = rx.clone_handle().unwrap();
        for s in 0..10 {
            tx.send_buffered(&msg(0, s, 40)).unwrap();
        }
        // 64-byte messages take 128-byte slots.
        assert_eq!(tx.buffered_bytes(), 10 * 128);
        assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
        assert_eq!(rx2.try_recv().map(|m| m.len()), Err(RecvError::Empty));
        tx.flush();
        assert_eq!(tx.buffered_bytes(), 0);
        for s in 0..10 {
            let c = if s % 2 == 0 { &mut rx } else { &mut rx2 };
            assert_eq!(parse(&c.try_recv().unwrap()), (0, s));
        }
        assert_eq!(rx.recovered(), Default::default());
    });
}

#[test]
fn mpmc_plain_commit_bound_and_drop_publish_a_buffered_batch() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(1 << 16, 64)).unwrap();
        // A plain commit publishes the batch before it.
        tx.send_buffered(&msg(0, 0, 20)).unwrap();
        tx.send(&msg(0, 1, 20)).unwrap();
        assert_eq!(tx.buffered_bytes(), 0);
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, 0));
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, 1));
        // The bound: three slots' worth publishes on the third buffered commit.
        tx.set_batch_bytes(3 * 128);
        tx.send_buffered(&msg(0, 2, 20)).unwrap();
        tx.send_buffered(&msg(0, 3, 20)).unwrap();
        assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
        tx.send_buffered(&msg(0, 4, 20)).unwrap();
        assert_eq!(tx.buffered_bytes(), 0);
        for s in 2..5 {
            assert_eq!(parse(&rx.try_recv().unwrap()), (0, s));
        }
        // A bound of one slot publishes every commit.
        tx.set_batch_bytes(128);
        tx.send_buffered(&msg(0, 5, 20)).unwrap();
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, 5));
        // An abandoned reservation publishes too (as an empty slot that consumers skip).
        tx.set_batch_bytes(1 << 16);
        tx.send_buffered(&msg(0, 6, 20)).unwrap();
        drop(tx.try_reserve(8).unwrap());
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, 6));
        // Dropping the producer publishes the rest, and then the ring reads closed.
        tx.send_buffered(&msg(0, 7, 20)).unwrap();
        drop(tx);
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, 7));
        assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::PeerGone));
    });
}

#[test]
fn mpmc_buffered_producer_publishes_before_waiting_on_a_full_ring() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // 32 slots; a bound larger than the ring: only the full ring makes the producer publish.
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 100)).unwrap();
        tx.set_batch_bytes(usize::MAX);
        let consumer = std::thread::spawn(move || {
            for s in 0..100 {
                assert_eq!(parse(&rx.recv_timeout(Duration::from_secs(30)).unwrap()), (0, s));
            }
            rx
        });
        for s in 0..100 {
            tx.send_buffered(&msg(0, s, 50)).unwrap();
        }
        tx.flush();
        let _rx = consumer.join().unwrap();
        // try_send on a full ring publishes too: the caller's retry loop makes progress.
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 100)).unwrap();
        tx.set_batch_bytes(usize::MAX);
        let mut sent = 0;
        while sent < 33 {
            let attempt = tx.try_reserve(50).map(|mut slot| {
                slot.copy_from_slice(&msg(0, sent, 50));
                slot.commit_buffered();
            });
            match attempt {
                Ok(()) => sent += 1,
                Err(SendError::WouldBlock) => {
                    assert_eq!(tx.buffered_bytes(), 0, "a full ring found with a batch withheld");
                    assert_eq!(parse(&rx.try_recv().unwrap()), (0, 0));
                }
                Err(e) => panic!("{e}"),
            }
        }
        tx.flush();
        for s in 1..33 {
            assert_eq!(parse(&rx.try_recv().unwrap()), (0, s));
        }
    });
}

#[test]
fn mpmc_other_producers_wait_behind_a_withheld_batch_and_a_live_one_is_never_skipped() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut a, mut rx) = mpmc::channel(RingConfig::new(1 << 16, 64)).unwrap();
        let mut b = a.clone_handle().unwrap();
        // The stuck timeout elapses at once: every poll of the withheld slot asks whether its owner lives.
        rx.set_stuck_timeout(Duration::ZERO);
        a.send_buffered(&msg(0, 0, 30)).unwrap();
        b.send(&msg(1, 0, 30)).unwrap();
        a.send_buffered(&msg(0, 1, 30)).unwrap();
        for _ in 0..1000 {
            assert_eq!(rx.try_recv().map(|m| m.len()), Err(RecvError::Empty));
        }
        assert_eq!(rx.recovered().skipped, 0, "a live producer's withheld slot was skipped");
        a.flush();
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, 0));
        assert_eq!(parse(&rx.try_recv().unwrap()), (1, 0));
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, 1));
    });
}

#[test]
fn mpmc_producer_gone_with_a_withheld_batch_loses_only_its_first_message() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(1 << 16, 64)).unwrap();
        let mut other = tx.clone_handle().unwrap();
        rx.set_stuck_timeout(Duration::from_millis(1));
        for s in 0..5 {
            tx.send_buffered(&msg(0, s, 30)).unwrap();
        }
        other.send(&msg(1, 0, 30)).unwrap();
        // What a producer killed while buffering leaves: the first slot committed, never published,
        // and an entry whose owner is gone.
        tx.__forget_withheld();
        drop(tx);
        for s in 1..5 {
            assert_eq!(parse(&rx.recv_timeout(Duration::from_secs(10)).unwrap()), (0, s));
        }
        assert_eq!(parse(&rx.try_recv().unwrap()), (1, 0));
        assert_eq!(rx.recovered().skipped, 1);
    });
}

#[test]
fn mpmc_participant_table_is_bounded() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (tx, _rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
        let mut held = Vec::new();
        let err = loop {
            match tx.clone_handle() {
                Ok(p) => held.push(p),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, AttachError::Full));
        assert_eq!(held.len(), ringwire::ring::slots::MAX_PARTICIPANTS - 2);
        held.pop();
        assert!(tx.clone_handle().is_ok(), "a freed entry is reused");
    });
}

#[test]
fn broadcast_every_subscriber_sees_every_message_in_one_order() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        const N: u64 = 50_000;
        let (tx, rx) = broadcast::channel(RingConfig::new(1 << 14, 100), Mode::Backpressure).unwrap();
        let mut subs = vec![rx];
        for _ in 0..2 {
            subs.push(subs[0].clone_handle().unwrap());
        }
        let mut pubs = vec![tx];
        pubs.push(pubs[0].clone_handle().unwrap());
        let readers: Vec<_> = subs
            .into_iter()
            .map(|mut rx| {
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    loop {
                        match rx.recv_vec() {
                            Ok(m) => seen.push(parse(&m)),
                            Err(broadcast::RecvError::PeerGone) => return seen,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = pubs
            .into_iter()
            .enumerate()
            .map(|(p, mut tx)| {
                std::thread::spawn(move || {
                    for s in 0..N {
                        tx.send(&msg(p as u32, s, 12 + (s % 80) as usize)).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let seen: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(seen[0].len() as u64, 2 * N, "back-pressure loses nothing");
        for s in &seen[1..] {
            assert_eq!(s, &seen[0], "every subscriber sees the same order");
        }
        for p in 0..2u32 {
            let mine: Vec<u64> = seen[0].iter().filter(|x| x.0 == p).map(|x| x.1).collect();
            assert_eq!(mine, (0..N).collect::<Vec<_>>());
        }
    });
}

#[test]
fn broadcast_slow_subscriber_is_told_how_many_it_lost_and_never_sees_a_torn_message() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut slow) = broadcast::channel(RingConfig::new(4096, 100), Mode::Overwrite).unwrap();
        // 32 slots. Publish 100 without reading: the first 68 are gone.
        for s in 0..100 {
            tx.try_send(&msg(0, s, 40)).unwrap();
        }
        assert_eq!(slow.try_recv_vec(), Err(broadcast::RecvError::Lagged(68)));
        for s in 68..100 {
            assert_eq!(parse(&slow.try_recv_vec().unwrap()), (0, s));
        }
        assert_eq!(slow.try_recv_vec(), Err(broadcast::RecvError::Empty));

        // Now race a fast publisher against a reader that keeps falling behind.
        let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 100), Mode::Overwrite).unwrap();
        let w = std::thread::spawn(move || {
            for s in 0..200_000 {
                tx.send(&msg(0, s, 12 + (s % 88) as usize)).unwrap();
            }
        });
        let (mut got, mut lost, mut last) = (0u64, 0u64, None::<u64>);
        loop {
            match rx.recv_vec() {
                Ok(m) => {
                    let (_, s) = parse(&m);
                    assert!(last.is_none_or(|l| s > l), "out of order");
                    if let Some(l) = last {
                        assert_eq!(s - l - 1, 0, "a gap not reported as Lagged");
                    }
                    last = Some(s);
                    got += 1;
                }
                Err(broadcast::RecvError::Lagged(n)) => {
                    lost += n;
                    last = None;
                }
                Err(broadcast::RecvError::PeerGone) => break,
                Err(e) => panic!("{e}"),
            }
        }
        w.join().unwrap();
        assert!(got > 0);
        assert!(got + lost <= 200_000);
    });
}

#[test]
fn broadcast_late_subscriber_starts_at_the_newest_position() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut a) = broadcast::channel(RingConfig::new(4096, 64), Mode::Overwrite).unwrap();
        tx.send(b"before").unwrap();
        let mut b = a.clone_handle().unwrap();
        tx.send(b"after").unwrap();
        assert_eq!(a.recv_vec().unwrap(), b"before");
        assert_eq!(a.recv_vec().unwrap(), b"after");
        assert_eq!(b.recv_vec().unwrap(), b"after");
        let mut small = [0u8; 2];
        tx.send(b"longer").unwrap();
        assert_eq!(b.try_recv_into(&mut small), Err(broadcast::RecvError::BufferTooSmall { needed: 6 }));
        assert_eq!(b.try_recv_vec().unwrap(), b"longer");
    });
}

#[test]
fn broadcast_backpressure_waits_for_the_slowest_and_stops_waiting_when_it_leaves() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 100), Mode::Backpressure).unwrap();
        for s in 0..32 {
            tx.try_send(&msg(0, s, 20)).unwrap();
        }
        assert_eq!(tx.try_send(b"x"), Err(broadcast::SendError::WouldBlock));
        assert_eq!(
            tx.send_deadline(b"x", Instant::now() + Duration::from_millis(5)),
            Err(broadcast::SendError::Timeout)
        );
        assert_eq!(parse(&rx.try_recv_vec().unwrap()), (0, 0));
        tx.try_send(&msg(0, 32, 20)).unwrap();
        drop(rx);
        // No subscriber left: publishing never waits.
        for s in 33..100 {
            tx.try_send(&msg(0, s, 20)).unwrap();
        }
    });
}

#[test]
fn broadcast_publisher_gone_mid_write_is_skipped_after_the_stuck_timeout() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 64), Mode::Overwrite).unwrap();
        let mut tx2 = tx.clone_handle().unwrap();
        rx.set_stuck_timeout(Duration::from_millis(1));
        tx.__abandon_mid_write();
        drop(tx);
        tx2.send(b"behind it").unwrap();
        assert_eq!(rx.recv_vec_deadline(Instant::now() + Duration::from_secs(10)).unwrap(), b"behind it");
        assert_eq!(rx.recovered().skipped, 1);
        drop(tx2);
        assert_eq!(rx.recv_vec(), Err(broadcast::RecvError::PeerGone));
    });
}

/// `_timeout` forms saturate: a timeout too large to add to `Instant::now()` waits without a deadline
/// instead of panicking (it used to overflow `Instant + Duration` in MPMC whatever the queue's state).
#[test]
fn broadcast_buffered_batch_is_withheld_until_flushed_and_every_subscriber_gets_it_in_order() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut a) = broadcast::channel(RingConfig::new(1 << 16, 64), Mode::Overwrite).unwrap();
        let mut b = a.clone_handle().unwrap();
        for s in 0..10 {
            tx.send_buffered(&msg(0, s, 40)).unwrap();
        }
        assert_eq!(tx.buffered_bytes(), 10 * 128);
        assert!(matches!(a.try_recv_vec(), Err(broadcast::RecvError::Empty)));
        tx.flush();
        assert_eq!(tx.buffered_bytes(), 0);
        for rx in [&mut a, &mut b] {
            for s in 0..10 {
                assert_eq!(parse(&rx.try_recv_vec().unwrap()), (0, s));
            }
        }
        // A plain commit publishes the batch before it; the bound publishes by itself; drop publishes.
        tx.send_buffered(&msg(0, 10, 20)).unwrap();
        tx.send(&msg(0, 11, 20)).unwrap();
        tx.set_batch_bytes(2 * 128);
        tx.send_buffered(&msg(0, 12, 20)).unwrap();
        tx.send_buffered(&msg(0, 13, 20)).unwrap();
        assert_eq!(tx.buffered_bytes(), 0);
        tx.set_batch_bytes(usize::MAX);
        tx.send_buffered(&msg(0, 14, 20)).unwrap();
        drop(tx);
        for s in 10..15 {
            assert_eq!(parse(&a.try_recv_vec().unwrap()), (0, s));
        }
        assert!(matches!(a.try_recv_vec(), Err(broadcast::RecvError::PeerGone)));
        assert_eq!(a.recovered(), Default::default());
    });
}

#[test]
fn broadcast_buffered_publisher_never_waits_for_itself() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // Back-pressure, 32 slots: a subscriber that reads everything in another thread, and a
        // publisher whose batch is as large as allowed; and overwrite mode, where the publisher's own
        // claims come round to its withheld slot when another publisher fills the ring in between.
        let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 100), Mode::Backpressure).unwrap();
        tx.set_batch_bytes(usize::MAX);
        let reader = std::thread::spawn(move || {
            for s in 0..500 {
                assert_eq!(parse(rx.recv_timeout(Duration::from_secs(30)).unwrap()), (0, s));
            }
        });
        for s in 0..500 {
            tx.send_buffered(&msg(0, s, 50)).unwrap();
        }
        tx.flush();
        reader.join().unwrap();

        let (mut a, mut rx) = broadcast::channel(RingConfig::new(4096, 100), Mode::Overwrite).unwrap();
        let mut other = a.clone_handle().unwrap();
        a.set_batch_bytes(usize::MAX);
        a.send_buffered(&msg(0, 0, 50)).unwrap();
        for s in 0..31 {
            other.try_send(&msg(1, s, 50)).unwrap();
        }
        // Position 32 is the withheld slot's, a lap later: `a` publishes it first, not waits for it.
        a.send_buffered(&msg(0, 1, 50)).unwrap();
        assert_eq!(a.buffered_bytes(), 128, "position 32 withheld in turn");
        // Another publisher coming round to a withheld slot waits for it (a `try_` send: not at all).
        for s in 31..62 {
            other.try_send(&msg(1, s, 50)).unwrap();
        }
        assert!(matches!(other.try_send(&msg(1, 62, 50)), Err(broadcast::SendError::WouldBlock)));
        a.flush();
        other.try_send(&msg(1, 62, 50)).unwrap();
        let mut got = Vec::new();
        loop {
            match rx.try_recv_vec() {
                Ok(m) => got.push(parse(&m)),
                Err(broadcast::RecvError::Lagged(_)) => {}
                Err(broadcast::RecvError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // (The subscriber was lapped twice meanwhile: it reads the last lap.)
        assert_eq!(got.last(), Some(&(1, 62)));
        assert_eq!(rx.recovered().skipped, 0);
    });
}

#[test]
fn broadcast_publisher_gone_with_a_withheld_batch_loses_only_its_first_message_and_a_live_one_none() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = broadcast::channel(RingConfig::new(1 << 16, 64), Mode::Backpressure).unwrap();
        let mut other = tx.clone_handle().unwrap();
        rx.set_stuck_timeout(Duration::ZERO);
        other.send_buffered(&msg(1, 0, 30)).unwrap();
        for _ in 0..1000 {
            assert!(matches!(rx.try_recv_vec(), Err(broadcast::RecvError::Empty)));
        }
        assert_eq!(rx.recovered().skipped, 0, "a live publisher's withheld slot was skipped");
        other.flush();
        assert_eq!(parse(&rx.try_recv_vec().unwrap()), (1, 0));
        rx.set_stuck_timeout(Duration::from_millis(1));
        for s in 0..5 {
            tx.send_buffered(&msg(0, s, 30)).unwrap();
        }
        other.send(&msg(1, 1, 30)).unwrap();
        tx.__forget_withheld();
        drop(tx);
        for s in 1..5 {
            assert_eq!(parse(rx.recv_timeout(Duration::from_secs(10)).unwrap()), (0, s));
        }
        assert_eq!(parse(&rx.try_recv_vec().unwrap()), (1, 1));
        assert_eq!(rx.recovered().skipped, 1);
    });
}

#[test]
fn broadcast_recv_in_place_holds_back_publishers_until_dropped_and_copies_in_overwrite_mode() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // Back-pressure, 32 slots of 128 bytes: the guard views the slot, which no publisher takes again
        // before the guard is dropped.
        let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 100), Mode::Backpressure).unwrap();
        assert_eq!(rx.try_recv_in_place().map(|m| m.len()), Err(broadcast::RecvError::Empty));
        drop(tx.try_reserve(10).unwrap()); // an abandoned reservation: skipped
        for s in 0..31 {
            tx.send(&msg(0, s, 20 + s as usize)).unwrap();
        }
        let first = rx.recv_in_place().unwrap();
        assert_eq!(parse(&first), (0, 0));
        // The ring is full up to the held message's slot (the pad's was passed).
        tx.send(&msg(0, 31, 20)).unwrap();
        assert_eq!(tx.try_send(&msg(0, 32, 20)), Err(broadcast::SendError::WouldBlock));
        assert_eq!(tx.send_timeout(&msg(0, 32, 20), Duration::from_millis(5)), Err(broadcast::SendError::Timeout));
        assert_eq!(parse(&first), (0, 0), "the held message was not touched");
        drop(first);
        tx.try_send(&msg(0, 32, 20)).unwrap();
        for s in 1..33 {
            assert_eq!(parse(&rx.recv_in_place().unwrap()), (0, s));
        }
        drop(tx);
        assert_eq!(rx.recv_in_place().map(|m| m.len()), Err(broadcast::RecvError::PeerGone));

        // Overwrite: publishers never wait, so the guard views a copy, which a lap of new messages
        // leaves intact.
        let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 100), Mode::Overwrite).unwrap();
        tx.send(&msg(1, 0, 40)).unwrap();
        let held = rx.recv_in_place().unwrap();
        for s in 1..=40 {
            tx.try_send(&msg(1, s, 40)).unwrap();
        }
        assert_eq!(parse(&held), (1, 0));
        drop(held);
        assert!(matches!(rx.recv_in_place().map(|m| m.len()), Err(broadcast::RecvError::Lagged(_))));
    });
}

#[test]
fn timeouts_saturate_on_every_slot_ring() {
    ringwire_testkit::watchdog(Duration::from_secs(60), || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
        tx.send_timeout(b"x", Duration::MAX).unwrap();
        assert_eq!(&*rx.recv_timeout(Duration::MAX).unwrap(), b"x");
        let (mut tx, mut sub) = broadcast::channel(RingConfig::new(4096, 64), Mode::Backpressure).unwrap();
        tx.send_timeout(b"y", Duration::MAX).unwrap();
        assert_eq!(sub.recv_vec_timeout(Duration::MAX).unwrap(), b"y");
        tx.send_timeout(b"z", Duration::MAX).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(sub.recv_into_timeout(&mut buf, Duration::MAX).unwrap(), 1);
    });
}

/// Yields until `asleep()` reports a sleeper (a wait on a condition, not on time: the watchdog fails a
/// hang).
fn until_asleep(mut asleep: impl FnMut() -> u32) {
    while asleep() == 0 {
        std::thread::yield_now();
    }
}

#[test]
fn slot_ring_waiters_learn_of_a_clean_close_at_once_whatever_the_liveness_interval() {
    // The liveness interval is an hour, the watchdog two minutes: a waiter that noticed the close only
    // at its next liveness check fails the test.
    const HOUR: Duration = Duration::from_secs(3600);
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // An MPMC consumer asleep on an empty ring; the only producer leaves.
        let (tx, mut rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
        rx.set_liveness_interval(HOUR);
        let t = std::thread::spawn(move || rx.recv().map(|m| m.len()));
        until_asleep(|| tx.__sleepers().0);
        drop(tx);
        assert_eq!(t.join().unwrap(), Err(RecvError::PeerGone));

        // An MPMC producer asleep on a full ring; the only consumer leaves.
        let (mut tx, rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
        let watcher = tx.clone_handle().unwrap();
        tx.set_liveness_interval(HOUR);
        while tx.try_send(b"fill").is_ok() {}
        let t = std::thread::spawn(move || tx.send(b"more"));
        until_asleep(|| watcher.__sleepers().1);
        drop(rx);
        assert_eq!(t.join().unwrap(), Err(SendError::PeerGone));

        // A broadcast subscriber asleep; the only publisher leaves (after one message, still delivered).
        let (mut tx, mut sub) = broadcast::channel(RingConfig::new(4096, 64), Mode::Overwrite).unwrap();
        sub.set_liveness_interval(HOUR);
        let t = std::thread::spawn(move || {
            let first = sub.recv_vec();
            (first, sub.recv_vec())
        });
        tx.send(b"only").unwrap();
        until_asleep(|| tx.__sleepers().0);
        drop(tx);
        let (first, then) = t.join().unwrap();
        assert_eq!(first.as_deref(), Ok(&b"only"[..]));
        assert_eq!(then, Err(broadcast::RecvError::PeerGone));

        // A close that comes while the consumer still spins (or before it even calls): seen at its first
        // sleep, not a liveness interval later.
        for _ in 0..20 {
            let (tx, mut rx) = mpmc::channel(RingConfig::new(4096, 64)).unwrap();
            rx.set_liveness_interval(HOUR);
            let t = std::thread::spawn(move || rx.recv().map(|m| m.len()));
            drop(tx);
            assert_eq!(t.join().unwrap(), Err(RecvError::PeerGone));
        }
    });
}

#[test]
fn broadcast_publisher_waiting_for_an_earlier_laps_slot_is_woken_by_its_commit_or_flush() {
    // Overwrite mode, and back-pressure mode with no subscriber left: no subscriber wakes a publisher,
    // so the publication that frees the slot must. With an hour's liveness interval, a publisher that
    // only looked again at its next liveness check would hang past the watchdog.
    const HOUR: Duration = Duration::from_secs(3600);
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let slots = RingConfig::new(4096, 100).slots().unwrap().0 as u64;
        for (mode, buffered) in [(Mode::Overwrite, false), (Mode::Overwrite, true), (Mode::Backpressure, true)] {
            let (mut a, sub) = broadcast::channel(RingConfig::new(4096, 100), mode).unwrap();
            drop(sub);
            a.set_batch_bytes(usize::MAX);
            let waiter = a.clone_handle().unwrap();
            let mut b = a.clone_handle().unwrap();
            b.set_liveness_interval(HOUR);
            // B fills positions 1.. and its next send needs slot 0 again, which A holds.
            let start = |b: broadcast::HeapPublisher| {
                let mut b = b;
                for s in 1..slots {
                    b.try_send(&msg(1, s, 20)).unwrap();
                }
                let t = std::thread::spawn(move || b.send(&msg(1, slots, 20)));
                until_asleep(|| waiter.__sleepers().0); // on `data_ready`, which publications notify
                t
            };
            let t = if buffered {
                // A holds position 0 as the withheld first slot of a batch; its flush publishes it.
                a.send_buffered(&msg(0, 0, 20)).unwrap();
                let t = start(b);
                a.flush();
                t
            } else {
                // A holds position 0 as an open reservation; its commit publishes it.
                let mut g = a.try_reserve(20).unwrap();
                let t = start(b);
                g.copy_from_slice(&msg(0, 0, 20));
                g.commit();
                t
            };
            assert_eq!(t.join().unwrap(), Ok(()), "{mode:?}, buffered: {buffered}");
        }
    });
}
