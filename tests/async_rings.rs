//! The async ring API (feature `tokio`): `recv_async` / `send_async` / `reserve_async` on SPSC, MPMC
//! and broadcast handles, heap and shared memory, across tasks, threads and real processes (the
//! `ringwire-testpeer` children); cancel-safety (futures dropped by `select!` under traffic: every
//! message arrives exactly once, in order); a dead peer waking an async waiter with its typed error; and
//! more waiting futures than one reactor shard takes (127).
//!
//! Every test body runs under `tokio::time::timeout` (a hang is a failure, not a stuck run). Nothing
//! sleeps to pass: the timers in the cancellation tests are what cancels the futures.

use ringwire::broadcast::{self, Mode as BcastMode};
use ringwire::{mpmc, spsc, RingConfig, ShmBroadcast, ShmQueue, ShmRing};
use ringwire_testkit::peer::ring::Mode as RingPeer;
use ringwire_testkit::peer::slots::Mode as SlotsPeer;
use ringwire_testkit::{check, fill, len_for};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const WATCHDOG: Duration = Duration::from_secs(60);
const MAX: usize = 1000;

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-test-async-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Runs `f` on a two-worker tokio runtime under the watchdog.
fn run<F: Future<Output = ()> + Send + 'static>(f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        tokio::time::timeout(WATCHDOG, tokio::spawn(f))
            .await
            .expect("watchdog: the test did not finish in time (a hang)")
            .expect("test task panicked")
    });
}

fn msg(seq: u64, max: usize) -> Vec<u8> {
    let mut m = vec![0; len_for(seq, max)];
    fill(&mut m, seq);
    m
}

/// A `ringwire-testpeer` child, killed and reaped on drop.
struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(mut cmd: std::process::Command) -> Peer {
        let mut child = cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().expect("spawn ringwire-testpeer");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        Peer { child, out }
    }

    fn ring(mode: RingPeer, name: &str, extra: &[&str]) -> Peer {
        let mut cmd = ringwire_testkit::peer::command(mode);
        cmd.args(["--name", name, "--max", &MAX.to_string(), "--wait", "adaptive"]).args(extra);
        Peer::spawn(cmd)
    }

    fn slots(mode: SlotsPeer, ring: &str, extra: &[&str]) -> Peer {
        let mut cmd = ringwire_testkit::peer::command(mode);
        cmd.arg(ring).args(extra);
        Peer::spawn(cmd)
    }

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

// ---- heap rings, tasks and threads ----

#[test]
fn spsc_async_consumer_and_blocking_producer_thread() {
    run(async {
        const N: u64 = 100_000;
        let (mut tx, mut rx) = spsc::channel(RingConfig::new(16 << 10, MAX)).unwrap();
        let producer = std::thread::spawn(move || {
            for seq in 0..N {
                tx.send(&msg(seq, MAX)).unwrap();
            }
        });
        for seq in 0..N {
            let m = rx.recv_async().await.unwrap();
            assert!(check(&m, seq, MAX), "message {seq}");
        }
        assert_eq!(rx.recv_async().await.unwrap_err(), spsc::RecvError::PeerGone);
        producer.join().unwrap();
    });
}

#[test]
fn spsc_async_producer_and_async_consumer_tasks_on_one_runtime() {
    run(async {
        const N: u64 = 50_000;
        // A small ring: the producer waits for space and the consumer for data, both as futures.
        let (mut tx, mut rx) = spsc::channel(RingConfig::new(4096, 1000)).unwrap();
        let producer = tokio::spawn(async move {
            for seq in 0..N {
                if seq % 2 == 0 {
                    tx.send_async(&msg(seq, 1000)).await.unwrap();
                } else {
                    let m = msg(seq, 1000);
                    let mut slot = tx.reserve_async(m.len()).await.unwrap();
                    slot.copy_from_slice(&m);
                    slot.commit();
                }
            }
        });
        let mut buf = vec![0; 1000];
        for seq in 0..N {
            let n = rx.recv_into_async(&mut buf).await.unwrap();
            assert!(check(&buf[..n], seq, 1000), "message {seq}");
        }
        producer.await.unwrap();
        assert_eq!(rx.recv_vec_async().await.unwrap_err(), spsc::RecvError::PeerGone);
    });
}

