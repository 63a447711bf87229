//! Each transport adapter's own failure modes, with real processes and real sockets: children that exit
//! mid-frame, send garbage, close stdout or flood; 1-byte reads and writes; TCP resets; bad datagrams;
//! many TCP clients at once. Deadlines are watchdogs only: running into one fails the test as a hang.

use ringwire::transport::codec::{encode_into, FrameError};
use ringwire::transport::{
    pipe, stdio, tcp, udp, Receiver, Sender, StreamFd, StreamReceiver, StreamSender, TransportRecvError,
    TransportSendError, Wait,
};
use ringwire::wire::{FrameHeader, Kind};
use ringwire_testkit::peer::misbehave::Mode;
use ringwire_testkit::{check, message};
use ringwire_testkit::{Adapter, PeerArgs, PeerMode};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

fn soon() -> Instant {
    Instant::now() + WATCHDOG
}

fn peer(mode: Mode) -> Command {
    ringwire_testkit::peer::command(mode)
}

/// The bench's echo peer over its stdio, accepting messages up to `max`.
fn echo_stdio(max: usize) -> Command {
    let args = PeerArgs { max_message: max, ..PeerArgs::transport(PeerMode::Echo, Adapter::Stdio) };
    ringwire_testkit::peer::bench_command(&args)
}

#[test]
fn stdio_child_exiting_mid_frame_is_a_reset() {
    let (_tx, mut rx, mut child) = stdio::spawn(&mut peer(Mode::MidframeExit)).unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"whole");
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerReset)));
    assert!(child.wait_deadline(soon()).unwrap().expect("child exits").success());
}

#[test]
fn stdio_garbage_breaks_the_stream_for_good() {
    let (mut tx, mut rx, mut child) = stdio::spawn(&mut peer(Mode::GarbageStdio)).unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"good");
    // A bad header on a stream: no way to find the next frame, so the stream is dead (not skippable).
    let e = rx.recv_deadline(soon()).unwrap_err();
    assert!(matches!(e, TransportRecvError::Broken(FrameError::BadHeader(_))), "{e:?}");
    assert!(e.is_fatal());
    assert!(matches!(rx.try_recv(), Err(TransportRecvError::Broken(FrameError::BadHeader(_)))));
    tx.close().unwrap();
    assert!(child.wait_deadline(soon()).unwrap().expect("child exits").success());
}

#[test]
fn stdio_child_closing_stdout_is_a_clean_end_while_it_lives() {
    let (mut tx, mut rx, mut child) = stdio::spawn(&mut peer(Mode::CloseStdout)).unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"bye");
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    assert!(child.try_wait().unwrap().is_none(), "the child waits for our end of input");
    tx.close().unwrap();
    assert!(child.wait_deadline(soon()).unwrap().expect("child exits").success());
}

#[test]
fn stdio_flooding_child_gets_epipe_not_sigpipe_when_we_stop_reading() {
    let (_tx, mut rx, mut child) = stdio::spawn(&mut peer(Mode::FloodStdio)).unwrap();
    for _ in 0..100 {
        assert_eq!(rx.recv_deadline(soon()).unwrap().len(), 4096);
    }
    rx.close();
    drop(rx);
    let status = child.wait_deadline(soon()).unwrap().expect("child exits");
    assert_eq!(status.code(), Some(3), "flooder should see EPIPE as an error: {status:?}");
}

#[test]
fn stdio_writing_to_an_exited_child_is_a_reset() {
    let (mut tx, _rx, mut child) = stdio::spawn(&mut peer(Mode::MidframeExit)).unwrap();
    child.wait_deadline(soon()).unwrap().expect("child exits");
    let deadline = soon();
    let err = loop {
        if let Err(e) = tx.send_deadline(&[0; 1000], deadline) {
            break e;
        }
    };
    assert!(matches!(err, TransportSendError::PeerReset), "{err:?}");
}

