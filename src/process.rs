//! Child processes and descriptor passing: below the shared-memory layer (which hands a ring's memfd to
//! a child) and the transports (which start children on their stdio or a socketpair).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus};
use std::thread::JoinHandle;
use std::time::Instant;

/// Makes `fd` (close-on-exec here) inheritable by the child that `cmd` starts, and names it in the
/// child's environment variable `var`. Used by [`ShmRing::share_with`](crate::ShmRing::share_with) and the bench's bare probes.
pub fn pass_fd(cmd: &mut std::process::Command, fd: RawFd, var: &str) {
    cmd.env(var, fd.to_string());
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe; it touches no memory of the parent but the captured integer.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A child process started by a transport (`transport::stdio::spawn`, `transport::fork::spawn`):
/// killed and reaped when dropped if it is still running.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    stderr: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl ChildProcess {
    #[cfg_attr(not(feature = "transport"), allow(dead_code))] // made only by the transports
    pub(crate) fn new(child: Child, stderr: Option<JoinHandle<()>>) -> Self {
        ChildProcess { child, stderr, status: None }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the child to exit (and, with `transport::stdio::spawn_with_stderr`, for its last stderr line to be
    /// handed to the callback).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = match self.status {
            Some(s) => s,
            None => *self.status.insert(self.child.wait()?),
        };
        if let Some(t) = self.stderr.take() {
            let _ = t.join();
        }
        Ok(status)
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits for the child to exit until `deadline`; `Ok(None)` if it is still running then.
    pub fn wait_deadline(&mut self, deadline: Instant) -> io::Result<Option<ExitStatus>> {
        if self.try_wait()?.is_some() {
            return self.wait().map(Some);
        }
        // A pidfd becomes readable when the process exits. The child is not reaped yet, so its pid can't
        // have been reused.
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, self.child.id() as libc::pid_t, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pidfd_open just created this descriptor, which nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        if poll_fd(pidfd.as_fd(), libc::POLLIN, Some(deadline), false)? {
            return self.wait().map(Some);
        }
        Ok(None)
    }

    /// Kills the child with SIGKILL (if it is still running) and reaps it.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if self.try_wait()?.is_none() {
            self.child.kill()?;
        }
        self.wait()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.try_wait() {
            let _ = self.child.kill();
        }
        if self.status.is_none() {
            let _ = self.child.wait();
        }
    }
}

/// Waits with `poll(2)` until `fd` reports one of `events` (or an error / hang-up): not at all when
/// `deadline` is `None` and `forever` is false, without limit when `forever` is true, else until
/// `deadline`. `Ok(false)`: the wait ran out. Shared with the transports' `poll_fd`.
pub(crate) fn poll_fd(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    deadline: Option<Instant>,
    forever: bool,
) -> io::Result<bool> {
    loop {
        let timeout = match (deadline, forever) {
            (_, true) => -1,
            (None, false) => 0,
            (Some(d), false) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a wake-up is never before the deadline (no busy loop on its last ms).
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            }
        };
        let mut p = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
        // SAFETY: `p` is one valid pollfd that lives across the call; the count says 1.
        let r = unsafe { libc::poll(&mut p, 1, timeout) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r > 0 {
            return Ok(true);
        }
        match deadline {
            Some(d) if !forever && Instant::now() < d => continue,
            _ => return Ok(false),
        }
    }
}
