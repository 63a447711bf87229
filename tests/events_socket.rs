//! The event layer in one process, on rings between threads: codecs, the socket's dispatch and
//! acknowledgements between two sockets, and the ack bookkeeping's bound (100,000 timed-out acks leave
//! nothing behind). Every test runs under a watchdog; none sleeps to pass or asserts a duration.

use ringwire::socket::{AckError, Codec, EventReceiver, EventSender, Ring, Socket};
use ringwire::{spsc, RingConfig};
use ringwire_testkit::watchdog;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

type Half = (Ring<spsc::HeapProducer>, Ring<spsc::HeapConsumer>);

fn pair() -> (Half, Half) {
    let (a_tx, b_rx) = spsc::channel(RingConfig::new(1 << 20, 4096)).unwrap();
    let (b_tx, a_rx) = spsc::channel(RingConfig::new(1 << 20, 4096)).unwrap();
    ((Ring(a_tx), Ring(a_rx)), (Ring(b_tx), Ring(b_rx)))
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    items: Vec<String>,
    price: f64,
}

#[test]
fn msgpack_codec_round_trip_and_is_smaller() {
    watchdog(LIMIT, || {
        let ((tx, _), (_, rx)) = pair();
        let mut tx = EventSender::with_codec(tx, Codec::MsgPack);
        let mut rx = EventReceiver::with_codec(rx, Codec::MsgPack);
        let order = Order { id: 42, items: vec!["tea".into(), "cake".into()], price: 3.5 };
        tx.emit("order", &order).unwrap();
        let ev = rx.recv().unwrap();
        assert_eq!(ev.decode::<Order>().unwrap(), order);
        let mut json = Vec::new();
        Codec::Json.encode(&order, &mut json).unwrap();
        assert!(ev.bytes().len() < json.len(), "msgpack {} bytes, json {}", ev.bytes().len(), json.len());
    })
}

#[test]
fn two_sockets_answer_each_others_acks() {
    watchdog(LIMIT, || {
        let ((a_tx, a_rx), (b_tx, b_rx)) = pair();
        let a = Socket::new(a_tx, a_rx);
        let b = Socket::new(b_tx, b_rx);
        b.on("add", |ev| {
            let (x, y): (i64, i64) = ev.decode().unwrap();
            assert!(ev.wants_ack());
            assert!(ev.ack(&(x + y)).unwrap());
            assert!(!ev.ack(&0).unwrap(), "answered once only");
        });
        // b asks a too, from inside its own listener thread's dispatch? No: from the main thread below.
        a.on("mul", |ev| {
            let (x, y): (i64, i64) = ev.decode().unwrap();
            ev.ack(&(x * y)).unwrap();
        });
        let b_loop = {
            let b = b.clone();
            std::thread::spawn(move || b.run())
        };
        let a_loop = {
            let a = a.clone();
            std::thread::spawn(move || a.run())
        };
        for i in 0..100i64 {
            let sum: i64 = a.emit_with_ack("add", &(i, 1), LIMIT).unwrap().decode().unwrap();
            assert_eq!(sum, i + 1);
            let prod: i64 = b.emit_with_ack("mul", &(i, 3), LIMIT).unwrap().decode().unwrap();
            assert_eq!(prod, i * 3);
        }
        assert_eq!((a.pending_acks(), b.pending_acks()), (0, 0));
        // An ack request nobody listens to: dropped and counted there, a timeout here.
        assert!(matches!(a.emit_with_ack("nobody", &1, Duration::ZERO), Err(AckError::Timeout)));
        a.close();
        b.close();
        a_loop.join().unwrap().unwrap();
        b_loop.join().unwrap().unwrap();
    })
}

#[test]
fn ack_bookkeeping_is_freed_after_100k_timeouts() {
    watchdog(LIMIT, || {
        let ((a_tx, a_rx), (b_tx, b_rx)) = pair();
        let a = Socket::new(a_tx, a_rx);
        // The far side listens to nothing: every request is dropped there, no reply ever comes.
        let b = Socket::new(b_tx, b_rx);
        let b_loop = {
            let b = b.clone();
            std::thread::spawn(move || b.run())
        };
        const N: u64 = 100_000;
        let mut max_pending = 0;
        for i in 0..N {
            match a.emit_with_ack("void", &i, Duration::ZERO) {
                Err(AckError::Timeout) => {}
                other => panic!("expected Timeout, got {other:?}"),
            }
            max_pending = max_pending.max(a.pending_acks());
        }
        assert_eq!(a.pending_acks(), 0, "every timed-out ack's entry is gone");
        assert_eq!(max_pending, 0, "the table never grows");
        // The far side dropped (and counted) every request that was sent: with a zero timeout a request
        // is one `try_` send, so while the ring is full some are refused at once (also a Timeout).
        a.close();
        b_loop.join().unwrap().unwrap();
        let dropped = b.stats().dropped;
        assert!(dropped > 0 && dropped <= N, "dropped {dropped}");
        assert_eq!(b.stats().dispatched, 0);
    })
}

#[test]
fn a_pending_ack_fails_when_the_peer_closes() {
    watchdog(LIMIT, || {
        let ((a_tx, a_rx), (b_tx, b_rx)) = pair();
        let a = Socket::new(a_tx, a_rx);
        let b = Socket::new(b_tx, b_rx);
        let waiter = {
            let a = a.clone();
            std::thread::spawn(move || a.emit_with_ack("never answered", &1, LIMIT))
        };
        while a.pending_acks() == 0 && !waiter.is_finished() {
            std::thread::yield_now();
        }
        // The peer goes away (drops its ring ends): a's receive side sees the end, the ack fails.
        drop(b);
        match waiter.join().unwrap() {
            Err(AckError::Closed) => {}
            other => panic!("expected Closed, got {other:?}"),
        }
        assert!(a.is_closed());
        assert_eq!(a.pending_acks(), 0);
    })
}
