//! Pipes: an anonymous pipe (one direction, e.g. between threads or to a child that inherits it), two of
//! them for a duplex pair, and named FIFOs (`mkfifo`) between unrelated processes.
//!
//! FIFOs are opened with `O_NOFOLLOW` (a symbolic link at the path is refused with `ELOOP`) and must be
//! FIFOs (anything else is refused with `InvalidInput`), checked on the opened descriptor.

use super::{FdReceiver, FdSender, StreamFd, StreamReceiver, StreamSender};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One anonymous pipe as a transport: what the sender sends, the receiver receives. Both ends are
/// close-on-exec.
pub fn pair() -> io::Result<(FdSender, FdReceiver)> {
    let (r, w) = raw_pipe()?;
    Ok((StreamSender::new(StreamFd::new(w)?)?, StreamReceiver::new(StreamFd::new(r)?)?))
}

/// Two anonymous pipes: two connected duplex endpoints, `(a_tx, a_rx)` and `(b_tx, b_rx)`, where what
/// `a_tx` sends `b_rx` receives and the other way round.
#[allow(clippy::type_complexity)]
pub fn duplex() -> io::Result<((FdSender, FdReceiver), (FdSender, FdReceiver))> {
    let (a_tx, b_rx) = pair()?;
    let (b_tx, a_rx) = pair()?;
    Ok(((a_tx, a_rx), (b_tx, b_rx)))
}

/// The raw ends of an anonymous pipe, `(read, write)`, close-on-exec.
pub fn raw_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors, which nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Creates a FIFO at `path`, mode 0600 (fails with `AlreadyExists` if anything is there).
pub fn create_fifo(path: impl AsRef<Path>) -> io::Result<()> {
    let c = cpath(path.as_ref())?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the FIFO at `path` for sending. Like `open(2)` on a FIFO, this blocks until a reader opens it.
pub fn open_fifo_sender(path: impl AsRef<Path>) -> io::Result<FdSender> {
    StreamSender::new(StreamFd::new(open_fifo(path.as_ref(), libc::O_WRONLY)?)?)
}

/// Opens the FIFO at `path` for receiving. Like `open(2)` on a FIFO, this blocks until a writer opens
/// it. The receiver sees [`PeerGone`](super::TransportRecvError::PeerGone) once every writer closed it.
pub fn open_fifo_receiver(path: impl AsRef<Path>) -> io::Result<FdReceiver> {
    StreamReceiver::new(StreamFd::new(open_fifo(path.as_ref(), libc::O_RDONLY)?)?)
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn open_fifo(path: &Path, mode: libc::c_int) -> io::Result<OwnedFd> {
    // Refuse a non-FIFO before opening it (opening a device could have side effects) ...
    let meta = std::fs::symlink_metadata(path)?;
    if std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
        let c = cpath(path)?;
        // SAFETY: `c` is a valid NUL-terminated path; open returns a new descriptor or -1.
        let fd = unsafe { libc::open(c.as_ptr(), mode | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: open just returned this descriptor, which nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // ... and check again what was opened, in case the path was swapped in between.
        if is_fifo(&fd)? {
            return Ok(fd);
        }
    } else if meta.file_type().is_symlink() {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a FIFO", path.display())))
}

fn is_fifo(fd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: all-zero is a valid stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid, writable stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}
