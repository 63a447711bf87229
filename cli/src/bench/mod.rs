//! `ringwire bench`: every transport measured side by side, each row next to a bare-hardware probe.
//!
//! The machines this runs on are often VMs whose vCPUs the host moves between placements, and the cost
//! of moving a cache line between the two cores can change about 5x from one second to the next. So a
//! `limit` probe (see `probe.rs`) is taken right before and right after every row, and each row is
//! reported with its ratio to the mean of those two probes as well as in absolute numbers.

mod async_transports;
mod asyncio;
mod fanout;
mod plan;
mod plot;
mod raw;
mod report;
mod slots;
mod transports;

use crate::peer::{PeerMode, RING_A_VAR, RING_B_VAR};
use crate::probe::{self, SharedMem};
use crate::util::{available_cpus, base_payload, parse_wait, pin_to, stamp, verify, CliResult};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use plan::{histogram, peer_command, reap, Counts, Plan};
use report::{Machine, ProbeSample, Row, Skipped, Throughput};
use ringwire::socket::{EventReceiver, EventSender, Ring};
use ringwire::transport::Wait;
use ringwire::{RingConfig, ShmRing};
use std::process::Child;
use std::time::{Duration, Instant};

/// Every transport this build knows, in table order.
pub const TRANSPORTS: &[&str] = &[
    "limit",
    "shm-spsc",
    "shm-spsc+events",
    "shm-spsc+async",
    "shm-spsc+batch",
    "shm-mpmc",
    "shm-mpmc+batch",
    "shm-broadcast",
    "shm-broadcast+batch",
    "raw-pipe",
    "raw-fifo",
    "pipe",
    "pipe+batch",
    "stdio",
    "stdio+batch",
    "raw-unix",
    "fork",
    "fork+batch",
    "unix",
    "unix+batch",
    "unix+async",
    "raw-tcp",
    "tcp",
    "tcp+batch",
    "tcp+events",
    "tcp+async",
    "raw-udp",
    "udp",
    "udp+batch",
    "udp+async",
    "websocket",
    "websocket+batch",
    "websocket+async",
    "redis-pubsub",
    "redis-pubsub+batch",
    "redis-stream",
    "redis-stream+batch",
    "amqp",
    "crossbeam",
    "rtrb",
    "hub",
    "hub-cluster",
];

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Print the results as JSON (schema in README.md) instead of a table.
    #[arg(long)]
    json: bool,
    /// Comma-separated transports to run (default: all). Known: limit, shm-spsc, shm-spsc+events, shm-spsc+batch,
    /// shm-spsc+async (this side awaits with `reserve_async`/`recv_async`; compared with shm-spsc
    /// adaptive, its `raw_ratio`), unix+async, tcp+async, udp+async, websocket+async (this side on the
    /// async transports, `ringwire::transport::tokio`, against the same blocking peers; compared with the
    /// blocking row's `block` wait, its `raw_ratio`), shm-mpmc, shm-mpmc+batch (round trip: each message committed
    /// with `commit_buffered`, as shm-spsc+batch; streaming: both sides claim up to 64 slots at once, `reserve_many` and `recv_many`; compared with shm-mpmc, its `raw_ratio`), shm-broadcast,
    /// shm-broadcast+batch (`send_buffered`; compared with shm-broadcast; both broadcast rows read with `recv_in_place`), raw-pipe, raw-fifo (raw-pipe over two named FIFOs, as the
    /// pipe row's; not brought along by any row), pipe, pipe+batch, stdio, stdio+batch, raw-unix, fork,
    /// fork+batch, unix, unix+batch, raw-tcp, tcp, tcp+batch, tcp+events, raw-udp, udp, udp+batch, websocket,
    /// websocket+batch, redis-pubsub,
    /// redis-pubsub+batch, redis-stream, redis-stream+batch, amqp, crossbeam, rtrb, hub, hub-cluster.
    /// The redis rows run `block` (each send waits for its reply) and `pipelined` (up to 128 commands
    /// unacknowledged, `redis::Options::window`); their `+batch` rows, pipelined, queue each window's
    /// commands with `send_buffered` and write them at once. A `+events` row sends each message as a named event
    /// (`ringwire::socket`, raw body, name "msg") through the same peers, and is compared with its raw
    /// row (`raw_ratio`). Kernel transports run with each wait: block, spin, adaptive, and each is
    /// compared with the bare read/write of its kernel mechanism (`raw-pipe`, `raw-unix`, `raw-tcp`,
    /// `raw-udp`, block and spin; added to the run whenever a kernel transport over it is selected;
    /// `websocket` is compared with `raw-tcp` when that runs). A `+batch`
    /// row (pipe, stdio, fork, unix, tcp, udp, websocket, redis) streams with write coalescing (`Sender::send_buffered`, flushed before
    /// waiting for the sink) and is compared with its plain row (`raw_ratio`). `hub` is the
    /// fan-out group: `ringwire hub` and, as the reference, Node's socket.io server broadcasting to rooms
    /// of `--fanout-clients` WebSocket clients, and their memory per idle connection (run last; its own
    /// table section and the JSON's `fanout` and `fanout_memory`). `hub-cluster` adds the scale-out rows
    /// to that group: two hubs over shm, over Redis Streams and over Redis pub/sub, and two socket.io
    /// servers with `@socket.io/redis-adapter`, the clients split between the two processes.
    #[arg(long, value_delimiter = ',')]
    transports: Option<Vec<String>>,
    /// The Redis server of the redis-pubsub and redis-stream rows (redis://host:port or host:port). When
    /// none answers there, those rows are listed as skipped and the rest of the run goes on.
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// The AMQP broker (RabbitMQ) of the amqp row (amqp://[user:password@]host:port[/VHOST]; guest/guest
    /// and vhost `/` by default). When none answers there, the row is listed as skipped.
    #[arg(long, value_name = "URL", default_value = "amqp://127.0.0.1:5672")]
    amqp: String,
    /// Comma-separated message sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![64usize, 4096])]
    sizes: Vec<usize>,
    /// A smoke run: about 20x fewer messages. Numbers are noisy; the tool is exercised end to end.
    #[arg(long)]
    quick: bool,
    /// Also draw the results as an SVG: round-trip percentiles per transport on a log axis and
    /// throughput bars.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// Fan-out (`hub`): comma-separated room sizes, in clients [default: 1,10,100,1000; --quick: 1,10,100].
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    fanout_clients: Option<Vec<usize>>,
    /// Fan-out (`hub`): seconds of the throughput phase of each row [default: 1.5; --quick: 0.3].
    #[arg(long, value_name = "SECS")]
    fanout_secs: Option<f64>,
    /// Fan-out (`hub`): idle connections opened to measure each server's memory per connection
    /// [default: 1000; --quick: 100].
    #[arg(long, value_name = "N")]
    fanout_idle: Option<usize>,
    /// Fan-out (`hub`): threads of the load generator [default: 1, so that on a 2-CPU machine it takes
    /// at most one CPU from the servers]. On a many-core machine, more: one thread is the limit of the
    /// hub's rows when its `cores` column reads 1.00 for the client.
    #[arg(long, value_name = "N", default_value_t = 1)]
    fanout_threads: usize,
    /// Fan-out (`hub`): the folder with socketio_fanout_server.mjs and node_modules/socket.io (the
    /// socket.io reference server) [default: this source tree's tests/js]. Without node or socket.io
    /// there, the socket.io rows are listed as skipped.
    #[arg(long, value_name = "DIR")]
    socketio_dir: Option<std::path::PathBuf>,
}

