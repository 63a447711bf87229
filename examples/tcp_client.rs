//! The seed's `net` client: connects, sends one message, prints the reply, disconnects.
//!
//! Run: `cargo run --example tcp_client --features transport [host:port]` (after `tcp_server`).

use ringwire::transport::{tcp, Receiver, Sender};
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let (mut tx, mut rx) = tcp::connect(&addr)?;
    println!("Connected to server");
    tx.send(b"Hello from client")?;
    println!("Received from server: {}", String::from_utf8_lossy(&rx.recv()?));
    tx.close()?; // client.end()
    println!("Disconnected from server");
    Ok(())
}