#[test]
fn stdio_stderr_lines_reach_the_callback_and_oversize_frames_are_skipped() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let mut cmd = echo_stdio(100);
    let (mut tx, mut rx, mut child) =
        stdio::spawn_with_stderr(&mut cmd, move |l| seen.lock().unwrap().push(l.to_string())).unwrap();
    tx.send(&[9; 500]).unwrap(); // over the child's limit: skipped there, reported on its stderr
    tx.send(b"fits").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"fits");
    tx.close().unwrap();
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    assert!(child.wait().unwrap().success());
    let lines = lines.lock().unwrap();
    assert!(lines.iter().any(|l| l.contains("frame of 500 bytes exceeds the maximum of 100")), "{lines:?}");
}

#[test]
fn dropping_a_running_child_kills_and_reaps_it() {
    let (tx, rx, child) = stdio::spawn(&mut echo_stdio(ringwire::transport::DEFAULT_MAX_MESSAGE)).unwrap();
    let pid = child.id() as libc::pid_t;
    drop(child);
    // Reaped: it is no longer our child (a zombie would still be).
    // SAFETY: waitpid with a null status pointer is allowed.
    let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(r, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ECHILD));
    drop((tx, rx));
}

#[test]
fn typed_json_over_an_inherited_channel() {
    let (mut tx, mut rx, mut child) = ringwire::transport::fork::spawn(&mut peer(Mode::EchoJsonFork)).unwrap();
    ringwire::transport::send_json(&mut tx, &serde_json::json!({"a": [1, 2]})).unwrap();
    let reply: serde_json::Value = ringwire::transport::recv_json(&mut rx).unwrap();
    assert_eq!(reply, serde_json::json!({"got": {"a": [1, 2]}}));
    tx.close().unwrap();
    assert!(child.wait_deadline(soon()).unwrap().expect("child exits").success());
}

/// Reads and writes at most one byte per call, over a real descriptor.
struct OneByte(StreamFd);

