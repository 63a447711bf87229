//! Instruction-count probe of the hot path, for `valgrind --tool=callgrind` (deterministic counts):
//! one thread alternately sends and receives batches of 64-byte messages through a heap ring, with
//! the same stamp/verify work as `ringwire bench`.
//!
//! Run: `cargo build --release --example hotpath && valgrind --tool=callgrind target/release/examples/hotpath`
//! (`... hotpath buffered`: each message committed with `commit_buffered`, one `flush` per 1,000).

fn main() {
    if std::env::args().nth(1).as_deref() == Some("buffered") {
        run::<true>()
    } else {
        run::<false>()
    }
}

fn run<const BUFFERED: bool>() {
    let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default()).unwrap();
    let base: Vec<u8> = (0..64u32).map(|i| i.wrapping_mul(2654435761).rotate_right(13) as u8).collect();
    let mut ok = 0u64;
    for round in 0..1000u64 {
        for i in 0..1000u64 {
            let mut slot = tx.try_reserve(64).unwrap();
            slot.copy_from_slice(&base);
            slot[..8].copy_from_slice(&(round * 1000 + i).to_le_bytes());
            if BUFFERED {
                slot.commit_buffered();
            } else {
                slot.commit();
            }
        }
        tx.flush();
        for i in 0..1000u64 {
            let m = rx.try_recv().unwrap();
            ok += (m[..8] == (round * 1000 + i).to_le_bytes() && m[8..] == base[8..]) as u64;
        }
    }
    assert_eq!(ok, 1_000_000);
}
