//! The conformance contract of `tests/conformance.rs`, run against the async transports
//! (`ringwire::transport::tokio`, features `tokio` + `tokio-websocket`): each adapter connects to the
//! same echo peer in another process (`ringwire-testpeer bench echo --adapter A`, which blocks), through
//! `ringwire_cli::peer::connect_async`, and the same seven test bodies run once per adapter, written
//! once here as async functions over `AsyncSender` / `AsyncReceiver`. Plus, per adapter, one for cancel
//! safety (`recv` futures dropped by `select!` under traffic lose nothing); and, in-process over real
//! pipes and sockets: a `recv` dropped mid-frame, a `send` dropped mid-frame (no torn frame), and
//! hostile input (an oversize header, garbage on a stream, bad datagrams, an oversize WebSocket
//! message, a wrong WebSocket path), each a typed error with bounded memory.
//!
//! Every test runs on its own current-thread runtime under `tokio::time::timeout`, inside the testkit's
//! thread watchdog (a body that blocks the runtime still fails as a hang). No sleeps, no timing
//! assertions.

use ringwire::transport::tokio::{AsyncReceiver, AsyncSender};
use ringwire::transport::{RecvFrame, TransportRecvError, TransportSendError};
use ringwire_cli::peer::connect_async::{self, AsyncPeerConn};
use ringwire_testkit::{check, message, Adapter, PeerArgs, PeerMode};
use std::future::Future;
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

/// Connects to a fresh echo peer over the async form of `adapter`.
async fn make(adapter: Adapter) -> AsyncPeerConn {
    let cmd = ringwire_testkit::peer::bench_command(&PeerArgs::transport(PeerMode::Echo, adapter));
    connect_async::connect(cmd, adapter).await.expect("connect to the echo peer")
}

/// Runs `body` on a connection to an echo peer over `adapter`, on a current-thread runtime, under a
/// timeout and a thread watchdog.
fn run<F, Fut>(adapter: Adapter, body: F)
where
    F: FnOnce(AsyncPeerConn) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    ringwire_testkit::watchdog(WATCHDOG + Duration::from_secs(10), move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            tokio::time::timeout(WATCHDOG, async move { body(make(adapter).await).await })
                .await
                .expect("hang: no result within the watchdog")
        })
    })
}

async fn round_trip(mut c: AsyncPeerConn) {
    for msg in [&b"hello"[..], b"", &[0xff; 300]] {
        c.tx.send(msg).await.unwrap();
        assert_eq!(c.rx.recv().await.unwrap(), msg);
    }
}

async fn ordering(mut c: AsyncPeerConn) {
    const N: u64 = 10_000;
    const WINDOW: u64 = 32; // outstanding messages: keeps UDP's socket buffers from overflowing
    let (mut sent, mut got) = (0, 0);
    while got < N {
        while sent < N && sent - got < WINDOW {
            c.tx.send(&message(sent, 1000)).await.unwrap();
            sent += 1;
        }
        let msg = c.rx.recv().await.unwrap();
        assert!(check(&msg, got, 1000), "message {got} is wrong or out of order");
        got += 1;
    }
}

async fn max_size(mut c: AsyncPeerConn) {
    let max = c.tx.max_message();
    assert!(max >= 1000, "max {max}");
    let big: Vec<u8> = (0..max).map(|i| (i * 7 + i / 251) as u8).collect();
    c.tx.send(&big).await.unwrap();
    assert!(c.rx.recv().await.unwrap() == big, "max-size message changed");
}

