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

use super::{Receiver, Sender, TransportRecvError, TransportSendError, Wait, DEFAULT_MAX_MESSAGE};
use crate::transport::codec::{decode_datagram, FrameError};
use crate::wire::{FrameHeader, Kind};
use redis::{Client, Connection, RedisError, Value};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes of the envelope in front of every message: publisher id and sequence number.
pub const ENVELOPE_LEN: usize = 16;

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

/// A message lost: `count` messages of `publisher`, from sequence number `first` on, never arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The publisher (its random id, from the envelope).
    pub publisher: u64,
    /// The first missing sequence number.
    pub first: u64,
    /// How many are missing.
    pub count: u64,
}

/// What a redis receiver noticed about delivery since the last time it was asked
/// ([`Subscriber::take_report`], [`StreamConsumer::take_report`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Times the connection was lost and made again. On pub/sub each one may have lost messages: those
    /// of publishers that have sent again since are counted in `gaps`; a publisher that has not sent since
    /// can't be accounted for.
    pub reconnects: u64,
    /// Jumps in a publisher's sequence numbers: messages that never arrived. Exact for pub/sub and for a
    /// stream group with one consumer; in a group of several each consumer gets a share of every
    /// producer's messages, so gaps there say only that another consumer got them (or they were trimmed).
    pub gaps: Vec<Gap>,
    /// Messages delivered although their publisher's sequence number had been seen already (a sender that
    /// sent again after losing the server's reply).
    pub duplicates: u64,
    /// Stream entries delivered again from a pending list: this consumer's own after it was created
    /// again under the same name, or entries claimed from a consumer that stopped acknowledging.
    pub redelivered: u64,
}

impl DeliveryReport {
    /// Messages known lost (the sum of the gaps).
    pub fn lost(&self) -> u64 {
        self.gaps.iter().map(|g| g.count).sum()
    }

    /// Whether nothing was noticed.
    pub fn is_empty(&self) -> bool {
        *self == DeliveryReport::default()
    }
}

/// Per-publisher sequence tracking.
#[derive(Debug, Default)]
struct Tracker {
    next: HashMap<u64, u64>,
    report: DeliveryReport,
}

impl Tracker {
    /// Records message `seq` of `publisher`; `redelivered`: it came from a pending list.
    fn observe(&mut self, publisher: u64, seq: u64, redelivered: bool) {
        if redelivered {
            self.report.redelivered += 1;
        }
        match self.next.get_mut(&publisher) {
            None => {
                // Messages a publisher sent before we first heard from it were not ours to receive.
                self.next.insert(publisher, seq + 1);
            }
            Some(next) if seq == *next => *next += 1,
            Some(next) if seq > *next => {
                self.report.gaps.push(Gap { publisher, first: *next, count: seq - *next });
                *next = seq + 1;
            }
            Some(_) => {
                if !redelivered {
                    self.report.duplicates += 1;
                }
            }
        }
    }

    fn take(&mut self) -> Option<DeliveryReport> {
        (!self.report.is_empty()).then(|| std::mem::take(&mut self.report))
    }
}

/// A fresh random non-zero publisher id.
fn new_publisher_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() | 1
}

