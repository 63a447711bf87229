//! A work queue over RabbitMQ (the seed's "message queue such as RabbitMQ", at least once): a producer
//! puts jobs on the durable queue `ringwire-example-jobs-PID`, each send confirmed by the broker; three
//! workers consume it with a prefetch of 1 (the broker hands each worker one job at a time), each job to
//! one worker, acknowledged once handled (a worker that dies before acknowledging gives its job back to
//! the broker, which delivers it to another worker).
//!
//! Run: `cargo run --example amqp_work_queue --features amqp` (broker: `$AMQP_URL`, default
//! amqp://127.0.0.1:5672, guest/guest, vhost `/`; `amqp://host:port/VHOST` for another vhost).

use ringwire::transport::amqp::{delete_queue, Consumer, Options, Producer};
use ringwire::transport::{Receiver, Sender, TransportRecvError};
use std::error::Error;
use std::time::{Duration, Instant};

const JOBS: usize = 12;

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672".into());
    let queue = format!("{}/ringwire-example-jobs-{}", url.trim_end_matches('/'), std::process::id());
    let mut producer = Producer::connect(&queue)?;
    for i in 0..JOBS {
        producer.send(format!("job {i}").as_bytes())?; // returns once the broker confirmed it
    }
    producer.close()?;
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let queue = queue.clone();
            std::thread::spawn(move || -> Result<usize, TransportRecvError> {
                let opts = Options { prefetch: 1, ..Options::default() };
                let mut rx = Consumer::with_options(&queue, opts)?;
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
    delete_queue(&queue, &Options::default())?;
    Ok(())
}
