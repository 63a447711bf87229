//! The conformance contract of the kernel transports (stdio, fork, fifo, unix, tcp, udp) under each
//! wait strategy (`IoWait::Spin`, `IoWait::Adaptive`; `Block` is `tests/conformance.rs`), both sides
//! waiting the same way (the echo peer gets `--wait`): round trip, 10,000 in order, max size, oversize
//! refused then usable, clean close, and a peer killed while this side spins in a receive or a send
//! (the typed error, never a hang), plus `try_` calls that never spin and deadlines that end a spin.
//! A watchdog fails any test that hangs; no test sleeps or asserts a duration.

use ringwire::transport::{IoWait, TransportRecvError, TransportSendError};
use ringwire_testkit::peers::{self, PeerConn};
use ringwire_testkit::{check, message, Adapter, PeerArgs, PeerMode};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

fn soon() -> Instant {
    Instant::now() + WATCHDOG
}

/// Connects to an echo peer over `adapter`, both sides waiting as `wait` says.
fn make(adapter: Adapter, wait: &str) -> PeerConn {
    let io_wait = match wait {
        "spin" => IoWait::Spin,
        "adaptive" => IoWait::Adaptive { spin: Duration::from_micros(50) },
        other => panic!("no wait {other}"),
    };
    let args = PeerArgs { wait: wait.into(), ..PeerArgs::transport(PeerMode::Echo, adapter) };
    let mut c = peers::connect(ringwire_testkit::peer::bench_command(&args), adapter).expect("connect");
    c.tx.set_io_wait(io_wait);
    c.rx.set_io_wait(io_wait);
    c
}

fn round_trip(c: &mut PeerConn) {
    for msg in [&b"hello"[..], b"", &[0xff; 300]] {
        c.tx.send(msg).unwrap();
        assert_eq!(c.rx.recv_deadline(soon()).unwrap(), msg);
    }
}

fn ordering(c: &mut PeerConn) {
    const N: u64 = 10_000;
    const WINDOW: u64 = 32;
    let (mut sent, mut got) = (0, 0);
    while got < N {
        while sent < N && sent - got < WINDOW {
            c.tx.send(&message(sent, 1000)).unwrap();
            sent += 1;
        }
        let msg = c.rx.recv_deadline(soon()).unwrap();
        assert!(check(&msg, got, 1000), "message {got} is wrong or out of order");
        got += 1;
    }
}

fn max_size_and_oversize(c: &mut PeerConn) {
    let max = c.tx.max_message();
    let big: Vec<u8> = (0..max).map(|i| (i * 7 + i / 251) as u8).collect();
    c.tx.send(&big).unwrap();
    assert!(c.rx.recv_deadline(soon()).unwrap() == big, "max-size message changed");
    match c.tx.send(&vec![1; max + 1]) {
        Err(TransportSendError::Oversize { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected Oversize, got {other:?}"),
    }
    c.tx.send(b"still usable").unwrap();
    assert_eq!(c.rx.recv_deadline(soon()).unwrap(), b"still usable");
}

fn no_spin_on_try_and_deadlines_end_a_spin(c: &mut PeerConn) {
    assert!(matches!(c.rx.try_recv(), Err(TransportRecvError::Empty)));
    let e = c.rx.recv_deadline(Instant::now() + Duration::from_millis(20)).unwrap_err();
    assert!(matches!(e, TransportRecvError::Timeout), "{e:?}");
}

fn peer_closes(c: &mut PeerConn) {
    c.tx.send(b"last").unwrap();
    c.tx.close().unwrap();
    assert!(matches!(c.tx.send(b"x"), Err(TransportSendError::Closed)));
    assert_eq!(c.rx.recv_deadline(soon()).unwrap(), b"last");
    if c.datagram {
        return; // UDP: no clean close
    }
    assert!(matches!(c.rx.recv_deadline(soon()), Err(TransportRecvError::PeerGone)));
    assert!(matches!(c.rx.recv(), Err(TransportRecvError::PeerGone)));
    assert_eq!(c.peer.wait_success(soon()).unwrap(), Some(true), "echo peer failed or hangs");
}

/// The peer dies while we spin: a blocking `recv` (no deadline at all: only the watchdog would end a
/// hang) returns the typed error, and so does a sender that keeps sending.
fn peer_killed(c: &mut PeerConn) {
    c.tx.send(b"ping").unwrap();
    assert_eq!(c.rx.recv_deadline(soon()).unwrap(), b"ping");
    c.peer.kill();
    if c.datagram {
        // Only an ICMP "port unreachable" for something we send tells a UDP socket the peer is gone.
        c.tx.send(b"anyone?").unwrap();
    }
    match c.rx.recv() {
        Err(TransportRecvError::PeerGone | TransportRecvError::PeerReset) => {}
        other => panic!("expected the peer to be gone, got {other:?}"),
    }
    let chunk = vec![0u8; 1000];
    loop {
        match c.tx.send(&chunk) {
            Ok(()) => {}
            Err(TransportSendError::PeerReset | TransportSendError::PeerGone) => break,
            Err(e) => panic!("expected PeerReset, got {e:?}"),
        }
    }
}

macro_rules! suite {
    ($($name:ident => $adapter:expr),* $(,)?) => {$(
        mod $name {
            use super::*;
            fn each(f: fn(&mut PeerConn)) {
                for wait in ["spin", "adaptive"] {
                    ringwire_testkit::watchdog(WATCHDOG, move || f(&mut make($adapter, wait)));
                }
            }
            #[test]
            fn round_trip() { each(super::round_trip) }
            #[test]
            fn ordering_10k() { each(super::ordering) }
            #[test]
            fn max_size_and_oversize() { each(super::max_size_and_oversize) }
            #[test]
            fn no_spin_on_try_and_deadlines_end_a_spin() { each(super::no_spin_on_try_and_deadlines_end_a_spin) }
            #[test]
            fn peer_closes_cleanly() { each(super::peer_closes) }
            #[test]
            fn peer_killed_while_spinning_is_an_error_not_a_hang() { each(super::peer_killed) }
        }
    )*};
}

suite! {
    stdio => Adapter::Stdio,
    fork => Adapter::Fork,
    fifo => Adapter::Fifo,
    unix => Adapter::Unix,
    tcp => Adapter::Tcp,
    udp => Adapter::Udp,
}
