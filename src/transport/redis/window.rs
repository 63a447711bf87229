//! The sending side both modes share: numbered commands (`PUBLISH`, `XADD`) written at once and
//! acknowledged in order, up to [`Options::window`] of them unacknowledged on one connection.
//!
//! Every message accepted gets the next sequence number and its packed command is kept until the
//! server's reply to it has been read, so that a connection that breaks can be replaced and every
//! unacknowledged command written again on the new one, in order. Replies are read only while the
//! window is full (down to half of it), on [`Window::flush`], and, with a window of 1, right after each
//! command (a synchronous send). A command sent with `buffered` (`Sender::send_buffered`) is only queued
//! at the end of the same buffer, and written with the next write.

use super::link::*;
use super::*;
use crate::transport::{TransportSendError, Wait};
use redis::{Cmd, RedisError, Value};
use std::collections::VecDeque;
use std::ops::Range;

/// Unwritten bytes of commands queued by `send_buffered` that make the next one write them out.
pub(super) const QUEUE_BYTES: usize = 64 << 10;

/// Bytes of unacknowledged commands that fill the window whatever their number (at least one command
/// is always let through): a window of large messages holds at most this much for rewriting.
pub(super) const WINDOW_BYTES: usize = 1 << 20;

pub(super) struct Window {
    pub(super) link: Link,
    /// The packed commands of the unacknowledged messages, oldest first, from `start`.
    out: Vec<u8>,
    start: usize,
    /// Where each unacknowledged command ends in `out`.
    ends: VecDeque<usize>,
    /// Bytes of `out` written on the current connection.
    written: usize,
    /// The sequence number of the oldest unacknowledged message.
    acked: u64,
    /// The sequence number of the next message.
    seq: u64,
    /// The reply to the last message acknowledged.
    pub(super) last_reply: Option<Value>,
    /// The numbers the last failed call gave up on.
    failed: Option<Range<u64>>,
    /// The command being built (kept: no allocation per message).
    cmd: Cmd,
}

impl Drop for Window {
    /// Whatever is in flight or queued is flushed as a `try_` call waits (replies for at most
    /// `io_timeout`, one new connection at most, no pause): closing a socket with replies unread resets
    /// the connection, and the server drops what it had not read yet.
    fn drop(&mut self) {
        if !self.ends.is_empty() && self.link.con.is_some() {
            let _ = self.flush(Wait::Never);
        }
    }
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").field("link", &self.link).field("in_flight", &self.in_flight()).finish()
    }
}

/// How a call ended badly, before it is mapped to a [`TransportSendError`].
enum Failure {
    /// The connection, the server or the deadline: every unacknowledged message is given up on.
    Link(LinkError),
    /// The server answered message `seq` with an error: that one was refused, the rest are in flight.
    Refused(u64, RedisError),
}

impl Window {
    pub(super) fn new(link: Link) -> Window {
        Window {
            link,
            out: Vec::new(),
            start: 0,
            ends: VecDeque::new(),
            written: 0,
            acked: 0,
            seq: 0,
            last_reply: None,
            failed: None,
            cmd: Cmd::new(),
        }
    }

    /// The sequence number the next message will carry.
    pub(super) fn next_seq(&self) -> u64 {
        self.seq
    }

    /// The messages sent whose reply has not been read yet.
    pub(super) fn in_flight(&self) -> Range<u64> {
        self.acked..self.seq
    }

    pub(super) fn failed(&self) -> Option<Range<u64>> {
        self.failed.clone()
    }

    fn window(&self) -> usize {
        self.link.opts.window.max(1)
    }

    /// Sends the command `build` makes (`build` gets this message's sequence number and an empty
    /// command), waiting as `wait` allows: it is written at once (with everything queued before it);
    /// then, if the window is full, replies are read until half of it is free (with a window of 1: this
    /// message's own reply). `buffered` (`send_buffered`): the command is only queued while the window
    /// has room and less than [`QUEUE_BYTES`] is unwritten.
    pub(super) fn send(
        &mut self,
        wait: Wait,
        buffered: bool,
        build: impl FnOnce(u64, &mut Cmd),
    ) -> Result<(), TransportSendError> {
        self.failed = None;
        self.cmd.clear();
        build(self.seq, &mut self.cmd);
        self.cmd.write_packed_command(&mut self.out);
        self.ends.push_back(self.out.len());
        let this = self.seq;
        self.seq += 1;
        let window = self.window();
        let full = self.ends.len() >= window || self.out.len() - self.start > WINDOW_BYTES;
        if buffered && !full && self.out.len() - self.written < QUEUE_BYTES {
            // Queued: accepted (numbered, kept), written by the next plain send, flush, close or a full
            // queue or window.
            return Ok(());
        }
        // Down to half the window (in number and in bytes); with a window of 1, this message's reply.
        let low = if window == 1 { (0, 0) } else { (window / 2, WINDOW_BYTES / 2) };
        let mut attempted = false;
        let r = self.exchange(
            wait,
            &mut attempted,
            |w| w.ends.len() >= window || w.out.len() - w.start > WINDOW_BYTES,
            low,
        );
        match r {
            Ok(()) => Ok(()),
            Err(f) => {
                if !attempted {
                    // Nothing of it reached a socket: it was not sent and uses no number.
                    debug_assert_eq!(self.seq, this + 1);
                    self.ends.pop_back();
                    let keep = self.ends.back().copied().unwrap_or(self.start);
                    self.out.truncate(keep);
                    self.seq = this;
                }
                Err(self.fail(f, wait))
            }
        }
    }

