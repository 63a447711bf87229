//! Publishes numbered messages into a named ring; run `spsc_consumer` in another terminal.
//!
//! Run: `cargo run --example spsc_producer` then `cargo run --example spsc_consumer`

use ringwire::{RingConfig, ShmRing};
use std::error::Error;
use std::time::Duration;

fn main() -> Result<(), Box<dyn Error>> {
    let ring = ShmRing::create("ringwire-example", RingConfig::default())?;
    println!("created /dev/shm/ringwire-example; waiting for a consumer");
    let mut tx = ring.producer()?;
    for i in 0..10u32 {
        // Zero-copy: reserve space in the ring, write in place, commit.
        let text = format!("message {i}");
        let mut slot = tx.reserve(text.len())?;
        slot.copy_from_slice(text.as_bytes());
        slot.commit();
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(()) // dropping the producer closes the stream; dropping `ring` unlinks the name
}