/// A row's measurement.
struct Measured {
    rtt: Histogram<u64>,
    throughput: Throughput,
}

pub fn run(args: BenchArgs) -> CliResult {
    let mut selected: Vec<&'static str> = match &args.transports {
        None => TRANSPORTS.to_vec(),
        Some(names) => {
            let mut v = Vec::new();
            for n in names {
                let t = TRANSPORTS
                    .iter()
                    .find(|t| **t == n.as_str())
                    .ok_or_else(|| format!("unknown transport {n:?}; known: {}", TRANSPORTS.join(", ")))?;
                v.push(*t);
            }
            v
        }
    };
    // Each kernel transport is reported against its raw mechanism, measured in the same run: a selected
    // transport brings its raw row along (just before the first row over it). `websocket` (and
    // `websocket+batch`) is compared with `raw-tcp` when that row runs anyway, but does not bring it.
    let mut i = 0;
    while i < selected.len() {
        match raw::mechanism_of(selected[i], "block") {
            Some((m, _)) if !selected.contains(&m) && !matches!(selected[i], "websocket" | "websocket+batch") => {
                selected.insert(i, m)
            }
            _ => i += 1,
        }
    }
    if args.sizes.is_empty() || args.sizes.iter().any(|&s| s == 0 || s > RING_MAX_MESSAGE) {
        return Err(format!("sizes must be between 1 and {RING_MAX_MESSAGE} bytes").into());
    }
    // The fan-out group is not a per-size row with probes around it: it runs once, after the rows.
    let redis = transports::redis_url(&args.redis);
    let fanout = if selected.contains(&"hub") || selected.contains(&"hub-cluster") {
        let cluster = selected.contains(&"hub-cluster");
        selected.retain(|t| *t != "hub" && *t != "hub-cluster");
        // The Redis-backed scale-out rows need a server; without one they are skipped, with the reason.
        let redis_down = if cluster { transports::redis_check(&redis).err() } else { None };
        let s = fanout::Settings::new(
            args.quick,
            args.fanout_clients.clone(),
            args.fanout_secs,
            args.fanout_idle,
            args.fanout_threads,
            args.socketio_dir.clone(),
        )?;
        Some(if cluster { s.with_cluster(redis.clone(), redis_down) } else { s })
    } else {
        None
    };
    let counts = Counts::new(args.quick);
    // Checked once, before any row: a missing server skips the redis rows, not the run.
    let redis_down =
        if selected.iter().any(|t| transports::is_redis(t)) { transports::redis_check(&redis).err() } else { None };
    let amqp = args.amqp.trim_end_matches('/').to_string();
    let amqp_down = if selected.contains(&"amqp") { transports::amqp_check(&amqp).err() } else { None };
    let mut plans = Vec::new();
    for &size in &args.sizes {
        for &t in &selected {
            let waits: &[&'static str] = match t {
                "limit" => &["spin"],
                "shm-spsc" => &["spin", "adaptive"],
                "shm-spsc+events" => &["spin"],
                // Buffered publication (commit_buffered + flush), against the plain rows of the run.
                "shm-spsc+batch" => &["spin", "adaptive"],
                // Awaiting against the blocking shm-spsc adaptive row (the peer's wait: adaptive).
                "shm-spsc+async" => &["adaptive"],
                "shm-mpmc" | "shm-mpmc+batch" | "shm-broadcast" | "shm-broadcast+batch" | "rtrb" => &["spin"],
                // Kernel transports: sleeping in poll (block), busy-polling the syscall (spin), or both.
                "pipe" | "stdio" | "fork" | "unix" | "tcp" | "udp" => &["block", "spin", "adaptive"],
                // Redis: a round trip per send (block), or up to a window of sends in flight.
                "redis-pubsub" | "redis-stream" => &["block", "pipelined"],
                // ... and with send_buffered, a window's commands in one write.
                "redis-pubsub+batch" | "redis-stream+batch" => &["pipelined"],
                // Write coalescing (send_buffered + flush), against the plain rows of the same run.
                "pipe+batch" | "stdio+batch" | "fork+batch" | "unix+batch" | "tcp+batch" | "udp+batch" => {
                    &["block", "spin"]
                }
                // Their raw mechanisms: bare blocking read/write, and busy-polled non-blocking ones.
                t if raw::NAMES.contains(&t) => &["block", "spin"],
                _ => &["block"],
            };
            for &wait in waits {
                plans.push(Plan { transport: t, wait, size });
            }
        }
    }

    let pinned = !plans.is_empty() && available_cpus() >= 2 && pin_to(0);
    let machine = Machine::detect(pinned);
    let probes = if plans.is_empty() { 0 } else { args.sizes.len() };
    let bar = ProgressBar::new((plans.len() * 2 + probes) as u64 + fanout.as_ref().map_or(0, |f| f.steps()));
    bar.set_style(ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}").expect("valid template"));

    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut last_size = None;
    let mut before = ProbeSample::default();
    for plan in &plans {
        if last_size != Some(plan.size) {
            bar.set_message(format!("limit probe, {} B", plan.size));
            before = run_probe(plan.size, &counts)?;
            bar.inc(1);
            last_size = Some(plan.size);
        }
        bar.set_message(format!("{} ({}), {} B", plan.transport, plan.wait, plan.size));
        let measured = match (&redis_down, transports::is_redis(plan.transport)) {
            (Some(reason), true) => Err(reason.clone().into()),
            _ if plan.transport == "amqp" => match &amqp_down {
                Some(reason) => Err(reason.clone().into()),
                None => measure(plan, &counts, &amqp),
            },
            _ => measure(plan, &counts, &redis),
        };
        let m = match measured {
            Ok(m) => m,
            Err(e) => {
                // One transport failing (a peer that can't start, a lost datagram stream, no Redis server)
                // must not cost the other rows: list it as skipped and go on.
                bar.suspend(|| eprintln!("{} ({}, {} B) skipped: {e}", plan.transport, plan.wait, plan.size));
                skipped.push(Skipped {
                    transport: plan.transport,
                    wait: plan.wait,
                    size: plan.size,
                    clients: None,
                    reason: e.to_string(),
                });
                bar.inc(2);
                continue;
            }
        };
        bar.inc(1);
        bar.set_message(format!("limit probe, {} B", plan.size));
        let after = run_probe(plan.size, &counts)?;
        bar.inc(1);
        rows.push(Row::new(plan.transport, plan.wait, plan.size, &m.rtt, m.throughput, before, after));
        before = after;
    }
    let fanout_report = match &fanout {
        Some(settings) => fanout::run(settings, &bar, &mut skipped)?,
        None => fanout::FanoutReport::default(),
    };
    bar.finish_and_clear();
    report::fill_spsc_ratios(&mut rows);
    report::fill_raw_ratios(&mut rows);
    report::fill_mechanism_ratios(&mut rows, raw::mechanism_of);
    if let Some(path) = &args.plot {
        let title = format!(
            "ringwire bench: {} ({} cpus{})",
            machine.cpu,
            machine.cpus,
            if machine.hypervisor { ", VM" } else { "" }
        );
        plot::svg(path, &rows, &title)?;
    }
    if args.json {
        println!("{}", report::json(&machine, &rows, &skipped, &fanout_report)?);
    } else {
        if plans.is_empty() {
            print!("{}", report::machine_line(&machine, args.quick));
        } else {
            print!("{}", report::table(&machine, &rows, &skipped, args.quick));
        }
        print!("{}", fanout::table(&fanout_report, &skipped));
    }
    Ok(())
}

