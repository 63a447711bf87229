//! criterion benches for the slot rings (MPMC work queue, broadcast).
//!
//! * `mpmc_inproc/*/1p1c`, `*/2p2c`: P producer threads stream 64-byte messages to C consumer threads
//!   through ringwire's MPMC ring, crossbeam's `ArrayQueue` and crossbeam-channel `bounded`, all three
//!   holding 1024 messages and carrying them by value (`[u8; 64]` copied in and out, as the ring copies
//!   into and out of its slots). Threads wait by spinning, then yielding (ringwire `SpinYield`,
//!   crossbeam-utils `Backoff` for the `ArrayQueue`; the channel blocks its own way): on a small or shared
//!   machine, pure spinning turns every hand-off into a wait for the end of a time slice.
//! * `mpmc_inproc/ringwire_buffered/*`: the ringwire rows with each message sent by `send_buffered`
//!   (published in batches of 4 KiB of slots; the producer's drop publishes the last batch).
//! * `mpmc_xproc/ringwire/1p1c`: the same ring across processes: this process produces, a
//!   `ringwire-testpeer slots mpmc-consume` child checks every byte of every message.
//! * `broadcast_fanout/ringwire/{1,2,4}`: one publisher thread, 1, 2 or 4 subscriber threads, back-pressure
//!   mode (nobody loses a message); throughput per published message, each delivered to every subscriber.
//!   `broadcast_fanout/ringwire_buffered/*`: the same with `send_buffered`.
//! * `broadcast_copy/send_recv/{64,4096}`: one thread publishes a message and receives it back: the two
//!   payload copies through the sequence lock and the bookkeeping around them, nothing crossing cores.
//!
//! Timing uses `iter_custom`: from the first producer's start to the last message received. Each
//! measurement checks the count and the sum of what it moved.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::Backoff;
use ringwire::broadcast::{self, Mode};
use ringwire::mpmc::RecvError;
use ringwire::{RingConfig, ShmQueue, WaitStrategy};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Message size.
const SIZE: usize = 64;
/// Messages each queue holds: 1024 slots of 128 bytes (16-byte slot header + 64, rounded to 64).
const DEPTH: usize = 1024;
/// How the ring's threads wait.
const WAIT: WaitStrategy = WaitStrategy::SpinYield;
/// How often a waiting consumer asks whether the producers have gone: soon after the last message, so
/// that the end of a run costs little wall time (criterion sizes its samples by wall time).
const LIVENESS: Duration = Duration::from_millis(1);

fn ring_config() -> RingConfig {
    RingConfig::new(128 << 10, SIZE)
}

/// Message `v` (v >= 1): `v` in the first 8 bytes, then a fixed pattern.
fn message(v: u64) -> [u8; SIZE] {
    let mut m = [0u8; SIZE];
    for (i, b) in m.iter_mut().enumerate() {
        *b = i as u8;
    }
    m[..8].copy_from_slice(&v.to_le_bytes());
    m
}

fn value(m: &[u8]) -> u64 {
    assert_eq!(m.len(), SIZE);
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

/// How many of `iters` messages producer `p` of `producers` sends.
fn share(iters: u64, producers: u64, p: u64) -> u64 {
    iters / producers + u64::from(p < iters % producers)
}

/// What all producers send: messages 1..=share each; the consumers must see this count and sum.
fn expected(iters: u64, producers: u64) -> (u64, u64) {
    (0..producers).map(|p| share(iters, producers, p)).fold((0, 0), |(n, s), k| (n + k, s + k * (k + 1) / 2))
}

/// What one consumer saw: count, sum of values, time of its last message.
type Seen = (u64, u64, Option<Instant>);

/// Runs `producers` and `consumers` (closures started on their own threads once all are ready), calls
/// `after_producers` once the producers are done, checks that the consumers saw `want` (count and sum
/// of values, all consumers together), and returns the time from the first producer's start to the last
/// message received. (Not from this thread's release of the barrier: on two CPUs it may not run again
/// until the others are done.)
fn run_threads(
    want: (u64, u64),
    producers: Vec<Box<dyn FnOnce() + Send>>,
    consumers: Vec<Box<dyn FnOnce() -> Seen + Send>>,
    after_producers: impl FnOnce(),
) -> Duration {
    let start = Arc::new(Barrier::new(producers.len() + consumers.len() + 1));
    let cons: Vec<_> = consumers
        .into_iter()
        .map(|c| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                c()
            })
        })
        .collect();
    let prods: Vec<_> = producers
        .into_iter()
        .map(|p| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let t = Instant::now();
                p();
                t
            })
        })
        .collect();
    start.wait();
    let t0 = prods.into_iter().map(|p| p.join().unwrap()).min().expect("a producer");
    after_producers();
    let (mut n, mut sum, mut last) = (0, 0, t0);
    for c in cons {
        let (cn, cs, cl) = c.join().unwrap();
        n += cn;
        sum += cs;
        last = last.max(cl.unwrap_or(t0));
    }
    assert_eq!((n, sum), want, "messages lost or duplicated");
    last - t0
}