/// Encodes message `msg` of `publisher` number `seq` as the value stored in Redis.
fn encode(out: &mut Vec<u8>, publisher: u64, seq: u64, msg: &[u8]) {
    out.clear();
    let len = (ENVELOPE_LEN + msg.len()) as u32;
    out.extend_from_slice(&FrameHeader { len, kind: Kind::Data }.to_bytes());
    out.extend_from_slice(&publisher.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(msg);
}

/// Decodes a value read from Redis: (publisher, seq, message).
fn decode(value: &[u8], max: usize) -> Result<(u64, u64, &[u8]), FrameError> {
    let frame = decode_datagram(value, max + ENVELOPE_LEN).map_err(|e| match e {
        FrameError::Oversize { len, .. } => FrameError::Oversize { len: len.saturating_sub(ENVELOPE_LEN), max },
        e => e,
    })?;
    let Some((env, msg)) = frame.payload.split_first_chunk::<ENVELOPE_LEN>() else {
        return Err(FrameError::Truncated { missing: ENVELOPE_LEN - frame.payload.len() });
    };
    let publisher = u64::from_le_bytes(env[..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(env[8..].try_into().expect("8 bytes"));
    Ok((publisher, seq, msg))
}

/// A Redis error as an `io::Error` (keeping the I/O error's kind when it is one).
fn io_err(e: RedisError) -> io::Error {
    let kind = if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else if e.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if e.is_connection_dropped() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

/// Whether an error means the connection (or the server) is gone, so that the command may be retried on
/// a new connection: I/O errors other than a timeout, and a server still loading its data.
fn is_connection_error(e: &RedisError) -> bool {
    (e.is_io_error() && !e.is_timeout()) || e.kind() == redis::ErrorKind::BusyLoadingError
}

/// When a wait ends, for commands: `try_` calls get `io_timeout`, blocking calls none.
fn deadline_of(wait: Wait, io_timeout: Duration) -> Option<Instant> {
    match wait {
        Wait::Never => Some(Instant::now() + io_timeout),
        Wait::Forever => None,
        Wait::Until(d) => Some(d),
    }
}

/// The smallest timeout a socket accepts (zero means "none" to the OS).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Why a command did not complete.
#[derive(Debug)]
enum LinkError {
    /// The deadline passed (the connection was dropped if a command was in flight).
    Timeout,
    /// The server could not be reached for as long as the wait allowed (or `give_up`).
    Unreachable,
    /// The server answered with an error.
    Server(RedisError),
}

/// One connection to a server that reconnects as needed.
struct Link {
    client: Client,
    con: Option<Connection>,
    opts: Options,
    /// Times a connection was made after the first.
    reconnects: u64,
    connected_once: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("connected", &self.con.is_some()).field("reconnects", &self.reconnects).finish()
    }
}

impl Link {
    /// Opens the client and connects once (so that a wrong address or a server that is not there is an
    /// error at once).
    fn open(url: &str, opts: Options) -> io::Result<Link> {
        let client = Client::open(url).map_err(io_err)?;
        let mut link = Link { client, con: None, opts, reconnects: 0, connected_once: false };
        let deadline = Instant::now() + link.opts.connect_timeout;
        link.connect(Some(deadline)).map_err(io_err)?;
        Ok(link)
    }

    fn connect(&mut self, deadline: Option<Instant>) -> Result<(), RedisError> {
        let mut t = self.opts.connect_timeout;
        if let Some(d) = deadline {
            t = t.min(d.saturating_duration_since(Instant::now())).max(MIN_TIMEOUT);
        }
        let con = self.client.get_connection_with_timeout(t)?;
        if self.connected_once {
            self.reconnects += 1;
        }
        self.connected_once = true;
        self.con = Some(con);
        Ok(())
    }

    /// Runs `f` on a connection, reconnecting (and running it again) while the connection or server is
    /// gone, as long as `deadline` (or, without one, `give_up`) allows; without `patient` (`try_` calls)
    /// it makes one new connection at most and never pauses. `extra` is added to the read timeout (for
    /// commands that block on the server, like `XREADGROUP BLOCK`).
    fn run<T>(
        &mut self,
        deadline: Option<Instant>,
        patient: bool,
        extra: Duration,
        mut f: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, LinkError> {
        let mut failing_since: Option<Instant> = None;
        let mut backoff = Duration::ZERO;
        let mut tries = 0;
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(if failing_since.is_some() { LinkError::Unreachable } else { LinkError::Timeout });
            }
            if self.con.is_none() {
                if let Err(e) = self.connect(deadline) {
                    if !is_connection_error(&e) && !e.is_timeout() {
                        return Err(LinkError::Server(e));
                    }
                }
            }
            if let Some(con) = self.con.as_mut() {
                let mut t = self.opts.io_timeout;
                if let Some(d) = deadline {
                    t = t.min(d.saturating_duration_since(Instant::now()));
                }
                let t = t.max(MIN_TIMEOUT);
                let set = con.set_write_timeout(Some(t)).and_then(|_| con.set_read_timeout(Some(t + extra)));
                match set.and_then(|_| f(con)) {
                    Ok(v) => return Ok(v),
                    Err(e) if e.is_timeout() => {
                        // A reply may still come on this connection: it can't be used again.
                        self.con = None;
                        return Err(LinkError::Timeout);
                    }
                    Err(e) if is_connection_error(&e) => self.con = None,
                    Err(e) => return Err(LinkError::Server(e)),
                }
            }
            // The connection or the server is gone: try again on a new connection, at once the first time
            // (a connection that broke while idle), then backing off.
            let since = *failing_since.get_or_insert(now);
            if deadline.is_none() && self.opts.give_up.is_some_and(|g| since.elapsed() >= g) {
                return Err(LinkError::Unreachable);
            }
            tries += 1;
            if !patient && tries >= 2 {
                // A `try_` call: the old connection broke and a new one could not be made, or broke too.
                return Err(LinkError::Unreachable);
            }
            let mut pause = backoff;
            if let Some(d) = deadline {
                pause = pause.min(d.saturating_duration_since(Instant::now()));
            }
            std::thread::sleep(pause);
            backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_millis(250));
        }
    }
}

fn send_error(e: LinkError, wait: Wait) -> TransportSendError {
    match e {
        LinkError::Timeout if wait == Wait::Never => TransportSendError::WouldBlock,
        LinkError::Timeout if matches!(wait, Wait::Until(_)) => TransportSendError::Timeout,
        LinkError::Timeout | LinkError::Unreachable => TransportSendError::PeerReset,
        LinkError::Server(e) => TransportSendError::Io(io_err(e)),
    }
}

fn recv_error(e: LinkError, wait: Wait) -> TransportRecvError {
    match e {
        LinkError::Timeout if wait == Wait::Never => TransportRecvError::Empty,
        LinkError::Timeout if matches!(wait, Wait::Until(_)) => TransportRecvError::Timeout,
        LinkError::Timeout | LinkError::Unreachable => TransportRecvError::PeerReset,
        LinkError::Server(e) => TransportRecvError::Io(io_err(e)),
    }
}

// ---------------------------------------------------------------------------------------------------
// Pub/sub
// ---------------------------------------------------------------------------------------------------

/// The sending half of pub/sub: `PUBLISH`es each message on a channel. At most once: a message reaches
/// the subscribers connected at that moment, and no one else.
#[derive(Debug)]
pub struct Publisher {
    link: Link,
    channel: String,
    id: u64,
    seq: u64,
    buf: Vec<u8>,
    last_receivers: Option<u64>,
    closed: bool,
}

impl Publisher {
    /// Connects to the server at `url` (`redis://host:port`) to publish on `channel`.
    pub fn connect(url: &str, channel: &str) -> io::Result<Publisher> {
        Self::with_options(url, channel, Options::default())
    }

    /// As [`connect`](Self::connect), with options.
    pub fn with_options(url: &str, channel: &str, opts: Options) -> io::Result<Publisher> {
        Ok(Publisher {
            link: Link::open(url, opts)?,
            channel: channel.to_string(),
            id: new_publisher_id(),
            seq: 0,
            buf: Vec::new(),
            last_receivers: None,
            closed: false,
        })
    }

    /// This publisher's id (in every message's envelope).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The sequence number the next message will carry.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// How many subscribers the server handed the last message to (`PUBLISH`'s reply); `None` before the
    /// first message. 0 means that message is lost: nobody was subscribed.
    pub fn last_receivers(&self) -> Option<u64> {
        self.last_receivers
    }

    /// Times the connection was made again.
    pub fn reconnects(&self) -> u64 {
        self.link.reconnects
    }
}

impl Sender for Publisher {
    fn send_wait(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        let max = self.link.opts.max_message;
        if msg.len() > max {
            return Err(TransportSendError::Oversize { len: msg.len(), max });
        }
        encode(&mut self.buf, self.id, self.seq, msg);
        let (channel, buf) = (&self.channel, &self.buf);
        let mut written = false;
        let deadline = deadline_of(wait, self.link.opts.io_timeout);
        let r = self.link.run(deadline, wait != Wait::Never, Duration::ZERO, |con| {
            written = true;
            redis::cmd("PUBLISH").arg(channel).arg(buf).query::<u64>(con)
        });
        if written {
            // It may have reached the server: its number is used either way, so that a receiver counts
            // it as lost if it did not.
            self.seq += 1;
        }
        let n = r.map_err(|e| send_error(e, wait))?;
        self.last_receivers = Some(n);
        Ok(())
    }

    fn close(&mut self) -> Result<(), TransportSendError> {
        self.closed = true;
        self.link.con = None;
        Ok(())
    }

    fn max_message(&self) -> usize {
        self.link.opts.max_message
    }
}

/// What the subscriber's reader thread tells it.
enum Event {
    Message(Vec<u8>),
    /// A value over the limit, dropped by the reader thread (its length, as a message).
    Oversize(usize),
    /// The connection dropped.
    Lost,
    /// Subscribed again after a loss.
    Resubscribed,
    /// The server has not answered for `give_up`.
    Unreachable,
}

/// The receiving half of pub/sub: `SUBSCRIBE`d to one channel.
///
/// A reader thread owns the subscribed connection (the redis crate's `PubSub` borrows its connection, and
/// the thread is what lets a receive wait with a deadline on a queue instead of on a socket whose reply
/// parser must not be interrupted). It hands messages to this half through a bounded queue
/// ([`Options::queue`]), resubscribes whenever the connection drops, and stops within 250 ms of this
/// half being closed or dropped. Loss is reported by [`take_report`](Self::take_report), never as an
/// error: `recv` goes on with the next message.
pub struct Subscriber {
    events: Option<mpsc::Receiver<Event>>,
    /// Dropping it tells the reader thread to stop.
    stop: Option<mpsc::Sender<()>>,
    tracker: Tracker,
    max: usize,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").field("open", &self.events.is_some()).field("max", &self.max).finish()
    }
}

