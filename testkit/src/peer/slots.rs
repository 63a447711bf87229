//! Test peers for the slot rings (the MPMC work queue and the broadcast ring), each run as a
//! separate process: `ringwire-testpeer slots MODE RING [OPTIONS]`, where RING is a ring name (in `--dir`) or
//! `fd:VAR` for a memfd inherited through the environment variable VAR.
//!
//! Modes (each prints `attached` once its endpoint is attached, unless said otherwise):
//!
//! * `mpmc-produce RING --id P --count N [--dawdle-us U] [--buffered]`: sends messages 0..N (forever
//!   with 0) of stream P, then exits; with `--dawdle-us`, sleeps U µs in the middle of writing each
//!   message; with `--buffered`, commits each with `commit_buffered` (2 KiB batches: 8 slots
//!   of the test stream's 256); with `--many K`, reserves up to K slots per claim (`reserve_many`),
//!   fills them (dawdling in each) and commits them together.
//! * `mpmc-consume RING [--out FILE] [--count N] [--flush-each] [--dawdle-us U]`: receives until every
//!   producer has gone (or N messages), checking every byte and that each producer's messages come in
//!   order; writes each message's tag (`id << 40 | seq`, u64 LE) to FILE, before dropping its read
//!   guard; prints a JSON summary. A message that fails the byte check is written as [`CORRUPT`] before
//!   the peer exits with an error. `--flush-each`: each tag goes to the file (one `write`) before the
//!   guard is dropped, so a consumer killed at any moment has recorded every message it released (see
//!   `tests/slot_process.rs`). `--dawdle-us U`: holds each read guard U µs longer, half before
//!   recording the message and half after (a consumer that a kill often finds holding a message).
//!   `--many K`: takes up to K messages per claim (`recv_many`), recording each while the batch is held.
//! * `mpmc-reserve-hold RING --id P --count N`: sends N messages, reserves the next one, writes half of
//!   it, prints `ready` and blocks forever (to be killed mid-message).
//! * `mpmc-hold-read RING [--many K]`: receives one message, prints `holding ID SEQ` and blocks forever
//!   with the read guard held (to be killed mid-read); with `--many K`, takes a batch of up to K
//!   (`recv_many`) and prints `holding ID SEQ xN` (its first message, its size).
//! * `bcast-publish RING --id P --count N [--buffered] [--dawdle-us U]`: publishes messages 0..N
//!   (forever with 0) of stream P; with `--buffered`, each with `send_buffered` / `commit_buffered`
//!   (2 KiB batches); with `--dawdle-us`, reserves each message and sleeps U µs half-way through
//!   writing it.
//! * `bcast-subscribe RING [--out FILE] [--gate] [--pause-every K] [--allow-gaps]`: receives until every
//!   publisher has gone, checking every byte, each publisher's order, and that its messages are
//!   consecutive except across a reported `Lagged` (or anywhere, with `--allow-gaps`: the summary's
//!   `gaps` then counts the messages missing inside streams); counts `Lagged`; prints a JSON summary
//!   (with its final `position`: positions read, lost to `Lagged` or skipped as a dead publisher's).
//!   `--gate`: waits for a line on stdin before the first read; `--pause-every K`: sleeps 1 ms every K
//!   messages (a slow subscriber).
//! * `bcast-abandon RING`: publishes `--count` messages, then claims a slot and stops mid-write
//!   (`__abandon_mid_write`), prints `abandoned` and blocks forever.
//! * `bcast-hold RING`: attaches a subscriber that never reads, and blocks forever.
//! * `open-as RING --kind spsc|mpmc|broadcast`: opens the ring as that kind and prints `ok`,
//!   `wrong-kind K` (the kind number found) or `error: ...`.
//!
//! # Messages
//!
//! Message `seq` of stream `id` starts with `id` (u32 LE) and `seq` (u64 LE). In the test stream (the
//! default) its length is `12 + testkit::len_for(tag, max - 12)` and the rest is `testkit::fill(.., tag)`,
//! with `tag = id << 40 | seq`: the receiver checks every byte from the header alone. With `--size S`
//! (the bench stream) every message is S bytes and the rest is a fixed pattern, cheap to check.
//! `tests/slot_process.rs` and `benches/slots.rs` build the same messages.