#[test]
fn spsc_async_producer_waits_for_a_blocking_consumer_thread() {
    run(async {
        const N: u64 = 50_000;
        let (mut tx, mut rx) = spsc::channel(RingConfig::new(4096, 1000)).unwrap();
        let consumer = std::thread::spawn(move || {
            for seq in 0..N {
                let m = rx.recv().unwrap();
                assert!(check(&m, seq, 1000), "message {seq}");
            }
        });
        for seq in 0..N {
            tx.send_async(&msg(seq, 1000)).await.unwrap();
        }
        tokio::task::spawn_blocking(move || consumer.join().unwrap()).await.unwrap();
    });
}

#[test]
fn mpmc_async_producers_and_consumers_exactly_once() {
    run(async {
        const PER: u64 = 20_000;
        const PRODUCERS: u64 = 3;
        let (tx, rx) = mpmc::channel(RingConfig::new(1 << 14, 56)).unwrap();
        let mut tasks = Vec::new();
        for p in 0..PRODUCERS {
            let mut tx = tx.clone_handle().unwrap();
            tasks.push(tokio::spawn(async move {
                for seq in 0..PER {
                    tx.send_async(&(p << 32 | seq).to_le_bytes()).await.unwrap();
                }
            }));
        }
        drop(tx);
        let mut consumers = Vec::new();
        for _ in 0..3 {
            let mut rx = rx.clone_handle().unwrap();
            consumers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let mut last = [None::<u64>; PRODUCERS as usize];
                loop {
                    match rx.recv_vec_async().await {
                        Ok(m) => {
                            let v = u64::from_le_bytes(m[..8].try_into().unwrap());
                            let (p, seq) = ((v >> 32) as usize, v & 0xffff_ffff);
                            // One consumer sees each producer's messages in increasing order.
                            assert!(last[p].map_or(true, |l| l < seq), "producer {p}: {seq} after {:?}", last[p]);
                            last[p] = Some(seq);
                            got.push(v);
                        }
                        Err(mpmc::RecvError::PeerGone) => return got,
                        Err(e) => panic!("recv_vec_async: {e}"),
                    }
                }
            }));
        }
        drop(rx);
        for t in tasks {
            t.await.unwrap();
        }
        let mut all = Vec::new();
        for c in consumers {
            all.extend(c.await.unwrap());
        }
        all.sort_unstable();
        let want: Vec<u64> = (0..PRODUCERS).flat_map(|p| (0..PER).map(move |s| p << 32 | s)).collect();
        assert_eq!(all, want, "every message exactly once");
    });
}

#[test]
fn broadcast_backpressure_async_publisher_and_subscribers() {
    run(async {
        const N: u64 = 30_000;
        let (mut tx, rx) = broadcast::channel(RingConfig::new(1 << 14, 56), BcastMode::Backpressure).unwrap();
        let mut subs = Vec::new();
        for _ in 0..3 {
            let mut rx = rx.clone_handle().unwrap();
            subs.push(tokio::spawn(async move {
                for seq in 0..N {
                    let m = rx.recv_async().await.unwrap();
                    assert_eq!(m, seq.to_le_bytes(), "message {seq}");
                }
                assert_eq!(rx.recv_async().await.unwrap_err(), broadcast::RecvError::PeerGone);
            }));
        }
        drop(rx);
        for seq in 0..N {
            if seq % 2 == 0 {
                tx.send_async(&seq.to_le_bytes()).await.unwrap();
            } else {
                let mut slot = tx.reserve_async(8).await.unwrap();
                slot.copy_from_slice(&seq.to_le_bytes());
                slot.commit();
            }
        }
        drop(tx);
        for s in subs {
            s.await.unwrap();
        }
    });
}