/// The ring rows use the default geometry: 1 MiB of data, messages up to 64 KiB.
const RING_MAX_MESSAGE: usize = 64 << 10;

/// Bare-hardware latency (p50 of a ping-pong) and throughput (fixed-slot ring) for `size`.
fn run_probe(size: usize, counts: &Counts) -> CliResult<ProbeSample> {
    let mut h = histogram();
    let mem = SharedMem::create()?;
    let mut cmd = peer_command(PeerMode::LimitEcho, size, 0, "spin")?;
    mem.pass_to(&mut cmd);
    let mut child = cmd.spawn()?;
    probe::latency(&mem, &mut child, counts.probe_samples / 10, counts.probe_samples, |ns| {
        h.saturating_record(ns);
    })?;
    reap(child)?;
    let tput = probe_stream(size, counts.stream(size))?;
    Ok(ProbeSample { rtt_p50: h.value_at_quantile(0.5) as f64, msgs_per_sec: tput.msgs_per_sec })
}

fn probe_stream(size: usize, count: u64) -> CliResult<Throughput> {
    let mem = SharedMem::create()?;
    let mut cmd = peer_command(PeerMode::LimitSink, size, count, "spin")?;
    mem.pass_to(&mut cmd);
    let mut child = cmd.spawn()?;
    let elapsed = probe::stream(&mem, &mut child, &base_payload(size), count)?;
    reap(child)?;
    Ok(Throughput::new(count, size, elapsed))
}