/// How often an idle reader thread checks whether its subscriber is gone.
const TICK: Duration = Duration::from_millis(250);

impl Subscriber {
    /// Connects to `url` (`redis://host:port`) and subscribes to `channel`; returns once the server has
    /// confirmed the subscription (a message published after that is received).
    pub fn connect(url: &str, channel: &str) -> io::Result<Subscriber> {
        Self::with_options(url, channel, Options::default())
    }

    /// As [`connect`](Self::connect), with options.
    pub fn with_options(url: &str, channel: &str, opts: Options) -> io::Result<Subscriber> {
        let client = Client::open(url).map_err(io_err)?;
        let (events_tx, events) = mpsc::sync_channel(opts.queue.max(1));
        let (stop, stop_rx) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let max = opts.max_message;
        let wait = opts.connect_timeout + opts.io_timeout;
        let channel = channel.to_string();
        std::thread::Builder::new()
            .name("ringwire-redis-sub".into())
            .spawn(move || reader(client, channel, opts, events_tx, stop_rx, ready_tx))?;
        match ready.recv_timeout(wait) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "redis subscription not confirmed")),
        }
        Ok(Subscriber { events: Some(events), stop: Some(stop), tracker: Tracker::default(), max })
    }

    /// What was noticed since the last call — reconnections, messages lost, duplicates — or `None` if
    /// nothing was. Each event is reported once.
    pub fn take_report(&mut self) -> Option<DeliveryReport> {
        self.tracker.take()
    }
}

