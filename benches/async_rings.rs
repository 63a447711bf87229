//! criterion benches for the async ring calls (feature `tokio`): what awaiting costs.
//!
//! `wake_rtt/*`: a round trip of a 64-byte message over two heap SPSC rings to an echo thread that
//! sleeps on the futex between messages (blocking `recv`, Adaptive with zero spin), so that every
//! reply has to wake the measuring side too:
//!
//! * `blocking-sleep`: the measuring side blocks the same way (zero spin: a futex sleep per reply);
//! * `async`: it awaits `recv_async` on a current-thread tokio runtime (a sleeper registered with the
//!   reactor: ring futex → reactor thread → waker → the runtime's thread);
//! * `blocking-spin`: it spins (the floor: no sleep on this side);
//! * `tokio-mpsc`: tokio's own bounded channels, `blocking_recv` in the echo thread and `recv().await`
//!   on the runtime (the price of a cross-thread wake through tokio alone).
//!
//! Each iteration checks the echoed message.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringwire::{RingConfig, WaitStrategy};
use std::time::{Duration, Instant};

const SIZE: usize = 64;
const SLEEP: WaitStrategy = WaitStrategy::Adaptive { spin: Duration::ZERO };

fn rings(
    this_side: WaitStrategy,
) -> (ringwire::spsc::HeapProducer, ringwire::spsc::HeapConsumer, std::thread::JoinHandle<()>) {
    let (mut a_tx, mut a_rx) = ringwire::spsc::channel(RingConfig::new(1 << 16, 1024)).unwrap();
    let (mut b_tx, mut b_rx) = ringwire::spsc::channel(RingConfig::new(1 << 16, 1024)).unwrap();
    a_rx.set_wait_strategy(SLEEP);
    b_tx.set_wait_strategy(SLEEP);
    a_tx.set_wait_strategy(this_side);
    b_rx.set_wait_strategy(this_side);
    let echo = std::thread::spawn(move || {
        while let Ok(m) = a_rx.recv() {
            b_tx.send(&m).unwrap();
        }
    });
    (a_tx, b_rx, echo)
}

fn wake_rtt(c: &mut Criterion) {
    let mut g = c.benchmark_group("wake_rtt");
    let msg: Vec<u8> = (0..SIZE).map(|i| i as u8).collect();
    for (name, side) in [("blocking-sleep", SLEEP), ("blocking-spin", WaitStrategy::Spin)] {
        g.bench_function(BenchmarkId::new(name, SIZE), |b| {
            b.iter_custom(|iters| {
                let (mut tx, mut rx, echo) = rings(side);
                let t0 = Instant::now();
                for _ in 0..iters {
                    tx.send(&msg).unwrap();
                    assert_eq!(&*rx.recv().unwrap(), &msg[..]);
                }
                let dt = t0.elapsed();
                drop(tx);
                echo.join().unwrap();
                dt
            })
        });
    }
    g.bench_function(BenchmarkId::new("async", SIZE), |b| {
        b.iter_custom(|iters| {
            let (mut tx, mut rx, echo) = rings(SLEEP);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dt = rt.block_on(async {
                let t0 = Instant::now();
                for _ in 0..iters {
                    tx.send_async(&msg).await.unwrap();
                    assert_eq!(&*rx.recv_async().await.unwrap(), &msg[..]);
                }
                t0.elapsed()
            });
            drop(tx);
            echo.join().unwrap();
            dt
        })
    });
    g.bench_function(BenchmarkId::new("tokio-mpsc", SIZE), |b| {
        b.iter_custom(|iters| {
            let (a_tx, mut a_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
            let (b_tx, mut b_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
            let echo = std::thread::spawn(move || {
                while let Some(m) = a_rx.blocking_recv() {
                    b_tx.blocking_send(m).unwrap();
                }
            });
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dt = rt.block_on(async {
                let t0 = Instant::now();
                for _ in 0..iters {
                    a_tx.send(msg.clone()).await.unwrap();
                    assert_eq!(b_rx.recv().await.unwrap(), msg);
                }
                t0.elapsed()
            });
            drop(a_tx);
            echo.join().unwrap();
            dt
        })
    });
    g.finish();
}

criterion_group!(benches, wake_rtt);
criterion_main!(benches);
