//! The seed's Redis consumer: subscribes to `channel`, prints the first message, unsubscribes and quits.
//!
//! Run: `cargo run --example redis_consumer --features redis` (server: `$REDIS_URL`, default
//! redis://127.0.0.1:6379), then `redis_producer`.

use ringwire::transport::redis::Subscriber;
use ringwire::transport::Receiver;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut subscriber = Subscriber::connect(&url, "channel")?; // returns once subscribed
    println!("subscribed to channel");
    let message = subscriber.recv()?; // subscriber.on('message', ...)
    println!("Received from channel: {}", String::from_utf8_lossy(&message));
    Ok(()) // unsubscribe + quit: dropping the subscriber
}
