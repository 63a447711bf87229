//! The seed's `net` server: answers every message with "Hello from server"; serves until killed.
//!
//! Run: `cargo run --example tcp_server --features transport` (port 3000, or the first argument as
//! host:port), then `cargo run --example tcp_client --features transport`.

use ringwire::transport::{tcp, Receiver, Sender, TransportRecvError};
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tcp::Listener::bind(&addr)?;
    println!("Server listening on {}", listener.local_addr()?);
    loop {
        let (mut tx, mut rx, peer) = listener.accept()?;
        std::thread::spawn(move || loop {
            match rx.recv() {
                Ok(msg) => {
                    println!("Received from client: {}", String::from_utf8_lossy(&msg));
                    if tx.send(b"Hello from server").is_err() {
                        return;
                    }
                }
                Err(TransportRecvError::PeerGone | TransportRecvError::PeerReset) => {
                    println!("Client {peer} disconnected");
                    return;
                }
                Err(e) => {
                    eprintln!("{peer}: {e}");
                    return;
                }
            }
        });
    }
}
