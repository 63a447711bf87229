//! The `shm-mpmc` and `shm-broadcast` rows of `ringwire bench`: both sides of each measurement.
//!
//! Round trip: two anonymous rings shared with a peer process (A: to the peer, B: back); the peer echoes
//! every message. Streaming: the parent writes `count` messages into A, the peer checks every one and
//! answers "ok" on B. MPMC rows run one producer and one consumer per ring; broadcast rows run one
//! publisher and one subscriber in back-pressure mode, so that nothing is lost and every message is
//! checked. Ring geometry: 1 MiB of slots sized for the row's message size.

use super::plan::{histogram, peer_command, reap, Counts, Plan};
use super::report::Throughput;
use crate::peer::{PeerMode, RING_A_VAR, RING_B_VAR};
use crate::util::{base_payload, stamp, verify, CliResult};
use hdrhistogram::Histogram;
use ringwire::broadcast::Mode;
use ringwire::{RingConfig, ShmBroadcast, ShmQueue, WaitStrategy};
use std::process::Child;
use std::time::{Duration, Instant};

fn config(size: usize) -> RingConfig {
    RingConfig::new(1 << 20, size)
}

const GREETING_TIMEOUT: Duration = Duration::from_secs(30);

/// Parent side of a `shm-mpmc` row; `buffered`: `shm-mpmc+batch`: the round trip commits each message
/// with `commit_buffered` and one `flush` after it; streaming claims on both sides in batches of up to
/// 64 (`reserve_many`, the sink's `recv_many`).
pub fn mpmc(
    plan: &Plan,
    counts: &Counts,
    wait: WaitStrategy,
    buffered: bool,
) -> CliResult<(Histogram<u64>, Throughput)> {
    let commit = |slot: ringwire::mpmc::WriteGuard<'_, _>| {
        if buffered {
            slot.commit_buffered()
        } else {
            slot.commit()
        }
    };
    let base = base_payload(plan.size);
    // Round trip.
    let (mut tx, mut rx, child) = mpmc_pair(PeerMode::MpmcEcho, plan, 0, wait)?;
    let mut h = histogram();
    for i in 0..counts.rtt_warmup + counts.rtt_samples {
        let t0 = Instant::now();
        let mut slot = tx.reserve(plan.size)?;
        stamp(&mut slot, &base, i);
        commit(slot);
        tx.flush();
        let reply = rx.recv()?;
        let dt = t0.elapsed().as_nanos() as u64;
        if !verify(&reply, &base, i) {
            return Err(format!("shm-mpmc echo returned a wrong message at {i}").into());
        }
        if i >= counts.rtt_warmup {
            h.saturating_record(dt);
        }
    }
    drop((tx, rx));
    reap(child)?;
    // Streaming.
    let count = counts.stream(plan.size);
    let sink = if buffered { PeerMode::MpmcSinkMany } else { PeerMode::MpmcSink };
    let (mut tx, mut rx, child) = mpmc_pair(sink, plan, count, wait)?;
    let t0 = Instant::now();
    if buffered {
        let mut i = 0;
        while i < count {
            let mut batch = tx.reserve_many(ringwire::mpmc::RECV_MANY_MAX.min((count - i) as usize), plan.size)?;
            for j in 0..batch.len() {
                stamp(batch.get_mut(j).ok_or("a slot past the batch")?, &base, i + j as u64);
            }
            i += batch.len() as u64;
            batch.commit();
        }
    } else {
        for i in 0..count {
            let mut slot = tx.reserve(plan.size)?;
            stamp(&mut slot, &base, i);
            commit(slot);
        }
    }
    tx.flush();
    let verdict = rx.recv()?.to_vec();
    let elapsed = t0.elapsed();
    drop((tx, rx));
    reap(child)?;
    if verdict != b"ok" {
        return Err("shm-mpmc sink saw a wrong message".into());
    }
    Ok((h, Throughput::new(count, plan.size, elapsed)))
}

