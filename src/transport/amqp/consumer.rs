//! [`Consumer`]: takes messages from the queue with manual acknowledgements.

use super::link::{block_on, Link, LinkError, Role};
use super::*;
use crate::transport::envelope::{decode, Tracker};
use crate::transport::{Receiver, RecvFrame, TransportRecvError, Wait};
use futures_lite::StreamExt;
use lapin::options::BasicAckOptions;
use lapin::Acker;
use std::io;
use std::time::Instant;

/// When a [`Consumer`] acknowledges (`basic.ack`) what it delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AckMode {
    /// A message counts as handled when the next receive (or `close`) is called: everything delivered
    /// so far is acknowledged then (one `basic.ack` with `multiple`). A consumer that dies holding a
    /// message, or is dropped without `close`, leaves it unacknowledged: the broker gives it to another
    /// consumer (marked redelivered) once the connection is gone.
    #[default]
    OnNextRecv,
    /// Nothing is acknowledged until [`Consumer::ack`] is called. With a prefetch of N, the broker stops
    /// sending after N unacknowledged messages.
    Manual,
}

/// The receiving half: one consumer of the queue (`basic.consume`, manual acknowledgements, prefetch
/// [`Options::prefetch`]). At least once: every message is delivered to some consumer of the queue,
/// and again if its consumer's channel closed before acknowledging it.
pub struct Consumer {
    link: Link,
    ack_mode: AckMode,
    /// The acker of the last message delivered on the current channel and not yet acknowledged
    /// (acknowledging it with `multiple` covers every earlier one).
    unacked: Option<Acker>,
    tracker: Tracker,
    closed: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("queue", &self.link.addr.queue).finish()
    }
}

impl Consumer {
    /// Connects to `addr` (`amqp://host:port/[VHOST/]QUEUE`, see [`parse_addr`]), declares the queue and
    /// starts consuming. Fails if no broker answers within the connect timeout.
    pub fn connect(addr: &str) -> io::Result<Consumer> {
        Self::with_options(addr, Options::default())
    }

    /// As [`connect`](Self::connect), with options.
    pub fn with_options(addr: &str, opts: Options) -> io::Result<Consumer> {
        let role = Role::Consumer(opts.prefetch);
        Ok(Consumer {
            link: Link::open(addr, opts, role)?,
            ack_mode: AckMode::default(),
            unacked: None,
            tracker: Tracker::default(),
            closed: false,
        })
    }

    /// Sets when messages are acknowledged (default [`AckMode::OnNextRecv`]).
    pub fn set_ack_mode(&mut self, mode: AckMode) {
        self.ack_mode = mode;
    }

    /// The queue this consumer takes from.
    pub fn queue(&self) -> &str {
        &self.link.addr.queue
    }

    /// What was noticed since the last call — reconnections, gaps, duplicates, redeliveries — or `None`.
    pub fn take_report(&mut self) -> Option<DeliveryReport> {
        self.tracker.take()
    }

    /// Acknowledges every message delivered so far. If the connection they came on is gone they can't
    /// be acknowledged any more: the broker delivers them again (`PeerReset` says so).
    pub fn ack(&mut self) -> Result<(), TransportRecvError> {
        let Some(acker) = self.unacked.take() else { return Ok(()) };
        let deadline = Instant::now() + self.link.opts.io_timeout;
        match block_on(Some(deadline), async move { acker.ack(BasicAckOptions { multiple: true }).await }) {
            Some(Ok(_)) => Ok(()),
            _ => {
                self.link.drop_session();
                Err(TransportRecvError::PeerReset)
            }
        }
    }

    /// The next delivery, as `wait` allows: `Ok(None)` if the wait ran out.
    fn next_delivery(&mut self, wait: Wait) -> Result<Option<lapin::message::Delivery>, TransportRecvError> {
        let start = Instant::now();
        loop {
            match self.link.ensure(wait) {
                Ok(true) => {
                    // A new channel: what the old one delivered can't be acknowledged any more (the
                    // broker requeued it).
                    self.unacked = None;
                    self.tracker.report.reconnects += 1;
                }
                Ok(false) => {}
                Err(LinkError::Timeout) => return Ok(None),
                Err(LinkError::Gone) => return Err(TransportRecvError::PeerReset),
            }
            let deadline = match wait {
                Wait::Never => Some(Instant::now()),
                Wait::Forever => None,
                Wait::Until(d) => Some(d),
            };
            let stream = self.link.session.as_mut().and_then(|s| s.deliveries.as_mut()).expect("a consumer session");
            match block_on(deadline, stream.next()) {
                None => return Ok(None),
                Some(Some(Ok(d))) => return Ok(Some(d)),
                // The channel or connection closed: consume again on a new one.
                Some(Some(Err(_)) | None) => {
                    self.link.drop_session();
                    self.unacked = None;
                    if let Wait::Forever = wait {
                        if self.link.opts.give_up.is_some_and(|g| start.elapsed() >= g) {
                            return Err(TransportRecvError::PeerReset);
                        }
                    }
                }
            }
        }
    }
}

impl Receiver for Consumer {
    fn recv_frame_wait(&mut self, wait: Wait) -> Result<RecvFrame, TransportRecvError> {
        if self.closed {
            return Err(TransportRecvError::Closed);
        }
        if self.ack_mode == AckMode::OnNextRecv {
            // Not acknowledged (the connection is gone): the broker delivers it again.
            let _ = self.ack();
        }
        let Some(d) = self.next_delivery(wait)? else {
            return Err(match wait {
                Wait::Never => TransportRecvError::Empty,
                _ => TransportRecvError::Timeout,
            });
        };
        // Handed to the caller as a message or as an error: acknowledged like any other.
        let redelivered = d.redelivered;
        let data = d.data;
        self.unacked = Some(d.acker);
        let (publisher, seq, ext, msg) =
            decode(&data, self.link.opts.max_message).map_err(TransportRecvError::BadFrame)?;
        self.tracker.observe(publisher, seq, redelivered);
        Ok(RecvFrame { ext, bytes: msg.to_vec() })
    }

    /// Acknowledges what was delivered (unless [`AckMode::Manual`]), then closes the connection. Messages
    /// the broker had sent ahead (prefetched) and not delivered go back to the queue.
    fn close(&mut self) {
        if self.closed {
            return;
        }
        if self.ack_mode == AckMode::OnNextRecv {
            let _ = self.ack();
        }
        self.closed = true;
        self.link.close();
    }

    fn max_message(&self) -> usize {
        self.link.opts.max_message
    }
}