/// The subscriber's reader thread: (re)connects, subscribes, forwards messages until its subscriber goes.
fn reader(
    client: Client,
    channel: String,
    opts: Options,
    events: mpsc::SyncSender<Event>,
    stop: mpsc::Receiver<()>,
    ready: mpsc::Sender<io::Result<()>>,
) {
    let stopped = || matches!(stop.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    let mut first = true;
    let mut down_since: Option<Instant> = None;
    let mut reported_unreachable = false;
    let mut backoff = Duration::from_millis(5);
    loop {
        if stopped() {
            return;
        }
        let subscribed = client.get_connection_with_timeout(opts.connect_timeout).and_then(|con| {
            con.set_write_timeout(Some(opts.io_timeout))?;
            con.set_read_timeout(Some(opts.io_timeout))?;
            Ok(con)
        });
        let mut con = match subscribed {
            Ok(con) => con,
            Err(e) => {
                if first {
                    let _ = ready.send(Err(io_err(e)));
                    return;
                }
                let since = *down_since.get_or_insert_with(Instant::now);
                if !reported_unreachable && opts.give_up.is_some_and(|g| since.elapsed() >= g) {
                    reported_unreachable = true;
                    if events.send(Event::Unreachable).is_err() {
                        return;
                    }
                }
                // Sleep, but wake at once if the subscriber goes away.
                if let Err(mpsc::RecvTimeoutError::Disconnected) = stop.recv_timeout(backoff) {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_millis(250));
                continue;
            }
        };
        let mut ps = con.as_pubsub();
        let ok = ps.subscribe(&channel).and_then(|_| ps.set_read_timeout(Some(TICK)));
        if let Err(e) = ok {
            if first {
                let _ = ready.send(Err(io_err(e)));
                return;
            }
            drop(ps);
            if let Err(mpsc::RecvTimeoutError::Disconnected) = stop.recv_timeout(backoff) {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_millis(250));
            continue;
        }
        down_since = None;
        reported_unreachable = false;
        backoff = Duration::from_millis(5);
        if first {
            first = false;
            if ready.send(Ok(())).is_err() {
                return;
            }
        } else if events.send(Event::Resubscribed).is_err() {
            return;
        }
        loop {
            match ps.get_message() {
                Ok(msg) => {
                    if msg.get_channel_name() != channel {
                        continue;
                    }
                    // Only values within the limit are queued: the queue holds at most `queue` of them.
                    let value = msg.get_payload_bytes();
                    let over = value.len().saturating_sub(crate::wire::HEADER_LEN + ENVELOPE_LEN);
                    let ev =
                        if over > opts.max_message { Event::Oversize(over) } else { Event::Message(value.to_vec()) };
                    if events.send(ev).is_err() {
                        return;
                    }
                }
                Err(e) if e.is_timeout() => {
                    if stopped() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = e;
                    if events.send(Event::Lost).is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

impl Receiver for Subscriber {
    fn recv_wait(&mut self, wait: Wait) -> Result<Vec<u8>, TransportRecvError> {
        let Some(events) = self.events.as_ref() else { return Err(TransportRecvError::Closed) };
        loop {
            let ev = match wait {
                Wait::Never => events.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => TransportRecvError::Empty,
                    mpsc::TryRecvError::Disconnected => TransportRecvError::PeerReset,
                }),
                Wait::Forever => events.recv().map_err(|_| TransportRecvError::PeerReset),
                Wait::Until(d) => {
                    events.recv_timeout(d.saturating_duration_since(Instant::now())).map_err(|e| match e {
                        mpsc::RecvTimeoutError::Timeout => TransportRecvError::Timeout,
                        mpsc::RecvTimeoutError::Disconnected => TransportRecvError::PeerReset,
                    })
                }
            }?;
            match ev {
                Event::Message(value) => {
                    let (publisher, seq, msg) = decode(&value, self.max).map_err(TransportRecvError::BadFrame)?;
                    self.tracker.observe(publisher, seq, false);
                    return Ok(msg.to_vec());
                }
                Event::Oversize(len) => {
                    return Err(TransportRecvError::BadFrame(FrameError::Oversize { len, max: self.max }))
                }
                Event::Lost => {}
                Event::Resubscribed => self.tracker.report.reconnects += 1,
                Event::Unreachable => return Err(TransportRecvError::PeerReset),
            }
        }
    }

    fn close(&mut self) {
        self.events = None;
        self.stop = None;
    }

    fn max_message(&self) -> usize {
        self.max
    }
}

// ---------------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------------

/// The sending half of a stream: `XADD`s each message (optionally trimming the stream to about
/// [`set_max_len`](Self::set_max_len) entries). A send returns once the server has stored the entry.
#[derive(Debug)]
pub struct StreamProducer {
    link: Link,
    key: String,
    max_len: Option<usize>,
    id: u64,
    seq: u64,
    buf: Vec<u8>,
    last_id: Option<String>,
    closed: bool,
}

impl StreamProducer {
    /// Connects to `url` (`redis://host:port`) to append to the stream `key`.
    pub fn connect(url: &str, key: &str) -> io::Result<StreamProducer> {
        Self::with_options(url, key, Options::default())
    }

    /// As [`connect`](Self::connect), with options.
    pub fn with_options(url: &str, key: &str, opts: Options) -> io::Result<StreamProducer> {
        Ok(StreamProducer {
            link: Link::open(url, opts)?,
            key: key.to_string(),
            max_len: None,
            id: new_publisher_id(),
            seq: 0,
            buf: Vec::new(),
            last_id: None,
            closed: false,
        })
    }

    /// Trims the stream to about `n` entries on every `XADD` (`MAXLEN ~ n`: Redis trims whole nodes, so
    /// a few more may stay). Entries trimmed before a consumer read them are lost (a gap in the consumer's
    /// report). `None` (the default): never trim.
    pub fn set_max_len(&mut self, n: Option<usize>) {
        self.max_len = n;
    }

    /// This producer's id (in every message's envelope).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The stream entry id of the last message sent.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Times the connection was made again.
    pub fn reconnects(&self) -> u64 {
        self.link.reconnects
    }
}

impl Sender for StreamProducer {
    fn send_wait(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        let max = self.link.opts.max_message;
        if msg.len() > max {
            return Err(TransportSendError::Oversize { len: msg.len(), max });
        }
        encode(&mut self.buf, self.id, self.seq, msg);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.key);
        if let Some(n) = self.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*").arg(FIELD).arg(&self.buf);
        let mut written = false;
        let deadline = deadline_of(wait, self.link.opts.io_timeout);
        let r = self.link.run(deadline, wait != Wait::Never, Duration::ZERO, |con| {
            written = true;
            cmd.query::<String>(con)
        });
        if written {
            self.seq += 1;
        }
        self.last_id = Some(r.map_err(|e| send_error(e, wait))?);
        Ok(())
    }

    fn close(&mut self) -> Result<(), TransportSendError> {
        self.closed = true;
        self.link.con = None;
        Ok(())
    }

    fn max_message(&self) -> usize {
        self.link.opts.max_message
    }
}

/// When a [`StreamConsumer`] acknowledges (`XACK`) what it delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AckMode {
    /// A message counts as handled when the next `recv` (or `close`) is called: its id is acknowledged
    /// with the next request to the server (batched with the next read) or at `close`. A consumer that
    /// dies holding a message, or dropped without `close`, leaves it pending, to be claimed by another
    /// consumer (or re-read by one created again under the same name).
    #[default]
    OnNextRecv,
    /// Nothing is acknowledged until [`StreamConsumer::ack`] is called.
    Manual,
}

/// Entries fetched per `XREADGROUP` / `XAUTOCLAIM`.
const BATCH: usize = 128;

/// One entry fetched and not yet delivered.
struct Entry {
    id: String,
    value: Option<Vec<u8>>,
    redelivered: bool,
}

/// The receiving half of a stream: one consumer of a consumer group (`XREADGROUP`). At least once: every
/// entry added to the stream is delivered to some consumer of the group, and is delivered again if that
/// consumer did not acknowledge it (see [`AckMode`]): entries another consumer left pending for
/// [`set_claim_idle`](Self::set_claim_idle) are claimed (`XAUTOCLAIM`) and delivered here.
///
/// The group is created (`XGROUP CREATE key group 0 MKSTREAM`) if it does not exist, reading the stream
/// from its start: entries added before any consumer existed are delivered too. A consumer whose name
/// has pending entries (it was created again after a crash) first delivers those.
pub struct StreamConsumer {
    link: Link,
    key: String,
    group: String,
    consumer: String,
    buffered: VecDeque<Entry>,
    /// Delivered and not yet acknowledged.
    delivered: Vec<String>,
    ack_mode: AckMode,
    claim_idle: Option<Duration>,
    last_claim: Instant,
    claim_cursor: String,
    /// While reading our own pending entries (before new ones, `>`): the last id read (from `0`).
    own_pending: Option<String>,
    tracker: Tracker,
    last_id: Option<String>,
    closed: bool,
}

impl std::fmt::Debug for StreamConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConsumer")
            .field("key", &self.key)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .finish()
    }
}