/// `broker`: the Redis server of the redis rows, the AMQP broker of the amqp row.
fn measure(plan: &Plan, counts: &Counts, broker: &str) -> CliResult<Measured> {
    match plan.transport {
        "limit" => {
            let mut rtt = histogram();
            let mem = SharedMem::create()?;
            let mut cmd = peer_command(PeerMode::LimitEcho, plan.size, 0, "spin")?;
            mem.pass_to(&mut cmd);
            let mut child = cmd.spawn()?;
            probe::latency(&mem, &mut child, counts.rtt_warmup, counts.rtt_samples, |ns| {
                rtt.saturating_record(ns);
            })?;
            reap(child)?;
            let throughput = probe_stream(plan.size, counts.stream(plan.size))?;
            Ok(Measured { rtt, throughput })
        }
        "shm-spsc" => Ok(Measured {
            rtt: shm_rtt_with(plan, counts, false)?,
            throughput: shm_stream_with(plan, counts.stream(plan.size), false)?,
        }),
        "shm-spsc+batch" => Ok(Measured {
            rtt: shm_rtt_with(plan, counts, true)?,
            throughput: shm_stream_with(plan, counts.stream(plan.size), true)?,
        }),
        "shm-spsc+async" => Ok(Measured {
            rtt: asyncio::rtt(plan, counts)?,
            throughput: asyncio::stream(plan, counts.stream(plan.size))?,
        }),
        "shm-spsc+events" => Ok(Measured {
            rtt: shm_events_rtt(plan, counts)?,
            throughput: shm_events_stream(plan, counts.stream(plan.size))?,
        }),
        "shm-mpmc" | "shm-mpmc+batch" | "shm-broadcast" | "shm-broadcast+batch" => {
            let wait = parse_wait(plan.wait)?;
            let buffered = plan.transport.ends_with("+batch");
            let (rtt, throughput) = if plan.transport.starts_with("shm-mpmc") {
                slots::mpmc(plan, counts, wait, buffered)?
            } else {
                slots::bcast(plan, counts, wait, buffered)?
            };
            Ok(Measured { rtt, throughput })
        }
        t if transports::NAMES.contains(&transports::base_of(t).0) => {
            let mut rtt = histogram();
            // Kernel transports wake a sleeping peer on every message (tens of microseconds here), so they
            // get a 25th of the ring's round trips and stream messages (40 000 round trips: still 40
            // samples beyond p99.9); the redis rows, two hops through a server and a request-reply per
            // message sent, a 250th; amqp, whose every send waits for the broker to write the message to
            // disk and confirm it, a 1000th. This keeps the default run near two minutes on two cores.
            let div = match t {
                "amqp" => 1000,
                // A pipelined sender does not wait for each reply: ten times as many as in block.
                t if transports::is_redis(t) && plan.wait == "pipelined" => 25,
                t if transports::is_redis(t) => 250,
                _ => 25,
            };
            let (warmup, samples) = (counts.rtt_warmup / div, counts.rtt_samples / div);
            transports::rtt(t, plan.wait, plan.size, warmup, samples, broker, &mut rtt)?;
            let n = counts.stream(plan.size) / div;
            let elapsed = transports::stream(t, plan.wait, plan.size, n, broker)?;
            Ok(Measured { rtt, throughput: Throughput::new(n, plan.size, elapsed) })
        }
        t if async_transports::NAMES.contains(&t) => {
            // The same message counts as the blocking rows they are compared with (see above).
            let mut rtt = histogram();
            let (warmup, samples) = (counts.rtt_warmup / 25, counts.rtt_samples / 25);
            async_transports::rtt(t, plan.size, warmup, samples, &mut rtt)?;
            let n = counts.stream(plan.size) / 25;
            let elapsed = async_transports::stream(t, plan.size, n)?;
            Ok(Measured { rtt, throughput: Throughput::new(n, plan.size, elapsed) })
        }
        t if raw::NAMES.contains(&t) => {
            // The same message counts as the kernel transport rows over this mechanism (see below).
            let (warmup, samples) = (counts.rtt_warmup / 25, counts.rtt_samples / 25);
            let rtt = raw::rtt(t, plan.wait, plan.size, warmup, samples)?;
            let throughput = raw::stream(t, plan.wait, plan.size, counts.stream(plan.size) / 25)?;
            Ok(Measured { rtt, throughput })
        }
        "crossbeam" => Ok(Measured {
            rtt: crossbeam_rtt(plan.size, counts)?,
            throughput: crossbeam_stream(plan.size, counts.stream(plan.size))?,
        }),
        "rtrb" => Ok(Measured {
            rtt: rtrb_rtt(plan.size, counts)?,
            throughput: rtrb_stream(plan.size, counts.stream(plan.size))?,
        }),
        other => Err(format!("no measurement for {other}").into()),
    }
}