// ---- cancel-safety ----

/// A timer that fires after a pseudo-random 0..=max_us microseconds.
/// Races `wait` — a receive on an empty ring, or a send into a full one, with nobody to change that —
/// against a short timer and drops it, pending: one cancellation mid-wait that the jittered races after
/// it do not depend on scheduling for.
async fn cancel_once<F: Future>(wait: F) {
    tokio::select! {
        _ = wait => panic!("completed, though nothing could complete it"),
        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
    }
}

fn jitter(state: &mut u64, max_us: u64) -> tokio::time::Sleep {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    tokio::time::sleep(Duration::from_micros((*state >> 33) % (max_us + 1)))
}

/// A producer thread sends N messages in bursts (so that the consumer keeps running dry and waiting);
/// the consumer's `recv_async` futures are raced against short timers and dropped whenever the timer
/// wins (and the first, before the producer starts, always loses: at least one is dropped mid-wait).
/// Every message must arrive exactly once, in order.
#[test]
fn spsc_recv_futures_dropped_by_select_lose_nothing() {
    run(async {
        const N: u64 = 20_000;
        let (mut tx, mut rx) = spsc::channel(RingConfig::new(8 << 10, MAX)).unwrap();
        cancel_once(rx.recv_async()).await;
        let producer = std::thread::spawn(move || {
            for seq in 0..N {
                tx.send(&msg(seq, MAX)).unwrap();
                if seq % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let (mut next, mut rng) = (0u64, 1u64);
        while next < N {
            tokio::select! {
                r = rx.recv_async() => {
                    let m = r.unwrap();
                    assert!(check(&m, next, MAX), "message {next}: wrong or out of order");
                    next += 1;
                }
                _ = jitter(&mut rng, 20) => {}
            }
        }
        assert_eq!(rx.recv_async().await.unwrap_err(), spsc::RecvError::PeerGone, "nothing extra");
        producer.join().unwrap();
    });
}

/// The send side: `send_async` futures raced against timers on a small ring that a blocking consumer
/// drains. A dropped send sent nothing (no duplicate), a completed one sent exactly its message.
#[test]
fn spsc_send_futures_dropped_by_select_send_nothing() {
    run(async {
        const N: u64 = 20_000;
        let (mut tx, mut rx) = spsc::channel(RingConfig::new(4096, MAX)).unwrap();
        // Full, and nobody reading yet: a send must wait, and is dropped waiting.
        let mut next = 0u64;
        while tx.try_send(&msg(next, MAX)).is_ok() {
            next += 1;
        }
        cancel_once(tx.send_async(&msg(next, MAX))).await;
        let consumer = std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                match rx.recv() {
                    Ok(m) => {
                        assert!(check(&m, n, MAX), "message {n}: wrong, duplicated or out of order");
                        n += 1;
                    }
                    Err(spsc::RecvError::PeerGone) => return n,
                    Err(e) => panic!("recv: {e}"),
                }
            }
        });
        let mut rng = 7u64;
        while next < N {
            let m = msg(next, MAX);
            tokio::select! {
                r = tx.send_async(&m) => {
                    r.unwrap();
                    next += 1;
                }
                _ = jitter(&mut rng, 20) => {}
            }
        }
        drop(tx);
        let received = tokio::task::spawn_blocking(move || consumer.join().unwrap()).await.unwrap();
        assert_eq!(received, N);
    });
}

