//! The two halves, [`WsSender`] and [`WsReceiver`], and [`split`], which makes them from an open socket.

use super::conn::*;
use super::*;
use crate::transport::codec::{decode_datagram, FrameError};
use crate::transport::{check_frame, Receiver, RecvFrame, Sender, TransportRecvError, TransportSendError, Wait};
use crate::wire::{FrameHeader, Kind, HEADER_LEN};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message, WebSocket};

/// Makes the two halves of an established connection (switches the socket to non-blocking mode).
pub(super) fn split(ws: WebSocket<TcpStream>, opts: &Options) -> io::Result<(WsSender, WsReceiver)> {
    let sock = ws.get_ref();
    sock.set_read_timeout(None)?;
    sock.set_write_timeout(None)?;
    sock.set_nodelay(true)?;
    sock.set_nonblocking(true)?;
    let poll = sock.try_clone()?;
    let now = Instant::now();
    let shared = Arc::new(Shared {
        conn: Mutex::new(Conn {
            ws,
            last_heard: now,
            ping_sent: None,
            blocked_since: None,
            end: None,
            halves_closed: 0,
        }),
        poll,
        opts: opts.clone(),
    });
    Ok((WsSender { shared: shared.clone(), closed: false }, WsReceiver { shared, closed: false }))
}

/// The sending half of a WebSocket connection.
pub struct WsSender {
    shared: Arc<Shared>,
    closed: bool,
}

/// The receiving half of a WebSocket connection.
pub struct WsReceiver {
    shared: Arc<Shared>,
    closed: bool,
}

impl std::fmt::Debug for WsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSender").field("closed", &self.closed).finish()
    }
}

impl std::fmt::Debug for WsReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReceiver").field("closed", &self.closed).finish()
    }
}

fn send_end(end: End) -> TransportSendError {
    match end {
        End::Gone => TransportSendError::PeerGone,
        End::Reset => TransportSendError::PeerReset,
    }
}

fn recv_end(end: End) -> TransportRecvError {
    match end {
        End::Gone => TransportRecvError::PeerGone,
        End::Reset => TransportRecvError::PeerReset,
    }
}

impl WsSender {
    /// The connection's options.
    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.shared.poll.peer_addr()
    }

    /// Writes out everything queued, waiting as `wait` allows (and at most the stall timeout without
    /// progress). `Ok(false)`: the wait ran out first.
    fn drain(&mut self, wait: Wait) -> Result<bool, TransportSendError> {
        loop {
            let until = {
                let mut c = self.shared.lock();
                if let Some(end) = c.end {
                    return Err(send_end(end));
                }
                match c.flush_now() {
                    Ok(true) => {
                        c.blocked_since = None;
                        return Ok(true);
                    }
                    Ok(false) => c.stalled(self.shared.opts.stall_timeout).map_err(send_end)?,
                    Err(end) => return Err(send_end(end)),
                }
            };
            if deadline_passed(wait) {
                return Ok(false);
            }
            self.shared.wait(libc::POLLOUT, wait, Some(until))?;
        }
    }
}

impl WsSender {
    /// Builds one binary WebSocket message holding the whole frame (tungstenite takes an owned buffer).
    fn message(&self, ext: u16, parts: &[&[u8]]) -> Result<Message, TransportSendError> {
        let len = check_frame(ext, parts, self.shared.opts.max_message)?;
        let mut frame = Vec::with_capacity(HEADER_LEN + len);
        frame.extend_from_slice(&FrameHeader { len: len as u32, kind: Kind::Data, ext }.to_bytes());
        for p in parts {
            frame.extend_from_slice(p);
        }
        Ok(Message::Binary(frame.into()))
    }

