//! Files and descriptors: names, opening without following links, ownership and size checks, and the
//! OFD byte locks that mark which endpoints are alive.

use super::OpenError;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Checks a ring name: 1 to 200 characters from `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), OpenError> {
    let bad = |reason| Err(OpenError::InvalidName { name: name.to_string(), reason });
    if name.is_empty() || name.len() > 200 {
        return bad("must be 1 to 200 characters");
    }
    if name == "." || name == ".." {
        return bad("must not be . or ..");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return bad(if c == '/' { "must not contain /" } else { "may only use A-Z a-z 0-9 . _ -" });
    }
    Ok(())
}

pub(crate) fn io_err(op: &'static str, source: io::Error) -> OpenError {
    if source.raw_os_error() == Some(libc::ENOSPC) {
        return OpenError::NoSpace;
    }
    OpenError::Io { op, source }
}

pub(crate) fn open_errno(e: io::Error, path: &Path) -> OpenError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound(path.to_path_buf()),
        Some(libc::ELOOP) => OpenError::Symlink(path.to_path_buf()),
        _ => io_err("open", e),
    }
}

/// `open(2)` with O_NOFOLLOW | O_CLOEXEC added and mode 0600 for creation.
pub(crate) fn open_file(path: &Path, flags: i32) -> io::Result<File> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // O_NONBLOCK: a FIFO (or device) planted under a ring's name must not block the open (an open of a
    // FIFO waits for a peer); the caller's `check_file` then refuses it. On a regular file the flag
    // changes nothing (reads, mmap and the OFD locks behave the same).
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: `c` is a valid NUL-terminated path; open returns a new fd or -1.
    let fd = unsafe { libc::open(c.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this fd, which nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Refuses anything but a regular file owned by our effective uid.
pub(crate) fn check_file(file: &File) -> Result<(), OpenError> {
    let meta = file.metadata().map_err(|e| io_err("fstat", e))?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotRegularFile);
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(OpenError::WrongOwner { owner: meta.uid(), expected: me });
    }
    Ok(())
}

/// Sets the file to `total` bytes and allocates them now, so that a full tmpfs is an error here rather
/// than a SIGBUS at the first touch of a page.
pub(crate) fn size_file(file: &File, total: u64) -> Result<(), OpenError> {
    file.set_len(total).map_err(|e| io_err("ftruncate", e))?;
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, total as libc::off_t) };
    if r != 0 {
        return Err(io_err("posix_fallocate", io::Error::from_raw_os_error(r)));
    }
    Ok(())
}

/// A new open file description of the same file (through /proc), close-on-exec, for a role lock.
pub(crate) fn reopen(file: &File) -> Result<OwnedFd, OpenError> {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_err("reopen", e))?;
    Ok(f.into())
}

pub(crate) fn flock(kind: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

/// Tries to take an OFD write lock on `[start, start + len)`; `Ok(false)` if someone else holds it.
pub(crate) fn try_lock(fd: &impl AsRawFd, start: i64, len: i64) -> Result<bool, OpenError> {
    let fl = flock(libc::F_WRLCK, start, len);
    // SAFETY: F_OFD_SETLK reads the flock struct we pass by pointer; it lives across the call.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(io_err("F_OFD_SETLK", e)),
    }
}

/// Whether any open file description holds a lock on byte `start`.
pub(crate) fn is_locked(fd: &impl AsRawFd, start: i64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK, start, 1);
    // SAFETY: F_OFD_GETLK reads and writes the flock struct we pass by pointer.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}
