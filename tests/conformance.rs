//! One conformance suite, run against every transport adapter: each factory connects a (sender,
//! receiver) pair to an echo peer in another process (`ringwire __peer echo-<adapter>`), and every test
//! below runs once per adapter. Blocking calls are guarded by a watchdog that fails the test as a hang;
//! no test sleeps or asserts a duration.

use ringwire::testkit::{check, message};
use ringwire::transport::{
    fork, pipe, shm, stdio, tcp, udp, unix, Receiver, Sender, TransportRecvError, TransportSendError,
};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-conf-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn peer_cmd(mode: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringwire"));
    cmd.args(["__peer", mode]);
    cmd
}

/// The echo peer's process, killed and reaped when dropped.
enum Proc {
    Ours(stdio::ChildProcess),
    Std(Child),
}

impl Proc {
    fn kill(&mut self) {
        match self {
            Proc::Ours(c) => {
                c.kill().expect("kill");
            }
            Proc::Std(c) => {
                let _ = c.kill();
                c.wait().expect("reap");
            }
        }
    }

    fn wait_success(&mut self) -> bool {
        match self {
            Proc::Ours(c) => c.wait_deadline(Instant::now() + WATCHDOG).expect("wait").expect("peer hangs").success(),
            Proc::Std(c) => c.wait().expect("wait").success(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Proc::Std(c) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Conn {
    tx: Box<dyn Sender>,
    rx: Box<dyn Receiver>,
    peer: Proc,
    /// UDP: no clean close, no connection to lose.
    datagram: bool,
}

fn spawn_std(mode: &str, addr: &str) -> Proc {
    let child = peer_cmd(mode).args(["--addr", addr]).stdin(Stdio::null()).spawn().expect("spawn peer");
    Proc::Std(child)
}

fn conn(tx: impl Sender + 'static, rx: impl Receiver + 'static, peer: Proc) -> Conn {
    Conn { tx: Box::new(tx), rx: Box::new(rx), peer, datagram: false }
}

fn make_stdio() -> Conn {
    let (tx, rx, child) = stdio::spawn(&mut peer_cmd("echo-stdio")).expect("spawn");
    conn(tx, rx, Proc::Ours(child))
}

fn make_fork() -> Conn {
    let (tx, rx, child) = fork::spawn(peer_cmd("echo-fork").stdin(Stdio::null())).expect("spawn");
    conn(tx, rx, Proc::Ours(child))
}

fn make_fifo() -> Conn {
    let dir = std::env::temp_dir().join(unique("fifo"));
    std::fs::create_dir(&dir).unwrap();
    pipe::create_fifo(dir.join("down")).unwrap();
    pipe::create_fifo(dir.join("up")).unwrap();
    let peer = spawn_std("echo-fifo", dir.to_str().unwrap());
    let tx = pipe::open_fifo_sender(dir.join("down")).unwrap();
    let rx = pipe::open_fifo_receiver(dir.join("up")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap(); // open FIFOs outlive their names
    conn(tx, rx, peer)
}

fn make_unix() -> Conn {
    let path = std::env::temp_dir().join(unique("sock"));
    let listener = unix::Listener::bind(&path).unwrap();
    let peer = spawn_std("echo-unix", path.to_str().unwrap());
    let (tx, rx) = listener.accept().unwrap();
    conn(tx, rx, peer)
}

fn make_unix_abstract() -> Conn {
    let name = unique("abstract");
    let listener = unix::Listener::bind_abstract(name.as_bytes()).unwrap();
    let peer = spawn_std("echo-unix-abstract", &name);
    let (tx, rx) = listener.accept().unwrap();
    conn(tx, rx, peer)
}

fn make_tcp() -> Conn {
    let listener = tcp::Listener::bind("127.0.0.1:0").unwrap();
    let peer = spawn_std("echo-tcp", &listener.local_addr().unwrap().to_string());
    let (tx, rx, _) = listener.accept().unwrap();
    conn(tx, rx, peer)
}

fn make_udp() -> Conn {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = spawn_std("echo-udp", &sock.local_addr().unwrap().to_string());
    sock.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut hello = [0u8; 64];
    let (_, from) = sock.recv_from(&mut hello).expect("the udp peer says hello");
    sock.connect(from).unwrap();
    let (tx, rx) = udp::from_socket(sock).unwrap();
    Conn { datagram: true, ..conn(tx, rx, peer) }
}

fn make_shm() -> Conn {
    let duplex = shm::Duplex::anonymous(ringwire::RingConfig::default()).unwrap();
    let mut cmd = peer_cmd("echo-shm");
    duplex.share_with(&mut cmd);
    let peer = Proc::Std(cmd.stdin(Stdio::null()).spawn().unwrap());
    let (tx, rx) = duplex.parent().unwrap();
    conn(tx, rx, peer)
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
    if c.datagram {
        return; // no clean close on UDP: the peer never learns
    }
    // The echo peer closes once it sees our close; we see a clean end, every time we ask.
    assert!(matches!(recv(&mut c), Err(TransportRecvError::PeerGone)));
    assert!(matches!(recv(&mut c), Err(TransportRecvError::PeerGone)));
    assert!(c.peer.wait_success(), "echo peer failed");
}

fn peer_killed(make: fn() -> Conn) {
    let mut c = make();
    c.tx.send(b"ping").unwrap();
    assert_eq!(recv(&mut c).unwrap(), b"ping");
    c.peer.kill();
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
    }
}