async fn oversize(mut c: AsyncPeerConn) {
    let max = c.tx.max_message();
    match c.tx.send(&vec![1; max + 1]).await {
        Err(TransportSendError::Oversize { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected Oversize, got {other:?}"),
    }
    c.tx.send(b"still usable").await.unwrap();
    assert_eq!(c.rx.recv().await.unwrap(), b"still usable");
}

async fn peer_closes(mut c: AsyncPeerConn) {
    c.tx.send(b"last").await.unwrap();
    c.tx.close().await.unwrap();
    assert!(matches!(c.tx.send(b"x").await, Err(TransportSendError::Closed)));
    assert_eq!(c.rx.recv().await.unwrap(), b"last");
    if c.datagram {
        return; // no clean close on UDP: the peer never learns
    }
    // The echo peer closes once it sees our close; we see a clean end, every time we ask.
    assert!(matches!(c.rx.recv().await, Err(TransportRecvError::PeerGone)));
    assert!(matches!(c.rx.recv().await, Err(TransportRecvError::PeerGone)));
    // The peer has closed its end: it exits at once (a blocking wait, bounded by the thread watchdog).
    let ok = c.peer.wait_success(Instant::now() + WATCHDOG).expect("wait for the echo peer");
    assert_eq!(ok, Some(true), "echo peer failed or hangs");
}

async fn peer_killed(mut c: AsyncPeerConn) {
    c.tx.send(b"ping").await.unwrap();
    assert_eq!(c.rx.recv().await.unwrap(), b"ping");
    c.peer.kill();
    if c.datagram {
        // Only an ICMP "port unreachable" for something we send tells a UDP socket the peer is gone.
        c.tx.send(b"anyone?").await.unwrap();
    }
    match c.rx.recv().await {
        Err(TransportRecvError::PeerGone | TransportRecvError::PeerReset) => {}
        other => panic!("expected the peer to be gone, got {other:?}"),
    }
    // Sending fails too (after the kernel's buffers fill up), with an error, not a signal.
    let chunk = vec![0u8; 1000];
    loop {
        match c.tx.send(&chunk).await {
            Ok(()) => {}
            Err(TransportSendError::PeerReset | TransportSendError::PeerGone) => break,
            Err(e) => panic!("expected PeerReset, got {e:?}"),
        }
    }
}

async fn ext_round_trip(mut c: AsyncPeerConn) {
    c.tx.send_frame(4, &[b"chat", b" hello"]).await.unwrap();
    let f = c.rx.recv_frame().await.unwrap();
    assert_eq!(f, RecvFrame { ext: 4, bytes: b"chat hello".to_vec() });
    assert_eq!((f.name(), f.payload()), (&b"chat"[..], &b" hello"[..]));
    // All name, no payload; then a plain message after it has ext 0.
    c.tx.send_frame(3, &[b"abc"]).await.unwrap();
    c.tx.send(b"plain").await.unwrap();
    assert_eq!(c.rx.recv_frame().await.unwrap(), RecvFrame { ext: 3, bytes: b"abc".to_vec() });
    assert_eq!(c.rx.recv_frame().await.unwrap(), RecvFrame { ext: 0, bytes: b"plain".to_vec() });
    match c.tx.send_frame(9, &[b"short"]).await {
        Err(TransportSendError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // A raw receiver sees the name bytes followed by the payload.
    c.tx.send_frame(2, &[b"ev", b"!"]).await.unwrap();
    assert_eq!(c.rx.recv().await.unwrap(), b"ev!");
}

/// Cancel safety of `recv`: every receive races a branch that wins whenever `recv` has to wait, so
/// `recv` futures are dropped over and over, some in the middle of a frame (a batch of messages of up
/// to 8 KB arrives in several reads on a stream). Every message must still come out exactly once, in
/// order, with `send_buffered` + `flush` batches going the other way. (At most 64 KB outstanding: the
/// echo peer blocks on its replies while this side flushes, so the window must fit the kernel's
/// buffers.)
async fn recv_in_select(mut c: AsyncPeerConn) {
    const N: u64 = 5_000;
    let (max, window) = if c.datagram { (1000, 32) } else { (8000, 8) };
    let (mut sent, mut got, mut dropped) = (0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    while got < N {
        if sent - got < window / 2 {
            while sent < N && sent - got < window {
                c.tx.send_buffered(&message(sent, max)).await.unwrap();
                sent += 1;
            }
            c.tx.flush().await.unwrap();
        }
        tokio::select! {
            biased;
            // Pending on its first poll, ready on the next: wins whenever recv did not finish at once.
            _ = tokio::task::yield_now() => dropped += 1,
            // Half the receives reuse one buffer (`recv_frame_into_vec`), cancelled the same way.
            msg = async {
                if got % 2 == 0 {
                    c.rx.recv().await
                } else {
                    c.rx.recv_frame_into_vec(&mut buf).await.map(|_| std::mem::take(&mut buf))
                }
            } => {
                let msg = msg.unwrap();
                assert!(check(&msg, got, max), "message {got} is wrong, lost or out of order");
                got += 1;
            }
        }
    }
    assert!(dropped > 0, "no recv future was ever dropped: the test did not test anything");
}

/// A frame written in two halves over a real pipe: a `recv` polled while only the first half is in,
/// then dropped, loses nothing; the next `recv` returns the whole frame.
#[test]
fn recv_dropped_mid_frame_resumes() {
    use futures_util::FutureExt;
    use tokio::io::AsyncWriteExt;
    ringwire_testkit::watchdog(WATCHDOG, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (w, r) = tokio::net::unix::pipe::pipe().unwrap();
            let mut raw = w;
            let mut rx = ringwire::transport::tokio::AsyncStreamReceiver::new(r);
            let mut wire = Vec::new();
            // A first frame, awaited: the runtime learns that the pipe is readable.
            ringwire::transport::codec::encode_into(&mut wire, ringwire::wire::Kind::Data, b"warm").unwrap();
            raw.write_all(&wire).await.unwrap();
            assert_eq!(rx.recv().await.unwrap(), b"warm");
            wire.clear();
            ringwire::transport::codec::encode_into(&mut wire, ringwire::wire::Kind::Data, &[7u8; 5000]).unwrap();
            raw.write_all(&wire[..2500]).await.unwrap();
            // Receives dropped (by a branch that wins whenever recv waits) until the runtime has seen
            // the pipe readable and a receive has read the half frame into the decoder.
            while rx.buffered() == 0 {
                tokio::select! {
                    biased;
                    r = rx.recv() => panic!("a half frame is not a message: {r:?}"),
                    _ = tokio::task::yield_now() => {}
                }
            }
            assert_eq!(rx.buffered(), 2500, "the half frame is held by the receiver, not lost");
            assert!(rx.recv().now_or_never().is_none(), "still half a frame");
            raw.write_all(&wire[2500..]).await.unwrap();
            assert_eq!(rx.recv().await.unwrap(), vec![7u8; 5000]);
        })
    })
}

/// A send dropped after its frame went out in part (the pipe is full) leaves no torn frame: the rest
/// goes out first on the next send, and the reader sees both frames whole.
#[test]
fn send_dropped_mid_frame_finishes_on_next_send() {
    use futures_util::FutureExt;
    ringwire_testkit::watchdog(WATCHDOG, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (mut tx, mut rx) = ringwire::transport::tokio::pipe::pair().unwrap();
            // A first send, awaited: the runtime learns that the pipe is writable.
            tx.send(b"warm").await.unwrap();
            let big = vec![3u8; 512 << 10]; // far more than a pipe holds
            assert!(tx.send(&big).now_or_never().is_none(), "a pipe can't take 512 KiB at once");
            assert!(tx.buffered() > 0 && tx.buffered() < big.len() + 8, "part written, the rest queued");
            let reader = tokio::spawn(async move {
                assert_eq!(rx.recv().await.unwrap(), b"warm");
                let first = rx.recv().await.unwrap();
                let second = rx.recv().await.unwrap();
                (first, second)
            });
            tx.send(b"after").await.unwrap();
            let (first, second) = reader.await.unwrap();
            assert!(first == big, "the dropped send's frame arrives whole");
            assert_eq!(second, b"after");
        })
    })
}

