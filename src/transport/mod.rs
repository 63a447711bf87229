//! One transport interface over every medium: the shared-memory ring, pipes and FIFOs, Unix and TCP
//! stream sockets, UDP datagrams, a child's stdio, a socket inherited by a child, WebSocket, and Redis
//! (pub/sub and streams).
//!
//! Every adapter hands out a [`Sender`] and a [`Receiver`] half with the same methods (blocking, `try_`,
//! `_deadline`, `close`) and the same errors ([`TransportSendError`], [`TransportRecvError`]). Every message
//! travels as one [frame](crate::wire): stream adapters are all one generic pair,
//! [`StreamSender`] / [`StreamReceiver`], built on [`FrameDecoder`](crate::transport::codec::FrameDecoder) over any
//! non-blocking file descriptor; UDP puts one frame in each datagram, WebSocket in each binary message,
//! Redis in each value (after a 16-byte envelope that numbers the messages); the ring is already framed.
//!
//! | adapter | constructor(s) | halves |
//! |---|---|---|
//! | [`shm`] | `shm::Duplex::anonymous` + `share_with` / `shm::from_env`, `shm::create` / `shm::open` | ring producer + consumer |
//! | [`pipe`] | `pipe::pair`, `pipe::duplex`, `pipe::open_fifo_sender` / `open_fifo_receiver` | [`FdSender`] / [`FdReceiver`] |
//! | [`unix`] | `unix::Listener::{bind, bind_abstract}` + `accept`, `unix::connect`, `unix::connect_abstract` | same |
//! | [`tcp`] | `tcp::Listener::bind` + `accept`, `tcp::connect` | same |
//! | [`udp`] | `udp::connect`, `udp::from_socket` | [`udp::UdpSender`] / [`udp::UdpReceiver`] |
//! | [`stdio`] | `stdio::spawn` (parent), `stdio::from_process_stdio` (child) | [`FdSender`] / [`FdReceiver`] |
//! | [`fork`] | `fork::spawn` (parent), `fork::from_env` (child) | same |
//! | `websocket` (feature `websocket`) | `websocket::Listener::{bind, bind_url}` + `accept`, `websocket::connect` | `websocket::WsSender` / `websocket::WsReceiver` |
//! | `redis` (feature `redis`) | `redis::Publisher` + `redis::Subscriber`; `redis::StreamProducer` + `redis::StreamConsumer` | each type is one half |
//! | `amqp` (feature `amqp`) | `amqp::Producer` + `amqp::Consumer` (RabbitMQ work queue) | each type is one half |
//! | `tokio` (feature `tokio`) | async forms on tokio: `tokio::{tcp, unix, pipe, stdio, udp}`, `tokio::websocket` (feature `tokio-websocket`) | `tokio::AsyncStreamSender` / `AsyncStreamReceiver`, `tokio::udp::AsyncUdpSender` / `AsyncUdpReceiver`, `tokio::websocket::AsyncWsSender` / `AsyncWsReceiver` (traits `tokio::AsyncSender` / `AsyncReceiver`) |
//!
//! Delivery guarantees per adapter are in ARCHITECTURE.md ("Transports").
//!
//! # Deadlines and blocking
//!
//! Stream adapters put their descriptors in non-blocking mode and wait with `poll(2)`, so every
//! operation honours its deadline, including in the middle of a frame. A send is all or nothing from the
//! caller's point of view: `try_send` and `send_deadline` either accept the whole frame or return
//! `WouldBlock` / `Timeout` having written nothing. A frame that was accepted but only partly written
//! (the socket buffer filled mid-frame) stays queued in the sender and goes out first on the next call,
//! on [`Sender::flush`] or on [`Sender::close`]; a blocking `send` returns only once everything is written.
//!
//! # SIGPIPE
//!
//! Socket writes use `send(MSG_NOSIGNAL)`, so a peer that is gone is an `EPIPE` error, never a signal.
//! Pipes have no such flag: a library can't ignore SIGPIPE for the whole process behind the program's
//! back, and doesn't need to in Rust programs, whose runtime sets SIGPIPE to ignored before `main`. A
//! program that restores the default disposition (or a non-Rust host) should ignore SIGPIPE itself
//! before writing to pipes. Either way `EPIPE` and `ECONNRESET` are reported as
//! [`TransportSendError::PeerReset`].

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod codec;
#[cfg(any(feature = "redis", feature = "amqp"))]
pub(crate) mod envelope;
pub mod fork;
pub mod pipe;
#[cfg(feature = "redis")]
pub mod redis;
pub mod shm;
pub mod stdio;
mod stream;
pub mod tcp;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod udp;
pub mod unix;
#[cfg(feature = "websocket")]
pub mod websocket;

