//! The redis adapter against real, private `redis-server` processes (one per test, on a free port, killed
//! when the test ends): pub/sub and streams round trips and ordering, size limits on both sides, a
//! subscriber's connection killed, server restarts, and a consumer that dies holding a message; pipelined
//! senders (`Options::window`): a lone message written at once, flush, the window written again on a new
//! connection, given up exactly when the server dies, a refused message reported alone. Every wait has a
//! deadline; no test sleeps or asserts a duration.

use ringwire::transport::redis::{
    AckMode, Gap, Options, Publisher, StreamConsumer, StreamProducer, Subscriber, ENVELOPE_LEN, FIELD,
};
use ringwire::transport::{Receiver, Sender, TransportRecvError, TransportSendError, Wait};
use ringwire_testkit::redis_server::RedisServer;
use ringwire_testkit::{check, message, seq_of};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Longest any single wait may take before the test fails as a hang.
const LONG: Duration = Duration::from_secs(30);

fn soon() -> Instant {
    Instant::now() + LONG
}

fn small(max_message: usize) -> Options {
    Options { max_message, ..Options::default() }
}

/// 64 bytes: `seq` eight times (little-endian).
fn numbered(seq: u64) -> Vec<u8> {
    seq.to_le_bytes().repeat(8)
}

/// Options of a pipelined sender: up to `window` commands unacknowledged.
fn windowed(window: usize) -> Options {
    Options { window, ..Options::default() }
}

fn admin(s: &RedisServer) -> redis::Connection {
    s.connection().expect("admin connection")
}

/// Publishes message `seq` of the test stream until the server says a subscriber got one; returns how
/// many went to nobody (lost) and the sequence number that was delivered.
fn publish_until_received(tx: &mut Publisher, mut seq: u64) -> (u64, u64) {
    let deadline = soon();
    let mut lost = 0;
    loop {
        tx.send_deadline(&message(seq, 1000), deadline).expect("publish");
        tx.flush().expect("the reply"); // a pipelined publisher: read it now
        if tx.last_receivers() == Some(1) {
            return (lost, seq);
        }
        lost += 1;
        seq += 1;
        assert!(Instant::now() < deadline, "the subscriber never came back");
    }
}

#[test]
fn pubsub_round_trip_in_order() {
    let s = RedisServer::start().unwrap();
    let mut rx = Subscriber::connect(&s.url(), "chat").unwrap();
    let mut tx = Publisher::connect(&s.url(), "chat").unwrap();
    for msg in [&b"hello"[..], b"", &[0xff; 300]] {
        tx.send(msg).unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), msg);
    }
    assert_eq!(tx.last_receivers(), Some(1));
    const N: u64 = 2000;
    for seq in 0..N {
        tx.send(&message(seq, 1000)).unwrap();
    }
    for seq in 0..N {
        let m = rx.recv_deadline(soon()).unwrap();
        assert!(check(&m, seq, 1000), "message {seq} wrong or out of order");
    }
    assert_eq!(rx.take_report(), None, "nothing lost, nothing repeated");
    // Nothing more: deadlines and try_recv are honoured.
    assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    assert!(matches!(rx.recv_deadline(Instant::now() + Duration::from_millis(50)), Err(TransportRecvError::Timeout)));
    rx.close();
    assert!(matches!(rx.recv(), Err(TransportRecvError::Closed)));
    tx.close().unwrap();
    assert!(matches!(tx.send(b"x"), Err(TransportSendError::Closed)));
}

