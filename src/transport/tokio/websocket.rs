//! Async WebSocket (RFC 6455, `ws://` only) over tokio-tungstenite (feature `tokio-websocket`): the
//! same connections as the blocking [`transport::websocket`](crate::transport::websocket), and the
//! same rules. Each binary WebSocket message carries exactly one frame (8-byte header and payload);
//! clients ask for one path (a [`Listener`] answers any other with 404); the limits and timers are the
//! blocking adapter's [`Options`]:
//!
//! * `max_message`: a larger message is refused on send (`Oversize`, nothing sent); tungstenite's
//!   message and frame limits are set to the frame's size, so a larger incoming message is refused
//!   while its header is read, before its payload is buffered: the receive returns
//!   `BadFrame(Oversize)` and the connection is closed with code 1009 (later calls: `PeerReset`). A
//!   message within the limit that is not exactly one valid frame is `BadFrame` for that message alone.
//! * `max_queued`: tungstenite's write buffer bound; `stall_timeout`: a send that the peer takes no
//!   byte of for this long gives up, the connection is shut down, and the send returns `PeerReset`.
//! * `ping_interval` / `ping_timeout`: while a receive waits, a ping after `ping_interval` of silence;
//!   nothing heard within `ping_timeout` of it closes the connection (`PeerReset`). This needs the
//!   runtime's timer (`enable_time`) unless `ping_interval` is `None`.
//! * `handshake_timeout`: the whole opening handshake, both sides.
//!
//! Closing: [`AsyncSender::close`] sends a Close (1000); the peer's receiver sees `PeerGone` after the
//! last message. A Close from the peer with 1000, 1001, 1005 or no code is `PeerGone` for our receiver;
//! any other code, or a connection that ends without a close handshake, is `PeerReset`. A sender
//! dropped without `close` queues a Close if that goes without waiting.
//!
//! The two halves share the tokio-tungstenite stream through `futures_util`'s split (a lock held only
//! while a half polls it, never across an await), so a receive waiting for a message never holds up a
//! send. `recv` is cancel-safe (tungstenite keeps a partly read message); see the
//! [module docs](super#cancel-safety) for `send`.
//!
//! ```
//! use ringwire::transport::tokio::{websocket, AsyncReceiver, AsyncSender};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let listener = websocket::Listener::bind("127.0.0.1:0", "/ringwire").await?;
//! let url = listener.url()?;
//! let client = tokio::spawn(async move {
//!     let (mut tx, _rx) = websocket::connect(&url).await?;
//!     tx.send(b"hello").await?;
//!     tx.close().await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//! let (_tx, mut rx, _peer) = listener.accept().await?;
//! assert_eq!(rx.recv().await?, b"hello");
//! client.await?.map_err(|e| e.to_string())?;
//! # Ok::<(), Box<dyn std::error::Error>>(()) })
//! # }
//! ```

use super::{AsyncReceiver, AsyncSender};
use crate::transport::codec::{decode_datagram, FrameError};
use crate::transport::websocket::parse_url;
pub use crate::transport::websocket::Options;
use crate::transport::{check_frame, RecvFrame, TransportRecvError, TransportSendError};
use crate::wire::{FrameHeader, Kind, HEADER_LEN};
use ::tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use ::tokio::time::{timeout, timeout_at, Instant};
use futures_util::lock::Mutex;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;
type Sink = Arc<Mutex<SplitSink<Ws, Message>>>;

/// What both halves share: the options, the peer, and a duplicate of the socket's descriptor to shut
/// the connection down (a time-out, an oversize message) whatever state tungstenite is in.
#[derive(Debug)]
struct Shared {
    opts: Options,
    peer: SocketAddr,
    fd: OwnedFd,
}

impl Shared {
    fn kill(&self) {
        // SAFETY: plain syscall on a descriptor we own.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// The sending half of an async WebSocket connection.
pub struct AsyncWsSender {
    sink: Sink,
    shared: Arc<Shared>,
    closed: bool,
}

/// The receiving half of an async WebSocket connection.
pub struct AsyncWsReceiver {
    stream: SplitStream<Ws>,
    sink: Sink,
    shared: Arc<Shared>,
    end: Option<TransportRecvError>,
    closed: bool,
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

impl std::fmt::Debug for AsyncWsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWsSender").field("peer", &self.shared.peer).field("closed", &self.closed).finish()
    }
}

impl std::fmt::Debug for AsyncWsReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWsReceiver").field("peer", &self.shared.peer).field("closed", &self.closed).finish()
    }
}

