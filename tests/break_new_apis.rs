//! Hostile-peer and edge-case probes of two newer APIs, kept as regression tests:
//!
//! * the async transports (`ringwire::transport::tokio`): raw peers driven by hand over real pipes and
//!   sockets (a header announcing a huge length then a stall or a dribble, a close mid-frame, a reset,
//!   bad datagrams, WebSocket text messages and handshakes that never complete). Each must be a typed
//!   error, with bounded memory, no panic, no hang past the caller's time-out.
//! * SPSC buffered publication (`send_buffered`, `commit_buffered`, `flush`, `set_batch_bytes`,
//!   `buffered_bytes`): batch bounds at 0 and at huge values, max-size messages, plain commits after
//!   buffered ones, a full ring with a batch withheld (blocking, non-blocking and async), drop with a
//!   batch withheld, abandoned reservations, a consumer that re-attaches, and a seeded mixed sequence.
//!
//! Every test runs inside the testkit's thread watchdog (async ones also under `tokio::time::timeout`).
//! No sleeps; "still waiting" is checked by polling a future once (`now_or_never`) after the bytes it
//! would read are already in the kernel.

use futures_util::FutureExt;
use ringwire::spsc::{RecvError, SendError};
use ringwire::transport::codec::FrameError;
use ringwire::transport::tokio::{AsyncReceiver, AsyncSender, AsyncStreamReceiver};
use ringwire::transport::TransportRecvError;
use ringwire::RingConfig;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const WATCHDOG: Duration = Duration::from_secs(30);

#[path = "support/runtime.rs"]
mod runtime;
use runtime::on_runtime;

/// Runs a blocking body inside the thread watchdog.
fn watched(body: impl FnOnce() + Send + 'static) {
    ringwire_testkit::watchdog(WATCHDOG, body)
}

fn header(len: u32, ext: u16) -> [u8; 8] {
    ringwire::wire::FrameHeader { len, kind: ringwire::wire::Kind::Data, ext }.to_bytes()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = header(payload.len() as u32, 0).to_vec();
    f.extend_from_slice(payload);
    f
}

/// Polls `rx.recv()` once at a time (letting the runtime's I/O driver run in between) until `n` bytes
/// are buffered: every poll must be `Pending` (no frame, no error out of a partial frame).
async fn pending_until_buffered<R: tokio::io::AsyncRead + Unpin + Send>(rx: &mut AsyncStreamReceiver<R>, n: usize) {
    while rx.buffered() < n {
        assert!(rx.recv().now_or_never().is_none(), "a result out of {} bytes of a partial frame", rx.buffered());
        tokio::task::yield_now().await;
    }
    assert_eq!(rx.buffered(), n);
}

// ---------------------------------------------------------------- async streams

/// A header announcing the largest frame the receiver's limit allows, then a dribble, then a stall: the
/// receive waits (polled once: Pending) and memory stays within the documented bound
/// `max(max_message + 8, 64 KiB)`; the writer closing mid-frame is `PeerReset`. (How far below that
/// bound it stays is an open finding: tests/open_findings/break_new_apis.rs.)
#[test]
fn stream_huge_announced_len_dribble_stall_then_close_mid_frame() {
    on_runtime(|| async {
        let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
        let mut rx = AsyncStreamReceiver::new(r);
        let max = rx.max_message();
        raw.write_all(&header(max as u32, 0)).await.unwrap();
        for i in 0..2000u32 {
            raw.write_all(&[i as u8; 7]).await.unwrap();
            pending_until_buffered(&mut rx, 8 + 7 * (i as usize + 1)).await;
            assert!(rx.buffer_allocated() <= (max + 8).max(64 << 10), "allocated {}", rx.buffer_allocated());
        }
        drop(raw);
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset)));
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset)));
    })
}