#[test]
fn stream_round_trip_in_order() {
    let s = RedisServer::start().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "jobs").unwrap();
    let mut rx = StreamConsumer::connect(&s.url(), "jobs", "workers", "w1").unwrap();
    for msg in [&b"hello"[..], b"", &[0xff; 300]] {
        tx.send(msg).unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), msg);
        assert_eq!(rx.last_id(), tx.last_id());
    }
    const N: u64 = 2000;
    for seq in 0..N {
        tx.send(&message(seq, 1000)).unwrap();
    }
    for seq in 0..N {
        let m = rx.recv_deadline(soon()).unwrap();
        assert!(check(&m, seq, 1000), "message {seq} wrong or out of order");
    }
    assert_eq!(rx.take_report(), None);
    assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    assert!(matches!(rx.recv_deadline(Instant::now() + Duration::from_millis(50)), Err(TransportRecvError::Timeout)));
    rx.close();
    assert!(matches!(rx.recv(), Err(TransportRecvError::Closed)));
    // Everything delivered was acknowledged: nothing pending in the group.
    let pending: (u64, redis::Value, redis::Value, redis::Value) =
        redis::cmd("XPENDING").arg("jobs").arg("workers").query(&mut admin(&s)).unwrap();
    assert_eq!(pending.0, 0);
}

#[test]
fn stream_entries_added_before_the_group_are_delivered() {
    let s = RedisServer::start().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "early").unwrap();
    tx.send(b"before anyone listened").unwrap();
    let mut rx = StreamConsumer::connect(&s.url(), "early", "g", "c").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"before anyone listened");
}

#[test]
fn pubsub_oversize_and_garbage_are_refused_and_the_receiver_stays_usable() {
    let s = RedisServer::start().unwrap();
    let mut rx = Subscriber::with_options(&s.url(), "c", small(100)).unwrap();
    let mut tx = Publisher::with_options(&s.url(), "c", small(1000)).unwrap();
    let mut tx_small = Publisher::with_options(&s.url(), "c", small(100)).unwrap();
    match tx_small.send(&[1; 101]) {
        Err(TransportSendError::Oversize { len: 101, max: 100 }) => {}
        other => panic!("expected Oversize, got {other:?}"),
    }
    tx.send(&[2; 500]).unwrap();
    match rx.recv_deadline(soon()) {
        Err(TransportRecvError::BadFrame(ringwire::transport::codec::FrameError::Oversize { len: 500, max: 100 })) => {}
        other => panic!("expected BadFrame(Oversize), got {other:?}"),
    }
    let mut con = admin(&s);
    for garbage in [&b"not a frame at all"[..], b"", &[1, 0, 0, 0, 1, 0, 0, 0, 9]] {
        redis::cmd("PUBLISH").arg("c").arg(garbage).exec(&mut con).unwrap();
        assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::BadFrame(_))), "{garbage:?}");
    }
    tx_small.send(b"still usable").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"still usable");
}

#[test]
fn stream_oversize_and_garbage_are_refused_acknowledged_and_the_consumer_stays_usable() {
    let s = RedisServer::start().unwrap();
    let mut rx = StreamConsumer::with_options(&s.url(), "k", "g", "c", small(100)).unwrap();
    let mut tx = StreamProducer::with_options(&s.url(), "k", small(1000)).unwrap();
    let mut tx_small = StreamProducer::with_options(&s.url(), "k", small(100)).unwrap();
    assert!(matches!(tx_small.send(&[1; 101]), Err(TransportSendError::Oversize { len: 101, max: 100 })));
    tx.send(&[2; 500]).unwrap();
    assert!(matches!(
        rx.recv_deadline(soon()),
        Err(TransportRecvError::BadFrame(ringwire::transport::codec::FrameError::Oversize { len: 500, max: 100 }))
    ));
    let mut con = admin(&s);
    redis::cmd("XADD").arg("k").arg("*").arg(FIELD).arg("garbage").exec(&mut con).unwrap();
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::BadFrame(_))));
    // An entry without our field is skipped; one whose frame is shorter than the envelope is refused.
    redis::cmd("XADD").arg("k").arg("*").arg("other").arg("x").exec(&mut con).unwrap();
    let short = [&3u32.to_le_bytes()[..], &[1, 0, 0, 0], &[7; 3]].concat();
    assert!(short.len() < 8 + ENVELOPE_LEN);
    redis::cmd("XADD").arg("k").arg("*").arg(FIELD).arg(&short).exec(&mut con).unwrap();
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::BadFrame(_))));
    tx_small.send(b"still usable").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"still usable");
    rx.close();
    let pending: (u64, redis::Value, redis::Value, redis::Value) =
        redis::cmd("XPENDING").arg("k").arg("g").query(&mut con).unwrap();
    assert_eq!(pending.0, 0, "bad entries are acknowledged like good ones");
}

