//! The SPSC ring between threads of one process (heap storage): content, ordering, wrap-around, sizes,
//! close in both directions, blocking variants.

use ringwire::spsc::{channel, Consumer, Producer};
use ringwire::spsc::{RecvError, SendError};
use ringwire::{RingConfig, WaitStrategy};
use std::time::Duration;

/// Every test here runs under a watchdog that fails it (as a hang) after this long.
const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Fills message `i` of length `len` with bytes derived from both, so that any mix-up shows.
fn pattern(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn len_of(i: u64, max: usize) -> usize {
    (i.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as usize % (max + 1)
}

#[test]
fn ordering_and_content_across_threads() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let cfg = RingConfig::new(1 << 14, 1000);
        let (mut tx, mut rx) = channel(cfg).unwrap();
        const N: u64 = 300_000;
        let t = std::thread::spawn(move || {
            for i in 0..N {
                tx.send(&pattern(i, len_of(i, 1000))).unwrap();
            }
        });
        for i in 0..N {
            let m = rx.recv().unwrap();
            assert_eq!(&*m, &pattern(i, len_of(i, 1000))[..], "message {i}");
        }
        assert_eq!(rx.recv().unwrap_err(), RecvError::PeerGone);
        t.join().unwrap();
    });
}

#[test]
fn every_wrap_offset_and_size() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // For each message size, push enough messages to pass the end of a small ring at every alignment.
        let cfg = RingConfig::new(4096, 1000);
        for size in [0usize, 1, 7, 8, 9, 63, 64, 65, 500, 1000] {
            let (mut tx, mut rx) = channel(cfg).unwrap();
            for i in 0..(3 * 4096 / 8) as u64 {
                let msg = pattern(i, size);
                tx.try_send(&msg).unwrap();
                assert_eq!(&*rx.try_recv().unwrap(), &msg[..], "size {size} message {i}");
            }
        }
    });
}

#[test]
fn fills_then_full_then_drains() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let cfg = RingConfig::new(4096, 100);
        let (mut tx, mut rx) = channel(cfg).unwrap();
        let mut sent = 0u64;
        loop {
            match tx.try_send(&pattern(sent, 100)) {
                Ok(()) => sent += 1,
                Err(SendError::WouldBlock) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(sent >= 30, "a 4 KiB ring holds at least 30 records of 112 bytes, got {sent}");
        for i in 0..sent {
            assert_eq!(&*rx.try_recv().unwrap(), &pattern(i, 100)[..]);
        }
        assert_eq!(rx.try_recv().unwrap_err(), RecvError::Empty);
        // And the space came back.
        tx.try_send(b"again").unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"again");
    });
}

#[test]
fn max_size_and_oversize() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let cfg = RingConfig::new(8192, 3000);
        let (mut tx, mut rx) = channel(cfg).unwrap();
        let big = pattern(1, 3000);
        tx.try_send(&big).unwrap();
        assert_eq!(tx.try_send(&pattern(2, 3001)), Err(SendError::Oversize { len: 3001, max: 3000 }));
        assert!(matches!(tx.try_reserve(1 << 20), Err(SendError::Oversize { .. })));
        assert_eq!(&*rx.try_recv().unwrap(), &big[..]);
        assert_eq!(rx.try_recv().unwrap_err(), RecvError::Empty);
    });
}

#[test]
fn config_is_validated() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        assert!(channel(RingConfig::new(1000, 10)).is_err(), "not a power of two");
        assert!(channel(RingConfig::new(4096, 2048)).is_err(), "record larger than half");
        assert!(channel(RingConfig::new(4096, 2024)).is_ok());
    });
}

#[test]
fn zero_copy_reserve_commit_abandon_and_shrink() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = channel(RingConfig::new(4096, 256)).unwrap();
        {
            let mut g = tx.try_reserve(10).unwrap();
            g.copy_from_slice(b"abandoned!");
            // dropped: nothing published
        }
        assert_eq!(rx.try_recv().unwrap_err(), RecvError::Empty);
        let mut g = tx.try_reserve(200).unwrap();
        g[..3].copy_from_slice(b"abc");
        g.commit_len(3);
        tx.try_send(b"next").unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"abc");
        assert_eq!(&*rx.try_recv().unwrap(), b"next");
    });
}

