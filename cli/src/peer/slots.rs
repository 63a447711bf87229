//! Peer side of the `shm-mpmc` and `shm-broadcast` rows (the parent side is `bench::slots`): echo every
//! message of ring A back on ring B, or check `count` messages of the bench stream and answer the
//! verdict.

use super::args::{RING_A_VAR, RING_B_VAR};
use crate::util::{base_payload, verify, CliResult};
use ringwire::broadcast;
use ringwire::mpmc::{RecvError, RECV_MANY_MAX};
use ringwire::{ShmBroadcast, ShmQueue, WaitStrategy};

/// MPMC: echo (`echo`) or sink of `count` messages of `size` bytes; `many`: the sink takes up to
/// [`RECV_MANY_MAX`] messages per claim (`recv_many`).
pub fn mpmc(echo: bool, many: bool, wait: WaitStrategy, size: usize, count: u64) -> CliResult {
    let base = base_payload(size);
    let mut rx = ShmQueue::from_env(RING_A_VAR)?.consumer()?;
    let mut tx = ShmQueue::from_env(RING_B_VAR)?.producer()?;
    rx.set_wait_strategy(wait);
    tx.set_wait_strategy(wait);
    tx.send(b"ready")?;
    if echo {
        loop {
            let msg = match rx.recv() {
                Ok(m) => m,
                Err(RecvError::PeerGone) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let mut out = tx.reserve(msg.len())?;
            out.copy_from_slice(&msg);
            out.commit();
        }
    }
    let mut good = true;
    if many {
        let mut i = 0;
        while i < count {
            let batch = rx.recv_many(RECV_MANY_MAX.min((count - i) as usize))?;
            for msg in batch.iter() {
                good &= verify(msg, &base, i);
                i += 1;
            }
        }
    } else {
        for i in 0..count {
            let msg = rx.recv()?;
            good &= verify(&msg, &base, i);
        }
    }
    tx.send(if good { b"ok" } else { b"no" })?;
    Ok(())
}

/// Broadcast: echo (`echo`) or sink of `count` messages of `size` bytes.
pub fn bcast(echo: bool, wait: WaitStrategy, size: usize, count: u64) -> CliResult {
    let base = base_payload(size);
    let mut rx = ShmBroadcast::from_env(RING_A_VAR)?.subscriber()?;
    let mut tx = ShmBroadcast::from_env(RING_B_VAR)?.publisher()?;
    rx.set_wait_strategy(wait);
    tx.set_wait_strategy(wait);
    tx.send(b"ready")?;
    // Read in place (the bench's rings are back-pressure rings): one copy per hop, as the SPSC peer's.
    if echo {
        loop {
            let msg = match rx.recv_in_place() {
                Ok(m) => m,
                Err(broadcast::RecvError::PeerGone) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            tx.send(&msg)?;
        }
    }
    let mut good = true;
    for i in 0..count {
        good &= verify(&rx.recv_in_place()?, &base, i);
    }
    tx.send(if good { b"ok" } else { b"no" })?;
    Ok(())
}