#[test]
fn killed_subscriber_connection_is_resubscribed_and_the_loss_reported() {
    let s = RedisServer::start().unwrap();
    let mut rx = Subscriber::connect(&s.url(), "news").unwrap();
    let mut tx = Publisher::connect(&s.url(), "news").unwrap();
    for seq in 0..10 {
        tx.send(&message(seq, 1000)).unwrap();
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 1000));
    }
    let mut con = admin(&s);
    // Keep the subscriber out for a while: no new connection is accepted (admin and publisher stay).
    redis::cmd("CONFIG").arg("SET").arg("maxclients").arg(2).exec(&mut con).unwrap();
    let killed: u64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query(&mut con).unwrap();
    assert_eq!(killed, 1);
    for seq in 10..15 {
        tx.send(&message(seq, 1000)).unwrap();
        assert_eq!(tx.last_receivers(), Some(0), "nobody is subscribed");
    }
    redis::cmd("CONFIG").arg("SET").arg("maxclients").arg(10000).exec(&mut con).unwrap();
    let (lost, delivered) = publish_until_received(&mut tx, 15);
    assert!(check(&rx.recv_deadline(soon()).unwrap(), delivered, 1000));
    let report = rx.take_report().expect("a loss report");
    assert_eq!(report.reconnects, 1);
    assert_eq!(report.gaps, [Gap { publisher: tx.id(), first: 10, count: 5 + lost }]);
    assert_eq!(report.lost(), 5 + lost);
    assert_eq!(rx.take_report(), None, "reported once");
    // And it goes on.
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"after");
}

#[test]
fn pubsub_survives_a_server_restart_and_reports_it() {
    let mut s = RedisServer::start().unwrap();
    let mut rx = Subscriber::connect(&s.url(), "news").unwrap();
    let mut tx = Publisher::connect(&s.url(), "news").unwrap();
    for seq in 0..10 {
        tx.send(&message(seq, 1000)).unwrap();
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 1000));
    }
    s.kill();
    // While the server is down a send with a deadline fails. It was written to the old connection before
    // that broke, so it may have reached the server: it uses a sequence number, and counts as lost.
    assert!(matches!(
        tx.send_deadline(b"nobody", Instant::now() + Duration::from_millis(100)),
        Err(TransportSendError::PeerReset)
    ));
    assert_eq!(tx.next_seq(), 11);
    s.restart().unwrap();
    // The publisher reconnects on its next send; the subscriber resubscribes by itself.
    let (lost, delivered) = publish_until_received(&mut tx, 11);
    assert_eq!(tx.reconnects(), 1);
    assert!(check(&rx.recv_deadline(soon()).unwrap(), delivered, 1000));
    let report = rx.take_report().expect("a report");
    assert_eq!(report.reconnects, 1);
    assert_eq!(report.gaps, [Gap { publisher: tx.id(), first: 10, count: 1 + lost }]);
}

#[test]
fn stream_survives_a_server_restart_without_loss() {
    let mut s = RedisServer::start_persistent().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "orders").unwrap();
    let mut rx = StreamConsumer::connect(&s.url(), "orders", "g", "c").unwrap();
    for seq in 0..300 {
        tx.send(&message(seq, 1000)).unwrap();
    }
    for seq in 0..150 {
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 1000));
    }
    s.restart().unwrap();
    for seq in 300..600 {
        tx.send(&message(seq, 1000)).unwrap();
    }
    assert_eq!(tx.reconnects(), 1);
    for seq in 150..600 {
        let m = rx.recv_deadline(soon()).unwrap();
        assert!(check(&m, seq, 1000), "message {seq} wrong or out of order");
    }
    let report = rx.take_report().expect("the reconnection is reported");
    assert_eq!(report.reconnects, 1);
    assert_eq!((report.lost(), report.duplicates, report.redelivered), (0, 0, 0));
}

