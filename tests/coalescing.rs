//! Write coalescing on the kernel transports (`Sender::send_buffered` + `flush`): frames queued in a
//! bounded buffer go out in one `write` (`sendmmsg` on UDP), in order and byte for byte, interleaved
//! with plain sends; the buffer never grows past its bound (a full one is `WouldBlock` / `Timeout`, the
//! message not accepted); a plain send is never held back; close writes the queue out, a drop what goes
//! without waiting. Real pipes and sockets; deadlines are watchdogs only. The same for WebSocket
//! (tungstenite's write buffer: still one binary message per frame on the wire). And the receive side
//! of batching: a UDP receiver takes a segmented run in one receive (`UDP_GRO`) and, without it, takes
//! waiting small datagrams with `recvmmsg`, each still checked on its own; `recv_frame_into_vec` reuses
//! one buffer.

use ringwire::transport::{
    pipe, tcp, udp, FdReceiver, FdSender, Receiver, Sender, StreamFd, StreamReceiver, StreamSender, TransportRecvError,
    TransportSendError, Wait, DEFAULT_MAX_BUFFERED,
};
use ringwire_testkit::{check, message};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

/// Two UDP sockets on loopback, each connected to the other.
fn udp_pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

/// Exactly `n` bytes of message `i` (the testkit's `message` picks a length up to its `max`).
fn exact(i: usize, n: usize) -> Vec<u8> {
    let mut m = vec![0u8; n];
    ringwire_testkit::fill(&mut m, i as u64);
    m
}

fn soon() -> Instant {
    Instant::now() + WATCHDOG
}

/// A connected stream pair of each kind: (name, sender, receiver).
fn stream_pairs() -> Vec<(&'static str, FdSender, FdReceiver)> {
    let (ptx, prx) = pipe::pair().unwrap();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let utx = StreamSender::new(StreamFd::new(a).unwrap()).unwrap();
    let urx = StreamReceiver::new(StreamFd::new(b).unwrap()).unwrap();
    let l = tcp::Listener::bind("127.0.0.1:0").unwrap();
    // The other direction's halves are dropped: that shuts down only the direction not used here.
    let (ttx, _) = tcp::connect(l.local_addr().unwrap()).unwrap();
    let (_, srx, _) = l.accept().unwrap();
    vec![("pipe", ptx, prx), ("unix", utx, urx), ("tcp", ttx, srx)]
}

/// Sizes that cross every boundary: empty, tiny, around the header, larger than a pipe's atomic write.
fn size_of(i: u64) -> usize {
    [0, 1, 7, 8, 9, 64, 100, 1000, 4095, 4097, 9000][(i % 11) as usize]
}

/// A blocking stream receiver whose last read emptied its descriptor waits in `poll` before it reads
/// again: it still honours a deadline (`Timeout`, nothing lost), a `try_` call still does not wait, a
/// message already waiting comes at once, a large one written while it waits comes whole (its reads
/// fill their room, so it reads on without polling), and the end of the stream is `PeerGone`.
#[test]
fn a_blocking_stream_receiver_that_emptied_its_descriptor_still_sees_everything() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        for (name, mut tx, mut rx) in stream_pairs() {
            tx.send(b"first").unwrap();
            assert_eq!(rx.recv_deadline(soon()).unwrap(), b"first", "{name}");
            let r = rx.recv_deadline(Instant::now() + Duration::from_millis(20));
            assert!(matches!(r, Err(TransportRecvError::Timeout)), "{name}: {r:?}");
            assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)), "{name}");
            tx.send(b"second").unwrap();
            assert_eq!(rx.recv_wait(Wait::Forever).unwrap(), b"second", "{name}");
            let big = exact(7, 1 << 20);
            let writer = std::thread::spawn(move || {
                tx.send(&big).unwrap();
                tx.send(b"after").unwrap();
                tx
            });
            assert_eq!(rx.recv_wait(Wait::Forever).unwrap(), exact(7, 1 << 20), "{name}");
            assert_eq!(rx.recv_wait(Wait::Forever).unwrap(), b"after", "{name}");
            let mut tx = writer.join().unwrap();
            tx.close().unwrap();
            let r = rx.recv_wait(Wait::Forever);
            assert!(matches!(r, Err(TransportRecvError::PeerGone)), "{name}: {r:?}");
        }
    });
}