pub use stream::{
    FdReceiver, FdSender, StreamFd, StreamReceiver, StreamSender, DEFAULT_MAX_BUFFERED, DEFAULT_STALL_TIMEOUT,
};

use crate::transport::codec::FrameError;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// The largest message stream adapters accept unless told otherwise (`set_max_message`).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// How long an operation may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Not at all (`try_` operations).
    Never,
    /// Until the operation can complete (blocking operations).
    Forever,
    /// Until this instant (`_deadline` operations).
    Until(Instant),
}

/// Why a send failed. Unless said otherwise, nothing of the message was sent.
#[derive(Debug, thiserror::Error)]
pub enum TransportSendError {
    /// `try_send`: the transport can't take the message right now.
    #[error("the transport is full")]
    WouldBlock,
    /// `send_deadline`: the transport could not take the message before the deadline.
    #[error("timed out")]
    Timeout,
    /// The message is larger than the transport's maximum. The transport stays usable.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    Oversize {
        /// The message length.
        len: usize,
        /// The largest message this sender accepts.
        max: usize,
    },
    /// The peer closed its receiving end cleanly (ring: the consumer closed).
    #[error("the peer closed the connection")]
    PeerGone,
    /// The peer is gone without a clean close: `EPIPE`, `ECONNRESET`, a dead ring consumer, an ICMP
    /// "port unreachable" on UDP. On streams `EPIPE` is also what a clean close looks like to a writer.
    #[error("the peer reset the connection or died")]
    PeerReset,
    /// This half was closed with [`Sender::close`].
    #[error("this sender is closed")]
    Closed,
    /// Any other system error (and ring corruption, as `InvalidData`).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a receive failed. No message was consumed when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum TransportRecvError {
    /// `try_recv`: no whole message has arrived.
    #[error("no message ready")]
    Empty,
    /// `recv_deadline`: no whole message arrived before the deadline.
    #[error("timed out")]
    Timeout,
    /// The peer closed cleanly: end of stream at a frame boundary, or a closed ring producer, after every
    /// message it sent was received. Every later call returns this too.
    #[error("the peer closed the connection")]
    PeerGone,
    /// The peer died or reset the connection: end of stream in the middle of a frame, `ECONNRESET`, a
    /// dead ring producer (after everything it committed), an ICMP "port unreachable" on UDP.
    #[error("the peer reset the connection or died")]
    PeerReset,
    /// The peer sent one message that is not a valid frame, and the receiver skipped it and stays
    /// usable: an oversize frame ([`FrameError::Oversize`], its payload skipped unbuffered), or a bad
    /// datagram / WebSocket message / Redis value (each stands alone). Log it and receive again.
    #[error(transparent)]
    BadFrame(FrameError),
    /// The peer sent bytes that are not a frame on a stream (a bad header, an unknown kind, or the end of
    /// the stream inside a bad frame): there is no way to find the next frame boundary, so the stream is
    /// dead. Every later call returns this too. Close the connection; retrying only spins.
    #[error("the stream is broken beyond repair: {0}")]
    Broken(FrameError),
    /// This half was closed with [`Receiver::close`].
    #[error("this receiver is closed")]
    Closed,
    /// Any other system error (and ring corruption, as `InvalidData`).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl TransportRecvError {
    /// Whether the receiver is finished: nothing more will ever arrive, so a receive loop must stop
    /// (`PeerGone`, `PeerReset`, `Broken`, `Closed`, and I/O errors). `Empty`, `Timeout` and `BadFrame`
    /// (a skipped message) leave the receiver usable.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, TransportRecvError::Empty | TransportRecvError::Timeout | TransportRecvError::BadFrame(_))
    }
}

/// A received frame with its event-name length: `bytes` is the whole payload (`len` bytes), of which
/// the first `ext` are an event name (the frame header's `ext` field, see [`crate::wire`]; `ext <=
/// bytes.len()`, checked by every receiver). A plain message has `ext = 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecvFrame {
    /// How many of the first bytes are an event name.
    pub ext: u16,
    /// The payload: name, then the event's own bytes.
    pub bytes: Vec<u8>,
}

impl RecvFrame {
    /// The first `ext` bytes (empty for a plain message).
    pub fn name(&self) -> &[u8] {
        &self.bytes[..self.ext as usize]
    }

    /// The bytes after the name.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.ext as usize..]
    }
}

