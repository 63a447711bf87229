//! A child process's stdin and stdout as an async transport (the parent side of
//! [`transport::stdio`](crate::transport::stdio); the child uses the blocking
//! `stdio::from_process_stdio`, or this module's halves over its own pipes).

use super::pipe::{receiver_from_fd, sender_from_fd, PipeReceiver, PipeSender};
pub use crate::process::ChildProcess;
use std::io;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

/// Starts `cmd` with its stdin and stdout piped to the returned async halves (its stderr as `cmd`
/// says). Dropping the [`ChildProcess`] of a child still running kills and reaps it. Needs a runtime.
///
/// ```no_run
/// use ringwire::transport::tokio::{stdio, AsyncReceiver, AsyncSender};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut tx, mut rx, child) = stdio::spawn(&mut std::process::Command::new("my-worker"))?;
/// tx.send(b"job").await?;
/// let answer = rx.recv().await?;
/// tx.close().await?; // the child sees the end of its input
/// # let _ = (answer, child); Ok(()) }
/// ```
pub fn spawn(cmd: &mut Command) -> io::Result<(PipeSender, PipeReceiver, ChildProcess)> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let stdin = OwnedFd::from(child.stdin.take().expect("piped stdin"));
    let stdout = OwnedFd::from(child.stdout.take().expect("piped stdout"));
    let handle = ChildProcess::new(child, None);
    Ok((sender_from_fd(stdin)?, receiver_from_fd(stdout)?, handle))
}