#[test]
fn buffered_and_plain_sends_arrive_in_order_byte_exact() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        for (name, mut tx, mut rx) in stream_pairs() {
            const N: u64 = 5_000;
            let reader = std::thread::spawn(move || {
                for i in 0..N {
                    let m = rx.recv_deadline(soon()).unwrap();
                    assert!(check(&m, i, size_of(i)), "{name}: message {i} wrong or out of order");
                }
                rx
            });
            for i in 0..N {
                let m = message(i, size_of(i));
                match i % 7 {
                    // A plain send writes the queue and its own frame, in order.
                    0 => tx.send(&m).unwrap(),
                    _ => tx.send_buffered(&m, Wait::Until(soon())).unwrap(),
                }
                assert!(tx.buffered() <= DEFAULT_MAX_BUFFERED, "{name}: {} bytes queued", tx.buffered());
            }
            tx.flush().unwrap();
            assert_eq!(tx.buffered(), 0);
            reader.join().unwrap();
        }
    });
}

#[test]
fn a_buffered_message_waits_for_flush_and_a_plain_send_does_not() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        for (name, mut tx, mut rx) in stream_pairs() {
            tx.send_buffered(b"queued", Wait::Never).unwrap();
            assert_eq!(tx.buffered(), 8 + 6);
            // Nothing on the wire yet: queued means queued.
            assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)), "{name}");
            tx.flush().unwrap();
            assert_eq!(rx.recv_deadline(soon()).unwrap(), b"queued");
            // A plain send after buffered ones takes them along, and goes out at once.
            tx.send_buffered(b"one", Wait::Never).unwrap();
            tx.send(b"two").unwrap();
            assert_eq!(tx.buffered(), 0, "{name}");
            assert_eq!(rx.recv_deadline(soon()).unwrap(), b"one");
            assert_eq!(rx.recv_deadline(soon()).unwrap(), b"two");
            // A lone plain send: on the wire when send returns.
            tx.send(b"lone").unwrap();
            assert_eq!(rx.try_recv().unwrap(), b"lone");
        }
    });
}

#[test]
fn the_buffer_is_bounded_when_the_peer_does_not_read() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        for (name, mut tx, rx) in stream_pairs() {
            tx.set_max_buffered(4096);
            tx.set_stall_timeout(None);
            let msg = vec![7u8; 100];
            // Fill the kernel's buffer and ours: accepted until both are full, then WouldBlock. (A
            // WouldBlock that wrote part of the queue leaves room in it: full means no progress.)
            let mut accepted = 0u64;
            loop {
                let before = tx.buffered();
                match tx.send_buffered(&msg, Wait::Never) {
                    Ok(()) => accepted += 1,
                    Err(TransportSendError::WouldBlock) if tx.buffered() == before => break,
                    Err(TransportSendError::WouldBlock) => {}
                    Err(e) => panic!("{name}: {e:?}"),
                }
                assert!(tx.buffered() <= 4096, "{name}: {} bytes queued", tx.buffered());
                assert!(accepted < 10_000_000, "{name}: the buffer never filled");
            }
            assert!(tx.buffered() <= 4096);
            // A deadline: Timeout, nothing more accepted, still bounded.
            let before = tx.buffered();
            let e = tx.send_buffered(&msg, Wait::Until(Instant::now() + Duration::from_millis(20))).unwrap_err();
            assert!(matches!(e, TransportSendError::Timeout), "{name}: {e:?}");
            assert!(tx.buffered() <= before.max(4096));
            // Reading everything lets the queue out, in order.
            let reader = std::thread::spawn(move || {
                let mut rx = rx;
                for _ in 0..accepted {
                    assert_eq!(rx.recv_deadline(soon()).unwrap(), vec![7u8; 100]);
                }
                assert_eq!(rx.recv_deadline(soon()).unwrap(), b"end");
            });
            tx.send_buffered(b"end", Wait::Until(soon())).unwrap();
            tx.flush().unwrap();
            reader.join().unwrap();
        }
    });
}

