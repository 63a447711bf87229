//! The amqp adapter against the machine's RabbitMQ broker (127.0.0.1:5672, guest/guest, or
//! `$RINGWIRE_AMQP_URL`), each test in a virtual host of its own that is deleted when it ends: round trip
//! and order, size limits on both sides, publisher confirms, manual acknowledgements and prefetch, a
//! consumer process killed with SIGKILL while holding messages, connections closed by the broker in the
//! middle of a stream, a real broker restart mid-stream (a private node, `stop_app` / `start_app`: the
//! machine's broker is never restarted), a broker that stays away (its vhost deleted), and no broker at
//! all. Every test runs under a watchdog; none sleeps or asserts a
//! duration.

use ringwire::transport::amqp::{AckMode, Consumer, Options, Producer};
use ringwire::transport::codec::FrameError;
use ringwire::transport::{Receiver, Sender, TransportRecvError, TransportSendError};
use ringwire_testkit::rabbitmq::Vhost;
use ringwire_testkit::{check, message, seq_of, watchdog};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest any single wait may take before the test fails as a hang.
const LONG: Duration = Duration::from_secs(30);
/// The watchdog of each test.
const LIMIT: Duration = Duration::from_secs(120);

fn soon() -> Instant {
    Instant::now() + LONG
}

fn opts(max_message: usize, prefetch: u16) -> Options {
    Options { max_message, prefetch, ..Options::default() }
}

/// Message `seq` of the tests below: its number, then `message(seq, 500)` of the test stream.
fn item(seq: u64) -> Vec<u8> {
    let mut m = seq.to_le_bytes().to_vec();
    m.extend_from_slice(&message(seq, 500));
    m
}

/// The number of a message made by [`item`], checking every byte.
fn number(m: &[u8]) -> u64 {
    let seq = seq_of(m).expect("a numbered message");
    assert!(check(&m[8..], seq, 500), "message {seq} damaged");
    seq
}

/// Receives until `n` messages arrived (or the deadline ran out: a failure), counting each test-stream
/// sequence number.
fn receive_all(rx: &mut Consumer, n: u64) -> BTreeMap<u64, u64> {
    let mut seen = BTreeMap::new();
    while (seen.len() as u64) < n {
        let m = rx.recv_deadline(soon()).expect("every message arrives");
        *seen.entry(number(&m)).or_insert(0) += 1;
    }
    seen
}

#[test]
fn round_trip_in_order() {
    watchdog(LIMIT, || {
        let v = Vhost::create().unwrap();
        let mut rx = Consumer::connect(&v.addr("jobs")).unwrap();
        let mut tx = Producer::connect(&v.addr("jobs")).unwrap();
        for msg in [&b"hello"[..], b"", &[0xff; 300]] {
            tx.send(msg).unwrap();
            assert_eq!(rx.recv_deadline(soon()).unwrap(), msg);
        }
        const N: u64 = 1000;
        for seq in 0..N {
            tx.send(&message(seq, 1000)).unwrap();
        }
        for seq in 0..N {
            let m = rx.recv_deadline(soon()).unwrap();
            assert!(check(&m, seq, 1000), "message {seq} wrong or out of order");
        }
        assert_eq!(rx.take_report(), None, "nothing lost, nothing repeated");
        // Nothing more: try_recv and deadlines are honoured.
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
        assert!(matches!(
            rx.recv_deadline(Instant::now() + Duration::from_millis(50)),
            Err(TransportRecvError::Timeout)
        ));
        rx.close();
        assert!(matches!(rx.recv(), Err(TransportRecvError::Closed)));
        tx.close().unwrap();
        assert!(matches!(tx.send(b"x"), Err(TransportSendError::Closed)));
        // Everything was acknowledged: nothing is left in the queue.
        assert_eq!(v.queue_len("jobs").unwrap(), 0);
    })
}