#[test]
fn stream_group_is_made_again_after_a_restart_that_lost_it() {
    let mut s = RedisServer::start().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "q").unwrap();
    let mut rx = StreamConsumer::connect(&s.url(), "q", "g", "c").unwrap();
    tx.send(b"one").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"one");
    s.restart().unwrap(); // no persistence: stream and group are gone
    tx.send(b"two").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"two");
}

#[test]
fn a_consumer_dropped_without_ack_has_its_message_claimed() {
    let s = RedisServer::start().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "work").unwrap();
    let mut a = StreamConsumer::connect(&s.url(), "work", "g", "a").unwrap();
    a.set_claim_idle(None);
    tx.send(b"job-1").unwrap();
    assert_eq!(a.recv_deadline(soon()).unwrap(), b"job-1");
    drop(a); // without close: not acknowledged
    let mut b = StreamConsumer::connect(&s.url(), "work", "g", "b").unwrap();
    b.set_claim_idle(Some(Duration::from_millis(100)));
    assert_eq!(b.recv_deadline(soon()).unwrap(), b"job-1");
    let report = b.take_report().expect("a redelivery");
    assert_eq!(report.redelivered, 1);
    b.close(); // acknowledges job-1
    let mut c = StreamConsumer::connect(&s.url(), "work", "g", "c").unwrap();
    c.set_claim_idle(Some(Duration::from_millis(1)));
    assert!(matches!(c.recv_deadline(Instant::now() + Duration::from_millis(200)), Err(TransportRecvError::Timeout)));
}

#[test]
fn a_consumer_created_again_redelivers_its_own_pending_first() {
    let s = RedisServer::start().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "work").unwrap();
    let mut a = StreamConsumer::connect(&s.url(), "work", "g", "a").unwrap();
    a.set_claim_idle(None);
    for m in [&b"one"[..], b"two", b"three"] {
        tx.send(m).unwrap();
    }
    assert_eq!(a.recv_deadline(soon()).unwrap(), b"one");
    assert_eq!(a.recv_deadline(soon()).unwrap(), b"two");
    drop(a); // crashed: "one" acknowledged with the read of "two"? No: acks go with the next fetch.
    let mut a = StreamConsumer::connect(&s.url(), "work", "g", "a").unwrap();
    a.set_claim_idle(None);
    let mut got = Vec::new();
    while got.last().map(Vec::as_slice) != Some(&b"three"[..]) {
        got.push(a.recv_deadline(soon()).unwrap());
    }
    // At least once: "two" (held when it died) and "three" come again or for the first time, in order.
    assert!(got.ends_with(&[b"two".to_vec(), b"three".to_vec()]), "{got:?}");
    assert!(a.take_report().expect("redeliveries").redelivered >= 1);
}

#[test]
fn manual_ack_mode_keeps_messages_pending_until_ack() {
    let s = RedisServer::start().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "m").unwrap();
    let mut rx = StreamConsumer::connect(&s.url(), "m", "g", "c").unwrap();
    rx.set_ack_mode(AckMode::Manual);
    for m in [&b"1"[..], b"2"] {
        tx.send(m).unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), m);
    }
    let mut con = admin(&s);
    let pending = |con: &mut redis::Connection| -> u64 {
        let p: (u64, redis::Value, redis::Value, redis::Value) =
            redis::cmd("XPENDING").arg("m").arg("g").query(con).unwrap();
        p.0
    };
    assert_eq!(pending(&mut con), 2);
    rx.ack().unwrap();
    assert_eq!(pending(&mut con), 0);
}