#[test]
fn a_frame_larger_than_the_bound_is_written_through() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        for (name, mut tx, mut rx) in stream_pairs() {
            tx.set_max_buffered(1024);
            let big = vec![9u8; 50_000];
            tx.send_buffered(b"small", Wait::Never).unwrap();
            let reader = std::thread::spawn(move || {
                assert_eq!(rx.recv_deadline(soon()).unwrap(), b"small");
                assert!(rx.recv_deadline(soon()).unwrap() == vec![9u8; 50_000]);
            });
            tx.send_buffered(&big, Wait::Until(soon())).unwrap();
            assert_eq!(tx.buffered(), 0, "{name}: a large frame is not queued");
            reader.join().unwrap();
        }
    });
}

#[test]
fn close_writes_the_queue_and_drop_what_goes_without_waiting() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        for (name, mut tx, mut rx) in stream_pairs() {
            for i in 0..100 {
                tx.send_buffered(&message(i, 64), Wait::Never).unwrap();
            }
            tx.close().unwrap();
            for i in 0..100 {
                assert!(check(&rx.recv_deadline(soon()).unwrap(), i, 64), "{name}");
            }
            assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)), "{name}");
        }
        for (name, mut tx, mut rx) in stream_pairs() {
            for i in 0..100 {
                tx.send_buffered(&message(i, 64), Wait::Never).unwrap();
            }
            drop(tx); // the kernel has room for 100 small frames: all of them go
            for i in 0..100 {
                assert!(check(&rx.recv_deadline(soon()).unwrap(), i, 64), "{name}");
            }
            assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)), "{name}");
        }
    });
}

#[test]
fn udp_buffered_datagrams_go_out_in_order_and_the_queue_is_bounded() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let (a, b) = udp_pair();
        let (mut tx, _) = udp::from_socket(a).unwrap();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        // Batches of 32 (well within a receive buffer), each flushed, then read back: order and bytes.
        for batch in 0..50u64 {
            for k in 0..32 {
                let i = batch * 32 + k;
                tx.send_buffered(&message(i, size_of(i)), Wait::Never).unwrap();
            }
            assert_eq!(tx.buffered(), 32);
            tx.flush().unwrap();
            assert_eq!(tx.buffered(), 0);
            for k in 0..32 {
                let i = batch * 32 + k;
                assert!(check(&rx.recv_deadline(soon()).unwrap(), i, size_of(i)), "datagram {i}");
            }
        }
        // The queue holds at most MAX_BUFFERED_DATAGRAMS: the next one sends the queue first.
        for i in 0..udp::MAX_BUFFERED_DATAGRAMS as u64 + 1 {
            tx.send_buffered(&message(i, 8), Wait::Never).unwrap();
            assert!(tx.buffered() <= udp::MAX_BUFFERED_DATAGRAMS);
        }
        assert_eq!(tx.buffered(), 1);
        // A plain send takes the queue along, in order.
        tx.send(b"plain").unwrap();
        assert_eq!(tx.buffered(), 0);
        for i in 0..udp::MAX_BUFFERED_DATAGRAMS as u64 + 1 {
            assert!(check(&rx.recv_deadline(soon()).unwrap(), i, 8), "datagram {i}");
        }
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"plain");
        // Close sends what is queued.
        tx.send_buffered(b"last", Wait::Never).unwrap();
        tx.close().unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"last");
    });
}

/// A flush sends runs of equal-sized datagrams as one segmented `sendmsg` (UDP GSO): runs that end in a
/// shorter datagram, a longer one starting a new run, runs cut at the 64 KiB a send may carry: the
/// receiver gets every datagram whole, as sent, in order.
///
/// With `no_offload`, the sending socket has UDP checksums off (`SO_NO_CHECK`), which makes the kernel
/// refuse segmentation offload (`EINVAL`): the same datagrams go out with `sendmmsg` instead.
#[test]
fn udp_segmented_sends_deliver_every_datagram_whole_and_in_order() {
    udp_segmented_sends(false);
}

#[test]
fn udp_sends_the_kernel_refuses_to_segment_go_out_one_by_one() {
    udp_segmented_sends(true);
}