#[test]
fn oversize_both_ways() {
    watchdog(LIMIT, || {
        let v = Vhost::create().unwrap();
        let mut rx = Consumer::with_options(&v.addr("q"), opts(100, 64)).unwrap();
        let mut small = Producer::with_options(&v.addr("q"), opts(100, 64)).unwrap();
        let mut big = Producer::with_options(&v.addr("q"), opts(1000, 64)).unwrap();
        assert_eq!((small.max_message(), rx.max_message()), (100, 100));
        // Refused on send, nothing sent, the producer still usable.
        let e = small.send(&[1; 101]).unwrap_err();
        assert!(matches!(e, TransportSendError::Oversize { len: 101, max: 100 }), "{e:?}");
        small.send(&[2; 100]).unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), [2; 100]);
        // Refused on receive (one message skipped and acknowledged), the consumer still usable.
        big.send(&[3; 101]).unwrap();
        big.send(&[4; 10]).unwrap();
        let e = rx.recv_deadline(soon()).unwrap_err();
        assert!(matches!(e, TransportRecvError::BadFrame(FrameError::Oversize { len: 101, max: 100 })), "{e:?}");
        assert!(!e.is_fatal());
        assert_eq!(rx.recv_deadline(soon()).unwrap(), [4; 10]);
        rx.close();
        assert_eq!(v.queue_len("q").unwrap(), 0, "the oversize message was acknowledged too");
    })
}

#[test]
fn publisher_confirms() {
    watchdog(LIMIT, || {
        let v = Vhost::create().unwrap();
        let mut tx = Producer::connect(&v.addr("confirmed")).unwrap();
        // A send returns once the broker has the message: with no consumer, the queue holds every one.
        for seq in 0..20 {
            tx.send(&message(seq, 500)).unwrap();
            assert_eq!(v.queue_len("confirmed").unwrap(), seq + 1);
        }
        // The queue is durable and the messages persistent: a consumer that comes later gets them all.
        let mut rx = Consumer::connect(&v.addr("confirmed")).unwrap();
        for seq in 0..20 {
            assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 500));
        }
        rx.close();
        // A message the broker can't route (its queue was deleted) comes back: the send fails.
        v.delete_queue("confirmed").unwrap();
        let e = tx.send(b"nowhere").unwrap_err();
        assert!(matches!(e, TransportSendError::Io(_)), "{e:?}");
    })
}

#[test]
fn manual_acks_and_prefetch() {
    watchdog(LIMIT, || {
        let v = Vhost::create().unwrap();
        let mut a = Consumer::with_options(&v.addr("work"), opts(1000, 3)).unwrap();
        a.set_ack_mode(AckMode::Manual);
        let mut tx = Producer::connect(&v.addr("work")).unwrap();
        for seq in 0..10 {
            tx.send(&item(seq)).unwrap();
        }
        for seq in 0..3 {
            assert_eq!(number(&a.recv_deadline(soon()).unwrap()), seq);
        }
        // The broker sends A no more than its prefetch (3) while A acknowledges nothing: a second
        // consumer gets all the others.
        let mut b = Consumer::with_options(&v.addr("work"), opts(1000, 3)).unwrap();
        let seen = receive_all(&mut b, 7);
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (3..10).collect::<Vec<_>>());
        b.close();
        assert_eq!(v.queue_len("work").unwrap(), 3, "A's three are unacknowledged");
        a.ack().unwrap();
        // A takes one more and is dropped without acknowledging: that message and the two the broker had
        // sent ahead (prefetch 3) go back to the queue, and to the next consumer, marked redelivered. (The
        // broker hands a message to a consumer with credit as it enqueues it, before it confirms the
        // send, so all three are A's once the last send returns; and A gets any only once the broker has
        // taken its acknowledgement, which freed the credit.)
        for seq in 10..13 {
            tx.send(&item(seq)).unwrap();
        }
        assert_eq!(number(&a.recv_deadline(soon()).unwrap()), 10);
        assert_eq!(v.queue_len("work").unwrap(), 3, "0-2 acknowledged, 10-12 held by A");
        drop(a);
        let mut c = Consumer::connect(&v.addr("work")).unwrap();
        let seen = receive_all(&mut c, 3);
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [10, 11, 12]);
        let report = c.take_report().expect("redeliveries are reported");
        assert_eq!((report.redelivered, report.duplicates, report.lost()), (3, 0, 0), "{report:?}");
    })
}

