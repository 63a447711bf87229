//! A child process's stdin and stdout as a transport: the parent [`spawn`]s the child and exchanges
//! frames with it; the child calls [`from_process_stdio`].
//!
//! The child's stderr is left alone ([`spawn`]) or read line by line by a thread that hands each line to
//! a callback ([`spawn_with_stderr`]). The returned [`ChildProcess`] reports the exit status. **No
//! zombies:** dropping a `ChildProcess` whose child is still running kills it (SIGKILL) and reaps it;
//! one that already exited is reaped. Call [`ChildProcess::wait`] for a graceful end (close the sender
//! first so the child sees end of input).

pub use crate::process::ChildProcess;

use super::{FdReceiver, FdSender, StreamFd, StreamReceiver, StreamSender};
use std::io::{self, BufRead};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// Starts `cmd` with its stdin and stdout piped to the returned transport halves (its stderr as `cmd`
/// says, inherited by default).
pub fn spawn(cmd: &mut Command) -> io::Result<(FdSender, FdReceiver, ChildProcess)> {
    start(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()), None)
}

/// Like [`spawn`], and reads the child's stderr on a thread, calling `on_line` with each line (without
/// its line ending; invalid UTF-8 replaced).
pub fn spawn_with_stderr(
    cmd: &mut Command,
    on_line: impl FnMut(&str) + Send + 'static,
) -> io::Result<(FdSender, FdReceiver, ChildProcess)> {
    start(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()), Some(Box::new(on_line)))
}

type LineFn = Box<dyn FnMut(&str) + Send>;

fn start(cmd: &mut Command, on_line: Option<LineFn>) -> io::Result<(FdSender, FdReceiver, ChildProcess)> {
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let thread = match (on_line, child.stderr.take()) {
        (Some(mut f), Some(err)) => {
            Some(std::thread::Builder::new().name("ringwire-stderr".into()).spawn(move || {
                let mut r = io::BufReader::new(err);
                let mut line = Vec::new();
                while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                    let text = String::from_utf8_lossy(&line);
                    f(text.strip_suffix('\n').unwrap_or(&text));
                    line.clear();
                }
            })?)
        }
        _ => None,
    };
    let handle = ChildProcess::new(child, thread);
    let tx = StreamSender::new(StreamFd::new(OwnedFd::from(stdin))?)?;
    let rx = StreamReceiver::new(StreamFd::new(OwnedFd::from(stdout))?)?;
    Ok((tx, rx, handle))
}

/// In a child started by [`spawn`]: this process's own stdin and stdout as a transport.
///
/// It takes descriptors 0 and 1 over: they are duplicated for the transport, then fd 0 is pointed at
/// `/dev/null` and fd 1 at stderr, so that a stray `println!` goes to stderr instead of corrupting the
/// frame stream. The pipes are switched to non-blocking mode; use this only where stdin and stdout are
/// pipes of this process (not a terminal shared with a shell). Call it once.
pub fn from_process_stdio() -> io::Result<(FdSender, FdReceiver)> {
    let input = dup_cloexec(0)?;
    let output = dup_cloexec(1)?;
    let devnull = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto the standard descriptors, which this process keeps open for its whole life; the
    // transport holds its own duplicates of the originals.
    unsafe {
        if libc::dup2(devnull.as_raw_fd(), 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((StreamSender::new(StreamFd::new(output)?)?, StreamReceiver::new(StreamFd::new(input)?)?))
}

fn dup_cloexec(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on any integer is harmless: EBADF if it is not open.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl just created `d`, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}
