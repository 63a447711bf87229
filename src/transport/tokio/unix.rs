//! Async Unix stream sockets: [`connect`] (path or abstract name), a [`Listener`], or [`from_stream`];
//! the same frames as [`transport::unix`](crate::transport::unix).

use super::{AsyncStreamReceiver, AsyncStreamSender};
use ::tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use ::tokio::net::{UnixListener, UnixStream};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::path::{Path, PathBuf};

/// The sending half of an async Unix-socket transport.
pub type UnixSender = AsyncStreamSender<OwnedWriteHalf>;
/// The receiving half of an async Unix-socket transport.
pub type UnixReceiver = AsyncStreamReceiver<OwnedReadHalf>;

/// A listening Unix socket whose connections are async transports. A listener bound to a path
/// removes the socket file when dropped.
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
    path: Option<PathBuf>,
}

impl Listener {
    /// Binds to a filesystem path (which must not exist). Needs a runtime.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Listener> {
        let path = path.as_ref();
        Ok(Listener { inner: UnixListener::bind(path)?, path: Some(path.to_path_buf()) })
    }

    /// Binds to a name in Linux's abstract socket namespace (no file; gone when closed).
    pub fn bind_abstract(name: &[u8]) -> io::Result<Listener> {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        let std = std::os::unix::net::UnixListener::bind_addr(&addr)?;
        std.set_nonblocking(true)?;
        Ok(Listener { inner: UnixListener::from_std(std)?, path: None })
    }

    /// Waits for the next connection and returns its halves. Cancel-safe.
    pub async fn accept(&self) -> io::Result<(UnixSender, UnixReceiver)> {
        let (stream, _) = self.inner.accept().await?;
        Ok(from_stream(stream))
    }

    /// The tokio listener.
    pub fn get_ref(&self) -> &UnixListener {
        &self.inner
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Connects to the socket at `path`.
pub async fn connect(path: impl AsRef<Path>) -> io::Result<(UnixSender, UnixReceiver)> {
    Ok(from_stream(UnixStream::connect(path).await?))
}

/// Connects to a name in the abstract namespace.
pub fn connect_abstract(name: &[u8]) -> io::Result<(UnixSender, UnixReceiver)> {
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let std = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    std.set_nonblocking(true)?;
    Ok(from_stream(UnixStream::from_std(std)?))
}

/// Splits a connected stream into the two halves. Closing the sender shuts the writing side down.
pub fn from_stream(stream: UnixStream) -> (UnixSender, UnixReceiver) {
    let (r, w) = stream.into_split();
    (AsyncStreamSender::new(w), AsyncStreamReceiver::new(r))
}
