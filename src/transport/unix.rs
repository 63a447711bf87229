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

    /// Binds to `path` like [`bind`](Self::bind), but first takes over a socket file left behind by a
    /// server that is gone (nobody accepts on it: `ECONNREFUSED`). A path where a server still listens is
    /// refused (`AddrInUse`, saying so), and anything that is not a socket is never removed.
    pub fn bind_reclaiming(path: impl AsRef<Path>) -> io::Result<Listener> {
        let path = path.as_ref();
        match Self::bind(path) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            r => return r,
        }
        let meta = std::fs::symlink_metadata(path)?;
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        match UnixStream::connect(path) {
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another server is listening there", path.display()),
            )),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Stale: its server is gone. Remove it and bind again (a race with another server doing
                // the same ends in one of the two getting AddrInUse).
                std::fs::remove_file(path)?;
                Self::bind(path)
            }
            Err(e) => Err(e),
        }
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
