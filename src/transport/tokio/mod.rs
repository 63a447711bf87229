//! Async forms of the stream, datagram and WebSocket transports, on tokio's own I/O types (feature
//! `tokio` with `transport`; the WebSocket part also needs feature `tokio-websocket`, which adds
//! tokio-tungstenite).
//!
//! Same frames, byte for byte, as the blocking adapters (the encoder and [`FrameDecoder`](crate::transport::codec::FrameDecoder) of
//! [`codec`](crate::transport::codec)), same limits and the same errors ([`TransportSendError`],
//! [`TransportRecvError`]): an async peer and a blocking one talk to each other unchanged.
//!
//! | async adapter | constructor(s) | halves | blocking twin |
//! |---|---|---|---|
//! | [`tcp`] | `tcp::connect`, `tcp::Listener::bind` + `accept`, `tcp::from_stream` | [`AsyncStreamSender`] / [`AsyncStreamReceiver`] over tokio's `OwnedWriteHalf` / `OwnedReadHalf` | [`transport::tcp`](crate::transport::tcp) |
//! | [`unix`] | `unix::connect`, `unix::Listener::bind` + `accept`, `unix::from_stream` | same, over tokio's Unix halves | [`transport::unix`](crate::transport::unix) |
//! | [`pipe`] | `pipe::pair`, `pipe::open_fifo_sender` / `open_fifo_receiver`, `pipe::sender_from_fd` / `receiver_from_fd` | same, over `tokio::net::unix::pipe` | [`transport::pipe`](crate::transport::pipe) |
//! | [`stdio`] | `stdio::spawn` (parent) | same, over the child's stdin / stdout pipes | [`transport::stdio`](crate::transport::stdio) |
//! | any byte stream | [`AsyncStreamSender::new`] / [`AsyncStreamReceiver::new`] over any `AsyncWrite` / `AsyncRead` (e.g. tokio's `ChildStdin` / `ChildStdout`) | same | |
//! | [`udp`] | `udp::connect`, `udp::from_socket` | `udp::AsyncUdpSender` / `udp::AsyncUdpReceiver` | [`transport::udp`](crate::transport::udp) |
//! | `websocket` (feature `tokio-websocket`) | `websocket::connect`, `websocket::Listener::bind` + `accept` | `websocket::AsyncWsSender` / `websocket::AsyncWsReceiver` | `transport::websocket` |
//!
//! Every half implements [`AsyncSender`] or [`AsyncReceiver`]: the blocking [`Sender`](super::Sender) /
//! [`Receiver`](super::Receiver) methods as `async fn`s. There are no `try_` or `_deadline` forms: an
//! async caller bounds a wait with `tokio::time::timeout` (or `select!`), which drops the future, so
//! each future says what dropping it does (below). [`TransportSendError::WouldBlock`] /
//! [`Timeout`](TransportSendError::Timeout) and [`TransportRecvError::Empty`] / `Timeout` are never
//! returned here.
//!
//! The halves need a tokio runtime with I/O enabled (`Runtime::new`, or a builder with `enable_io`;
//! the WebSocket keepalive also `enable_time`).
//!
//! # Cancel safety
//!
//! * **`recv` / `recv_frame` are cancel-safe** on every adapter: a future dropped before it returns has
//!   consumed no message. The stream receivers keep partly read frames in their decoder (the next call
//!   goes on from there), a UDP receive takes a datagram in the same poll that returns it, and the
//!   WebSocket receiver reads through tungstenite, which keeps a partly read message. So `recv` may sit
//!   in a `select!` loop with other branches: every message still comes out exactly once, in order
//!   (tested: `tests/async_conformance.rs`, `recv_in_select_loses_nothing`).
//! * **`send` / `send_frame` on a stream: no torn frames, but not "all or nothing".** The frame is
//!   encoded into the sender's queue before the first write; a future dropped after it was first polled
//!   may have written part or none of it, and **the rest stays queued and goes out first** on the next
//!   send, on `flush` or on `close` (never a partial frame followed by another frame). Dropped before
//!   its first poll, it did nothing. `buffered()` tells how many bytes are still queued. A dropped send
//!   therefore does not mean "not sent": don't resend after a time-out, or the peer may get it twice.
//! * **UDP `send` is cancel-safe**: a datagram goes out whole in the poll that returns `Ok`, or not at
//!   all. Queued datagrams (`send_buffered`) that a dropped `flush` did not send stay queued, in order.
//! * **WebSocket `send`**: the message is handed to tungstenite whole (it queues it) once the socket
//!   has room; a dropped `send` either handed it over (it goes out with the next send / flush / close)
//!   or did not; as for streams, don't resend after a time-out.
//! * **`flush` and `close`** are cancel-safe in the sense that dropping them loses nothing queued: a
//!   later `flush` / `close` picks up where they stopped. A dropped `close` leaves the half open.
//!
//! # Limits
//!
//! As for the blocking adapters: a stream receiver checks each frame header against its
//! `max_message` before it buffers the payload (an oversize frame is [`TransportRecvError::BadFrame`],
//! skipped unbuffered; memory at most `max(max_message + 8, 64 KiB)`), a UDP receiver's buffer is one
//! largest datagram, and a WebSocket message over the limit is refused while its header is read.
//! Senders queue at most `max_buffered` bytes (plus one frame). A peer that takes nothing holds an
//! async send for as long as the caller lets it: bound it with `tokio::time::timeout` (the blocking
//! adapters' stall bound is the caller's time-out here; the WebSocket adapter keeps its
//! `stall_timeout`).
//!
//! # Example
//!
//! ```no_run
//! use ringwire::transport::tokio::{tcp, AsyncReceiver, AsyncSender};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut tx, mut rx) = tcp::connect("127.0.0.1:9000").await?;
//! tx.send(b"hello").await?;
//! let reply = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await??;
//! tx.close().await?;
//! # let _ = reply; Ok(()) }
//! ```

