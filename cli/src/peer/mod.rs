//! The far side of each benchmark row, run as a separate process: `ringwire __peer MODE [OPTIONS]`.
//!
//! Parent and child share one typed description, [`PeerArgs`] (with the mode as the [`PeerMode`] enum
//! and the transport as [`Adapter`]): the parent builds it and turns it into a command line with
//! [`PeerArgs::to_args`], the child parses it back with clap, and [`run`] dispatches on the enum with an
//! exhaustive `match`. Only what `ringwire bench` itself needs is here; the test suites' fault-injecting
//! peers live in the dev-only `ringwire-testkit` crate.
//!
//! [`connect`] is the parent side for the transport rows: it starts a peer and reaches it over one
//! adapter.

mod args;
pub mod connect;
pub mod connect_async;
mod slots;

pub use args::{Adapter, PeerArgs, PeerMode, RING_A_VAR, RING_B_VAR};

use crate::probe::{self, SharedMem};
use crate::util::{base_payload, parse_wait, pin_to, stamp, verify, CliResult};
use ringwire::spsc::RecvError;
use ringwire::transport::{Receiver, Sender, TransportRecvError, Wait};
use ringwire::{ShmRing, WaitStrategy};

/// The child side: runs the peer `args` describes.
pub fn run(args: PeerArgs) -> CliResult {
    // Die with the parent: a benchmark peer must never outlive the run that started it.
    // SAFETY: prctl(PR_SET_PDEATHSIG) has no memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if let Some(cpu) = args.cpu {
        pin_to(cpu);
    }
    let wait = parse_wait(&args.wait)?;
    match args.mode {
        PeerMode::LimitEcho => probe::latency_peer(&SharedMem::from_env()?),
        PeerMode::LimitSink => probe::stream_peer(&SharedMem::from_env()?, args.size, args.count),
        PeerMode::RingEcho => ring_echo(wait)?,
        PeerMode::RingSink => ring_sink(wait, args.size, args.count)?,
        PeerMode::MpmcEcho => slots::mpmc(true, false, wait, args.size, args.count)?,
        PeerMode::MpmcSink => slots::mpmc(false, false, wait, args.size, args.count)?,
        PeerMode::MpmcSinkMany => slots::mpmc(false, true, wait, args.size, args.count)?,
        PeerMode::BcastEcho => slots::bcast(true, wait, args.size, args.count)?,
        PeerMode::BcastSink => slots::bcast(false, wait, args.size, args.count)?,
        PeerMode::Echo | PeerMode::Sink => {
            let adapter = args.adapter.ok_or("echo and sink peers need --adapter")?;
            let halves = connect::child(adapter, &args)?;
            match args.mode {
                PeerMode::Sink => sink(halves, args.size, args.count)?,
                _ => echo(halves)?,
            }
        }
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
            Err(RecvError::PeerGone) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // The frame goes back with its ext (an event's name length), so event rows run through this peer.
        let ext = msg.ext();
        let mut out = tx.reserve(msg.len())?;
        out.copy_from_slice(&msg);
        if ext == 0 {
            out.commit();
        } else {
            out.commit_ext(msg.len(), ext);
        }
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
        // An event's name (the first `ext` bytes) is not part of the checked stream.
        if bad.is_none() && !verify(&msg[msg.ext() as usize..], &base, i) {
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

/// Messages between two acknowledgements from a benchmark sink: about 16 KiB of messages, so that the
/// sender's window (four of these) fits a default socket buffer and datagrams are not dropped.
pub fn sink_ack_every(size: usize) -> u64 {
    (16_384 / (size as u64 + 64)).clamp(1, 64)
}

/// The benchmark sink: receives `count` messages of the bench stream, checks each, acknowledges every
/// `sink_ack_every(size)` (the sender's flow control: datagrams have none of their own), then sends the
/// verdict.
pub fn sink<S: Sender, R: Receiver>((mut tx, mut rx): (S, R), size: usize, count: u64) -> CliResult {
    let base = base_payload(size);
    let mut ok = true;
    // One buffer for every message (`recv_frame_into_vec`), as a receive loop that keeps up should.
    let mut msg = Vec::new();
    for i in 0..count {
        let ext = rx.recv_frame_into_vec(&mut msg, Wait::Forever)?;
        // An event's name (the first `ext` bytes) is not part of the checked stream.
        ok &= verify(&msg[ext as usize..], &base, i);
        if (i + 1) % sink_ack_every(size) == 0 {
            tx.send(&(i + 1).to_le_bytes())?;
        }
    }
    tx.send(if ok { b"ok" } else { b"bad" })?;
    // Wait for the sender to close, so that nothing we sent is cut off by our exit.
    while rx.recv().is_ok() {}
    Ok(())
}

/// Echoes every frame back with its `ext` (so an event comes back as the same event, and an ack request
/// as a valid ack reply: see `ringwire::events`); skips (and reports on stderr) frames over the limit;
/// closes once the peer has closed.
pub fn echo<S: Sender, R: Receiver>((mut tx, mut rx): (S, R)) -> CliResult {
    // One buffer for every message (`recv_frame_into_vec`): no allocation per message.
    let mut msg = Vec::new();
    loop {
        match rx.recv_frame_into_vec(&mut msg, Wait::Forever) {
            Ok(0) => tx.send(&msg)?,
            Ok(ext) => tx.send_frame_wait(ext, &[&msg], Wait::Forever)?,
            Err(TransportRecvError::PeerGone) => {
                tx.close()?;
                return Ok(());
            }
            // One message skipped (oversize, or a bad datagram): the connection goes on.
            Err(TransportRecvError::BadFrame(e)) => eprintln!("echo: skipped: {e}"),
            // Broken streams, resets, I/O errors: nothing more will arrive.
            Err(e) => return Err(e.into()),
        }
    }
}
