//! WebSocket (RFC 6455, `ws://` only) over tungstenite's synchronous API: a [`Listener`] that accepts
//! clients on one path, and [`connect`] for a client. Each message is one binary WebSocket message
//! carrying exactly one frame (8-byte header and payload, as in a UDP datagram).
//!
//! # One socket, two halves
//!
//! A connection's [`WsSender`] and [`WsReceiver`] share the tungstenite `WebSocket` behind an
//! `Arc<Mutex<..>>`. The socket is non-blocking: every operation takes the lock, does what the socket
//! allows without waiting, releases the lock, and waits with `poll(2)` on its own duplicate of the
//! descriptor. So a receive blocked for a message never holds up a send on the other half, deadlines are
//! exact (as on the stream adapters), and no thread is needed per connection. (A per-connection I/O
//! thread would also work, but costs a thread and a hand-off per message, and still needs the same
//! deadline and back-pressure rules.) Both halves are `Send`.
//!
//! # Limits
//!
//! * **Message size.** A sender refuses a message larger than [`Options::max_message`] with
//!   [`Oversize`](TransportSendError::Oversize) (nothing sent). tungstenite's `max_message_size` and
//!   `max_frame_size` are set to the frame's size (`max_message + 8`), so a larger incoming WebSocket
//!   message is refused while its header is read, before its payload is buffered: the receive returns
//!   [`BadFrame(Oversize)`](crate::transport::codec::FrameError::Oversize), and the connection is closed with code
//!   1009 (the rest of that message can't be skipped; later calls return `PeerReset`). A WebSocket message
//!   within the limit that is not exactly one valid frame is `BadFrame` for that message alone: each
//!   message stands alone, the receiver stays usable.
//! * **Outgoing queue.** Once the socket's kernel buffer is full, messages queue in tungstenite's write
//!   buffer, bounded by [`Options::max_queued`] bytes. When a message does not fit, `try_send` returns
//!   `WouldBlock`, `send_deadline` waits until its deadline (`Timeout`) and `send` waits — but a peer that
//!   accepts no byte for [`Options::stall_timeout`] is disconnected, and the send returns `PeerReset`.
//!   Memory per connection is therefore bounded whatever the peer does.
//!
//! # Keepalive
//!
//! While a receive waits, it wakes up to keep the connection checked: after [`Options::ping_interval`]
//! without hearing anything from the peer it sends a ping, and if nothing (pong or anything else) arrives
//! within [`Options::ping_timeout`] of that ping, the connection is closed and the receive returns
//! [`PeerReset`](TransportRecvError::PeerReset). A dead or frozen peer is noticed within
//! `ping_interval + ping_timeout` of the last thing it sent. Pings the peer sends are answered by
//! tungstenite as they are read. Nothing checks the peer while no receive is running.
//!
//! # Closing
//!
//! [`Sender::close`] flushes, then sends a Close frame; the peer's receiver sees `PeerGone` after the last
//! message, and our receiver gets every message the peer sent before its Close reply, then `PeerGone`.
//! A Close from the peer (code 1000 "normal", 1001 "going away" or none) is `PeerGone` for our receiver
//! and, from then on, for our sender; a Close with an error code (1009 "too big", 1002 "protocol error",
//! ...) and a connection that ends without a close handshake (a killed peer) are `PeerReset`. When both halves are dropped the
//! connection is closed (a Close frame if none was sent, then the socket).

use super::{poll_fd, Receiver, Sender, TransportRecvError, TransportSendError, Wait, DEFAULT_MAX_MESSAGE};
use crate::transport::codec::{decode_datagram, FrameError};
use crate::wire::{FrameHeader, Kind, HEADER_LEN};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};

