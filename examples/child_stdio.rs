//! A parent talks to a child process over the child's stdin/stdout (Node's `child_process.spawn`),
//! one ringwire frame per message, and reads the child's stderr line by line and its exit code.
//! The child is this same program, started again with `RINGWIRE_EXAMPLE_CHILD=1`.
//!
//! Run: `cargo run --example child_stdio --features transport`

use ringwire::transport::{stdio, Receiver, Sender, TransportRecvError};
use std::error::Error;
use std::process::Command;

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::var_os("RINGWIRE_EXAMPLE_CHILD").is_some() {
        return child();
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env("RINGWIRE_EXAMPLE_CHILD", "1");
    let (mut tx, mut rx, mut child) = stdio::spawn_with_stderr(&mut cmd, |line| eprintln!("Child stderr: {line}"))?;
    tx.send(b"Hello from parent")?;
    tx.close()?; // like child.stdin.end()
    loop {
        match rx.recv() {
            Ok(msg) => println!("Received from child: {}", String::from_utf8_lossy(&msg)),
            Err(TransportRecvError::PeerGone) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let status = child.wait()?;
    println!("Child process exited with code {}", status.code().unwrap_or(-1));
    Ok(())
}

fn child() -> Result<(), Box<dyn Error>> {
    // stdin/stdout become the channel; what the child prints goes to stderr from here on.
    let (mut tx, mut rx) = stdio::from_process_stdio()?;
    loop {
        match rx.recv() {
            Ok(msg) => {
                eprintln!("Received from parent: {}", String::from_utf8_lossy(&msg));
                tx.send(b"Hello from child")?;
            }
            Err(TransportRecvError::PeerGone) => {
                tx.send(b"Parent closed stdin")?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}
