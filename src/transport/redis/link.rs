//! One connection to the server with reconnection, deadlines and the error mapping both modes share.

use super::*;
use crate::transport::{TransportRecvError, TransportSendError, Wait};
use redis::{Client, Connection, RedisError};
use std::io;
use std::time::{Duration, Instant};

/// A Redis error as an `io::Error` (keeping the I/O error's kind when it is one).
pub(super) fn io_err(e: RedisError) -> io::Error {
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
pub(super) fn is_connection_error(e: &RedisError) -> bool {
    (e.is_io_error() && !e.is_timeout()) || e.kind() == redis::ErrorKind::BusyLoadingError
}

/// When a wait ends, for commands: `try_` calls get `io_timeout`, blocking calls none.
pub(super) fn deadline_of(wait: Wait, io_timeout: Duration) -> Option<Instant> {
    match wait {
        Wait::Never => Some(Instant::now() + io_timeout),
        Wait::Forever => None,
        Wait::Until(d) => Some(d),
    }
}

/// The smallest timeout a socket accepts (zero means "none" to the OS).
pub(super) const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Why a command did not complete.
#[derive(Debug)]
pub(super) enum LinkError {
    /// The deadline passed (the connection was dropped if a command was in flight).
    Timeout,
    /// The server could not be reached for as long as the wait allowed (or `give_up`).
    Unreachable,
    /// The server answered with an error.
    Server(RedisError),
}

/// One connection to a server that reconnects as needed.
pub(super) struct Link {
    pub(super) client: Client,
    pub(super) con: Option<Connection>,
    pub(super) opts: Options,
    /// Times a connection was made after the first.
    pub(super) reconnects: u64,
    pub(super) connected_once: bool,
    /// The (write, read) timeouts set on `con`, so that a call with the same ones sets nothing.
    timeouts: Option<(Duration, Duration)>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("connected", &self.con.is_some()).field("reconnects", &self.reconnects).finish()
    }
}

impl Link {
    /// Opens the client and connects once (so that a wrong address or a server that is not there is an
    /// error at once).
    pub(super) fn open(url: &str, opts: Options) -> io::Result<Link> {
        let client = Client::open(url).map_err(io_err)?;
        let mut link = Link { client, con: None, opts, reconnects: 0, connected_once: false, timeouts: None };
        let deadline = Instant::now() + link.opts.connect_timeout;
        link.connect(Some(deadline)).map_err(io_err)?;
        Ok(link)
    }

    pub(super) fn connect(&mut self, deadline: Option<Instant>) -> Result<(), RedisError> {
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
        self.timeouts = None;
        Ok(())
    }

    /// Runs `f` on a connection, reconnecting (and running it again) while the connection or server is
    /// gone, as long as `deadline` (or, without one, `give_up`) allows; without `patient` (`try_` calls)
    /// it makes one new connection at most and never pauses. `extra` is added to the read timeout (for
    /// commands that block on the server, like `XREADGROUP BLOCK`).
    pub(super) fn run<T>(
        &mut self,
        deadline: Option<Instant>,
        patient: bool,
        extra: Duration,
        mut f: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, LinkError> {
        self.run_fresh(deadline, patient, extra, |con, _| f(con))
    }

    /// As [`run`](Self::run), telling `f` whether its connection was made during this call (so that
    /// nothing written on an earlier connection is on it: a pipeline writes its window again).
    pub(super) fn run_fresh<T>(
        &mut self,
        deadline: Option<Instant>,
        patient: bool,
        extra: Duration,
        mut f: impl FnMut(&mut Connection, bool) -> Result<T, RedisError>,
    ) -> Result<T, LinkError> {
        let mut fresh = false;
        let mut failing_since: Option<Instant> = None;
        let mut backoff = Duration::ZERO;
        let mut tries = 0;
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(if failing_since.is_some() { LinkError::Unreachable } else { LinkError::Timeout });
            }
            if self.con.is_none() {
                fresh = true;
                if let Err(e) = self.connect(deadline) {
                    if !is_connection_error(&e) && !e.is_timeout() {
                        return Err(LinkError::Server(e));
                    }
                }
            }
            if let Some(con) = self.con.as_mut() {
                let mut t = self.opts.io_timeout;
                if let Some(d) = deadline {
                    // (`now` is this iteration's time unless a connection was just made.)
                    let now = if fresh { Instant::now() } else { now };
                    t = t.min(d.saturating_duration_since(now));
                }
                // Rounded up to whole milliseconds (the kernel rounds up to its ticks anyway): calls with
                // the same timeouts, as every blocking call has, make no system call for them.
                let t = Duration::from_millis(t.as_nanos().div_ceil(1_000_000) as u64).max(MIN_TIMEOUT);
                let wanted = (t, t + extra);
                let set = if self.timeouts == Some(wanted) {
                    Ok(())
                } else {
                    self.timeouts = None;
                    con.set_write_timeout(Some(wanted.0)).and_then(|_| con.set_read_timeout(Some(wanted.1)))
                };
                if set.is_ok() {
                    self.timeouts = Some(wanted);
                }
                match set.and_then(|_| f(con, fresh)) {
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

pub(super) fn send_error(e: LinkError, wait: Wait) -> TransportSendError {
    match e {
        LinkError::Timeout if wait == Wait::Never => TransportSendError::WouldBlock,
        LinkError::Timeout if matches!(wait, Wait::Until(_)) => TransportSendError::Timeout,
        LinkError::Timeout | LinkError::Unreachable => TransportSendError::PeerReset,
        LinkError::Server(e) => TransportSendError::Io(io_err(e)),
    }
}

pub(super) fn recv_error(e: LinkError, wait: Wait) -> TransportRecvError {
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