/// A header announcing a payload over the receiver's maximum is refused before anything is buffered
/// for it (`BadFrame(Oversize)`), its payload skipped; the stream goes on.
#[test]
fn oversize_header_is_bounded_and_skipped() {
    use tokio::io::AsyncWriteExt;
    ringwire_testkit::watchdog(WATCHDOG, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
            let mut rx = ringwire::transport::tokio::AsyncStreamReceiver::new(r);
            rx.set_max_message(1000);
            let mut wire = Vec::new();
            ringwire::transport::codec::encode_into(&mut wire, ringwire::wire::Kind::Data, &[1u8; 30_000]).unwrap();
            ringwire::transport::codec::encode_into(&mut wire, ringwire::wire::Kind::Data, b"next").unwrap();
            let writer = tokio::spawn(async move { raw.write_all(&wire).await.unwrap() });
            match rx.recv().await {
                Err(TransportRecvError::BadFrame(ringwire::transport::codec::FrameError::Oversize { len, max })) => {
                    assert_eq!((len, max), (30_000, 1000))
                }
                other => panic!("expected BadFrame(Oversize), got {other:?}"),
            }
            assert_eq!(rx.recv().await.unwrap(), b"next");
            assert!(rx.buffer_allocated() <= 64 << 10, "held {} bytes", rx.buffer_allocated());
            writer.await.unwrap();
        })
    })
}

