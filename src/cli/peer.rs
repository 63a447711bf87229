//! The far side of each benchmark row, run as a separate process (`ringwire __peer MODE ...`).

use super::probe::{self, SharedMem};
use super::{base_payload, pin_to, stamp, verify, CliResult};
use ringwire::{RecvError, ShmRing, WaitStrategy};

pub const RING_A_VAR: &str = "RINGWIRE_BENCH_A";
pub const RING_B_VAR: &str = "RINGWIRE_BENCH_B";

#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// limit-echo | limit-sink | ring-echo | ring-sink
    mode: String,
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// spin | yield | adaptive
    #[arg(long, default_value = "spin")]
    wait: String,
    #[arg(long)]
    cpu: Option<usize>,
    /// Test modes: the ring's name (with --dir), or --fd-env for an inherited memfd.
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = ringwire::shm::DEFAULT_DIR)]
    dir: String,
    #[arg(long)]
    fd_env: Option<String>,
    /// Test modes: largest message of the deterministic test stream.
    #[arg(long, default_value_t = 1000)]
    max: usize,
    /// Test mode consume: the stream is already under way; check from the first message that carries
    /// its sequence number instead of expecting message 0.
    #[arg(long)]
    resume: bool,
}

pub fn parse_wait(s: &str) -> CliResult<WaitStrategy> {
    Ok(match s {
        "spin" => WaitStrategy::Spin,
        "yield" => WaitStrategy::SpinYield,
        "adaptive" => WaitStrategy::default(),
        other => return Err(format!("unknown wait strategy {other:?} (spin, yield, adaptive)").into()),
    })
}

/// Opens the ring a test mode names.
fn open_ring(args: &PeerArgs) -> CliResult<ShmRing> {
    Ok(match (&args.name, &args.fd_env) {
        (Some(name), _) => ShmRing::open_in(&args.dir, name)?,
        (None, Some(var)) => ShmRing::from_env(var)?,
        (None, None) => return Err("test modes need --name or --fd-env".into()),
    })
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Test mode: sends the deterministic test stream (`--count` messages, or forever with 0), then closes.
fn produce(args: &PeerArgs, wait: WaitStrategy) -> CliResult {
    use ringwire::testkit::{fill, len_for};
    let mut tx = open_ring(args)?.producer()?;
    tx.set_wait_strategy(wait);
    tx.set_liveness_interval(std::time::Duration::from_millis(20));
    say("attached");
    let mut seq = 0u64;
    while args.count == 0 || seq < args.count {
        let mut slot = tx.reserve(len_for(seq, args.max))?;
        fill(&mut slot, seq);
        slot.commit();
        seq += 1;
    }
    Ok(())
}

/// Test mode: receives and checks the deterministic test stream until the producer goes away, then
/// prints a JSON summary. A consumer that attaches mid-stream starts checking at the first message
/// long enough to carry its sequence number.
fn consume(args: &PeerArgs, wait: WaitStrategy) -> CliResult {
    use ringwire::testkit::{check, seq_of};
    let mut rx = open_ring(args)?.consumer()?;
    rx.set_wait_strategy(wait);
    rx.set_liveness_interval(std::time::Duration::from_millis(20));
    say("attached");
    let (mut received, mut first) = (0u64, None);
    let mut next = if args.resume { None } else { Some(0u64) };
    let end = loop {
        let msg = match rx.recv() {
            Ok(m) => m,
            Err(RecvError::Closed) => break "closed",
            Err(RecvError::PeerDied) => break "peer-died",
            Err(e) => return Err(e.into()),
        };
        let seq = match next.or_else(|| seq_of(&msg)) {
            Some(s) => s,
            None => continue,
        };
        if !check(&msg, seq, args.max) {
            return Err(format!("message {seq} is wrong ({} bytes)", msg.len()).into());
        }
        first.get_or_insert(seq);
        next = Some(seq + 1);
        received += 1;
        if args.count != 0 && received == args.count {
            break "count";
        }
    };
    say(&format!(r#"{{"received": {received}, "first": {}, "end": "{end}"}}"#, first.map_or(-1, |f| f as i64)));
    Ok(())
}

/// Test mode: attaches in a role and then waits to be killed.
fn hold(args: &PeerArgs, producer: bool) -> CliResult {
    let ring = open_ring(args)?;
    let _endpoint: Box<dyn std::any::Any> =
        if producer { Box::new(ring.producer()?) } else { Box::new(ring.consumer()?) };
    say("attached");
    loop {
        std::thread::park();
    }
}

pub fn run(args: PeerArgs) -> CliResult {
    // Die with the parent: a benchmark peer must never outlive the run that started it.
    // SAFETY: prctl(PR_SET_PDEATHSIG) has no memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if let Some(cpu) = args.cpu {
        pin_to(cpu);
    }
    let wait = parse_wait(&args.wait)?;
    match args.mode.as_str() {
        "limit-echo" => probe::latency_peer(&SharedMem::from_env()?),
        "limit-sink" => probe::stream_peer(&SharedMem::from_env()?, args.size, args.count),
        "ring-echo" => ring_echo(wait)?,
        "ring-sink" => ring_sink(wait, args.size, args.count)?,
        "produce" => produce(&args, wait)?,
        "consume" => consume(&args, wait)?,
        "hold-producer" => hold(&args, true)?,
        "hold-consumer" => hold(&args, false)?,
        other => return Err(format!("unknown peer mode {other}").into()),
    }
    Ok(())
}

/// Receives on ring A, sends each message back on ring B, until A is closed.
fn ring_echo(wait: WaitStrategy) -> CliResult {
    let mut rx = ShmRing::from_env(RING_A_VAR)?.consumer()?;
    let mut tx = ShmRing::from_env(RING_B_VAR)?.producer()?;
    rx.set_wait_strategy(wait);
    tx.set_wait_strategy(wait);
    tx.send(b"ready")?;
    loop {
        let msg = match rx.recv() {
            Ok(m) => m,
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut out = tx.reserve(msg.len())?;
        out.copy_from_slice(&msg);
        out.commit();
    }
}

/// Receives `count` messages on ring A, verifying each, then reports the verdict on ring B.
fn ring_sink(wait: WaitStrategy, size: usize, count: u64) -> CliResult {
    let mut rx = ShmRing::from_env(RING_A_VAR)?.consumer()?;
    let mut tx = ShmRing::from_env(RING_B_VAR)?.producer()?;
    rx.set_wait_strategy(wait);
    tx.set_wait_strategy(wait);
    let base = base_payload(size);
    tx.send(b"ready")?;
    let mut bad = None;
    for i in 0..count {
        let msg = rx.recv()?;
        if bad.is_none() && !verify(&msg, &base, i) {
            bad = Some(i);
        }
    }
    match bad {
        None => tx.send(b"ok")?,
        Some(i) => {
            let mut m = vec![0; 8];
            stamp(&mut m, &[0; 8], i);
            tx.send(&m)?
        }
    }
    Ok(())
}