/// Two anonymous rings (A: to the peer, B: back) shared with a freshly spawned peer.
fn shm_pair(
    mode: PeerMode,
    plan: &Plan,
    count: u64,
) -> CliResult<(ringwire::shm::ShmProducer, ringwire::shm::ShmConsumer, Child)> {
    let a = ShmRing::anonymous(RingConfig::default())?;
    let b = ShmRing::anonymous(RingConfig::default())?;
    let mut cmd = peer_command(mode, plan.size, count, plan.wait)?;
    a.share_with(&mut cmd, RING_A_VAR);
    b.share_with(&mut cmd, RING_B_VAR);
    let child = cmd.spawn()?;
    let wait = parse_wait(plan.wait)?;
    let mut tx = a.producer()?;
    let mut rx = b.consumer()?;
    tx.set_wait_strategy(wait);
    rx.set_wait_strategy(wait);
    // The peer says "ready" once attached; a peer that dies first gives PeerDied, not a hang.
    let hello = rx.recv_timeout(Duration::from_secs(30))?;
    if &*hello != b"ready" {
        return Err("benchmark peer sent a bad greeting".into());
    }
    drop(hello);
    Ok((tx, rx, child))
}

/// The `shm-spsc` round trip; `buffered` (`shm-spsc+batch`): each message committed with
/// `commit_buffered` and published by `flush` (what a lone buffered message costs).
fn shm_rtt_with(plan: &Plan, counts: &Counts, buffered: bool) -> CliResult<Histogram<u64>> {
    let (mut tx, mut rx, child) = shm_pair(PeerMode::RingEcho, plan, 0)?;
    let base = base_payload(plan.size);
    let mut h = histogram();
    for i in 0..counts.rtt_warmup + counts.rtt_samples {
        let t0 = Instant::now();
        let mut slot = tx.reserve(plan.size)?;
        stamp(&mut slot, &base, i);
        if buffered {
            slot.commit_buffered();
            tx.flush();
        } else {
            slot.commit();
        }
        let reply = rx.recv()?;
        let dt = t0.elapsed().as_nanos() as u64;
        if !verify(&reply, &base, i) {
            return Err(format!("shm-spsc echo returned a wrong message at {i}").into());
        }
        if i >= counts.rtt_warmup {
            h.saturating_record(dt);
        }
    }
    drop(tx);
    reap(child)?;
    Ok(h)
}

