//! The SharedArrayBuffer + Atomics case between threads: two rings in one process, a worker that waits
//! for a message without burning a CPU (the adaptive wait spins briefly, then sleeps on a futex, and a
//! sender wakes it only if it sleeps: Atomics.wait / Atomics.notify). The same rings between processes:
//! the `parent_child` example.
//!
//! Run: `cargo run --example shared_memory_threads`

use ringwire::{spsc, RingConfig, WaitStrategy};
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let (mut to_worker, mut worker_rx) = spsc::channel(RingConfig::default())?;
    let (mut worker_tx, mut from_worker) = spsc::channel(RingConfig::default())?;
    worker_rx.set_wait_strategy(WaitStrategy::default()); // spin 50 µs, then futex wait
    let worker = std::thread::spawn(move || -> Result<(), spsc::RecvError> {
        let msg = worker_rx.recv()?;
        println!("Received from parent: {}", String::from_utf8_lossy(&msg));
        drop(msg);
        worker_tx.send(b"Hello from child").expect("send");
        Ok(())
    });
    to_worker.send(b"Hello from parent")?; // wakes the worker if it sleeps
    println!("Received from child: {}", String::from_utf8_lossy(&from_worker.recv()?));
    worker.join().expect("worker")?;
    Ok(())
}