fn normal_close() -> CloseFrame {
    CloseFrame { code: CloseCode::Normal, reason: "".into() }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "WebSocket handshake timed out")
}

fn handshake_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::Http(resp) if resp.status() == tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND => {
            io::Error::new(io::ErrorKind::NotFound, "the server has no WebSocket endpoint at that path (404)")
        }
        e => io::Error::new(io::ErrorKind::ConnectionRefused, e),
    }
}

/// A listening socket that accepts WebSocket clients on one path.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    path: String,
    opts: Options,
}

impl Listener {
    /// Binds to `addr` (port 0: any free port) and accepts clients asking for `path`.
    pub async fn bind(addr: impl ToSocketAddrs, path: &str) -> io::Result<Listener> {
        Ok(Listener { inner: TcpListener::bind(addr).await?, path: path.to_string(), opts: Options::default() })
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

    /// Waits for the next connection and completes its handshake (within
    /// [`Options::handshake_timeout`], else `TimedOut`); a client asking for another path gets a 404
    /// and this returns `NotFound`. To keep accepting while slow clients shake hands, take streams from
    /// [`get_ref`](Self::get_ref) and hand each to [`accept`] in a task of its own.
    pub async fn accept(&self) -> io::Result<(AsyncWsSender, AsyncWsReceiver, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        let (tx, rx) = accept(stream, &self.path, &self.opts).await?;
        Ok((tx, rx, peer))
    }

    /// The tokio listener.
    pub fn get_ref(&self) -> &TcpListener {
        &self.inner
    }
}

/// Completes the server side of the handshake on an accepted stream, refusing any path but `path`.
pub async fn accept(stream: TcpStream, path: &str, opts: &Options) -> io::Result<(AsyncWsSender, AsyncWsReceiver)> {
    let mut asked = None;
    let check = crate::transport::websocket::handshake::only_path(path, &mut asked);
    let shake = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(opts.config()));
    let ws = match timeout(opts.handshake_timeout, shake).await {
        Err(_) => return Err(timed_out()),
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            return Err(match asked {
                Some(p) => io::Error::new(io::ErrorKind::NotFound, format!("client asked for {p}, not {path}")),
                None => handshake_error(e),
            })
        }
    };
    split(ws, opts)
}

/// Connects to `ws://host:port/path` with default options.
pub async fn connect(url: &str) -> io::Result<(AsyncWsSender, AsyncWsReceiver)> {
    connect_with(url, &Options::default()).await
}

/// Connects to `ws://host:port/path`; connecting and the handshake must complete within
/// `opts.handshake_timeout`.
pub async fn connect_with(url: &str, opts: &Options) -> io::Result<(AsyncWsSender, AsyncWsReceiver)> {
    let (hostport, _) = parse_url(url)?;
    let shake = async {
        let stream = TcpStream::connect(hostport).await?;
        let (ws, _response) = tokio_tungstenite::client_async_with_config(url, stream, Some(opts.config()))
            .await
            .map_err(handshake_error)?;
        io::Result::Ok(ws)
    };
    let ws = timeout(opts.handshake_timeout, shake).await.map_err(|_| timed_out())??;
    split(ws, opts)
}

fn split(ws: Ws, opts: &Options) -> io::Result<(AsyncWsSender, AsyncWsReceiver)> {
    let sock = ws.get_ref();
    sock.set_nodelay(true)?;
    let shared =
        Arc::new(Shared { opts: opts.clone(), peer: sock.peer_addr()?, fd: sock.as_fd().try_clone_to_owned()? });
    let (sink, stream) = ws.split();
    let sink = Arc::new(Mutex::new(sink));
    Ok((
        AsyncWsSender { sink: sink.clone(), shared: shared.clone(), closed: false },
        AsyncWsReceiver { stream, sink, shared, end: None, closed: false, last_heard: Instant::now(), ping_sent: None },
    ))
}

