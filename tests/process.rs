//! The SPSC ring between real processes: the other side is the `ringwire` binary's test peer
//! (`ringwire-testpeer ring produce|consume|hold-producer|hold-consumer`), opening the ring by name or by an
//! inherited memfd. Includes SIGKILL of either side at random moments, many times over.
//!
//! Blocking calls here use long time-outs only as watchdogs: a time-out fails the test as a hang.

use rand::{Rng, SeedableRng};
use ringwire::ring::AttachError;
use ringwire::spsc::{RecvError, SendError};
use ringwire::{OpenError, RingConfig, ShmRing, WaitStrategy};
use ringwire_testkit::peer::ring::Mode;
use ringwire_testkit::{check, fill, len_for, seq_of};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const WATCHDOG: Duration = Duration::from_secs(60);
const MAX: usize = 1000;

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn cfg() -> RingConfig {
    RingConfig::new(64 << 10, MAX)
}

/// A `ringwire-testpeer ring` child; killed and reaped on drop so that no test leaves a process behind.
struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(mode: Mode, args: &[&str], prepare: impl FnOnce(&mut Command)) -> Peer {
        let mut cmd = ringwire_testkit::peer::command(mode);
        cmd.args(["--max", &MAX.to_string()]).args(args).stdout(Stdio::piped()).stdin(Stdio::null());
        prepare(&mut cmd);
        let mut child = cmd.spawn().expect("spawn ringwire-testpeer");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        Peer { child, out }
    }

    fn named(mode: Mode, name: &str, extra: &[&str]) -> Peer {
        let mut args = vec!["--name", name];
        args.extend_from_slice(extra);
        Peer::spawn(mode, &args, |_| {})
    }

    /// Reads the child's next stdout line (the child prints "attached" once it holds its role).
    fn line(&mut self) -> String {
        let mut s = String::new();
        self.out.read_line(&mut s).expect("read peer stdout");
        s.trim().to_string()
    }

    fn wait_attached(&mut self) {
        assert_eq!(self.line(), "attached", "peer failed to attach");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn finish(mut self) -> (bool, String) {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.out, &mut rest);
        let ok = self.child.wait().expect("wait peer").success();
        (ok, rest)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn send_stream(tx: &mut ringwire::shm::ShmProducer, from: u64, to: u64) -> Result<(), SendError> {
    for seq in from..to {
        let mut slot = tx.reserve_timeout(len_for(seq, MAX), WATCHDOG)?;
        fill(&mut slot, seq);
        slot.commit();
    }
    Ok(())
}

#[test]
fn two_million_messages_to_a_named_ring_in_another_process() {
    let name = unique("stream");
    let ring = ShmRing::create(&name, cfg()).unwrap();
    const N: u64 = 2_000_000;
    let mut peer = Peer::named(Mode::Consume, &name, &["--wait", "adaptive"]);
    peer.wait_attached();
    let mut tx = ring.producer().unwrap();
    send_stream(&mut tx, 0, N).unwrap();
    drop(tx);
    let (ok, out) = peer.finish();
    assert!(ok, "consumer failed: {out}");
    assert_eq!(out.trim(), format!(r#"{{"received": {N}, "first": 0, "end": "closed"}}"#));
}

#[test]
fn anonymous_ring_inherited_by_a_child_producer() {
    child_producer_streams_into_an_inherited_ring(false);
}

/// Buffered publication across processes: every message arrives, in order and intact, the last batch
/// published by the producer's exit.
#[test]
fn anonymous_ring_inherited_by_a_child_producer_that_buffers() {
    child_producer_streams_into_an_inherited_ring(true);
}

fn child_producer_streams_into_an_inherited_ring(buffered: bool) {
    let ring = ShmRing::anonymous(cfg()).unwrap();
    const N: u64 = 500_000;
    let n = N.to_string();
    let mut args = vec!["--fd-env", "RINGWIRE_FD", "--count", &n];
    if buffered {
        args.push("--buffered");
    }
    let mut peer = Peer::spawn(Mode::Produce, &args, |cmd| ring.share_with(cmd, "RINGWIRE_FD"));
    let mut rx = ring.consumer().unwrap();
    peer.wait_attached();
    for seq in 0..N {
        let msg = rx.recv_timeout(WATCHDOG).unwrap();
        assert!(check(&msg, seq, MAX), "message {seq}");
    }
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap_err(), RecvError::PeerGone);
    let (ok, _) = peer.finish();
    assert!(ok);
}

#[test]
fn producer_killed_at_random_moments_never_tears_or_hangs() {
    producer_killed_at_random_moments("kill-producer", false);
}

/// A producer killed with a batch withheld (`commit_buffered`) loses that batch and nothing else: the
/// consumer never sees any of it (no torn or stale record, the stream stays in order), learns of the
/// death, and the next producer writes over the withheld records from the last published one.
#[test]
fn producer_killed_while_buffering_loses_only_its_withheld_batch() {
    producer_killed_at_random_moments("kill-buffering-producer", true);
}

fn producer_killed_at_random_moments(tag: &str, buffered: bool) {
    let name = unique(tag);
    let ring = ShmRing::create(&name, cfg()).unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_liveness_interval(Duration::from_millis(10));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for round in 0..30 {
        let mut args = vec!["--wait", if round % 2 == 0 { "spin" } else { "adaptive" }];
        if buffered {
            args.push("--buffered");
        }
        let mut peer = Peer::named(Mode::Produce, &name, &args);
        peer.wait_attached();
        let kill_after = rng.gen_range(0..20_000u64);
        let mut seq = 0u64;
        let end = loop {
            if seq == kill_after {
                peer.kill();
            }
            match rx.recv_timeout(WATCHDOG) {
                Ok(msg) => {
                    assert!(check(&msg, seq, MAX), "round {round}: message {seq} torn or out of order");
                    seq += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(end, RecvError::PeerReset, "round {round}");
        assert!(seq >= kill_after, "round {round}: lost messages before the kill");
    }
    // The role is free again and the name goes away with the ring.
    drop(rx);
    let path = ring.path().unwrap().to_path_buf();
    drop(ring);
    assert!(!path.exists());
    ShmRing::create(&name, cfg()).expect("name reusable");
}

#[test]
fn consumer_killed_at_random_moments_then_replaced() {
    let name = unique("kill-consumer");
    let ring = ShmRing::create(&name, cfg()).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.set_liveness_interval(Duration::from_millis(10));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xc0ffee);
    let mut seq = 0u64;
    for round in 0..20 {
        let mut peer = Peer::named(Mode::Consume, &name, &["--resume"]);
        peer.wait_attached();
        let kill_after = seq + rng.gen_range(0..5_000u64);
        let err = loop {
            if seq == kill_after {
                peer.kill();
            }
            match send_stream(&mut tx, seq, seq + 1) {
                Ok(()) => seq += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, SendError::PeerReset, "round {round}");
    }
    // A fresh consumer picks up where the last published head was: every message it sees is intact and
    // in order (some may be ones the dead consumer had already read: at-least-once across a crash).
    let mut peer = Peer::named(Mode::Consume, &name, &["--count", "1000", "--resume"]);
    peer.wait_attached();
    send_stream(&mut tx, seq, seq + 1000 + 64 * 1024).ok();
    let (ok, out) = peer.finish();
    assert!(ok, "replacement consumer failed: {out}");
    assert!(out.contains(r#""received": 1000"#) && out.contains(r#""end": "count""#), "{out}");
}

#[test]
fn a_second_producer_or_consumer_is_refused_until_the_first_dies() {
    let name = unique("roles");
    let ring = ShmRing::create(&name, cfg()).unwrap();
    for (mode, role) in [(Mode::HoldProducer, ringwire::Role::Producer), (Mode::HoldConsumer, ringwire::Role::Consumer)]
    {
        let mut peer = Peer::named(mode, &name, &[]);
        peer.wait_attached();
        let err = match role {
            ringwire::Role::Producer => ring.producer().map(drop).unwrap_err(),
            ringwire::Role::Consumer => ring.consumer().map(drop).unwrap_err(),
        };
        assert!(matches!(err, OpenError::Attach(AttachError::RoleTaken(r)) if r == role), "{err}");
        peer.kill();
        match role {
            ringwire::Role::Producer => drop(ring.producer().expect("role free after the holder died")),
            ringwire::Role::Consumer => drop(ring.consumer().expect("role free after the holder died")),
        }
    }
}

#[test]
fn blocked_consumer_learns_the_producer_died() {
    let name = unique("block-recv");
    let ring = ShmRing::create(&name, cfg()).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut peer = Peer::named(Mode::HoldProducer, &name, &[]);
    peer.wait_attached();
    let killer = std::thread::spawn(move || peer.kill());
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap_err(), RecvError::PeerReset);
    killer.join().unwrap();
}

#[test]
fn blocked_producer_learns_the_consumer_died() {
    for wait in [WaitStrategy::Spin, WaitStrategy::default()] {
        let name = unique("block-send");
        let ring = ShmRing::create(&name, cfg()).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.set_wait_strategy(wait);
        let mut peer = Peer::named(Mode::HoldConsumer, &name, &[]);
        peer.wait_attached();
        while tx.try_send(&[7; 500]).is_ok() {}
        let killer = std::thread::spawn(move || peer.kill());
        assert_eq!(tx.send_timeout(&[7; 500], WATCHDOG), Err(SendError::PeerReset));
        killer.join().unwrap();
    }
}

#[test]
fn resumed_consumer_reads_only_whole_messages() {
    // A consumer process reads part of the stream and is killed; a second one continues from the published
    // head. Every message it gets must be whole and consecutive.
    let name = unique("resume");
    let ring = ShmRing::create(&name, cfg()).unwrap();
    let mut tx = ring.producer().unwrap();
    send_stream(&mut tx, 0, 40).unwrap();
    {
        let mut peer = Peer::named(Mode::Consume, &name, &["--count", "10"]);
        peer.wait_attached();
        let (ok, out) = peer.finish();
        assert!(ok && out.contains(r#""received": 10"#), "{out}");
    }
    let mut rx = ring.consumer().unwrap();
    let first = loop {
        let m = rx.recv_timeout(WATCHDOG).unwrap();
        if let Some(s) = seq_of(&m) {
            assert!(check(&m, s, MAX));
            break s;
        }
    };
    assert!((10..40).contains(&first), "resumed at {first}");
}
