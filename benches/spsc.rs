//! criterion benches for the SPSC ring.
//!
//! * `inproc_stream/*`: one thread streams 64-byte messages to another: ringwire's heap ring vs
//!   rtrb (as a byte ring, copying in place), crossbeam-channel `bounded` and `std::sync::mpsc::sync_channel`
//!   (both carrying `Vec<u8>`).
//! * `xproc_rtt/*`, `xproc_stream/*`: across processes, with the echo and sink peers `ringwire bench` uses
//!   (the same peers `ringwire bench` uses), for 64 B and 4 KiB.
//!
//! Timing uses `iter_custom`, and each measurement checks what it moved.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringwire::{RingConfig, ShmRing, WaitStrategy};
use ringwire_testkit::{PeerArgs, PeerMode};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

/// Streams `iters` messages of `size` bytes to a spinning sink thread; `buffered`: with `send_buffered`.
fn ringwire_stream(size: usize, iters: u64, buffered: bool) -> std::time::Duration {
    let (mut tx, mut rx) = ringwire::spsc::channel(RingConfig::default()).unwrap();
    tx.set_wait_strategy(WaitStrategy::Spin);
    rx.set_wait_strategy(WaitStrategy::Spin);
    let sink = std::thread::spawn(move || {
        let mut n = 0u64;
        while let Ok(m) = rx.recv() {
            assert_eq!(m.len(), size);
            n += 1;
        }
        n
    });
    let msg = payload(size);
    let t0 = Instant::now();
    for _ in 0..iters {
        if buffered {
            tx.send_buffered(&msg).unwrap();
        } else {
            tx.send(&msg).unwrap();
        }
    }
    drop(tx);
    assert_eq!(sink.join().unwrap(), iters);
    t0.elapsed()
}

fn inproc_stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("inproc_stream");
    g.throughput(Throughput::Elements(1));
    let size = 64;
    g.bench_function(BenchmarkId::new("ringwire", size), |b| {
        b.iter_custom(|iters| ringwire_stream(size, iters, false))
    });
    // Buffered publication: each message committed with `send_buffered`, published in 4 KiB batches.
    g.bench_function(BenchmarkId::new("ringwire_buffered", size), |b| {
        b.iter_custom(|iters| ringwire_stream(size, iters, true))
    });
    g.bench_function(BenchmarkId::new("rtrb", size), |b| {
        // rtrb as a byte ring: each message copied into a write chunk and out of a read chunk in place.
        b.iter_custom(|iters| {
            let (mut tx, mut rx) = rtrb::RingBuffer::<u8>::new(1 << 20);
            let sink = std::thread::spawn(move || {
                let mut buf = vec![0u8; size];
                let mut n = 0u64;
                while n < iters {
                    if let Ok(chunk) = rx.read_chunk(size) {
                        let (a, b) = chunk.as_slices();
                        buf[..a.len()].copy_from_slice(a);
                        buf[a.len()..].copy_from_slice(b);
                        chunk.commit_all();
                        n += 1;
                    } else {
                        std::hint::spin_loop();
                    }
                }
                n
            });
            let msg = payload(size);
            let t0 = Instant::now();
            let mut sent = 0;
            while sent < iters {
                if let Ok(mut chunk) = tx.write_chunk(size) {
                    let (a, b) = chunk.as_mut_slices();
                    let k = a.len();
                    a.copy_from_slice(&msg[..k]);
                    b.copy_from_slice(&msg[k..]);
                    chunk.commit_all();
                    sent += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
            assert_eq!(sink.join().unwrap(), iters);
            t0.elapsed()
        })
    });
    g.bench_function(BenchmarkId::new("crossbeam_bounded", size), |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(4096);
            vec_stream(
                iters,
                size,
                move |m| tx.send(m).is_ok(),
                move || rx.iter().fold((0, true), |(n, ok), m| (n + 1, ok && m.len() == size)),
            )
        })
    });
    g.bench_function(BenchmarkId::new("std_sync_channel", size), |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4096);
            vec_stream(
                iters,
                size,
                move |m| tx.send(m).is_ok(),
                move || rx.iter().fold((0, true), |(n, ok), m| (n + 1, ok && m.len() == size)),
            )
        })
    });
    g.finish();
}

