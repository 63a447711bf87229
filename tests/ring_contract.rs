//! One contract, one suite: every test below runs on each ring kind (SPSC, MPMC, broadcast) over each
//! storage (heap: threads of one process; shared memory: an anonymous memfd region), written once
//! against `RingSender` / `RingReceiver` and the shared `ErrorKind`. Broadcast rings run in
//! back-pressure mode, so that a full ring and a lossless stream mean the same as for the queues.
//! Every test runs under a watchdog; none sleeps to pass or asserts a duration.

use ringwire::broadcast::{self, Mode};
use ringwire::{mpmc, spsc, ErrorKind, RingConfig, RingError, RingReceiver, RingSender};
use ringwire::{Commit, ShmBroadcast, ShmQueue, ShmRing};
use ringwire_testkit::{check, message, watchdog};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const MAX: usize = 1024;

fn cfg() -> RingConfig {
    RingConfig::new(1 << 16, MAX)
}

/// The kind of a result's error, for assertions.
fn kind<T, E: RingError>(r: Result<T, E>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

/// Whether the sending side learns that every receiver has gone (broadcast publishers never do: a
/// broadcast ring has no "no subscribers" state).
trait Ring: Sized {
    type Tx: RingSender + Send + 'static;
    type Rx: RingReceiver + Send + 'static;
    const SENDER_SEES_CLOSE: bool = true;
    fn make() -> (Self::Tx, Self::Rx);
}

struct SpscHeap;
impl Ring for SpscHeap {
    type Tx = spsc::HeapProducer;
    type Rx = spsc::HeapConsumer;
    fn make() -> (Self::Tx, Self::Rx) {
        spsc::channel(cfg()).unwrap()
    }
}

struct SpscShm;
impl Ring for SpscShm {
    type Tx = ringwire::shm::ShmProducer;
    type Rx = ringwire::shm::ShmConsumer;
    fn make() -> (Self::Tx, Self::Rx) {
        let ring = ShmRing::anonymous(cfg()).unwrap();
        (ring.producer().unwrap(), ring.consumer().unwrap())
    }
}

struct MpmcHeap;
impl Ring for MpmcHeap {
    type Tx = mpmc::HeapProducer;
    type Rx = mpmc::HeapConsumer;
    fn make() -> (Self::Tx, Self::Rx) {
        mpmc::channel(cfg()).unwrap()
    }
}

struct MpmcShm;
impl Ring for MpmcShm {
    type Tx = ringwire::shm::ShmQueueProducer;
    type Rx = ringwire::shm::ShmQueueConsumer;
    fn make() -> (Self::Tx, Self::Rx) {
        let q = ShmQueue::anonymous(cfg()).unwrap();
        (q.producer().unwrap(), q.consumer().unwrap())
    }
}

struct BroadcastHeap;
impl Ring for BroadcastHeap {
    type Tx = broadcast::HeapPublisher;
    type Rx = broadcast::HeapSubscriber;
    const SENDER_SEES_CLOSE: bool = false;
    fn make() -> (Self::Tx, Self::Rx) {
        broadcast::channel(cfg(), Mode::Backpressure).unwrap()
    }
}

struct BroadcastShm;
impl Ring for BroadcastShm {
    type Tx = ringwire::shm::ShmPublisher;
    type Rx = ringwire::shm::ShmSubscriber;
    const SENDER_SEES_CLOSE: bool = false;
    fn make() -> (Self::Tx, Self::Rx) {
        let b = ShmBroadcast::anonymous(cfg(), Mode::Backpressure).unwrap();
        let rx = b.subscriber().unwrap();
        (b.publisher().unwrap(), rx)
    }
}

fn round_trip<R: Ring>() {
    let (mut tx, mut rx) = R::make();
    assert_eq!(kind(rx.try_recv().map(|m| m.len())), Some(ErrorKind::Empty));
    tx.send(b"hello").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"hello");
    tx.try_send(b"again").unwrap();
    assert_eq!(&*rx.try_recv().unwrap(), b"again");
    tx.send_deadline(b"by deadline", Instant::now() + LIMIT).unwrap();
    assert_eq!(&*rx.recv_deadline(Instant::now() + LIMIT).unwrap(), b"by deadline");
    tx.send_timeout(b"by timeout", LIMIT).unwrap();
    assert_eq!(rx.recv_vec().unwrap(), b"by timeout");
    assert_eq!(tx.max_message(), MAX);
    assert_eq!(rx.max_message(), MAX);
}