    /// Hands `message` to tungstenite, waiting as `wait` allows for room in its bounded write queue.
    /// `buffered`: tungstenite keeps the frame in its write buffer until that holds more than
    /// [`DEFAULT_MAX_BUFFERED`](crate::transport::DEFAULT_MAX_BUFFERED) bytes (its own
    /// `write_buffer_size`, set for this one call), so that queued frames go out in one `write`;
    /// otherwise (the connection's setting, 0) everything queued is written at once, this frame last.
    fn write_message(&mut self, mut message: Message, wait: Wait, buffered: bool) -> Result<(), TransportSendError> {
        loop {
            let until = {
                let mut c = self.shared.lock();
                if let Some(end) = c.end {
                    return Err(send_end(end));
                }
                let written = if buffered {
                    // tungstenite requires write_buffer_size < max_write_buffer_size.
                    let bound = crate::transport::DEFAULT_MAX_BUFFERED.min(c.ws.get_config().max_write_buffer_size - 1);
                    c.ws.set_config(|cfg| cfg.write_buffer_size = bound);
                    let r = c.ws.write(message);
                    c.ws.set_config(|cfg| cfg.write_buffer_size = 0);
                    r
                } else {
                    c.ws.write(message)
                };
                match written {
                    // Written, or queued whole with the rest going out on a later call.
                    Ok(()) => {
                        c.blocked_since = None;
                        return Ok(());
                    }
                    Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.blocked_since = None;
                        return Ok(());
                    }
                    Err(WsError::WriteBufferFull(m)) => {
                        message = *m;
                        match c.flush_now() {
                            Ok(true) => continue, // room made: try again at once
                            Ok(false) => {}
                            Err(end) => return Err(send_end(end)),
                        }
                        c.stalled(self.shared.opts.stall_timeout).map_err(send_end)?
                    }
                    Err(e) => return Err(send_end(c.fail(&e))),
                }
            };
            match wait {
                Wait::Never => return Err(TransportSendError::WouldBlock),
                Wait::Until(d) if Instant::now() >= d => return Err(TransportSendError::Timeout),
                _ => {}
            }
            self.shared.wait(libc::POLLOUT, wait, Some(until))?;
        }
    }
}

impl Sender for WsSender {
    fn send_frame_wait(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        let message = self.message(ext, parts)?;
        self.write_message(message, wait, false)
    }

    /// Queues the message in tungstenite's write buffer as its own binary WebSocket message (the wire
    /// is the same as for `send`: one message per frame); the buffer goes out in one `write` once it
    /// holds more than [`DEFAULT_MAX_BUFFERED`](crate::transport::DEFAULT_MAX_BUFFERED) bytes, on
    /// `flush`, on a plain send (queue first) and on close. The queue stays bounded by
    /// [`Options::max_queued`] as for plain sends.
    fn send_buffered(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        let message = self.message(0, &[msg])?;
        self.write_message(message, wait, true)
    }

    fn flush(&mut self) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        self.drain(Wait::Forever).map(|_| ())
    }

    fn close(&mut self) -> Result<(), TransportSendError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let r = (|| {
            self.drain(Wait::Forever)?;
            {
                let mut c = self.shared.lock();
                if c.ws.can_write() {
                    match c.ws.close(Some(normal_close())) {
                        Ok(()) => {}
                        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(send_end(c.fail(&e))),
                    }
                }
            }
            self.drain(Wait::Forever).map(|_| ())
        })();
        self.shared.halve_closed();
        match r {
            // The peer closed first: our side of the handshake is its reply.
            Err(TransportSendError::PeerGone) => Ok(()),
            r => r,
        }
    }

    fn max_message(&self) -> usize {
        self.shared.opts.max_message
    }
}

impl Drop for WsSender {
    fn drop(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.shared.lock().flush_now();
            self.shared.halve_closed();
        }
    }
}

impl WsReceiver {
    /// The connection's options.
    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.shared.poll.peer_addr()
    }
}

impl Receiver for WsReceiver {
    fn recv_frame_wait(&mut self, wait: Wait) -> Result<RecvFrame, TransportRecvError> {
        self.next_with(wait, crate::transport::owned_frame)
    }

    /// Copies the payload out of tungstenite's message into `buf`: no allocation of ours per message
    /// once `buf` has room.
    fn recv_frame_into_vec(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<u16, TransportRecvError> {
        self.next_with(wait, crate::transport::copy_into(buf))
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.shared.halve_closed();
        }
    }

    fn max_message(&self) -> usize {
        self.shared.opts.max_message
    }
}