/// With the limit raised to `u32::MAX` (the cap), a header announcing ~4 GiB is accepted as a frame in
/// progress, not allocated: a few bytes of it allocate a few KiB.
#[test]
fn stream_u32_max_limit_announced_len_is_not_allocated() {
    on_runtime(|| async {
        let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
        let mut rx = AsyncStreamReceiver::new(r);
        rx.set_max_message(usize::MAX); // capped at u32::MAX
        assert_eq!(rx.max_message(), u32::MAX as usize);
        raw.write_all(&header(u32::MAX, 0)).await.unwrap();
        raw.write_all(&[1; 100]).await.unwrap();
        pending_until_buffered(&mut rx, 108).await;
        assert!(rx.buffer_allocated() <= 64 << 10, "allocated {}", rx.buffer_allocated());
        drop(raw);
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset)));
    })
}

/// Default limit, a header announcing 2 GiB: `BadFrame(Oversize)` at once, before the payload; the
/// payload that does arrive is thrown away (memory stays small); a close in it is `PeerReset`.
#[test]
fn stream_oversize_header_is_bad_frame_then_close_mid_skip_is_reset() {
    on_runtime(|| async {
        let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
        let mut rx = AsyncStreamReceiver::new(r);
        let max = rx.max_message();
        raw.write_all(&header(1 << 31, 0)).await.unwrap();
        match rx.recv().await {
            Err(TransportRecvError::BadFrame(FrameError::Oversize { len, max: m })) => {
                assert_eq!((len, m), (1 << 31, max))
            }
            other => panic!("expected BadFrame(Oversize), got {other:?}"),
        }
        let junk = vec![0xab; 1 << 20];
        let mut writer = tokio::spawn(async move {
            raw.write_all(&junk).await.unwrap();
            raw // closed once the reader has taken it all
        });
        // The skipped bytes never come out as frames: the receive stays pending until the writer ends
        // (dropping it then is cancel-safe).
        tokio::select! {
            r = rx.recv() => panic!("a frame or error out of skipped bytes: {r:?}"),
            w = &mut writer => drop(w.unwrap()),
        }
        assert!(rx.buffer_allocated() <= (64 << 10) + 8, "allocated {}", rx.buffer_allocated());
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset)));
        assert!(rx.buffer_allocated() <= (64 << 10) + 8);
    })
}

/// An oversize frame whose payload does arrive whole is skipped, and the stream goes on.
#[test]
fn stream_oversize_frame_is_skipped_and_the_stream_goes_on() {
    on_runtime(|| async {
        let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
        let mut rx = AsyncStreamReceiver::new(r);
        rx.set_max_message(100);
        let mut bytes = frame(&[7; 5000]);
        bytes.extend(frame(b"after"));
        let writer = tokio::spawn(async move { raw.write_all(&bytes).await.map(|()| raw) });
        assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(FrameError::Oversize { len: 5000, .. }))));
        assert_eq!(rx.recv().await.unwrap(), b"after");
        drop(writer.await.unwrap().unwrap());
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerGone)));
    })
}

/// A close inside a header (3 of its 8 bytes) is `PeerReset`, not `PeerGone`; and again on later calls.
#[test]
fn stream_close_mid_header_is_reset() {
    on_runtime(|| async {
        let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
        let mut rx = AsyncStreamReceiver::new(r);
        raw.write_all(&frame(b"whole")).await.unwrap();
        raw.write_all(&header(10, 0)[..3]).await.unwrap();
        drop(raw);
        assert_eq!(rx.recv().await.unwrap(), b"whole");
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset)));
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset)));
    })
}

/// A header with `ext` larger than its length is refused (typed), never a panic in `name()`.
#[test]
fn stream_ext_longer_than_payload_is_typed() {
    on_runtime(|| async {
        let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
        let mut rx = AsyncStreamReceiver::new(r);
        let mut bytes = header(3, 9).to_vec();
        bytes.extend_from_slice(b"abc");
        raw.write_all(&bytes).await.unwrap();
        match rx.recv_frame().await {
            Err(TransportRecvError::Broken(_) | TransportRecvError::BadFrame(_)) => {}
            Ok(f) => panic!("accepted a frame with ext {} > len {}", f.ext, f.bytes.len()),
            Err(e) => panic!("expected Broken/BadFrame, got {e:?}"),
        }
    })
}