#[test]
fn a_killed_consumer_process_has_its_message_claimed() {
    let s = RedisServer::start().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "tasks").unwrap();
    // The group exists before the child reads, so that "task-1" is not missed either way.
    let mut b = StreamConsumer::connect(&s.url(), "tasks", "ringwire", "b").unwrap();
    b.set_claim_idle(None);
    tx.send(b"task-1").unwrap();
    let mut child = ringwire_testkit::peer::command(ringwire_testkit::peer::misbehave::Mode::TakeRedisStream)
        .args(["--addr", &format!("{}/tasks", s.url()), "--name", "a"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "got task-1");
    child.kill().unwrap(); // SIGKILL: it never acknowledges
    child.wait().unwrap();
    assert!(matches!(b.recv_deadline(Instant::now() + Duration::from_millis(100)), Err(TransportRecvError::Timeout)));
    b.set_claim_idle(Some(Duration::from_millis(100)));
    assert_eq!(b.recv_deadline(soon()).unwrap(), b"task-1");
    assert_eq!(b.take_report().expect("a redelivery").redelivered, 1);
}

#[test]
fn stream_max_len_trims_old_entries() {
    let s = RedisServer::start().unwrap();
    let mut tx = StreamProducer::connect(&s.url(), "capped").unwrap();
    tx.set_max_len(Some(100));
    for seq in 0..5000u64 {
        tx.send(&seq.to_le_bytes()).unwrap();
    }
    let len: u64 = redis::cmd("XLEN").arg("capped").query(&mut admin(&s)).unwrap();
    assert!((100..5000).contains(&len), "{len}");
    // A consumer that starts now sees the tail, in order (what was trimmed before it first heard from
    // the producer is not its loss).
    let mut rx = StreamConsumer::connect(&s.url(), "capped", "g", "c").unwrap();
    let first = u64::from_le_bytes(rx.recv_deadline(soon()).unwrap().try_into().unwrap());
    assert_eq!(first, 5000 - len);
    for seq in first + 1..5000 {
        assert_eq!(rx.recv_deadline(soon()).unwrap(), seq.to_le_bytes());
    }
    assert_eq!(rx.take_report(), None);
}

#[test]
fn no_server_is_an_error_not_a_hang() {
    // Port 1: nothing listens there.
    assert!(Publisher::connect("redis://127.0.0.1:1", "x").is_err());
    assert!(Subscriber::connect("redis://127.0.0.1:1", "x").is_err());
    assert!(StreamProducer::connect("redis://127.0.0.1:1", "x").is_err());
    assert!(StreamConsumer::connect("redis://127.0.0.1:1", "x", "g", "c").is_err());
}

#[test]
fn try_calls_do_not_keep_retrying_a_dead_server() {
    let mut s = RedisServer::start().unwrap();
    let mut publisher = Publisher::connect(&s.url(), "c").unwrap();
    let mut subscriber = Subscriber::connect(&s.url(), "c").unwrap();
    let mut producer = StreamProducer::connect(&s.url(), "k").unwrap();
    let mut consumer = StreamConsumer::connect(&s.url(), "k", "g", "c").unwrap();
    s.kill();
    assert!(matches!(publisher.try_send(b"x"), Err(TransportSendError::PeerReset)));
    assert!(matches!(producer.try_send(b"x"), Err(TransportSendError::PeerReset)));
    assert!(matches!(consumer.try_recv(), Err(TransportRecvError::PeerReset)));
    // The subscriber's thread reconnects in the background; nothing has arrived.
    assert!(matches!(subscriber.try_recv(), Err(TransportRecvError::Empty)));
    // With the server back, the same halves work again.
    s.restart().unwrap();
    producer.send(b"back").unwrap();
    assert_eq!(consumer.recv_deadline(soon()).unwrap(), b"back");
    publisher.send(b"back").unwrap();
}

