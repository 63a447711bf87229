//! Publishes five ticks on a named broadcast ring once a subscriber has joined; every subscriber sees
//! every tick. Run `broadcast_subscriber` in another terminal (several if you like).
//!
//! Run: `cargo run --example broadcast_publisher` then `cargo run --example broadcast_subscriber`

use ringwire::broadcast::Mode;
use ringwire::{RingConfig, ShmBroadcast};
use std::error::Error;
use std::time::Duration;

fn main() -> Result<(), Box<dyn Error>> {
    // Back-pressure: a slow subscriber slows the publisher instead of losing ticks.
    let ring = ShmBroadcast::create("ringwire-ticks", RingConfig::new(1 << 16, 256), Mode::Backpressure)?;
    println!("created /dev/shm/ringwire-ticks; waiting for a subscriber");
    let path = std::path::Path::new(ringwire::shm::DEFAULT_DIR).join("ringwire-ticks");
    // The operator view (what `ringwire inspect` shows) tells when someone has subscribed.
    while !ringwire::shm::inspect::inspect(&path)?.snapshot.endpoints.iter().any(|e| e.role == "subscriber") {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut tx = ring.publisher()?;
    for i in 0..5 {
        tx.send(format!("tick {i}").as_bytes())?;
    }
    println!("published 5 ticks");
    Ok(()) // the publisher goes: subscribers see the end after the last tick
}