    /// Waits for the reply to every message sent (reconnecting and writing them again if the
    /// connection breaks), as `wait` allows.
    pub(super) fn flush(&mut self, wait: Wait) -> Result<(), TransportSendError> {
        self.failed = None;
        if self.ends.is_empty() {
            return Ok(());
        }
        let mut attempted = false;
        self.exchange(wait, &mut attempted, |w| !w.ends.is_empty(), (0, 0)).map_err(|f| self.fail(f, wait))
    }

    /// Flushes until nothing is in flight (after a refusal the rest of the window is still read), then
    /// drops the connection. The first error is returned, and `failed` is then the numbers it gave up on.
    pub(super) fn close(&mut self) -> Result<(), TransportSendError> {
        let mut first: Result<(), TransportSendError> = Ok(());
        let mut first_failed = None;
        loop {
            let r = self.flush(Wait::Forever);
            let again = r.is_err() && !self.ends.is_empty();
            if first.is_ok() && r.is_err() {
                first = r;
                first_failed = self.failed.clone();
            }
            if !again {
                break;
            }
        }
        self.failed = first_failed;
        self.drop_window();
        first
    }

    /// Gives the messages a failure concerns up, and says why.
    fn fail(&mut self, f: Failure, wait: Wait) -> TransportSendError {
        match f {
            Failure::Refused(seq, e) => {
                self.failed = Some(seq..seq + 1);
                send_error(LinkError::Server(e), wait)
            }
            Failure::Link(e) => {
                // The server may have had any of them: their numbers are used, none is sent again.
                self.failed = Some(self.acked..self.seq).filter(|r| !r.is_empty());
                self.drop_window();
                send_error(e, wait)
            }
        }
    }

    fn drop_window(&mut self) {
        self.out.clear();
        self.ends.clear();
        self.start = 0;
        self.written = 0;
        self.acked = self.seq;
        // Replies to what was written may still come on this connection: it can't be used again.
        self.link.con = None;
    }

    /// Writes what is not written yet (everything unacknowledged on a new connection), then, if `full`
    /// says so, reads replies until at most `low` = (messages, bytes of their commands) are
    /// unacknowledged. `attempted`: whether the newest message was written (or a write of it was tried).
    fn exchange(
        &mut self,
        wait: Wait,
        attempted: &mut bool,
        full: impl Fn(&Window) -> bool,
        low: (usize, usize),
    ) -> Result<(), Failure> {
        let deadline = deadline_of(wait, self.link.opts.io_timeout);
        let must_read = full(self);
        let Window { link, out, start, ends, written, acked, last_reply, .. } = self;
        let mut refused = None;
        let r = link.run_fresh(deadline, wait != Wait::Never, Duration::ZERO, |con, fresh| {
            if fresh {
                // Nothing written on an earlier connection counts: write the whole window again.
                *written = *start;
            }
            if *written < out.len() {
                *attempted = true;
                con.send_packed_command(&out[*written..])?;
                *written = out.len();
            }
            if !must_read {
                return Ok(());
            }
            while !ends.is_empty() && (ends.len() > low.0 || out.len() - *start > low.1) {
                let reply = con.recv_response()?.extract_error();
                if let Err(e) = &reply {
                    if is_connection_error(e) {
                        // A server still loading its data handled nothing: this one and those after it
                        // are written again on a new connection.
                        return Err(reply.unwrap_err());
                    }
                }
                *start = ends.pop_front().expect("a reply is read only for a command sent");
                let seq = *acked;
                *acked += 1;
                match reply {
                    Ok(v) => *last_reply = Some(v),
                    Err(e) => {
                        // Refused (not stored): the caller hears of it now; the rest stay in flight.
                        refused = Some((seq, e));
                        break;
                    }
                }
            }
            Ok(())
        });
        self.compact();
        match (r, refused) {
            (Ok(()), Some((seq, e))) => Err(Failure::Refused(seq, e)),
            (Ok(()), None) => Ok(()),
            (Err(e), _) => Err(Failure::Link(e)),
        }
    }

    /// Drops acknowledged bytes from the front of `out` once they are most of it.
    fn compact(&mut self) {
        if self.start == self.out.len() {
            self.out.clear();
            self.start = 0;
            self.written = 0;
        } else if self.start > 64 << 10 && self.start > self.out.len() / 2 {
            let n = self.start;
            self.out.drain(..n);
            for e in self.ends.iter_mut() {
                *e -= n;
            }
            self.written -= n;
            self.start = 0;
        }
    }
}