impl StreamConsumer {
    /// Connects to `url` (`redis://host:port`) as consumer `consumer` of group `group` of the stream
    /// `key`, creating the group (and the stream) if needed.
    pub fn connect(url: &str, key: &str, group: &str, consumer: &str) -> io::Result<StreamConsumer> {
        Self::with_options(url, key, group, consumer, Options::default())
    }

    /// As [`connect`](Self::connect), with options.
    pub fn with_options(
        url: &str,
        key: &str,
        group: &str,
        consumer: &str,
        opts: Options,
    ) -> io::Result<StreamConsumer> {
        let mut c = StreamConsumer {
            link: Link::open(url, opts)?,
            key: key.to_string(),
            group: group.to_string(),
            consumer: consumer.to_string(),
            buffered: VecDeque::new(),
            delivered: Vec::new(),
            ack_mode: AckMode::default(),
            claim_idle: Some(Duration::from_secs(30)),
            last_claim: Instant::now(),
            claim_cursor: "0-0".into(),
            own_pending: Some("0".into()),
            tracker: Tracker::default(),
            last_id: None,
            closed: false,
        };
        let deadline = Instant::now() + c.link.opts.io_timeout;
        c.create_group(Some(deadline)).map_err(|e| match e {
            LinkError::Server(e) => io_err(e),
            _ => io::Error::new(io::ErrorKind::TimedOut, "redis: XGROUP CREATE got no answer"),
        })?;
        Ok(c)
    }