/// Turns UDP checksums off (`SO_NO_CHECK`) on `sock`, or back on: with them off the kernel refuses
/// segmentation offload (`EINVAL`).
fn set_no_check(sock: &impl std::os::fd::AsRawFd, off: bool) {
    let v: libc::c_int = off.into();
    // SAFETY: `sock` is an open socket; the option value is a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_NO_CHECK: {}", std::io::Error::last_os_error());
}

fn udp_segmented_sends(no_offload: bool) {
    ringwire_testkit::watchdog(WATCHDOG, move || {
        let (a, b) = udp_pair();
        if no_offload {
            set_no_check(&a, true);
        }
        let (mut tx, _) = udp::from_socket(a).unwrap();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        tx.set_max_buffered(1 << 20);
        let sizes: Vec<usize> = [vec![100; 5], vec![60], vec![100; 3], vec![20_000; 5], vec![8], vec![64; 40]].concat();
        for (i, &n) in sizes.iter().enumerate() {
            tx.send_buffered(&exact(i, n), Wait::Never).unwrap();
        }
        assert_eq!(tx.buffered(), sizes.len());
        tx.flush().unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(rx.recv_deadline(soon()).unwrap(), exact(i, n), "datagram {i} ({n} bytes)");
        }
        // The first run (108-byte datagrams) was refused, and everything after it went out with that
        // same `sendmmsg`: no other size was asked about.
        assert_eq!(tx.gso_refused_from(), no_offload.then_some(108));
    });
}

/// A segment size the path refused is not asked about again: runs of that size or larger go straight
/// out one by one (seen here after the refusal's cause is gone: they still arrive as separate datagrams,
/// where a segmented send would arrive as one coalesced run), smaller runs are still segmented.
#[test]
fn udp_a_refused_segment_size_is_not_asked_about_again() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let (a, b) = udp_pair();
        set_no_check(&a, true);
        let (mut tx, _) = udp::from_socket(a).unwrap();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().expect("this kernel has UDP_GRO (Linux >= 5.0)");
        let mut i = 0;
        // (message size, whether a segmented send is expected: the run arrives in one receive)
        for (n, segmented) in [(100, false), (100, false), (500, false), (40, true), (100, false)] {
            for k in 0..5 {
                tx.send_buffered(&exact(i + k, n), Wait::Never).unwrap();
            }
            tx.flush().unwrap();
            if i == 0 {
                assert_eq!(tx.gso_refused_from(), Some(108), "the first run was refused");
                set_no_check(tx.socket().unwrap(), false);
            }
            for k in 0..5 {
                let wait = if k == 0 { Wait::Until(soon()) } else { Wait::Never };
                assert_eq!(rx.recv_wait(wait).unwrap(), exact(i + k, n), "datagram {k} of run {i}");
                if k == 0 {
                    let left = readable(rx.socket().unwrap());
                    assert_eq!(!left, segmented, "run {i} of {n}-byte messages: segmented send expected: {segmented}");
                }
            }
            i += 5;
        }
        assert_eq!(tx.gso_refused_from(), Some(108));
    });
}

/// Sends `buf` as one segmented `sendmsg` (`UDP_SEGMENT`) cut into datagrams of `segment` bytes: what
/// the kernel then delivers to a receiver with `UDP_GRO` as one coalesced run.
fn send_segmented_raw(sock: &std::net::UdpSocket, buf: &[u8], segment: u16) {
    let n = ringwire_testkit::udp_send_segmented(sock, buf, segment);
    assert_eq!(n.unwrap(), buf.len(), "segmented send");
}

/// Whether datagrams wait on `sock` (a zero-timeout `poll`).
fn readable(sock: &std::net::UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1
}

/// A receiver with `UDP_GRO` takes a segmented run in one receive: after the first datagram, nothing
/// is left in the socket, and the rest of the run comes out of the receiver without waiting, whole and
/// in order, the last (shorter) one too; then the next run.
#[test]
fn udp_a_segmented_run_arrives_in_one_receive_and_is_cut_back_into_datagrams() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let (a, b) = udp_pair();
        let (mut tx, _) = udp::from_socket(a).unwrap();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().expect("this kernel has UDP_GRO (Linux >= 5.0)");
        assert!(rx.gro());
        let mut i = 0;
        for (run, size) in [(40, 56), (7, 1000), (1, 300), (64, 8)] {
            let first = i;
            for k in 0..run {
                let n = if k == run - 1 && run > 1 { size / 2 } else { size };
                tx.send_buffered(&exact(i + k, n), Wait::Never).unwrap();
            }
            tx.flush().unwrap();
            for k in 0..run {
                let n = if k == run - 1 && run > 1 { size / 2 } else { size };
                let wait = if k == 0 { Wait::Until(soon()) } else { Wait::Never };
                assert_eq!(rx.recv_wait(wait).unwrap(), exact(i + k, n), "datagram {} of run {first}", k);
                if k == 0 {
                    let sock = rx.socket().unwrap();
                    assert!(!readable(sock), "the run of {run} came in more than one receive");
                }
            }
            i += run;
        }
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    });
}