#[test]
fn killed_consumer_process_messages_go_to_another() {
    watchdog(LIMIT, || {
        let v = Vhost::create().unwrap();
        let addr = v.addr("tasks");
        let mut tx = Producer::connect(&addr).unwrap();
        for seq in 0..8 {
            tx.send(&item(seq)).unwrap();
        }
        // A consumer process takes five and is killed with SIGKILL before acknowledging them.
        let mut child = ringwire_testkit::peer::command(ringwire_testkit::peer::misbehave::Mode::TakeAmqp)
            .args(["--addr", &addr, "--count", "5", "--max-message", "1000"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "got 5");
        child.kill().unwrap();
        child.wait().unwrap();
        // Another consumer gets all eight: the three never taken and the five redelivered.
        let mut rx = Consumer::with_options(&addr, opts(1000, 64)).unwrap();
        let seen = receive_all(&mut rx, 8);
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
        assert!(seen.values().all(|&n| n == 1));
        let report = rx.take_report().expect("redeliveries are reported");
        assert_eq!(report.redelivered, 5, "{report:?}");
        rx.close();
        assert_eq!(v.queue_len("tasks").unwrap(), 0);
    })
}

#[test]
fn connections_closed_by_the_broker_mid_stream() {
    watchdog(LIMIT, || {
        let v = Arc::new(Vhost::create().unwrap());
        let addr = v.addr("stream");
        let mut rx = Consumer::with_options(&addr, opts(1000, 16)).unwrap();
        let mut tx = Producer::connect(&addr).unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        // The producer sends until 200 messages after the broker closed every connection.
        let producer = {
            let (closed, sent) = (closed.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut seq = 0;
                let mut after = 0;
                while after < 200 {
                    if closed.load(Ordering::Acquire) {
                        after += 1;
                    }
                    // A send whose connection was lost before the confirm is published again on a new
                    // connection; it returns once the broker confirmed it.
                    tx.send_deadline(&item(seq), soon()).expect("sent, across the reconnection");
                    seq += 1;
                    sent.store(seq, Ordering::Release);
                }
                tx.reconnects()
            })
        };
        let mut seen = BTreeMap::new();
        let mut delivered = 0u64;
        let mut note = |m: Vec<u8>, seen: &mut BTreeMap<u64, u64>| {
            *seen.entry(number(&m)).or_insert(0) += 1;
            delivered += 1;
        };
        for _ in 0..100 {
            note(rx.recv_deadline(soon()).unwrap(), &mut seen);
        }
        v.close_connections().unwrap();
        closed.store(true, Ordering::Release);
        let producer_reconnects = producer.join().unwrap();
        let total = sent.load(Ordering::Acquire);
        while (seen.len() as u64) < total {
            note(rx.recv_deadline(soon()).expect("every confirmed message arrives"), &mut seen);
        }
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..total).collect::<Vec<_>>(), "nothing lost");
        let report = rx.take_report().expect("the reconnection is reported");
        assert!(report.reconnects >= 1, "{report:?}");
        assert!(producer_reconnects >= 1);
        // Every extra delivery is accounted for: a redelivery (the consumer's unacknowledged messages) or a
        // duplicate (a message the producer published again after losing its confirm).
        let extra = delivered - seen.len() as u64;
        assert!(extra <= report.redelivered + report.duplicates, "{extra} extra, {report:?}");
        assert_eq!(report.lost(), 0, "{report:?}");
        rx.close();
    })
}

