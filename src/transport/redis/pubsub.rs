//! Pub/sub: [`Publisher`] (`PUBLISH`) and [`Subscriber`] (`SUBSCRIBE` on a reader thread): at most once.

use super::envelope::{decode, encode, new_publisher_id, DeliveryReport, Tracker};
use super::link::*;
use super::window::Window;
use super::*;
use crate::transport::codec::FrameError;
use crate::transport::{check_frame, Receiver, RecvFrame, Sender, TransportRecvError, TransportSendError, Wait};
use redis::{Client, Value};
use std::io;
use std::ops::Range;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The sending half of pub/sub: `PUBLISH`es each message on a channel. At most once: a message reaches
/// the subscribers connected at that moment, and no one else.
///
/// With the default [`Options::window`] of 1 a send returns once the server has handled the message;
/// with a larger window it returns once the command is written, up to `window` of them unacknowledged
/// (see the module docs, "Pipelining"), and [`flush`](Sender::flush) waits for every reply.
#[derive(Debug)]
pub struct Publisher {
    window: Window,
    channel: String,
    id: u64,
    buf: Vec<u8>,
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
            window: Window::new(Link::open(url, opts)?),
            channel: channel.to_string(),
            id: new_publisher_id(),
            buf: Vec::new(),
            closed: false,
        })
    }

    /// This publisher's id (in every message's envelope).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The sequence number the next message will carry.
    pub fn next_seq(&self) -> u64 {
        self.window.next_seq()
    }

    /// The sequence numbers of the messages written whose reply has not been read yet (empty with a
    /// window of 1, and after a [`flush`](Sender::flush)).
    pub fn in_flight(&self) -> Range<u64> {
        self.window.in_flight()
    }

    /// The sequence numbers the last send or flush gave up on, if it failed: after a lost connection,
    /// deadline or server, every message then unacknowledged (each may or may not have been published;
    /// none is sent again); after an error reply, the one message the server refused. `None` after a
    /// call that succeeded.
    pub fn failed(&self) -> Option<Range<u64>> {
        self.window.failed()
    }

    /// How many subscribers the server handed the last acknowledged message to (`PUBLISH`'s reply);
    /// `None` before the first reply. 0 means that message is lost: nobody was subscribed.
    pub fn last_receivers(&self) -> Option<u64> {
        match self.window.last_reply {
            Some(Value::Int(n)) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// Times the connection was made again.
    pub fn reconnects(&self) -> u64 {
        self.window.link.reconnects
    }

    fn submit(&mut self, ext: u16, parts: &[&[u8]], wait: Wait, buffered: bool) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        check_frame(ext, parts, self.window.link.opts.max_message)?;
        let (id, buf, channel) = (self.id, &mut self.buf, &self.channel);
        self.window.send(wait, buffered, |seq, cmd| {
            encode(buf, id, seq, ext, parts);
            cmd.arg("PUBLISH").arg(channel).arg(&buf[..]);
        })
    }
}

impl Sender for Publisher {
    fn send_frame_wait(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
        self.submit(ext, parts, wait, false)
    }

    /// With a window above 1: queues the message's command without writing it (see
    /// [`Sender::send_buffered`]: call `flush` before waiting for an answer); it is written by the next
    /// `send`, `flush` or `close`, or once 64 KiB is queued or the window is full. With a window of 1,
    /// the same as `send`.
    fn send_buffered(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        self.submit(0, &[msg], wait, true)
    }

    /// Waits for the reply to every message written (blocking; see [`Publisher::failed`] on an error).
    fn flush(&mut self) -> Result<(), TransportSendError> {
        // Closed: nothing is in flight any more.
        if self.closed {
            return Ok(());
        }
        self.window.flush(Wait::Forever)
    }

    /// Flushes (after a refused message, on to the end of the window), then closes: the first error is
    /// returned, and the half is closed anyway.
    fn close(&mut self) -> Result<(), TransportSendError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.window.close()
    }

    fn max_message(&self) -> usize {
        self.window.link.opts.max_message
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
    fn recv_frame_wait(&mut self, wait: Wait) -> Result<RecvFrame, TransportRecvError> {
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
                    let (publisher, seq, ext, msg) = decode(&value, self.max).map_err(TransportRecvError::BadFrame)?;
                    self.tracker.observe(publisher, seq, false);
                    return Ok(RecvFrame { ext, bytes: msg.to_vec() });
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
