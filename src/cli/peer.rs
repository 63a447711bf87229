//! The far side of each benchmark row, run as a separate process (`ringwire __peer MODE ...`).

use super::probe::{self, SharedMem};
use super::{base_payload, pin_to, stamp, verify, CliResult};
use ringwire::transport::{Receiver, Sender, TransportRecvError, TransportSendError};
use ringwire::{RecvError, ShmRing, WaitStrategy};

pub const RING_A_VAR: &str = "RINGWIRE_BENCH_A";
pub const RING_B_VAR: &str = "RINGWIRE_BENCH_B";

#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// limit-echo | limit-sink | ring-echo | ring-sink (and test modes: produce, consume, hold-*,
    /// echo-<transport>, sink-<transport>, garbage-stdio, midframe-exit, flood-stdio, close-stdout,
    /// take-redis-stream)
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
    /// Transport test modes: where to connect (a path, abstract name, host:port, FIFO directory,
    /// ws://host:port/path, or redis://host:port/NAME).
    #[arg(long)]
    addr: Option<String>,
    /// Transport test modes: the largest message each half accepts.
    #[arg(long, default_value_t = ringwire::transport::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
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
        mode if super::slotbench::MODES.contains(&mode) => super::slotbench::peer(mode, wait, args.size, args.count)?,
        "produce" => produce(&args, wait)?,
        "consume" => consume(&args, wait)?,
        "hold-producer" => hold(&args, true)?,
        "hold-consumer" => hold(&args, false)?,
        mode if super::slotpeer::handles(mode) => super::slotpeer::run(mode, &args.rest)?,
        mode if mode.starts_with("echo-") || mode.starts_with("sink-") || TRANSPORT_MODES.contains(&mode) => {
            transport_mode(&args)?
        }
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

/// Transport test modes other than `echo-*`.
const TRANSPORT_MODES: &[&str] =
    &["garbage-stdio", "midframe-exit", "flood-stdio", "close-stdout", "take-redis-stream"];

fn redis_options(args: &PeerArgs) -> ringwire::transport::redis::Options {
    ringwire::transport::redis::Options { max_message: args.max_message, ..Default::default() }
}

