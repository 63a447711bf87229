//! The async transports (`ringwire::transport::tokio`): an async TCP echo server, one task per
//! connection, answering an async client and a blocking one (`ringwire::transport::tcp`, on a thread):
//! the same frames either way.
//!
//! Run: `cargo run --example async_tcp --features tokio,transport`

use ringwire::transport::tokio::{tcp, AsyncReceiver, AsyncSender};
use ringwire::transport::{Receiver, Sender, TransportRecvError};
use std::error::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let listener = tcp::Listener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut tx, mut rx, _peer) = listener.accept().await?;
            tokio::spawn(async move {
                // Echo until the client closes (PeerGone), then close our side too.
                loop {
                    match rx.recv().await {
                        Ok(msg) => tx.send(&[b"echo: ".as_slice(), &msg].concat()).await?,
                        Err(TransportRecvError::PeerGone) => return Ok(tx.close().await?),
                        Err(e) => return Err(Box::<dyn Error + Send + Sync>::from(e)),
                    }
                }
            });
        }
        std::io::Result::Ok(())
    });

    // An async client.
    let (mut tx, mut rx) = tcp::connect(addr).await?;
    for i in 0..3 {
        tx.send(format!("async message {i}").as_bytes()).await?;
        println!("{}", String::from_utf8_lossy(&rx.recv().await?));
    }
    tx.close().await?;

    // A blocking client on a thread of its own, talking to the same async server.
    let blocking = tokio::task::spawn_blocking(move || -> Result<Vec<String>, Box<dyn Error + Send + Sync>> {
        let (mut tx, mut rx) = ringwire::transport::tcp::connect(addr)?;
        let mut replies = Vec::new();
        for i in 0..3 {
            tx.send(format!("blocking message {i}").as_bytes())?;
            replies.push(String::from_utf8_lossy(&rx.recv()?).into_owned());
        }
        tx.close()?;
        Ok(replies)
    });
    for line in blocking.await?.map_err(|e| e.to_string())? {
        println!("{line}");
    }
    server.await??;
    Ok(())
}
