//! SPSC ring test peers (`ringwire-testpeer ring MODE`), on a ring opened by name (`--name`, in `--dir`)
//! or inherited as a memfd (`--fd-env VAR`). Each prints `attached` once its endpoint is attached.

use super::{park_forever, say, PeerResult};
use crate::{check, fill, len_for, seq_of};
use ringwire::spsc::RecvError;
use ringwire::{ShmRing, WaitStrategy};
use std::time::Duration;

/// What an SPSC test peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Sends the deterministic test stream (`--count` messages, or forever with 0), then closes.
    Produce,
    /// Receives and checks the test stream until the producer goes away (or `--count` messages), then
    /// prints a JSON summary `{"received": N, "first": SEQ, "end": "closed|peer-died|count"}`.
    Consume,
    /// Attaches as the producer and waits to be killed.
    HoldProducer,
    /// Attaches as the consumer and waits to be killed.
    HoldConsumer,
}

/// Options of the SPSC test peers.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What the peer does.
    #[arg(value_enum)]
    pub mode: Mode,
    /// The ring's name (in `--dir`).
    #[arg(long)]
    pub name: Option<String>,
    /// Where named rings live.
    #[arg(long, default_value = ringwire::shm::DEFAULT_DIR)]
    pub dir: String,
    /// The environment variable holding an inherited memfd ring.
    #[arg(long)]
    pub fd_env: Option<String>,
    /// Messages to send or receive (0: forever / until the peer goes away).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Largest message of the test stream.
    #[arg(long, default_value_t = 1000)]
    pub max: usize,
    /// consume: the stream is already under way; check from the first message that carries its sequence
    /// number instead of expecting message 0.
    #[arg(long)]
    pub resume: bool,
    /// spin | yield | adaptive
    #[arg(long, default_value = "spin")]
    pub wait: String,
    /// produce: commit with `commit_buffered` (published in batches, by a full ring, and at the end).
    #[arg(long)]
    pub buffered: bool,
}

/// Runs the peer.
pub fn run(args: Args) -> PeerResult {
    let wait = ringwire_cli::util::parse_wait(&args.wait).map_err(|e| e.to_string())?;
    match args.mode {
        Mode::Produce => produce(&args, wait),
        Mode::Consume => consume(&args, wait),
        Mode::HoldProducer => hold(&args, true),
        Mode::HoldConsumer => hold(&args, false),
    }
}

fn open_ring(args: &Args) -> PeerResult<ShmRing> {
    Ok(match (&args.name, &args.fd_env) {
        (Some(name), _) => ShmRing::open_in(&args.dir, name)?,
        (None, Some(var)) => ShmRing::from_env(var)?,
        (None, None) => return Err("ring peers need --name or --fd-env".into()),
    })
}

fn produce(args: &Args, wait: WaitStrategy) -> PeerResult {
    let mut tx = open_ring(args)?.producer()?;
    tx.set_wait_strategy(wait);
    tx.set_liveness_interval(Duration::from_millis(20));
    say("attached");
    let mut seq = 0u64;
    while args.count == 0 || seq < args.count {
        let mut slot = tx.reserve(len_for(seq, args.max))?;
        fill(&mut slot, seq);
        if args.buffered {
            slot.commit_buffered();
        } else {
            slot.commit();
        }
        seq += 1;
    }
    Ok(())
}

/// A consumer that attaches mid-stream starts checking at the first message long enough to carry its
/// sequence number.
fn consume(args: &Args, wait: WaitStrategy) -> PeerResult {
    let mut rx = open_ring(args)?.consumer()?;
    rx.set_wait_strategy(wait);
    rx.set_liveness_interval(Duration::from_millis(20));
    say("attached");
    let (mut received, mut first) = (0u64, None);
    let mut next = if args.resume { None } else { Some(0u64) };
    let end = loop {
        let msg = match rx.recv() {
            Ok(m) => m,
            Err(RecvError::PeerGone) => break "closed",
            Err(RecvError::PeerReset) => break "peer-died",
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

fn hold(args: &Args, producer: bool) -> PeerResult {
    let ring = open_ring(args)?;
    let _endpoint: Box<dyn std::any::Any> =
        if producer { Box::new(ring.producer()?) } else { Box::new(ring.consumer()?) };
    say("attached");
    park_forever()
}