use super::{park_forever, say, PeerResult as CliResult};
use crate::{fill, len_for};
use ringwire::broadcast::RecvError as BroadcastRecvError;
use ringwire::mpmc::RecvError;
use ringwire::{OpenError, ShmBroadcast, ShmQueue, ShmRing, WaitStrategy};
use ringwire_cli::util::parse_wait;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Bytes before the payload: stream id (u32 LE) and sequence number (u64 LE).
pub const HEAD: usize = 12;

/// What a slot-ring test peer does (see the module docs for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `mpmc-produce`.
    MpmcProduce,
    /// `mpmc-consume`.
    MpmcConsume,
    /// `mpmc-reserve-hold`.
    MpmcReserveHold,
    /// `mpmc-hold-read`.
    MpmcHoldRead,
    /// `bcast-publish`.
    BcastPublish,
    /// `bcast-subscribe`.
    BcastSubscribe,
    /// `bcast-abandon`.
    BcastAbandon,
    /// `bcast-hold`.
    BcastHold,
    /// `open-as`.
    OpenAs,
}

/// Options of the slot-ring test peers.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The mode (see the module docs).
    #[arg(value_enum)]
    mode: Mode,
    /// The ring: a name in --dir, or fd:VAR for an inherited memfd.
    ring: String,
    #[arg(long, default_value = ringwire::shm::DEFAULT_DIR)]
    dir: String,
    /// The stream id of the messages this endpoint writes.
    #[arg(long, default_value_t = 0)]
    id: u32,
    /// Messages to send (0: forever), or to receive before stopping (0: until every writer has gone).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Largest message of the test stream.
    #[arg(long, default_value_t = 200)]
    max: usize,
    /// Fixed message size: the bench stream instead of the test stream.
    #[arg(long)]
    size: Option<usize>,
    /// spin | yield | adaptive
    #[arg(long, default_value = "adaptive")]
    wait: String,
    /// Liveness interval of blocking calls, in milliseconds.
    #[arg(long)]
    liveness_ms: Option<u64>,
    /// Stuck timeout (slot recovery), in milliseconds.
    #[arg(long)]
    stuck_ms: Option<u64>,
    /// Where consumers and subscribers write the tag of each message received.
    #[arg(long)]
    out: Option<PathBuf>,
    /// bcast-subscribe: wait for a line on stdin before reading.
    #[arg(long)]
    gate: bool,
    /// mpmc-produce, bcast-publish: sleep this many microseconds in the middle of writing each message
    /// (a writer that spends most of its time between claiming a slot and committing it). mpmc-consume: hold
    /// each read guard this much longer (half before recording the message, half after).
    #[arg(long, default_value_t = 0)]
    dawdle_us: u64,
    /// mpmc-consume: write each tag through to `--out` before dropping the message's read guard.
    #[arg(long)]
    flush_each: bool,
    /// mpmc-produce: commit each message with `commit_buffered`; bcast-publish: send each with
    /// `send_buffered`; both in 2 KiB batches.
    #[arg(long)]
    buffered: bool,
    /// bcast-subscribe: a stream may skip messages without a `Lagged` (its publisher was killed with a
    /// batch withheld: the batch's first message is skipped, those behind it delivered); the summary's
    /// `gaps` counts the messages missing inside streams.
    #[arg(long)]
    allow_gaps: bool,
    /// bcast-subscribe: sleep 1 ms every this many messages (0: never).
    #[arg(long, default_value_t = 0)]
    pause_every: u64,
    /// mpmc-consume, mpmc-hold-read: take up to this many messages per claim (`recv_many`; 0: one at a
    /// time with `recv`). Each message of a batch is recorded while the batch is held. mpmc-produce:
    /// reserve up to this many slots per claim (`reserve_many`), fill them and commit them together.
    #[arg(long, default_value_t = 0)]
    many: usize,
    /// open-as: spsc | mpmc | broadcast
    #[arg(long, default_value = "mpmc")]
    kind: String,
}

