//! Unix-domain stream sockets, by path or in Linux's abstract namespace (a name that is no file and
//! disappears with the last socket bound to it).

use super::stream::split;
use super::{FdReceiver, FdSender};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A listening Unix socket; each accepted connection is a transport.
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
    /// The socket file this listener created and removes when dropped.
    path: Option<PathBuf>,
}

impl Listener {
    /// Binds to the file `path` (which must not exist), removed again when the listener is dropped.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Listener> {
        let inner = UnixListener::bind(path.as_ref())?;
        Ok(Listener { inner, path: Some(path.as_ref().to_path_buf()) })
    }

    /// Binds to `name` in the abstract namespace.
    pub fn bind_abstract(name: &[u8]) -> io::Result<Listener> {
        let inner = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name)?)?;
        Ok(Listener { inner, path: None })
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<(FdSender, FdReceiver)> {
        let (stream, _) = self.inner.accept()?;
        split(stream.into())
    }

    /// The underlying listener (e.g. to poll it or make it non-blocking).
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

/// Connects to the socket file at `path`.
pub fn connect(path: impl AsRef<Path>) -> io::Result<(FdSender, FdReceiver)> {
    split(UnixStream::connect(path)?.into())
}

/// Connects to `name` in the abstract namespace.
pub fn connect_abstract(name: &[u8]) -> io::Result<(FdSender, FdReceiver)> {
    split(UnixStream::connect_addr(&SocketAddr::from_abstract_name(name)?)?.into())
}
