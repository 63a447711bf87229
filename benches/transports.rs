//! criterion: one group per transport (`pipe`, `stdio`, `fork`, `unix`, `tcp`, `udp`, `websocket`,
//! `redis-pubsub`, `redis-stream`, each redis one again `-pipelined` (our sender with
//! `Options::window` 128), and the `shm` ring transport for reference), each timing, for 64 B and
//! 4 KiB messages through a `ringwire-testpeer bench echo --adapter T` process (the peers `ringwire bench` uses):
//! `rtt/SIZE`, one message out and its echo back at a time; `stream/SIZE`, messages streamed through the
//! echo with up to 16 in flight (reported as messages per second); `stream_batched/SIZE`, the same with
//! write coalescing (`Sender::send_buffered`, flushed before each wait for a reply: a burst of 16 frames
//! in one `write`, one `sendmmsg` on UDP; the other adapters send at once). Each reply is checked. The redis groups use the server at `$RINGWIRE_REDIS_URL` (default
//! redis://127.0.0.1:6379) and are skipped, with a note, when none answers there; the `amqp` group
//! likewise uses the broker at `$RINGWIRE_AMQP_URL` (default amqp://127.0.0.1:5672).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringwire::transport::Wait;
use ringwire_testkit::peers::{self, PeerConn};
use ringwire_testkit::{Adapter, PeerArgs, PeerMode};
use std::time::{Duration, Instant};

fn connect(transport: &str) -> PeerConn {
    // The `pipe` group runs over named FIFOs, as the bench's `pipe` row does; a `-pipelined` redis group
    // is its adapter with our sender keeping up to 128 commands unacknowledged (`Options::window`).
    let (name, window) = match transport.strip_suffix("-pipelined") {
        Some(base) => (base, 128),
        None if transport == "pipe" => ("fifo", 1),
        None => (transport, 1),
    };
    let adapter = Adapter::ALL.into_iter().find(|a| a.name() == name).expect("a known adapter");
    let args = PeerArgs { max_message: 8192, ..PeerArgs::transport(PeerMode::Echo, adapter) };
    let cmd = ringwire_testkit::peer::bench_command(&args);
    peers::connect_via_window(cmd, adapter, &peers::redis_url(), window).expect("connect to the echo peer")
}

/// Why the redis groups can't run, if they can't.
fn redis_missing() -> Option<String> {
    let url = peers::redis_url();
    let answer = redis::Client::open(url.as_str()).and_then(|c| {
        let mut con = c.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(2)))?;
        redis::cmd("PING").query::<String>(&mut con)
    });
    answer.err().map(|e| format!("no Redis server answers at {url} ({e})"))
}

fn transports(c: &mut Criterion) {
    let redis_missing = redis_missing();
    let amqp_missing =
        ringwire::transport::amqp::check_broker(&peers::amqp_url(), &Default::default()).err().map(|e| e.to_string());
    for transport in [
        "shm",
        "pipe",
        "stdio",
        "fork",
        "unix",
        "tcp",
        "udp",
        "websocket",
        "redis-pubsub",
        "redis-pubsub-pipelined",
        "redis-stream",
        "redis-stream-pipelined",
        "amqp",
    ] {
        if let (true, Some(why)) = (transport.starts_with("redis"), &redis_missing) {
            eprintln!("{transport}: skipped: {why}");
            continue;
        }
        if let (true, Some(why)) = (transport == "amqp", &amqp_missing) {
            eprintln!("{transport}: skipped: {why}");
            continue;
        }
        let mut g = c.benchmark_group(transport);
        for size in [64usize, 4096] {
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new("rtt", size), |b| {
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
            g.bench_function(BenchmarkId::new("stream", size), |b| {
                let mut conn = connect(transport);
                let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
                b.iter_custom(|iters| {
                    // A window keeps both directions' buffers from filling up (the echo blocks on its
                    // writes while we block on ours) and UDP from dropping.
                    const WINDOW: u64 = 16;
                    let (mut sent, mut got) = (0u64, 0u64);
                    let t0 = Instant::now();
                    while got < iters {
                        while sent < iters && sent - got < WINDOW {
                            conn.tx.send(&msg).unwrap();
                            sent += 1;
                        }
                        let reply = conn.rx.recv_deadline(Instant::now() + Duration::from_secs(30)).unwrap();
                        assert_eq!(reply, msg);
                        got += 1;
                    }
                    t0.elapsed()
                });
            });
            g.bench_function(BenchmarkId::new("stream_batched", size), |b| {
                let mut conn = connect(transport);
                let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
                b.iter_custom(|iters| {
                    const WINDOW: u64 = 16;
                    let (mut sent, mut got) = (0u64, 0u64);
                    let t0 = Instant::now();
                    while got < iters {
                        while sent < iters && sent - got < WINDOW {
                            conn.tx.send_buffered(&msg, Wait::Until(Instant::now() + Duration::from_secs(30))).unwrap();
                            sent += 1;
                        }
                        // About to wait for a reply: the queued frames must be on the wire.
                        conn.tx.flush().unwrap();
                        let reply = conn.rx.recv_deadline(Instant::now() + Duration::from_secs(30)).unwrap();
                        assert_eq!(reply, msg);
                        got += 1;
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