/// Runs the peer.
pub fn run(args: Args) -> CliResult {
    let stream = match args.size {
        Some(size) if size < HEAD => return Err(format!("--size must be at least {HEAD}").into()),
        Some(size) => Stream::Bench { size },
        None if args.max < HEAD => return Err(format!("--max must be at least {HEAD}").into()),
        None => Stream::Test { max: args.max },
    };
    let p = Params {
        wait: parse_wait(&args.wait).map_err(|e| e.to_string())?,
        liveness: args.liveness_ms.map(Duration::from_millis),
        stuck: args.stuck_ms.map(Duration::from_millis),
        stream,
    };
    match args.mode {
        Mode::MpmcProduce => mpmc_produce(&args, &p),
        Mode::MpmcConsume => mpmc_consume(&args, &p),
        Mode::MpmcReserveHold => mpmc_reserve_hold(&args, &p),
        Mode::MpmcHoldRead => mpmc_hold_read(&args, &p),
        Mode::BcastPublish => bcast_publish(&args, &p),
        Mode::BcastSubscribe => bcast_subscribe(&args, &p),
        Mode::BcastAbandon => bcast_abandon(&args, &p),
        Mode::BcastHold => bcast_hold(&args, &p),
        Mode::OpenAs => open_as(&args),
    }
}

/// Endpoint settings from the command line.
struct Params {
    wait: WaitStrategy,
    liveness: Option<Duration>,
    stuck: Option<Duration>,
    stream: Stream,
}

/// Which messages a peer writes or expects.
#[derive(Clone, Copy, Debug)]
enum Stream {
    /// Deterministic pseudo-random lengths up to `max` and contents (see the module docs).
    Test { max: usize },
    /// `size` bytes each: the header, then [`bench_pattern`].
    Bench { size: usize },
}

impl Stream {
    fn len(self, id: u32, seq: u64) -> usize {
        match self {
            Stream::Test { max } => HEAD + len_for(tag(id, seq), max - HEAD),
            Stream::Bench { size } => size,
        }
    }

    /// Writes message `seq` of stream `id` into `buf`, whose length is `self.len(id, seq)`.
    fn fill(self, buf: &mut [u8], id: u32, seq: u64) {
        buf[..4].copy_from_slice(&id.to_le_bytes());
        buf[4..HEAD].copy_from_slice(&seq.to_le_bytes());
        match self {
            Stream::Test { .. } => fill(&mut buf[HEAD..], tag(id, seq)),
            Stream::Bench { .. } => bench_pattern(&mut buf[HEAD..]),
        }
    }

    /// The (id, seq) of `msg` if every byte of it is right; `scratch` is reused between calls.
    fn check(self, msg: &[u8], scratch: &mut Vec<u8>) -> Result<(u32, u64), String> {
        let Some((id, seq)) = header(msg) else {
            return Err(format!("a {}-byte message is shorter than its header", msg.len()));
        };
        let want = self.len(id, seq);
        let right = want == msg.len()
            && match self {
                Stream::Test { .. } => {
                    scratch.resize(want, 0);
                    self.fill(scratch, id, seq);
                    scratch[..] == *msg
                }
                Stream::Bench { size } => {
                    if scratch.len() != size - HEAD {
                        scratch.resize(size - HEAD, 0);
                        bench_pattern(scratch);
                    }
                    scratch[..] == msg[HEAD..]
                }
            };
        if !right {
            return Err(format!("message {seq} of stream {id} is wrong ({} bytes, want {want})", msg.len()));
        }
        Ok((id, seq))
    }
}

/// Per stream id: the last sequence number received, and whether it was received since the last
/// `Lagged` (so the next one must follow it directly). A vector, not a map: cheap per message.
#[derive(Default)]
struct Streams(Vec<Option<(u64, bool)>>);

impl Streams {
    /// Ids above this are refused (the vector is indexed by id).
    const MAX_ID: u32 = 1 << 16;

    /// Records `seq` for stream `id`; returns what was recorded before.
    fn insert(&mut self, id: u32, seq: u64) -> Result<Option<(u64, bool)>, String> {
        if id >= Self::MAX_ID {
            return Err(format!("stream id {id} out of range"));
        }
        let i = id as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        Ok(self.0[i].replace((seq, true)))
    }

    /// After a `Lagged`: no stream's next message has to follow its last one directly.
    fn forget_order(&mut self) {
        self.0.iter_mut().flatten().for_each(|v| v.1 = false);
    }
}

/// The (id, seq) header of a message.
fn header(msg: &[u8]) -> Option<(u32, u64)> {
    let id = u32::from_le_bytes(msg.get(..4)?.try_into().ok()?);
    let seq = u64::from_le_bytes(msg.get(4..HEAD)?.try_into().ok()?);
    Some((id, seq))
}

/// What `mpmc-consume` writes to `--out` for a message that fails its byte check (no tag is this).
pub const CORRUPT: u64 = u64::MAX;

/// One u64 naming message `seq` of stream `id`: what consumers write to `--out`.
pub fn tag(id: u32, seq: u64) -> u64 {
    (id as u64) << 40 | (seq & ((1 << 40) - 1))
}

