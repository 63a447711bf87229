//! A work queue across processes — the Rust version of a Redis list / message-queue worker pool, on one
//! host at shared-memory speed. The parent spawns three worker processes that share one anonymous MPMC
//! ring of jobs and one of results; each job goes to exactly one worker. A broadcast ring carries a
//! "shutdown" notice that every worker sees.
//!
//! Run: `cargo run --release --example work_queue`

use ringwire::broadcast::{self, Mode};
use ringwire::mpmc::RecvError;
use ringwire::{RingConfig, ShmBroadcast, ShmQueue};
use std::error::Error;
use std::process::Command;
use std::time::Duration;

const JOBS: &str = "RINGWIRE_JOBS";
const RESULTS: &str = "RINGWIRE_RESULTS";
const CONTROL: &str = "RINGWIRE_CONTROL";

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::var_os(JOBS).is_some() {
        return worker();
    }
    let jobs = ShmQueue::anonymous(RingConfig::new(1 << 16, 64))?;
    let results = ShmQueue::anonymous(RingConfig::new(1 << 16, 64))?;
    let control = ShmBroadcast::anonymous(RingConfig::new(1 << 14, 64), Mode::Overwrite)?;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let mut cmd = Command::new(std::env::current_exe()?);
        jobs.share_with(&mut cmd, JOBS);
        results.share_with(&mut cmd, RESULTS);
        control.share_with(&mut cmd, CONTROL);
        workers.push(cmd.spawn()?);
    }
    let mut tx = jobs.producer()?;
    let mut rx = results.consumer()?;
    let n = 1000u64;
    for job in 0..n {
        tx.send(&job.to_le_bytes())?;
    }
    let mut sum = 0u64;
    let mut per_worker = std::collections::BTreeMap::new();
    for _ in 0..n {
        let r = rx.recv_timeout(Duration::from_secs(10))?;
        let (pid, square) = (u32::from_le_bytes(r[..4].try_into()?), u64::from_le_bytes(r[4..12].try_into()?));
        sum += square;
        *per_worker.entry(pid).or_insert(0) += 1;
    }
    assert_eq!(sum, (0..n).map(|j| j * j).sum::<u64>(), "every job answered exactly once");
    println!("{n} jobs, sum of squares {sum}; jobs per worker pid: {per_worker:?}");
    control.publisher()?.send(b"shutdown")?;
    for mut w in workers {
        w.wait()?;
    }
    Ok(())
}

fn worker() -> Result<(), Box<dyn Error>> {
    // Subscribe before taking jobs, so the shutdown notice can't be missed.
    let mut control = ShmBroadcast::from_env(CONTROL)?.subscriber()?;
    let mut jobs = ShmQueue::from_env(JOBS)?.consumer()?;
    let mut results = ShmQueue::from_env(RESULTS)?.producer()?;
    let pid = std::process::id();
    loop {
        match jobs.recv_timeout(Duration::from_millis(20)) {
            Ok(job) => {
                let j = u64::from_le_bytes(job[..8].try_into()?);
                drop(job); // frees the slot before we block on the results ring
                let mut out = pid.to_le_bytes().to_vec();
                out.extend_from_slice(&(j * j).to_le_bytes());
                results.send(&out)?;
            }
            Err(RecvError::Timeout) => match control.try_recv_vec() {
                Ok(msg) if msg == b"shutdown" => return Ok(()),
                Ok(_) | Err(broadcast::RecvError::Empty) | Err(broadcast::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
}
