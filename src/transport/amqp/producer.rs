//! [`Producer`]: publishes to the queue and waits for the broker's confirm.

use super::link::{block_on, Link, LinkError, Role};
use super::*;
use crate::transport::envelope::{encode, new_publisher_id};
use crate::transport::{check_frame, Sender, TransportSendError, Wait};
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation};
use std::io;
use std::time::Instant;

/// The sending half: publishes each message to the queue (default exchange, routing key = queue,
/// persistent, mandatory) on a channel in confirm mode, and returns once the broker confirmed it.
///
/// Errors: `Oversize` (nothing sent); `Io` when the broker refuses the message (`basic.nack`) or the
/// queue is gone (the message came back unroutable); `Timeout` when the deadline passed before the
/// confirm (the message may still be stored: its sequence number is used); `PeerReset` when the broker
/// could not be reached within [`Options::give_up`] (blocking sends) or at once (`try_send`).
pub struct Producer {
    link: Link,
    id: u64,
    seq: u64,
    buf: Vec<u8>,
    closed: bool,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("queue", &self.link.addr.queue).field("id", &self.id).finish()
    }
}

impl Producer {
    /// Connects to `addr` (`amqp://host:port/[VHOST/]QUEUE`, see [`parse_addr`]) and declares the queue.
    /// Fails if no broker answers within the connect timeout.
    pub fn connect(addr: &str) -> io::Result<Producer> {
        Self::with_options(addr, Options::default())
    }

    /// As [`connect`](Self::connect), with options.
    pub fn with_options(addr: &str, opts: Options) -> io::Result<Producer> {
        Ok(Producer {
            link: Link::open(addr, opts, Role::Producer)?,
            id: new_publisher_id(),
            seq: 0,
            buf: Vec::new(),
            closed: false,
        })
    }

    /// This producer's id (in every message's envelope).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Times the connection was made again.
    pub fn reconnects(&self) -> u64 {
        self.link.reconnects
    }

    /// The queue this producer publishes to.
    pub fn queue(&self) -> &str {
        &self.link.addr.queue
    }
}

/// How one publish ended.
enum Outcome {
    Confirmed,
    Refused(String),
    /// The connection broke (or the broker was silent for `io_timeout`) before the confirm.
    Lost,
    /// The caller's deadline passed before the confirm.
    Late,
}

impl Sender for Producer {
    fn send_frame_wait(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        check_frame(ext, parts, self.link.opts.max_message)?;
        encode(&mut self.buf, self.id, self.seq, ext, parts);
        let mut written = false;
        let start = Instant::now();
        let r = loop {
            match self.link.ensure(wait) {
                Ok(_) => {}
                Err(LinkError::Timeout) => break Err(TransportSendError::Timeout),
                Err(LinkError::Gone) => break Err(TransportSendError::PeerReset),
            }
            let confirm_by = match wait {
                Wait::Until(d) => d,
                _ => Instant::now() + self.link.opts.io_timeout,
            };
            let session = self.link.session.as_ref().expect("ensured");
            let (channel, queue, body) = (&session.channel, self.link.addr.queue.as_str(), &self.buf);
            written = true;
            let outcome = block_on(Some(confirm_by), async move {
                let props = BasicProperties::default().with_delivery_mode(2);
                let opts = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
                let confirm = match channel.basic_publish("".into(), queue.into(), opts, body, props).await {
                    Ok(c) => c,
                    Err(_) => return Outcome::Lost,
                };
                match confirm.await {
                    Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Outcome::Confirmed,
                    Ok(Confirmation::Ack(Some(r))) => Outcome::Refused(format!(
                        "the message came back unroutable ({} {}): is the queue gone?",
                        r.reply_code, r.reply_text
                    )),
                    Ok(Confirmation::Nack(_)) => Outcome::Refused("the broker refused the message (basic.nack)".into()),
                    Err(_) => Outcome::Lost,
                }
            })
            .unwrap_or(if matches!(wait, Wait::Until(_)) { Outcome::Late } else { Outcome::Lost });
            match outcome {
                Outcome::Confirmed => break Ok(()),
                Outcome::Refused(why) => break Err(io::Error::other(format!("amqp: {why}")).into()),
                Outcome::Late => break Err(TransportSendError::Timeout),
                // Publish the same message (same sequence number) again on a new connection, as the
                // wait allows.
                Outcome::Lost => {
                    self.link.drop_session();
                    match wait {
                        Wait::Never => break Err(TransportSendError::PeerReset),
                        Wait::Until(d) if Instant::now() >= d => break Err(TransportSendError::Timeout),
                        Wait::Forever if self.link.opts.give_up.is_some_and(|g| start.elapsed() >= g) => {
                            break Err(TransportSendError::PeerReset)
                        }
                        _ => {}
                    }
                }
            }
        };
        if written {
            self.seq += 1;
        }
        r
    }

    fn close(&mut self) -> Result<(), TransportSendError> {
        if !self.closed {
            self.closed = true;
            self.link.close();
        }
        Ok(())
    }

    fn max_message(&self) -> usize {
        self.link.opts.max_message
    }
}
