//! A child process with an inherited duplex channel, like Node's `NODE_CHANNEL_FD`: the parent makes a
//! Unix socketpair, the child inherits one end (made inheritable in that child only, between fork and
//! exec) and finds its number in an environment variable. The child's stdio stays free for other uses.
//!
//! ```no_run
//! use ringwire::transport::{fork, Receiver, Sender};
//! // parent
//! let (mut tx, mut rx, mut child) = fork::spawn(&mut std::process::Command::new("worker"))?;
//! tx.send(b"job")?;
//! let reply = rx.recv()?;
//! tx.close()?;
//! child.wait()?;
//! // in the worker: let (mut tx, mut rx) = fork::from_env()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::stream::split;
use super::{FdReceiver, FdSender};
use crate::process::ChildProcess;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

/// The environment variable that names the inherited channel's descriptor unless told otherwise.
pub const DEFAULT_FD_VAR: &str = "RINGWIRE_CHANNEL_FD";

/// Starts `cmd` with a channel in [`DEFAULT_FD_VAR`]. Dropping the [`ChildProcess`] kills and reaps a
/// child that is still running.
pub fn spawn(cmd: &mut Command) -> io::Result<(FdSender, FdReceiver, ChildProcess)> {
    spawn_with_var(cmd, DEFAULT_FD_VAR)
}

/// Starts `cmd` with a channel whose descriptor number is in the child's environment variable `var`.
pub fn spawn_with_var(cmd: &mut Command, var: &str) -> io::Result<(FdSender, FdReceiver, ChildProcess)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair just created both descriptors, which nothing else owns.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    crate::process::pass_fd(cmd, theirs.as_raw_fd(), var);
    let child = cmd.spawn()?;
    // Only the child keeps its end: its exit (or close) is then our end of stream.
    drop(theirs);
    let (tx, rx) = split(ours)?;
    Ok((tx, rx, ChildProcess::new(child, None)))
}

/// In a child started by [`spawn`]: the inherited channel.
pub fn from_env() -> io::Result<(FdSender, FdReceiver)> {
    from_env_var(DEFAULT_FD_VAR)
}

/// In a child started by [`spawn_with_var`]: the channel named by `var`. The inherited descriptor is
/// duplicated (so a second call is harmless) and made close-on-exec, so that this process's own children
/// don't inherit the channel and keep it open.
pub fn from_env_var(var: &str) -> io::Result<(FdSender, FdReceiver)> {
    let missing = || io::Error::new(io::ErrorKind::NotFound, format!("no inherited channel in ${var}"));
    let raw: i32 = std::env::var(var).ok().and_then(|v| v.trim().parse().ok()).ok_or_else(missing)?;
    // SAFETY: all-zero is a valid stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on any integer is harmless (EBADF if not open); `st` is a valid buffer.
    if raw < 0 || unsafe { libc::fstat(raw, &mut st) } < 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(missing());
    }
    // SAFETY: F_DUPFD_CLOEXEC / F_SETFD on an open descriptor; no memory is passed.
    let dup = unsafe {
        libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3)
    };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl just created `dup`, which nothing else owns.
    split(unsafe { OwnedFd::from_raw_fd(dup) })
}