fn mpmc_pair(
    mode: PeerMode,
    plan: &Plan,
    count: u64,
    wait: WaitStrategy,
) -> CliResult<(ringwire::shm::ShmQueueProducer, ringwire::shm::ShmQueueConsumer, Child)> {
    let a = ShmQueue::anonymous(config(plan.size))?;
    let b = ShmQueue::anonymous(config(plan.size))?;
    let mut cmd = peer_command(mode, plan.size, count, plan.wait)?;
    a.share_with(&mut cmd, RING_A_VAR);
    b.share_with(&mut cmd, RING_B_VAR);
    let child = cmd.spawn()?;
    let mut tx = a.producer()?;
    let mut rx = b.consumer()?;
    tx.set_wait_strategy(wait);
    rx.set_wait_strategy(wait);
    // The peer says "ready" once attached; one that dies first leaves the ring without producers.
    let hello = rx.recv_timeout(GREETING_TIMEOUT)?;
    if &*hello != b"ready" {
        return Err("benchmark peer sent a bad greeting".into());
    }
    drop(hello);
    Ok((tx, rx, child))
}

/// Parent side of a `shm-broadcast` row; `buffered`: `shm-broadcast+batch`, each message sent with
/// `send_buffered` (round trip: one `flush` after it; streaming: one at the end). Both sides read in
/// place (`recv_in_place`: the rings are back-pressure rings), as the SPSC rows do.
pub fn bcast(
    plan: &Plan,
    counts: &Counts,
    wait: WaitStrategy,
    buffered: bool,
) -> CliResult<(Histogram<u64>, Throughput)> {
    let base = base_payload(plan.size);
    let mut buf = vec![0u8; plan.size];
    let (mut tx, mut rx, child) = bcast_pair(PeerMode::BcastEcho, plan, 0, wait)?;
    let mut h = histogram();
    for i in 0..counts.rtt_warmup + counts.rtt_samples {
        let t0 = Instant::now();
        stamp(&mut buf, &base, i);
        if buffered {
            tx.send_buffered(&buf)?;
            tx.flush();
        } else {
            tx.send(&buf)?;
        }
        let reply = rx.recv_in_place()?;
        let dt = t0.elapsed().as_nanos() as u64;
        if !verify(&reply, &base, i) {
            return Err(format!("shm-broadcast echo returned a wrong message at {i}").into());
        }
        drop(reply);
        if i >= counts.rtt_warmup {
            h.saturating_record(dt);
        }
    }
    drop((tx, rx));
    reap(child)?;
    let count = counts.stream(plan.size);
    let (mut tx, mut rx, child) = bcast_pair(PeerMode::BcastSink, plan, count, wait)?;
    let t0 = Instant::now();
    for i in 0..count {
        stamp(&mut buf, &base, i);
        if buffered {
            tx.send_buffered(&buf)?;
        } else {
            tx.send(&buf)?;
        }
    }
    tx.flush();
    let n = rx.recv_into(&mut buf)?;
    let elapsed = t0.elapsed();
    let ok = &buf[..n] == b"ok";
    drop((tx, rx));
    reap(child)?;
    if !ok {
        return Err("shm-broadcast sink saw a wrong message".into());
    }
    Ok((h, Throughput::new(count, plan.size, elapsed)))
}

fn bcast_pair(
    mode: PeerMode,
    plan: &Plan,
    count: u64,
    wait: WaitStrategy,
) -> CliResult<(ringwire::shm::ShmPublisher, ringwire::shm::ShmSubscriber, Child)> {
    let a = ShmBroadcast::anonymous(config(plan.size), Mode::Backpressure)?;
    let b = ShmBroadcast::anonymous(config(plan.size), Mode::Backpressure)?;
    let mut cmd = peer_command(mode, plan.size, count, plan.wait)?;
    a.share_with(&mut cmd, RING_A_VAR);
    b.share_with(&mut cmd, RING_B_VAR);
    // Subscribe to B before the peer can publish on it.
    let mut rx = b.subscriber()?;
    let mut tx = a.publisher()?;
    tx.set_wait_strategy(wait);
    rx.set_wait_strategy(wait);
    let child = cmd.spawn()?;
    // The peer subscribes to A, then says "ready" on B: from then on it sees everything we publish.
    let hello = rx.recv_vec_deadline(Instant::now() + GREETING_TIMEOUT)?;
    if hello != b"ready" {
        return Err("benchmark peer sent a bad greeting".into());
    }
    Ok((tx, rx, child))
}
