//! Redis: pub/sub (at-most-once, like Node's Redis pub/sub) and streams with consumer groups
//! (at-least-once, the message-queue case), over the `redis` crate's synchronous client.
//!
//! | half | type | commands |
//! |---|---|---|
//! | pub/sub sender | [`Publisher`] | `PUBLISH channel value` |
//! | pub/sub receiver | [`Subscriber`] | `SUBSCRIBE channel`, on a connection owned by a reader thread |
//! | stream sender | [`StreamProducer`] | `XADD key [MAXLEN ~ n] * frame value` |
//! | stream receiver | [`StreamConsumer`] | `XGROUP CREATE key group 0 MKSTREAM`, `XREADGROUP ... BLOCK`, `XACK`, `XAUTOCLAIM` |
//!
//! # What is stored in Redis
//!
//! Every message is one Redis value (a pub/sub message, or the `frame` field of a stream entry) holding
//! exactly one ringwire frame: the 8-byte header and its payload, as on a datagram. The payload starts with
//! a 16-byte envelope that identifies the sending half and numbers its messages; the user's message
//! follows:
//!
//! ```text
//!  byte  0        8                     16                 24
//!        +--------+---------------------+------------------+----------------------+
//!        | header | publisher id        | sequence number  | message (n bytes)    |
//!        | len=16+n, kind 1, flags 0, ext 0 | u64 LE        | u64 LE           |
//!        +--------+---------------------+------------------+----------------------+
//! ```
//!
//! The publisher id is a random non-zero u64 drawn when a [`Publisher`] or [`StreamProducer`] is created
//! (a restarted process is a new publisher); the sequence number starts at 0 and grows by one per
//! message that reached the server or may have (a send refused before anything was written does not use
//! one). Receivers use the pair to report messages lost (a jump in a publisher's sequence) and duplicates
//! (a number seen again) in a [`DeliveryReport`].
//!
//! # Reconnecting
//!
//! Every half reconnects by itself. A sender whose command fails because the connection broke reconnects
//! and sends the message again (so a message whose reply was lost can arrive twice; receivers count it as
//! a duplicate); a sender that can't reach the server keeps trying as its wait allows — a blocking send
//! for [`Options::give_up`], then [`PeerReset`](TransportSendError::PeerReset), the message not sent. The
//! next send starts again: a server that comes back is used again.
//!
//! A [`Subscriber`] resubscribes after its connection drops (`CLIENT KILL`, a server restart, the server
//! dropping a subscriber that reads too slowly); what was published meanwhile is lost, and is reported: the
//! reconnection at once, and the count of lost messages per publisher as soon as that publisher's next
//! message arrives ([`Subscriber::take_report`]). A [`StreamConsumer`] reconnects and goes on from where
//! the group is: nothing is lost if the server kept its data (`appendonly yes`); if the group is gone
//! (a server restarted without persistence), it creates it again.
//!
//! # Deadlines
//!
//! Every wait is bounded: socket read and write timeouts are set from the deadline before each command
//! (and from [`Options::io_timeout`] for blocking calls: a server that does not answer one command for
//! that long is treated as gone), `XREADGROUP` blocks at most until the deadline, and a subscriber waits
//! on its reader thread's queue with the deadline. Redis has no non-blocking send: `try_send` (and a
//! stream consumer's `try_recv`) waits for the server's reply like `send`, bounded by `io_timeout`, and
//! makes at most one new connection, without pausing: a server that is gone is `PeerReset` at once.

use crate::transport::envelope;
mod link;
mod pubsub;
mod stream;

pub use envelope::{DeliveryReport, Gap, ENVELOPE_LEN, MAX_PLAUSIBLE_GAP, MAX_TRACKED_PUBLISHERS};
pub use pubsub::{Publisher, Subscriber};
pub use stream::{AckMode, StreamConsumer, StreamProducer};

#[cfg(doc)]
use crate::transport::TransportSendError;
use crate::transport::DEFAULT_MAX_MESSAGE;
use std::time::Duration;

/// The stream entry field that holds the frame.
pub const FIELD: &str = "frame";

/// Timeouts and limits shared by every redis half.
#[derive(Clone, Debug)]
pub struct Options {
    /// Longest wait for a TCP connection and the client's setup. Default 2 s.
    pub connect_timeout: Duration,
    /// Longest wait for the reply to one command when the caller's wait is unbounded (and for `try_`
    /// calls). A server that takes longer is treated as gone: the connection is dropped. Default 5 s.
    pub io_timeout: Duration,
    /// How long a blocking call keeps reconnecting to a server that does not answer before it returns
    /// `PeerReset` (the next call tries again). `None`: forever. Default 30 s.
    pub give_up: Option<Duration>,
    /// The largest message (not counting header and envelope). Default [`DEFAULT_MAX_MESSAGE`].
    pub max_message: usize,
    /// [`Subscriber`]: messages its reader thread may hold for the caller. When it is full the thread
    /// stops reading; Redis then buffers for it, and drops a subscriber that falls too far behind
    /// (`client-output-buffer-limit pubsub`), which is reported as a loss. Default 256.
    pub queue: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            give_up: Some(Duration::from_secs(30)),
            max_message: DEFAULT_MAX_MESSAGE,
            queue: 256,
        }
    }
}

/// Splits a ringwire redis address, `redis://host:port/NAME`, into the server URL
/// (`redis://host:port`) and NAME (a channel or stream key). `None` if there is no NAME.
pub fn split_addr(addr: &str) -> Option<(String, String)> {
    let rest = addr.strip_prefix("redis://")?;
    let (server, name) = rest.split_once('/')?;
    if server.is_empty() || name.is_empty() {
        return None;
    }
    Some((format!("redis://{server}"), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::split_addr;

    #[test]
    fn addresses() {
        assert_eq!(split_addr("redis://127.0.0.1:6379/chat"), Some(("redis://127.0.0.1:6379".into(), "chat".into())));
        assert_eq!(split_addr("redis://h:1/a/b"), Some(("redis://h:1".into(), "a/b".into())));
        assert_eq!(split_addr("redis://h:1/"), None);
        assert_eq!(split_addr("tcp://h:1/x"), None);
    }
}