/// What a tungstenite error on a send means.
fn send_error(e: &WsError) -> TransportSendError {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Protocol(ProtocolError::SendAfterClosing) => {
            TransportSendError::PeerGone
        }
        _ => TransportSendError::PeerReset,
    }
}

impl AsyncWsSender {
    /// The connection's options.
    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Sends `msg` (and flushes), giving up after `stall_timeout` without completing.
    async fn send_message(&mut self, msg: Message) -> Result<(), TransportSendError> {
        let mut sink = self.sink.lock().await;
        let mut fut = std::pin::pin!(sink.send(msg));
        // The usual case completes at once: no timer for it.
        let r = match fut.as_mut().now_or_never() {
            Some(r) => r,
            None => match timeout(self.shared.opts.stall_timeout, fut).await {
                Ok(r) => r,
                Err(_) => {
                    self.shared.kill();
                    return Err(TransportSendError::PeerReset);
                }
            },
        };
        r.map_err(|e| {
            let t = send_error(&e);
            if matches!(t, TransportSendError::PeerReset) {
                self.shared.kill();
            }
            t
        })
    }
}

impl AsyncSender for AsyncWsSender {
    async fn send_frame(&mut self, ext: u16, parts: &[&[u8]]) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        let len = check_frame(ext, parts, self.shared.opts.max_message)?;
        // One binary WebSocket message holds the whole frame (tungstenite takes an owned buffer).
        let mut frame = Vec::with_capacity(HEADER_LEN + len);
        frame.extend_from_slice(&FrameHeader { len: len as u32, kind: Kind::Data, ext }.to_bytes());
        for p in parts {
            frame.extend_from_slice(p);
        }
        self.send_message(Message::Binary(frame.into())).await
    }

    async fn flush(&mut self) -> Result<(), TransportSendError> {
        if self.closed {
            return Err(TransportSendError::Closed);
        }
        let mut sink = self.sink.lock().await;
        match timeout(self.shared.opts.stall_timeout, sink.flush()).await {
            Ok(r) => r.map_err(|e| send_error(&e)),
            Err(_) => {
                self.shared.kill();
                Err(TransportSendError::PeerReset)
            }
        }
    }

    /// Sends a Close (1000) after everything queued. `Ok` too if the peer closed first (this Close is
    /// then the reply).
    async fn close(&mut self) -> Result<(), TransportSendError> {
        if self.closed {
            return Ok(());
        }
        let r = self.send_message(Message::Close(Some(normal_close()))).await;
        self.closed = true;
        match r {
            Err(TransportSendError::PeerGone) => Ok(()),
            r => r,
        }
    }

    fn max_message(&self) -> usize {
        self.shared.opts.max_message
    }
}

impl Drop for AsyncWsSender {
    fn drop(&mut self) {
        if !self.closed {
            if let Some(mut sink) = self.sink.try_lock() {
                // Best effort without waiting: queued (and written if the socket takes it) or not.
                let _ = sink.send(Message::Close(Some(normal_close()))).now_or_never();
            }
        }
    }
}

impl AsyncWsReceiver {
    /// The connection's options.
    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Records how the connection ended and returns that error (every later receive returns it too).
    fn ended(&mut self, e: TransportRecvError) -> TransportRecvError {
        let again = match &e {
            TransportRecvError::PeerGone => TransportRecvError::PeerGone,
            _ => TransportRecvError::PeerReset,
        };
        self.end = Some(again);
        e
    }

    fn repeat_end(&self) -> Option<TransportRecvError> {
        self.end.as_ref().map(|e| match e {
            TransportRecvError::PeerGone => TransportRecvError::PeerGone,
            _ => TransportRecvError::PeerReset,
        })
    }

