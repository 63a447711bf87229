//! The MPMC and broadcast rings between real processes: the other sides are the `ringwire` binary's
//! slot-ring test peers (`ringwire-testpeer slots mpmc-*|bcast-*|open-as RING ...`, testkit/src/peer/slots.rs), on
//! one named ring. Stress with several producer / consumer / publisher / subscriber processes at once,
//! and SIGKILL of each kind of endpoint at the moments crash recovery exists for.
//!
//! Peers check every message they receive byte for byte and exit non-zero on anything wrong; those
//! that read write the tag of each message (`id << 40 | seq`) to a file that the test then checks.
//! Blocking calls use long time-outs only as watchdogs: a time-out fails the test as a hang.

use rand::{Rng, SeedableRng};
use ringwire::broadcast::{self, Mode};
use ringwire::mpmc::RecvError;
use ringwire::{OpenError, RingConfig, ShmBroadcast, ShmQueue, ShmRing, WaitStrategy};
use ringwire_testkit::peer::slots::Mode as PeerMode;
use ringwire_testkit::{fill, len_for};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);
/// Largest message of the test stream: with the 16-byte slot header, 256-byte slots.
const MAX: usize = 240;
/// Slots in a ring of `cfg(SMALL)`.
const SMALL: usize = 8 << 10;
/// Slots in a ring of `cfg(BIG)`.
const BIG: usize = 64 << 10;
/// The peers' message header: stream id (u32 LE), sequence number (u64 LE).
const HEAD: usize = 12;

fn cfg(capacity: usize) -> RingConfig {
    RingConfig::new(capacity, MAX)
}

fn slots(capacity: usize) -> u64 {
    (capacity / 256) as u64
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

// ---- the peers' test stream (src/cli/slotpeer.rs builds the same messages) ----

fn tag(id: u32, seq: u64) -> u64 {
    (id as u64) << 40 | seq
}

fn msg(id: u32, seq: u64) -> Vec<u8> {
    let mut m = vec![0; HEAD + len_for(tag(id, seq), MAX - HEAD)];
    m[..4].copy_from_slice(&id.to_le_bytes());
    m[4..HEAD].copy_from_slice(&seq.to_le_bytes());
    fill(&mut m[HEAD..], tag(id, seq));
    m
}

/// The (id, seq) of `m`, after checking every byte of it.
fn parse(m: &[u8]) -> (u32, u64) {
    assert!(m.len() >= HEAD, "a {}-byte message is shorter than its header", m.len());
    let id = u32::from_le_bytes(m[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(m[4..HEAD].try_into().unwrap());
    assert!(m == msg(id, seq), "message {seq} of stream {id} torn or corrupt ({} bytes)", m.len());
    (id, seq)
}

/// The tags a peer wrote to its `--out` file.
fn read_tags(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len() % 8, 0);
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
}

/// A scratch directory for the peers' output files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.file(name).to_str().expect("UTF-8 temp dir").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `ringwire-testpeer slots` child, its stdout read line by line on a thread (so that every read has a
/// deadline); killed and reaped on drop, so that no test leaves a process behind.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Peer {
    fn spawn(mode: PeerMode, ring: &str, args: &[&str]) -> Peer {
        let mut child = ringwire_testkit::peer::command(mode)
            .args([ring, "--max", &MAX.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ringwire-testpeer");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { return };
                if tx.send(line.trim().to_string()).is_err() {
                    return;
                }
            }
        });
        Peer { stdin: child.stdin.take(), child, lines, what: format!("{mode:?} {}", args.join(" ")) }
    }

    /// The child's next line of output; fails the test if it has none within the watchdog.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(WATCHDOG) {
            Ok(line) => line,
            Err(e) => panic!("peer `{}` said nothing ({e})", self.what),
        }
    }

    fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(got, want, "peer `{}`", self.what);
    }

    /// Spawns and waits until the peer says its endpoint is attached.
    fn attached(mode: PeerMode, ring: &str, args: &[&str]) -> Peer {
        let mut p = Peer::spawn(mode, ring, args);
        p.expect("attached");
        p
    }

    /// Writes a line to the child's stdin (`--gate`).
    fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "go").and_then(|()| stdin.flush()).expect("write to peer");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills a peer of a mode that runs until killed: one that has exited already (it found something
    /// wrong) fails the test.
    fn kill_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait peer") {
            panic!("peer `{}` exited before it was killed: {status}", self.what);
        }
        self.kill();
    }

    /// Waits (watchdog) for the child to close its output and exit; asserts it succeeded; returns its last
    /// line (the peers' JSON summary).
    fn finish(mut self) -> String {
        let mut last = String::new();
        let deadline = Instant::now() + WATCHDOG;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => last = line,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("peer `{}` did not finish", self.what),
            }
        }
        let status = self.child.wait().expect("wait peer");
        assert!(status.success(), "peer `{}` failed: {status} (last output: {last:?})", self.what);
        last
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A number from a peer's one-line JSON summary.
fn field(summary: &str, name: &str) -> u64 {
    let key = format!("\"{name}\": ");
    let at = summary.find(&key).unwrap_or_else(|| panic!("no {name} in {summary:?}")) + key.len();
    let digits: String = summary[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("bad {name} in {summary:?}"))
}

/// The tags in the `--out` file of a consumer that may have been killed while writing it: a record cut
/// short by the kill (8 bytes at an 8-byte offset never straddle a page, so in practice none is) names
/// no message.
fn read_tags_of_killed(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
}

