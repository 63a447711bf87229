//! Async pipes and FIFOs over `tokio::net::unix::pipe`: the same frames as
//! [`transport::pipe`](crate::transport::pipe). A pipe is one-way: a sender over its write end, a
//! receiver over its read end.

use super::{AsyncStreamReceiver, AsyncStreamSender};
use ::tokio::net::unix::pipe;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The sending half of an async pipe transport.
pub type PipeSender = AsyncStreamSender<pipe::Sender>;
/// The receiving half of an async pipe transport.
pub type PipeReceiver = AsyncStreamReceiver<pipe::Receiver>;

/// Opens the write end of the FIFO at `path`. Fails with `ENXIO` while no reader has it open (tokio
/// opens it non-blocking); open the reading side first, or retry.
pub fn open_fifo_sender(path: impl AsRef<Path>) -> io::Result<PipeSender> {
    Ok(AsyncStreamSender::new(pipe::OpenOptions::new().open_sender(path)?))
}

/// Opens the read end of the FIFO at `path` (does not wait for a writer).
pub fn open_fifo_receiver(path: impl AsRef<Path>) -> io::Result<PipeReceiver> {
    Ok(AsyncStreamReceiver::new(pipe::OpenOptions::new().open_receiver(path)?))
}

/// Wraps the write end of a pipe (e.g. a `std::process::ChildStdin`, or the fd of a blocking
/// `pipe::pair`): switched to non-blocking mode and registered with the current runtime. Fails with
/// `InvalidInput` if `fd` is not a pipe or FIFO.
pub fn sender_from_fd(fd: impl Into<OwnedFd>) -> io::Result<PipeSender> {
    Ok(AsyncStreamSender::new(pipe::Sender::from_owned_fd(fd.into())?))
}

/// Wraps the read end of a pipe (e.g. a `std::process::ChildStdout`), as [`sender_from_fd`].
pub fn receiver_from_fd(fd: impl Into<OwnedFd>) -> io::Result<PipeReceiver> {
    Ok(AsyncStreamReceiver::new(pipe::Receiver::from_owned_fd(fd.into())?))
}

/// A new pipe as a connected (sender, receiver) pair, in this process.
pub fn pair() -> io::Result<(PipeSender, PipeReceiver)> {
    let (tx, rx) = pipe::pipe()?;
    Ok((AsyncStreamSender::new(tx), AsyncStreamReceiver::new(rx)))
}