#[test]
fn pipelined_publisher_writes_at_once_and_flush_reads_every_reply() {
    let s = RedisServer::start().unwrap();
    let mut rx = Subscriber::connect(&s.url(), "p").unwrap();
    let mut tx = Publisher::with_options(&s.url(), "p", windowed(64)).unwrap();
    // A lone message goes out as it is sent: it arrives with no flush, its reply still unread.
    tx.send(&message(0, 1000)).unwrap();
    assert!(check(&rx.recv_deadline(soon()).unwrap(), 0, 1000));
    assert_eq!(tx.in_flight(), 0..1);
    assert_eq!(tx.last_receivers(), None);
    const N: u64 = 3000;
    for seq in 1..N {
        tx.send(&message(seq, 1000)).unwrap();
        // Replies are read when the window is full, down to half of it.
        assert!(tx.in_flight().end == seq + 1 && tx.in_flight().count() < 64, "{:?}", tx.in_flight());
    }
    tx.flush().unwrap();
    assert_eq!(tx.in_flight(), N..N);
    assert_eq!((tx.failed(), tx.last_receivers()), (None, Some(1)));
    for seq in 1..N {
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 1000), "message {seq} wrong or out of order");
    }
    assert_eq!(rx.take_report(), None, "nothing lost, nothing repeated");
    tx.close().unwrap();
    assert!(matches!(tx.send(b"x"), Err(TransportSendError::Closed)));
}

#[test]
fn pipelined_publisher_writes_its_window_again_on_a_new_connection() {
    let s = RedisServer::start().unwrap();
    let mut rx = Subscriber::connect(&s.url(), "news").unwrap();
    let mut tx = Publisher::with_options(&s.url(), "news", windowed(128)).unwrap();
    let mut con = admin(&s);
    // The server takes the commands but handles none (PUBLISH waits out a write pause) ...
    redis::cmd("CLIENT").arg("PAUSE").arg(60_000).arg("WRITE").exec(&mut con).unwrap();
    for seq in 0..100 {
        tx.send(&message(seq, 1000)).unwrap();
    }
    assert_eq!(tx.in_flight(), 0..100);
    // ... and the publisher's connection is cut: none of the hundred was published, no reply came.
    let killed: u64 =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").arg("SKIPME").arg("yes").query(&mut con).unwrap();
    assert_eq!(killed, 1);
    redis::cmd("CLIENT").arg("UNPAUSE").exec(&mut con).unwrap();
    // flush finds the connection gone, makes a new one and writes the hundred again, in order.
    tx.flush().unwrap();
    assert_eq!((tx.reconnects(), tx.in_flight(), tx.failed()), (1, 100..100, None));
    for seq in 0..100 {
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 1000), "message {seq} wrong or out of order");
    }
    assert_eq!(rx.take_report(), None, "each once: nothing lost, nothing repeated");
}

#[test]
fn pipelined_publisher_gives_up_exactly_its_window_when_the_server_is_gone() {
    let mut s = RedisServer::start().unwrap();
    let mut rx = Subscriber::connect(&s.url(), "news").unwrap();
    let opts = Options { window: 128, give_up: Some(Duration::from_millis(200)), ..Options::default() };
    let mut tx = Publisher::with_options(&s.url(), "news", opts).unwrap();
    for seq in 0..10 {
        tx.send(&message(seq, 1000)).unwrap();
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 1000));
    }
    tx.flush().unwrap();
    // Fifty written and not handled when the server dies.
    redis::cmd("CLIENT").arg("PAUSE").arg(60_000).arg("WRITE").exec(&mut admin(&s)).unwrap();
    for seq in 10..60 {
        tx.send(&message(seq, 1000)).unwrap();
    }
    assert_eq!(tx.in_flight(), 10..60);
    s.kill();
    // No server for `give_up`: the whole window is given up, each one maybe published (here: none).
    assert!(matches!(tx.flush(), Err(TransportSendError::PeerReset)));
    assert_eq!((tx.failed(), tx.in_flight(), tx.next_seq()), (Some(10..60), 60..60, 60));
    // A send that can't write its message at all uses no number.
    assert!(matches!(
        tx.send_deadline(b"nobody", Instant::now() + Duration::from_millis(100)),
        Err(TransportSendError::PeerReset)
    ));
    assert_eq!((tx.failed(), tx.next_seq()), (None, 60));
    s.restart().unwrap();
    let (lost, delivered) = publish_until_received(&mut tx, 60);
    assert!(check(&rx.recv_deadline(soon()).unwrap(), delivered, 1000));
    // The subscriber reports the given-up window, and whatever went to nobody while it resubscribed.
    let report = rx.take_report().expect("a report");
    assert_eq!(report.reconnects, 1);
    assert_eq!(report.gaps, [Gap { publisher: tx.id(), first: 10, count: 50 + lost }]);
}