#[test]
fn recv_into_keeps_message_when_buffer_small() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = channel(RingConfig::new(4096, 256)).unwrap();
        tx.send(b"twelve bytes").unwrap();
        let mut small = [0u8; 4];
        assert_eq!(rx.try_recv_into(&mut small), Err(RecvError::BufferTooSmall { needed: 12 }));
        let mut buf = [0u8; 64];
        assert_eq!(rx.recv_into(&mut buf), Ok(12));
        assert_eq!(&buf[..12], b"twelve bytes");
    });
}

#[test]
fn producer_close_drains_then_end_of_stream() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = channel(RingConfig::default()).unwrap();
        for i in 0..10u8 {
            tx.send(&[i]).unwrap();
        }
        tx.close();
        for i in 0..10u8 {
            assert_eq!(&*rx.recv().unwrap(), &[i]);
        }
        assert_eq!(rx.recv().unwrap_err(), RecvError::PeerGone);
        assert_eq!(rx.try_recv().unwrap_err(), RecvError::PeerGone);
    });
}

#[test]
fn consumer_close_disconnects_producer() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, rx) = channel(RingConfig::default()).unwrap();
        rx.close();
        assert_eq!(tx.send(b"x"), Err(SendError::PeerGone));
    });
}

#[test]
fn blocked_producer_wakes_on_consumer_close() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, rx) = channel(RingConfig::new(4096, 100)).unwrap();
        while tx.try_send(&[0; 100]).is_ok() {}
        let t = std::thread::spawn(move || tx.send(&[1; 100]));
        drop(rx);
        assert_eq!(t.join().unwrap(), Err(SendError::PeerGone));
    });
}

#[test]
fn blocked_consumer_wakes_on_producer_close() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (tx, mut rx) = channel(RingConfig::default()).unwrap();
        let t = std::thread::spawn(move || rx.recv().map(|m| m.to_vec()));
        drop(tx);
        assert_eq!(t.join().unwrap(), Err(RecvError::PeerGone));
    });
}

#[test]
fn timeouts() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (mut tx, mut rx) = channel(RingConfig::new(4096, 100)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_millis(5)).unwrap_err(), RecvError::Timeout);
        while tx.try_send(&[0; 100]).is_ok() {}
        assert_eq!(tx.send_timeout(&[0; 100], Duration::from_millis(5)), Err(SendError::Timeout));
    });
}

fn ping_pong(strategy: WaitStrategy) {
    let (mut a_tx, mut b_rx): (Producer<_>, Consumer<_>) = channel(RingConfig::default()).unwrap();
    let (mut b_tx, mut a_rx) = channel(RingConfig::default()).unwrap();
    for e in [&mut b_rx, &mut a_rx] {
        e.set_wait_strategy(strategy);
    }
    a_tx.set_wait_strategy(strategy);
    b_tx.set_wait_strategy(strategy);
    let t = std::thread::spawn(move || {
        while let Ok(m) = b_rx.recv() {
            let v = m.to_vec();
            drop(m);
            b_tx.send(&v).unwrap();
        }
    });
    for i in 0..20_000u64 {
        a_tx.send(&i.to_le_bytes()).unwrap();
        assert_eq!(&*a_rx.recv().unwrap(), &i.to_le_bytes());
    }
    drop(a_tx);
    t.join().unwrap();
}

#[test]
fn ping_pong_spin() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        ping_pong(WaitStrategy::Spin);
    });
}

#[test]
fn ping_pong_spin_yield() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        ping_pong(WaitStrategy::SpinYield);
    });
}

#[test]
fn ping_pong_adaptive_sleeps_and_wakes() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // A zero spin budget makes every wait go through the futex path.
        ping_pong(WaitStrategy::Adaptive { spin: Duration::ZERO });
    });
}

/// Both fence modes of the sleep/wake protocol, on a shared-memory ring between two threads, with every
/// wait going through the futex.
#[test]
fn sleep_wake_in_both_fence_modes() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        for asymmetric in [true, false] {
            let name = format!("ringwire-fences-{}-{asymmetric}", std::process::id());
            let ring = ringwire::ShmOptions::new(RingConfig::new(4096, 100))
                .asymmetric_fences(asymmetric)
                .create(&name)
                .unwrap();
            let zero_spin = WaitStrategy::Adaptive { spin: Duration::ZERO };
            let mut tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            tx.set_wait_strategy(zero_spin);
            rx.set_wait_strategy(zero_spin);
            let t = std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    tx.send(&i.to_le_bytes()).unwrap();
                }
            });
            for i in 0..20_000u32 {
                assert_eq!(&*rx.recv().unwrap(), &i.to_le_bytes());
            }
            assert_eq!(rx.recv().unwrap_err(), RecvError::PeerGone);
            t.join().unwrap();
        }
    });
}