/// Runs `body` on a current-thread runtime under the thread watchdog.
fn on_runtime<Fut: Future<Output = ()>>(body: impl FnOnce() -> Fut + Send + 'static) {
    ringwire_testkit::watchdog(WATCHDOG, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move { tokio::time::timeout(WATCHDOG, body()).await.expect("hang") })
    })
}

/// Hostile datagrams from a raw socket: too short, trailing bytes, not a frame, over the limit (seen
/// with `MSG_TRUNC` whatever the buffer): each is `BadFrame` for that datagram alone, then a good one
/// is received.
#[test]
fn udp_bad_datagrams_are_bad_frames_alone() {
    udp_bad_datagrams(false);
}

/// The same with the receiver taking coalesced runs (`enable_gro`): lone datagrams come one by one.
#[test]
fn udp_bad_datagrams_are_bad_frames_alone_with_gro() {
    udp_bad_datagrams(true);
}

fn udp_bad_datagrams(gro: bool) {
    use ringwire::transport::codec::FrameError;
    on_runtime(move || async move {
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (_tx, mut rx) =
            ringwire::transport::tokio::udp::connect("127.0.0.1:0", raw.local_addr().unwrap()).await.unwrap();
        if gro {
            rx.enable_gro().unwrap();
        }
        assert_eq!(rx.gro(), gro);
        rx.set_max_datagram(100);
        raw.connect(rx.socket().unwrap().local_addr().unwrap()).unwrap();
        let mut good = Vec::new();
        ringwire::transport::codec::encode_into(&mut good, ringwire::wire::Kind::Data, b"good").unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        raw.send(&good[..3]).unwrap();
        raw.send(&trailing).unwrap();
        raw.send(&[0xff; 8]).unwrap();
        raw.send(&[0u8; 500]).unwrap();
        raw.send(&good).unwrap();
        let e = |r: Result<Vec<u8>, TransportRecvError>| match r {
            Err(TransportRecvError::BadFrame(e)) => e,
            other => panic!("expected BadFrame, got {other:?}"),
        };
        assert!(matches!(e(rx.recv().await), FrameError::Truncated { .. }));
        assert!(matches!(e(rx.recv().await), FrameError::TrailingBytes { extra: 1 }));
        assert!(matches!(e(rx.recv().await), FrameError::BadHeader(_)));
        assert!(matches!(e(rx.recv().await), FrameError::Oversize { len: 492, max: 92 }));
        assert_eq!(rx.recv().await.unwrap(), b"good");
    })
}