/// The payload after the header in the bench stream.
pub fn bench_pattern(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
}

fn open_queue(a: &Args) -> Result<ShmQueue, OpenError> {
    match a.ring.strip_prefix("fd:") {
        Some(var) => ShmQueue::from_env(var),
        None => ShmQueue::open_in(&a.dir, &a.ring),
    }
}

fn open_broadcast(a: &Args) -> Result<ShmBroadcast, OpenError> {
    match a.ring.strip_prefix("fd:") {
        Some(var) => ShmBroadcast::from_env(var),
        None => ShmBroadcast::open_in(&a.dir, &a.ring),
    }
}

/// Applies the command line's settings to an endpoint (all slot-ring endpoints have the same setters).
macro_rules! configure {
    ($endpoint:expr, $p:expr) => {{
        $endpoint.set_wait_strategy($p.wait);
        if let Some(l) = $p.liveness {
            $endpoint.set_liveness_interval(l);
        }
        if let Some(s) = $p.stuck {
            $endpoint.set_stuck_timeout(s);
        }
    }};
}

/// The `--out` file, buffered.
fn out_file(a: &Args) -> CliResult<Option<BufWriter<std::fs::File>>> {
    Ok(match &a.out {
        Some(path) => Some(BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    })
}

/// Copies `msg` into a reserved `slot` of its length in two halves with a pause of `dawdle_us` µs
/// between them (`--dawdle-us`): a writer a kill often finds between claim and commit.
fn write_dawdling(slot: &mut [u8], msg: &[u8], dawdle_us: u64) {
    let half = msg.len() / 2;
    slot[..half].copy_from_slice(&msg[..half]);
    std::thread::sleep(Duration::from_micros(dawdle_us));
    slot[half..].copy_from_slice(&msg[half..]);
}

fn mpmc_produce(a: &Args, p: &Params) -> CliResult {
    let mut tx = open_queue(a)?.producer()?;
    configure!(tx, p);
    tx.set_batch_bytes(2048);
    say("attached");
    let mut seq = 0u64;
    let mut whole = Vec::new();
    while a.count == 0 || seq < a.count {
        if a.many > 0 {
            let want = if a.count == 0 { a.many } else { a.many.min((a.count - seq) as usize) };
            let max = match p.stream {
                Stream::Test { max } => max,
                Stream::Bench { size } => size,
            };
            let mut batch = tx.reserve_many(want, max)?;
            for i in 0..batch.len() {
                let s = seq + i as u64;
                let len = p.stream.len(a.id, s);
                batch.set_len(i, len);
                let slot = batch.get_mut(i).ok_or("a slot past the batch")?;
                if a.dawdle_us == 0 {
                    p.stream.fill(slot, a.id, s);
                } else {
                    whole.resize(len, 0);
                    p.stream.fill(&mut whole, a.id, s);
                    write_dawdling(slot, &whole, a.dawdle_us);
                }
            }
            seq += batch.len() as u64;
            batch.commit();
            continue;
        }
        let len = p.stream.len(a.id, seq);
        let mut slot = tx.reserve(len)?;
        if a.dawdle_us == 0 {
            p.stream.fill(&mut slot, a.id, seq);
        } else {
            whole.resize(len, 0);
            p.stream.fill(&mut whole, a.id, seq);
            write_dawdling(&mut slot, &whole, a.dawdle_us);
        }
        if a.buffered {
            slot.commit_buffered();
        } else {
            slot.commit();
        }
        seq += 1;
    }
    Ok(())
}

fn mpmc_consume(a: &Args, p: &Params) -> CliResult {
    let mut rx = open_queue(a)?.consumer()?;
    configure!(rx, p);
    let mut out = out_file(a)?;
    say("attached");
    let mut last = Streams::default();
    let (mut received, mut scratch) = (0u64, Vec::new());
    let end = loop {
        if a.count != 0 && received == a.count {
            break "count";
        }
        if a.many > 0 {
            let want = if a.count == 0 { a.many } else { a.many.min((a.count - received) as usize) };
            let batch = match rx.recv_many(want) {
                Ok(b) => b,
                Err(RecvError::PeerGone) => break "closed",
                Err(e) => return Err(format!("after {received} messages: {e}").into()),
            };
            let mut ids = Vec::with_capacity(batch.len());
            for msg in batch.iter() {
                ids.push(consume_one(a, p, msg, &mut out, &mut scratch)?);
            }
            // Every message of the batch is on record before its slots are released.
            drop(batch);
            for (id, seq) in ids {
                in_order(&mut last, id, seq)?;
                received += 1;
            }
            continue;
        }
        let msg = match rx.recv() {
            Ok(m) => m,
            Err(RecvError::PeerGone) => break "closed",
            Err(e) => return Err(format!("after {received} messages: {e}").into()),
        };
        let (id, seq) = consume_one(a, p, &msg, &mut out, &mut scratch)?;
        drop(msg);
        in_order(&mut last, id, seq)?;
        received += 1;
    };
    if let Some(mut out) = out {
        out.flush()?;
    }
    let r = rx.recovered();
    say(&format!(
        r#"{{"received": {received}, "end": "{end}", "skipped": {}, "reclaimed": {}}}"#,
        r.skipped, r.reclaimed
    ));
    Ok(())
}

/// One consumer takes positions in increasing order, so it sees each producer's messages in order.
fn in_order(last: &mut Streams, id: u32, seq: u64) -> CliResult {
    if let Some((prev, _)) = last.insert(id, seq)? {
        if seq <= prev {
            return Err(format!("stream {id}: message {seq} after {prev}").into());
        }
    }
    Ok(())
}

/// Checks and records one received message, whose slot the caller still holds.
fn consume_one(
    a: &Args,
    p: &Params,
    msg: &[u8],
    out: &mut Option<BufWriter<std::fs::File>>,
    scratch: &mut Vec<u8>,
) -> CliResult<(u32, u64)> {
    let (id, seq) = match p.stream.check(msg, scratch) {
        Ok(v) => v,
        Err(e) => {
            // Recorded too: a consumer killed before it could exit still tells the test.
            if let Some(out) = out.as_mut() {
                out.write_all(&CORRUPT.to_le_bytes())?;
                out.flush()?;
            }
            return Err(e.into());
        }
    };
    // Recorded while the guard (or batch) is held: if this process dies before it is dropped, the
    // slots stay claimed (a producer reclaims them later), so every message whose slot it released is
    // on record (with --flush-each), and the only ones it can lose unrecorded are those it holds.
    let dawdle = Duration::from_micros(a.dawdle_us / 2);
    if !dawdle.is_zero() {
        std::thread::sleep(dawdle);
    }
    if let Some(out) = out.as_mut() {
        out.write_all(&tag(id, seq).to_le_bytes())?;
        if a.flush_each {
            out.flush()?;
        }
    }
    if !dawdle.is_zero() {
        std::thread::sleep(dawdle);
    }
    Ok((id, seq))
}

fn mpmc_reserve_hold(a: &Args, p: &Params) -> CliResult {
    let mut tx = open_queue(a)?.producer()?;
    configure!(tx, p);
    say("attached");
    for seq in 0..a.count {
        let mut slot = tx.reserve(p.stream.len(a.id, seq))?;
        p.stream.fill(&mut slot, a.id, seq);
        slot.commit();
    }
    let len = p.stream.len(a.id, a.count);
    let mut whole = vec![0; len];
    p.stream.fill(&mut whole, a.id, a.count);
    let mut slot = tx.reserve(len)?;
    slot[..len / 2].copy_from_slice(&whole[..len / 2]);
    say("ready");
    park_forever()
}

fn mpmc_hold_read(a: &Args, p: &Params) -> CliResult {
    let mut rx = open_queue(a)?.consumer()?;
    configure!(rx, p);
    say("attached");
    if a.many > 0 {
        let batch = rx.recv_many(a.many)?;
        let first = batch.get(0).ok_or("an empty batch")?;
        let (id, seq) = p.stream.check(first, &mut Vec::new())?;
        say(&format!("holding {id} {seq} x{}", batch.len()));
        park_forever()
    }
    let msg = rx.recv()?;
    let (id, seq) = p.stream.check(&msg, &mut Vec::new())?;
    say(&format!("holding {id} {seq}"));
    park_forever()
}

fn bcast_publish(a: &Args, p: &Params) -> CliResult {
    let mut tx = open_broadcast(a)?.publisher()?;
    configure!(tx, p);
    tx.set_batch_bytes(2048);
    say("attached");
    let mut buf = Vec::new();
    let mut seq = 0u64;
    while a.count == 0 || seq < a.count {
        let len = p.stream.len(a.id, seq);
        buf.resize(len, 0);
        p.stream.fill(&mut buf, a.id, seq);
        if a.dawdle_us != 0 {
            // Claimed, half written, a pause, the rest: a kill often lands between claim and commit.
            let mut slot = tx.reserve(len)?;
            write_dawdling(&mut slot, &buf, a.dawdle_us);
            if a.buffered {
                slot.commit_buffered();
            } else {
                slot.commit();
            }
        } else if a.buffered {
            tx.send_buffered(&buf)?;
        } else {
            tx.send(&buf)?;
        }
        seq += 1;
    }
    Ok(())
}

fn bcast_subscribe(a: &Args, p: &Params) -> CliResult {
    let mut rx = open_broadcast(a)?.subscriber()?;
    configure!(rx, p);
    let mut out = out_file(a)?;
    say("attached");
    if a.gate {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    let mut buf = vec![0u8; rx.max_message()];
    // Per stream: the last sequence number seen, and whether the next must follow it directly (no
    // `Lagged` since). Before the first `Lagged`, a stream's first message must be its message 0: every
    // stream starts after this subscriber attached.
    let mut last = Streams::default();
    let mut lagged_yet = false;
    let (mut received, mut lagged, mut lost, mut gaps, mut scratch) = (0u64, 0u64, 0u64, 0u64, Vec::new());
    loop {
        let n = match rx.recv_into(&mut buf) {
            Ok(n) => n,
            Err(BroadcastRecvError::Lagged(k)) => {
                lagged += 1;
                lost += k;
                lagged_yet = true;
                last.forget_order();
                continue;
            }
            Err(BroadcastRecvError::PeerGone) => break,
            Err(e) => return Err(format!("after {received} messages: {e}").into()),
        };
        let (id, seq) = p.stream.check(&buf[..n], &mut scratch)?;
        match last.insert(id, seq)? {
            Some((prev, _)) if seq <= prev => {
                return Err(format!("stream {id}: message {seq} after {prev}").into());
            }
            Some((prev, true)) if seq != prev + 1 && a.allow_gaps => gaps += seq - prev - 1,
            Some((prev, true)) if seq != prev + 1 => {
                return Err(format!("stream {id}: message {seq} after {prev} with no Lagged between").into());
            }
            None if !lagged_yet && seq != 0 && a.allow_gaps => gaps += seq,
            None if !lagged_yet && seq != 0 => {
                return Err(format!("stream {id}: first message is {seq}, not 0").into());
            }
            _ => {}
        }
        if let Some(out) = &mut out {
            out.write_all(&tag(id, seq).to_le_bytes())?;
        }
        received += 1;
        if a.pause_every != 0 && received % a.pause_every == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if let Some(mut out) = out {
        out.flush()?;
    }
    say(&format!(
        r#"{{"received": {received}, "lagged": {lagged}, "lost": {lost}, "gaps": {gaps}, "skipped": {}, "position": {}}}"#,
        rx.recovered().skipped,
        rx.position()
    ));
    Ok(())
}

fn bcast_abandon(a: &Args, p: &Params) -> CliResult {
    let mut tx = open_broadcast(a)?.publisher()?;
    configure!(tx, p);
    say("attached");
    let mut buf = Vec::new();
    for seq in 0..a.count {
        buf.resize(p.stream.len(a.id, seq), 0);
        p.stream.fill(&mut buf, a.id, seq);
        tx.send(&buf)?;
    }
    tx.__abandon_mid_write();
    say("abandoned");
    park_forever()
}

fn bcast_hold(a: &Args, p: &Params) -> CliResult {
    let mut rx = open_broadcast(a)?.subscriber()?;
    configure!(rx, p);
    say("attached");
    park_forever()
}

fn open_as(a: &Args) -> CliResult {
    let r = match a.kind.as_str() {
        "spsc" => match a.ring.strip_prefix("fd:") {
            Some(var) => ShmRing::from_env(var).map(drop),
            None => ShmRing::open_in(&a.dir, &a.ring).map(drop),
        },
        "mpmc" => open_queue(a).map(drop),
        "broadcast" => open_broadcast(a).map(drop),
        other => return Err(format!("unknown ring kind {other} (spsc, mpmc, broadcast)").into()),
    };
    match r {
        Ok(()) => say("ok"),
        Err(OpenError::WrongKind(k)) => say(&format!("wrong-kind {k}")),
        Err(e) => say(&format!("error: {e}")),
    }
    Ok(())
}