#[test]
fn pipelined_stream_producer_loses_nothing_across_a_server_restart() {
    let mut s = RedisServer::start_persistent().unwrap();
    let mut tx = StreamProducer::with_options(&s.url(), "orders", windowed(64)).unwrap();
    let mut rx = StreamConsumer::connect(&s.url(), "orders", "g", "c").unwrap();
    for seq in 0..300 {
        tx.send(&numbered(seq)).unwrap();
    }
    // Unacknowledged when the server dies: stored or not, each is written again after the restart.
    let unacknowledged = tx.in_flight();
    assert!(!unacknowledged.is_empty());
    s.restart().unwrap();
    for seq in 300..600 {
        tx.send(&numbered(seq)).unwrap();
    }
    tx.flush().unwrap();
    assert_eq!((tx.reconnects(), tx.failed()), (1, None));
    // Every message arrives, in order of first arrival; one stored before the kill whose reply was lost
    // arrives a second time, right after the last stored one, and is counted as a duplicate.
    let (mut next, mut again) = (0, 0);
    while next < 600 {
        let m = rx.recv_deadline(soon()).unwrap();
        let seq = seq_of(&m).unwrap();
        assert_eq!(m, numbered(seq), "message {seq} damaged");
        if seq == next {
            next += 1;
        } else {
            assert!(seq < next && unacknowledged.contains(&seq), "{seq} out of order (expected {next})");
            again += 1;
        }
    }
    assert!(matches!(rx.recv_deadline(Instant::now() + Duration::from_millis(50)), Err(TransportRecvError::Timeout)));
    let report = rx.take_report().unwrap_or_default();
    assert_eq!((report.lost(), report.duplicates), (0, again));
}

#[test]
fn pipelined_refused_message_is_reported_alone() {
    let s = RedisServer::start().unwrap();
    let mut con = admin(&s);
    redis::cmd("SET").arg("k").arg("not a stream").exec(&mut con).unwrap();
    // Synchronous: the send's own message.
    let mut one = StreamProducer::connect(&s.url(), "k").unwrap();
    assert!(matches!(one.send(b"a"), Err(TransportSendError::Io(_))));
    assert_eq!((one.failed(), one.in_flight(), one.next_seq()), (Some(0..1), 1..1, 1));
    // Pipelined: the fourth send fills the window and reads the first reply, a refusal; the others stay
    // in flight on the same connection.
    let mut tx = StreamProducer::with_options(&s.url(), "k", windowed(4)).unwrap();
    for m in [b"0", b"1", b"2"] {
        tx.send(m).unwrap();
    }
    assert_eq!(tx.in_flight(), 0..3);
    assert!(matches!(tx.send(b"3"), Err(TransportSendError::Io(_))));
    assert_eq!((tx.failed(), tx.in_flight(), tx.next_seq()), (Some(0..1), 1..4, 4));
    for n in 1..4 {
        assert!(matches!(tx.flush(), Err(TransportSendError::Io(_))));
        assert_eq!((tx.failed(), tx.in_flight()), (Some(n..n + 1), n + 1..4));
    }
    tx.flush().unwrap();
    assert_eq!((tx.failed(), tx.reconnects()), (None, 0));
    // The key a stream again: the same producer goes on.
    redis::cmd("DEL").arg("k").exec(&mut con).unwrap();
    tx.send(b"4").unwrap();
    tx.flush().unwrap();
    let mut rx = StreamConsumer::connect(&s.url(), "k", "g", "c").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"4");
    // close reads the whole window, past a refusal: the first error is returned, and the half closes.
    redis::cmd("SET").arg("k2").arg("not a stream").exec(&mut con).unwrap();
    let mut tx2 = StreamProducer::with_options(&s.url(), "k2", windowed(8)).unwrap();
    for m in [b"0", b"1", b"2"] {
        tx2.send(m).unwrap();
    }
    assert!(matches!(tx2.close(), Err(TransportSendError::Io(_))));
    assert_eq!((tx2.failed(), tx2.in_flight()), (Some(0..1), 3..3));
    assert!(matches!(tx2.send(b"x"), Err(TransportSendError::Closed)));
}

