//! A peer that writes arbitrary values into an MPMC or broadcast ring's shared control block
//! (cursors, wait cells, participant table) and slots: opening, attaching, sending and receiving must
//! give typed errors or valid messages, never panic, never hang, and never touch memory outside the
//! region (a stray access would kill this test process).

use proptest::prelude::*;
use ringwire::broadcast::Mode;
use ringwire::{RingConfig, ShmBroadcast, ShmQueue};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const MAX: usize = 100;
/// Control block and participant table: 768 + 128 entries x 128 bytes.
const CONTROL: u64 = 768 + 128 * 128;
const DATA_OFFSET: u64 = 5 * 4096;
const CAPACITY: u64 = 4096;

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-slot-corrupt-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn edit_strategy() -> impl Strategy<Value = (u64, Vec<u8>)> {
    // Mostly the live parts: the cursors and cells, the first participant entries, the slots.
    let offset = prop_oneof![128..768u64, 768..768 + 4 * 128u64, 768..CONTROL, DATA_OFFSET..DATA_OFFSET + CAPACITY,];
    let bytes = prop_oneof![
        any::<u64>().prop_map(|v| v.to_le_bytes().to_vec()),
        prop::sample::select(vec![
            0u64,
            1,
            2,
            3,
            31,
            32,
            33,
            63,
            64,
            65,
            1 << 32,
            0x7f_0000_0000,
            u64::MAX,
            u64::MAX - 1
        ])
        .prop_map(|v| v.to_le_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..16),
    ];
    (offset, bytes)
}

fn scribble(name: &str, edits: &[(u64, Vec<u8>)]) {
    let path = PathBuf::from("/dev/shm").join(name);
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for (off, bytes) in edits {
        let end = if *off < CONTROL { CONTROL } else { DATA_OFFSET + CAPACITY };
        let n = bytes.len().min((end - off) as usize);
        file.write_all_at(&bytes[..n], *off).unwrap();
    }
}

fn message(seq: u64) -> Vec<u8> {
    let len = 1 + (seq as usize * 37) % MAX;
    (0..len).map(|i| (seq as u8).wrapping_add(i as u8)).collect()
}

const QUICK: Duration = Duration::from_millis(1);

/// One case takes well under a second (a few hundred 1 ms waits); one that runs past this hangs.
const CASE_LIMIT: Duration = Duration::from_secs(30);

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn mpmc_arbitrary_writes_never_panic(
        sent in 0u64..40,
        read in 0u64..40,
        edits in prop::collection::vec(edit_strategy(), 1..8),
    ) {
        ringwire_testkit::watchdog(CASE_LIMIT, move || mpmc_case(sent, read, &edits))?;
    }

    #[test]
    fn broadcast_arbitrary_writes_never_panic(
        backpressure in any::<bool>(),
        sent in 0u64..80,
        read in 0u64..80,
        edits in prop::collection::vec(edit_strategy(), 1..8),
    ) {
        ringwire_testkit::watchdog(CASE_LIMIT, move || broadcast_case(backpressure, sent, read, &edits))?;
    }
}

/// One case of `mpmc_arbitrary_writes_never_panic`.
fn mpmc_case(sent: u64, read: u64, edits: &[(u64, Vec<u8>)]) -> Result<(), TestCaseError> {
    let name = unique();
    let q = ShmQueue::create(&name, RingConfig::new(CAPACITY as usize, MAX)).unwrap();
    {
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        for seq in 0..sent {
            if tx.try_send(&message(seq)).is_err() {
                break;
            }
        }
        for _ in 0..read {
            if rx.try_recv().is_err() {
                break;
            }
        }
    }
    scribble(&name, edits);
    let Ok(q) = ShmQueue::open(&name) else { return Ok(()) };
    if let Ok(mut rx) = q.consumer() {
        rx.set_stuck_timeout(QUICK);
        rx.set_liveness_interval(QUICK);
        for _ in 0..200 {
            if let Ok(m) = rx.recv_timeout(QUICK) {
                prop_assert!(m.len() <= MAX);
            }
        }
    }
    if let Ok(mut tx) = q.producer() {
        tx.set_stuck_timeout(QUICK);
        tx.set_liveness_interval(QUICK);
        for seq in 0..50 {
            let _ = tx.send_timeout(&message(seq), QUICK);
        }
    }
    drop(q);
    Ok(())
}

/// One case of `broadcast_arbitrary_writes_never_panic`.
fn broadcast_case(backpressure: bool, sent: u64, read: u64, edits: &[(u64, Vec<u8>)]) -> Result<(), TestCaseError> {
    let name = unique();
    let mode = if backpressure { Mode::Backpressure } else { Mode::Overwrite };
    let ring = ShmBroadcast::create(&name, RingConfig::new(CAPACITY as usize, MAX), mode).unwrap();
    {
        let mut rx = ring.subscriber().unwrap();
        let mut tx = ring.publisher().unwrap();
        for seq in 0..sent {
            if tx.try_send(&message(seq)).is_err() {
                break;
            }
        }
        for _ in 0..read {
            if rx.try_recv_vec().is_err() {
                break;
            }
        }
    }
    scribble(&name, edits);
    let Ok(ring) = ShmBroadcast::open(&name) else { return Ok(()) };
    let mut sub = ring.subscriber().ok();
    if let Some(rx) = &mut sub {
        rx.set_stuck_timeout(QUICK);
        rx.set_liveness_interval(QUICK);
    }
    if let Ok(mut tx) = ring.publisher() {
        tx.set_stuck_timeout(QUICK);
        tx.set_liveness_interval(QUICK);
        for seq in 0..50 {
            let _ = tx.send_deadline(&message(seq), std::time::Instant::now() + QUICK);
        }
    }
    if let Some(rx) = &mut sub {
        let mut buf = [0u8; MAX];
        for _ in 0..200 {
            if let Ok(n) = rx.recv_into_deadline(&mut buf, std::time::Instant::now() + QUICK) {
                prop_assert!(n <= MAX);
            }
        }
    }
    drop(ring);
    Ok(())
}
