//! Streams: [`StreamProducer`] (`XADD`) and [`StreamConsumer`] (consumer groups, acknowledgements,
//! claims): at least once.

use super::envelope::{decode, encode, new_publisher_id, DeliveryReport, Tracker};
use super::link::*;
use super::window::Window;
use super::*;
use crate::transport::{check_frame, Receiver, RecvFrame, Sender, TransportRecvError, TransportSendError, Wait};
use redis::Value;
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::time::{Duration, Instant};

/// The sending half of a stream: `XADD`s each message (optionally trimming the stream to about
/// [`set_max_len`](Self::set_max_len) entries).
///
/// With the default [`Options::window`] of 1 a send returns once the server has stored the entry; with
/// a larger window it returns once the command is written, up to `window` of them unacknowledged (see
/// the module docs, "Pipelining"), and [`flush`](Sender::flush) waits until every entry is stored.
#[derive(Debug)]
pub struct StreamProducer {
    window: Window,
    key: String,
    max_len: Option<usize>,
    id: u64,
    buf: Vec<u8>,
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
            window: Window::new(Link::open(url, opts)?),
            key: key.to_string(),
            max_len: None,
            id: new_publisher_id(),
            buf: Vec::new(),
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

    /// The sequence number the next message will carry.
    pub fn next_seq(&self) -> u64 {
        self.window.next_seq()
    }

    /// The sequence numbers of the messages written whose entry id has not been read yet (empty with a
    /// window of 1, and after a [`flush`](Sender::flush)).
    pub fn in_flight(&self) -> Range<u64> {
        self.window.in_flight()
    }

    /// The sequence numbers the last send or flush gave up on, if it failed: after a lost connection,
    /// deadline or server, every message then unacknowledged (each may or may not have been stored; none
    /// is sent again); after an error reply, the one message the server refused. `None` after a call
    /// that succeeded.
    pub fn failed(&self) -> Option<Range<u64>> {
        self.window.failed()
    }

    /// The stream entry id of the last message acknowledged (the last one sent, with a window of 1).
    pub fn last_id(&self) -> Option<&str> {
        match &self.window.last_reply {
            Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
            Some(Value::SimpleString(s)) => Some(s),
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
        let (id, buf, key, max_len) = (self.id, &mut self.buf, &self.key, self.max_len);
        self.window.send(wait, buffered, |seq, cmd| {
            encode(buf, id, seq, ext, parts);
            cmd.arg("XADD").arg(key);
            if let Some(n) = max_len {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*").arg(FIELD).arg(&buf[..]);
        })
    }
}

impl Sender for StreamProducer {
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

    /// Waits until every entry written is stored (blocking; see [`StreamProducer::failed`] on an error).
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
    fn recv_frame_wait(&mut self, wait: Wait) -> Result<RecvFrame, TransportRecvError> {
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
                let (publisher, seq, ext, msg) = decode(&value, max).map_err(TransportRecvError::BadFrame)?;
                self.tracker.observe(publisher, seq, entry.redelivered);
                return Ok(RecvFrame { ext, bytes: msg.to_vec() });
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
