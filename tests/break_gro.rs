//! Hostile-peer and newcomer probes of receive-side UDP coalescing (`UDP_GRO`), kept as regression
//! tests: raw segmented sends (`UDP_SEGMENT`) of odd shapes (segment size 1, the most segments the
//! kernel takes, totals of exactly 65507 bytes over IPv4 and 65527 over IPv6), limits changed while a
//! run is half handed out, `close` mid-run, every receive flavour mixed over one run, `enable_gro`
//! twice and after `close`, the auto-enable heuristic at and around its threshold, busy-polling, the
//! switch from `recvmmsg` batches to coalesced runs with datagrams still waiting on both sides of it,
//! async receivers whose futures are dropped mid-run, and sockets a user configured before handing
//! them over (`SO_TIMESTAMP`, `UDP_GRO` already on). Written by a helper trying to break the feature;
//! its three findings (both those socket options, and an async receiver handing out a run after
//! `close`) are fixed.
//!
//! Every test runs inside the testkit's thread watchdog (async ones also under `tokio::time::timeout`).
//! No sleeps; nothing asserts timing. Kernel drops are avoided by keeping what waits in a socket small
//! (a few runs; with `UDP_GRO` on a run is one socket buffer).

use futures_util::FutureExt;
use ringwire::transport::codec::FrameError;
use ringwire::transport::tokio::{AsyncReceiver, AsyncSender};
use ringwire::transport::{udp, IoWait, Receiver, Sender, TransportRecvError, Wait};
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(30);

fn watched(body: impl FnOnce() + Send + 'static) {
    ringwire_testkit::watchdog(WATCHDOG, body)
}

#[path = "support/runtime.rs"]
mod runtime;
use runtime::on_runtime;

/// Two UDP sockets on loopback (`host`: "127.0.0.1" or "[::1]"), each connected to the other.
fn pair_on(host: &str) -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind(format!("{host}:0")).unwrap();
    let b = UdpSocket::bind(format!("{host}:0")).unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

fn pair() -> (UdpSocket, UdpSocket) {
    pair_on("127.0.0.1")
}

/// Exactly `n` bytes of message `i`.
fn exact(i: usize, n: usize) -> Vec<u8> {
    let mut m = vec![0u8; n];
    ringwire_testkit::fill(&mut m, i as u64);
    m
}

/// The datagram of one data frame carrying `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    ringwire::transport::codec::encode_into(&mut v, ringwire::wire::Kind::Data, payload).unwrap();
    v
}

fn soon() -> Instant {
    Instant::now() + WATCHDOG
}

fn send_segmented(sock: &UdpSocket, buf: &[u8], segment: u16) {
    let n = ringwire_testkit::udp_send_segmented(sock, buf, segment).expect("segmented send");
    assert_eq!(n, buf.len());
}

/// Whether datagrams wait on `sock` (a zero-timeout `poll`).
fn readable(sock: &UdpSocket) -> bool {
    let mut p = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    assert!(n >= 0);
    n == 1
}

fn setsockopt_int(sock: &impl AsRawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) {
    // SAFETY: a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt({level}, {name}): {}", io::Error::last_os_error());
}

/// A run of frames carrying `exact(first + k, len(k))`, back to back, for one segmented send.
fn run_of(first: usize, count: usize, len: impl Fn(usize) -> usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let msgs: Vec<Vec<u8>> = (0..count).map(|k| exact(first + k, len(k))).collect();
    let bytes = msgs.iter().flat_map(|m| frame(m)).collect();
    (msgs, bytes)
}

fn is_bad(r: &Result<Vec<u8>, TransportRecvError>) -> bool {
    matches!(r, Err(TransportRecvError::BadFrame(_)))
}

/// A segmented run of 1-byte datagrams (as many as the kernel takes in one send: 128 since Linux 6.9,
/// 64 before) is one `BadFrame(Truncated)` per byte, and a good frame after it comes whole.
#[test]
fn segment_size_one_is_one_bad_frame_per_byte() {
    watched(|| {
        let (raw, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        let segs = [128usize, 64]
            .into_iter()
            .find(|&n| ringwire_testkit::udp_send_segmented(&raw, &vec![0x5A; n], 1).is_ok())
            .expect("a kernel with UDP_SEGMENT");
        raw.send(&frame(b"after")).unwrap();
        for k in 0..segs {
            match rx.recv_deadline(soon()) {
                Err(TransportRecvError::BadFrame(FrameError::Truncated { missing: 7 })) => {}
                other => panic!("byte {k} of {segs}: {other:?}"),
            }
        }
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"after");
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    });
}

