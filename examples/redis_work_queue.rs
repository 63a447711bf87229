//! A work queue over Redis Streams (the seed's "message queue" case, at least once): a producer adds
//! jobs to the stream `jobs`; three workers of the consumer group `workers` share them, each job to one
//! worker, acknowledged once handled (a worker that dies before acknowledging leaves its job pending, and
//! another worker claims it after an idle time).
//!
//! Run: `cargo run --example redis_work_queue --features redis` (server: `$REDIS_URL`, default
//! redis://127.0.0.1:6379).

use ringwire::transport::redis::{StreamConsumer, StreamProducer};
use ringwire::transport::{Receiver, Sender, TransportRecvError};
use std::error::Error;
use std::time::{Duration, Instant};

const JOBS: usize = 12;

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = format!("ringwire-example-jobs-{}", std::process::id());
    let mut producer = StreamProducer::connect(&url, &key)?;
    for i in 0..JOBS {
        producer.send(format!("job {i}").as_bytes())?;
    }
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (url, key) = (url.clone(), key.clone());
            std::thread::spawn(move || -> Result<usize, TransportRecvError> {
                let mut rx = StreamConsumer::connect(&url, &key, "workers", &format!("worker-{w}"))?;
                let mut done = 0;
                // Stop once the queue has been empty for a while (a real worker runs forever).
                loop {
                    match rx.recv_deadline(Instant::now() + Duration::from_millis(500)) {
                        Ok(job) => {
                            println!("worker {w}: {}", String::from_utf8_lossy(&job));
                            done += 1;
                        }
                        Err(TransportRecvError::Timeout) => break,
                        Err(e) => return Err(e),
                    }
                }
                rx.close(); // acknowledges the last job
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.join().expect("worker thread")?;
    }
    println!("{total} of {JOBS} jobs handled");
    let _ = std::process::Command::new("redis-cli").args(["-u", &url, "del", &key]).output();
    Ok(())
}
