//! Prints every tick of `broadcast_publisher` until the publisher has gone.
//!
//! Run: `cargo run --example broadcast_subscriber` (after starting `broadcast_publisher`)

use ringwire::broadcast::RecvError;
use ringwire::ShmBroadcast;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let mut rx = ShmBroadcast::open("ringwire-ticks")?.subscriber()?;
    println!("subscribed");
    loop {
        match rx.recv() {
            Ok(tick) => println!("got: {}", String::from_utf8_lossy(tick)),
            Err(RecvError::Lagged(n)) => println!("lagged: {n} ticks lost"),
            Err(RecvError::PeerGone) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("publisher gone");
    Ok(())
}