#[test]
fn a_broker_that_stays_away_is_an_error_not_a_hang() {
    watchdog(LIMIT, || {
        let v = Vhost::create().unwrap();
        let o = Options { give_up: Some(Duration::from_secs(1)), ..Options::default() };
        let mut tx = Producer::with_options(&v.addr("q"), o.clone()).unwrap();
        let mut rx = Consumer::with_options(&v.addr("q"), o).unwrap();
        tx.send(b"one").unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"one");
        // Deleting the vhost closes its connections, and the broker refuses new ones: to both halves the
        // broker is gone. Blocking calls give up after `give_up`, deadline calls time out, try_ calls fail
        // at once.
        drop(v);
        assert!(matches!(tx.send(b"two"), Err(TransportSendError::PeerReset)));
        assert!(matches!(rx.recv(), Err(TransportRecvError::PeerReset)));
        let soon_over = Instant::now() + Duration::from_millis(300);
        assert!(matches!(tx.send_deadline(b"three", soon_over), Err(TransportSendError::Timeout)));
        assert!(matches!(rx.recv_deadline(soon_over), Err(TransportRecvError::Timeout)));
        assert!(matches!(tx.try_send(b"four"), Err(TransportSendError::PeerReset)));
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::PeerReset)));
    })
}

#[test]
fn closed_halves_leave_no_connection_behind() {
    watchdog(LIMIT, || {
        let v = Vhost::create().unwrap();
        for round in 0..10u8 {
            let mut tx = Producer::connect(&v.addr("q")).unwrap();
            let mut rx = Consumer::connect(&v.addr("q")).unwrap();
            tx.send(&[round]).unwrap();
            assert_eq!(rx.recv_deadline(soon()).unwrap(), [round]);
            tx.close().unwrap();
            rx.close();
        }
        // close() returns once the broker has closed the connection.
        assert_eq!(v.connections().unwrap(), 0);
        assert_eq!(v.queue_len("q").unwrap(), 0, "every message was acknowledged at close");
    })
}

#[test]
fn no_broker_is_an_error_not_a_hang() {
    watchdog(LIMIT, || {
        // A port with nothing listening on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("amqp://127.0.0.1:{port}/q");
        assert!(Producer::connect(&addr).is_err());
        assert!(Consumer::connect(&addr).is_err());
        assert!(Producer::connect("amqp://127.0.0.1:5672").is_err(), "no queue in the address");
    })
}

/// A real broker restart (a private node: `stop_app`, `start_app`) while messages are being published:
/// every confirmed message arrives (durable queue, persistent messages), the producer's in-flight ones
/// published again on the new connection, the extra deliveries accounted for.
#[test]
fn a_broker_restart_mid_stream_loses_no_confirmed_message() {
    watchdog(Duration::from_secs(240), || {
        let broker = Arc::new(ringwire_testkit::rabbitmq::PrivateBroker::start().expect("a private RabbitMQ node"));
        let addr = broker.addr("restart");
        let mut rx = Consumer::with_options(&addr, opts(1000, 16)).unwrap();
        let mut tx = Producer::connect(&addr).unwrap();
        let restarted = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let producer = {
            let (restarted, sent) = (restarted.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut seq = 0;
                let mut after = 0;
                while after < 200 {
                    if restarted.load(Ordering::Acquire) {
                        after += 1;
                    }
                    // Blocks while the broker is down (reconnecting), returns once confirmed.
                    tx.send_deadline(&item(seq), Instant::now() + Duration::from_secs(120))
                        .expect("sent, across the restart");
                    seq += 1;
                    sent.store(seq, Ordering::Release);
                }
                tx.reconnects()
            })
        };
        let mut seen = BTreeMap::new();
        let mut delivered = 0u64;
        for _ in 0..100 {
            *seen.entry(number(&rx.recv_deadline(soon()).unwrap())).or_insert(0) += 1;
            delivered += 1;
        }
        broker.stop_app().unwrap();
        broker.start_app().unwrap();
        restarted.store(true, Ordering::Release);
        let producer_reconnects = producer.join().unwrap();
        let total = sent.load(Ordering::Acquire);
        let until = Instant::now() + Duration::from_secs(120);
        while (seen.len() as u64) < total {
            *seen.entry(number(&rx.recv_deadline(until).expect("every confirmed message arrives"))).or_insert(0) += 1;
            delivered += 1;
        }
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..total).collect::<Vec<_>>(), "nothing lost");
        assert!(producer_reconnects >= 1);
        let report = rx.take_report().expect("the reconnection is reported");
        let extra = delivered - seen.len() as u64;
        assert!(extra <= report.redelivered + report.duplicates, "{extra} extra, {report:?}");
        rx.close();
    })
}