/// The sending half of a transport.
pub trait Sender: Send {
    /// Sends one frame whose payload is the concatenation of `parts` and whose header says that its
    /// first `ext` bytes are an event name, waiting as `wait` allows. The parts are written without
    /// being concatenated where the medium allows (streams and the ring copy each part into place);
    /// `max_message` bounds their total. `ext` above the total is refused (`Io`, `InvalidInput`).
    /// Adapters implement this; the `send*` methods are it with `ext = 0` and one part.
    fn send_frame_wait(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError>;

    /// Sends one message, waiting as `wait` allows (`ext = 0`).
    fn send_wait(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        self.send_frame_wait(0, &[msg], wait)
    }

    /// Sends one message, blocking until the transport has taken all of it.
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportSendError> {
        self.send_wait(msg, Wait::Forever)
    }

    /// Sends one message if the transport can take it without waiting; else [`TransportSendError::WouldBlock`].
    fn try_send(&mut self, msg: &[u8]) -> Result<(), TransportSendError> {
        self.send_wait(msg, Wait::Never)
    }

    /// Sends one message, waiting until `deadline` at most; else [`TransportSendError::Timeout`].
    fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<(), TransportSendError> {
        self.send_wait(msg, Wait::Until(deadline))
    }

    /// Writes out whatever accepted frame is still queued (see the module docs), blocking.
    fn flush(&mut self) -> Result<(), TransportSendError> {
        Ok(())
    }

    /// Queues one message (`ext = 0`) in this half's bounded send buffer instead of writing it now, so
    /// that a burst goes out in one syscall (stream adapters: one `write` of every queued frame; UDP:
    /// one `sendmmsg`). The queue is written when the next frame would not fit in it (waiting as `wait`
    /// allows; `WouldBlock` / `Timeout` if it can't, and then this message is not accepted), by
    /// [`flush`](Self::flush), by any plain `send*` (which writes the queue and its own frame, in order,
    /// before returning) and by [`close`](Self::close); a drop writes only what goes without waiting.
    /// **Call `flush` before waiting for an answer**: a queued message is not on the wire. Adapters
    /// without such a buffer send at once (the default).
    fn send_buffered(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        self.send_wait(msg, wait)
    }

    /// Flushes, then closes this half: the peer's receiver sees [`TransportRecvError::PeerGone`] after
    /// the last message. Later sends fail with [`TransportSendError::Closed`]. Dropping the half also
    /// closes it, flushing only what can be written without waiting.
    fn close(&mut self) -> Result<(), TransportSendError>;

    /// The largest message this half sends.
    fn max_message(&self) -> usize;

    /// Sets how this half waits for its descriptor ([`IoWait`]); kernel transports only, a no-op for the
    /// others (rings have their own `set_wait_strategy`).
    fn set_io_wait(&mut self, _wait: IoWait) {}
}

/// The receiving half of a transport.
pub trait Receiver: Send {
    /// Receives one frame with its `ext` (event-name length), waiting as `wait` allows. Adapters
    /// implement this.
    fn recv_frame_wait(&mut self, wait: Wait) -> Result<RecvFrame, TransportRecvError>;