    fn create_group(&mut self, deadline: Option<Instant>) -> Result<(), LinkError> {
        let (key, group) = (&self.key, &self.group);
        let r = self.link.run(deadline, true, Duration::ZERO, |con| {
            redis::cmd("XGROUP").arg("CREATE").arg(key).arg(group).arg("0").arg("MKSTREAM").exec(con)
        });
        match r {
            Err(LinkError::Server(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            r => r,
        }
    }

    /// Sets when entries are acknowledged (default [`AckMode::OnNextRecv`]).
    pub fn set_ack_mode(&mut self, mode: AckMode) {
        self.ack_mode = mode;
    }

    /// Claims entries that another consumer of the group has left pending (unacknowledged) for at least
    /// `idle`, checking every `idle / 2` while receiving. `None`: never claim. Default 30 s. Too short an
    /// idle time takes entries from consumers that are alive but slow (they are then delivered twice).
    pub fn set_claim_idle(&mut self, idle: Option<Duration>) {
        self.claim_idle = idle;
    }

    /// This consumer's name in its group.
    pub fn name(&self) -> &str {
        &self.consumer
    }

    /// The stream entry id of the last message delivered.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// What was noticed since the last call — reconnections, gaps, duplicates, redeliveries — or `None`.
    pub fn take_report(&mut self) -> Option<DeliveryReport> {
        self.tracker.take()
    }

    /// Acknowledges every message delivered so far (blocking, one request).
    pub fn ack(&mut self) -> Result<(), TransportRecvError> {
        if self.delivered.is_empty() {
            return Ok(());
        }
        let (key, group, ids) = (&self.key, &self.group, &self.delivered);
        let deadline = deadline_of(Wait::Forever, self.link.opts.io_timeout);
        self.link
            .run(deadline, true, Duration::ZERO, |con| redis::cmd("XACK").arg(key).arg(group).arg(ids).exec(con))
            .map_err(|e| recv_error(e, Wait::Forever))?;
        self.delivered.clear();
        Ok(())
    }

    /// Fetches entries into `buffered`: acknowledgements first, then claims if due, then a read.
    fn fetch(&mut self, wait: Wait) -> Result<(), LinkError> {
        let deadline = match wait {
            Wait::Never => Some(Instant::now() + self.link.opts.io_timeout),
            Wait::Forever => None,
            Wait::Until(d) => Some(d),
        };
        let claim_every = self.claim_idle.map(|i| (i / 2).max(MIN_TIMEOUT));
        loop {
            if claim_every.is_some_and(|e| self.last_claim.elapsed() >= e) {
                self.claim(deadline, wait != Wait::Never)?;
                if !self.buffered.is_empty() {
                    return Ok(());
                }
            }
            // How long the server may block: until the deadline, and no longer than the next claim check
            // (a blocking receive must notice abandoned entries too).
            let block = match wait {
                Wait::Never => None,
                _ => {
                    let mut b = Duration::from_secs(1);
                    if let Some(d) = deadline {
                        b = b.min(d.saturating_duration_since(Instant::now()));
                    }
                    if let Some(e) = claim_every {
                        b = b.min(e.saturating_sub(self.last_claim.elapsed()));
                    }
                    Some(b.max(MIN_TIMEOUT))
                }
            };
            let acks = match self.ack_mode {
                AckMode::OnNextRecv => std::mem::take(&mut self.delivered),
                AckMode::Manual => Vec::new(),
            };
            let from = self.own_pending.as_deref().unwrap_or(">");
            let (key, group, consumer) = (&self.key, &self.group, &self.consumer);
            let mut pipe = redis::pipe();
            if !acks.is_empty() {
                pipe.cmd("XACK").arg(key).arg(group).arg(&acks).ignore();
            }
            let read = pipe.cmd("XREADGROUP").arg("GROUP").arg(group).arg(consumer).arg("COUNT").arg(BATCH);
            if let Some(b) = block.filter(|_| self.own_pending.is_none()) {
                read.arg("BLOCK").arg(b.as_millis().max(1) as u64);
            }
            read.arg("STREAMS").arg(key).arg(from);
            let patient = wait != Wait::Never;
            let r =
                self.link.run(deadline, patient, block.unwrap_or(Duration::ZERO), |con| pipe.query::<(Value,)>(con));
            let reply = match r {
                Ok((v,)) => v,
                Err(LinkError::Server(e)) if e.code() == Some("NOGROUP") => {
                    // The group is gone (a server restarted without its data): make it again.
                    self.delivered.clear();
                    self.create_group(deadline)?;
                    continue;
                }
                Err(e) => {
                    if self.ack_mode == AckMode::OnNextRecv {
                        // Not known to be acknowledged: try again with the next request.
                        self.delivered.extend(acks);
                    }
                    return Err(e);
                }
            };
            let n = self.buffered.len();
            push_entries(&mut self.buffered, &reply, self.own_pending.is_some());
            if self.own_pending.is_some() {
                match self.buffered.back() {
                    Some(last) if self.buffered.len() > n => self.own_pending = Some(last.id.clone()),
                    _ => {
                        self.own_pending = None;
                        continue; // no pending entries of ours (left): read new ones
                    }
                }
            }
            if self.buffered.len() > n || wait == Wait::Never {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(LinkError::Timeout);
            }
        }
    }

    /// `XAUTOCLAIM`s entries idle for at least `claim_idle` into `buffered`.
    fn claim(&mut self, deadline: Option<Instant>, patient: bool) -> Result<(), LinkError> {
        let Some(idle) = self.claim_idle else { return Ok(()) };
        let (key, group, consumer, cursor) = (&self.key, &self.group, &self.consumer, &self.claim_cursor);
        let reply = self.link.run(deadline, patient, Duration::ZERO, |con| {
            redis::cmd("XAUTOCLAIM")
                .arg(key)
                .arg(group)
                .arg(consumer)
                .arg(idle.as_millis() as u64)
                .arg(cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query::<Value>(con)
        });
        let reply = match reply {
            Err(LinkError::Server(e)) if e.code() == Some("NOGROUP") => {
                self.create_group(deadline)?;
                return Ok(());
            }
            r => r?,
        };
        self.last_claim = Instant::now();
        if let Value::Array(parts) = &reply {
            if let Some(next) = parts.first().and_then(bulk_str) {
                self.claim_cursor = next;
            }
            if let Some(Value::Array(entries)) = parts.get(1) {
                for e in entries {
                    if let Some(entry) = parse_entry(e, true) {
                        self.buffered.push_back(entry);
                    }
                }
            }
        }
        Ok(())
    }
}

fn bulk_str(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// One stream entry, `[id, [field, value, ...]]` (the field list is nil for an entry deleted since it was
/// delivered).
fn parse_entry(v: &Value, redelivered: bool) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let id = bulk_str(parts.first()?)?;
    let mut value = None;
    if let Some(Value::Array(fields)) = parts.get(1) {
        for pair in fields.chunks(2) {
            if let [Value::BulkString(f), Value::BulkString(v)] = pair {
                if f == FIELD.as_bytes() {
                    value = Some(v.clone());
                }
            }
        }
    }
    Some(Entry { id, value, redelivered })
}

/// The entries of an `XREADGROUP` reply for one key: `[[key, [entry, ...]]]`, or nil on a time-out.
fn push_entries(out: &mut VecDeque<Entry>, reply: &Value, redelivered: bool) {
    let Value::Array(keys) = reply else { return };
    for k in keys {
        if let Value::Array(kv) = k {
            if let Some(Value::Array(entries)) = kv.get(1) {
                out.extend(entries.iter().filter_map(|e| parse_entry(e, redelivered)));
            }
        }
    }
}

impl Receiver for StreamConsumer {
    fn recv_wait(&mut self, wait: Wait) -> Result<Vec<u8>, TransportRecvError> {
        if self.closed {
            return Err(TransportRecvError::Closed);
        }
        loop {
            if let Some(entry) = self.buffered.pop_front() {
                // Handed to the caller (as a message or as an error): acknowledged as the next one is
                // asked for.
                self.delivered.push(entry.id.clone());
                self.last_id = Some(entry.id);
                let Some(value) = entry.value else {
                    // Deleted (trimmed) after it was delivered to a consumer that did not acknowledge it.
                    continue;
                };
                let max = self.link.opts.max_message;
                let (publisher, seq, msg) = decode(&value, max).map_err(TransportRecvError::BadFrame)?;
                self.tracker.observe(publisher, seq, entry.redelivered);
                return Ok(msg.to_vec());
            }
            let before = self.link.reconnects;
            let r = self.fetch(wait);
            self.tracker.report.reconnects += self.link.reconnects - before;
            r.map_err(|e| recv_error(e, wait))?;
            if self.buffered.is_empty() {
                return Err(match wait {
                    Wait::Never => TransportRecvError::Empty,
                    _ => TransportRecvError::Timeout,
                });
            }
        }
    }

    /// Acknowledges what was delivered (unless [`AckMode::Manual`]), then closes. Entries fetched but not
    /// delivered stay pending for this consumer name (claimable by others).
    fn close(&mut self) {
        if self.closed {
            return;
        }
        if self.ack_mode == AckMode::OnNextRecv {
            let _ = self.ack();
        }
        self.closed = true;
        self.link.con = None;
    }

    fn max_message(&self) -> usize {
        self.link.opts.max_message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::HEADER_LEN;

    #[test]
    fn envelope_round_trip() {
        let mut v = Vec::new();
        encode(&mut v, 7, 42, b"hello");
        assert_eq!(v.len(), HEADER_LEN + ENVELOPE_LEN + 5);
        assert_eq!(&v[..4], &21u32.to_le_bytes());
        assert_eq!(v[4], 1);
        assert_eq!(decode(&v, 5).unwrap(), (7, 42, &b"hello"[..]));
        assert_eq!(decode(&v, 4), Err(FrameError::Oversize { len: 5, max: 4 }));
        encode(&mut v, 7, 42, b"");
        v.truncate(HEADER_LEN + 3);
        v[0] = 3;
        assert_eq!(decode(&v, 10), Err(FrameError::Truncated { missing: 13 }));
        assert!(matches!(decode(b"garbage!garbage", 10), Err(FrameError::BadHeader(_))));
    }

    #[test]
    fn tracker_counts_gaps_and_duplicates() {
        let mut t = Tracker::default();
        for s in [5, 6, 9, 9, 10] {
            t.observe(1, s, false);
        }
        t.observe(2, 0, false);
        t.observe(1, 3, true);
        let r = t.take().unwrap();
        assert_eq!(r.gaps, [Gap { publisher: 1, first: 7, count: 2 }]);
        assert_eq!((r.lost(), r.duplicates, r.redelivered), (2, 1, 1));
        assert!(t.take().is_none());
    }

    #[test]
    fn addresses() {
        assert_eq!(split_addr("redis://127.0.0.1:6379/chat"), Some(("redis://127.0.0.1:6379".into(), "chat".into())));
        assert_eq!(split_addr("redis://h:1/a/b"), Some(("redis://h:1".into(), "a/b".into())));
        assert_eq!(split_addr("redis://h:1/"), None);
        assert_eq!(split_addr("tcp://h:1/x"), None);
    }
}