impl Read for OneByte {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

impl Write for OneByte {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        self.0.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsFd for OneByte {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[test]
fn one_byte_reads_and_writes_over_a_real_pipe() {
    let (r, w) = pipe::raw_pipe().unwrap();
    let mut tx = StreamSender::new(OneByte(StreamFd::new(w).unwrap())).unwrap();
    let mut rx = StreamReceiver::new(OneByte(StreamFd::new(r).unwrap())).unwrap();
    const N: u64 = 300;
    let sender = std::thread::spawn(move || {
        for seq in 0..N {
            tx.send(&message(seq, 1000)).unwrap();
        }
        tx.close().unwrap();
    });
    for seq in 0..N {
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 1000), "message {seq}");
    }
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    sender.join().unwrap();
}

#[test]
fn receiver_skips_an_oversize_frame_and_goes_on() {
    let (mut tx, mut rx) = pipe::pair().unwrap();
    rx.set_max_message(100);
    tx.send(&[1; 5000]).unwrap();
    tx.send(b"next").unwrap();
    match rx.recv_deadline(soon()) {
        Err(TransportRecvError::BadFrame(FrameError::Oversize { len: 5000, max: 100 })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"next");
    assert!(rx.buffer_allocated() <= 64 << 10);
}

#[test]
fn full_pipe_try_send_would_block_then_everything_arrives() {
    let (mut tx, mut rx) = pipe::pair().unwrap();
    assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
    // Same-size frames (under PIPE_BUF, so each write is all or nothing): once one doesn't fit, none does.
    let msg = |seq: u64| vec![seq as u8; 1000];
    let mut accepted = 0u64;
    loop {
        match tx.try_send(&msg(accepted)) {
            Ok(()) => accepted += 1,
            Err(TransportSendError::WouldBlock) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(matches!(tx.send_deadline(&msg(accepted), Instant::now()), Err(TransportSendError::Timeout)));
    let drain = std::thread::spawn(move || {
        for seq in 0..accepted {
            assert_eq!(rx.recv_deadline(soon()).unwrap(), msg(seq), "message {seq}");
        }
        assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    });
    tx.close().unwrap();
    drain.join().unwrap();
}

#[test]
fn fifos_refuse_symlinks_and_other_files() {
    let dir = std::env::temp_dir().join(format!("ringwire-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    pipe::create_fifo(dir.join("f")).unwrap();
    std::os::unix::fs::symlink(dir.join("f"), dir.join("link")).unwrap();
    std::fs::write(dir.join("plain"), b"").unwrap();
    assert_eq!(pipe::open_fifo_sender(dir.join("link")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
    assert_eq!(pipe::open_fifo_receiver(dir.join("plain")).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(pipe::create_fifo(dir.join("f")).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tcp_reset_mid_frame_is_a_reset() {
    let listener = tcp::Listener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_tx, mut rx, _) = listener.accept().unwrap();
    let mut half = FrameHeader::data(100).to_bytes().to_vec();
    half.extend_from_slice(&[1; 10]);
    client.write_all(&half).unwrap();
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads a linger struct that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&client),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    drop(client); // RST
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerReset)));
}

#[test]
fn fifty_tcp_clients_on_one_listener_with_bounded_buffers() {
    const CLIENTS: usize = 50;
    const MSGS: u64 = 200;
    const MAX: usize = 4096;
    let listener = tcp::Listener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut echoes = Vec::new();
        for _ in 0..CLIENTS {
            let (mut tx, mut rx, _) = listener.accept().unwrap();
            rx.set_max_message(MAX);
            echoes.push(std::thread::spawn(move || {
                let mut peak = 0;
                loop {
                    match rx.recv_deadline(soon()) {
                        Ok(m) => tx.send(&m).unwrap(),
                        Err(TransportRecvError::PeerGone) => break,
                        Err(e) => panic!("{e:?}"),
                    }
                    peak = peak.max(rx.buffer_allocated());
                }
                tx.close().unwrap();
                peak
            }));
        }
        echoes.into_iter().map(|t| t.join().unwrap()).max().unwrap()
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut tx, mut rx) = tcp::connect(addr).unwrap();
                for seq in 0..MSGS {
                    tx.send(&message(seq, MAX)).unwrap();
                    assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, MAX));
                }
                tx.close().unwrap();
                assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let peak = server.join().unwrap();
    assert!(peak <= (MAX + 8).max(64 << 10), "a connection buffered {peak} bytes");
}

#[test]
fn udp_bad_datagrams_are_typed_errors_and_the_receiver_goes_on() {
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (mut tx, mut rx) = udp::connect("127.0.0.1:0", raw.local_addr().unwrap()).unwrap();
    raw.connect(rx.socket().unwrap().local_addr().unwrap()).unwrap();
    rx.set_max_datagram(108);
    tx.set_max_datagram(108);
    assert_eq!(rx.max_message(), 100);
    assert!(matches!(tx.send(&[0; 101]), Err(TransportSendError::Oversize { len: 101, max: 100 })));

    let mut frame = Vec::new();
    encode_into(&mut frame, Kind::Data, &[5; 50]).unwrap();
    raw.send(&frame[..20]).unwrap(); // shorter than its header says
    raw.send(b"garbage!garbage!").unwrap(); // no header
    raw.send(b"abc").unwrap(); // shorter than a header
    let mut big = Vec::new();
    encode_into(&mut big, Kind::Data, &[6; 500]).unwrap();
    raw.send(&big).unwrap(); // larger than the receiver's datagram limit (MSG_TRUNC)
    raw.send(&frame).unwrap(); // fine
    let mut next = || rx.recv_deadline(soon());
    assert!(matches!(next(), Err(TransportRecvError::BadFrame(FrameError::Truncated { missing: 38 }))));
    assert!(matches!(next(), Err(TransportRecvError::BadFrame(FrameError::BadHeader(_)))));
    assert!(matches!(next(), Err(TransportRecvError::BadFrame(FrameError::Truncated { missing: 5 }))));
    assert!(matches!(next(), Err(TransportRecvError::BadFrame(FrameError::Oversize { len: 500, max: 100 }))));
    assert_eq!(next().unwrap(), [5; 50]);
}

/// A header whose `ext` (event-name length) exceeds its `len`: on a datagram transport that message
/// alone is refused (`BadFrame`); on a stream nothing after it can be trusted (`Broken`, for good).
#[test]
fn ext_beyond_len_is_bad_frame_on_datagrams_and_broken_on_streams() {
    use ringwire::wire::HeaderDecodeError;
    let bad = |ext: u16| {
        let mut v = FrameHeader { len: 2, kind: Kind::Data, ext }.to_bytes().to_vec();
        v.extend_from_slice(b"ab");
        v
    };
    let e = FrameError::BadHeader(HeaderDecodeError::ExtTooLong { ext: 3, len: 2 });

    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (_tx, mut rx) = udp::connect("127.0.0.1:0", raw.local_addr().unwrap()).unwrap();
    raw.connect(rx.socket().unwrap().local_addr().unwrap()).unwrap();
    raw.send(&bad(3)).unwrap();
    raw.send(&bad(2)).unwrap(); // ext = len: a name and an empty body, fine
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::BadFrame(f)) if f == e));
    let f = rx.recv_frame_wait(Wait::Until(soon())).unwrap();
    assert_eq!((f.ext, f.bytes.as_slice()), (2, &b"ab"[..]));