/// Limits and timers of a WebSocket connection.
#[derive(Clone, Debug)]
pub struct Options {
    /// The largest message, not counting the 8-byte frame header. Default [`DEFAULT_MAX_MESSAGE`].
    pub max_message: usize,
    /// Send a ping after this long without hearing from the peer (while a receive waits). `None`: never.
    /// Default 15 s.
    pub ping_interval: Option<Duration>,
    /// Close the connection if nothing arrives within this long of a ping. Default 15 s.
    pub ping_timeout: Duration,
    /// Disconnect a peer that accepts no byte of our queued output for this long. Default 30 s.
    pub stall_timeout: Duration,
    /// The most bytes queued in user space for sending (beyond the kernel's socket buffer). At least one
    /// whole largest message is always allowed. Default 1 MiB.
    pub max_queued: usize,
    /// Longest wait for the opening handshake (both sides). Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_message: DEFAULT_MAX_MESSAGE,
            ping_interval: Some(Duration::from_secs(15)),
            ping_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(30),
            max_queued: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Options {
    fn config(&self) -> WebSocketConfig {
        let frame = self.max_message + HEADER_LEN;
        // One WebSocket frame header is at most 14 bytes.
        let queue = self.max_queued.max(frame + 14);
        WebSocketConfig::default()
            .max_message_size(Some(frame))
            .max_frame_size(Some(frame))
            .write_buffer_size(0)
            .max_write_buffer_size(queue)
            .read_buffer_size(64 << 10)
    }
}

/// Splits `ws://host[:port]/path` into `host:port` (port 80 if none) and the path (`/` if none).
pub fn parse_url(url: &str) -> io::Result<(String, String)> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url:?}: {why}"));
    let uri: tungstenite::http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err(bad("wss:// (TLS) is not supported")),
        _ => return Err(bad("expected ws://host:port/path")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let hostport =
        if authority.port_u16().is_some() { authority.as_str().to_string() } else { format!("{}:80", authority) };
    let path = match uri.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    Ok((hostport, path))
}

/// A listening socket that accepts WebSocket clients on one path.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    path: String,
    opts: Options,
}

impl Listener {
    /// Binds to `addr` (port 0: any free port) and accepts clients asking for `path` (e.g. `/ringwire`).
    pub fn bind(addr: impl ToSocketAddrs, path: &str) -> io::Result<Listener> {
        Ok(Listener { inner: TcpListener::bind(addr)?, path: path.to_string(), opts: Options::default() })
    }

    /// Binds to the host and port of `ws://host:port/path` and accepts clients asking for its path.
    pub fn bind_url(url: &str) -> io::Result<Listener> {
        let (hostport, path) = parse_url(url)?;
        Self::bind(hostport, &path)
    }

    /// Sets the options of the connections accepted from now on.
    pub fn set_options(&mut self, opts: Options) {
        self.opts = opts;
    }

    /// The address bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The URL clients connect to (`ws://ip:port/path`).
    pub fn url(&self) -> io::Result<String> {
        Ok(format!("ws://{}{}", self.local_addr()?, self.path))
    }

    /// Waits for the next connection and completes its handshake; returns its halves and the client's
    /// address. A client that asks for another path gets a 404 and this returns `NotFound`; one that does
    /// not finish the handshake within [`Options::handshake_timeout`] gives `TimedOut`. To keep accepting
    /// while slow clients shake hands, use [`accept_tcp`](Self::accept_tcp) and hand each stream to
    /// [`accept`] on a thread of its own.
    pub fn accept(&self) -> io::Result<(WsSender, WsReceiver, SocketAddr)> {
        let (stream, peer) = self.inner.accept()?;
        let (tx, rx) = accept(stream, &self.path, &self.opts)?;
        Ok((tx, rx, peer))
    }

    /// Accepts the next TCP connection without shaking hands.
    pub fn accept_tcp(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.inner.accept()
    }

    /// The path clients must ask for.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The options of accepted connections.
    pub fn options(&self) -> &Options {
        &self.opts
    }
}

/// Completes the server side of the handshake on an accepted stream (blocking, within
/// `opts.handshake_timeout`), refusing any path but `path` with a 404.
pub fn accept(stream: TcpStream, path: &str, opts: &Options) -> io::Result<(WsSender, WsReceiver)> {
    stream.set_read_timeout(Some(opts.handshake_timeout))?;
    stream.set_write_timeout(Some(opts.handshake_timeout))?;
    let mut asked = None;
    // The signature is tungstenite's handshake callback's.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == path {
            Ok(resp)
        } else {
            asked = Some(req.uri().path().to_string());
            let mut e = ErrorResponse::new(Some(format!("no WebSocket endpoint at {}", req.uri().path())));
            *e.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let ws = match tungstenite::accept_hdr_with_config(stream, check, Some(opts.config())) {
        Ok(ws) => ws,
        Err(HandshakeError::Interrupted(_)) => {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "WebSocket handshake timed out"))
        }
        Err(HandshakeError::Failure(e)) => {
            return Err(match asked {
                Some(p) => io::Error::new(io::ErrorKind::NotFound, format!("client asked for {p}, not {path}")),
                None => ws_io_error(e),
            })
        }
    };
    split(ws, opts)
}

/// Connects to `ws://host:port/path` with default options.
pub fn connect(url: &str) -> io::Result<(WsSender, WsReceiver)> {
    connect_with(url, &Options::default())
}

