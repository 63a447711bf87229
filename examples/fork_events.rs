//! The seed's `child_process.fork` example in events form: the parent spawns itself as a child over a
//! ringwire fork channel (a socketpair the child inherits), and the two talk in named events with JSON
//! payloads, as `child.send(...)` / `child.on('message', ...)` and `process.send(...)` /
//! `process.on('message', ...)` do in Node:
//!
//! ```js
//! // parent.js                                   // child.js
//! const child = fork('child.js');                process.on('message', (msg) => {
//! child.on('message', (msg) => {                   console.log(`Received from parent: ${msg}`);
//!   console.log(`Received from child: ${msg}`);    process.send('Hello from child');
//! });                                            });
//! child.send('Hello from parent');
//! ```
//!
//! Run: `cargo run --example fork_events --features events`

use ringwire::socket::Socket;
use ringwire::transport::fork;
use serde::{Deserialize, Serialize};
use std::error::Error;
use std::process::Command;
use std::sync::mpsc;

/// What goes in each `message` event (any serde type works; this one is JSON on the wire).
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    from: String,
    text: String,
}

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::var_os(fork::DEFAULT_FD_VAR).is_some() {
        return child();
    }
    // const child = fork('child.js');
    let (tx, rx, mut child) = fork::spawn(&mut Command::new(std::env::current_exe()?))?;
    let socket = Socket::new(tx, rx);
    let (got, reply) = mpsc::channel();
    // child.on('message', (msg) => console.log(`Received from child: ${msg}`));
    socket.on("message", move |ev| {
        let msg: Message = ev.decode().expect("a Message");
        println!("Received from child: {}", msg.text);
        let _ = got.send(());
    });
    let receiver = {
        let socket = socket.clone();
        std::thread::spawn(move || socket.run())
    };
    // child.send('Hello from parent');
    socket.emit("message", &Message { from: "parent".into(), text: "Hello from parent".into() })?;
    reply.recv()?;
    // Done: closing makes the child's loop end, and then ours.
    socket.close();
    receiver.join().expect("receive loop")?;
    child.wait()?;
    Ok(())
}

fn child() -> Result<(), Box<dyn Error>> {
    let (tx, rx) = fork::from_env()?;
    let process = Socket::new(tx, rx);
    let me = std::sync::Arc::downgrade(&process);
    // process.on('message', (msg) => { console.log(...); process.send('Hello from child'); });
    process.on("message", move |ev| {
        let msg: Message = ev.decode().expect("a Message");
        println!("Received from parent: {}", msg.text);
        if let Some(process) = me.upgrade() {
            process.emit("message", &Message { from: "child".into(), text: "Hello from child".into() }).unwrap();
        }
    });
    // Until the parent closes the channel.
    process.run()?;
    Ok(())
}