    let (r, w) = pipe::raw_pipe().unwrap();
    let mut rx = StreamReceiver::new(StreamFd::new(r).unwrap()).unwrap();
    let mut w = std::fs::File::from(w);
    let mut good = Vec::new();
    ringwire::transport::codec::encode_parts_into(&mut good, Kind::Data, 2, &[b"ab", b"c"]).unwrap();
    w.write_all(&good).unwrap();
    w.write_all(&bad(3)).unwrap();
    w.write_all(&good).unwrap();
    let f = rx.recv_frame_wait(Wait::Until(soon())).unwrap();
    assert_eq!((f.ext, f.bytes.as_slice()), (2, &b"abc"[..]));
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::Broken(f)) if f == e));
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::Broken(_))), "for good");
}

#[test]
fn named_shm_duplex() {
    let name = format!("ringwire-tr-{}", std::process::id());
    let (mut a_tx, mut a_rx) = ringwire::transport::shm::create(&name, ringwire::RingConfig::default()).unwrap();
    let (mut b_tx, mut b_rx) = ringwire::transport::shm::open(&name).unwrap();
    a_tx.send(b"down").unwrap();
    assert_eq!(b_rx.recv_deadline(soon()).unwrap(), b"down");
    b_tx.send(b"up").unwrap();
    assert_eq!(a_rx.recv_deadline(soon()).unwrap(), b"up");
    a_tx.close().unwrap();
    assert!(matches!(b_rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
}

#[test]
fn a_partly_written_frame_is_accepted_and_flushed_later() {
    let (mut tx, mut rx) = pipe::pair().unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect(); // more than a pipe holds
    tx.try_send(&big).unwrap(); // part written, the rest queued in the sender
    assert!(matches!(tx.try_send(b"after"), Err(TransportSendError::WouldBlock)), "queued frame goes first");
    let reader = std::thread::spawn(move || {
        let first = rx.recv_deadline(soon()).unwrap();
        (first, rx.recv_deadline(soon()).unwrap())
    });
    tx.flush().unwrap();
    tx.send(b"after").unwrap();
    let (first, second) = reader.join().unwrap();
    assert!(first == big);
    assert_eq!(second, b"after");
}

/// A header announcing the largest payload, and nothing after it: the receiver holds memory in
/// proportion to what arrived (a few KiB), not to what the header claims (1 MiB); it grows as the
/// payload really comes.
#[test]
fn a_stream_receiver_grows_with_bytes_received_not_bytes_announced() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let (ours, mut raw) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = ringwire::transport::StreamFd::new(std::os::fd::OwnedFd::from(ours)).unwrap();
        let mut rx = ringwire::transport::StreamReceiver::new(fd).unwrap();
        rx.set_max_message(1 << 20);
        raw.write_all(&FrameHeader::data(1 << 20).to_bytes()).unwrap();
        assert!(matches!(rx.try_recv(), Err(TransportRecvError::Empty)));
        assert!(rx.buffer_allocated() <= 8 << 10, "holds {} bytes for an 8-byte header", rx.buffer_allocated());
        let chunk = vec![7u8; 1 << 16];
        let mut sent = 0;
        let writer = std::thread::spawn(move || {
            while sent < 1 << 20 {
                raw.write_all(&chunk).unwrap();
                sent += chunk.len();
            }
        });
        let msg = rx.recv_deadline(soon()).unwrap();
        assert_eq!(msg.len(), 1 << 20);
        writer.join().unwrap();
    });
}

