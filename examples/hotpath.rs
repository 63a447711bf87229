//! Instruction-count probe of the hot path, for `valgrind --tool=callgrind` (deterministic counts):
//! one thread alternately sends and receives batches of 64-byte messages through a heap ring, with
//! the same stamp/verify work as `ringwire bench`.
//!
//! Run: `cargo build --release --example hotpath && valgrind --tool=callgrind target/release/examples/hotpath [MODE]`
//! where MODE is `plain` (the default: SPSC, each message committed with `commit`), `buffered` (SPSC,
//! each committed with `commit_buffered`, one `flush` per 1,000), `mpmc` or `mpmc-buffered` (the same
//! on an MPMC ring of 1 MiB of 128-byte slots), `broadcast` (a back-pressure broadcast ring of the same
//! geometry: `try_send` of a stamped copy, `try_recv_into` and a check) or `broadcast-in-place` (the
//! same, read with `try_recv_in_place`), or `mpmc-batched` (the MPMC ring, runs of up to 64 claimed
//! with `try_reserve_many` and `try_recv_many`).

fn main() {
    match std::env::args().nth(1).as_deref().unwrap_or("plain") {
        "plain" => spsc::<false>(),
        "buffered" => spsc::<true>(),
        "mpmc" => mpmc::<false>(),
        "mpmc-buffered" => mpmc::<true>(),
        "broadcast" => broadcast::<false>(),
        "broadcast-in-place" => broadcast::<true>(),
        "mpmc-batched" => mpmc_batched(),
        other => {
            panic!("unknown mode {other:?}: plain, buffered, mpmc, mpmc-buffered, broadcast or broadcast-in-place")
        }
    }
}

const ROUNDS: u64 = 1000;
const BURST: u64 = 1000;

fn base() -> Vec<u8> {
    (0..64u32).map(|i| i.wrapping_mul(2654435761).rotate_right(13) as u8).collect()
}

/// Sends and receives `ROUNDS` bursts of `BURST` messages through the ring `(tx, rx)` made by
/// `$channel`, committing each with `commit_buffered` if `$buffered`, else `commit`.
macro_rules! run {
    ($channel:expr, $buffered:expr) => {{
        let (mut tx, mut rx) = $channel.unwrap();
        let base = base();
        let mut ok = 0u64;
        for round in 0..ROUNDS {
            for i in 0..BURST {
                let mut slot = tx.try_reserve(64).unwrap();
                slot.copy_from_slice(&base);
                slot[..8].copy_from_slice(&(round * BURST + i).to_le_bytes());
                if $buffered {
                    slot.commit_buffered();
                } else {
                    slot.commit();
                }
            }
            tx.flush();
            for i in 0..BURST {
                let m = rx.try_recv().unwrap();
                ok += (m[..8] == (round * BURST + i).to_le_bytes() && m[8..] == base[8..]) as u64;
            }
        }
        assert_eq!(ok, ROUNDS * BURST);
    }};
}

fn spsc<const BUFFERED: bool>() {
    run!(ringwire::spsc::channel(ringwire::RingConfig::default()), BUFFERED)
}

fn mpmc<const BUFFERED: bool>() {
    run!(ringwire::mpmc::channel(ringwire::RingConfig::new(1 << 20, 64)), BUFFERED)
}

/// The MPMC ring of `mpmc`, both sides claiming runs of up to 64 slots (`reserve_many`, `recv_many`).
fn mpmc_batched() {
    let (mut tx, mut rx) = ringwire::mpmc::channel(ringwire::RingConfig::new(1 << 20, 64)).unwrap();
    let base = base();
    let mut ok = 0u64;
    for round in 0..ROUNDS {
        let mut i = 0;
        while i < BURST {
            let mut batch = tx.try_reserve_many((BURST - i).min(64) as usize, 64).unwrap();
            for j in 0..batch.len() {
                let slot = batch.get_mut(j).unwrap();
                slot.copy_from_slice(&base);
                slot[..8].copy_from_slice(&(round * BURST + i + j as u64).to_le_bytes());
            }
            i += batch.len() as u64;
            batch.commit();
        }
        let mut i = 0;
        while i < BURST {
            let batch = rx.try_recv_many(64).unwrap();
            for m in batch.iter() {
                ok += (m.len() == 64 && m[..8] == (round * BURST + i).to_le_bytes() && m[8..] == base[8..]) as u64;
                i += 1;
            }
        }
    }
    assert_eq!(ok, ROUNDS * BURST);
}

/// `IN_PLACE`: read with `try_recv_in_place` instead of copied out with `try_recv_into`.
fn broadcast<const IN_PLACE: bool>() {
    use ringwire::broadcast::{channel, Mode};
    let (mut tx, mut rx) = channel(ringwire::RingConfig::new(1 << 20, 64), Mode::Backpressure).unwrap();
    let (base, mut msg, mut buf) = (base(), base(), [0u8; 64]);
    let mut ok = 0u64;
    for round in 0..ROUNDS {
        for i in 0..BURST {
            msg[..8].copy_from_slice(&(round * BURST + i).to_le_bytes());
            tx.try_send(&msg).unwrap();
        }
        for i in 0..BURST {
            let check = |m: &[u8]| m.len() == 64 && m[..8] == (round * BURST + i).to_le_bytes() && m[8..] == base[8..];
            ok += if IN_PLACE {
                check(&rx.try_recv_in_place().unwrap())
            } else {
                let n = rx.try_recv_into(&mut buf).unwrap();
                check(&buf[..n])
            } as u64;
        }
    }
    assert_eq!(ok, ROUNDS * BURST);
}