/// How the ringwire rows send and receive.
#[derive(Clone, Copy)]
enum Claims {
    /// `send` / `recv`, one claim per message on each side.
    Plain,
    /// `send_buffered` / `recv`.
    Buffered,
    /// `reserve_many` / `recv_many`, batches of up to 64 on both sides.
    Batched,
}

fn ringwire_mpmc(iters: u64, np: u64, nc: u64, mode: Claims) -> Duration {
    let (tx, rx) = ringwire::mpmc::channel(ring_config()).unwrap();
    let mut txs = vec![tx];
    while (txs.len() as u64) < np {
        txs.push(txs[0].clone_handle().unwrap());
    }
    let mut rxs = vec![rx];
    while (rxs.len() as u64) < nc {
        rxs.push(rxs[0].clone_handle().unwrap());
    }
    let producers = txs
        .into_iter()
        .enumerate()
        .map(|(p, mut tx)| {
            tx.set_wait_strategy(WAIT);
            Box::new(move || {
                let mut m = message(0);
                let n = share(iters, np, p as u64);
                if let Claims::Batched = mode {
                    let mut v = 1;
                    while v <= n {
                        let mut batch = tx.reserve_many((n + 1 - v).min(64) as usize, SIZE).unwrap();
                        for i in 0..batch.len() {
                            let slot = batch.get_mut(i).unwrap();
                            slot.copy_from_slice(&m);
                            slot[..8].copy_from_slice(&(v + i as u64).to_le_bytes());
                        }
                        v += batch.len() as u64;
                        batch.commit();
                    }
                    return;
                }
                for v in 1..=n {
                    m[..8].copy_from_slice(&v.to_le_bytes());
                    if let Claims::Buffered = mode {
                        tx.send_buffered(&m).unwrap();
                    } else {
                        tx.send(&m).unwrap();
                    }
                }
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    let consumers = rxs
        .into_iter()
        .map(|mut rx| {
            rx.set_wait_strategy(WAIT);
            rx.set_liveness_interval(LIVENESS);
            Box::new(move || {
                let (mut n, mut sum, mut last) = (0u64, 0u64, None);
                loop {
                    if let Claims::Batched = mode {
                        match rx.recv_many(64) {
                            Ok(b) => {
                                sum += b.iter().map(value).sum::<u64>();
                                n += b.len() as u64;
                            }
                            Err(RecvError::PeerGone) => return (n, sum, last),
                            Err(e) => panic!("{e}"),
                        }
                        last = Some(Instant::now());
                        continue;
                    }
                    match rx.recv() {
                        Ok(m) => sum += value(&m),
                        Err(RecvError::PeerGone) => return (n, sum, last),
                        Err(e) => panic!("{e}"),
                    }
                    n += 1;
                    last = Some(Instant::now());
                }
            }) as Box<dyn FnOnce() -> Seen + Send>
        })
        .collect();
    run_threads(expected(iters, np), producers, consumers, || {})
}

/// The ArrayQueue has no close: after the producers, one sentinel (value 0) per consumer, which FIFO
/// order puts after every message.
fn array_queue(iters: u64, np: u64, nc: u64) -> Duration {
    let q = Arc::new(ArrayQueue::<[u8; SIZE]>::new(DEPTH));
    let producers = (0..np)
        .map(|p| {
            let q = q.clone();
            Box::new(move || {
                let mut m = message(0);
                for v in 1..=share(iters, np, p) {
                    m[..8].copy_from_slice(&v.to_le_bytes());
                    let backoff = Backoff::new();
                    while q.push(m).is_err() {
                        backoff.snooze();
                    }
                }
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    let consumers = (0..nc)
        .map(|_| {
            let q = q.clone();
            Box::new(move || {
                let (mut n, mut sum, mut last) = (0u64, 0u64, None);
                let backoff = Backoff::new();
                loop {
                    let Some(m) = q.pop() else {
                        backoff.snooze();
                        continue;
                    };
                    backoff.reset();
                    match value(&m) {
                        0 => return (n, sum, last),
                        v => sum += v,
                    }
                    n += 1;
                    last = Some(Instant::now());
                }
            }) as Box<dyn FnOnce() -> Seen + Send>
        })
        .collect();
    let q2 = q.clone();
    run_threads(expected(iters, np), producers, consumers, move || {
        for _ in 0..nc {
            let backoff = Backoff::new();
            while q2.push(message(0)).is_err() {
                backoff.snooze();
            }
        }
    })
}

fn crossbeam_bounded(iters: u64, np: u64, nc: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<[u8; SIZE]>(DEPTH);
    let producers = (0..np)
        .map(|p| {
            let tx = tx.clone();
            Box::new(move || {
                let mut m = message(0);
                for v in 1..=share(iters, np, p) {
                    m[..8].copy_from_slice(&v.to_le_bytes());
                    tx.send(m).unwrap();
                }
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    drop(tx);
    let consumers = (0..nc)
        .map(|_| {
            let rx = rx.clone();
            Box::new(move || {
                let (mut n, mut sum, mut last) = (0u64, 0u64, None);
                for m in rx.iter() {
                    sum += value(&m);
                    n += 1;
                    last = Some(Instant::now());
                }
                (n, sum, last)
            }) as Box<dyn FnOnce() -> Seen + Send>
        })
        .collect();
    drop(rx);
    run_threads(expected(iters, np), producers, consumers, || {})
}

fn mpmc_inproc(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_inproc");
    g.throughput(Throughput::Elements(1));
    for (np, nc) in [(1u64, 1u64), (2, 2)] {
        let id = format!("{np}p{nc}c");
        g.bench_function(BenchmarkId::new("ringwire", &id), |b| {
            b.iter_custom(|iters| ringwire_mpmc(iters, np, nc, Claims::Plain))
        });
        g.bench_function(BenchmarkId::new("ringwire_buffered", &id), |b| {
            b.iter_custom(|iters| ringwire_mpmc(iters, np, nc, Claims::Buffered))
        });
        g.bench_function(BenchmarkId::new("ringwire_batched", &id), |b| {
            b.iter_custom(|iters| ringwire_mpmc(iters, np, nc, Claims::Batched))
        });
        g.bench_function(BenchmarkId::new("array_queue", &id), |b| b.iter_custom(|iters| array_queue(iters, np, nc)));
        g.bench_function(BenchmarkId::new("crossbeam_bounded", &id), |b| {
            b.iter_custom(|iters| crossbeam_bounded(iters, np, nc))
        });
    }
    g.finish();
}

/// This process produces `iters` messages of the peers' bench stream (src/cli/slotpeer.rs: stream id
/// u32, sequence number u64, then a fixed pattern) into an anonymous MPMC ring; a child consumer checks
/// every one and reports once it has them all.
fn mpmc_xproc(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_xproc");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("ringwire", "1p1c"), |b| {
        b.iter_custom(|iters| {
            let q = ShmQueue::anonymous(ring_config()).unwrap();
            let mut tx = q.producer().unwrap();
            tx.set_wait_strategy(WAIT);
            let mut cmd = ringwire_testkit::peer::command(ringwire_testkit::peer::slots::Mode::MpmcConsume);
            cmd.args(["fd:RINGWIRE_FD", "--size", &SIZE.to_string()])
                .args(["--count", &iters.to_string(), "--wait", "yield"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped());
            q.share_with(&mut cmd, "RINGWIRE_FD");
            let mut child = cmd.spawn().unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "attached");
            let mut m = [0u8; SIZE];
            for (i, b) in m[12..].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31).wrapping_add(7);
            }
            let t0 = Instant::now();
            for seq in 0..iters {
                let mut slot = tx.reserve(SIZE).unwrap();
                m[4..12].copy_from_slice(&seq.to_le_bytes());
                slot.copy_from_slice(&m);
                slot.commit();
            }
            line.clear();
            out.read_line(&mut line).unwrap();
            let dt = t0.elapsed();
            assert!(line.starts_with(&format!(r#"{{"received": {iters}, "end": "count""#)), "{line}");
            assert!(child.wait().unwrap().success());
            dt
        })
    });
    g.finish();
}

fn broadcast_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("broadcast_fanout");
    g.throughput(Throughput::Elements(1));
    for (subs, buffered) in [1usize, 2, 4].into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let name = if buffered { "ringwire_buffered" } else { "ringwire" };
        g.bench_function(BenchmarkId::new(name, subs), |b| {
            b.iter_custom(|iters| {
                let (mut tx, rx) = broadcast::channel(ring_config(), Mode::Backpressure).unwrap();
                let mut rxs = vec![rx];
                while rxs.len() < subs {
                    rxs.push(rxs[0].clone_handle().unwrap());
                }
                tx.set_wait_strategy(WAIT);
                let producer = Box::new(move || {
                    let mut m = message(0);
                    for v in 1..=iters {
                        m[..8].copy_from_slice(&v.to_le_bytes());
                        if buffered {
                            tx.send_buffered(&m).unwrap();
                        } else {
                            tx.send(&m).unwrap();
                        }
                    }
                }) as Box<dyn FnOnce() + Send>;
                let consumers = rxs
                    .into_iter()
                    .map(|mut rx| {
                        rx.set_wait_strategy(WAIT);
                        rx.set_liveness_interval(LIVENESS);
                        Box::new(move || {
                            let (mut n, mut sum, mut last) = (0u64, 0u64, None);
                            let mut buf = [0u8; SIZE];
                            loop {
                                match rx.recv_into(&mut buf) {
                                    Ok(len) => {
                                        let v = value(&buf[..len]);
                                        assert_eq!(v, n + 1, "out of order");
                                        sum += v;
                                    }
                                    Err(broadcast::RecvError::PeerGone) => return (n, sum, last),
                                    Err(e) => panic!("{e}"),
                                }
                                n += 1;
                                last = Some(Instant::now());
                            }
                        }) as Box<dyn FnOnce() -> Seen + Send>
                    })
                    .collect::<Vec<_>>();
                // Every subscriber sees every message, in order (checked as they arrive).
                let (n, sum) = expected(iters, 1);
                run_threads((n * subs as u64, sum * subs as u64), vec![producer], consumers, || {})
            })
        });
    }
    g.finish();
}

/// One thread publishes a message and receives it back, 64 B and 4 KiB: the broadcast ring's two payload
/// copies (into the slot, out of it) and its bookkeeping, without any cache line crossing cores, so that
/// the copy's cost shows on a busy machine too (the cross-process rows are `ringwire bench`'s).
fn broadcast_copy(c: &mut Criterion) {
    let mut g = c.benchmark_group("broadcast_copy");
    for size in [64usize, 4096] {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("send_recv", size), |b| {
            let (mut tx, mut rx) = broadcast::channel(RingConfig::new(1 << 20, size), Mode::Overwrite).unwrap();
            let msg = vec![7u8; size];
            let mut buf = vec![0u8; size];
            b.iter(|| {
                tx.try_send(std::hint::black_box(&msg)).unwrap();
                std::hint::black_box(rx.try_recv_into(&mut buf).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10);
    targets = mpmc_inproc, mpmc_xproc, broadcast_fanout, broadcast_copy
}
criterion_main!(benches);