/// A coalesced run is checked datagram by datagram: a run of datagrams over the receiver's limit is one
/// `Oversize` each, a run of non-frames one `BadFrame` each, and good runs around them come whole.
#[test]
fn udp_a_coalesced_run_of_bad_datagrams_is_refused_one_by_one() {
    use ringwire::transport::codec::FrameError;
    ringwire_testkit::watchdog(WATCHDOG, || {
        let (raw, b) = udp_pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        rx.set_max_datagram(1024);
        let frame = |payload: &[u8]| {
            let mut v = Vec::new();
            ringwire::transport::codec::encode_into(&mut v, ringwire::wire::Kind::Data, payload).unwrap();
            v
        };
        // Three frames of 1500 bytes (over the limit), in one segmented send.
        let big: Vec<u8> = (0..3).flat_map(|k| frame(&vec![k as u8; 1492])).collect();
        send_segmented_raw(&raw, &big, 1500);
        // Five 100-byte datagrams that are not frames, the last 40 bytes.
        send_segmented_raw(&raw, &[0xAB; 440], 100);
        // Good frames of 200 bytes (192-byte messages), the last shorter.
        let good: Vec<Vec<u8>> = (0..6).map(|k| exact(k, if k == 5 { 100 } else { 192 })).collect();
        let run: Vec<u8> = good.iter().flat_map(|m| frame(m)).collect();
        send_segmented_raw(&raw, &run, 200);
        for k in 0..3 {
            match rx.recv_deadline(soon()) {
                Err(TransportRecvError::BadFrame(FrameError::Oversize { len, max })) => {
                    assert_eq!((len, max), (1492, 1016), "datagram {k}")
                }
                other => panic!("datagram {k}: {other:?}"),
            }
        }
        for k in 0..5 {
            assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::BadFrame(_))), "non-frame {k}");
        }
        for (k, m) in good.iter().enumerate() {
            assert_eq!(&rx.recv_deadline(soon()).unwrap(), m, "good datagram {k}");
        }
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    });
}

/// Every kernel transport with write coalescing, and the shared-memory ring with buffered publication,
/// end to end through the bench's sink peer in another process (as `ringwire bench`'s `+batch` rows):
/// nothing lost, nothing out of order, in every wait.
#[test]
fn buffered_stream_through_a_sink_peer() {
    use ringwire::transport::IoWait;
    use ringwire_testkit::peers;
    use ringwire_testkit::{Adapter, PeerArgs, PeerMode};
    ringwire_testkit::watchdog(WATCHDOG, || {
        for adapter in [
            Adapter::Fifo,
            Adapter::Unix,
            Adapter::Tcp,
            Adapter::Stdio,
            Adapter::Fork,
            Adapter::Websocket,
            Adapter::Shm,
        ] {
            for (wait, io_wait) in [("block", IoWait::Block), ("spin", IoWait::Spin)] {
                const N: u64 = 20_000;
                let size = 64;
                let args =
                    PeerArgs { size, count: N, wait: wait.into(), ..PeerArgs::transport(PeerMode::Sink, adapter) };
                let mut c = peers::connect(ringwire_testkit::peer::bench_command(&args), adapter).unwrap();
                c.tx.set_io_wait(io_wait);
                c.rx.set_io_wait(io_wait);
                let every = ringwire_cli::peer::sink_ack_every(size);
                let base = ringwire_cli::util::base_payload(size);
                let mut msg = base.clone();
                let mut acked = 0;
                for i in 0..N {
                    if i - acked >= 4 * every {
                        c.tx.flush().unwrap();
                        while i - acked >= 4 * every {
                            let ack = c.rx.recv_deadline(soon()).unwrap();
                            acked = u64::from_le_bytes(ack.as_slice().try_into().unwrap());
                        }
                    }
                    ringwire_cli::util::stamp(&mut msg, &base, i);
                    c.tx.send_buffered(&msg, Wait::Until(soon())).unwrap();
                }
                c.tx.flush().unwrap();
                let verdict = loop {
                    let m = c.rx.recv_deadline(soon()).unwrap();
                    if m.len() != 8 {
                        break m;
                    }
                };
                assert_eq!(verdict, b"ok", "{adapter:?} ({wait}): the sink saw a wrong message");
                c.tx.close().unwrap();
            }
        }
    });
}