mod stream;

pub mod pipe;
pub mod stdio;
pub mod tcp;
pub mod udp;
pub mod unix;
#[cfg(feature = "tokio-websocket")]
pub mod websocket;

pub use stream::{AsyncStreamReceiver, AsyncStreamSender};

use super::{RecvFrame, TransportRecvError, TransportSendError};
use std::future::Future;

/// The sending half of an async transport: [`Sender`](super::Sender)'s operations as futures.
///
/// Implemented by [`AsyncStreamSender`], [`udp::AsyncUdpSender`] and (feature `tokio-websocket`)
/// `websocket::AsyncWsSender`. See the [module docs](self) for what dropping each future does.
pub trait AsyncSender: Send {
    /// Sends one frame whose payload is the concatenation of `parts`, the first `ext` bytes of which are
    /// an event name (as [`Sender::send_frame_wait`](super::Sender::send_frame_wait)): any queued
    /// frames first, then this one. `Oversize` if the total exceeds [`max_message`](Self::max_message)
    /// (nothing sent, the half stays usable); `Io(InvalidInput)` if `ext` exceeds it.
    fn send_frame(&mut self, ext: u16, parts: &[&[u8]]) -> impl Future<Output = Result<(), TransportSendError>> + Send;

    /// Sends one message (`ext = 0`).
    fn send(&mut self, msg: &[u8]) -> impl Future<Output = Result<(), TransportSendError>> + Send {
        async move { self.send_frame(0, &[msg]).await }
    }

    /// Queues one message in this half's bounded send buffer instead of writing it now, so that a burst
    /// goes out in one syscall (streams: one `write`; UDP: one `sendmmsg`; WebSocket: one flush). The
    /// queue is written when the message would not fit (this future then waits for room), by
    /// [`flush`](Self::flush), by any `send` (queue first) and by [`close`](Self::close). **Flush
    /// before awaiting an answer.** Adapters without such a buffer send at once.
    fn send_buffered(&mut self, msg: &[u8]) -> impl Future<Output = Result<(), TransportSendError>> + Send {
        self.send(msg)
    }

    /// Writes out everything queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportSendError>> + Send;

    /// Flushes, then closes this half: the peer's receiver sees [`TransportRecvError::PeerGone`] after the
    /// last message (not on UDP, which has no close). Later sends fail with
    /// [`TransportSendError::Closed`]. Dropping the half closes it without flushing what is queued.
    fn close(&mut self) -> impl Future<Output = Result<(), TransportSendError>> + Send;

    /// The largest message this half sends.
    fn max_message(&self) -> usize;
}

/// The receiving half of an async transport: [`Receiver`](super::Receiver)'s operations as futures.
///
/// Implemented by [`AsyncStreamReceiver`], [`udp::AsyncUdpReceiver`] and (feature `tokio-websocket`)
/// `websocket::AsyncWsReceiver`. Every `recv` future is cancel-safe (see the [module docs](self)).
pub trait AsyncReceiver: Send {
    /// Receives one frame with its `ext` (event-name length). Errors as
    /// [`Receiver::recv_frame_wait`](super::Receiver::recv_frame_wait), without `Empty` / `Timeout`.
    fn recv_frame(&mut self) -> impl Future<Output = Result<RecvFrame, TransportRecvError>> + Send;

    /// Receives one frame into `buf` (its previous contents replaced) and returns its `ext`:
    /// [`recv_frame`](Self::recv_frame) without a new `Vec` per message. The stream and UDP halves copy
    /// the payload into `buf` (a loop reusing one buffer allocates nothing once it has grown to the
    /// largest message); the WebSocket half hands over the buffer it received into. Cancel-safe: `buf`
    /// is written only when the frame is returned. On an error `buf` is unspecified.
    fn recv_frame_into_vec(
        &mut self,
        buf: &mut Vec<u8>,
    ) -> impl Future<Output = Result<u16, TransportRecvError>> + Send {
        async move {
            let f = self.recv_frame().await?;
            *buf = f.bytes;
            Ok(f.ext)
        }
    }

    /// Receives one message: its whole payload (an event frame's name bytes included).
    fn recv(&mut self) -> impl Future<Output = Result<Vec<u8>, TransportRecvError>> + Send {
        async move { self.recv_frame().await.map(|f| f.bytes) }
    }

    /// Closes this half; later receives fail with [`TransportRecvError::Closed`].
    fn close(&mut self);

    /// The largest message this half accepts.
    fn max_message(&self) -> usize;
}
