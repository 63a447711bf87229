//! AMQP 0-9-1 (RabbitMQ): a durable work queue, over the `lapin` client on a private tokio runtime.
//!
//! | half | type | AMQP |
//! |---|---|---|
//! | sender | [`Producer`] | `confirm.select`; `basic.publish` (default exchange, persistent, mandatory), waits for the broker's `basic.ack` |
//! | receiver | [`Consumer`] | `basic.qos` (prefetch); `basic.consume` with manual acknowledgements; `basic.ack` (multiple) |
//!
//! Both halves declare the queue (durable, not exclusive, not auto-deleted) when they connect, so
//! either may come first; messages sent before any consumer exists wait in the queue. Several consumers
//! of one queue share its messages (each message to one of them).
//!
//! # What is stored in the broker
//!
//! Every AMQP message body is exactly one ringwire frame, as a Redis value is: the 8-byte header and its
//! payload, whose first 16 bytes are the envelope (publisher id, sequence number) the redis adapter uses,
//! followed by the user's message. Receivers check the frame with
//! [`decode_datagram`](crate::transport::codec::decode_datagram) and use the envelope to report gaps and
//! duplicates ([`Consumer::take_report`]).
//!
//! # Delivery
//!
//! At least once. A send returns `Ok` once the broker confirmed the message (publisher confirms: for a
//! durable queue RabbitMQ confirms a persistent message once it is written to disk). A consumer's
//! message is acknowledged when the next receive (or `close`) is called ([`AckMode::OnNextRecv`]), or by
//! [`Consumer::ack`] ([`AckMode::Manual`]). Messages a consumer took and did not acknowledge go back to
//! the queue when its channel or connection closes — a killed process, a lost connection — and are
//! delivered again, to it or another consumer, marked `redelivered` (counted in the report).
//!
//! # Reconnecting
//!
//! Every half reconnects by itself, with backoff (5 ms doubling to 250 ms), as far as its wait allows
//! (blocking calls: for [`Options::give_up`], then `PeerReset`). A producer whose connection was lost
//! before the broker confirmed a message publishes it again on the new connection, with the same
//! sequence number: if the broker had stored the first copy, the consumer gets it twice and counts a
//! duplicate. A consumer counts each reconnection; what it had not acknowledged is redelivered.
//!
//! # Deadlines
//!
//! AMQP has no non-blocking publish with confirms: `try_send` (and `try_recv` on a broken connection)
//! waits for the broker at most [`Options::io_timeout`], and makes at most one new connection. A
//! blocking send waits for its confirm at most `io_timeout` per try: a broker that does not confirm for
//! that long is taken as gone (the connection is dropped and the message published again on a new one).
//! Connections use AMQP heartbeats ([`Options::heartbeat`]), so a broker that vanished is noticed by a
//! blocked receive too.
//!
//! # Threads
//!
//! The halves are synchronous. One tokio runtime per process, with one worker thread
//! (`ringwire-amqp`, started on first use), runs lapin's background tasks; each call drives its own
//! future on the caller's thread (`block_on`), and lapin adds one I/O thread per connection. Like every
//! blocking API, these calls must not be made from inside an async task (tokio panics when a runtime is
//! entered from within another): use `spawn_blocking` there.

mod consumer;
mod link;
mod producer;

pub use crate::transport::envelope::{DeliveryReport, Gap, ENVELOPE_LEN, MAX_PLAUSIBLE_GAP, MAX_TRACKED_PUBLISHERS};
pub use consumer::{AckMode, Consumer};
pub use link::{check_broker, delete_queue};
pub use producer::Producer;

use crate::transport::DEFAULT_MAX_MESSAGE;
use std::time::Duration;

/// Timeouts and limits shared by both halves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Longest wait for the TCP connection, the AMQP handshake and the channel set-up. Default 2 s.
    pub connect_timeout: Duration,
    /// Longest wait for the broker's answer (a confirm, a close) when the caller's wait is unbounded, and
    /// for `try_` calls. Default 5 s.
    pub io_timeout: Duration,
    /// How long a blocking call keeps reconnecting to a broker that does not answer before it returns
    /// `PeerReset` (the next call tries again). `None`: forever. Default 30 s.
    pub give_up: Option<Duration>,
    /// The AMQP heartbeat interval asked of the broker (whole seconds; 0 disables). Default 10 s.
    pub heartbeat: u16,
    /// The largest message (not counting header and envelope). Default [`DEFAULT_MAX_MESSAGE`].
    pub max_message: usize,
    /// [`Consumer`]: how many unacknowledged messages the broker may send ahead (`basic.qos`
    /// prefetch count; 0 means no limit). Default 64.
    pub prefetch: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            give_up: Some(Duration::from_secs(30)),
            heartbeat: 10,
            max_message: DEFAULT_MAX_MESSAGE,
            prefetch: 64,
        }
    }
}

/// A parsed ringwire AMQP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// The broker URI for the client, credentials and vhost included (`amqp://guest:guest@host:port/%2f`).
    pub broker: String,
    /// The virtual host (`/` unless the address names one).
    pub vhost: String,
    /// The queue.
    pub queue: String,
}

/// Parses `amqp://[user:password@]host:port/[VHOST/]QUEUE`. The last path segment is the queue; what
/// comes before it, percent-decoded, is the virtual host (default `/`, which can also be written `%2f`).
/// Credentials default to `guest:guest`. `None` if the scheme is not `amqp` or there is no queue.
///
/// ```
/// use ringwire::transport::amqp::parse_addr;
/// let a = parse_addr("amqp://127.0.0.1:5672/jobs").unwrap();
/// assert_eq!((a.vhost.as_str(), a.queue.as_str()), ("/", "jobs"));
/// let a = parse_addr("amqp://u:p@127.0.0.1:5672/test/jobs").unwrap();
/// assert_eq!((a.vhost.as_str(), a.queue.as_str()), ("test", "jobs"));
/// assert_eq!(a.broker, "amqp://u:p@127.0.0.1:5672/test");
/// ```
pub fn parse_addr(addr: &str) -> Option<Address> {
    let rest = addr.strip_prefix("amqp://")?;
    let (authority, path) = rest.split_once('/')?;
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("guest:guest", authority),
    };
    let (vhost_enc, queue) = match path.rsplit_once('/') {
        Some((v, q)) => (v, q),
        None => ("%2f", path),
    };
    if host.is_empty() || queue.is_empty() || vhost_enc.is_empty() {
        return None;
    }
    let vhost = percent_decode(vhost_enc)?;
    Some(Address {
        broker: format!("amqp://{userinfo}@{host}/{}", percent_encode(&vhost)),
        vhost,
        queue: percent_decode(queue)?,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02x}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = parse_addr("amqp://127.0.0.1:5672/q").unwrap();
        assert_eq!(
            a,
            Address { broker: "amqp://guest:guest@127.0.0.1:5672/%2f".into(), vhost: "/".into(), queue: "q".into() }
        );
        let a = parse_addr("amqp://h:1/%2f/q.reply").unwrap();
        assert_eq!((a.vhost.as_str(), a.queue.as_str()), ("/", "q.reply"));
        let a = parse_addr("amqp://h:1/a%2fb/c/q").unwrap();
        assert_eq!(
            (a.vhost.as_str(), a.queue.as_str(), a.broker.as_str()),
            ("a/b/c", "q", "amqp://guest:guest@h:1/a%2fb%2fc")
        );
        assert_eq!(parse_addr("amqp://h:1/"), None);
        assert_eq!(parse_addr("amqp://h:1"), None);
        assert_eq!(parse_addr("redis://h:1/q"), None);
    }
}