/// MPMC and broadcast: the same race on their receives; and afterwards no dropped future is still
/// counted as a sleeper (which would make every later send pay a futex wake).
#[test]
fn slot_ring_recv_futures_dropped_by_select_lose_nothing() {
    run(async {
        const N: u64 = 20_000;
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(1 << 13, 56)).unwrap();
        let (mut btx, mut brx) = broadcast::channel(RingConfig::new(1 << 13, 56), BcastMode::Backpressure).unwrap();
        cancel_once(rx.recv_vec_async()).await;
        cancel_once(brx.recv_vec_async()).await;
        let producer = std::thread::spawn(move || {
            for seq in 0..N {
                tx.send(&seq.to_le_bytes()).unwrap();
                btx.send(&seq.to_le_bytes()).unwrap();
                if seq % 64 == 0 {
                    std::thread::yield_now();
                }
            }
            (tx, btx)
        });
        let (mut next, mut bnext, mut rng) = (0u64, 0u64, 3u64);
        while next < N || bnext < N {
            tokio::select! {
                r = rx.recv_vec_async(), if next < N => {
                    assert_eq!(r.unwrap(), next.to_le_bytes(), "mpmc message {next}");
                    next += 1;
                }
                r = brx.recv_vec_async(), if bnext < N => {
                    assert_eq!(r.unwrap(), bnext.to_le_bytes(), "broadcast message {bnext}");
                    bnext += 1;
                }
                _ = jitter(&mut rng, 20) => {}
            }
        }
        let (tx, btx) = tokio::task::spawn_blocking(move || producer.join().unwrap()).await.unwrap();
        assert_eq!(tx.__sleepers(), (0, 0), "a dropped future is still counted as a sleeper");
        drop((tx, btx));
        assert_eq!(rx.recv_async().await.unwrap_err(), mpmc::RecvError::PeerGone);
        assert_eq!(brx.recv_async().await.unwrap_err(), broadcast::RecvError::PeerGone);
    });
}

/// MPMC batched claims, awaited: every message once and in order, batches of at most the size asked
/// for, with receives that lose races to a timer (cancel-safe: a batch is claimed only in the poll
/// that completes the future), then `PeerGone`.
#[test]
fn mpmc_recv_many_async_takes_every_message_once_in_order() {
    run(async {
        const N: u64 = 20_000;
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(1 << 13, 56)).unwrap();
        cancel_once(rx.recv_many_async(16)).await;
        let producer = std::thread::spawn(move || {
            for seq in 0..N {
                tx.send(&seq.to_le_bytes()).unwrap();
                if seq % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let (mut next, mut rng) = (0u64, 5u64);
        while next < N {
            tokio::select! {
                b = rx.recv_many_async(16) => {
                    let b = b.unwrap();
                    assert!((1..=16).contains(&b.len()));
                    for m in b.iter() {
                        assert_eq!(m, next.to_le_bytes(), "message {next}");
                        next += 1;
                    }
                }
                _ = jitter(&mut rng, 20) => {}
            }
        }
        tokio::task::spawn_blocking(move || producer.join().unwrap()).await.unwrap();
        assert_eq!(rx.recv_many_async(16).await.map(|b| b.len()).unwrap_err(), mpmc::RecvError::PeerGone);
    });
}

/// MPMC batched reservations, awaited: on a full ring the future waits (a dropped one claims nothing,
/// or the messages after it would be stuck behind an unpublished slot), and once a consumer frees
/// slots it claims a run of them; everything arrives once, in order.
#[test]
fn mpmc_reserve_many_async_waits_for_room_and_a_dropped_one_claims_nothing() {
    run(async {
        // 64 slots of 64 bytes.
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 48)).unwrap();
        let mut n = 0u64;
        while tx.try_send(&n.to_le_bytes()).is_ok() {
            n += 1;
        }
        cancel_once(tx.reserve_many_async(8, 8)).await;
        let consumer = std::thread::spawn(move || {
            for i in 0..10u64 {
                assert_eq!(*rx.recv().unwrap(), i.to_le_bytes());
            }
            rx
        });
        let mut b = tx.reserve_many_async(8, 8).await.unwrap();
        let k = b.len() as u64;
        assert!((1..=8).contains(&k));
        for j in 0..k {
            b.get_mut(j as usize).unwrap().copy_from_slice(&(n + j).to_le_bytes());
        }
        b.commit();
        let mut rx = tokio::task::spawn_blocking(move || consumer.join().unwrap()).await.unwrap();
        for i in 10..n + k {
            assert_eq!(*rx.try_recv().unwrap(), i.to_le_bytes(), "message {i}");
        }
        assert_eq!(rx.try_recv().map(|m| m.len()), Err(mpmc::RecvError::Empty));
    });
}

