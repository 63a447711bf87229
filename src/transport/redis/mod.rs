//! Redis: pub/sub (at-most-once, like Node's Redis pub/sub) and streams with consumer groups
//! (at-least-once, the message-queue case), over the `redis` crate's synchronous client.
//!
//! | half | type | commands |
//! |---|---|---|
//! | pub/sub sender | [`Publisher`] | `PUBLISH channel value`, up to [`Options::window`] in flight |
//! | pub/sub receiver | [`Subscriber`] | `SUBSCRIBE channel`, on a connection owned by a reader thread |
//! | stream sender | [`StreamProducer`] | `XADD key [MAXLEN ~ n] * frame value`, the same |
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
//! # Pipelining
//!
//! [`Options::window`] sets how many `PUBLISH` / `XADD` commands a sender may have written without having
//! read their replies. With 1 (the default) a send writes its command and waits for the reply: it
//! returns once the server has handled the message, and an error is about that message. With a window
//! of `n` above 1 a send writes its command at once (a lone message goes out as soon as it is sent: the
//! round trip does not change) and returns; replies are read, in order, only when `n` are unacknowledged (down to
//! `n / 2`, so a full window costs one wait and one read for half a window of replies), when the
//! unacknowledged commands pass 1 MiB (down to 512 KiB: what is kept for writing again is bounded for
//! large messages too), and on [`flush`](crate::transport::Sender::flush) (all of them),
//! which [`close`](crate::transport::Sender::close) calls. One connection, commands and replies in order:
//! reply *k* is message *k*'s.
//!
//! Accounting stays exact. A message gets its number when it is accepted, and its packed command is kept
//! until its reply has been read. [`in_flight`](Publisher::in_flight) is the range of numbers written
//! and not yet acknowledged. If the connection breaks (or the server restarts) a sender reconnects as
//! below and writes every unacknowledged command again, in order, on the new connection (so a message
//! whose reply was lost may arrive twice, as with a single send: receivers count a duplicate). If it can't
//! within the call's wait (`give_up`, the deadline, one new connection for `try_`), or a reply does not
//! come in time, the call fails and gives the whole window up: [`failed`](Publisher::failed) is exactly
//! the range that was in flight (plus the call's own message if it was written), each of which may or
//! may not have reached the server; none is sent again, and their numbers are used, so a receiver reports
//! the ones that never came as a gap. A message the server answers with an error (an `XADD` to a key of
//! another type, out of memory) is refused alone: the call that reads that reply returns
//! [`Io`](crate::transport::TransportSendError::Io), `failed` is that one number, and the rest of the
//! window stays in flight. With a window, an error from a send can therefore be about an earlier message;
//! the send's own message was accepted if [`next_seq`](Publisher::next_seq) moved past it. Dropping a
//! sender flushes what is in flight as a `try_` call would (replies for at most `io_timeout`, one new
//! connection at most): closing the socket with replies unread would reset the connection and the server
//! would drop the commands it had not read yet; nothing reports a failure then — `close` does.
//!
//! [`send_buffered`](crate::transport::Sender::send_buffered) (a window above 1) queues a message's
//! command without writing it: the queue goes out in one write with the next `send`, `flush` or `close`,
//! or by itself once 64 KiB is queued or the window is full. Call `flush` before waiting for an answer.
//! A queued message is numbered and counts as in flight like a written one.
//!
//! # Reconnecting
//!
//! Every half reconnects by itself. A sender whose command fails because the connection broke reconnects
//! and sends the message again (so a message whose reply was lost can arrive twice; receivers count it as
//! a duplicate) — with a window, every unacknowledged message; a sender that can't reach the server keeps
//! trying as its wait allows — a blocking send for [`Options::give_up`], then
//! [`PeerReset`](TransportSendError::PeerReset), the message not sent. The next send starts again: a
//! server that comes back is used again.
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
//! stream consumer's `try_recv`) waits for the server's reply like `send` (with a window: when `send`
//! would), bounded by `io_timeout`, and makes at most one new connection, without pausing: a server that
//! is gone is `PeerReset` at once.

use crate::transport::envelope;
mod link;
mod pubsub;
mod stream;
mod window;

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
    /// [`Publisher`] and [`StreamProducer`]: commands that may be written before their replies are read
    /// (see "Pipelining" in the module docs). 1 (the default): none, a send returns once the server has
    /// handled the message. Larger: a send returns once its command is written, and reads replies only
    /// when `window` (or 1 MiB of commands) are unacknowledged, down to half of them, or on `flush`.
    pub window: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            give_up: Some(Duration::from_secs(30)),
            max_message: DEFAULT_MAX_MESSAGE,
            queue: 256,
            window: 1,
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