#[test]
fn pipelined_window_is_bounded_in_bytes_too() {
    let s = RedisServer::start().unwrap();
    let mut rx = StreamConsumer::connect(&s.url(), "big", "g", "c").unwrap();
    let mut tx = StreamProducer::with_options(&s.url(), "big", windowed(128)).unwrap();
    // 100 KiB messages: about ten fill the 1 MiB a window holds for writing again, whatever its count.
    let big = |seq: u64| seq.to_le_bytes().repeat(100 * 1024 / 8);
    for seq in 0..40 {
        tx.send(&big(seq)).unwrap();
        assert!(tx.in_flight().count() <= 11, "{:?} unacknowledged", tx.in_flight());
    }
    tx.close().unwrap();
    for seq in 0..40 {
        assert!(rx.recv_deadline(soon()).unwrap() == big(seq), "message {seq}");
    }
}

#[test]
fn send_buffered_queues_until_flush_a_full_queue_or_a_drop() {
    let s = RedisServer::start().unwrap();
    let mut rx = Subscriber::connect(&s.url(), "q").unwrap();
    let mut tx = Publisher::with_options(&s.url(), "q", windowed(128)).unwrap();
    // Queued: numbered and kept, not written.
    for seq in 0..10 {
        tx.send_buffered(&message(seq, 100), Wait::Forever).unwrap();
    }
    assert_eq!(tx.in_flight(), 0..10);
    assert!(matches!(rx.recv_deadline(Instant::now() + Duration::from_millis(100)), Err(TransportRecvError::Timeout)));
    // flush writes them (one write) and reads their replies.
    tx.flush().unwrap();
    assert_eq!((tx.in_flight(), tx.last_receivers()), (10..10, Some(1)));
    for seq in 0..10 {
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 100), "message {seq}");
    }
    // A plain send writes the queue before its own message.
    tx.send_buffered(&message(10, 100), Wait::Forever).unwrap();
    tx.send(&message(11, 100)).unwrap();
    for seq in 10..12 {
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 100), "message {seq}");
    }
    // 64 KiB queued goes out by itself: the first of these arrives with no flush.
    for seq in 12..112 {
        tx.send_buffered(&[seq as u8; 1000], Wait::Forever).unwrap();
    }
    assert_eq!(rx.recv_deadline(soon()).unwrap(), [12; 1000]);
    // Dropped with messages queued: they are written on the way out.
    drop(tx);
    for seq in 13..112 {
        assert_eq!(rx.recv_deadline(soon()).unwrap(), [seq as u8; 1000], "message {seq}");
    }
    assert_eq!(rx.take_report(), None);
    // With a window of 1 it is a plain send.
    let mut one = Publisher::connect(&s.url(), "q").unwrap();
    one.send_buffered(b"at once", Wait::Forever).unwrap();
    assert_eq!((one.in_flight(), one.last_receivers()), (1..1, Some(1)));
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"at once");
}
