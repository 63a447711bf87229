//! The seed's Redis producer: publishes "Hello from producer" on the channel `channel` and quits.
//! Pub/sub is at most once: only subscribers connected at that moment get it.
//!
//! Run: `cargo run --example redis_consumer --features redis` in one terminal, then
//! `cargo run --example redis_producer --features redis` (server: `$REDIS_URL`, default
//! redis://127.0.0.1:6379).

use ringwire::transport::redis::Publisher;
use ringwire::transport::Sender;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut publisher = Publisher::connect(&url, "channel")?;
    publisher.send(b"Hello from producer")?; // client.publish('channel', ...)
    println!("published to {} subscriber(s)", publisher.last_receivers().unwrap_or(0));
    Ok(()) // client.quit()
}