    /// Receives one frame into `buf` (its previous contents replaced) and returns its `ext`, waiting as
    /// `wait` allows: [`recv_frame_wait`](Self::recv_frame_wait) without a new `Vec` per message. The
    /// stream and UDP adapters copy the payload into `buf`, so a receive loop that reuses one buffer
    /// makes no allocation once it has grown to the largest message; the other adapters hand over the
    /// buffer they received into (the default: `*buf = frame.bytes`). On an error `buf` is unspecified.
    fn recv_frame_into_vec(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<u16, TransportRecvError> {
        let f = self.recv_frame_wait(wait)?;
        *buf = f.bytes;
        Ok(f.ext)
    }

    /// Receives one message, waiting as `wait` allows: its whole payload. A raw receiver given an event
    /// frame (`ext > 0`) gets the name bytes followed by the event's payload, and no way to tell where
    /// one ends; use [`recv_frame_wait`](Self::recv_frame_wait) (or the events layer) to see `ext`.
    fn recv_wait(&mut self, wait: Wait) -> Result<Vec<u8>, TransportRecvError> {
        self.recv_frame_wait(wait).map(|f| f.bytes)
    }

    /// Receives one message, blocking until one arrives or the peer is gone.
    fn recv(&mut self) -> Result<Vec<u8>, TransportRecvError> {
        self.recv_wait(Wait::Forever)
    }

    /// Receives one message if a whole one has arrived; else [`TransportRecvError::Empty`].
    fn try_recv(&mut self) -> Result<Vec<u8>, TransportRecvError> {
        self.recv_wait(Wait::Never)
    }

    /// Receives one message, waiting until `deadline` at most; else [`TransportRecvError::Timeout`].
    fn recv_deadline(&mut self, deadline: Instant) -> Result<Vec<u8>, TransportRecvError> {
        self.recv_wait(Wait::Until(deadline))
    }

    /// Closes this half; later receives fail with [`TransportRecvError::Closed`]. A peer still sending
    /// gets [`TransportSendError::PeerReset`] or [`TransportSendError::PeerGone`] (or, on UDP, nothing).
    fn close(&mut self);

    /// The largest message this half accepts.
    fn max_message(&self) -> usize;

    /// Sets how this half waits for its descriptor ([`IoWait`]); kernel transports only, a no-op for the
    /// others.
    fn set_io_wait(&mut self, _wait: IoWait) {}
}

/// `Box<dyn Sender>` and `&mut S` are senders too: every method forwards (a method left out would fall
/// back to its default and silently do nothing, as `set_io_wait` once did for `&mut T`).
macro_rules! forward_sender {
    ($($ty:ty),*) => {$(
        impl<T: Sender + ?Sized> Sender for $ty {
            fn send_frame_wait(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
                (**self).send_frame_wait(ext, parts, wait)
            }
            fn send_wait(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
                (**self).send_wait(msg, wait)
            }
            fn flush(&mut self) -> Result<(), TransportSendError> {
                (**self).flush()
            }
            fn send_buffered(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
                (**self).send_buffered(msg, wait)
            }
            fn close(&mut self) -> Result<(), TransportSendError> {
                (**self).close()
            }
            fn max_message(&self) -> usize {
                (**self).max_message()
            }
            fn set_io_wait(&mut self, wait: IoWait) {
                (**self).set_io_wait(wait)
            }
        }
    )*};
}
forward_sender!(Box<T>, &mut T);

/// `Box<dyn Receiver>` and `&mut R` are receivers too: every method forwards.
macro_rules! forward_receiver {
    ($($ty:ty),*) => {$(
        impl<T: Receiver + ?Sized> Receiver for $ty {
            fn recv_frame_wait(&mut self, wait: Wait) -> Result<RecvFrame, TransportRecvError> {
                (**self).recv_frame_wait(wait)
            }
            fn recv_frame_into_vec(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<u16, TransportRecvError> {
                (**self).recv_frame_into_vec(buf, wait)
            }
            fn recv_wait(&mut self, wait: Wait) -> Result<Vec<u8>, TransportRecvError> {
                (**self).recv_wait(wait)
            }
            fn close(&mut self) {
                (**self).close()
            }
            fn max_message(&self) -> usize {
                (**self).max_message()
            }
            fn set_io_wait(&mut self, wait: IoWait) {
                (**self).set_io_wait(wait)
            }
        }
    )*};
}
forward_receiver!(Box<T>, &mut T);

/// How a kernel transport (pipe, FIFO, unix, tcp, udp, stdio, fork) waits when its non-blocking
/// descriptor has nothing to read or no room to write: the rings' wait strategies, for syscalls.
///
/// * `Block` (default): sleep in `poll(2)` at once. No CPU while idle; each wake-up goes through the
///   scheduler (tens of microseconds on a VM).
/// * `Spin`: retry the syscall in a loop (a CPU pause between tries) until it succeeds or the deadline
///   passes; never sleeps. Lowest latency; burns a core while waiting. `try_` calls never spin.
/// * `Adaptive { spin }`: spin for `spin`, then sleep in `poll(2)`.
///
/// A peer that goes away is still seen at once (the syscall reports it), and the stall bound of senders
/// holds in every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoWait {
    /// Sleep in `poll(2)` at once.
    #[default]
    Block,
    /// Busy-poll the syscall.
    Spin,
    /// Busy-poll for `spin`, then sleep in `poll(2)`.
    Adaptive {
        /// How long to busy-poll before sleeping.
        spin: Duration,
    },
}

impl IoWait {
    /// Whether to retry the syscall now (spinning) rather than sleep: `spin` is this wait's state (a
    /// fresh [`Spin::default`] per wait). Never for `try_` calls. The clock is read only every
    /// [`Spin::CHECK_EVERY`] tries, not on each (a syscall that fails with `EAGAIN` takes about 0.1-0.2 µs;
    /// a clock read per try lengthened the loop, and with it the time to see an arriving message, by a
    /// fifth): an adaptive spin lasts its `spin` plus at most that many tries, and a deadline is
    /// overshot by at most that many tries (a few microseconds) before the wait gives up.
    #[inline]
    pub(crate) fn keep_spinning(self, wait: Wait, spin: &mut Spin) -> bool {
        let limit = match self {
            IoWait::Block => return false,
            IoWait::Spin => None,
            IoWait::Adaptive { spin } => Some(spin),
        };
        if wait == Wait::Never {
            return false;
        }
        spin.tries = spin.tries.wrapping_add(1);
        if spin.tries % Spin::CHECK_EVERY == 0 && (limit.is_some() || matches!(wait, Wait::Until(_))) {
            let now = Instant::now();
            let since = *spin.since.get_or_insert(now);
            if limit.is_some_and(|l| now.duration_since(since) >= l) {
                return false;
            }
            if let Wait::Until(d) = wait {
                if now >= d {
                    return false;
                }
            }
        }
        std::hint::spin_loop();
        true
    }
}

/// The state of one busy-polling wait ([`IoWait::keep_spinning`]): how many tries so far, and when the
/// clock was first read.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Spin {
    tries: u32,
    since: Option<Instant>,
}

impl Spin {
    /// Tries between two clock reads.
    pub(crate) const CHECK_EVERY: u32 = 16;