    /// The next message, or `None` when the keepalive timer runs out first (cancel-safe: dropping
    /// `next()` loses nothing).
    async fn next_or_keepalive(&mut self) -> Result<Option<Option<Result<Message, WsError>>>, TransportRecvError> {
        let opts = &self.shared.opts;
        let until = match (self.ping_sent, opts.ping_interval) {
            (Some(sent), _) => {
                if Instant::now() >= sent + opts.ping_timeout {
                    self.shared.kill();
                    return Err(self.ended(TransportRecvError::PeerReset));
                }
                Some(sent + opts.ping_timeout)
            }
            (None, Some(interval)) => {
                let due = self.last_heard + interval;
                if Instant::now() >= due {
                    if let Some(mut sink) = self.sink.try_lock() {
                        // Queued, and written if the socket takes it (a busy sender flushes it later).
                        let _ = sink.feed(Message::Ping(Vec::new().into())).now_or_never();
                        let _ = sink.flush().now_or_never();
                    }
                    let now = Instant::now();
                    self.ping_sent = Some(now);
                    Some(now + opts.ping_timeout)
                } else {
                    Some(due)
                }
            }
            (None, None) => None,
        };
        Ok(match until {
            Some(t) => timeout_at(t, self.stream.next()).await.ok(),
            None => Some(self.stream.next().await),
        })
    }
}

impl AsyncReceiver for AsyncWsReceiver {
    async fn recv_frame(&mut self) -> Result<RecvFrame, TransportRecvError> {
        if self.closed {
            return Err(TransportRecvError::Closed);
        }
        loop {
            if let Some(e) = self.repeat_end() {
                return Err(e);
            }
            let Some(next) = self.next_or_keepalive().await? else { continue };
            let max = self.shared.opts.max_message;
            let msg = match next {
                // The stream ends after a close handshake (ConnectionClosed / AlreadyClosed).
                None => return Err(self.ended(TransportRecvError::PeerGone)),
                Some(Ok(msg)) => msg,
                Some(Err(WsError::Io(e))) if e.kind() == io::ErrorKind::Interrupted => continue,
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, .. }))) => {
                    // The rest of that message can't be skipped: close as RFC 6455 says (1009).
                    if let Some(mut sink) = self.sink.try_lock() {
                        let close = CloseFrame { code: CloseCode::Size, reason: "message too big".into() };
                        let _ = sink.send(Message::Close(Some(close))).now_or_never();
                    }
                    self.shared.kill();
                    let oversize = FrameError::Oversize { len: size.saturating_sub(HEADER_LEN), max };
                    self.end = Some(TransportRecvError::PeerReset);
                    return Err(TransportRecvError::BadFrame(oversize));
                }
                Some(Err(e)) => {
                    let gone = matches!(e, WsError::ConnectionClosed | WsError::AlreadyClosed);
                    if gone {
                        return Err(self.ended(TransportRecvError::PeerGone));
                    }
                    self.shared.kill();
                    let err = match &e {
                        WsError::Protocol(p) if !matches!(p, ProtocolError::ResetWithoutClosingHandshake) => {
                            TransportRecvError::Io(io::Error::new(io::ErrorKind::InvalidData, e))
                        }
                        _ => TransportRecvError::PeerReset,
                    };
                    return Err(self.ended(err));
                }
            };
            self.last_heard = Instant::now();
            self.ping_sent = None;
            match msg {
                Message::Binary(b) => {
                    return match decode_datagram(&b, max) {
                        Ok(frame) => Ok(RecvFrame { ext: frame.ext, bytes: frame.payload.to_vec() }),
                        Err(e) => Err(TransportRecvError::BadFrame(e)),
                    };
                }
                Message::Text(t) => {
                    return Err(TransportRecvError::BadFrame(
                        decode_datagram(t.as_bytes(), max).err().unwrap_or(FrameError::Truncated { missing: 0 }),
                    ));
                }
                // tungstenite queued the pong; the next read (or send) writes it.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Close(frame) => {
                    // The reply (if this end did not start the close) is queued: a read writes it out,
                    // without waiting; then end the TCP stream too (the peer may wait for it).
                    let _ = self.stream.next().now_or_never();
                    // SAFETY: plain syscall on a descriptor we own.
                    unsafe { libc::shutdown(self.shared.fd.as_raw_fd(), libc::SHUT_WR) };
                    let clean = frame
                        .as_ref()
                        .map_or(true, |f| matches!(f.code, CloseCode::Normal | CloseCode::Away | CloseCode::Status));
                    let e = if clean { TransportRecvError::PeerGone } else { TransportRecvError::PeerReset };
                    return Err(self.ended(e));
                }
            }
        }
    }

    fn close(&mut self) {
        self.closed = true;
    }

    fn max_message(&self) -> usize {
        self.shared.opts.max_message
    }
}