/// `shm-spsc` through the event layer: each message emitted as an event (raw body, a short name) with
/// `EventSender` over the ring producer, received as one with `EventReceiver`; the peer is the same ring
/// echo (it sends frames back with their `ext`).
fn shm_events_rtt(plan: &Plan, counts: &Counts) -> CliResult<Histogram<u64>> {
    let (tx, rx, child) = shm_pair(PeerMode::RingEcho, plan, 0)?;
    let (mut tx, mut rx) = (EventSender::new(Ring(tx)), EventReceiver::new(Ring(rx)));
    let base = base_payload(plan.size);
    let mut msg = base.clone();
    let mut h = histogram();
    for i in 0..counts.rtt_warmup + counts.rtt_samples {
        let t0 = Instant::now();
        stamp(&mut msg, &base, i);
        tx.emit_bytes(transports::EVENT_NAME, &msg)?;
        let reply = rx.recv_ref_wait(Wait::Forever)?;
        let dt = t0.elapsed().as_nanos() as u64;
        if reply.name() != transports::EVENT_NAME || !verify(reply.bytes(), &base, i) {
            return Err(format!("shm-spsc echo returned a wrong event at {i}").into());
        }
        if i >= counts.rtt_warmup {
            h.saturating_record(dt);
        }
    }
    drop(tx);
    reap(child)?;
    Ok(h)
}

