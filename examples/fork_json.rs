//! Node's `fork` + `process.send` / `process.on('message')`: a parent and the child it starts exchange
//! JSON messages both ways over an inherited socketpair (ringwire's `fork` transport).
//!
//! Run: `cargo run --example fork_json --features json`

use ringwire::transport::{fork, recv_json, send_json, JsonError, TransportRecvError};
use serde_json::{json, Value};
use std::error::Error;
use std::process::Command;

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::var_os("RINGWIRE_EXAMPLE_CHILD").is_some() {
        return child();
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env("RINGWIRE_EXAMPLE_CHILD", "1");
    let (mut tx, mut rx, mut child) = fork::spawn(&mut cmd)?;
    send_json(&mut tx, &json!({"text": "Hello from parent", "n": 1}))?; // child.send(...)
    let reply: Value = recv_json(&mut rx)?; // child.on('message', ...)
    println!("Received from child: {reply}");
    drop(tx); // the child sees the end of the channel and exits
    let status = child.wait()?;
    println!("Child process exited with code {}", status.code().unwrap_or(-1));
    Ok(())
}

fn child() -> Result<(), Box<dyn Error>> {
    let (mut tx, mut rx) = fork::from_env()?;
    loop {
        let msg: Value = match recv_json(&mut rx) {
            Ok(v) => v,
            Err(JsonError::Recv(TransportRecvError::PeerGone)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        println!("Received from parent: {msg}"); // process.on('message', ...)
        send_json(&mut tx, &json!({"text": "Hello from child", "got": msg}))?; // process.send(...)
    }
}