/// A producer that committed a PAD record (reserving a message that had to wrap) and then went away
/// without committing the message leaves the tail hint behind the PAD. Once the consumer has read past the
/// PAD, a new producer must still attach, resume at the consumer's position, and deliver.
#[test]
fn reattach_after_an_uncommitted_wrap() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let name = format!("ringwire-reattach-pad-{}", std::process::id());
        let ring = ringwire::ShmRing::create(&name, RingConfig::new(4096, 1000)).unwrap();
        let mut rx = ring.consumer().unwrap();
        {
            let mut tx = ring.producer().unwrap();
            // Fill most of the first lap, then consume it, so the next big reservation needs a PAD.
            for len in [1000, 1000, 1000, 200] {
                tx.try_send(&vec![1; len]).unwrap();
                assert_eq!(rx.try_recv().unwrap().len(), len);
            }
            // 3 * 1008 + 208 = 3232 bytes used: a 1008-byte record doesn't fit in the last 864.
            // Reserved and abandoned: the PAD stays committed, the message never is.
            let _abandoned = tx.try_reserve(1000).unwrap();
        }
        assert_eq!(rx.try_recv().unwrap_err(), RecvError::PeerGone, "the PAD is skipped, nothing else arrives");
        let mut tx = ring.producer().expect("a new producer attaches after the PAD");
        tx.try_send(b"after").unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"after");
    });
}

/// `_timeout` forms saturate: `Duration::MAX` waits without a deadline instead of panicking.
#[test]
fn spsc_timeouts_saturate() {
    ringwire_testkit::watchdog(std::time::Duration::from_secs(60), || {
        let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default()).unwrap();
        tx.send_timeout(b"x", std::time::Duration::MAX).unwrap();
        assert_eq!(&*rx.recv_timeout(std::time::Duration::MAX).unwrap(), b"x");
        let mut slot = tx.reserve_timeout(1, std::time::Duration::MAX).unwrap();
        slot[0] = b'y';
        slot.commit();
        assert_eq!(&*rx.recv_timeout(std::time::Duration::MAX).unwrap(), b"y");
    });
}

/// Adaptive waiting with a one-hour liveness interval: a lost wake-up in the sleep/wake protocol would
/// leave a side asleep for an hour instead of being papered over by the default 50 ms liveness poll, so
/// the watchdog fails the test. Each side spins for a bounded time and then sleeps on the futex, and a
/// ping-pong between two threads makes both paths (caught while spinning, woken from sleep) frequent.
#[test]
fn adaptive_ping_pong_needs_no_liveness_poll() {
    use ringwire::WaitStrategy;
    use std::time::Duration;
    ringwire_testkit::watchdog(Duration::from_secs(120), || {
        let hour = Duration::from_secs(3600);
        let (mut ping_tx, mut ping_rx) = ringwire::spsc::channel(ringwire::RingConfig::default()).unwrap();
        let (mut pong_tx, mut pong_rx) = ringwire::spsc::channel(ringwire::RingConfig::default()).unwrap();
        ping_tx.set_wait_strategy(WaitStrategy::default());
        pong_tx.set_wait_strategy(WaitStrategy::default());
        ping_rx.set_wait_strategy(WaitStrategy::default());
        pong_rx.set_wait_strategy(WaitStrategy::default());
        ping_tx.set_liveness_interval(hour);
        pong_tx.set_liveness_interval(hour);
        ping_rx.set_liveness_interval(hour);
        pong_rx.set_liveness_interval(hour);
        const ROUNDS: u64 = 20_000;
        let echo = std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                let m = ping_rx.recv_vec().unwrap();
                pong_tx.send(&m).unwrap();
            }
        });
        for i in 0..ROUNDS {
            ping_tx.send(&i.to_le_bytes()).unwrap();
            assert_eq!(pong_rx.recv_vec().unwrap(), i.to_le_bytes());
        }
        echo.join().unwrap();
    });
}
