//! criterion: one group per transport (`pipe`, `stdio`, `fork`, `unix`, `tcp`, `udp`, and the `shm` ring
//! transport for reference), each timing round trips of 64 B and 4 KiB messages through a
//! `ringwire __peer echo-<t>` process, the peers `ringwire bench` uses. Each reply is checked.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringwire::testkit::peers::{self, PeerConn};
use std::process::Command;
use std::time::{Duration, Instant};

fn connect(transport: &str) -> PeerConn {
    let adapter = if transport == "pipe" { "fifo" } else { transport };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringwire"));
    cmd.args(["__peer", &format!("echo-{adapter}"), "--max-message", "8192"]);
    peers::connect(cmd, adapter).expect("connect to the echo peer")
}

fn transports(c: &mut Criterion) {
    for transport in ["shm", "pipe", "stdio", "fork", "unix", "tcp", "udp"] {
        let mut g = c.benchmark_group(format!("rtt/{transport}"));
        for size in [64usize, 4096] {
            g.bench_function(BenchmarkId::from_parameter(size), |b| {
                let mut conn = connect(transport);
                let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
                b.iter_custom(|iters| {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        conn.tx.send(&msg).unwrap();
                        let reply = conn.rx.recv_deadline(Instant::now() + Duration::from_secs(30)).unwrap();
                        assert_eq!(reply, msg);
                    }
                    t0.elapsed()
                });
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = transports
}
criterion_main!(benches);
