//! The state both halves share: the tungstenite socket behind one mutex, how a connection ended, and the
//! keepalive and stall bookkeeping.

use super::*;
use crate::transport::{poll_fd, Wait};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, WebSocket};

/// The Close frame this end sends: 1000, "normal closure".
pub(super) fn normal_close() -> CloseFrame {
    CloseFrame { code: CloseCode::Normal, reason: "".into() }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Close handshake (either side).
    Gone,
    /// Anything else: reset, killed peer, keepalive or stall time-out, protocol violation, oversize.
    Reset,
}

pub(super) struct Conn {
    pub(super) ws: WebSocket<TcpStream>,
    /// When anything last arrived from the peer.
    pub(super) last_heard: Instant,
    /// A ping sent and nothing heard since.
    pub(super) ping_sent: Option<Instant>,
    /// Since when a message has been waiting for room in the write queue.
    pub(super) blocked_since: Option<Instant>,
    pub(super) end: Option<End>,
    pub(super) halves_closed: u8,
}

impl Conn {
    /// Ends the connection abruptly: shuts the socket down (the peer sees the end at once).
    pub(super) fn kill(&mut self) {
        let _ = self.ws.get_ref().shutdown(Shutdown::Both);
        self.end = Some(End::Reset);
    }

    /// Writes out queued bytes without waiting. `Ok(true)`: all written.
    pub(super) fn flush_now(&mut self) -> Result<bool, End> {
        match self.ws.flush() {
            Ok(()) => Ok(true),
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Records the end a tungstenite error means (other than `WouldBlock`).
    pub(super) fn fail(&mut self, e: &WsError) -> End {
        let end = match e {
            WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Protocol(ProtocolError::SendAfterClosing) => {
                End::Gone
            }
            _ => End::Reset,
        };
        if end == End::Reset {
            let _ = self.ws.get_ref().shutdown(Shutdown::Both);
        }
        *self.end.get_or_insert(end)
    }

    /// Whether a send is stalled for good; starts the stall clock. Returns when the stall expires.
    pub(super) fn stalled(&mut self, stall: Duration) -> Result<Instant, End> {
        let now = Instant::now();
        let since = *self.blocked_since.get_or_insert(now);
        if now.duration_since(since) >= stall {
            self.kill();
            return Err(End::Reset);
        }
        Ok(since + stall)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.end.is_none() && self.ws.can_write() {
            let _ = self.ws.close(Some(normal_close()));
        }
    }
}

pub(super) struct Shared {
    pub(super) conn: Mutex<Conn>,
    /// A duplicate of the socket's descriptor, to wait on without holding the lock.
    pub(super) poll: TcpStream,
    pub(super) opts: Options,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock leaves a connection in some state; the halves only read plain
        // fields, so carry on with it.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `events` on the socket until `until` (`None`: as `wait` says).
    pub(super) fn wait(&self, events: libc::c_short, wait: Wait, until: Option<Instant>) -> io::Result<()> {
        let w = match (wait, until) {
            (Wait::Never, _) => Wait::Never,
            (Wait::Forever, None) => Wait::Forever,
            (Wait::Forever, Some(u)) => Wait::Until(u),
            (Wait::Until(d), None) => Wait::Until(d),
            (Wait::Until(d), Some(u)) => Wait::Until(d.min(u)),
        };
        poll_fd(self.poll.as_fd(), events, w)?;
        Ok(())
    }

    pub(super) fn halve_closed(&self) {
        let mut c = self.lock();
        c.halves_closed += 1;
        if c.halves_closed == 2 && c.end.is_none() {
            if c.ws.can_write() {
                let _ = c.ws.close(Some(normal_close()));
                let _ = c.flush_now();
            }
            let _ = c.ws.get_ref().shutdown(Shutdown::Both);
            c.end = Some(End::Gone);
        }
    }
}

pub(super) fn deadline_passed(wait: Wait) -> bool {
    match wait {
        Wait::Never => true,
        Wait::Forever => false,
        Wait::Until(d) => Instant::now() >= d,
    }
}
