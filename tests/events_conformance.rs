//! The event layer's conformance suite, run over every transport setup of tests/conformance.rs (eleven
//! adapters to the bench's echo peer in another process; the redis ones through a private
//! `redis-server`) and over the three rings in one process (an echo thread on the far side). The echo
//! peers send every frame back with its `ext`, so an event comes back as the same event and an ack
//! request as its own reply (see `ringwire::socket`, "Acknowledgements").
//!
//! Every test runs under a watchdog; none sleeps to pass or asserts a duration.

use ringwire::broadcast::Mode;
use ringwire::socket::{
    AckError, EmitError, EventReceiver, EventRecvError, EventSender, FrameSink, FrameSource, Ring, Socket,
};
use ringwire::transport::Wait;
use ringwire::{mpmc, spsc, RingConfig, RingReceiver, RingSender, ShmBroadcast};
use ringwire_testkit::peers;
use ringwire_testkit::redis_server::RedisServer;
use ringwire_testkit::{watchdog, Adapter, PeerArgs, PeerMode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

type Tx = Box<dyn FrameSink>;
type Rx = Box<dyn FrameSource>;

/// One setup: our two halves, and a way to make the far side go away.
struct Setup {
    tx: Tx,
    rx: Rx,
    /// Kills the echo peer (a process: SIGKILL; a ring echo thread: told to stop, dropping its ends).
    kill: Box<dyn FnMut() + Send>,
    /// Whether our receiver learns that the peer is gone (not through a broker or over UDP).
    sees_end: bool,
    /// Held until the end of the test (a private redis-server, an echo thread's handle).
    _keep: Vec<Box<dyn Send>>,
}

fn transport(adapter: Adapter) -> Setup {
    let (server, url) = if matches!(adapter, Adapter::RedisPubsub | Adapter::RedisStream) {
        let s = RedisServer::start().expect("start a private redis-server");
        let url = s.url();
        (Some(s), url)
    } else {
        (None, peers::redis_url())
    };
    let cmd = ringwire_testkit::peer::bench_command(&PeerArgs::transport(PeerMode::Echo, adapter));
    let c = peers::connect_via(cmd, adapter, &url).expect("connect to the echo peer");
    let sees_end = !(c.datagram || c.brokered);
    // Take the halves, keep the rest (the peer process, a redis connection's stream keys) alive.
    let mut c = c;
    let tx = std::mem::replace(&mut c.tx, Box::new(Gone));
    let rx = std::mem::replace(&mut c.rx, Box::new(Gone));
    let conn = Arc::new(Mutex::new(c));
    let p = conn.clone();
    let mut keep: Vec<Box<dyn Send>> = vec![Box::new(conn)];
    if let Some(s) = server {
        keep.push(Box::new(s));
    }
    Setup {
        tx: Box::new(tx),
        rx: Box::new(rx),
        kill: Box::new(move || p.lock().unwrap().peer.kill()),
        sees_end,
        _keep: keep,
    }
}

/// A placeholder for the halves taken out of a `PeerConn`.
struct Gone;
impl ringwire::transport::Sender for Gone {
    fn send_frame_wait(&mut self, _: u16, _: &[&[u8]], _: Wait) -> Result<(), ringwire::transport::TransportSendError> {
        Err(ringwire::transport::TransportSendError::Closed)
    }
    fn close(&mut self) -> Result<(), ringwire::transport::TransportSendError> {
        Ok(())
    }
    fn max_message(&self) -> usize {
        0
    }
}
impl ringwire::transport::Receiver for Gone {
    fn recv_frame_wait(
        &mut self,
        _: Wait,
    ) -> Result<ringwire::transport::RecvFrame, ringwire::transport::TransportRecvError> {
        Err(ringwire::transport::TransportRecvError::Closed)
    }
    fn close(&mut self) {}
    fn max_message(&self) -> usize {
        0
    }
}

/// The far side of a ring setup: sends every frame back with its ext; a plain frame `stop` ends it
/// (dropping its handles, which the near side sees as the peer closing).
fn ring_echo<T: RingSender + Send + 'static, R: RingReceiver + Send + 'static>(mut tx: T, mut rx: R) {
    std::thread::spawn(move || {
        let mut msg = Vec::new();
        while let Ok(ext) = rx.recv_frame_into(None, &mut msg) {
            if ext == 0 && msg == b"stop" {
                return;
            }
            let mut slot = match tx.reserve(msg.len()) {
                Ok(s) => s,
                Err(_) => return,
            };
            slot.copy_from_slice(&msg);
            ringwire::Commit::commit_ext(slot, msg.len(), ext);
        }
    });
}

/// A stopper for a ring echo: sends `stop` on a second sender? Rings have one producer (SPSC), so the
/// near side's own sender sends it: `kill` gets a clone-free path through a shared slot.
fn ring_setup<T, R>(near_tx: T, near_rx: R) -> Setup
where
    T: RingSender + Send + 'static,
    R: RingReceiver + Send + 'static,
{
    // Our sender is shared between the socket and `kill` (which sends the plain `stop` frame).
    let shared = Arc::new(Mutex::new(Ring(near_tx)));
    let s = shared.clone();
    Setup {
        tx: Box::new(SharedSink(shared)),
        rx: Box::new(Ring(near_rx)),
        kill: Box::new(move || {
            let _ = s.lock().unwrap().send_frame(0, &[b"stop"], Wait::Until(Instant::now() + LIMIT));
        }),
        sees_end: true,
        _keep: Vec::new(),
    }
}

struct SharedSink<T: FrameSink>(Arc<Mutex<T>>);
impl<T: FrameSink> FrameSink for SharedSink<T> {
    fn send_frame(
        &mut self,
        ext: u16,
        parts: &[&[u8]],
        wait: Wait,
    ) -> Result<(), ringwire::transport::TransportSendError> {
        self.0.lock().unwrap().send_frame(ext, parts, wait)
    }
    fn max_message(&self) -> usize {
        self.0.lock().unwrap().max_message()
    }
    fn close(&mut self) -> Result<(), ringwire::transport::TransportSendError> {
        Ok(())
    }
}

fn cfg() -> RingConfig {
    RingConfig::new(1 << 16, 1024)
}

fn spsc_ring() -> Setup {
    let (a_tx, b_rx) = spsc::channel(cfg()).unwrap();
    let (b_tx, a_rx) = spsc::channel(cfg()).unwrap();
    ring_echo(b_tx, b_rx);
    ring_setup(a_tx, a_rx)
}

fn mpmc_ring() -> Setup {
    let (a_tx, b_rx) = mpmc::channel(cfg()).unwrap();
    let (b_tx, a_rx) = mpmc::channel(cfg()).unwrap();
    ring_echo(b_tx, b_rx);
    ring_setup(a_tx, a_rx)
}

fn broadcast_ring() -> Setup {
    // Back-pressure mode: a lossless stream, as for the queues. Shared memory (anonymous), one process.
    let make = || {
        let ring = ShmBroadcast::anonymous(cfg(), Mode::Backpressure).unwrap();
        let sub = ring.subscriber().unwrap();
        (ring.publisher().unwrap(), sub)
    };
    let (a_tx, b_rx) = make();
    let (b_tx, a_rx) = make();
    ring_echo(b_tx, b_rx);
    ring_setup(a_tx, a_rx)
}

fn deadline() -> Wait {
    Wait::Until(Instant::now() + LIMIT)
}

// ---- the suite ----

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Chat {
    user: String,
    text: String,
    n: u32,
}

fn round_trip(make: fn() -> Setup) {
    let s = make();
    let (mut tx, mut rx) = (EventSender::new(s.tx), EventReceiver::new(s.rx));
    let msg = Chat { user: "ana".into(), text: "héllo, 世界".into(), n: 7 };
    tx.emit_wait("chat message", &msg, deadline()).unwrap();
    let ev = rx.recv_wait(deadline()).unwrap();
    assert_eq!(ev.name(), "chat message");
    assert_eq!(ev.decode::<Chat>().unwrap(), msg);
    // Raw bytes, an empty body, a 255-byte name.
    let long = "n".repeat(255);
    tx.emit_bytes_wait(&long, b"", deadline()).unwrap();
    tx.emit_bytes_wait("raw", &[0, 1, 2, 255], deadline()).unwrap();
    let ev = rx.recv_wait(deadline()).unwrap();
    assert_eq!((ev.name(), ev.bytes()), (long.as_str(), &b""[..]));
    // The borrowing receive sees the same.
    let ev = rx.recv_ref_wait(deadline()).unwrap();
    assert_eq!((ev.name(), ev.bytes()), ("raw", &[0, 1, 2, 255][..]));
    // A body of the wrong type is an error of decode alone.
    tx.emit_wait("n", &json!("not a Chat"), deadline()).unwrap();
    assert!(rx.recv_wait(deadline()).unwrap().decode::<Chat>().is_err());
}

fn order(make: fn() -> Setup) {
    let s = make();
    let (mut tx, mut rx) = (EventSender::new(s.tx), EventReceiver::new(s.rx));
    const N: u32 = 2000;
    const WINDOW: u32 = 32; // outstanding events: keeps UDP's socket buffers from overflowing
    let names = ["a", "bb", "ccc"];
    let (mut sent, mut got) = (0, 0);
    while got < N {
        while sent < N && sent - got < WINDOW {
            tx.emit_wait(names[sent as usize % 3], &sent, deadline()).unwrap();
            sent += 1;
        }
        let ev = rx.recv_wait(deadline()).unwrap();
        assert_eq!(ev.name(), names[got as usize % 3]);
        assert_eq!(ev.decode::<u32>().unwrap(), got, "event {got} out of order");
        got += 1;
    }
}

fn names_checked_on_emit(make: fn() -> Setup) {
    let s = make();
    let mut tx = EventSender::new(s.tx);
    assert!(matches!(tx.emit("", &1), Err(EmitError::BadName(0))));
    assert!(matches!(tx.emit(&"x".repeat(256), &1), Err(EmitError::BadName(256))));
    assert!(matches!(tx.emit("ringwire:ack:mine", &1), Err(EmitError::Reserved(_))));
    assert!(matches!(tx.emit_bytes("ringwire:anything", b""), Err(EmitError::Reserved(_))));
    // Nothing of those was sent, and the sender is usable.
    let mut rx = EventReceiver::new(s.rx);
    tx.emit_wait("fine", &1, deadline()).unwrap();
    assert_eq!(rx.recv_wait(deadline()).unwrap().name(), "fine");
    // The socket refuses them too, acks included.
    let socket = Socket::new(tx.into_inner(), rx.into_inner());
    assert!(matches!(socket.emit("ringwire:x", &1), Err(EmitError::Reserved(_))));
    assert!(matches!(socket.emit_with_ack("ringwire:x", &1, LIMIT), Err(AckError::Emit(EmitError::Reserved(_)))));
    assert_eq!(socket.pending_acks(), 0);
}

fn malformed_name(make: fn() -> Setup) {
    let mut s = make();
    // A name that is not UTF-8, then a plain frame (no name), then a good event: the first two are
    // typed errors for themselves alone, the receiver goes on.
    s.tx.send_frame(2, &[&[0xff, 0xfe], b"body"], deadline()).unwrap();
    s.tx.send_frame(0, &[b"plain"], deadline()).unwrap();
    let (mut tx, mut rx) = (EventSender::new(s.tx), EventReceiver::new(s.rx));
    tx.emit_wait("good", &1, deadline()).unwrap();
    assert!(matches!(rx.recv_wait(deadline()), Err(EventRecvError::BadName)));
    assert!(matches!(rx.recv_ref_wait(deadline()), Err(EventRecvError::NotAnEvent(5))));
    assert_eq!(rx.recv_ref_wait(deadline()).unwrap().name(), "good");
}

fn socket_dispatch_and_unknown(make: fn() -> Setup) {
    let mut s = make();
    // A frame whose name is not UTF-8 comes back first: the socket skips and counts it.
    s.tx.send_frame(2, &[&[0xc3, 0x28], b"{}"], deadline()).unwrap();
    let socket = Socket::new(s.tx, s.rx);
    assert!(matches!(socket.poll_once(deadline()), Err(EventRecvError::BadName)));
    assert_eq!(socket.stats().malformed, 1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    socket.on("chat", move |ev| log.lock().unwrap().push(ev.decode::<Value>().unwrap()));
    socket.emit("nobody listens", &1).unwrap();
    socket.emit("chat", &json!({"text": "hi"})).unwrap();
    // The unknown one comes back first (FIFO): dropped and counted, not an error.
    socket.poll_once(deadline()).unwrap();
    socket.poll_once(deadline()).unwrap();
    assert_eq!(socket.stats().dropped, 1);
    assert_eq!(socket.stats().dispatched, 1);
    assert_eq!(*seen.lock().unwrap(), vec![json!({"text": "hi"})]);
}

fn ack_round_trip(make: fn() -> Setup) {
    let s = make();
    let socket = Socket::new(s.tx, s.rx);
    for i in 0..20u32 {
        // The echo answers with the request's own payload.
        let reply = socket.emit_with_ack("add", &json!([i, 1]), LIMIT).unwrap();
        assert_eq!(reply.name(), "add");
        assert_eq!(reply.decode::<Value>().unwrap(), json!([i, 1]));
    }
    assert_eq!(socket.pending_acks(), 0);
    assert_eq!(socket.stats().stale_acks, 0);
}

fn ack_timeout(make: fn() -> Setup) {
    let s = make();
    let socket = Socket::new(s.tx, s.rx);
    // Zero: no time to poll, so the reply (which the echo will send) is late by construction.
    assert!(matches!(socket.emit_with_ack("slow", &1, Duration::ZERO), Err(AckError::Timeout)));
    assert_eq!(socket.pending_acks(), 0, "the timed-out request's entry is freed");
    // The late reply arrives before the next event (FIFO) and is dropped and counted.
    let got = Arc::new(Mutex::new(0));
    let g = got.clone();
    socket.on("next", move |_| *g.lock().unwrap() += 1);
    socket.emit("next", &()).unwrap();
    while *got.lock().unwrap() == 0 {
        socket.poll_once(deadline()).unwrap();
    }
    assert_eq!(socket.stats().stale_acks, 1);
    // And acks still work.
    assert_eq!(socket.emit_with_ack("again", &2, LIMIT).unwrap().decode::<u32>().unwrap(), 2);
}

fn ack_on_closed_connection(make: fn() -> Setup) {
    let mut s = make();
    // One round trip first, so that the peer is surely up (attached to its rings) before it is killed.
    s.tx.send_frame(1, &[b"x"], deadline()).unwrap();
    assert_eq!(s.rx.recv_frame(deadline()).unwrap().bytes, b"x");
    (s.kill)();
    let sees_end = s.sees_end;
    let socket = Socket::new(s.tx, s.rx);
    if sees_end {
        // The peer is gone: the pending ack fails as soon as the receive side sees the end.
        match socket.emit_with_ack("ping", &1, LIMIT) {
            Err(AckError::Closed) => {}
            other => panic!("expected the ack to fail, got {other:?}"),
        }
        return;
    }
    // Through a broker or over UDP nothing says the peer is gone: closing the socket fails the pending
    // ack at once (not after its timeout).
    let waiter = {
        let socket = socket.clone();
        std::thread::spawn(move || socket.emit_with_ack("ping", &1, LIMIT))
    };
    while socket.pending_acks() == 0 && !waiter.is_finished() {
        std::thread::yield_now();
    }
    socket.close();
    match waiter.join().unwrap() {
        Err(AckError::Closed) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(socket.pending_acks(), 0);
    assert!(matches!(socket.emit_with_ack("after", &1, LIMIT), Err(AckError::Closed)));
    assert!(socket.poll_once(Wait::Never).is_err());
}

macro_rules! suite {
    ($($name:ident => $make:expr),* $(,)?) => {$(
        mod $name {
            use crate::*;
            #[test]
            fn typed_round_trip() { watchdog(LIMIT, || round_trip($make)) }
            #[test]
            fn order_2k() { watchdog(LIMIT, || order($make)) }
            #[test]
            fn names_checked_on_emit() { watchdog(LIMIT, || crate::names_checked_on_emit($make)) }
            #[test]
            fn malformed_name_skipped() { watchdog(LIMIT, || malformed_name($make)) }
            #[test]
            fn unknown_event_dropped_and_counted() { watchdog(LIMIT, || socket_dispatch_and_unknown($make)) }
            #[test]
            fn ack_round_trip() { watchdog(LIMIT, || crate::ack_round_trip($make)) }
            #[test]
            fn ack_timeout_frees_and_counts_late_reply() { watchdog(LIMIT, || ack_timeout($make)) }
            #[test]
            fn ack_on_closed_connection_fails() { watchdog(LIMIT, || ack_on_closed_connection($make)) }
        }
    )*};
}

fn stdio() -> Setup {
    transport(Adapter::Stdio)
}
fn fork() -> Setup {
    transport(Adapter::Fork)
}
fn fifo() -> Setup {
    transport(Adapter::Fifo)
}
fn unix_path() -> Setup {
    transport(Adapter::Unix)
}
fn unix_abstract() -> Setup {
    transport(Adapter::UnixAbstract)
}
fn tcp() -> Setup {
    transport(Adapter::Tcp)
}
fn udp() -> Setup {
    transport(Adapter::Udp)
}
fn shm() -> Setup {
    transport(Adapter::Shm)
}
fn websocket() -> Setup {
    transport(Adapter::Websocket)
}
fn redis_pubsub() -> Setup {
    transport(Adapter::RedisPubsub)
}
fn redis_stream() -> Setup {
    transport(Adapter::RedisStream)
}

/// `cargo test --test events_conformance on::tcp` runs one setup's suite.
mod on {
    suite! {
        stdio => crate::stdio,
        fork => crate::fork,
        fifo => crate::fifo,
        unix_path => crate::unix_path,
        unix_abstract => crate::unix_abstract,
        tcp => crate::tcp,
        udp => crate::udp,
        shm => crate::shm,
        websocket => crate::websocket,
        redis_pubsub => crate::redis_pubsub,
        redis_stream => crate::redis_stream,
        ring_spsc => crate::spsc_ring,
        ring_mpmc => crate::mpmc_ring,
        ring_broadcast => crate::broadcast_ring,
    }
}
