//! `shm-spsc+async`: the `shm-spsc` rows with this side awaiting instead of blocking
//! (`reserve_async` / `recv_async` on a current-thread tokio runtime; the peer is the same blocking
//! ring echo or sink, with the row's wait). What awaiting costs: each round trip's reply is awaited,
//! so the task parks and is woken through the reactor (ring futex → reactor thread → waker → the
//! runtime's thread); the stream mostly finds room and awaits only when the ring is full. The row's
//! `rtt/raw` and `tput/rw` are its ratios to `shm-spsc` with the same wait in the same run.

use super::plan::{histogram, reap, Counts, Plan};
use super::report::Throughput;
use crate::peer::PeerMode;
use crate::util::{base_payload, stamp, verify, CliResult};
use hdrhistogram::Histogram;
use std::time::Instant;

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().build()?)
}

pub(super) fn rtt(plan: &Plan, counts: &Counts) -> CliResult<Histogram<u64>> {
    let (mut tx, mut rx, child) = super::shm_pair(PeerMode::RingEcho, plan, 0)?;
    let base = base_payload(plan.size);
    let h = runtime()?.block_on(async {
        let mut h = histogram();
        for i in 0..counts.rtt_warmup + counts.rtt_samples {
            let t0 = Instant::now();
            let mut slot = tx.reserve_async(plan.size).await?;
            stamp(&mut slot, &base, i);
            slot.commit();
            let reply = rx.recv_async().await?;
            let dt = t0.elapsed().as_nanos() as u64;
            if !verify(&reply, &base, i) {
                return Err(format!("shm-spsc+async echo returned a wrong message at {i}").into());
            }
            if i >= counts.rtt_warmup {
                h.saturating_record(dt);
            }
        }
        CliResult::Ok(h)
    })?;
    drop(tx);
    reap(child)?;
    Ok(h)
}

pub(super) fn stream(plan: &Plan, count: u64) -> CliResult<Throughput> {
    let (mut tx, mut rx, child) = super::shm_pair(PeerMode::RingSink, plan, count)?;
    let base = base_payload(plan.size);
    let (verdict, elapsed) = runtime()?.block_on(async {
        let t0 = Instant::now();
        for i in 0..count {
            let mut slot = tx.reserve_async(plan.size).await?;
            stamp(&mut slot, &base, i);
            slot.commit();
        }
        let verdict = rx.recv_vec_async().await?;
        CliResult::Ok((verdict, t0.elapsed()))
    })?;
    reap(child)?;
    if verdict != b"ok" {
        return Err("shm-spsc+async sink saw a wrong message".into());
    }
    Ok(Throughput::new(count, plan.size, elapsed))
}
