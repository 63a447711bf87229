//! Async TCP: [`connect`], a [`Listener`], or [`from_stream`] over a connected tokio `TcpStream`; the
//! same frames as [`transport::tcp`](crate::transport::tcp). `TCP_NODELAY` is set, as there.

use super::{AsyncStreamReceiver, AsyncStreamSender};
use ::tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use ::tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::io;
use std::net::SocketAddr;

/// The sending half of an async TCP transport.
pub type TcpSender = AsyncStreamSender<OwnedWriteHalf>;
/// The receiving half of an async TCP transport.
pub type TcpReceiver = AsyncStreamReceiver<OwnedReadHalf>;

/// A listening TCP socket whose connections are async transports.
///
/// ```no_run
/// use ringwire::transport::tokio::{tcp, AsyncReceiver, AsyncSender};
/// # async fn run() -> std::io::Result<()> {
/// let listener = tcp::Listener::bind("127.0.0.1:9000").await?;
/// loop {
///     let (mut tx, mut rx, _peer) = listener.accept().await?;
///     tokio::spawn(async move {
///         while let Ok(msg) = rx.recv().await {
///             if tx.send(&msg).await.is_err() {
///                 break;
///             }
///         }
///     });
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    /// Binds to `addr` (port 0: any free port).
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Listener> {
        Ok(Listener { inner: TcpListener::bind(addr).await? })
    }

    /// Wraps a bound tokio listener.
    pub fn from_listener(inner: TcpListener) -> Listener {
        Listener { inner }
    }

    /// The address bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Waits for the next connection; returns its halves and the peer's address. Cancel-safe.
    pub async fn accept(&self) -> io::Result<(TcpSender, TcpReceiver, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        let (tx, rx) = from_stream(stream)?;
        Ok((tx, rx, peer))
    }

    /// The tokio listener.
    pub fn get_ref(&self) -> &TcpListener {
        &self.inner
    }
}

/// Connects to `addr`.
pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<(TcpSender, TcpReceiver)> {
    from_stream(TcpStream::connect(addr).await?)
}

/// Splits a connected stream into the two halves (sets `TCP_NODELAY`). Closing the sender shuts the
/// writing side down; the socket closes when both halves are dropped.
pub fn from_stream(stream: TcpStream) -> io::Result<(TcpSender, TcpReceiver)> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    Ok((AsyncStreamSender::new(w), AsyncStreamReceiver::new(r)))
}

/// Makes a blocking-world `std::net::TcpStream` (e.g. from the blocking adapters' world) async:
/// switches it to non-blocking mode and registers it with the current runtime.
pub fn from_std(stream: std::net::TcpStream) -> io::Result<(TcpSender, TcpReceiver)> {
    stream.set_nonblocking(true)?;
    from_stream(TcpStream::from_std(stream)?)
}