fn order_10k<R: Ring>() {
    const N: u64 = 10_000;
    let (mut tx, mut rx) = R::make();
    let sender = std::thread::spawn(move || {
        for seq in 0..N {
            tx.send(&message(seq, MAX)).unwrap();
        }
    });
    for seq in 0..N {
        let m = rx.recv().unwrap();
        assert!(check(&m, seq, MAX), "message {seq} wrong or out of order ({} bytes)", m.len());
    }
    sender.join().unwrap();
}

fn max_size<R: Ring>() {
    let (mut tx, mut rx) = R::make();
    let big = message(7, MAX).into_iter().chain(std::iter::repeat(0x5a)).take(MAX).collect::<Vec<_>>();
    tx.send(&big).unwrap();
    assert_eq!(&*rx.recv().unwrap(), &big[..]);
    let mut slot = tx.reserve(MAX).unwrap();
    slot.copy_from_slice(&big);
    slot.commit();
    assert_eq!(rx.recv_vec().unwrap(), big);
}

fn oversize_refused<R: Ring>() {
    let (mut tx, mut rx) = R::make();
    let over = vec![1u8; MAX + 1];
    assert_eq!(kind(tx.try_send(&over)), Some(ErrorKind::Oversize));
    assert_eq!(kind(tx.send(&over)), Some(ErrorKind::Oversize));
    assert_eq!(kind(tx.send_timeout(&over, LIMIT)), Some(ErrorKind::Oversize));
    assert_eq!(kind(tx.reserve(MAX + 1).map(drop)), Some(ErrorKind::Oversize));
    // Nothing was written, and the ring goes on.
    assert_eq!(kind(rx.try_recv().map(|m| m.len())), Some(ErrorKind::Empty));
    tx.send(b"after").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"after");
}

fn close_seen_by_receiver<R: Ring>() {
    let (mut tx, mut rx) = R::make();
    for i in 0..3u8 {
        tx.send(&[i; 10]).unwrap();
    }
    drop(tx);
    for i in 0..3u8 {
        assert_eq!(&*rx.recv().unwrap(), &[i; 10], "everything sent before the close is delivered");
    }
    assert_eq!(kind(rx.recv().map(|m| m.len())), Some(ErrorKind::PeerGone));
    assert_eq!(kind(rx.try_recv().map(|m| m.len())), Some(ErrorKind::PeerGone));
}

fn close_seen_by_sender<R: Ring>() {
    let (mut tx, rx) = R::make();
    drop(rx);
    if R::SENDER_SEES_CLOSE {
        // Blocking sends return once the ring is full and nobody is left to drain it.
        let err = loop {
            match tx.send(b"into the void") {
                Ok(()) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::PeerGone);
    } else {
        // A publisher with no subscriber left never waits (no one to wait for) and never fails.
        for _ in 0..1000 {
            tx.send(b"into the void").unwrap();
        }
    }
}

fn timeouts<R: Ring>() {
    let (mut tx, mut rx) = R::make();
    let short = Duration::from_millis(5);
    assert_eq!(kind(rx.recv_timeout(short).map(|m| m.len())), Some(ErrorKind::Timeout));
    assert_eq!(kind(rx.recv_deadline(Instant::now() + short).map(|m| m.len())), Some(ErrorKind::Timeout));
    // Fill the ring, then every waiting send form times out.
    let mut sent = 0u64;
    loop {
        match tx.try_send(&[3; 100]) {
            Ok(()) => sent += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                break;
            }
        }
    }
    assert!(sent > 0);
    assert_eq!(kind(tx.send_timeout(&[3; 100], short)), Some(ErrorKind::Timeout));
    assert_eq!(kind(tx.send_deadline(&[3; 100], Instant::now() + short)), Some(ErrorKind::Timeout));
    assert_eq!(kind(tx.reserve_timeout(100, short).map(drop)), Some(ErrorKind::Timeout));
    assert_eq!(kind(tx.reserve_deadline(100, Instant::now() + short).map(drop)), Some(ErrorKind::Timeout));
    assert_eq!(kind(tx.try_reserve(100).map(drop)), Some(ErrorKind::WouldBlock));
    // Timeouts too large to be deadlines saturate: they wait (here: not at all) and never panic.
    assert_eq!(rx.recv_timeout(Duration::MAX).unwrap().len(), 100);
    for _ in 1..sent {
        assert_eq!(rx.recv_vec().unwrap(), [3; 100]);
    }
    tx.send_timeout(b"x", Duration::MAX).unwrap();
    let mut slot = tx.reserve_timeout(1, Duration::MAX).unwrap();
    slot[0] = b'y';
    slot.commit();
    assert_eq!(&*rx.recv_timeout(Duration::MAX).unwrap(), b"x");
    assert_eq!(&*rx.recv().unwrap(), b"y");
}

