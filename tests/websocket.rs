//! The websocket adapter against real peers: our own client and server in threads, `ringwire-testpeer bench echo`
//! child processes (killed, stopped), raw tungstenite clients that misbehave (never read, never answer
//! pings, send garbage), and Node.js's WebSocket client as a peer written in another language. Every
//! wait has a deadline; no test sleeps or asserts a duration.

use ringwire::transport::codec::FrameError;
use ringwire::transport::websocket::{self, Listener, Options, WsReceiver, WsSender};
use ringwire::transport::{Receiver, Sender, TransportRecvError, TransportSendError};
use ringwire::wire::FrameHeader;
use ringwire_testkit::{check, message};
use ringwire_testkit::{Adapter, PeerArgs, PeerMode};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

fn soon() -> Instant {
    Instant::now() + LONG
}

/// A server connection and a client connection to it, both ours.
fn pair(server: Options, client: Options) -> ((WsSender, WsReceiver), (WsSender, WsReceiver)) {
    let mut l = Listener::bind("127.0.0.1:0", "/t").unwrap();
    l.set_options(server);
    let url = l.url().unwrap();
    let t = std::thread::spawn(move || websocket::connect_with(&url, &client).unwrap());
    let (tx, rx, _) = l.accept().unwrap();
    ((tx, rx), t.join().unwrap())
}

/// A raw tungstenite client (no ringwire on that side) connected to a fresh listener; returns it and our
/// server halves.
fn raw_client(server: Options) -> (tungstenite::WebSocket<TcpStream>, WsSender, WsReceiver) {
    let mut l = Listener::bind("127.0.0.1:0", "/raw").unwrap();
    l.set_options(server);
    let url = l.url().unwrap();
    let t = std::thread::spawn(move || {
        let addr = url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
        let stream = TcpStream::connect(addr).unwrap();
        tungstenite::client::client(url.as_str(), stream).unwrap().0
    });
    let (tx, rx, _) = l.accept().unwrap();
    (t.join().unwrap(), tx, rx)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader::data(payload.len() as u32).to_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// A child process, killed and reaped on drop.
struct Kid(Child);
impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn round_trip_both_ways_in_order() {
    let ((mut stx, mut srx), (mut ctx, mut crx)) = pair(Options::default(), Options::default());
    for msg in [&b"hello"[..], b"", &[0xff; 300]] {
        ctx.send(msg).unwrap();
        assert_eq!(srx.recv_deadline(soon()).unwrap(), msg);
        stx.send(msg).unwrap();
        assert_eq!(crx.recv_deadline(soon()).unwrap(), msg);
    }
    // Each side streams 10k messages while the other reads them (a thread per direction).
    const N: u64 = 10_000;
    let writer = std::thread::spawn(move || {
        for seq in 0..N {
            ctx.send(&message(seq, 1000)).unwrap();
        }
        ctx
    });
    for seq in 0..N {
        assert!(check(&srx.recv_deadline(soon()).unwrap(), seq, 1000), "message {seq}");
    }
    let _ctx = writer.join().unwrap();
    let reader = std::thread::spawn(move || {
        for seq in 0..N {
            assert!(check(&crx.recv_deadline(soon()).unwrap(), seq, 1000), "message {seq}");
        }
        crx
    });
    for seq in 0..N {
        stx.send(&message(seq, 1000)).unwrap();
    }
    let mut crx = reader.join().unwrap();
    assert!(matches!(crx.try_recv(), Err(TransportRecvError::Empty)));
    assert!(matches!(crx.recv_deadline(Instant::now() + Duration::from_millis(20)), Err(TransportRecvError::Timeout)));
}

#[test]
fn halves_are_send_and_work_from_two_threads_at_once() {
    fn is_send<T: Send>() {}
    is_send::<WsSender>();
    is_send::<WsReceiver>();
    let ((mut stx, mut srx), (mut ctx, mut crx)) = pair(Options::default(), Options::default());
    // The server echoes from one thread per half: a receive blocked in one never holds up the other.
    let (echo_tx, echo_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let recv = std::thread::spawn(move || {
        while let Ok(m) = srx.recv_deadline(soon()) {
            echo_tx.send(m).unwrap();
        }
    });
    let send = std::thread::spawn(move || {
        for m in echo_rx {
            stx.send(&m).unwrap();
        }
        stx.close().unwrap();
    });
    for seq in 0..1000 {
        ctx.send(&message(seq, 500)).unwrap();
    }
    for seq in 0..1000 {
        assert!(check(&crx.recv_deadline(soon()).unwrap(), seq, 500));
    }
    ctx.close().unwrap();
    recv.join().unwrap();
    send.join().unwrap();
    assert!(matches!(crx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
}

#[test]
fn oversize_is_refused_on_send_and_closes_on_receive() {
    let small = Options { max_message: 100, ..Options::default() };
    let big = Options { max_message: 1000, ..Options::default() };
    let ((mut stx, mut srx), (mut ctx, mut crx)) = pair(small, big);
    match stx.send(&[1; 101]) {
        Err(TransportSendError::Oversize { len: 101, max: 100 }) => {}
        other => panic!("expected Oversize, got {other:?}"),
    }
    stx.send(&[1; 100]).unwrap();
    assert_eq!(crx.recv_deadline(soon()).unwrap(), [1; 100]);
    // The client may send up to 1000; the server refuses what is over its 100 and closes with 1009.
    ctx.send(&[2; 100]).unwrap();
    assert_eq!(srx.recv_deadline(soon()).unwrap(), [2; 100]);
    ctx.send(&[2; 500]).unwrap();
    match srx.recv_deadline(soon()) {
        Err(TransportRecvError::BadFrame(FrameError::Oversize { len: 500, max: 100 })) => {}
        other => panic!("expected BadFrame(Oversize), got {other:?}"),
    }
    assert!(matches!(srx.recv_deadline(soon()), Err(TransportRecvError::PeerReset)));
    assert!(matches!(stx.send(b"x"), Err(TransportSendError::PeerReset)));
    // The client is told why: a close with an error code.
    assert!(matches!(crx.recv_deadline(soon()), Err(TransportRecvError::PeerReset)));
}

#[test]
fn messages_that_are_not_frames_are_refused_one_by_one() {
    let (mut raw, _tx, mut rx) = raw_client(Options { max_message: 100, ..Options::default() });
    use tungstenite::Message;
    raw.send(Message::Binary(b"garbage!garbage".to_vec().into())).unwrap();
    raw.send(Message::Binary(frame(b"one").into())).unwrap();
    raw.send(Message::Text("not binary".into())).unwrap();
    let mut trailing = frame(b"two");
    trailing.push(0);
    raw.send(Message::Binary(trailing.into())).unwrap();
    raw.send(Message::Binary(frame(b"three").into())).unwrap();
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::BadFrame(FrameError::BadHeader(_)))));
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"one");
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::BadFrame(_))));
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::BadFrame(FrameError::TrailingBytes { .. }))));
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"three");
}