impl WsReceiver {
    /// Waits for the next binary message and hands its frame to `take` (its `ext` and its payload,
    /// borrowed from the message): the one receive loop behind both ways of receiving.
    fn next_with<T>(&mut self, wait: Wait, take: impl FnOnce(u16, &[u8]) -> T) -> Result<T, TransportRecvError> {
        if self.closed {
            return Err(TransportRecvError::Closed);
        }
        let opts = &self.shared.opts;
        loop {
            let until = {
                let mut c = self.shared.lock();
                if let Some(end) = c.end {
                    return Err(recv_end(end));
                }
                match c.ws.read() {
                    Ok(msg) => {
                        c.last_heard = Instant::now();
                        c.ping_sent = None;
                        match msg {
                            Message::Binary(b) => {
                                return match decode_datagram(&b, opts.max_message) {
                                    Ok(frame) => Ok(take(frame.ext, frame.payload)),
                                    Err(e) => Err(TransportRecvError::BadFrame(e)),
                                };
                            }
                            Message::Text(t) => {
                                return Err(TransportRecvError::BadFrame(
                                    decode_datagram(t.as_bytes(), opts.max_message)
                                        .err()
                                        .unwrap_or(FrameError::Truncated { missing: 0 }),
                                ));
                            }
                            // tungstenite queued the pong: send it now if it goes without waiting.
                            Message::Ping(_) => {
                                if let Err(end) = c.flush_now() {
                                    return Err(recv_end(end));
                                }
                                continue;
                            }
                            Message::Pong(_) | Message::Frame(_) => continue,
                            Message::Close(frame) => {
                                // The reply (if this end did not start the close) is queued: send it. Then
                                // the handshake is over: end the TCP stream too (the peer may wait for it).
                                // (A server's tungstenite reports the finished handshake as `Gone`.)
                                if matches!(c.flush_now(), Ok(true) | Err(End::Gone)) {
                                    let _ = c.ws.get_ref().shutdown(Shutdown::Write);
                                }
                                // A close for a reason other than "done" (too big, protocol error,
                                // server error, ...) is not a clean end.
                                let clean = frame.as_ref().map_or(true, |f| {
                                    matches!(f.code, CloseCode::Normal | CloseCode::Away | CloseCode::Status)
                                });
                                let end = if clean { End::Gone } else { End::Reset };
                                c.end = Some(end);
                                return Err(recv_end(end));
                            }
                        }
                    }
                    Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(WsError::Capacity(CapacityError::MessageTooLong { size, .. })) => {
                        // The rest of that message can't be skipped: close as RFC 6455 says (1009).
                        let _ =
                            c.ws.close(Some(CloseFrame { code: CloseCode::Size, reason: "message too big".into() }));
                        let _ = c.flush_now();
                        c.kill();
                        return Err(TransportRecvError::BadFrame(FrameError::Oversize {
                            len: size.saturating_sub(HEADER_LEN),
                            max: opts.max_message,
                        }));
                    }
                    Err(e) => {
                        let end = c.fail(&e);
                        return Err(match (&e, end) {
                            (WsError::Protocol(p), End::Reset)
                                if !matches!(p, ProtocolError::ResetWithoutClosingHandshake) =>
                            {
                                TransportRecvError::Io(io::Error::new(io::ErrorKind::InvalidData, e))
                            }
                            _ => recv_end(end),
                        });
                    }
                }
                // Nothing to read now: keepalive, then wait.
                let now = Instant::now();
                match (c.ping_sent, opts.ping_interval) {
                    (Some(sent), _) => {
                        if now.duration_since(sent) >= opts.ping_timeout {
                            c.kill();
                            return Err(TransportRecvError::PeerReset);
                        }
                        Some(sent + opts.ping_timeout)
                    }
                    (None, Some(interval)) => {
                        let due = c.last_heard + interval;
                        if now >= due {
                            match c.ws.write(Message::Ping(Vec::new().into())) {
                                Ok(()) | Err(WsError::WriteBufferFull(_)) => {}
                                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                                Err(e) => return Err(recv_end(c.fail(&e))),
                            }
                            if let Err(end) = c.flush_now() {
                                return Err(recv_end(end));
                            }
                            c.ping_sent = Some(now);
                            Some(now + opts.ping_timeout)
                        } else {
                            Some(due)
                        }
                    }
                    (None, None) => None,
                }
            };
            match wait {
                Wait::Never => return Err(TransportRecvError::Empty),
                Wait::Until(d) if Instant::now() >= d => return Err(TransportRecvError::Timeout),
                _ => {}
            }
            self.shared.wait(libc::POLLIN, wait, until)?;
        }
    }
}

impl Drop for WsReceiver {
    fn drop(&mut self) {
        self.close();
    }
}