/// TCP: a raw peer sends half a frame and resets the connection (SO_LINGER 0): `PeerReset`.
#[test]
fn tcp_reset_mid_frame_is_peer_reset() {
    use ringwire::transport::tokio::tcp;
    on_runtime(|| async {
        let listener = tcp::Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let raw = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(&header(100, 0)).await.unwrap();
            s.write_all(&[1; 40]).await.unwrap();
            s
        });
        let (_tx, mut rx, _) = listener.accept().await.unwrap();
        let s = raw.await.unwrap();
        // The 48 bytes are in our socket before the reset: the receive is still waiting for the rest.
        pending_until_buffered(&mut rx, 48).await;
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket descriptor and a `linger` of the size passed.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::from_ref(&linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        drop(s); // SO_LINGER 0: the close is a RST
        match rx.recv().await {
            Err(TransportRecvError::PeerReset) => {}
            other => panic!("expected PeerReset, got {other:?}"),
        }
    })
}

// ---------------------------------------------------------------- async UDP

/// An empty datagram and a bare header announcing more than it carries: `BadFrame` each, the next good
/// one still comes; a datagram of exactly the maximum passes.
#[test]
fn udp_empty_and_short_datagrams_then_exact_max() {
    on_runtime(|| async {
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (_tx, mut rx) =
            ringwire::transport::tokio::udp::connect("127.0.0.1:0", raw.local_addr().unwrap()).await.unwrap();
        rx.set_max_datagram(200);
        raw.connect(rx.socket().unwrap().local_addr().unwrap()).unwrap();
        raw.send(&[]).unwrap();
        raw.send(&header(u32::MAX, 0)).unwrap();
        raw.send(&frame(&[3; 192])).unwrap();
        raw.send(&frame(&[4; 193])).unwrap();
        assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(FrameError::Truncated { missing: 8 }))));
        assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(FrameError::Oversize { .. }))));
        assert_eq!(rx.recv().await.unwrap(), vec![3; 192]);
        assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(FrameError::Oversize { .. }))));
    })
}

/// The async UDP sender refuses a message one byte over its limit, and `send_buffered` of many
/// max-size datagrams with a tiny `max_buffered` still delivers them, in order.
#[test]
fn udp_send_buffered_with_tiny_bound_delivers_in_order() {
    on_runtime(|| async {
        use ringwire::transport::tokio::udp;
        let a = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        a.connect(b.local_addr().unwrap()).await.unwrap();
        b.connect(a.local_addr().unwrap()).await.unwrap();
        let (mut tx, _) = udp::from_socket(a).unwrap();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        tx.set_max_datagram(1000);
        rx.set_max_datagram(1000);
        tx.set_max_buffered(0);
        assert!(matches!(tx.send(&[0; 993]).await, Err(ringwire::transport::TransportSendError::Oversize { .. })));
        for i in 0..20u8 {
            tx.send_buffered(&[i; 992]).await.unwrap();
            assert_eq!(rx.recv().await.unwrap(), vec![i; 992]);
        }
        tx.close().await.unwrap();
    })
}

// ---------------------------------------------------------------- async WebSocket

/// Text messages (a frame's bytes, or not) are `BadFrame` for that message alone; binary after them is
/// received.
#[test]
fn websocket_text_messages_are_bad_frames_alone() {
    use futures_util::SinkExt;
    use ringwire::transport::tokio::websocket;
    use tokio_tungstenite::tungstenite::Message;
    on_runtime(|| async {
        let listener = websocket::Listener::bind("127.0.0.1:0", "/t").await.unwrap();
        let url = listener.url().unwrap();
        let client = tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            ws.send(Message::Text("hello".into())).await.unwrap();
            let as_text = String::from_utf8(frame(b"hi")).unwrap();
            ws.send(Message::Text(as_text.into())).await.unwrap();
            ws.send(Message::Binary(frame(b"ok").into())).await.unwrap();
            ws.send(Message::Binary(vec![1, 2].into())).await.unwrap();
            ws.send(Message::Binary(frame(b"ok2").into())).await.unwrap();
            ws
        });
        let (_tx, mut rx, _) = listener.accept().await.unwrap();
        assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(_))));
        assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(_))));
        assert_eq!(rx.recv().await.unwrap(), b"ok");
        assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(FrameError::Truncated { .. }))));
        assert_eq!(rx.recv().await.unwrap(), b"ok2");
        drop(client.await.unwrap());
    })
}