/// What `mpmc-consume` records for a message that fails its byte check (src/cli/slotpeer.rs `CORRUPT`).
const CORRUPT: u64 = u64::MAX;

/// Checks one consumer's record: no torn or corrupt message, no stray one (stream `id` has `per[id]`
/// messages), and each stream's messages in increasing order (one consumer claims positions in order).
fn assert_record_in_order(who: &str, tags: &[u64], per: &[u64]) {
    let mut last: Vec<Option<u64>> = vec![None; per.len()];
    for &t in tags {
        assert_ne!(t, CORRUPT, "{who} received a torn or corrupt message");
        let (id, seq) = ((t >> 40) as usize, t & ((1 << 40) - 1));
        assert!(id < per.len() && seq < per[id], "{who}: stray message {seq} of stream {id}");
        if let Some(prev) = last[id] {
            assert!(seq > prev, "{who}: stream {id}: message {seq} after {prev}");
        }
        last[id] = Some(seq);
    }
}

/// Checks that `tags` hold exactly messages `0..per` of each stream `0..streams`, each once.
fn assert_exactly_once<'a>(tags: impl IntoIterator<Item = &'a u64>, streams: u32, per: u64) {
    let mut seen = vec![vec![false; per as usize]; streams as usize];
    let mut n = 0u64;
    for &t in tags {
        let (id, seq) = ((t >> 40) as usize, t & ((1 << 40) - 1));
        assert!(id < streams as usize && seq < per, "stray message {seq} of stream {id}");
        assert!(!seen[id][seq as usize], "message {seq} of stream {id} delivered twice");
        seen[id][seq as usize] = true;
        n += 1;
    }
    assert_eq!(n, streams as u64 * per, "messages lost");
}

// ---- stress ----

