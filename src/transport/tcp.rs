//! TCP: a listener that accepts any number of clients, each connection a transport, and a connecting
//! client. Every connection has `TCP_NODELAY` set (a frame goes out when it is sent, not when Nagle's
//! algorithm thinks the segment is full).

use super::stream::split;
use super::{FdReceiver, FdSender};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};

/// A listening TCP socket; each accepted connection is a transport.
///
/// ```
/// use ringwire::transport::{tcp, Receiver, Sender};
/// let listener = tcp::Listener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let client = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
///     let (mut tx, mut rx) = tcp::connect(addr)?;
///     tx.send(b"ping").map_err(std::io::Error::other)?;
///     rx.recv().map_err(std::io::Error::other)
/// });
/// let (mut tx, mut rx, _peer) = listener.accept()?;
/// let msg = rx.recv()?;
/// tx.send(&[b"re: ".as_slice(), &msg].concat())?;
/// assert_eq!(client.join().unwrap()?, b"re: ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    /// Binds to `addr` (port 0: any free port, see [`local_addr`](Self::local_addr)).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Listener> {
        Ok(Listener { inner: TcpListener::bind(addr)? })
    }

    /// The address bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Waits for the next connection; returns its halves and the client's address.
    pub fn accept(&self) -> io::Result<(FdSender, FdReceiver, SocketAddr)> {
        let (stream, peer) = self.inner.accept()?;
        stream.set_nodelay(true)?;
        let (tx, rx) = split(stream.into())?;
        Ok((tx, rx, peer))
    }

    /// The underlying listener.
    pub fn get_ref(&self) -> &TcpListener {
        &self.inner
    }
}

/// Connects to `addr`.
pub fn connect(addr: impl ToSocketAddrs) -> io::Result<(FdSender, FdReceiver)> {
    from_stream(TcpStream::connect(addr)?)
}

/// Makes a transport of an already connected stream (sets `TCP_NODELAY`).
pub fn from_stream(stream: TcpStream) -> io::Result<(FdSender, FdReceiver)> {
    stream.set_nodelay(true)?;
    split(stream.into())
}