/// A client that trickles its handshake one byte at a time never finishes it: the handshake timeout is
/// a total deadline, not a per-read one, so the server gives up (before, each byte restarted the clock).
#[test]
fn a_trickling_websocket_handshake_times_out() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let mut l = ringwire::transport::websocket::Listener::bind("127.0.0.1:0", "/x").unwrap();
        l.set_options(ringwire::transport::websocket::Options {
            handshake_timeout: Duration::from_millis(500),
            ..Default::default()
        });
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let trickler = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            // The hostile peer's own pace: a byte every 100 ms, each well within a per-read timeout.
            for b in b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n".iter().cycle() {
                if stop2.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let e = l.accept().map(drop).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        trickler.join().unwrap();
    });
}

/// A peer that never reads: a blocking send gives up after the stall bound with `PeerReset` (and so do
/// later ones) instead of waiting forever; before the bound, sends just wait.
#[test]
fn a_stream_sender_gives_up_on_a_peer_that_never_reads() {
    ringwire_testkit::watchdog(WATCHDOG, || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut tx, _rx) = ringwire::transport::tcp::connect(addr).unwrap();
        let (_held, _) = listener.accept().unwrap(); // accepted, never read
        tx.set_stall_timeout(Some(Duration::from_millis(200)));
        let msg = vec![1u8; 64 << 10];
        let err = loop {
            match tx.send(&msg) {
                Ok(()) => continue,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, TransportSendError::PeerReset), "{err:?}");
        assert!(matches!(tx.send(b"x"), Err(TransportSendError::PeerReset)));
    });
}

/// Kernel transports in `Spin` and `Adaptive` modes: messages flow, `try_` calls never spin, deadlines
/// still end a spinning wait, and a peer that goes away is seen at once (the syscall says so).
#[test]
fn spinning_kernel_transports_keep_the_contract() {
    use ringwire::transport::IoWait;
    ringwire_testkit::watchdog(WATCHDOG, || {
        for mode in [IoWait::Spin, IoWait::Adaptive { spin: Duration::from_micros(50) }] {
            let listener = ringwire::transport::tcp::Listener::bind("127.0.0.1:0").unwrap();
            let (mut ctx, mut crx) = ringwire::transport::tcp::connect(listener.local_addr().unwrap()).unwrap();
            let (mut stx, mut srx, _) = listener.accept().unwrap();
            for h in [&mut ctx as &mut dyn Sender, &mut stx] {
                h.set_io_wait(mode);
            }
            for h in [&mut crx as &mut dyn Receiver, &mut srx] {
                h.set_io_wait(mode);
            }
            assert!(matches!(srx.try_recv(), Err(TransportRecvError::Empty)));
            assert!(matches!(
                srx.recv_deadline(Instant::now() + Duration::from_millis(20)),
                Err(TransportRecvError::Timeout)
            ));
            let echo = std::thread::spawn(move || {
                while let Ok(m) = srx.recv() {
                    stx.send(&m).unwrap();
                }
                stx.close().unwrap();
            });
            for i in 0..1000u32 {
                ctx.send(&i.to_le_bytes()).unwrap();
                assert_eq!(crx.recv().unwrap(), i.to_le_bytes());
            }
            ctx.close().unwrap();
            assert!(matches!(crx.recv(), Err(TransportRecvError::PeerGone)), "{mode:?}");
            echo.join().unwrap();
        }
    });
}
