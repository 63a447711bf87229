//! Reads the messages of `spsc_producer` from the named ring until the publisher closes it.
//!
//! Run: `cargo run --example spsc_consumer` (after starting `spsc_producer`)

use ringwire::spsc::RecvError;
use ringwire::ShmRing;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let mut rx = ShmRing::open("ringwire-example")?.consumer()?;
    loop {
        match rx.recv() {
            Ok(msg) => println!("got: {}", String::from_utf8_lossy(&msg)),
            Err(RecvError::PeerGone) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("producer closed the ring");
    Ok(())
}