#[test]
fn a_close_is_seen_after_the_last_message_by_both_halves() {
    let ((mut stx, mut srx), (mut ctx, mut crx)) = pair(Options::default(), Options::default());
    stx.send(b"last").unwrap();
    stx.close().unwrap();
    assert!(matches!(stx.send(b"x"), Err(TransportSendError::Closed)));
    assert_eq!(crx.recv_deadline(soon()).unwrap(), b"last");
    assert!(matches!(crx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    assert!(matches!(crx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    assert!(matches!(ctx.send(b"too late"), Err(TransportSendError::PeerGone)));
    // The server's receiver sees the client's answer to its close.
    assert!(matches!(srx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    srx.close();
    assert!(matches!(srx.recv(), Err(TransportRecvError::Closed)));
}

#[test]
fn wrong_path_is_refused() {
    let l = Listener::bind("127.0.0.1:0", "/right").unwrap();
    let url = format!("ws://{}/wrong", l.local_addr().unwrap());
    let t = std::thread::spawn(move || websocket::connect(&url).map(|_| ()));
    let server = l.accept().map(|_| ());
    assert_eq!(server.unwrap_err().kind(), std::io::ErrorKind::NotFound);
    assert_eq!(t.join().unwrap().unwrap_err().kind(), std::io::ErrorKind::NotFound);
    assert!(websocket::connect("wss://127.0.0.1:1/").is_err());
}

fn echo_child(url: &str) -> Kid {
    let mut args = PeerArgs::transport(PeerMode::Echo, Adapter::Websocket);
    args.addr = Some(url.to_string());
    Kid(ringwire_testkit::peer::bench_command(&args).stdin(Stdio::null()).spawn().unwrap())
}

#[test]
fn a_killed_peer_process_is_a_reset() {
    let l = Listener::bind("127.0.0.1:0", "/p").unwrap();
    let mut kid = echo_child(&l.url().unwrap());
    let (mut tx, mut rx, _) = l.accept().unwrap();
    tx.send(b"ping").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"ping");
    kid.0.kill().unwrap();
    kid.0.wait().unwrap();
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerReset)));
    assert!(matches!(tx.send(b"anyone?"), Err(TransportSendError::PeerReset)));
}

/// Options for the keepalive tests: ping after 50 ms of silence, give up 200 ms after a ping.
fn keepalive() -> Options {
    Options {
        ping_interval: Some(Duration::from_millis(50)),
        ping_timeout: Duration::from_millis(200),
        ..Options::default()
    }
}

#[test]
fn a_peer_that_stops_answering_pings_is_closed() {
    // A client that completed the handshake and then never reads (so never answers a ping).
    let (_raw, mut tx, mut rx) = raw_client(keepalive());
    match rx.recv_deadline(soon()) {
        Err(TransportRecvError::PeerReset) => {}
        other => panic!("expected PeerReset from the ping timeout, got {other:?}"),
    }
    assert!(matches!(tx.send(b"x"), Err(TransportSendError::PeerReset)));
}

#[test]
fn a_stopped_peer_process_is_closed_by_the_ping_timeout() {
    let mut l = Listener::bind("127.0.0.1:0", "/p").unwrap();
    l.set_options(keepalive());
    let kid = echo_child(&l.url().unwrap());
    let (mut tx, mut rx, _) = l.accept().unwrap();
    tx.send(b"ping").unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"ping");
    let pid = nix::unistd::Pid::from_raw(kid.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let r = rx.recv_deadline(soon());
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    assert!(matches!(r, Err(TransportRecvError::PeerReset)), "{r:?}");
}

#[test]
fn a_peer_that_answers_pings_stays_connected() {
    let server =
        Options { ping_interval: Some(Duration::from_millis(10)), ping_timeout: LONG / 2, ..Options::default() };
    let ((mut stx, mut srx), (_ctx, mut crx)) = pair(server, Options { ping_interval: None, ..Options::default() });
    // The client is reading (and so answering pings) the whole time.
    let client = std::thread::spawn(move || crx.recv_deadline(soon()));
    // Long enough for many pings to go out and come back.
    assert!(matches!(srx.recv_deadline(Instant::now() + Duration::from_millis(300)), Err(TransportRecvError::Timeout)));
    stx.send(b"still here").unwrap();
    assert_eq!(client.join().unwrap().unwrap(), b"still here");
}

#[test]
fn a_client_that_never_reads_fills_a_bounded_queue_then_is_disconnected() {
    const QUEUE: usize = 256 << 10;
    let opts =
        Options { max_queued: QUEUE, stall_timeout: Duration::from_secs(1), ping_interval: None, ..Options::default() };
    let (_raw, mut tx, _rx) = raw_client(opts);
    let msg = vec![7u8; 64 << 10];
    let mut accepted = 0usize;
    loop {
        match tx.try_send(&msg) {
            Ok(()) => accepted += msg.len(),
            Err(TransportSendError::WouldBlock) => break,
            Err(e) => panic!("expected WouldBlock once full, got {e:?}"),
        }
        // Kernel socket buffers on both ends plus our queue: far less than this.
        assert!(accepted < 256 << 20, "the send queue is not bounded");
    }
    assert!(accepted >= QUEUE / 2, "accepted only {accepted} bytes");
    assert!(matches!(
        tx.send_deadline(&msg, Instant::now() + Duration::from_millis(10)),
        Err(TransportSendError::Timeout)
    ));
    // A blocking send waits for the stall timeout, then gives up on the peer.
    match tx.send(&msg) {
        Err(TransportSendError::PeerReset) => {}
        other => panic!("expected PeerReset after the stall timeout, got {other:?}"),
    }
    assert!(matches!(tx.try_send(b"x"), Err(TransportSendError::PeerReset)));
}

#[test]
fn node_websocket_client_speaks_ringwire_frames() {
    // Node.js 20's built-in WebSocket (undici), behind --experimental-websocket: a peer not written in
    // Rust. It sends one frame it builds itself, then echoes every message back until we close.
    const SCRIPT: &str = r#"
const ws = new WebSocket(process.argv[1]);
ws.binaryType = 'arraybuffer';
ws.onopen = () => {
  const payload = Buffer.from('from node');
  const frame = Buffer.alloc(8 + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame[4] = 1;
  payload.copy(frame, 8);
  ws.send(frame);
};
ws.onmessage = (e) => ws.send(e.data);
ws.onclose = (e) => process.exit(e.code === 1000 ? 0 : 3);
ws.onerror = () => process.exit(4);
"#;
    let l = Listener::bind("127.0.0.1:0", "/node").unwrap();
    let mut kid = Kid(Command::new("node")
        .args(["--no-warnings", "--experimental-websocket", "-e", SCRIPT, &l.url().unwrap()])
        .stdin(Stdio::null())
        .spawn()
        .expect("node is installed"));
    let (mut tx, mut rx, _) = l.accept().unwrap();
    assert_eq!(rx.recv_deadline(soon()).unwrap(), b"from node");
    for seq in 0..100 {
        tx.send(&message(seq, 2000)).unwrap();
        assert!(check(&rx.recv_deadline(soon()).unwrap(), seq, 2000));
    }
    tx.close().unwrap();
    assert!(matches!(rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    // Node exits once the close handshake and the TCP close are done; a watchdog kills it if it hangs.
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let pid = nix::unistd::Pid::from_raw(kid.0.id() as i32);
    std::thread::spawn(move || {
        if watch.recv_timeout(LONG).is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    let status = kid.0.wait().unwrap();
    drop(done);
    assert!(status.success(), "node exited with {status}");
}