/// Streams `iters` owned `size`-byte vectors through a channel, given as its send closure (dropped at the
/// end, which closes it) and its draining receive loop (run on another thread; it returns how many
/// messages arrived and whether all had the right length), and times it.
fn vec_stream(
    iters: u64,
    size: usize,
    mut send: impl FnMut(Vec<u8>) -> bool,
    drain: impl FnOnce() -> (u64, bool) + Send + 'static,
) -> Duration {
    let sink = std::thread::spawn(drain);
    let msg = payload(size);
    let t0 = Instant::now();
    for _ in 0..iters {
        assert!(send(msg.clone()));
    }
    drop(send);
    let (count, all_right) = sink.join().unwrap();
    let dt = t0.elapsed();
    assert!(count == iters && all_right);
    dt
}

/// A `ringwire-testpeer bench` process (the peer `ringwire bench` uses) on two anonymous rings (A: to it, B: back).
struct Peer {
    child: Child,
    tx: ringwire::shm::ShmProducer,
    rx: ringwire::shm::ShmConsumer,
}

fn spawn_peer(mode: PeerMode, size: usize, count: u64) -> Peer {
    let a = ShmRing::anonymous(RingConfig::default()).unwrap();
    let b = ShmRing::anonymous(RingConfig::default()).unwrap();
    let mut cmd =
        ringwire_testkit::peer::bench_command(&PeerArgs { size, count, wait: "spin".into(), ..PeerArgs::new(mode) });
    cmd.stdin(Stdio::null());
    a.share_with(&mut cmd, ringwire_cli::peer::RING_A_VAR);
    b.share_with(&mut cmd, ringwire_cli::peer::RING_B_VAR);
    let child = cmd.spawn().unwrap();
    let mut tx = a.producer().unwrap();
    let mut rx = b.consumer().unwrap();
    tx.set_wait_strategy(WaitStrategy::Spin);
    rx.set_wait_strategy(WaitStrategy::Spin);
    assert_eq!(&*rx.recv_timeout(Duration::from_secs(30)).unwrap(), b"ready");
    Peer { child, tx, rx }
}

fn xproc(c: &mut Criterion) {
    let mut g = c.benchmark_group("xproc_rtt");
    for size in [64usize, 4096] {
        g.bench_function(BenchmarkId::new("shm-spsc", size), |b| {
            let mut p = spawn_peer(PeerMode::RingEcho, size, 0);
            let msg = payload(size);
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    p.tx.send(&msg).unwrap();
                    assert_eq!(p.rx.recv().unwrap().len(), size);
                }
                t0.elapsed()
            });
            drop(p.tx);
            p.child.wait().unwrap();
        });
    }
    g.finish();

    let mut g = c.benchmark_group("xproc_stream");
    g.throughput(Throughput::Elements(1));
    for size in [64usize, 4096] {
        g.bench_function(BenchmarkId::new("shm-spsc", size), |b| {
            b.iter_custom(|iters| {
                // The sink verifies every message (the same stream `ringwire bench` uses).
                let mut p = spawn_peer(PeerMode::RingSink, size, iters);
                let base: Vec<u8> =
                    (0..size).map(|i| (i as u32).wrapping_mul(2654435761).rotate_right(13) as u8).collect();
                let t0 = Instant::now();
                for i in 0..iters {
                    let mut slot = p.tx.reserve(size).unwrap();
                    slot.copy_from_slice(&base);
                    let n = size.min(8);
                    slot[..n].copy_from_slice(&i.to_le_bytes()[..n]);
                    slot.commit();
                }
                assert_eq!(&*p.rx.recv().unwrap(), b"ok");
                let dt = t0.elapsed();
                p.child.wait().unwrap();
                dt
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = inproc_stream, xproc
}
criterion_main!(benches);