/// The transport test modes: `echo-<adapter>` echoes every message back until the peer closes, then
/// closes too; the others misbehave on stdio in one specific way each.
fn transport_mode(args: &PeerArgs) -> CliResult {
    use ringwire::transport::{fork, pipe, shm, stdio, tcp, udp, unix, FdReceiver, FdSender};
    let addr = || args.addr.clone().ok_or("this mode needs --addr");
    let limit = |(mut tx, mut rx): (FdSender, FdReceiver)| {
        tx.set_max_message(args.max_message);
        rx.set_max_message(args.max_message);
        (tx, rx)
    };
    // `sink-<adapter>` connects exactly as `echo-<adapter>` does, then runs the benchmark sink instead.
    let sink_mode = args.mode.strip_prefix("sink-").map(|t| format!("echo-{t}"));
    macro_rules! echo {
        ($pair:expr) => {
            match sink_mode {
                Some(_) => sink($pair, args.size, args.count),
                None => echo($pair),
            }
        };
    }
    match sink_mode.as_deref().unwrap_or(args.mode.as_str()) {
        "echo-stdio" => echo!(limit(stdio::from_process_stdio()?)),
        "echo-fork" => echo!(limit(fork::from_env()?)),
        "echo-fifo" => {
            let dir = std::path::PathBuf::from(addr()?);
            // The parent opens down for writing first, then up for reading: same order here.
            let rx = pipe::open_fifo_receiver(dir.join("down"))?;
            let tx = pipe::open_fifo_sender(dir.join("up"))?;
            echo!(limit((tx, rx)))
        }
        "echo-unix" => echo!(limit(unix::connect(addr()?)?)),
        "echo-unix-abstract" => echo!(limit(unix::connect_abstract(addr()?.as_bytes())?)),
        "echo-tcp" => echo!(limit(tcp::connect(addr()?)?)),
        "echo-udp" => {
            let (mut tx, rx) = udp::connect("127.0.0.1:0", addr()?)?;
            tx.send(b"hello")?; // tells the parent our address
            echo!((tx, rx))
        }
        "echo-shm" => echo!(shm::from_env()?),
        "echo-websocket" => {
            let opts = ringwire::transport::websocket::Options { max_message: args.max_message, ..Default::default() };
            echo!(ringwire::transport::websocket::connect_with(&addr()?, &opts)?)
        }
        "echo-redis-pubsub" => {
            use ringwire::transport::redis::{split_addr, Publisher, Subscriber};
            let (url, name) = split_addr(&addr()?).ok_or("--addr must be redis://host:port/NAME")?;
            let opts = redis_options(args);
            let rx = Subscriber::with_options(&url, &name, opts.clone())?;
            let mut tx = Publisher::with_options(&url, &format!("{name}.reply"), opts)?;
            tx.send(b"hello")?; // subscribed: the parent may start
            echo!((tx, rx))
        }
        "echo-redis-stream" => {
            use ringwire::transport::redis::{split_addr, StreamConsumer, StreamProducer};
            let (url, name) = split_addr(&addr()?).ok_or("--addr must be redis://host:port/NAME")?;
            let opts = redis_options(args);
            let rx = StreamConsumer::with_options(&url, &format!("{name}.down"), "ringwire", "peer", opts.clone())?;
            let mut tx = StreamProducer::with_options(&url, &format!("{name}.up"), opts)?;
            tx.set_max_len(Some(ringwire::testkit::peers::STREAM_CAP));
            echo!((tx, rx))
        }
        // Takes one message from a stream as consumer `--name` of group `ringwire` (claiming nothing),
        // says so, and waits to be killed without acknowledging it.
        "take-redis-stream" => {
            use ringwire::transport::redis::{split_addr, StreamConsumer};
            let (url, key) = split_addr(&addr()?).ok_or("--addr must be redis://host:port/KEY")?;
            let name = args.name.as_deref().ok_or("this mode needs --name")?;
            let mut rx = StreamConsumer::with_options(&url, &key, "ringwire", name, redis_options(args))?;
            rx.set_claim_idle(None);
            let msg = rx.recv()?;
            say(&format!("got {}", String::from_utf8_lossy(&msg)));
            loop {
                std::thread::park();
            }
        }
        "echo-json-fork" => {
            let (mut tx, mut rx) = fork::from_env()?;
            loop {
                let v: serde_json::Value = match ringwire::transport::recv_json(&mut rx) {
                    Err(ringwire::transport::JsonError::Recv(TransportRecvError::PeerGone)) => return Ok(()),
                    r => r?,
                };
                ringwire::transport::send_json(&mut tx, &serde_json::json!({ "got": v }))?;
            }
        }
        // One good frame, then bytes that are no frame header, then wait for the end of input.
        "garbage-stdio" => {
            let (mut tx, mut rx) = stdio::from_process_stdio()?;
            tx.send(b"good")?;
            let mut raw = tx.get_ref().ok_or("closed")?;
            std::io::Write::write_all(&mut raw, b"\xde\xad\xbe\xef\x99\x99\x99\x99garbage")?;
            while rx.recv().is_ok() {}
            Ok(())
        }
        // A header announcing 100 bytes, 10 of them, and exit.
        "midframe-exit" => {
            let (mut tx, _rx) = stdio::from_process_stdio()?;
            tx.send(b"whole")?;
            let mut raw = tx.get_ref().ok_or("closed")?;
            let mut partial =
                ringwire::frame::FrameHeader { len: 100, kind: ringwire::frame::Kind::Data }.to_bytes().to_vec();
            partial.extend_from_slice(&[7; 10]);
            std::io::Write::write_all(&mut raw, &partial)?;
            std::process::exit(0);
        }
        // Sends until the peer goes away; exit code 3 says it saw EPIPE as an error (not a SIGPIPE death).
        "flood-stdio" => {
            let (mut tx, _rx) = stdio::from_process_stdio()?;
            let msg = vec![0x5a; 4096];
            loop {
                match tx.send(&msg) {
                    Ok(()) => {}
                    Err(TransportSendError::PeerReset) => std::process::exit(3),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // One frame, then close stdout while staying alive until stdin ends.
        "close-stdout" => {
            let (mut tx, mut rx) = stdio::from_process_stdio()?;
            tx.send(b"bye")?;
            tx.close()?;
            drop(tx);
            while rx.recv().is_ok() {}
            Ok(())
        }
        other => Err(format!("unknown peer mode {other}").into()),
    }
}

/// Messages between two acknowledgements from a benchmark sink: about 16 KiB of messages, so that the
/// sender's window (four of these) fits a default socket buffer and datagrams are not dropped.
pub fn sink_ack_every(size: usize) -> u64 {
    (16_384 / (size as u64 + 64)).clamp(1, 64)
}

/// The benchmark sink: receives `count` messages of the bench stream, checks each, acknowledges every
/// `sink_ack_every(size)` (the sender's flow control: datagrams have none of their own), then sends the
/// verdict.
fn sink<S: Sender, R: Receiver>((mut tx, mut rx): (S, R), size: usize, count: u64) -> CliResult {
    let base = base_payload(size);
    let mut ok = true;
    for i in 0..count {
        let msg = rx.recv()?;
        ok &= verify(&msg, &base, i);
        if (i + 1) % sink_ack_every(size) == 0 {
            tx.send(&(i + 1).to_le_bytes())?;
        }
    }
    tx.send(if ok { b"ok" } else { b"bad" })?;
    // Wait for the sender to close, so that nothing we sent is cut off by our exit.
    while rx.recv().is_ok() {}
    Ok(())
}

/// Echoes every message back; skips (and reports on stderr) frames over the limit; closes once the peer
/// has closed.
fn echo<S: Sender, R: Receiver>((mut tx, mut rx): (S, R)) -> CliResult {
    loop {
        match rx.recv() {
            Ok(msg) => tx.send(&msg)?,
            Err(TransportRecvError::PeerGone) => {
                tx.close()?;
                return Ok(());
            }
            Err(TransportRecvError::BadFrame(e)) => eprintln!("echo: skipped: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
}