fn shm_events_stream(plan: &Plan, count: u64) -> CliResult<Throughput> {
    let (tx, mut rx, child) = shm_pair(PeerMode::RingSink, plan, count)?;
    let mut tx = EventSender::new(Ring(tx));
    let base = base_payload(plan.size);
    let mut msg = base.clone();
    let t0 = Instant::now();
    for i in 0..count {
        stamp(&mut msg, &base, i);
        tx.emit_bytes(transports::EVENT_NAME, &msg)?;
    }
    let verdict = rx.recv()?.to_vec();
    let elapsed = t0.elapsed();
    drop(tx);
    reap(child)?;
    if verdict != b"ok" {
        return Err("shm-spsc sink saw a wrong event".into());
    }
    Ok(Throughput::new(count, plan.size, elapsed))
}

/// The `shm-spsc` stream; `buffered` (`shm-spsc+batch`): every message committed with
/// `commit_buffered` (published in batches of `DEFAULT_BATCH_BYTES`), one `flush` at the end.
fn shm_stream_with(plan: &Plan, count: u64, buffered: bool) -> CliResult<Throughput> {
    let (mut tx, mut rx, child) = shm_pair(PeerMode::RingSink, plan, count)?;
    let base = base_payload(plan.size);
    let t0 = Instant::now();
    for i in 0..count {
        let mut slot = tx.reserve(plan.size)?;
        stamp(&mut slot, &base, i);
        if buffered {
            slot.commit_buffered();
        } else {
            slot.commit();
        }
    }
    tx.flush();
    let verdict = rx.recv()?.to_vec();
    let elapsed = t0.elapsed();
    reap(child)?;
    if verdict != b"ok" {
        return Err("shm-spsc sink saw a wrong message".into());
    }
    Ok(Throughput::new(count, plan.size, elapsed))
}

fn crossbeam_rtt(size: usize, counts: &Counts) -> CliResult<Histogram<u64>> {
    let (to_tx, to_rx) = crossbeam_channel::bounded::<Vec<u8>>(4096);
    let (back_tx, back_rx) = crossbeam_channel::bounded::<Vec<u8>>(4096);
    let echo = std::thread::spawn(move || {
        pin_to(1);
        for m in to_rx {
            if back_tx.send(m).is_err() {
                break;
            }
        }
    });
    let base = base_payload(size);
    let mut msg = base.clone();
    let mut h = histogram();
    for i in 0..counts.rtt_warmup + counts.rtt_samples {
        let t0 = Instant::now();
        stamp(&mut msg, &base, i);
        to_tx.send(msg)?;
        msg = back_rx.recv()?;
        let dt = t0.elapsed().as_nanos() as u64;
        if !verify(&msg, &base, i) {
            return Err("crossbeam echo returned a wrong message".into());
        }
        if i >= counts.rtt_warmup {
            h.saturating_record(dt);
        }
    }
    drop(to_tx);
    echo.join().map_err(|_| "crossbeam echo thread panicked")?;
    Ok(h)
}

fn crossbeam_stream(size: usize, count: u64) -> CliResult<Throughput> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(4096);
    let sink = std::thread::spawn(move || {
        pin_to(1);
        let base = base_payload(size);
        let mut ok = true;
        for i in 0..count {
            match rx.recv() {
                Ok(m) => ok &= verify(&m, &base, i),
                Err(_) => return false,
            }
        }
        ok
    });
    let base = base_payload(size);
    let t0 = Instant::now();
    for i in 0..count {
        let mut m = vec![0; size];
        stamp(&mut m, &base, i);
        tx.send(m)?;
    }
    let ok = sink.join().map_err(|_| "crossbeam sink panicked")?;
    let elapsed = t0.elapsed();
    if !ok {
        return Err("crossbeam sink saw a wrong message".into());
    }
    Ok(Throughput::new(count, size, elapsed))
}

