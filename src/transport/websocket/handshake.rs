//! Opening a connection: the [`Listener`] and [`accept`] (server side, one path, limits and deadline of
//! the handshake) and [`connect`] (client side).

use super::halves::{split, WsReceiver, WsSender};
use super::*;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::Instant;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::handshake::HandshakeRole;
use tungstenite::{Error as WsError, HandshakeError};

/// A listening socket that accepts WebSocket clients on one path.
///
/// ```
/// use ringwire::transport::{websocket, Receiver, Sender};
/// let listener = websocket::Listener::bind("127.0.0.1:0", "/chat")?;
/// let url = listener.url()?; // ws://127.0.0.1:PORT/chat
/// let client = std::thread::spawn(move || -> std::io::Result<()> {
///     let (mut tx, _rx) = websocket::connect(&url)?;
///     tx.send(b"hello").map_err(std::io::Error::other)?;
///     tx.close().map_err(std::io::Error::other)
/// });
/// let (_tx, mut rx, _peer) = listener.accept()?;
/// assert_eq!(rx.recv()?, b"hello");
/// client.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

/// The server handshake's callback that takes only requests for `path` and answers any other with 404
/// ("no WebSocket endpoint at P"), recording the path asked for in `asked`. Shared by the blocking and
/// the async (`transport::tokio::websocket`) listeners.
// The signature is tungstenite's handshake callback's.
#[allow(clippy::result_large_err)]
pub(crate) fn only_path<'a>(
    path: &'a str,
    asked: &'a mut Option<String>,
) -> impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse> + 'a {
    move |req, resp| {
        if req.uri().path() == path {
            Ok(resp)
        } else {
            *asked = Some(req.uri().path().to_string());
            let mut e = ErrorResponse::new(Some(format!("no WebSocket endpoint at {}", req.uri().path())));
            *e.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            Err(e)
        }
    }
}

/// Completes the server side of the handshake on an accepted stream (blocking, within
/// `opts.handshake_timeout`), refusing any path but `path` with a 404.
pub fn accept(stream: TcpStream, path: &str, opts: &Options) -> io::Result<(WsSender, WsReceiver)> {
    let deadline = Instant::now() + opts.handshake_timeout;
    let watch = stream.try_clone()?;
    stream.set_nonblocking(true)?;
    let mut asked = None;
    let started = tungstenite::accept_hdr_with_config(stream, only_path(path, &mut asked), Some(opts.config()));
    let ws = match complete(started, &watch, deadline) {
        Ok(ws) => ws,
        Err(None) => return Err(timed_out()),
        Err(Some(e)) => {
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
    let deadline = Instant::now() + opts.handshake_timeout;
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
    let watch = stream.try_clone()?;
    stream.set_nonblocking(true)?;
    let started = tungstenite::client::client_with_config(url, stream, Some(opts.config()));
    let ws = match complete(started, &watch, deadline) {
        Ok((ws, _response)) => ws,
        Err(None) => return Err(timed_out()),
        Err(Some(e)) => return Err(ws_io_error(e)),
    };
    split(ws, opts)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "WebSocket handshake timed out")
}

/// Drives a handshake on a non-blocking socket to its end, waiting for input with `poll(2)` until
/// `deadline` at most: the handshake timeout is a total deadline, so a client that trickles one byte at
/// a time can't hold the connection longer. (Waiting only for input is enough: both sides' writes are a
/// few hundred bytes that a socket buffer takes at once; a peer that reads nothing times out.)
/// `Err(None)`: the deadline passed.
fn complete<Role: HandshakeRole>(
    mut step: Result<Role::FinalResult, HandshakeError<Role>>,
    watch: &TcpStream,
    deadline: Instant,
) -> Result<Role::FinalResult, Option<WsError>> {
    loop {
        match step {
            Ok(done) => return Ok(done),
            Err(HandshakeError::Failure(e)) => return Err(Some(e)),
            Err(HandshakeError::Interrupted(mid)) => {
                match crate::process::poll_fd(watch.as_fd(), libc::POLLIN, Some(deadline), false) {
                    Ok(true) => step = mid.handshake(),
                    Ok(false) => return Err(None),
                    Err(e) => return Err(Some(WsError::Io(e))),
                }
            }
        }
    }
}

pub(super) fn ws_io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::Http(resp) if resp.status() == tungstenite::http::StatusCode::NOT_FOUND => {
            io::Error::new(io::ErrorKind::NotFound, "the server has no WebSocket endpoint at that path (404)")
        }
        e => io::Error::new(io::ErrorKind::ConnectionRefused, e),
    }
}