/// A WebSocket pair in this process: (client sender, server receiver), plus the other two halves (kept
/// alive: dropping both halves of one end closes the connection).
fn websocket_pair() -> (ringwire::transport::websocket::WsSender, ringwire::transport::websocket::WsReceiver, impl Sized)
{
    use ringwire::transport::websocket;
    let l = websocket::Listener::bind("127.0.0.1:0", "/c").unwrap();
    let url = l.url().unwrap();
    let client = std::thread::spawn(move || websocket::connect(&url).unwrap());
    let (stx, srx, _) = l.accept().unwrap();
    let (ctx, crx) = client.join().unwrap();
    (ctx, srx, (stx, crx))
}

#[test]
fn websocket_buffered_messages_wait_for_flush_and_arrive_in_order() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let (mut tx, mut rx, _keep) = websocket_pair();
        tx.send_buffered(b"queued", Wait::Never).unwrap();
        // Nothing on the wire yet: queued means queued.
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
        tx.flush().unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"queued");
        // A plain send after buffered ones takes them along, in order, and goes out at once.
        tx.send_buffered(b"one", Wait::Never).unwrap();
        tx.send(b"two").unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"one");
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"two");
        // Many, interleaved with plain sends, read by another thread: order and bytes.
        const N: u64 = 5_000;
        let reader = std::thread::spawn(move || {
            for i in 0..N {
                let m = rx.recv_deadline(soon()).unwrap();
                assert!(check(&m, i, size_of(i)), "message {i} wrong or out of order");
            }
            rx
        });
        for i in 0..N {
            let m = message(i, size_of(i));
            match i % 7 {
                0 => tx.send(&m).unwrap(),
                _ => tx.send_buffered(&m, Wait::Until(soon())).unwrap(),
            }
        }
        tx.flush().unwrap();
        let mut rx = reader.join().unwrap();
        // Close writes the queue out before its Close frame.
        for i in 0..100 {
            tx.send_buffered(&message(i, 64), Wait::Never).unwrap();
        }
        tx.close().unwrap();
        for i in 0..100 {
            assert!(check(&rx.recv_deadline(soon()).unwrap(), i, 64));
        }
        assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    });
}

#[test]
fn udp_batched_receive_checks_each_datagram_and_keeps_order() {
    udp_batched_receive(false);
}

/// The same on the path of a kernel without `UDP_GRO`: batches of `recvmmsg`.
#[test]
fn udp_recvmmsg_receive_checks_each_datagram_and_keeps_order() {
    udp_batched_receive(true);
}