/// rtrb (the fastest in-process SPSC ring in the Rust ecosystem) as a byte ring: each message is `size`
/// bytes written into a write chunk and read out of a read chunk in place (no allocation, no framing: both
/// sides know the size), between two pinned threads spinning on `slots()`. The in-process reference a
/// user would pick instead of ringwire's heap ring.
const RTRB_BYTES: usize = 1 << 20;

/// Copies message `i` into the ring (spinning until `size` bytes are free).
fn rtrb_put(tx: &mut rtrb::Producer<u8>, base: &[u8], i: u64) {
    let size = base.len();
    loop {
        if let Ok(mut chunk) = tx.write_chunk(size) {
            let (a, b) = chunk.as_mut_slices();
            let k = a.len();
            a.copy_from_slice(&base[..k]);
            b.copy_from_slice(&base[k..]);
            // Stamp the sequence number as `stamp` does, across the chunk's two slices.
            for (j, byte) in i.to_le_bytes().into_iter().take(size.min(8)).enumerate() {
                if j < k {
                    a[j] = byte;
                } else {
                    b[j - k] = byte;
                }
            }
            chunk.commit_all();
            return;
        }
        std::hint::spin_loop();
    }
}

/// Takes the next `size`-byte message out of the ring into `out` (spinning until it is there).
fn rtrb_take(rx: &mut rtrb::Consumer<u8>, out: &mut [u8]) {
    loop {
        if let Ok(chunk) = rx.read_chunk(out.len()) {
            let (a, b) = chunk.as_slices();
            out[..a.len()].copy_from_slice(a);
            out[a.len()..].copy_from_slice(b);
            chunk.commit_all();
            return;
        }
        std::hint::spin_loop();
    }
}

fn rtrb_rtt(size: usize, counts: &Counts) -> CliResult<Histogram<u64>> {
    let (mut to_tx, mut to_rx) = rtrb::RingBuffer::<u8>::new(RTRB_BYTES);
    let (mut back_tx, mut back_rx) = rtrb::RingBuffer::<u8>::new(RTRB_BYTES);
    let total = counts.rtt_warmup + counts.rtt_samples;
    let echo = std::thread::spawn(move || {
        pin_to(1);
        let mut buf = vec![0u8; size];
        for _ in 0..total {
            rtrb_take(&mut to_rx, &mut buf);
            loop {
                if let Ok(mut chunk) = back_tx.write_chunk(size) {
                    let (a, b) = chunk.as_mut_slices();
                    let k = a.len();
                    a.copy_from_slice(&buf[..k]);
                    b.copy_from_slice(&buf[k..]);
                    chunk.commit_all();
                    break;
                }
                std::hint::spin_loop();
            }
        }
    });
    let base = base_payload(size);
    let mut reply = vec![0u8; size];
    let mut h = histogram();
    for i in 0..total {
        let t0 = Instant::now();
        rtrb_put(&mut to_tx, &base, i);
        rtrb_take(&mut back_rx, &mut reply);
        let dt = t0.elapsed().as_nanos() as u64;
        if !verify(&reply, &base, i) {
            return Err(format!("rtrb echo returned a wrong message at {i}").into());
        }
        if i >= counts.rtt_warmup {
            h.saturating_record(dt);
        }
    }
    echo.join().map_err(|_| "rtrb echo thread panicked")?;
    Ok(h)
}

fn rtrb_stream(size: usize, count: u64) -> CliResult<Throughput> {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u8>::new(RTRB_BYTES);
    let sink = std::thread::spawn(move || {
        pin_to(1);
        let base = base_payload(size);
        let mut buf = vec![0u8; size];
        let mut ok = true;
        for i in 0..count {
            rtrb_take(&mut rx, &mut buf);
            ok &= verify(&buf, &base, i);
        }
        ok
    });
    let base = base_payload(size);
    let t0 = Instant::now();
    for i in 0..count {
        rtrb_put(&mut tx, &base, i);
    }
    let ok = sink.join().map_err(|_| "rtrb sink panicked")?;
    let elapsed = t0.elapsed();
    if !ok {
        return Err("rtrb sink saw a wrong message".into());
    }
    Ok(Throughput::new(count, size, elapsed))
}