/// Runs of empty frames (8-byte datagrams, the smallest good ones) of the most segments the kernel
/// takes come out as that many empty messages.
#[test]
fn runs_of_empty_frames_at_the_segment_limit() {
    watched(|| {
        let (raw, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        let one = frame(b"");
        let segs = [128usize, 64]
            .into_iter()
            .find(|&n| ringwire_testkit::udp_send_segmented(&raw, &one.repeat(n), 8).is_ok())
            .unwrap();
        for k in 0..segs {
            assert_eq!(rx.recv_deadline(soon()).unwrap(), Vec::<u8>::new(), "empty frame {k}");
        }
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    });
}

/// A run of exactly 65507 bytes (the largest IPv4 UDP payload) of 1100-byte datagrams, the last
/// shorter: every datagram whole and in order; one byte more is refused by the kernel, not received.
#[test]
fn a_run_of_exactly_65507_bytes_over_ipv4() {
    watched(|| {
        let (raw, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        let full = 65507 / 1100;
        let last = 65507 - full * 1100;
        let (msgs, bytes) = run_of(0, full + 1, |k| if k == full { last - 8 } else { 1092 });
        assert_eq!(bytes.len(), 65507);
        match ringwire_testkit::udp_send_segmented(&raw, &bytes, 1100) {
            Ok(n) => assert_eq!(n, 65507),
            // A kernel with at most 64 segments per send: two runs instead.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                send_segmented(&raw, &bytes[..32 * 1100], 1100);
                send_segmented(&raw, &bytes[32 * 1100..], 1100);
            }
            Err(e) => panic!("{e}"),
        }
        for (k, m) in msgs.iter().enumerate() {
            assert_eq!(&rx.recv_deadline(soon()).unwrap(), m, "datagram {k}");
        }
        let mut too_big = bytes.clone();
        too_big.push(0);
        assert!(ringwire_testkit::udp_send_segmented(&raw, &too_big, 1100).is_err(), "the kernel took 65508 bytes");
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    });
}

/// Over IPv6 a segmented send may carry up to 65527 bytes: a run of that total is cut back whole (its
/// datagrams are each within the limit); a lone 65527-byte datagram is `Oversize` against the default
/// limit (65507), and the receiver goes on.
#[test]
fn ipv6_runs_up_to_65527_bytes() {
    watched(|| {
        let (raw, b) = pair_on("[::1]");
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        let full = 65527 / 1300;
        let last = 65527 - full * 1300;
        let (msgs, bytes) = run_of(0, full + 1, |k| if k == full { last - 8 } else { 1292 });
        assert_eq!(bytes.len(), 65527);
        let whole = ringwire_testkit::udp_send_segmented(&raw, &bytes, 1300);
        if whole.is_err() {
            send_segmented(&raw, &bytes[..32 * 1300], 1300);
            send_segmented(&raw, &bytes[32 * 1300..], 1300);
        }
        for (k, m) in msgs.iter().enumerate() {
            assert_eq!(&rx.recv_deadline(soon()).unwrap(), m, "datagram {k}");
        }
        raw.send(&frame(&exact(7, 65527 - 8))).unwrap();
        raw.send(&frame(b"next")).unwrap();
        match rx.recv_deadline(soon()) {
            Err(TransportRecvError::BadFrame(FrameError::Oversize { len, max })) => {
                assert_eq!((len, max), (65519, 65499))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rx.recv_deadline(soon()).unwrap(), b"next");
    });
}

/// Every receive flavour over one buffered run: `try_recv`, `recv_wait(Never)`, a deadline already
/// past, `recv_frame_into_vec` (with and without waiting), `recv_frame_wait`: each hands out the next
/// datagram of the run, in order, without touching the socket; then `Empty` / `Timeout`.
#[test]
fn every_receive_flavour_takes_the_next_datagram_of_a_run() {
    watched(|| {
        let (raw, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        let (msgs, bytes) = run_of(0, 10, |k| if k == 9 { 10 } else { 40 });
        send_segmented(&raw, &bytes, 48);
        assert_eq!(rx.recv_deadline(soon()).unwrap(), msgs[0]);
        assert!(!readable(rx.socket().unwrap()));
        assert_eq!(rx.try_recv().unwrap(), msgs[1]);
        assert_eq!(rx.recv_wait(Wait::Never).unwrap(), msgs[2]);
        assert_eq!(rx.recv_deadline(Instant::now() - Duration::from_millis(1)).unwrap(), msgs[3]);
        let mut v = vec![1, 2, 3];
        assert_eq!(rx.recv_frame_into_vec(&mut v, Wait::Never).unwrap(), 0);
        assert_eq!(v, msgs[4]);
        assert_eq!(rx.recv_frame_into_vec(&mut v, Wait::Forever).unwrap(), 0);
        assert_eq!(v, msgs[5]);
        assert_eq!(rx.recv_frame_wait(Wait::Never).unwrap().bytes, msgs[6]);
        assert_eq!(rx.recv().unwrap(), msgs[7]);
        rx.set_io_wait(IoWait::Spin);
        assert_eq!(rx.try_recv().unwrap(), msgs[8]);
        assert_eq!(rx.recv_wait(Wait::Until(Instant::now())).unwrap(), msgs[9]);
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
        assert!(matches!(rx.recv_deadline(Instant::now()), Err(TransportRecvError::Timeout)));
    });
}

/// Lowering the limit while a run is half handed out applies at once to the datagrams still held
/// (`Oversize` against the new limit, each alone); raising it again lets the next ones through.
/// Raising it above the size the run was received with: a datagram larger than the old limit stays
/// `Oversize` (it is checked against the limit in force when the run came: see the report).
#[test]
fn limit_changed_mid_run_checks_each_remaining_datagram() {
    watched(|| {
        let (raw, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        rx.set_max_datagram(2000);
        let (msgs, bytes) = run_of(0, 6, |k| if k == 5 { 100 } else { 992 });
        send_segmented(&raw, &bytes, 1000);
        assert_eq!(rx.recv_deadline(soon()).unwrap(), msgs[0]);
        rx.set_max_datagram(500);
        for k in 1..3 {
            match rx.try_recv() {
                Err(TransportRecvError::BadFrame(FrameError::Oversize { len: 992, max: 492 })) => {}
                other => panic!("datagram {k}: {other:?}"),
            }
        }
        rx.set_max_datagram(2000);
        assert_eq!(rx.try_recv().unwrap(), msgs[3]);
        assert_eq!(rx.try_recv().unwrap(), msgs[4]);
        assert_eq!(rx.try_recv().unwrap(), msgs[5]);

        // Received under a 500-byte limit, then the limit raised mid-run.
        rx.set_max_datagram(500);
        let (msgs, bytes) = run_of(10, 3, |_| 992);
        send_segmented(&raw, &bytes, 1000);
        assert!(is_bad(&rx.recv_deadline(soon())));
        rx.set_max_datagram(2000);
        let second = rx.try_recv();
        assert!(
            second.as_ref().is_ok_and(|m| m == &msgs[1])
                || matches!(second, Err(TransportRecvError::BadFrame(FrameError::Oversize { len: 992, .. }))),
            "{second:?}"
        );
        let _ = rx.try_recv();
        // The receiver goes on with the new limit.
        raw.send(&frame(&exact(20, 1500))).unwrap();
        assert_eq!(rx.recv_deadline(soon()).unwrap(), exact(20, 1500));
    });
}

/// `close` while a run is half handed out: every later receive is `Closed` (the rest of the run is
/// dropped, never handed out), and `enable_gro` is then `NotConnected`; `gro()` keeps saying it was on.
#[test]
fn close_mid_run_is_closed_and_enable_gro_after_close_is_not_connected() {
    watched(|| {
        let (raw, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        rx.enable_gro().unwrap(); // twice: fine
        let (msgs, bytes) = run_of(0, 5, |_| 20);
        send_segmented(&raw, &bytes, 28);
        assert_eq!(rx.recv_deadline(soon()).unwrap(), msgs[0]);
        rx.close();
        for _ in 0..3 {
            assert!(matches!(rx.try_recv(), Err(TransportRecvError::Closed)));
            assert!(matches!(rx.recv(), Err(TransportRecvError::Closed)));
        }
        assert_eq!(rx.enable_gro().unwrap_err().kind(), io::ErrorKind::NotConnected);
        assert!(rx.gro());

        // A receiver closed before ever asking.
        let (_, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.close();
        assert_eq!(rx.enable_gro().unwrap_err().kind(), io::ErrorKind::NotConnected);
        assert!(!rx.gro());
    });
}

/// Sends `count` datagrams of `n` bytes one by one (`sendmmsg` or plain sends: not segmented).
fn send_plain(raw: &UdpSocket, first: usize, count: usize, n: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| {
            let m = exact(first + k, n);
            raw.send(&frame(&m)).unwrap();
            m
        })
        .collect()
}

/// The auto-enable heuristic: a receiver with the default limit, or one whose limit leaves room for one
/// datagram in 64 KiB (32769), never turns `UDP_GRO` on, however many datagrams wait; one whose limit
/// fits two slots (32768) or more does, once one receive finds several waiting. Nothing is lost either
/// way.
#[test]
fn auto_enable_only_for_receivers_that_batch() {
    watched(|| {
        for (limit, auto) in [(None, false), (Some(32769), false), (Some(32768), true), (Some(1024), true)] {
            let (raw, b) = pair();
            let (_, mut rx) = udp::from_socket(b).unwrap();
            if let Some(l) = limit {
                rx.set_max_datagram(l);
            }
            let msgs = send_plain(&raw, 0, 12, 100);
            for (k, m) in msgs.iter().enumerate() {
                assert_eq!(&rx.recv_deadline(soon()).unwrap(), m, "limit {limit:?}, datagram {k}");
            }
            assert_eq!(rx.gro(), auto, "limit {limit:?}");
            // And a segmented run after: whole, in order.
            let (msgs, bytes) = run_of(100, 30, |k| if k == 29 { 3 } else { 50 });
            send_segmented(&raw, &bytes, 58);
            for (k, m) in msgs.iter().enumerate() {
                assert_eq!(&rx.recv_deadline(soon()).unwrap(), m, "limit {limit:?}, run datagram {k}");
            }
            assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
            assert_eq!(rx.gro(), auto, "limit {limit:?}");
        }
    });
}

/// A round trip (one datagram waiting at a time) never turns `UDP_GRO` on, even on a small limit.
#[test]
fn one_at_a_time_never_auto_enables() {
    watched(|| {
        let (raw, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.set_max_datagram(512);
        for i in 0..50 {
            let m = send_plain(&raw, i, 1, 30);
            assert_eq!(rx.recv_deadline(soon()).unwrap(), m[0]);
        }
        assert!(!rx.gro());
    });
}

/// The switch from `recvmmsg` batches to coalesced runs with datagrams on both sides of it: a
/// segmented run sent before `UDP_GRO` goes on (split by the kernel, taken in batches, the second of
/// which turns it on) and one sent after (one coalesced receive) come out whole and in order; the same
/// with `enable_gro` called while a batch is half handed out.
#[test]
fn switch_from_batches_to_runs_keeps_order() {
    watched(|| {
        for explicit in [false, true] {
            let (raw, b) = pair();
            let (_, mut rx) = udp::from_socket(b).unwrap();
            rx.set_max_datagram(1024);
            if explicit {
                rx.__without_gro();
            }
            let (a, bytes) = run_of(0, 40, |k| if k == 39 { 1 } else { 100 });
            send_segmented(&raw, &bytes, 108);
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(rx.recv_deadline(soon()).unwrap());
            }
            assert_eq!(rx.gro(), !explicit, "the second receive took a batch");
            if explicit {
                rx.enable_gro().unwrap();
                assert!(rx.gro());
            }
            let (b2, bytes) = run_of(40, 20, |_| 300);
            send_segmented(&raw, &bytes, 308);
            let plain = send_plain(&raw, 60, 3, 10);
            let want: Vec<Vec<u8>> = [a, b2, plain].concat();
            while got.len() < want.len() {
                got.push(rx.recv_deadline(soon()).unwrap());
            }
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "explicit {explicit}, datagram {k}");
            }
            assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
        }
    });
}

/// A ringwire sender's `send_buffered` + `flush` into a coalescing receiver, busy-polling and
/// blocking, several runs queued before reading (receive buffer raised): every message, in order.
#[test]
fn buffered_runs_spin_and_block_nothing_lost() {
    watched(|| {
        for io_wait in [IoWait::Block, IoWait::Spin, IoWait::Adaptive { spin: Duration::from_micros(50) }] {
            let (a, b) = pair();
            setsockopt_int(&b, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
            let (mut tx, _) = udp::from_socket(a).unwrap();
            let (_, mut rx) = udp::from_socket(b).unwrap();
            rx.enable_gro().unwrap();
            rx.set_io_wait(io_wait);
            let mut sent = Vec::new();
            for r in 0..6 {
                for k in 0..50 {
                    let m = exact(r * 100 + k, if k == 49 { 7 } else { 64 + r });
                    tx.send_buffered(&m, Wait::Never).unwrap();
                    sent.push(m);
                }
                tx.flush().unwrap();
            }
            for (k, m) in sent.iter().enumerate() {
                let got = if k % 3 == 0 {
                    rx.recv().unwrap()
                } else if k % 3 == 1 {
                    rx.recv_deadline(soon()).unwrap()
                } else {
                    let mut v = Vec::new();
                    rx.recv_frame_into_vec(&mut v, Wait::Until(soon())).unwrap();
                    v
                };
                assert_eq!(&got, m, "{io_wait:?}, message {k}");
            }
            assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
        }
    });
}

/// A run whose datagrams are all over the limit, interleaved with good lone datagrams and good runs, on
/// a receiver whose limit is tiny (8 bytes: empty messages only): one `Oversize` per datagram.
#[test]
fn tiny_limit_refuses_each_datagram_of_a_run_alone() {
    watched(|| {
        let (raw, b) = pair();
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.set_max_datagram(8);
        rx.enable_gro().unwrap();
        let (_, bytes) = run_of(0, 7, |k| if k == 6 { 1 } else { 9 });
        send_segmented(&raw, &bytes, 17);
        raw.send(&frame(b"")).unwrap();
        send_segmented(&raw, &frame(b"").repeat(5), 8);
        for k in 0..7 {
            match rx.recv_deadline(soon()) {
                Err(TransportRecvError::BadFrame(FrameError::Oversize { len, max: 0 })) => {
                    assert_eq!(len, if k == 6 { 1 } else { 9 })
                }
                other => panic!("datagram {k}: {other:?}"),
            }
        }
        for k in 0..6 {
            assert_eq!(rx.recv_deadline(soon()).unwrap(), Vec::<u8>::new(), "empty {k}");
        }
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    });
}

/// A socket with `SO_TIMESTAMP` on (a user's option, set before `from_socket`): a coalesced run is
/// still cut into its datagrams. (Found by this probe: the timestamp's control message filled a
/// 32-byte control buffer, the `UDP_GRO` one was truncated away, and the run came out as one bad
/// datagram; the buffer is 512 bytes now, and a truncation that hides the size is an error.)
#[test]
fn gro_run_with_so_timestamp_on_the_socket() {
    watched(|| {
        let (raw, b) = pair();
        setsockopt_int(&b, libc::SOL_SOCKET, libc::SO_TIMESTAMP, 1);
        let (_, mut rx) = udp::from_socket(b).unwrap();
        rx.enable_gro().unwrap();
        let (msgs, bytes) = run_of(0, 5, |_| 92);
        send_segmented(&raw, &bytes, 100);
        for (k, m) in msgs.iter().enumerate() {
            let r = rx.recv_deadline(soon());
            assert_eq!(r.as_ref().ok(), Some(m), "datagram {k}: {r:?}");
        }
    });
}

/// A socket on which the user already turned `UDP_GRO` on before `from_socket`: the receiver reads the
/// option back and takes coalesced runs (found by this probe: it used to read them with a plain `recv`
/// as one bad datagram).
#[test]
fn socket_with_udp_gro_already_on() {
    watched(|| {
        let (raw, b) = pair();
        setsockopt_int(&b, libc::SOL_UDP, 104, 1); // UDP_GRO
        let (_, mut rx) = udp::from_socket(b).unwrap();
        let (msgs, bytes) = run_of(0, 5, |_| 92);
        send_segmented(&raw, &bytes, 100);
        for (k, m) in msgs.iter().enumerate() {
            let r = rx.recv_deadline(soon());
            assert_eq!(r.as_ref().ok(), Some(m), "datagram {k} (gro() = {}): {r:?}", rx.gro());
        }
    });
}

/// An async receiver (pair made of a blocking raw socket and a tokio one).
async fn async_pair(host: &str) -> (UdpSocket, ringwire::transport::tokio::udp::AsyncUdpReceiver) {
    let (raw, b) = pair_on(host);
    let (_, rx) = ringwire::transport::tokio::udp::from_std(b).unwrap();
    (raw, rx)
}

/// Async: `enable_gro` twice is fine, after `close` it is `NotConnected` (also on a receiver that never
/// asked); a receive after `close` with nothing buffered is `Closed`.
#[test]
fn async_enable_gro_twice_and_after_close() {
    on_runtime(|| async {
        let (_raw, mut rx) = async_pair("127.0.0.1").await;
        assert!(!rx.gro());
        rx.enable_gro().unwrap();
        rx.enable_gro().unwrap();
        assert!(rx.gro());
        rx.close();
        assert!(matches!(rx.recv().await, Err(TransportRecvError::Closed)));
        assert_eq!(rx.enable_gro().unwrap_err().kind(), io::ErrorKind::NotConnected);
        let (_raw, mut rx) = async_pair("127.0.0.1").await;
        rx.close();
        assert_eq!(rx.enable_gro().unwrap_err().kind(), io::ErrorKind::NotConnected);
        assert!(!rx.gro());
    });
}

/// Async: `close` while a coalesced run is half handed out: every later receive is `Closed`
/// (`AsyncReceiver::close`: "later receives fail with Closed", as the blocking receiver does; found by
/// this probe: the rest of the run used to be handed out first).
#[test]
fn async_close_mid_run_is_closed() {
    on_runtime(|| async {
        let (raw, mut rx) = async_pair("127.0.0.1").await;
        rx.enable_gro().unwrap();
        let (msgs, bytes) = run_of(0, 4, |_| 10);
        send_segmented(&raw, &bytes, 18);
        assert_eq!(rx.recv().await.unwrap(), msgs[0]);
        rx.close();
        for k in 1..4 {
            let r = rx.recv().await;
            assert!(matches!(r, Err(TransportRecvError::Closed)), "receive {k} after close: {r:?}");
        }
    });
}

/// Async without `enable_gro`: a segmented run arrives split (the kernel cuts it for a socket without
/// `UDP_GRO`), every datagram whole, and the receiver never turns it on by itself.
#[test]
fn async_without_gro_never_enables_and_loses_nothing() {
    on_runtime(|| async {
        let (raw, mut rx) = async_pair("127.0.0.1").await;
        rx.set_max_datagram(512);
        let (msgs, bytes) = run_of(0, 30, |k| if k == 29 { 2 } else { 40 });
        send_segmented(&raw, &bytes, 48);
        for (k, m) in msgs.iter().enumerate() {
            assert_eq!(&rx.recv().await.unwrap(), m, "datagram {k}");
        }
        assert!(!rx.gro());
    });
}

/// Async odd shapes: segment size 1 (one `BadFrame` per byte), a run of exactly 65507 bytes, an IPv6
/// run of 65527 bytes: each datagram alone, in order.
#[test]
fn async_odd_shapes() {
    on_runtime(|| async {
        let (raw, mut rx) = async_pair("127.0.0.1").await;
        rx.enable_gro().unwrap();
        send_segmented(&raw, &[1u8; 64], 1);
        for k in 0..64 {
            assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(_))), "byte {k}");
        }
        let full = 65507 / 1100;
        let (msgs, bytes) = run_of(0, full + 1, |k| if k == full { 65507 - full * 1100 - 8 } else { 1092 });
        if ringwire_testkit::udp_send_segmented(&raw, &bytes, 1100).is_err() {
            send_segmented(&raw, &bytes[..32 * 1100], 1100);
            send_segmented(&raw, &bytes[32 * 1100..], 1100);
        }
        for (k, m) in msgs.iter().enumerate() {
            assert_eq!(&rx.recv().await.unwrap(), m, "datagram {k}");
        }

        let (raw, mut rx) = async_pair("[::1]").await;
        rx.enable_gro().unwrap();
        let full = 65527 / 1300;
        let (msgs, bytes) = run_of(0, full + 1, |k| if k == full { 65527 - full * 1300 - 8 } else { 1292 });
        if ringwire_testkit::udp_send_segmented(&raw, &bytes, 1300).is_err() {
            send_segmented(&raw, &bytes[..32 * 1300], 1300);
            send_segmented(&raw, &bytes[32 * 1300..], 1300);
        }
        let mut v = Vec::new();
        for (k, m) in msgs.iter().enumerate() {
            rx.recv_frame_into_vec(&mut v).await.unwrap();
            assert_eq!(&v, m, "v6 datagram {k}");
        }
        // Limit lowered mid-run: the rest checked against it, each alone.
        let (msgs, bytes) = run_of(100, 4, |_| 500);
        send_segmented(&raw, &bytes, 508);
        assert_eq!(rx.recv().await.unwrap(), msgs[0]);
        rx.set_max_datagram(100);
        assert!(matches!(rx.recv().await, Err(TransportRecvError::BadFrame(FrameError::Oversize { .. }))));
        rx.set_max_datagram(1000);
        assert_eq!(rx.recv().await.unwrap(), msgs[2]);
        assert_eq!(rx.recv().await.unwrap(), msgs[3]);
    });
}

/// Async cancel safety mid-run: receive futures dropped in `tokio::select!` (against a timer that is
/// already due, and against a receive that is pending when dropped) lose nothing: every datagram of
/// several runs (a ringwire async sender's `send_buffered` + `flush`) comes out once, in order.
#[test]
fn async_dropped_futures_mid_run_lose_nothing() {
    on_runtime(|| async {
        let (a, b) = pair();
        setsockopt_int(&b, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
        let (mut tx, _) = ringwire::transport::tokio::udp::from_std(a).unwrap();
        let (_, mut rx) = ringwire::transport::tokio::udp::from_std(b).unwrap();
        rx.enable_gro().unwrap();
        let mut sent = Vec::new();
        let mut got = Vec::new();
        let mut dropped = 0;
        for r in 0..8 {
            // A pending receive, dropped: nothing waits yet (everything sent is already taken).
            if got.len() == sent.len() {
                assert!(rx.recv().now_or_never().is_none());
                dropped += 1;
            }
            for k in 0..40 {
                let m = exact(r * 100 + k, if k == 39 { 1 } else { 30 + r });
                tx.send_buffered(&m).await.unwrap();
                sent.push(m);
            }
            tx.flush().await.unwrap();
            let mut turn = 0u32;
            while got.len() < sent.len() {
                turn += 1;
                if turn % 3 == 0 {
                    tokio::select! {
                        biased;
                        _ = std::future::ready(()) => { dropped += 1; }
                        m = rx.recv() => got.push(m.unwrap()),
                    }
                } else if turn % 3 == 1 {
                    tokio::select! {
                        m = rx.recv() => got.push(m.unwrap()),
                        _ = tokio::time::sleep(Duration::ZERO) => { dropped += 1; }
                    }
                } else {
                    let mut v = Vec::new();
                    rx.recv_frame_into_vec(&mut v).await.unwrap();
                    got.push(v);
                }
            }
        }
        assert!(dropped > 0);
        assert_eq!(got.len(), sent.len());
        for (k, (g, s)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(g, s, "message {k}");
        }
        assert!(rx.recv().now_or_never().is_none(), "a message more than was sent");
    });
}

/// Async: a socket with `SO_TIMESTAMP` on, then `enable_gro`: a coalesced run is still cut into its
/// datagrams (as the blocking `gro_run_with_so_timestamp_on_the_socket`).
#[test]
fn async_gro_run_with_so_timestamp_on_the_socket() {
    on_runtime(|| async {
        let (raw, b) = pair();
        setsockopt_int(&b, libc::SOL_SOCKET, libc::SO_TIMESTAMP, 1);
        let (_, mut rx) = ringwire::transport::tokio::udp::from_std(b).unwrap();
        rx.enable_gro().unwrap();
        let (msgs, bytes) = run_of(0, 5, |_| 92);
        send_segmented(&raw, &bytes, 100);
        for (k, m) in msgs.iter().enumerate() {
            let r = rx.recv().await;
            assert_eq!(r.as_ref().ok(), Some(m), "datagram {k}: {r:?}");
        }
    });
}