// ---- many rings on one runtime ----

/// 300 MPMC rings, a consumer task awaiting each: more waiting futures than one reactor shard (127)
/// takes, so the reactor grows to at least three shard threads; one message to each ring wakes exactly
/// its task; afterwards no sleeper is left counted.
///
/// The consumers' liveness interval is longer than the watchdog: with the default 50 ms, a slow start
/// of 300 tasks (a debug build on a loaded 2-core machine) lets the first registrations time out and
/// free their places before the last ones register, so fewer than 255 are ever registered at once.
#[test]
fn three_hundred_rings_waiting_at_once_on_one_runtime() {
    run(async {
        const RINGS: usize = 300;
        let mut producers = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..RINGS {
            let (tx, mut rx) = mpmc::channel(RingConfig::new(4096, 56)).unwrap();
            rx.set_liveness_interval(WATCHDOG * 2);
            producers.push(tx);
            tasks.push(tokio::spawn(async move { (rx.recv_vec_async().await.unwrap(), i) }));
        }
        // Wait (under the watchdog) until every task is registered as a sleeper on its ring.
        while producers.iter().any(|tx| tx.__sleepers().0 != 1) {
            tokio::task::yield_now().await;
        }
        assert!(ringwire::reactor::reactor_threads() >= RINGS.div_ceil(ringwire::reactor::SHARD_WORDS));
        for (i, tx) in producers.iter_mut().enumerate().rev() {
            tx.send(&(i as u64).to_le_bytes()).unwrap();
        }
        for t in tasks {
            let (m, i) = t.await.unwrap();
            assert_eq!(m, (i as u64).to_le_bytes());
        }
        assert!(producers.iter().all(|tx| tx.__sleepers() == (0, 0)));
    });
}

// ---- shared memory, real processes ----

#[test]
fn shm_spsc_async_consumer_of_a_producer_process() {
    run(async {
        const N: u64 = 200_000;
        let name = unique("spsc-recv");
        let ring = ShmRing::create(&name, RingConfig::new(64 << 10, MAX)).unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut peer = Peer::ring(RingPeer::Produce, &name, &["--count", &N.to_string()]);
        peer.wait_attached();
        for seq in 0..N {
            let m = rx.recv_async().await.unwrap();
            assert!(check(&m, seq, MAX), "message {seq}");
        }
        assert_eq!(rx.recv_async().await.unwrap_err(), spsc::RecvError::PeerGone);
        let (ok, _) = tokio::task::spawn_blocking(move || peer.finish()).await.unwrap();
        assert!(ok);
    });
}