/// An async receiver with `enable_gro` takes a blocking sender's segmented runs (`send_buffered` +
/// `flush`) whole, in one receive, and hands out every datagram in order: runs of equal sizes with a shorter last one,
/// a lone one, and a run over the receiver's limit (one `Oversize` per datagram), the receiver going on
/// after it.
#[test]
fn udp_async_receiver_takes_segmented_runs_with_gro() {
    use ringwire::transport::codec::FrameError;
    use ringwire::transport::{udp, Sender, Wait};
    on_runtime(|| async {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (tx_probe, mut rx) =
            ringwire::transport::tokio::udp::connect("127.0.0.1:0", a.local_addr().unwrap()).await.unwrap();
        drop(tx_probe);
        a.connect(rx.socket().unwrap().local_addr().unwrap()).unwrap();
        let (mut tx, _) = udp::from_socket(a).unwrap();
        rx.enable_gro().unwrap();
        rx.set_max_datagram(2000);
        let exact = |i: usize, n: usize| {
            let mut m = vec![0u8; n];
            ringwire_testkit::fill(&mut m, i as u64);
            m
        };
        let mut i = 0;
        for (run, size) in [(40, 56), (7, 1000), (1, 300), (64, 8)] {
            let n = |k: usize| if k == run - 1 && run > 1 { size / 2 } else { size };
            for k in 0..run {
                tx.send_buffered(&exact(i + k, n(k)), Wait::Never).unwrap();
            }
            tx.flush().unwrap();
            for k in 0..run {
                assert_eq!(rx.recv().await.unwrap(), exact(i + k, n(k)), "datagram {k} of the run at {i}");
                if k == 0 {
                    // The whole run came with the first receive: nothing is left in the socket.
                    use std::os::fd::AsRawFd;
                    let fd = rx.socket().unwrap().as_raw_fd();
                    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd.
                    assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 0, "the run at {i} came in pieces");
                }
            }
            i += run;
        }
        // Three datagrams over the limit in one run, then a good one.
        for k in 0..3 {
            tx.send_buffered(&exact(k, 3000), Wait::Never).unwrap();
        }
        tx.flush().unwrap();
        tx.send(b"after").unwrap();
        for _ in 0..3 {
            match rx.recv().await {
                Err(TransportRecvError::BadFrame(FrameError::Oversize { len, max })) => {
                    assert_eq!((len, max), (3000, 1992))
                }
                other => panic!("expected Oversize, got {other:?}"),
            }
        }
        assert_eq!(rx.recv().await.unwrap(), b"after");
    })
}