fn zero_copy_abandon<R: Ring>() {
    let (mut tx, mut rx) = R::make();
    let mut slot = tx.reserve(5).unwrap();
    slot.copy_from_slice(b"never");
    drop(slot); // abandoned: nothing is delivered
    assert_eq!(kind(rx.try_recv().map(|m| m.len())), Some(ErrorKind::Empty));
    let mut slot = tx.try_reserve(8).unwrap();
    slot.copy_from_slice(b"in place");
    slot.commit();
    let mut slot = tx.reserve_deadline(8, Instant::now() + LIMIT).unwrap();
    slot[..3].copy_from_slice(b"cut");
    slot.commit_len(3);
    assert_eq!(&*rx.recv().unwrap(), b"in place");
    assert_eq!(&*rx.recv().unwrap(), b"cut");
    assert_eq!(kind(rx.try_recv().map(|m| m.len())), Some(ErrorKind::Empty));
}

fn recv_into_keeps_what_does_not_fit<R: Ring>() {
    let (mut tx, mut rx) = R::make();
    tx.send(b"twelve bytes").unwrap();
    let mut small = [0u8; 4];
    assert_eq!(kind(rx.try_recv_into(&mut small)), Some(ErrorKind::BufferTooSmall));
    assert_eq!(kind(rx.recv_into(&mut small)), Some(ErrorKind::BufferTooSmall));
    let mut buf = [0u8; 64];
    assert_eq!(rx.recv_into(&mut buf).unwrap(), 12);
    assert_eq!(&buf[..12], b"twelve bytes");
    tx.send(b"vec").unwrap();
    let v = rx.recv_vec().unwrap();
    assert_eq!(v, b"vec");
}

/// A frame committed with an `ext` (event-name length) is received with it; plain sends have ext 0.
fn ext_round_trip<R: Ring>() {
    let (mut tx, mut rx) = R::make();
    let mut slot = tx.try_reserve(16).unwrap();
    slot[..10].copy_from_slice(b"chat hello");
    slot.commit_ext(10, 4);
    tx.try_send(b"plain").unwrap();
    let mut slot = tx.try_reserve(3).unwrap();
    slot.copy_from_slice(b"abc");
    slot.commit_ext(3, 3);
    let mut buf = b"old bytes, replaced".to_vec();
    assert_eq!(rx.try_recv_frame_into(&mut buf).unwrap(), 4);
    assert_eq!(buf, b"chat hello");
    assert_eq!(rx.recv_frame_into(Some(Instant::now() + LIMIT), &mut buf).unwrap(), 0);
    assert_eq!(buf, b"plain");
    assert_eq!(rx.recv_frame_into(None, &mut buf).unwrap(), 3);
    assert_eq!(buf, b"abc");
}

macro_rules! contract {
    ($($m:ident => $ring:ident),* $(,)?) => {$(
        mod $m {
            use super::*;
            #[test]
            fn round_trip() { watchdog(LIMIT, super::round_trip::<super::$ring>) }
            #[test]
            fn order_10k() { watchdog(LIMIT, super::order_10k::<super::$ring>) }
            #[test]
            fn max_size() { watchdog(LIMIT, super::max_size::<super::$ring>) }
            #[test]
            fn oversize_refused_then_usable() { watchdog(LIMIT, super::oversize_refused::<super::$ring>) }
            #[test]
            fn close_seen_by_receiver() { watchdog(LIMIT, super::close_seen_by_receiver::<super::$ring>) }
            #[test]
            fn close_seen_by_sender() { watchdog(LIMIT, super::close_seen_by_sender::<super::$ring>) }
            #[test]
            fn timeouts() { watchdog(LIMIT, super::timeouts::<super::$ring>) }
            #[test]
            fn zero_copy_abandon() { watchdog(LIMIT, super::zero_copy_abandon::<super::$ring>) }
            #[test]
            fn ext_round_trip() { watchdog(LIMIT, super::ext_round_trip::<super::$ring>) }
            #[test]
            fn recv_into_keeps_what_does_not_fit() {
                watchdog(LIMIT, super::recv_into_keeps_what_does_not_fit::<super::$ring>)
            }
        }
    )*};
}

// `cargo test -p ringwire-testkit --test ring_contract mpmc_shm` runs one ring's suite.
contract! {
    spsc_heap => SpscHeap,
    spsc_shm => SpscShm,
    mpmc_heap => MpmcHeap,
    mpmc_shm => MpmcShm,
    broadcast_heap => BroadcastHeap,
    broadcast_shm => BroadcastShm,
}
