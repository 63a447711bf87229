//! One conformance suite, run against every transport adapter: each factory connects a (sender,
//! receiver) pair to an echo peer in another process (`ringwire-testpeer bench echo --adapter A`, the peer `ringwire bench` uses), and every test
//! below runs once per adapter. Blocking calls are guarded by a watchdog that fails the test as a hang;
//! no test sleeps or asserts a duration. The redis adapters meet their peer at a private `redis-server`
//! started for each test; the amqp adapter at the machine's RabbitMQ broker (`$RINGWIRE_AMQP_URL`,
//! default 127.0.0.1:5672), on queues of its own that are deleted afterwards.

use ringwire::transport::{RecvFrame, TransportRecvError, TransportSendError, Wait};
use ringwire_testkit::peers::{self, PeerConn};
use ringwire_testkit::redis_server::RedisServer;
use ringwire_testkit::{check, message, Adapter, PeerArgs, PeerMode};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

/// A connection to an echo peer, and the private Redis server it goes through (dropped after it).
struct Conn {
    c: PeerConn,
    _server: Option<RedisServer>,
}

impl std::ops::Deref for Conn {
    type Target = PeerConn;
    fn deref(&self) -> &PeerConn {
        &self.c
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PeerConn {
        &mut self.c
    }
}

/// Connects to an echo peer over `adapter`.
fn make(adapter: Adapter) -> Conn {
    make_with_window(adapter, 1)
}

/// As [`make`], a redis sender keeping up to `window` commands unacknowledged.
fn make_with_window(adapter: Adapter, window: usize) -> Conn {
    let (server, url) = if matches!(adapter, Adapter::RedisPubsub | Adapter::RedisStream) {
        let s = RedisServer::start().expect("start a private redis-server");
        let url = s.url();
        (Some(s), url)
    } else {
        (None, peers::redis_url())
    };
    let cmd = ringwire_testkit::peer::bench_command(&PeerArgs::transport(PeerMode::Echo, adapter));
    let c = peers::connect_via_window(cmd, adapter, &url, window).expect("connect to the echo peer");
    Conn { c, _server: server }
}

fn make_stdio() -> Conn {
    make(Adapter::Stdio)
}
fn make_fork() -> Conn {
    make(Adapter::Fork)
}
fn make_fifo() -> Conn {
    make(Adapter::Fifo)
}
fn make_unix() -> Conn {
    make(Adapter::Unix)
}
fn make_unix_abstract() -> Conn {
    make(Adapter::UnixAbstract)
}
fn make_tcp() -> Conn {
    make(Adapter::Tcp)
}
fn make_udp() -> Conn {
    make(Adapter::Udp)
}
fn make_shm() -> Conn {
    make(Adapter::Shm)
}
fn make_websocket() -> Conn {
    make(Adapter::Websocket)
}
fn make_redis_pubsub() -> Conn {
    make(Adapter::RedisPubsub)
}
fn make_redis_stream() -> Conn {
    make(Adapter::RedisStream)
}
fn make_redis_pubsub_pipelined() -> Conn {
    make_with_window(Adapter::RedisPubsub, 16)
}
fn make_redis_stream_pipelined() -> Conn {
    make_with_window(Adapter::RedisStream, 16)
}
fn make_amqp() -> Conn {
    make(Adapter::Amqp)
}

/// Runs `f` on a thread; a test that takes longer than the watchdog fails as a hang.
fn watchdog(f: impl FnOnce() + Send + 'static) {
    let (done, wait) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match wait.recv_timeout(WATCHDOG) {
        Ok(()) => t.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(t.join().unwrap_err()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("hang: no result within {WATCHDOG:?}"),
    }
}

fn recv(c: &mut Conn) -> Result<Vec<u8>, TransportRecvError> {
    c.rx.recv_deadline(Instant::now() + WATCHDOG)
}

fn round_trip(make: fn() -> Conn) {
    let mut c = make();
    for msg in [&b"hello"[..], b"", &[0xff; 300]] {
        c.tx.send(msg).unwrap();
        assert_eq!(recv(&mut c).unwrap(), msg);
    }
}

fn ordering(make: fn() -> Conn) {
    let mut c = make();
    const N: u64 = 10_000;
    const WINDOW: u64 = 32; // outstanding messages: keeps UDP's socket buffers from overflowing
    let (mut sent, mut got) = (0, 0);
    while got < N {
        while sent < N && sent - got < WINDOW {
            c.tx.send(&message(sent, 1000)).unwrap();
            sent += 1;
        }
        let msg = recv(&mut c).unwrap();
        assert!(check(&msg, got, 1000), "message {got} is wrong or out of order");
        got += 1;
    }
}

fn max_size(make: fn() -> Conn) {
    let mut c = make();
    let max = c.tx.max_message();
    assert!(max >= 1000, "max {max}");
    let big: Vec<u8> = (0..max).map(|i| (i * 7 + i / 251) as u8).collect();
    c.tx.send(&big).unwrap();
    assert!(recv(&mut c).unwrap() == big, "max-size message changed");
}

fn oversize(make: fn() -> Conn) {
    let mut c = make();
    let max = c.tx.max_message();
    match c.tx.send(&vec![1; max + 1]) {
        Err(TransportSendError::Oversize { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected Oversize, got {other:?}"),
    }
    c.tx.send(b"still usable").unwrap();
    assert_eq!(recv(&mut c).unwrap(), b"still usable");
}

fn peer_closes(make: fn() -> Conn) {
    let mut c = make();
    c.tx.send(b"last").unwrap();
    c.tx.close().unwrap();
    assert!(matches!(c.tx.send(b"x"), Err(TransportSendError::Closed)));
    assert_eq!(recv(&mut c).unwrap(), b"last");
    if c.datagram || c.brokered {
        return; // no clean close on UDP or through a broker: the peer never learns
    }
    // The echo peer closes once it sees our close; we see a clean end, every time we ask.
    assert!(matches!(recv(&mut c), Err(TransportRecvError::PeerGone)));
    assert!(matches!(recv(&mut c), Err(TransportRecvError::PeerGone)));
    let ok = c.peer.wait_success(Instant::now() + WATCHDOG).expect("wait for the echo peer");
    assert_eq!(ok, Some(true), "echo peer failed or hangs");
}

fn peer_killed(make: fn() -> Conn) {
    let mut c = make();
    c.tx.send(b"ping").unwrap();
    assert_eq!(recv(&mut c).unwrap(), b"ping");
    c.peer.kill();
    if c.brokered {
        // The server outlives the peer: nothing comes back, and sending still works (a stream keeps the
        // messages for the group's next consumer; pub/sub drops them).
        c.tx.send(b"anyone?").unwrap();
        match c.rx.recv_deadline(Instant::now() + Duration::from_millis(200)) {
            Err(TransportRecvError::Timeout) => {}
            other => panic!("expected nothing from a dead peer, got {other:?}"),
        }
        return;
    }
    if c.datagram {
        // Only an ICMP "port unreachable" for something we send tells a UDP socket the peer is gone.
        c.tx.send(b"anyone?").unwrap();
    }
    match recv(&mut c) {
        Err(TransportRecvError::PeerGone | TransportRecvError::PeerReset) => {}
        other => panic!("expected the peer to be gone, got {other:?}"),
    }
    // Sending fails too (after the kernel's buffers, or the ring, fill up), with an error, not a signal.
    let deadline = Instant::now() + WATCHDOG;
    let chunk = vec![0u8; 1000];
    loop {
        match c.tx.send_deadline(&chunk, deadline) {
            Ok(()) => {}
            Err(TransportSendError::PeerReset | TransportSendError::PeerGone) => break,
            Err(e) => panic!("expected PeerReset, got {e:?}"),
        }
    }
}

/// An event frame (header `ext` = name length) goes through the echo peer and back with its `ext`; a raw
/// receive sees name and payload as one message; `ext` above the length is refused and the sender stays
/// usable.
fn ext_round_trip(make: fn() -> Conn) {
    let mut c = make();
    let until = Wait::Until(Instant::now() + WATCHDOG);
    c.tx.send_frame_wait(4, &[b"chat", b" hello"], until).unwrap();
    let f = c.rx.recv_frame_wait(until).unwrap();
    assert_eq!(f, RecvFrame { ext: 4, bytes: b"chat hello".to_vec() });
    assert_eq!((f.name(), f.payload()), (&b"chat"[..], &b" hello"[..]));
    // All name, no payload; then a plain message after it has ext 0.
    c.tx.send_frame_wait(3, &[b"abc"], until).unwrap();
    c.tx.send(b"plain").unwrap();
    assert_eq!(c.rx.recv_frame_wait(until).unwrap(), RecvFrame { ext: 3, bytes: b"abc".to_vec() });
    assert_eq!(c.rx.recv_frame_wait(until).unwrap(), RecvFrame { ext: 0, bytes: b"plain".to_vec() });
    match c.tx.send_frame_wait(9, &[b"short"], until) {
        Err(TransportSendError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // A raw receiver sees the name bytes followed by the payload.
    c.tx.send_frame_wait(2, &[b"ev", b"!"], until).unwrap();
    assert_eq!(recv(&mut c).unwrap(), b"ev!");
}

macro_rules! conformance {
    ($($adapter:ident => $make:expr),* $(,)?) => {$(
        mod $adapter {
            #[test]
            fn round_trip() { crate::watchdog(|| crate::round_trip($make)) }
            #[test]
            fn ordering_10k() { crate::watchdog(|| crate::ordering($make)) }
            #[test]
            fn max_size() { crate::watchdog(|| crate::max_size($make)) }
            #[test]
            fn oversize_rejected_then_usable() { crate::watchdog(|| crate::oversize($make)) }
            #[test]
            fn peer_closes_cleanly() { crate::watchdog(|| crate::peer_closes($make)) }
            #[test]
            fn ext_round_trip() { crate::watchdog(|| crate::ext_round_trip($make)) }
            #[test]
            fn peer_killed_is_an_error_not_a_hang() { crate::watchdog(|| crate::peer_killed($make)) }
        }
    )*};
}

/// `cargo test --test conformance on::tcp` runs one adapter's suite.
mod on {
    conformance! {
        stdio => crate::make_stdio,
        fork => crate::make_fork,
        fifo => crate::make_fifo,
        unix_path => crate::make_unix,
        unix_abstract => crate::make_unix_abstract,
        tcp => crate::make_tcp,
        udp => crate::make_udp,
        shm => crate::make_shm,
        websocket => crate::make_websocket,
        redis_pubsub => crate::make_redis_pubsub,
        redis_stream => crate::make_redis_stream,
        redis_pubsub_pipelined => crate::make_redis_pubsub_pipelined,
        redis_stream_pipelined => crate::make_redis_stream_pipelined,
        amqp => crate::make_amqp,
    }
}