    /// Whether the last [`IoWait::keep_spinning`] was one that read the clock: a caller with a bound
    /// of its own (a sender's stall bound) checks it then, and not on every try.
    #[inline]
    pub(crate) fn clock_due(&self) -> bool {
        self.tries % Self::CHECK_EVERY == 0
    }
}

/// Waits with `poll(2)` until `fd` reports one of `events` (or an error / hang-up), as `wait` allows.
/// `Ok(false)`: the wait ran out.
pub(crate) fn poll_fd(fd: BorrowedFd<'_>, events: libc::c_short, wait: Wait) -> io::Result<bool> {
    match wait {
        Wait::Never => crate::process::poll_fd(fd, events, None, false),
        Wait::Forever => crate::process::poll_fd(fd, events, None, true),
        Wait::Until(d) => crate::process::poll_fd(fd, events, Some(d), false),
    }
}

/// Puts the open file description behind `fd` into non-blocking mode.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL / F_SETFL on a descriptor we borrow; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Checks a frame to send: its total payload length within `max` and `ext` within it.
pub(crate) fn check_frame(ext: u16, parts: &[&[u8]], max: usize) -> Result<usize, TransportSendError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > max {
        return Err(TransportSendError::Oversize { len, max });
    }
    if ext as usize > len {
        return Err(TransportSendError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("an event name of {ext} bytes in a {len}-byte frame"),
        )));
    }
    Ok(len)
}

/// A received frame's `ext` and payload as an owned [`RecvFrame`]: the `recv_frame_wait` of the adapters
/// that decode into a buffer of their own.
pub(crate) fn owned_frame(ext: u16, payload: &[u8]) -> RecvFrame {
    RecvFrame { ext, bytes: payload.to_vec() }
}

/// Copies a received payload into `buf` and returns its `ext`: the `recv_frame_into_vec` of the
/// adapters that decode into a buffer of their own (no allocation once `buf` has room).
pub(crate) fn copy_into(buf: &mut Vec<u8>) -> impl FnOnce(u16, &[u8]) -> u16 + '_ {
    move |ext, payload| {
        buf.clear();
        buf.extend_from_slice(payload);
        ext
    }
}

/// Whether an I/O error means the peer is gone without a clean close.
pub(crate) fn is_reset(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNABORTED | libc::ECONNREFUSED))
}

/// Why a typed JSON message could not be sent or received.
#[cfg(feature = "json")]
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The transport failed to send.
    #[error(transparent)]
    Send(#[from] TransportSendError),
    /// The transport failed to receive.
    #[error(transparent)]
    Recv(#[from] TransportRecvError),
    /// The value could not be serialized, or the message is not JSON of the expected type.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Sends `value` as one JSON-encoded message (blocking).
#[cfg(feature = "json")]
pub fn send_json<T: serde::Serialize + ?Sized>(tx: &mut (impl Sender + ?Sized), value: &T) -> Result<(), JsonError> {
    let bytes = serde_json::to_vec(value)?;
    Ok(tx.send(&bytes)?)
}

/// Receives one message (blocking) and decodes it from JSON.
#[cfg(feature = "json")]
pub fn recv_json<T: serde::de::DeserializeOwned>(rx: &mut (impl Receiver + ?Sized)) -> Result<T, JsonError> {
    let bytes = rx.recv()?;
    Ok(serde_json::from_slice(&bytes)?)
}