fn udp_batched_receive(without_gro: bool) {
    use ringwire::transport::codec::FrameError;
    ringwire_testkit::watchdog(WATCHDOG, move || {
        let (raw, b) = udp_pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        if without_gro {
            rx.__without_gro();
        }
        assert!(!rx.gro(), "off until one receive finds several datagrams waiting");
        // Datagrams of at most 1 KiB: without GRO, batches of up to MAX_RECV_BATCH per recvmmsg.
        rx.set_max_datagram(1024);
        assert_eq!(rx.max_message(), 1024 - 8);
        let frame = |payload: &[u8]| {
            let mut v = Vec::new();
            ringwire::transport::codec::encode_into(&mut v, ringwire::wire::Kind::Data, payload).unwrap();
            v
        };
        // A burst larger than one batch, with bad datagrams among good ones, all waiting at once.
        const N: u64 = 150;
        let bad = |i: u64| i % 10 == 3;
        let over = |i: u64| i % 10 == 7;
        for i in 0..N {
            let d = if bad(i) {
                b"not a frame at all".to_vec()
            } else if over(i) {
                frame(&vec![1u8; 1500]) // larger than the limit (and than a slot): refused, not cut
            } else {
                frame(&message(i, 1000))
            };
            raw.send(&d).unwrap();
        }
        let mut buf = Vec::new();
        for i in 0..N {
            match rx.recv_frame_into_vec(&mut buf, Wait::Until(soon())) {
                Ok(ext) => {
                    assert!(!bad(i) && !over(i), "datagram {i} should have been refused");
                    assert_eq!(ext, 0);
                    assert!(check(&buf, i, 1000), "datagram {i} wrong or out of order");
                }
                Err(TransportRecvError::BadFrame(FrameError::Oversize { len, max })) => {
                    assert!(over(i), "datagram {i}: unexpected Oversize");
                    assert_eq!((len, max), (1500, 1016));
                }
                Err(TransportRecvError::BadFrame(_)) => assert!(bad(i), "datagram {i}: unexpected BadFrame"),
                Err(e) => panic!("datagram {i}: {e:?}"),
            }
        }
        // The receiver goes on: nothing left, then the next one.
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
        raw.send(&frame(b"after")).unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"after");
        // The burst was waiting: the first batch asked for coalesced delivery (unless kept off it).
        assert_eq!(rx.gro(), !without_gro);
    });
}

/// A receiver that never has more than one datagram waiting (a round trip) stays off `UDP_GRO`, even
/// limited to small datagrams (so it takes a waiting datagram with `recvmmsg`, which finds one).
#[test]
fn udp_a_round_trip_receiver_does_not_ask_for_coalescing() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let (mut atx, mut arx) = udp::connect("127.0.0.1:0", "127.0.0.1:9").unwrap();
        let local = arx.socket().unwrap().local_addr().unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.connect(local).unwrap();
        atx.socket().unwrap().connect(b.local_addr().unwrap()).unwrap();
        let (mut btx, mut brx) = udp::from_socket(b).unwrap();
        arx.set_max_datagram(200);
        brx.set_max_datagram(200);
        for i in 0..100u64 {
            let m = message(i, 64);
            atx.send(&m).unwrap();
            assert_eq!(brx.recv_deadline(soon()).unwrap(), m);
            btx.send(&m).unwrap();
            assert_eq!(arx.recv_deadline(soon()).unwrap(), m);
        }
        assert!(!arx.gro() && !brx.gro());
    });
}

#[test]
fn recv_frame_into_vec_reuses_one_buffer() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let (a, b) = udp_pair();
        let (utx, _) = udp::from_socket(a).unwrap();
        let (_, urx) = udp::from_socket(b).unwrap();
        type Pair = (&'static str, Box<dyn Sender>, Box<dyn Receiver>);
        let mut pairs: Vec<Pair> =
            stream_pairs().into_iter().map(|(n, t, r)| (n, Box::new(t) as _, Box::new(r) as _)).collect();
        pairs.push(("udp", Box::new(utx), Box::new(urx)));
        for (name, mut tx, mut rx) in pairs {
            let mut buf = Vec::with_capacity(2000);
            let at = buf.as_ptr();
            for i in 0..200u64 {
                let m = message(i, 1000);
                // Every third one an event frame: its name length comes back as `ext`.
                let ext = if i % 3 == 0 { 3 } else { 0 };
                let parts: [&[u8]; 2] = [b"evt", &m];
                tx.send_frame_wait(ext, &parts[(ext == 0) as usize..], Wait::Until(soon())).unwrap();
                let got = rx.recv_frame_into_vec(&mut buf, Wait::Until(soon())).unwrap();
                assert_eq!(got, ext, "{name}: message {i}");
                assert!(check(&buf[ext as usize..], i, 1000), "{name}: message {i} wrong");
                assert_eq!(buf.as_ptr(), at, "{name}: message {i} was received into a new allocation");
            }
        }
    });
}

/// One segmented run for the property below: its segment size, how many segments, whether the last is
/// shorter (by how much), and what each segment holds (0: a frame that fills it, 1: arbitrary bytes,
/// 2: a frame whose header claims another length).
#[derive(Debug, Clone)]
struct Run {
    size: usize,
    count: usize,
    short_by: usize,
    kinds: Vec<u8>,
    seed: u64,
}