/// An async sender remembers a segment size its path refused, as the blocking one does: with UDP
/// checksums off (`SO_NO_CHECK`) a run is refused and goes out one by one; once they are back on, runs
/// of that size still go one by one (they arrive as separate datagrams at a coalescing receiver) and a
/// smaller run is segmented (it arrives as one).
#[test]
fn udp_async_sender_does_not_ask_again_for_a_refused_segment_size() {
    use ringwire::transport::{udp, Receiver, Wait};
    use std::os::fd::AsRawFd;
    on_runtime(|| async {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        let no_check = |fd: i32, on: libc::c_int| {
            // SAFETY: `fd` is an open socket; the option value is a live c_int of the size given.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_NO_CHECK,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "SO_NO_CHECK: {}", std::io::Error::last_os_error());
        };
        no_check(a.as_raw_fd(), 1);
        let (mut tx, _) = ringwire::transport::tokio::udp::from_std(a).unwrap();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        let exact = |i: u64, n: usize| {
            let mut m = vec![0u8; n];
            ringwire_testkit::fill(&mut m, i);
            m
        };
        let mut i = 0u64;
        for (n, segmented) in [(100, false), (100, false), (40, true)] {
            for k in 0..5 {
                tx.send_buffered(&exact(i + k, n)).await.unwrap();
            }
            tx.flush().await.unwrap();
            if i == 0 {
                assert_eq!(tx.gso_refused_from(), Some(108));
                no_check(tx.socket().unwrap().as_raw_fd(), 0);
            }
            for k in 0..5 {
                let wait = if k == 0 { Wait::Until(Instant::now() + Duration::from_secs(10)) } else { Wait::Never };
                assert_eq!(rx.recv_wait(wait).unwrap(), exact(i + k, n), "datagram {k} of run {i}");
                if k == 0 {
                    let mut p = libc::pollfd { fd: rx.socket().unwrap().as_raw_fd(), events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd.
                    let left = unsafe { libc::poll(&mut p, 1, 0) } == 1;
                    assert_eq!(!left, segmented, "run {i} of {n} bytes: segmented send expected: {segmented}");
                }
            }
            i += 5;
        }
        assert_eq!(tx.gso_refused_from(), Some(108));
    })
}

/// Bytes that are not a frame header on a stream: `Broken`, every time (no way to resynchronise).
#[test]
fn stream_garbage_is_broken_for_good() {
    use tokio::io::AsyncWriteExt;
    on_runtime(|| async {
        let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
        let mut rx = ringwire::transport::tokio::AsyncStreamReceiver::new(r);
        raw.write_all(&[0xff; 64]).await.unwrap();
        for _ in 0..2 {
            match rx.recv().await {
                Err(TransportRecvError::Broken(_)) => {}
                other => panic!("expected Broken, got {other:?}"),
            }
        }
    })
}

/// A WebSocket client sending a message over the limit: refused while its header is read
/// (`BadFrame(Oversize)`), the connection closed (1009), later receives `PeerReset`.
#[test]
fn websocket_oversize_message_closes_the_connection() {
    use futures_util::SinkExt;
    use ringwire::transport::tokio::websocket;
    on_runtime(|| async {
        let mut listener = websocket::Listener::bind("127.0.0.1:0", "/t").await.unwrap();
        listener.set_options(websocket::Options { max_message: 1000, ..Default::default() });
        let url = listener.url().unwrap();
        let client = tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            ws.send(tokio_tungstenite::tungstenite::Message::Binary(vec![0u8; 5000].into())).await.unwrap();
            ws // kept open until the server has answered
        });
        let (_tx, mut rx, _) = listener.accept().await.unwrap();
        match rx.recv().await {
            Err(TransportRecvError::BadFrame(ringwire::transport::codec::FrameError::Oversize { max, .. })) => {
                assert_eq!(max, 1000)
            }
            other => panic!("expected BadFrame(Oversize), got {other:?}"),
        }
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset)));
        drop(client.await.unwrap());
    })
}

/// A client asking for another path gets a 404, and `accept` says `NotFound`.
#[test]
fn websocket_wrong_path_is_not_found() {
    use ringwire::transport::tokio::websocket;
    on_runtime(|| async {
        let listener = websocket::Listener::bind("127.0.0.1:0", "/right").await.unwrap();
        let url = format!("ws://{}/wrong", listener.local_addr().unwrap());
        let client = tokio::spawn(async move { websocket::connect(&url).await.map(|_| ()) });
        let err = listener.accept().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(client.await.unwrap().unwrap_err().kind(), std::io::ErrorKind::NotFound);
    })
}

macro_rules! conformance {
    ($($name:ident => $adapter:expr),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn round_trip() { run($adapter, super::round_trip) }
            #[test]
            fn ordering_10k() { run($adapter, super::ordering) }
            #[test]
            fn max_size() { run($adapter, super::max_size) }
            #[test]
            fn oversize_rejected_then_usable() { run($adapter, super::oversize) }
            #[test]
            fn peer_closes_cleanly() { run($adapter, super::peer_closes) }
            #[test]
            fn ext_round_trip() { run($adapter, super::ext_round_trip) }
            #[test]
            fn peer_killed_is_an_error_not_a_hang() { run($adapter, super::peer_killed) }
            #[test]
            fn recv_in_select_loses_nothing() { run($adapter, super::recv_in_select) }
        }
    )*};
}

/// `cargo test -p ringwire-testkit --test async_conformance on::tcp` runs one adapter's suite.
mod on {
    use super::*;
    conformance! {
        stdio => Adapter::Stdio,
        fifo => Adapter::Fifo,
        unix_path => Adapter::Unix,
        unix_abstract => Adapter::UnixAbstract,
        tcp => Adapter::Tcp,
        udp => Adapter::Udp,
        websocket => Adapter::Websocket,
    }
}
