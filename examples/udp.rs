//! UDP (Node's `dgram`): one frame per datagram. A server thread answers each datagram; the client
//! sends three and prints the replies. Datagrams may be lost on a real network (not on loopback).
//!
//! Run: `cargo run --example udp --features transport`

use ringwire::transport::{udp, Receiver, Sender};
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let server = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let server_addr = server.local_addr()?;
    let (mut client_tx, mut client_rx) = udp::connect("127.0.0.1:0", server_addr)?;
    // The server learns the client's address from its first datagram, then is a connected pair too.
    let mut hello = [0u8; 64];
    client_tx.send(b"hello")?;
    let (_, from) = server.recv_from(&mut hello)?;
    server.connect(from)?;
    let (mut server_tx, mut server_rx) = udp::from_socket(server)?;
    let echo = std::thread::spawn(move || {
        for _ in 0..3 {
            let msg = server_rx.recv().expect("datagram");
            server_tx.send(&[b"echo: ".as_slice(), &msg].concat()).expect("reply");
        }
    });
    for i in 0..3 {
        client_tx.send(format!("datagram {i}").as_bytes())?;
        println!("{}", String::from_utf8_lossy(&client_rx.recv()?));
    }
    echo.join().expect("server thread");
    Ok(())
}