fn run_strategy() -> impl proptest::strategy::Strategy<Value = Run> {
    use proptest::prelude::*;
    (prop_oneof![1usize..24, 24usize..1600, 1600usize..9000], 1usize..48, 0usize..64, any::<u64>()).prop_flat_map(
        |(size, count, short_by, seed)| {
            // At most 64 segments and 64 KiB in a send (the kernel's limits).
            let count = count.min(60_000 / size).max(1);
            let short_by = if count > 1 { short_by.min(size - 1) } else { 0 };
            prop::collection::vec(prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)], count)
                .prop_map(move |kinds| Run { size, count, short_by, kinds, seed })
        },
    )
}

/// The datagrams of a run, as sent.
fn run_datagrams(run: &Run) -> Vec<Vec<u8>> {
    (0..run.count)
        .map(|k| {
            let n = if k == run.count - 1 { run.size - run.short_by } else { run.size };
            let mut d = exact((run.seed as usize).wrapping_add(k), n);
            if run.kinds[k] != 1 && n >= 8 {
                let mut f = Vec::new();
                ringwire::transport::codec::encode_into(&mut f, ringwire::wire::Kind::Data, &d[8..]).unwrap();
                if run.kinds[k] == 2 {
                    f[0] ^= 1 + (k as u8 & 3); // the length field's low byte
                }
                d = f;
            }
            d
        })
        .collect()
}

proptest::proptest! {
    // Few shrink steps: a failing case waits out its receive deadline once per step.
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 48,
        max_shrink_iters: 64,
        .. proptest::prelude::ProptestConfig::default()
    })]

    /// Whatever a sender's segmented runs hold (sizes from 1 byte to 9 KB, runs of one to 60,
    /// a shorter last one, frames, non-frames, frames with a wrong length, datagrams over the limit), a
    /// receiver that takes them coalesced hands out exactly what it would for each datagram alone: the
    /// payload of a good frame, `Oversize` for one over its limit, the codec's own error otherwise, in
    /// order, nothing more.
    #[test]
    fn udp_coalesced_runs_come_out_as_their_datagrams_would(
        runs in proptest::collection::vec(run_strategy(), 1..6),
        limit in 16usize..12_000,
    ) {
        use ringwire::transport::codec::{decode_datagram, FrameError};
        ringwire_testkit::watchdog(Duration::from_secs(30), move || {
            let (raw, b) = udp_pair();
            let (_, mut rx) = udp::from_socket(b).unwrap();
            rx.enable_gro().unwrap();
            rx.set_max_datagram(limit);
            let max = limit - 8;
            let mut buf = Vec::new();
            for run in &runs {
                let datagrams = run_datagrams(run);
                send_segmented_raw(&raw, &datagrams.concat(), run.size as u16);
                // Drained before the next: a socket buffer holds only a few 64 KiB runs.
                for (k, d) in datagrams.iter().enumerate() {
                    // Sent before this (over loopback, queued by the time the send returns): a deadline
                    // only so that a lost datagram fails the case soon.
                    let got = rx.recv_frame_into_vec(&mut buf, Wait::Until(Instant::now() + Duration::from_secs(2)));
                    let want = if d.len() > limit {
                        Err(FrameError::Oversize { len: d.len() - 8, max })
                    } else {
                        decode_datagram(d, max).map(|f| (f.ext, f.payload.to_vec()))
                    };
                    match (got, want) {
                        (Ok(ext), Ok((e, payload))) => {
                            assert_eq!((ext, &buf), (e, &payload), "datagram {k} of {run:?}")
                        }
                        (Err(TransportRecvError::BadFrame(g)), Err(w)) => assert_eq!(g, w, "datagram {k} of {run:?}"),
                        (g, w) => panic!(
                            "datagram {k} of {run:?}: got {:?}, want {:?} (ext, payload length)",
                            g.map(|e| (e, buf.len())),
                            w.map(|(e, p)| (e, p.len()))
                        ),
                    }
                }
                assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)), "more than sent after {run:?}");
            }
        });
    }
}