/// A client that connects and never sends its handshake (or half of it): `accept` gives up with
/// `TimedOut` after `handshake_timeout`.
#[test]
fn websocket_handshake_never_completed_times_out() {
    use ringwire::transport::tokio::websocket;
    on_runtime(|| async {
        let mut listener = websocket::Listener::bind("127.0.0.1:0", "/t").await.unwrap();
        listener
            .set_options(websocket::Options { handshake_timeout: Duration::from_millis(200), ..Default::default() });
        let addr = listener.local_addr().unwrap();
        for partial in [&b""[..], b"GET /t HTTP/1.1\r\nHost: x\r\n"] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(partial).await.unwrap();
            let err = listener.accept().await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
            drop(s);
        }
        // Garbage instead of HTTP: an error, not a hang or a panic.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0xff; 300]).await.unwrap();
        s.write_all(b"\r\n\r\n").await.unwrap();
        assert!(listener.accept().await.is_err());
    })
}

/// A server that accepts TCP and never answers the handshake: the client's `connect_with` gives up
/// with `TimedOut` after `handshake_timeout`.
#[test]
fn websocket_client_against_a_silent_server_times_out() {
    use ringwire::transport::tokio::websocket;
    on_runtime(|| async {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/t", server.local_addr().unwrap());
        let opts = websocket::Options { handshake_timeout: Duration::from_millis(200), ..Default::default() };
        let (r, _held) = tokio::join!(websocket::connect_with(&url, &opts), server.accept());
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    })
}

/// A WebSocket message over the limit sent as many small fragments (each within the frame limit):
/// refused as the total grows, `BadFrame(Oversize)`, not buffered whole.
#[test]
fn websocket_fragmented_oversize_message_is_refused() {
    use ringwire::transport::tokio::websocket;
    on_runtime(|| async {
        let mut listener = websocket::Listener::bind("127.0.0.1:0", "/t").await.unwrap();
        listener.set_options(websocket::Options { max_message: 1000, ..Default::default() });
        let url = listener.url().unwrap();
        let client = tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let mut s = ws.into_inner();
            // Raw client frames (masked, key 0): binary opener then continuations of 500 bytes each.
            let mut out = Vec::new();
            for i in 0..10 {
                let opcode = if i == 0 { 0x2 } else { 0x0 };
                out.push(opcode); // FIN clear
                out.extend_from_slice(&[0x80 | 126, (500u16 >> 8) as u8, 500u16 as u8, 0, 0, 0, 0]);
                out.extend_from_slice(&[0; 500]);
            }
            let _ = s.write_all(&out).await; // the server may close before it has read everything
            s
        });
        let (_tx, mut rx, _) = listener.accept().await.unwrap();
        match rx.recv().await {
            Err(TransportRecvError::BadFrame(FrameError::Oversize { max: 1000, .. })) => {}
            other => panic!("expected BadFrame(Oversize), got {other:?}"),
        }
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset)));
        drop(client.await.unwrap());
    })
}

// ---------------------------------------------------------------- SPSC buffered publication

fn small_ring() -> (ringwire::spsc::HeapProducer, ringwire::spsc::HeapConsumer) {
    ringwire::spsc::channel(RingConfig::new(4096, 1000)).unwrap()
}

#[test]
fn batch_bytes_zero_publishes_every_commit() {
    watched(|| {
        let (mut tx, mut rx) = small_ring();
        tx.set_batch_bytes(0);
        tx.send_buffered(b"a").unwrap();
        assert_eq!(tx.buffered_bytes(), 0);
        assert_eq!(&*rx.try_recv().unwrap(), b"a");
    })
}