#[test]
fn shm_spsc_async_producer_to_a_consumer_process() {
    run(async {
        const N: u64 = 200_000;
        let name = unique("spsc-send");
        let ring = ShmRing::create(&name, RingConfig::new(16 << 10, MAX)).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut peer = Peer::ring(RingPeer::Consume, &name, &[]);
        peer.wait_attached();
        for seq in 0..N {
            let m = msg(seq, MAX);
            let mut slot = tx.reserve_async(m.len()).await.unwrap();
            slot.copy_from_slice(&m);
            slot.commit();
        }
        drop(tx);
        let (ok, out) = tokio::task::spawn_blocking(move || peer.finish()).await.unwrap();
        assert!(ok, "{out}");
        assert!(out.contains(&format!(r#""received": {N}, "first": 0, "end": "closed""#)), "{out}");
    });
}

#[test]
fn shm_mpmc_async_consumer_of_producer_processes() {
    run(async {
        const PER: u64 = 50_000;
        let name = unique("mpmc");
        let q = ShmQueue::create(&name, RingConfig::new(1 << 16, 240)).unwrap();
        let mut rx = q.consumer().unwrap();
        let mut peers: Vec<Peer> = (1..=2)
            .map(|id| {
                Peer::slots(
                    SlotsPeer::MpmcProduce,
                    &name,
                    &["--id", &id.to_string(), "--count", &PER.to_string(), "--max", "240"],
                )
            })
            .collect();
        for p in &mut peers {
            p.wait_attached();
        }
        let mut next = [0u64; 3];
        loop {
            match rx.recv_vec_async().await {
                Ok(m) => {
                    let id = u32::from_le_bytes(m[..4].try_into().unwrap()) as usize;
                    let seq = u64::from_le_bytes(m[4..12].try_into().unwrap());
                    assert_eq!(seq, next[id], "producer {id}: out of order or lost");
                    assert_eq!(m.len(), 12 + len_for((id as u64) << 40 | seq, 240 - 12));
                    next[id] += 1;
                }
                Err(mpmc::RecvError::PeerGone) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(&next[1..], &[PER, PER]);
        for p in peers {
            assert!(tokio::task::spawn_blocking(move || p.finish()).await.unwrap().0);
        }
    });
}

#[test]
fn shm_broadcast_async_subscriber_of_a_publisher_process() {
    run(async {
        const N: u64 = 50_000;
        let name = unique("bcast");
        let b = ShmBroadcast::create(&name, RingConfig::new(1 << 16, 240), BcastMode::Backpressure).unwrap();
        let mut rx = b.subscriber().unwrap();
        let mut peer =
            Peer::slots(SlotsPeer::BcastPublish, &name, &["--id", "5", "--count", &N.to_string(), "--max", "240"]);
        peer.wait_attached();
        let mut next = 0u64;
        loop {
            match rx.recv_async().await {
                Ok(m) => {
                    assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), 5);
                    assert_eq!(u64::from_le_bytes(m[4..12].try_into().unwrap()), next, "lost or out of order");
                    next += 1;
                }
                Err(broadcast::RecvError::PeerGone) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(next, N);
        assert!(tokio::task::spawn_blocking(move || peer.finish()).await.unwrap().0);
    });
}

// ---- peer death and close ----

#[test]
fn async_recv_learns_the_producer_process_died() {
    run(async {
        let name = unique("dead-producer");
        let ring = ShmRing::create(&name, RingConfig::new(64 << 10, MAX)).unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut peer = Peer::ring(RingPeer::HoldProducer, &name, &[]);
        peer.wait_attached();
        let recv = tokio::spawn(async move { rx.recv_vec_async().await });
        tokio::task::spawn_blocking(move || peer.kill()).await.unwrap();
        assert_eq!(recv.await.unwrap(), Err(spsc::RecvError::PeerReset));
    });
}

#[test]
fn async_send_learns_the_consumer_process_died() {
    run(async {
        let name = unique("dead-consumer");
        let ring = ShmRing::create(&name, RingConfig::new(64 << 10, MAX)).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut peer = Peer::ring(RingPeer::HoldConsumer, &name, &[]);
        peer.wait_attached();
        while tx.try_send(&[7; 500]).is_ok() {}
        let send = tokio::spawn(async move { tx.send_async(&[7; 500]).await });
        tokio::task::spawn_blocking(move || peer.kill()).await.unwrap();
        assert_eq!(send.await.unwrap(), Err(spsc::SendError::PeerReset));
    });
}

#[test]
fn async_waiters_see_a_clean_close() {
    run(async {
        let (tx, mut rx) = spsc::channel(RingConfig::new(4096, 64)).unwrap();
        let recv = tokio::spawn(async move { rx.recv_vec_async().await });
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(recv.await.unwrap(), Err(spsc::RecvError::PeerGone));

        let (mut tx, rx) = mpmc::channel(RingConfig::new(4096, 56)).unwrap();
        while tx.try_send(&[1; 56]).is_ok() {}
        let send = tokio::spawn(async move { tx.send_async(&[2; 56]).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(send.await.unwrap(), Err(mpmc::SendError::PeerGone));
    });
}

/// As `tests/slots.rs`'s blocking test: with an hour's liveness interval (and a one-minute watchdog),
/// a pending future learns of the last producer's / publisher's clean close from its wake-up, not from
/// the next liveness check.
#[test]
fn async_slot_ring_waiters_see_a_clean_close_whatever_the_liveness_interval() {
    const HOUR: Duration = Duration::from_secs(3600);
    run(async {
        let (tx, mut rx) = mpmc::channel(RingConfig::new(4096, 56)).unwrap();
        rx.set_liveness_interval(HOUR);
        let recv = tokio::spawn(async move { rx.recv_vec_async().await });
        while tx.__sleepers().0 == 0 {
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert_eq!(recv.await.unwrap(), Err(mpmc::RecvError::PeerGone));

        let (tx, mut sub) = broadcast::channel(RingConfig::new(4096, 56), BcastMode::Overwrite).unwrap();
        sub.set_liveness_interval(HOUR);
        let recv = tokio::spawn(async move { sub.recv_vec_async().await });
        while tx.__sleepers().0 == 0 {
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert_eq!(recv.await.unwrap(), Err(broadcast::RecvError::PeerGone));
    });
}

#[test]
fn oversize_is_refused_at_once() {
    run(async {
        let (mut tx, _rx) = spsc::channel(RingConfig::new(4096, 64)).unwrap();
        assert!(matches!(tx.send_async(&[0; 65]).await, Err(spsc::SendError::Oversize { .. })));
        let (mut tx, _rx) = mpmc::channel(RingConfig::new(4096, 56)).unwrap();
        assert!(matches!(tx.reserve_async(57).await, Err(mpmc::SendError::Oversize { .. })));
        let (mut tx, _rx) = broadcast::channel(RingConfig::new(4096, 56), BcastMode::Overwrite).unwrap();
        assert!(matches!(tx.send_async(&[0; 57]).await, Err(broadcast::SendError::Oversize { .. })));
    });
}

#[test]
fn broadcast_async_subscriber_sees_lagged_in_overwrite_mode() {
    run(async {
        let (mut tx, mut rx) = broadcast::channel(RingConfig::new(4096, 56), BcastMode::Overwrite).unwrap();
        let (slots, _) = RingConfig::new(4096, 56).slots().unwrap();
        // More than a lap: the subscriber fell behind and is told so, then reads on.
        for seq in 0..(slots as u64 + 3) {
            tx.send_async(&seq.to_le_bytes()).await.unwrap();
        }
        assert!(matches!(rx.recv_async().await, Err(broadcast::RecvError::Lagged(_))));
        let next = rx.recv_vec_async().await.unwrap();
        assert!(u64::from_le_bytes(next[..8].try_into().unwrap()) >= 3);
    });
}

/// A pending future leaked with `mem::forget` keeps its registration, and its ring is then unmapped
/// (a shared-memory ring: the pages are gone). The reactor only ever hands that address to the kernel,
/// so it gets an error code (EFAULT) and drops the entry: this process does not fault, and later async
/// calls on other rings work.
#[test]
fn a_leaked_future_whose_ring_is_unmapped_does_not_hurt_the_reactor() {
    run(async {
        for _ in 0..4 {
            let ring = ShmRing::anonymous(RingConfig::new(4096, 64)).unwrap();
            let mut rx = ring.consumer().unwrap();
            let mut fut = Box::pin(rx.recv_vec_async());
            let pending = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_pending())).await;
            assert!(pending, "nothing was sent");
            std::mem::forget(fut);
            drop(rx);
            drop(ring);
        }
        let (mut tx, mut rx) = spsc::channel(RingConfig::new(4096, 64)).unwrap();
        let recv = tokio::spawn(async move { rx.recv_vec_async().await });
        tokio::task::yield_now().await;
        tx.send_async(b"still here").await.unwrap();
        assert_eq!(recv.await.unwrap().unwrap(), b"still here");
    });
}
