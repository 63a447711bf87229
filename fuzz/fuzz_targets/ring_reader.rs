//! Fuzzes everything that parses shared memory written by a peer: the consumer's record walk, the
//! re-attaching producer's header walk, and the frame header decoder. The input becomes the ring's
//! cursors and data area; every outcome must be a typed error or a message within bounds.
//!
//! Run: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none ring_reader -- -max_total_time=60`
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwire::{RingConfig, ShmOptions, ShmRing};
use std::os::unix::fs::FileExt;

const CAPACITY: usize = 4096;
const MAX: usize = 1000;
const DATA_OFFSET: u64 = 4096;
const HEAD: u64 = 0x100;
const TAIL: u64 = 0x80;

fuzz_target!(|input: &[u8]| {
    if input.len() >= 8 {
        let _ = ringwire::wire::FrameHeader::from_bytes(input[..8].try_into().unwrap());
    }
    if input.len() < 16 {
        return;
    }
    let name = format!("ringwire-fuzz-{}", std::process::id());
    let _ = ShmRing::unlink("/dev/shm", &name);
    let ring = ShmOptions::new(RingConfig::new(CAPACITY, MAX)).create(&name).expect("create");
    let file = std::fs::OpenOptions::new().write(true).open(format!("/dev/shm/{name}")).unwrap();
    // Cursors: a head and a tail hint, nudged towards plausible values half of the time.
    let mut head = u64::from_le_bytes(input[..8].try_into().unwrap());
    let mut tail = u64::from_le_bytes(input[8..16].try_into().unwrap());
    if head & 1 == 0 {
        head = (head >> 1) % (4 * CAPACITY as u64) & !7;
        tail = head + (tail % CAPACITY as u64 & !7);
    }
    file.write_all_at(&head.to_le_bytes(), HEAD).unwrap();
    file.write_all_at(&tail.to_le_bytes(), TAIL).unwrap();
    let data = &input[16..input.len().min(16 + CAPACITY)];
    file.write_all_at(data, DATA_OFFSET).unwrap();

    if let Ok(mut rx) = ring.consumer() {
        for _ in 0..(CAPACITY / 8 + 2) {
            match rx.try_recv() {
                Ok(m) => assert!(m.len() <= MAX),
                Err(_) => break,
            }
        }
    }
    if let Ok(mut tx) = ring.producer() {
        for i in 0..4u8 {
            let _ = tx.try_send(&[i; 100]);
        }
    }
});