/// Connects to `ws://host:port/path`; the handshake must complete within `opts.handshake_timeout`.
pub fn connect_with(url: &str, opts: &Options) -> io::Result<(WsSender, WsReceiver)> {
    let (hostport, _) = parse_url(url)?;
    let mut last = None;
    let mut stream = None;
    for addr in hostport.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, opts.handshake_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e),
        (None, None) => return Err(io::Error::new(io::ErrorKind::NotFound, format!("{hostport}: no address"))),
    };
    stream.set_read_timeout(Some(opts.handshake_timeout))?;
    stream.set_write_timeout(Some(opts.handshake_timeout))?;
    let ws = match tungstenite::client::client_with_config(url, stream, Some(opts.config())) {
        Ok((ws, _response)) => ws,
        Err(HandshakeError::Interrupted(_)) => {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "WebSocket handshake timed out"))
        }
        Err(HandshakeError::Failure(e)) => return Err(ws_io_error(e)),
    };
    split(ws, opts)
}

fn ws_io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::Http(resp) if resp.status() == tungstenite::http::StatusCode::NOT_FOUND => {
            io::Error::new(io::ErrorKind::NotFound, "the server has no WebSocket endpoint at that path (404)")
        }
        e => io::Error::new(io::ErrorKind::ConnectionRefused, e),
    }
}

/// Makes the two halves of an established connection (switches the socket to non-blocking mode).
fn split(ws: WebSocket<TcpStream>, opts: &Options) -> io::Result<(WsSender, WsReceiver)> {
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

/// The Close frame this end sends: 1000, "normal closure".
fn normal_close() -> CloseFrame {
    CloseFrame { code: CloseCode::Normal, reason: "".into() }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Close handshake (either side).
    Gone,
    /// Anything else: reset, killed peer, keepalive or stall time-out, protocol violation, oversize.
    Reset,
}

struct Conn {
    ws: WebSocket<TcpStream>,
    /// When anything last arrived from the peer.
    last_heard: Instant,
    /// A ping sent and nothing heard since.
    ping_sent: Option<Instant>,
    /// Since when a message has been waiting for room in the write queue.
    blocked_since: Option<Instant>,
    end: Option<End>,
    halves_closed: u8,
}

impl Conn {
    /// Ends the connection abruptly: shuts the socket down (the peer sees the end at once).
    fn kill(&mut self) {
        let _ = self.ws.get_ref().shutdown(Shutdown::Both);
        self.end = Some(End::Reset);
    }

    /// Writes out queued bytes without waiting. `Ok(true)`: all written.
    fn flush_now(&mut self) -> Result<bool, End> {
        match self.ws.flush() {
            Ok(()) => Ok(true),
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Records the end a tungstenite error means (other than `WouldBlock`).
    fn fail(&mut self, e: &WsError) -> End {
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
    fn stalled(&mut self, stall: Duration) -> Result<Instant, End> {
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

struct Shared {
    conn: Mutex<Conn>,
    /// A duplicate of the socket's descriptor, to wait on without holding the lock.
    poll: TcpStream,
    opts: Options,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock leaves a connection in some state; the halves only read plain
        // fields, so carry on with it.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `events` on the socket until `until` (`None`: as `wait` says).
    fn wait(&self, events: libc::c_short, wait: Wait, until: Option<Instant>) -> io::Result<()> {
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

    fn halve_closed(&self) {
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

fn deadline_passed(wait: Wait) -> bool {
    match wait {
        Wait::Never => true,
        Wait::Forever => false,
        Wait::Until(d) => Instant::now() >= d,
    }
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

impl Sender for WsSender {
    fn send_wait(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        let max = self.shared.opts.max_message;
        if msg.len() > max {
            return Err(TransportSendError::Oversize { len: msg.len(), max });
        }
        let mut frame = Vec::with_capacity(HEADER_LEN + msg.len());
        frame.extend_from_slice(&FrameHeader { len: msg.len() as u32, kind: Kind::Data }.to_bytes());
        frame.extend_from_slice(msg);
        let mut message = Message::Binary(frame.into());
        loop {
            let until = {
                let mut c = self.shared.lock();
                if let Some(end) = c.end {
                    return Err(send_end(end));
                }
                match c.ws.write(message) {
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
    fn recv_wait(&mut self, wait: Wait) -> Result<Vec<u8>, TransportRecvError> {
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
                                    Ok(frame) => Ok(frame.payload.to_vec()),
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

impl Drop for WsReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("ws://127.0.0.1:9000/x/y").unwrap(), ("127.0.0.1:9000".into(), "/x/y".into()));
        assert_eq!(parse_url("ws://localhost").unwrap(), ("localhost:80".into(), "/".into()));
        assert!(parse_url("wss://h:1/").is_err());
        assert!(parse_url("http://h:1/").is_err());
        assert!(parse_url("nonsense").is_err());
    }
}
