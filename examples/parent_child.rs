//! A parent hands an anonymous (sealed memfd) ring to a child process it spawns — the Rust version of
//! Node's `child_process.fork` + `process.send` — and the child answers on a second ring.
//!
//! Run: `cargo run --example parent_child`

use ringwire::spsc::RecvError;
use ringwire::{RingConfig, ShmRing};
use std::error::Error;
use std::process::Command;

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::var_os("RINGWIRE_TO_CHILD").is_some() {
        return child();
    }
    let to_child = ShmRing::anonymous(RingConfig::default())?;
    let to_parent = ShmRing::anonymous(RingConfig::default())?;
    let mut cmd = Command::new(std::env::current_exe()?);
    to_child.share_with(&mut cmd, "RINGWIRE_TO_CHILD");
    to_parent.share_with(&mut cmd, "RINGWIRE_TO_PARENT");
    let mut child = cmd.spawn()?;

    let mut tx = to_child.producer()?;
    let mut rx = to_parent.consumer()?;
    for word in ["hello", "from", "the", "parent"] {
        tx.send(word.as_bytes())?;
        let reply = rx.recv()?;
        println!("parent got: {}", String::from_utf8_lossy(&reply));
    }
    drop(tx); // the child sees end-of-stream and exits
    assert_eq!(rx.recv().unwrap_err(), RecvError::PeerGone);
    child.wait()?;
    Ok(())
}

fn child() -> Result<(), Box<dyn Error>> {
    let mut rx = ShmRing::from_env("RINGWIRE_TO_CHILD")?.consumer()?;
    let mut tx = ShmRing::from_env("RINGWIRE_TO_PARENT")?.producer()?;
    loop {
        match rx.recv() {
            Ok(msg) => {
                let upper = msg.to_ascii_uppercase();
                tx.send(&upper)?;
            }
            Err(RecvError::PeerGone) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