/// A huge batch bound is capped; buffered commits fill the ring, `try_reserve` on the full ring publishes
/// the batch (`WouldBlock`), and everything arrives once, in order.
#[test]
fn huge_batch_full_ring_try_reserve_publishes() {
    watched(|| {
        let (mut tx, mut rx) = small_ring();
        tx.set_batch_bytes(usize::MAX);
        let mut n = 0u32;
        loop {
            match tx.try_reserve(100) {
                Ok(mut slot) => {
                    slot[..4].copy_from_slice(&n.to_le_bytes());
                    slot.commit_buffered();
                    n += 1;
                }
                Err(SendError::WouldBlock) => break,
                Err(e) => panic!("{e:?}"),
            }
            assert!(n < 1000);
        }
        assert!(n > 10, "{n} records of 100 bytes in a 4 KiB ring");
        assert_eq!(tx.buffered_bytes(), 0, "a full ring published the batch");
        for i in 0..n {
            assert_eq!(rx.try_recv().unwrap()[..4], i.to_le_bytes());
        }
        assert!(matches!(rx.try_recv().map(|_| ()), Err(RecvError::Empty)));
    })
}

/// Max-size messages buffered, wrapping many times, with the consumer draining in between.
#[test]
fn max_size_buffered_messages_wrap() {
    watched(|| {
        let (mut tx, mut rx) = small_ring();
        let max = tx.max_message();
        tx.set_batch_bytes(4096);
        let mut next_rx = 0u32;
        for i in 0..200u32 {
            let msg = vec![i as u8; max];
            loop {
                match tx.try_reserve(max) {
                    Ok(mut slot) => {
                        slot.copy_from_slice(&msg);
                        slot.commit_buffered();
                        break;
                    }
                    Err(SendError::WouldBlock) => {
                        let m = rx.try_recv().expect("the full ring published its batch");
                        assert_eq!(m.len(), max);
                        assert!(m.iter().all(|&b| b == next_rx as u8));
                        next_rx += 1;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        tx.flush();
        while next_rx < 200 {
            let m = rx.try_recv().unwrap();
            assert!(m.len() == max && m.iter().all(|&b| b == next_rx as u8), "message {next_rx}");
            next_rx += 1;
        }
    })
}

/// `commit_len` and `commit_ext` after buffered commits publish everything before them, in order.
#[test]
fn commit_len_and_ext_after_buffered() {
    watched(|| {
        let (mut tx, mut rx) = small_ring();
        tx.send_buffered(b"one").unwrap();
        tx.send_buffered(b"two").unwrap();
        assert_eq!(tx.buffered_bytes(), 32);
        assert!(rx.try_recv().is_err());
        let mut slot = tx.try_reserve(100).unwrap();
        slot[..9].copy_from_slice(b"evt hello");
        slot.commit_ext(9, 3);
        assert_eq!(tx.buffered_bytes(), 0);
        tx.send_buffered(b"three").unwrap();
        let mut slot = tx.try_reserve(50).unwrap();
        slot[..4].copy_from_slice(b"four");
        slot.commit_len(4);
        assert_eq!(&*rx.try_recv().unwrap(), b"one");
        assert_eq!(&*rx.try_recv().unwrap(), b"two");
        let m = rx.try_recv().unwrap();
        assert_eq!((&*m, m.ext()), (&b"evt hello"[..], 3));
        drop(m);
        assert_eq!(&*rx.try_recv().unwrap(), b"three");
        assert_eq!(&*rx.try_recv().unwrap(), b"four");
        assert!(rx.try_recv().is_err());
    })
}

/// Reservations abandoned while a batch is withheld (one of them wrapping, so a pad is written) lose
/// nothing of the batch and publish nothing of their own.
#[test]
fn abandoned_reservations_with_a_pending_batch() {
    watched(|| {
        let (mut tx, mut rx) = small_ring();
        tx.set_batch_bytes(usize::MAX);
        // Move the positions near the end of the ring.
        for _ in 0..3 {
            tx.send(&[9; 1000]).unwrap();
            drop(rx.try_recv().unwrap());
        }
        tx.send_buffered(b"kept-1").unwrap();
        let _ = tx.try_reserve(10).unwrap(); // abandoned
        let _ = tx.try_reserve(1000).unwrap(); // abandoned; did not fit before the end: pad + wrap
        tx.send_buffered(b"kept-2").unwrap();
        assert!(rx.try_recv().is_err());
        tx.flush();
        assert_eq!(&*rx.try_recv().unwrap(), b"kept-1");
        assert_eq!(&*rx.try_recv().unwrap(), b"kept-2");
        assert!(rx.try_recv().is_err());
        tx.send(b"after").unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"after");
    })
}

/// Dropping the producer publishes the batch; then `PeerGone`.
#[test]
fn drop_with_pending_batch_publishes_then_peer_gone() {
    watched(|| {
        let (mut tx, mut rx) = small_ring();
        tx.set_batch_bytes(usize::MAX);
        for i in 0..5u8 {
            tx.send_buffered(&[i]).unwrap();
        }
        assert!(rx.try_recv().is_err());
        drop(tx);
        for i in 0..5u8 {
            assert_eq!(*rx.recv().unwrap(), [i]);
        }
        assert!(matches!(rx.recv().map(|_| ()), Err(RecvError::PeerGone)));
    })
}

/// A blocking `send_buffered` into a full ring whose consumer waits in a blocking `recv`: the batch is
/// published before the producer waits, so neither side waits for the other forever.
#[test]
fn blocking_send_buffered_into_full_ring_no_deadlock() {
    watched(|| {
        const N: u32 = 20_000;
        let (mut tx, mut rx) = small_ring();
        tx.set_batch_bytes(usize::MAX);
        let consumer = std::thread::spawn(move || {
            for i in 0..N {
                assert_eq!(rx.recv().unwrap()[..4], i.to_le_bytes());
            }
        });
        for i in 0..N {
            tx.send_buffered(&i.to_le_bytes()).unwrap();
        }
        tx.flush();
        consumer.join().unwrap();
    })
}

/// The same with `reserve_async` + `commit_buffered` and `recv_async`, two tasks on one thread.
#[test]
fn reserve_async_with_pending_batch_no_deadlock() {
    on_runtime(|| async {
        const N: u32 = 20_000;
        let (mut tx, mut rx) = small_ring();
        tx.set_batch_bytes(usize::MAX);
        let consumer = tokio::spawn(async move {
            for i in 0..N {
                assert_eq!(rx.recv_async().await.unwrap()[..4], i.to_le_bytes());
            }
            assert!(matches!(rx.recv_async().await.map(|_| ()), Err(RecvError::PeerGone)));
        });
        for i in 0..N {
            let mut slot = tx.reserve_async(4).await.unwrap();
            slot.copy_from_slice(&i.to_le_bytes());
            slot.commit_buffered();
        }
        drop(tx);
        consumer.await.unwrap();
    })
}

/// A consumer that leaves while a batch is withheld and a new one that attaches: the batch, flushed,
/// reaches the new consumer, once and in order.
#[test]
fn consumer_reattaches_while_a_batch_is_withheld() {
    watched(|| {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "ringwire-test-break-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let ring = ringwire::ShmRing::create(&name, RingConfig::new(4096, 1000)).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.set_batch_bytes(usize::MAX);
        let mut rx = ring.consumer().unwrap();
        tx.send(b"seen").unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"seen");
        tx.send_buffered(b"withheld-1").unwrap();
        tx.send_buffered(b"withheld-2").unwrap();
        drop(rx);
        let mut rx = ring.consumer().unwrap();
        assert!(rx.try_recv().is_err());
        tx.flush();
        assert_eq!(&*rx.try_recv().unwrap(), b"withheld-1");
        assert_eq!(&*rx.try_recv().unwrap(), b"withheld-2");
        tx.send_buffered(b"later").unwrap();
        drop(tx);
        assert_eq!(&*rx.recv().unwrap(), b"later");
        assert!(matches!(rx.recv().map(|_| ()), Err(RecvError::PeerGone)));
    })
}

/// A seeded mix of buffered and plain commits, `commit_len`, abandoned reservations, flushes, batch
/// bounds and draining, checked against a model: every committed message once, in order.
#[test]
fn mixed_sequence_matches_model() {
    watched(|| {
        let (mut tx, mut rx) = small_ring();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut sent: std::collections::VecDeque<Vec<u8>> = Default::default();
        let mut visible = 0usize; // messages of `sent` published (a prefix)
        let mut seq = 0u32;
        for _ in 0..200_000 {
            let len = 4 + rnd(996) as usize;
            let mut msg = vec![(seq % 251) as u8; len];
            msg[..4].copy_from_slice(&seq.to_le_bytes());
            match rnd(10) {
                0..=3 => match tx.try_reserve(len) {
                    Ok(mut slot) => {
                        slot.copy_from_slice(&msg);
                        slot.commit_buffered();
                        sent.push_back(msg);
                        seq += 1;
                        if tx.buffered_bytes() == 0 {
                            visible = sent.len();
                        }
                    }
                    Err(SendError::WouldBlock) => visible = sent.len(),
                    Err(e) => panic!("{e:?}"),
                },
                4 => match tx.try_reserve(len) {
                    Ok(mut slot) => {
                        let cut = 4 + rnd(len as u64 - 3) as usize;
                        slot[..cut].copy_from_slice(&msg[..cut]);
                        slot.commit_len(cut);
                        msg.truncate(cut);
                        sent.push_back(msg);
                        seq += 1;
                        visible = sent.len();
                    }
                    Err(SendError::WouldBlock) => visible = sent.len(),
                    Err(e) => panic!("{e:?}"),
                },
                5 => match tx.try_reserve(len) {
                    Ok(_abandoned) => {}
                    Err(SendError::WouldBlock) => visible = sent.len(),
                    Err(e) => panic!("{e:?}"),
                },
                6 => {
                    tx.flush();
                    visible = sent.len();
                }
                7 => tx.set_batch_bytes([0, 64, 4096, usize::MAX][rnd(4) as usize]),
                _ => {
                    for _ in 0..rnd(8) {
                        match rx.try_recv() {
                            Ok(m) => {
                                assert!(visible > 0, "a message the producer withholds");
                                assert_eq!(&*m, &sent.pop_front().unwrap()[..]);
                                visible -= 1;
                            }
                            Err(RecvError::Empty) => {
                                assert_eq!(visible, 0, "a published message is missing");
                                break;
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
            }
            // A batch published by itself (it reached the bound) is visible too.
            if tx.buffered_bytes() == 0 {
                visible = sent.len();
            }
        }
        tx.flush();
        while let Some(want) = sent.pop_front() {
            assert_eq!(&*rx.try_recv().unwrap(), &want[..]);
        }
        assert!(rx.try_recv().is_err());
    })
}

/// A WebSocket text message that is not UTF-8 (a raw client frame): a typed error, no panic; the
/// connection is over (later receives `PeerReset`).
#[test]
fn websocket_invalid_utf8_text_is_typed() {
    use ringwire::transport::tokio::websocket;
    on_runtime(|| async {
        let listener = websocket::Listener::bind("127.0.0.1:0", "/t").await.unwrap();
        let url = listener.url().unwrap();
        let client = tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let mut s = ws.into_inner();
            // FIN + text, masked (key 0), 2 bytes that are not UTF-8.
            s.write_all(&[0x81, 0x80 | 2, 0, 0, 0, 0, 0xff, 0xfe]).await.unwrap();
            s
        });
        let (_tx, mut rx, _) = listener.accept().await.unwrap();
        match rx.recv().await {
            Err(TransportRecvError::Io(_) | TransportRecvError::BadFrame(_) | TransportRecvError::PeerReset) => {}
            other => panic!("expected a typed error, got {other:?}"),
        }
        assert!(matches!(rx.recv().await, Err(TransportRecvError::PeerReset | TransportRecvError::Io(_))));
        drop(client.await.unwrap());
    })
}

/// A WebSocket client that never reads: sends fill the kernel buffers and `max_queued`, then one stalls
/// past `stall_timeout` and returns `PeerReset` (not a hang); later sends fail too.
#[test]
fn websocket_peer_that_never_reads_is_reset_after_stall_timeout() {
    use ringwire::transport::tokio::websocket;
    use ringwire::transport::TransportSendError;
    on_runtime(|| async {
        let mut listener = websocket::Listener::bind("127.0.0.1:0", "/t").await.unwrap();
        listener.set_options(websocket::Options {
            stall_timeout: Duration::from_millis(300),
            max_queued: 256 << 10,
            ..Default::default()
        });
        let url = listener.url().unwrap();
        let client = tokio::spawn(async move { tokio_tungstenite::connect_async(url).await.unwrap().0 });
        let (mut tx, _rx, _) = listener.accept().await.unwrap();
        let _never_reads = client.await.unwrap();
        let chunk = vec![0u8; 60 << 10];
        let mut sent = 0usize;
        loop {
            match tx.send(&chunk).await {
                Ok(()) => sent += 1,
                Err(TransportSendError::PeerReset) => break,
                Err(e) => panic!("expected PeerReset, got {e:?}"),
            }
            assert!(sent < 100_000, "no stall after {sent} messages");
        }
        assert!(tx.send(b"x").await.is_err());
    })
}

/// An oversize `send_buffered` while a batch is withheld is `Oversize` and leaves the batch intact;
/// empty messages buffer and arrive as empty messages.
#[test]
fn oversize_and_empty_buffered_messages() {
    watched(|| {
        let (mut tx, mut rx) = small_ring();
        tx.set_batch_bytes(usize::MAX);
        tx.send_buffered(b"").unwrap();
        tx.send_buffered(b"x").unwrap();
        let max = tx.max_message();
        assert!(matches!(tx.send_buffered(&vec![0; max + 1]), Err(SendError::Oversize { .. })));
        assert_eq!(tx.buffered_bytes(), 24);
        tx.send_buffered(b"").unwrap();
        tx.flush();
        tx.flush(); // a second flush with nothing withheld is a no-op
        assert_eq!(rx.try_recv().unwrap().len(), 0);
        assert_eq!(&*rx.try_recv().unwrap(), b"x");
        assert_eq!(rx.try_recv().unwrap().len(), 0);
        assert!(rx.try_recv().is_err());
    })
}

/// A stream peer that announces a large frame and then dribbles one byte per read makes the receiver
/// hold about what arrived, not what the header announced (regression: `FrameDecoder::read_from` asked
/// for its whole growth target as free room after what it held, so the buffer grew by what was held on
/// every read and reached the 1 MiB limit after 835 bytes received).
#[test]
fn stream_dribble_grows_the_buffer_with_what_arrives() {
    on_runtime(|| async {
        let (mut raw, r) = tokio::net::unix::pipe::pipe().unwrap();
        let mut rx = AsyncStreamReceiver::new(r);
        let max = rx.max_message(); // 1 MiB by default
        raw.write_all(&header(max as u32, 0)).await.unwrap();
        let mut sent = 8usize;
        for _ in 0..3000 {
            raw.write_all(&[0; 1]).await.unwrap();
            sent += 1;
            pending_until_buffered(&mut rx, sent).await;
            // Generous: at most 4x what arrived (or the first 4 KiB chunk) plus one 64 KiB read chunk.
            assert!(
                rx.buffer_allocated() <= 4 * sent.max(4096) + (64 << 10),
                "allocated {} after {sent} bytes received",
                rx.buffer_allocated()
            );
        }
    })
}

/// Regression, blocking twin: the same amplification through `transport::StreamReceiver::try_recv`
/// (same `FrameDecoder`): 1-byte writes after a header announcing the default limit.
#[test]
fn blocking_stream_dribble_grows_the_buffer_with_what_arrives() {
    use ringwire::transport::Receiver;
    use std::io::Write;
    watched(|| {
        let (mut raw, r) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut rx = ringwire::transport::StreamReceiver::new(r).unwrap();
        raw.write_all(&header(1 << 20, 0)).unwrap();
        let mut sent = 8usize;
        for _ in 0..3000 {
            raw.write_all(&[0; 1]).unwrap();
            sent += 1;
            assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
            assert!(
                rx.buffer_allocated() <= 4 * sent.max(4096) + (64 << 10),
                "allocated {} after {sent} bytes received",
                rx.buffer_allocated()
            );
        }
    })
}