#[test]
fn mpmc_three_producer_and_three_consumer_processes_deliver_every_message_exactly_once() {
    // 3 x 334,000 = 1,002,000 messages of 12 to 240 bytes.
    const PRODUCERS: u32 = 3;
    const PER: u64 = 334_000;
    let name = unique("mpmc-stress");
    let dir = TempDir::new("mpmc-stress");
    let q = ShmQueue::create(&name, cfg(BIG)).unwrap();
    // Holding a producer keeps the consumers from seeing Closed before every producer has attached.
    let hold = q.producer().unwrap();
    let consumers: Vec<Peer> =
        (0..3).map(|c| Peer::attached(PeerMode::MpmcConsume, &name, &["--out", &dir.arg(&format!("c{c}"))])).collect();
    let producers: Vec<Peer> = (0..PRODUCERS)
        .map(|p| Peer::attached(PeerMode::MpmcProduce, &name, &["--id", &p.to_string(), "--count", &PER.to_string()]))
        .collect();
    for p in producers {
        p.finish();
    }
    drop(hold);
    let mut received = 0;
    for c in consumers {
        let summary = c.finish();
        assert!(summary.contains(r#""end": "closed""#), "{summary}");
        received += field(&summary, "received");
    }
    assert_eq!(received, PRODUCERS as u64 * PER);
    let tags: Vec<u64> = (0..3).flat_map(|c| read_tags(&dir.file(&format!("c{c}")))).collect();
    assert_exactly_once(&tags, PRODUCERS, PER);
    assert_eq!(q.consumer().unwrap().recovered(), Default::default(), "nothing to recover in a clean run");
}

#[test]
fn broadcast_backpressure_two_publisher_and_three_subscriber_processes_see_everything_in_one_order() {
    // 2 x 100,000 messages, each read by 3 subscribers.
    const PUBLISHERS: u32 = 2;
    const PER: u64 = 100_000;
    let name = unique("bcast-stress");
    let dir = TempDir::new("bcast-stress");
    let ring = ShmBroadcast::create(&name, cfg(SMALL), Mode::Backpressure).unwrap();
    let hold = ring.publisher().unwrap();
    // Subscribers first: each sees what is published after it attached. Each checks that every
    // publisher's messages come in order and consecutively (no Lagged in back-pressure mode).
    let subscribers: Vec<Peer> = (0..3)
        .map(|s| Peer::attached(PeerMode::BcastSubscribe, &name, &["--out", &dir.arg(&format!("s{s}"))]))
        .collect();
    let publishers: Vec<Peer> = (0..PUBLISHERS)
        .map(|p| Peer::attached(PeerMode::BcastPublish, &name, &["--id", &p.to_string(), "--count", &PER.to_string()]))
        .collect();
    for p in publishers {
        p.finish();
    }
    drop(hold);
    for s in subscribers {
        let summary = s.finish();
        assert_eq!(field(&summary, "received"), PUBLISHERS as u64 * PER, "{summary}");
        assert_eq!(field(&summary, "lagged"), 0, "{summary}");
    }
    let seen: Vec<Vec<u64>> = (0..3).map(|s| read_tags(&dir.file(&format!("s{s}")))).collect();
    assert_exactly_once(&seen[0], PUBLISHERS, PER);
    for s in &seen[1..] {
        assert!(s == &seen[0], "subscribers saw different orders");
    }
}

#[test]
fn broadcast_overwrite_slow_subscriber_is_told_it_lagged_and_never_sees_a_torn_message() {
    const PER: u64 = 30_000;
    let name = unique("bcast-lag");
    let dir = TempDir::new("bcast-lag");
    let ring = ShmBroadcast::create(&name, cfg(SMALL), Mode::Overwrite).unwrap();
    let n = slots(SMALL);
    // The slow one starts reading only when told, then sleeps 1 ms every 16 messages; the other reads as
    // fast as it can (it may lag too). Both check every byte and each publisher's order, and that a gap
    // in a publisher's stream always comes with a Lagged.
    let mut slow = Peer::attached(PeerMode::BcastSubscribe, &name, &["--gate", "--pause-every", "16"]);
    let fast = Peer::attached(PeerMode::BcastSubscribe, &name, &["--out", &dir.arg("fast")]);
    // Two laps before the slow subscriber reads anything: it must lag by at least one lap.
    let mut tx = ring.publisher().unwrap();
    for seq in 0..2 * n {
        tx.send(&msg(9, seq)).unwrap();
    }
    slow.go();
    let publishers: Vec<Peer> = (0..2)
        .map(|p| Peer::attached(PeerMode::BcastPublish, &name, &["--id", &p.to_string(), "--count", &PER.to_string()]))
        .collect();
    for p in publishers {
        p.finish();
    }
    drop(tx);
    let total = 2 * n + 2 * PER;
    for (who, peer) in [("slow", slow), ("fast", fast)] {
        let summary = peer.finish();
        let (received, lagged, lost) =
            (field(&summary, "received"), field(&summary, "lagged"), field(&summary, "lost"));
        eprintln!("{who}: {summary}");
        // Attached before the first message and read to the end: every position read or reported lost.
        assert_eq!(received + lost, total, "{who}: {summary}");
        if who == "slow" {
            assert!(lagged >= 1 && lost >= n, "{who}: {summary}");
        }
    }
    // Whatever the fast one got is a subset of what was published, each message once.
    let fast: Vec<u64> = read_tags(&dir.file("fast"));
    let mut once = std::collections::HashSet::new();
    assert!(fast.iter().all(|t| once.insert(*t)), "a message delivered twice");
}

// ---- SIGKILL ----

#[test]
fn mpmc_producers_killed_at_random_moments_lose_at_most_their_message_in_flight() {
    mpmc_producers_killed_at_random_moments("mpmc-kill-producer", false, 0);
}

/// As above with victims that reserve up to 8 slots per claim (`reserve_many`) and commit them
/// together: a victim killed holding a reservation loses it (each slot skipped like a claimed one), and
/// one killed while its commit publishes the run (last slot first) loses the run's first messages
/// only, the rest delivered in order.
#[test]
fn mpmc_producers_killed_holding_reservations_lose_at_most_the_reservation() {
    mpmc_producers_killed_at_random_moments("mpmc-kill-many", false, 8);
}

/// As above with victims that commit with `commit_buffered` (2 KiB batches): a victim killed with a
/// batch withheld loses the batch's first message (its slot is skipped like a claimed one) and at most
/// the one it was writing; the rest of the batch, published behind the withheld slot, is delivered in
/// order.
#[test]
fn mpmc_producers_killed_while_buffering_lose_at_most_their_withheld_and_in_flight_messages() {
    mpmc_producers_killed_at_random_moments("mpmc-kill-buffering", true, 0);
}

fn mpmc_producers_killed_at_random_moments(tag: &str, buffered: bool, many: usize) {
    let many_arg = many.to_string();
    let gaps_allowed = buffered || many > 0;
    const LIVE: u32 = 1000;
    const ROUNDS: u32 = 20;
    let name = unique(tag);
    let q = ShmQueue::create(&name, cfg(SMALL)).unwrap();
    let n = slots(SMALL);
    let mut rx = q.consumer().unwrap();
    rx.set_stuck_timeout(Duration::from_millis(2));
    rx.set_liveness_interval(Duration::from_millis(5));
    // A producer that lives through every round: its stream must arrive whole and in order.
    let mut live = Peer::attached(PeerMode::MpmcProduce, &name, &["--id", &LIVE.to_string()]);
    let mut live_next = 0u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5107_5eed);
    let mut skips = 0;
    for round in 0..ROUNDS {
        // Half the victims pause in the middle of every message, so that a kill often finds one holding
        // a claimed slot; the others are killed wherever they happen to be.
        let wait = ["spin", "adaptive", "yield"][round as usize % 3];
        let dawdle = if round % 2 == 1 { "50" } else { "0" };
        let id = round.to_string();
        let mut args = vec!["--id", &id, "--wait", wait, "--dawdle-us", dawdle];
        if buffered {
            args.push("--buffered");
        }
        args.extend(["--many", &many_arg]);
        let mut victim = Peer::attached(PeerMode::MpmcProduce, &name, &args);
        let kill_at = rng.gen_range(0..if round % 2 == 1 { 300 } else { 1_500u64 });
        // The kill comes from another thread while this one keeps consuming, so that the victim is as
        // likely to be caught mid-message as blocked on a full ring.
        let (go, fire) = mpsc::channel::<()>();
        let killed = Arc::new(AtomicBool::new(false));
        let killer = {
            let killed = killed.clone();
            std::thread::spawn(move || {
                if fire.recv().is_ok() {
                    victim.kill();
                    killed.store(true, Ordering::Release);
                }
            })
        };
        if kill_at == 0 {
            go.send(()).unwrap();
        }
        let skipped_before = rx.recovered().skipped;
        // The victim's next sequence number, how many of its messages arrived, and how many are missing
        // between those that did (only a buffering victim may leave a gap: its withheld first message).
        let (mut victim_next, mut victim_got, mut victim_gaps, mut live_since_kill) = (0u64, 0u64, 0u64, 0u64);
        // Once the victim is dead and reaped, n + 1 messages of the live producer mean the consumer has
        // passed every position claimed before the kill (at most n are claimed and not yet taken).
        while live_since_kill <= n {
            let seen_dead = killed.load(Ordering::Acquire);
            let m = rx.recv_timeout(WATCHDOG).unwrap_or_else(|e| panic!("round {round}: {e}"));
            let (id, seq) = parse(&m);
            drop(m);
            if id == LIVE {
                assert_eq!(seq, live_next, "round {round}: the live producer's stream has a gap");
                live_next += 1;
                live_since_kill += seen_dead as u64;
            } else {
                assert_eq!(id, round, "round {round}: a message from an earlier round");
                if gaps_allowed {
                    assert!(seq >= victim_next, "round {round}: the victim's stream is out of order");
                    victim_gaps += seq - victim_next;
                } else {
                    assert_eq!(seq, victim_next, "round {round}: the victim's stream has a gap or is out of order");
                }
                victim_next = seq + 1;
                victim_got += 1;
                if victim_got == kill_at {
                    go.send(()).unwrap();
                }
            }
        }
        killer.join().unwrap();
        assert!(victim_got >= kill_at, "round {round}");
        // The one message in flight, if the victim died holding a claimed slot; and a buffering
        // victim's withheld first message; or the reservation a batching victim held.
        let skipped = rx.recovered().skipped - skipped_before;
        let bound = (1 + buffered as u64).max(many as u64);
        assert!(skipped <= bound, "round {round}: {skipped} slots skipped for one kill");
        assert!(victim_gaps <= skipped, "round {round}: {victim_gaps} messages missing, {skipped} skipped");
        skips += skipped;
    }
    eprintln!("{ROUNDS} producers killed, {skips} of their slots skipped (claimed, never committed); {live_next} messages from the live one");
    assert_eq!(rx.recovered().reclaimed, 0);
    live.kill();
    // Whatever the live producer committed before its own kill is still delivered, then Closed.
    loop {
        match rx.recv_timeout(WATCHDOG) {
            Ok(m) => {
                assert_eq!(parse(&m), (LIVE, live_next));
                live_next += 1;
            }
            Err(e) => {
                assert_eq!(e, RecvError::PeerGone);
                break;
            }
        }
    }
}

#[test]
fn mpmc_consumers_killed_at_random_moments_lose_at_most_the_message_they_held() {
    mpmc_consumers_killed_at_random_moments("mpmc-kill-consumer", 0);
}

/// The same with every victim taking batches of up to 8 messages (`recv_many`), each recorded while the
/// batch is held: a kill loses at most the batch it finds held.
#[test]
fn mpmc_consumers_killed_holding_batches_lose_at_most_the_batch_they_held() {
    mpmc_consumers_killed_at_random_moments("mpmc-kill-batch", 8);
}

fn mpmc_consumers_killed_at_random_moments(tag: &str, many: usize) {
    // Stream 0 comes from this process, stream 1 from a producer process. A consumer process lives
    // through the whole run; VICTIMS more, up to three at a time, are each killed after a random number
    // of this process's sends, and replaced at once or not. Each records a message (one `write` per
    // message, --flush-each) before dropping its read guard, and half of them hold every guard a while
    // (--dawdle-us), so that a kill often finds one holding a message, before or after recording it.
    // So a message missing from every record was held by a victim when it died, and the producer that
    // next needed its slot reclaimed it: lost <= reclaimed <= kills (times the batch size, `many`).
    const VICTIMS: u32 = 30;
    const HELPER: u64 = 20_000;
    let name = unique(tag);
    let dir = TempDir::new(tag);
    let many_arg = many.to_string();
    let q = ShmQueue::create(&name, cfg(SMALL)).unwrap();
    let n = slots(SMALL);
    let fast = ["--stuck-ms", "2", "--liveness-ms", "5"];
    let mut tx = q.producer().unwrap();
    tx.set_stuck_timeout(Duration::from_millis(2));
    tx.set_liveness_interval(Duration::from_millis(5));
    let live = Peer::attached(PeerMode::MpmcConsume, &name, &[&fast[..], &["--out", &dir.arg("live")]].concat());
    let helper = Peer::attached(
        PeerMode::MpmcProduce,
        &name,
        &[&fast[..], &["--id", "1", "--count", &HELPER.to_string(), "--wait", "yield"]].concat(),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xc0_5eed);
    // A victim, killed once this process has sent `at` messages and it has recorded `records` (a
    // dawdler, that would otherwise often die before it got anything); it is killed regardless if it
    // still has not, `GIVE_UP` messages later.
    struct Victim {
        peer: Peer,
        out: PathBuf,
        at: u64,
        records: u64,
    }
    const GIVE_UP: u64 = 20_000;
    let spawn = |rng: &mut rand::rngs::StdRng, i: u32, sent: u64| -> Victim {
        let wait = ["spin", "yield", "adaptive"][rng.gen_range(0..3)];
        let dawdle = ["0", "0", "100", "2000"][rng.gen_range(0..4)];
        let out = dir.file(&format!("v{i}"));
        let args = ["--out", out.to_str().unwrap(), "--flush-each", "--wait", wait, "--dawdle-us", dawdle];
        let peer = Peer::attached(PeerMode::MpmcConsume, &name, &[&fast[..], &args, &["--many", &many_arg]].concat());
        let (at, records) = if dawdle == "0" {
            (sent + rng.gen_range(0..400), 0)
        } else {
            (sent + rng.gen_range(0..50), rng.gen_range(1..=3))
        };
        Victim { peer, out, at, records }
    };
    let due = |v: &Victim, sent: u64| {
        sent >= v.at
            && (v.records == 0
                || sent >= v.at + GIVE_UP
                || std::fs::metadata(&v.out).map(|m| m.len() / 8).unwrap_or(0) >= v.records)
    };
    let mut victims: Vec<Victim> = Vec::new();
    let (mut sent, mut spawned, mut kills) = (0u64, 0u32, 0u32);
    loop {
        if victims.is_empty() {
            if spawned == VICTIMS {
                break;
            }
            victims.push(spawn(&mut rng, spawned, sent));
            spawned += 1;
            tx.set_wait_strategy(
                [WaitStrategy::Spin, WaitStrategy::SpinYield, WaitStrategy::default()][rng.gen_range(0..3)],
            );
        }
        let mut i = 0;
        while i < victims.len() {
            if !due(&victims[i], sent) {
                i += 1;
                continue;
            }
            victims.swap_remove(i).peer.kill_running();
            kills += 1;
            // Replaced at once (by one or two), or not.
            for _ in 0..rng.gen_range(0..=2) {
                if spawned < VICTIMS && victims.len() < 3 {
                    victims.push(spawn(&mut rng, spawned, sent));
                    spawned += 1;
                }
            }
        }
        tx.send_timeout(&msg(0, sent), WATCHDOG).unwrap_or_else(|e| panic!("message {sent}: {e}"));
        sent += 1;
    }
    // n + 1 more: this producer then claims a position a lap past every one claimed before the last
    // kill, so every slot a dead victim held has been reclaimed (counted) by now.
    for _ in 0..=n {
        tx.send_timeout(&msg(0, sent), WATCHDOG).unwrap_or_else(|e| panic!("message {sent}: {e}"));
        sent += 1;
    }
    helper.finish();
    let recovered = tx.recovered();
    drop(tx);
    let summary = live.finish();
    assert!(summary.contains(r#""end": "closed""#), "{summary}");
    let per = [sent, HELPER];
    let live_tags = read_tags(&dir.file("live"));
    assert_eq!(field(&summary, "received"), live_tags.len() as u64, "{summary}");
    assert_record_in_order("the live consumer", &live_tags, &per);
    let mut delivered = std::collections::HashSet::new();
    let mut by_victims = 0;
    for t in live_tags {
        assert!(delivered.insert(t), "message {t:#x} delivered twice");
    }
    for i in 0..VICTIMS {
        let tags = read_tags_of_killed(&dir.file(&format!("v{i}")));
        assert_record_in_order(&format!("victim {i}"), &tags, &per);
        by_victims += tags.len();
        for t in tags {
            assert!(delivered.insert(t), "message {t:#x} delivered twice (victim {i})");
        }
    }
    let lost = sent + HELPER - delivered.len() as u64;
    eprintln!(
        "{kills} consumers killed; {sent} + {HELPER} messages, {by_victims} recorded by victims, {lost} lost, {recovered:?}"
    );
    assert_eq!(recovered.skipped, 0, "no producer died");
    assert!(
        lost <= recovered.reclaimed && recovered.reclaimed <= kills as u64 * many.max(1) as u64,
        "{lost} messages lost, {} reclaimed, {kills} consumers killed (batches of up to {many})",
        recovered.reclaimed
    );
}

#[test]
fn mpmc_producer_killed_mid_message_is_skipped_after_the_stuck_timeout() {
    let name = unique("mpmc-mid-message");
    let q = ShmQueue::create(&name, cfg(SMALL)).unwrap();
    let mut rx = q.consumer().unwrap();
    rx.set_stuck_timeout(Duration::from_millis(5));
    rx.set_liveness_interval(Duration::from_millis(5));
    let mut victim = Peer::attached(PeerMode::MpmcReserveHold, &name, &["--id", "7", "--count", "10"]);
    victim.expect("ready");
    for seq in 0..10 {
        assert_eq!(parse(&rx.recv_timeout(WATCHDOG).unwrap()), (7, seq));
    }
    // Message 10 is claimed and half written. While its owner lives it is waited for, never skipped.
    assert_eq!(rx.recv_timeout(Duration::from_millis(50)).map(|m| m.len()), Err(RecvError::Timeout));
    assert_eq!(rx.recovered().skipped, 0);
    victim.kill();
    let mut tx = q.producer().unwrap();
    tx.send(&msg(8, 0)).unwrap();
    assert_eq!(parse(&rx.recv_timeout(WATCHDOG).unwrap()), (8, 0));
    assert_eq!(rx.recovered().skipped, 1);
    drop(tx);
    assert_eq!(rx.recv_timeout(WATCHDOG).map(|m| m.len()), Err(RecvError::PeerGone));
    assert_eq!(rx.recovered(), ringwire::ring::slots::Recovered { skipped: 1, reclaimed: 0 });
}

#[test]
fn mpmc_consumer_killed_holding_a_message_is_reclaimed_when_the_ring_wraps() {
    let name = unique("mpmc-mid-read");
    let dir = TempDir::new("mpmc-mid-read");
    let q = ShmQueue::create(&name, cfg(SMALL)).unwrap();
    let n = slots(SMALL);
    let mut tx = q.producer().unwrap();
    tx.set_stuck_timeout(Duration::from_millis(5));
    tx.set_liveness_interval(Duration::from_millis(5));
    let mut holder = Peer::attached(PeerMode::MpmcHoldRead, &name, &[]);
    tx.send(&msg(1, 0)).unwrap();
    holder.expect("holding 1 0");
    holder.kill();
    // Another consumer, attached before we send more (with no consumer at all a blocked send would
    // give up: Disconnected). It gets every other message, in order.
    let consumer = Peer::attached(PeerMode::MpmcConsume, &name, &["--out", &dir.arg("c")]);
    let total = 4 * n;
    for seq in 1..=total {
        tx.send_timeout(&msg(1, seq), WATCHDOG).unwrap_or_else(|e| panic!("message {seq}: {e}"));
    }
    // The dead consumer's slot came round at message n: the producer took it back.
    assert_eq!(tx.recovered(), ringwire::ring::slots::Recovered { skipped: 0, reclaimed: 1 });
    drop(tx);
    let summary = consumer.finish();
    assert_eq!(field(&summary, "received"), total, "{summary}");
    assert_eq!(read_tags(&dir.file("c")), (1..=total).map(|s| tag(1, s)).collect::<Vec<_>>());
}

#[test]
fn mpmc_consumer_killed_holding_a_batch_has_every_slot_of_it_reclaimed_when_the_ring_wraps() {
    const BATCH: u64 = 8;
    let name = unique("mpmc-mid-batch");
    let dir = TempDir::new("mpmc-mid-batch");
    let q = ShmQueue::create(&name, cfg(SMALL)).unwrap();
    let n = slots(SMALL);
    let mut tx = q.producer().unwrap();
    tx.set_stuck_timeout(Duration::from_millis(5));
    tx.set_liveness_interval(Duration::from_millis(5));
    // Published before the holder attaches, so that its one claim takes all of them.
    for seq in 0..BATCH {
        tx.send(&msg(1, seq)).unwrap();
    }
    let mut holder = Peer::attached(PeerMode::MpmcHoldRead, &name, &["--many", &BATCH.to_string()]);
    holder.expect(&format!("holding 1 0 x{BATCH}"));
    holder.kill();
    let consumer = Peer::attached(PeerMode::MpmcConsume, &name, &["--out", &dir.arg("c")]);
    let total = 4 * n;
    for seq in BATCH..BATCH + total {
        tx.send_timeout(&msg(1, seq), WATCHDOG).unwrap_or_else(|e| panic!("message {seq}: {e}"));
    }
    // Each of the batch's slots came round once the ring wrapped: the producer took every one back.
    assert_eq!(tx.recovered(), ringwire::ring::slots::Recovered { skipped: 0, reclaimed: BATCH });
    drop(tx);
    let summary = consumer.finish();
    assert_eq!(field(&summary, "received"), total, "{summary}");
    assert_eq!(read_tags(&dir.file("c")), (BATCH..BATCH + total).map(|s| tag(1, s)).collect::<Vec<_>>());
}

#[test]
fn broadcast_publisher_killed_mid_write_is_skipped_by_every_subscriber() {
    let name = unique("bcast-mid-write");
    let dir = TempDir::new("bcast-mid-write");
    let ring = ShmBroadcast::create(&name, cfg(SMALL), Mode::Backpressure).unwrap();
    let n = slots(SMALL);
    let fast = ["--stuck-ms", "5", "--liveness-ms", "5"];
    let subscribers: Vec<Peer> = (0..3)
        .map(|s| {
            let out = dir.arg(&format!("s{s}"));
            Peer::attached(PeerMode::BcastSubscribe, &name, &[&fast[..], &["--out", &out]].concat())
        })
        .collect();
    let mut tx = ring.publisher().unwrap();
    tx.set_stuck_timeout(Duration::from_millis(5));
    for seq in 0..10 {
        tx.send(&msg(1, seq)).unwrap();
    }
    // Position 10: claimed and half taken by a publisher that then dies.
    let mut victim = Peer::attached(PeerMode::BcastAbandon, &name, &["--id", "2"]);
    victim.expect("abandoned");
    victim.kill();
    // Three more laps: the subscribers must get past position 10 for back-pressure to let us wrap, and
    // on the next lap we take the dead publisher's slot over.
    let total = 10 + 3 * n;
    for seq in 10..total {
        tx.send_deadline(&msg(1, seq), Instant::now() + WATCHDOG).unwrap_or_else(|e| panic!("message {seq}: {e}"));
    }
    // Every subscriber skipped the position once.
    assert_eq!(tx.recovered().skipped, 3);
    drop(tx);
    for (s, peer) in subscribers.into_iter().enumerate() {
        let summary = peer.finish();
        assert_eq!(field(&summary, "received"), total, "{summary}");
        assert_eq!(field(&summary, "lagged"), 0, "{summary}");
        assert_eq!(read_tags(&dir.file(&format!("s{s}"))), (0..total).map(|q| tag(1, q)).collect::<Vec<_>>());
    }
}

#[test]
fn broadcast_publishers_killed_at_random_moments_never_tear_a_message() {
    broadcast_publishers_killed_at_random_moments("bcast-kill-publisher", false);
}

/// As above with victims that publish with `send_buffered` (2 KiB batches): a victim killed with a batch
/// withheld loses the batch's first message (every subscriber skips its slot) and at most the one it
/// was writing; the rest of the batch, published behind the withheld slot, reaches every subscriber in
/// order, so a victim's stream has at most one hole of one message.
#[test]
fn broadcast_publishers_killed_while_buffering_lose_at_most_their_withheld_and_in_flight_messages() {
    broadcast_publishers_killed_at_random_moments("bcast-kill-buffering", true);
}

fn broadcast_publishers_killed_at_random_moments(tag: &str, buffered: bool) {
    // Back-pressure: a subscriber loses nothing but the positions it skips, so its record says exactly
    // what each publisher committed. This process publishes stream LIVE through the whole run; VICTIMS
    // publisher processes, one at a time, are killed: two in three while publishing as fast as they
    // can, after a random number of this process's sends; one in three after publishing a random number
    // of messages and then claiming a slot and stopping half-way through writing it (`bcast-abandon`;
    // unless back-pressure refuses the claim just then, and it holds nothing).
    const VICTIMS: u32 = 20;
    const LIVE: u32 = 1000;
    let name = unique(tag);
    let dir = TempDir::new(tag);
    let ring = ShmBroadcast::create(&name, cfg(SMALL), Mode::Backpressure).unwrap();
    let n = slots(SMALL);
    let fast = ["--stuck-ms", "2", "--liveness-ms", "5"];
    let mut tx = ring.publisher().unwrap();
    tx.set_stuck_timeout(Duration::from_millis(2));
    tx.set_liveness_interval(Duration::from_millis(5));
    let subscribers: Vec<Peer> = (0..2)
        .map(|s| {
            let out = dir.arg(&format!("s{s}"));
            let gaps: &[&str] = if buffered { &["--allow-gaps"] } else { &[] };
            Peer::attached(PeerMode::BcastSubscribe, &name, &[&fast[..], &["--out", &out], gaps].concat())
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xb_5eed);
    let mut live_sent = 0u64;
    let mut send_live = |tx: &mut ringwire::shm::ShmPublisher, count: u64| {
        for _ in 0..count {
            tx.send_deadline(&msg(LIVE, live_sent), Instant::now() + WATCHDOG)
                .unwrap_or_else(|e| panic!("message {live_sent}: {e}"));
            live_sent += 1;
        }
    };
    // Victims that stopped mid-write, and how many messages each published first.
    let mut abandoned = Vec::new();
    for v in 0..VICTIMS {
        let id = v.to_string();
        if rng.gen_range(0..3) == 0 {
            let count = rng.gen_range(0..2 * n);
            let args = ["--id", &id, "--count", &count.to_string()];
            let mut victim = Peer::attached(PeerMode::BcastAbandon, &name, &[&fast[..], &args].concat());
            victim.expect("abandoned");
            victim.kill_running();
            abandoned.push((v, count));
        } else {
            let wait = ["spin", "yield", "adaptive"][rng.gen_range(0..3)];
            let mut args = vec!["--id", &id, "--wait", wait];
            if buffered {
                // Half of them pause half-way through every message: a kill then often finds a batch
                // withheld and a slot claimed.
                args.extend(["--buffered", "--dawdle-us", ["0", "50"][v as usize % 2]]);
            }
            let mut victim = Peer::attached(PeerMode::BcastPublish, &name, &[&fast[..], &args].concat());
            send_live(&mut tx, rng.gen_range(0..600));
            victim.kill_running();
        }
        send_live(&mut tx, rng.gen_range(0..50));
    }
    // Two more laps: this publisher takes over every slot a victim died writing.
    send_live(&mut tx, 2 * n);
    drop(tx);
    let mut ends = Vec::new();
    for (s, peer) in subscribers.into_iter().enumerate() {
        let summary = peer.finish();
        assert_eq!((field(&summary, "lagged"), field(&summary, "lost")), (0, 0), "subscriber {s}: {summary}");
        if !buffered {
            assert_eq!(field(&summary, "gaps"), 0, "subscriber {s}: {summary}");
        }
        ends.push((field(&summary, "received"), field(&summary, "position")));
    }
    let recovered = ring.subscriber().unwrap().recovered();
    let seen: Vec<Vec<u64>> = (0..2).map(|s| read_tags(&dir.file(&format!("s{s}")))).collect();
    assert!(seen[0] == seen[1], "the subscribers saw different sequences");
    assert_eq!(ends[0], ends[1], "the subscribers ended at different positions");
    let (received, position) = ends[0];
    assert_eq!(received, seen[0].len() as u64);
    // In position order: the live stream whole; each victim's stream from 0 with no gap (it can only
    // stop short, where it died; a buffering victim may also lose the withheld first message of the
    // batch it died in: one hole of one message), after every earlier victim's (each started after the
    // last one died).
    let (mut live_next, mut victim_next, mut latest) = (0u64, vec![0u64; VICTIMS as usize], 0u32);
    let mut holes = vec![0u64; VICTIMS as usize];
    for &t in &seen[0] {
        let (id, seq) = ((t >> 40) as u32, t & ((1 << 40) - 1));
        if id == LIVE {
            assert_eq!(seq, live_next, "the live publisher's stream has a gap or is out of order");
            live_next += 1;
            continue;
        }
        assert!(id < VICTIMS, "stray message {seq} of stream {id}");
        assert!(id >= latest, "a message of victim {id} after one of victim {latest}");
        latest = id;
        if buffered && seq == victim_next[id as usize] + 1 {
            holes[id as usize] += 1;
            assert_eq!(holes[id as usize], 1, "victim {id}'s stream has more than one hole");
        } else {
            assert_eq!(seq, victim_next[id as usize], "victim {id}'s stream has a gap or is out of order");
        }
        victim_next[id as usize] = seq + 1;
    }
    assert_eq!(live_next, live_sent, "the live publisher's messages did not all arrive");
    for &(v, count) in &abandoned {
        assert_eq!(victim_next[v as usize], count, "victim {v} published {count} messages before it stopped");
    }
    // Every position claimed was read or skipped by each subscriber (a victim killed between claim and
    // commit leaves one), and each subscriber counts its own skips.
    let skipped = position - received;
    let holes: u64 = holes.iter().sum();
    eprintln!(
        "{VICTIMS} publishers killed ({} told to stop mid-write); {live_sent} live messages, {} from victims; \
         {skipped} positions skipped, {holes} messages missing inside victims' streams",
        abandoned.len(),
        received - live_sent
    );
    // One claimed position per kill, and for a buffering victim its withheld one.
    let per_kill = 1 + buffered as u64;
    assert!(skipped <= per_kill * VICTIMS as u64, "{skipped} positions skipped for {VICTIMS} kills");
    assert!(holes <= skipped, "{holes} messages missing inside streams, {skipped} positions skipped");
    assert_eq!(recovered.skipped, 2 * skipped, "{recovered:?}");
}

#[test]
fn broadcast_backpressure_stops_waiting_for_a_killed_subscriber() {
    let name = unique("bcast-dead-sub");
    let dir = TempDir::new("bcast-dead-sub");
    let ring = ShmBroadcast::create(&name, cfg(SMALL), Mode::Backpressure).unwrap();
    let n = slots(SMALL);
    let mut tx = ring.publisher().unwrap();
    tx.set_liveness_interval(Duration::from_millis(5));
    let reader = Peer::attached(PeerMode::BcastSubscribe, &name, &["--out", &dir.arg("live")]);
    let mut victim = Peer::attached(PeerMode::BcastHold, &name, &[]);
    for seq in 0..n {
        tx.send_deadline(&msg(1, seq), Instant::now() + WATCHDOG).unwrap();
    }
    // The victim has read nothing: a full lap is all back-pressure allows.
    assert_eq!(tx.try_send(&msg(1, n)), Err(broadcast::SendError::WouldBlock));
    victim.kill();
    // A blocking send notices the dead subscriber and stops waiting for it.
    let total = 4 * n;
    for seq in n..total {
        tx.send_deadline(&msg(1, seq), Instant::now() + WATCHDOG).unwrap_or_else(|e| panic!("message {seq}: {e}"));
    }
    drop(tx);
    let summary = reader.finish();
    assert_eq!(field(&summary, "received"), total, "{summary}");
    assert_eq!(read_tags(&dir.file("live")), (0..total).map(|q| tag(1, q)).collect::<Vec<_>>());
}

// ---- kinds ----

#[test]
fn another_process_opening_a_ring_as_the_wrong_kind_gets_wrong_kind() {
    let (qn, bn, sn) = (unique("kind-q"), unique("kind-b"), unique("kind-s"));
    let _q = ShmQueue::create(&qn, cfg(SMALL)).unwrap();
    let _b = ShmBroadcast::create(&bn, cfg(SMALL), Mode::Overwrite).unwrap();
    let _s = ShmRing::create(&sn, RingConfig::new(SMALL, MAX)).unwrap();
    let cases = [
        (&qn, "broadcast", "wrong-kind 2"),
        (&qn, "spsc", "wrong-kind 2"),
        (&qn, "mpmc", "ok"),
        (&bn, "mpmc", "wrong-kind 3"),
        (&bn, "spsc", "wrong-kind 3"),
        (&bn, "broadcast", "ok"),
        (&sn, "mpmc", "wrong-kind 1"),
        (&sn, "broadcast", "wrong-kind 1"),
        (&sn, "spsc", "ok"),
    ];
    for (name, kind, want) in cases {
        let mut peer = Peer::spawn(PeerMode::OpenAs, name, &["--kind", kind]);
        peer.expect(want);
        peer.finish();
    }
    // And the same from this process, typed.
    assert!(matches!(ShmBroadcast::open(&qn), Err(OpenError::WrongKind(2))));
    assert!(matches!(ShmQueue::open(&bn), Err(OpenError::WrongKind(3))));
    assert!(matches!(ShmQueue::open(&sn), Err(OpenError::WrongKind(1))));
}

#[test]
fn a_consumer_killed_while_asleep_has_its_sleeper_count_taken_back() {
    // A consumer asleep on the futex is counted in the ring's sleepers; while that count is non-zero
    // every commit makes a FUTEX_WAKE system call. If the process dies asleep, whoever finds its entry
    // dead (a joining endpoint, a liveness check) takes the count back.
    let name = unique("mpmc-asleep");
    let ring = ShmQueue::create(&name, cfg(SMALL)).unwrap();
    let tx = ring.producer().unwrap();
    let mut sleeper = Peer::attached(PeerMode::MpmcConsume, &name, &["--wait", "adaptive"]);
    let deadline = Instant::now() + WATCHDOG;
    while tx.__sleepers() != (1, 0) {
        assert!(Instant::now() < deadline, "the idle consumer never went to sleep: {:?}", tx.__sleepers());
        std::thread::yield_now();
    }
    sleeper.kill_running();
    assert_eq!(tx.__sleepers(), (1, 0), "nobody has looked at the dead entry yet");
    // A new consumer takes the dead one's entry (the first free one) and its count with it.
    let _rx = ring.consumer().unwrap();
    assert_eq!(tx.__sleepers(), (0, 0));
}
