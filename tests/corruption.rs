//! A peer that writes arbitrary values into the shared header, cursors and data: opening, attaching,
//! receiving and sending must give typed errors or valid messages, never panic, and never touch memory
//! outside the region (a stray access would kill this test process).

use proptest::prelude::*;
use ringwire::{RingConfig, ShmOptions, ShmRing};
use ringwire_testkit::{fill, len_for};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

const MAX: usize = 1000;
const CONTROL: u64 = 768;
const DATA_OFFSET: u64 = 4096;
const CAPACITY: u64 = 4096;

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-corrupt-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Where an edit lands: the control block or the data area.
fn edit_strategy() -> impl Strategy<Value = (u64, Vec<u8>)> {
    let offset = prop_oneof![0..CONTROL, DATA_OFFSET..DATA_OFFSET + CAPACITY];
    // Whole words from interesting values, or raw bytes.
    let bytes = prop_oneof![
        any::<u64>().prop_map(|v| v.to_le_bytes().to_vec()),
        prop::sample::select(vec![0u64, 1, 8, 0x7f_0000_0000, 1 << 32, 0x7f_0000_0ff8, u64::MAX, 4096, 4088])
            .prop_map(|v| v.to_le_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..16),
    ];
    (offset, bytes)
}

fn exercise(path: &PathBuf, name: &str) {
    // Opening and attaching may fail; whatever succeeds must then behave.
    let Ok(ring) = ShmRing::open(name) else { return };
    if let Ok(mut rx) = ring.consumer() {
        for _ in 0..2000 {
            match rx.try_recv() {
                Ok(m) => assert!(m.len() <= MAX),
                Err(_) => break,
            }
        }
    }
    if let Ok(mut tx) = ring.producer() {
        for seq in 0..50 {
            if tx.try_send(&ringwire_testkit::message(seq, MAX)).is_err() {
                break;
            }
        }
    }
    let _ = path;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_writes_never_panic(
        sent in 0u64..60,
        read in 0u64..60,
        edits in prop::collection::vec(edit_strategy(), 1..8),
    ) {
        let name = unique();
        let ring = ShmOptions::new(RingConfig::new(CAPACITY as usize, MAX)).create(&name).unwrap();
        {
            let mut tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            for seq in 0..sent {
                let Ok(mut slot) = tx.try_reserve(len_for(seq, MAX)) else { break };
                fill(&mut slot, seq);
                slot.commit();
            }
            for _ in 0..read {
                if rx.try_recv().is_err() { break; }
            }
        }
        let path = PathBuf::from("/dev/shm").join(&name);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for (off, bytes) in &edits {
            let end = if *off < CONTROL { CONTROL } else { DATA_OFFSET + CAPACITY };
            let n = bytes.len().min((end - off) as usize);
            file.write_all_at(&bytes[..n], *off).unwrap();
        }
        exercise(&path, &name);
        drop(ring);
    }
}

/// A hostile "producer" thread scribbles random words over the data area and cursors while a consumer
/// keeps polling: only typed errors or messages within bounds may come out.
#[test]
fn concurrent_scribbling_never_escapes_the_region() {
    let name = unique();
    let ring = ShmOptions::new(RingConfig::new(CAPACITY as usize, MAX)).create(&name).unwrap();
    let path = PathBuf::from("/dev/shm").join(&name);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let scribbler = {
        let stop = stop.clone();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::thread::spawn(move || {
            let mut x = 0x1234_5678_9abc_def1u64;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = if x % 4 == 0 { 256 } else { DATA_OFFSET + (x >> 20) % CAPACITY / 8 * 8 };
                let _ = file.write_all_at(&(x >> 3).to_le_bytes(), off);
            }
        })
    };
    for _ in 0..20 {
        // Each round re-attaches: a consumer that found corruption stays poisoned.
        let Ok(mut rx) = ring.consumer() else { continue };
        for _ in 0..5_000 {
            if let Ok(m) = rx.try_recv() {
                assert!(m.len() <= MAX);
            }
        }
        drop(rx);
        if let Ok(mut tx) = ring.producer() {
            for seq in 0..100 {
                let _ = tx.try_send(&ringwire_testkit::message(seq, MAX));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
}
