//! The async stream transport: frames back to back over any tokio `AsyncWrite` / `AsyncRead`, encoded
//! and decoded by the same codec as the blocking [`StreamSender`](crate::transport::StreamSender).

use super::{AsyncReceiver, AsyncSender};
use crate::transport::codec::{encode_checked, FrameDecoder, FrameError};
use crate::transport::{
    check_frame, is_reset, RecvFrame, TransportRecvError, TransportSendError, DEFAULT_MAX_BUFFERED, DEFAULT_MAX_MESSAGE,
};
use crate::wire::Kind;
use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use std::future::poll_fn;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The sending half of an async stream transport: frames written back to back into `W` (a tokio
/// `OwnedWriteHalf`, a pipe, a child's stdin, ...).
///
/// Every frame is encoded into this half's queue, then the queue is written: a frame is never torn,
/// even when the future writing it is dropped (the rest goes out first on the next call; see the
/// [module docs](super#cancel-safety)). The queue holds at most `max_buffered` bytes plus one frame.
///
/// ```
/// use ringwire::transport::tokio::{AsyncReceiver, AsyncSender, AsyncStreamReceiver, AsyncStreamSender};
/// use ringwire::transport::TransportRecvError;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// // Any AsyncWrite / AsyncRead: here the two ends of a pipe (a socket half or a child's stdin
/// // works the same).
/// let (w, r) = tokio::net::unix::pipe::pipe()?;
/// let (mut tx, mut rx) = (AsyncStreamSender::new(w), AsyncStreamReceiver::new(r));
/// let reader = tokio::spawn(async move {
///     let mut got = Vec::new();
///     loop {
///         match rx.recv().await {
///             Ok(msg) => got.push(msg),
///             Err(TransportRecvError::PeerGone) => return got, // a clean end, after the last one
///             Err(e) => panic!("{e}"),
///         }
///     }
/// });
/// for i in 0..100u32 {
///     tx.send_buffered(&i.to_le_bytes()).await?; // one write per 64 KiB of frames
/// }
/// tx.close().await?; // flushes, then ends the stream
/// assert_eq!(reader.await?.len(), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(()) })
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncStreamSender<W> {
    w: Option<W>,
    max: usize,
    /// Frame bytes accepted but not yet written: `out[pos..]`.
    out: Vec<u8>,
    pos: usize,
    /// Set once a write failed because the peer is gone: later sends fail the same way at once.
    reset: bool,
    max_buffered: usize,
}

impl<W: AsyncWrite + Unpin + Send> AsyncStreamSender<W> {
    /// Wraps a writer. Messages of up to [`DEFAULT_MAX_MESSAGE`] bytes; a queue of up to
    /// [`DEFAULT_MAX_BUFFERED`] bytes for [`AsyncSender::send_buffered`].
    pub fn new(w: W) -> Self {
        AsyncStreamSender {
            w: Some(w),
            max: DEFAULT_MAX_MESSAGE,
            out: Vec::new(),
            pos: 0,
            reset: false,
            max_buffered: DEFAULT_MAX_BUFFERED,
        }
    }

    /// Sets the largest message this half sends (at most `u32::MAX`).
    pub fn set_max_message(&mut self, max: usize) {
        self.max = max.min(u32::MAX as usize);
    }

    /// Sets the bound on the bytes queued by [`AsyncSender::send_buffered`] (and left by dropped
    /// sends) before a send waits for the queue to be written.
    pub fn set_max_buffered(&mut self, max_buffered: usize) {
        self.max_buffered = max_buffered;
    }

    /// Bytes accepted and not yet written.
    pub fn buffered(&self) -> usize {
        self.out.len() - self.pos
    }

    /// The writer, unless closed.
    pub fn get_ref(&self) -> Option<&W> {
        self.w.as_ref()
    }

    fn check(&self, ext: u16, parts: &[&[u8]]) -> Result<usize, TransportSendError> {
        if self.w.is_none() {
            return Err(TransportSendError::Closed);
        }
        if self.reset {
            return Err(TransportSendError::PeerReset);
        }
        check_frame(ext, parts, self.max)
    }

    /// Writes `out[pos..]` until it is empty. Cancel-safe: `pos` records every byte written.
    async fn drain(&mut self) -> Result<(), TransportSendError> {
        poll_fn(|cx| self.poll_drain(cx)).await
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportSendError>> {
        let Some(w) = self.w.as_mut() else { return Poll::Ready(Err(TransportSendError::Closed)) };
        while self.pos < self.out.len() {
            match Pin::new(&mut *w).poll_write(cx, &self.out[self.pos..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    self.reset = true;
                    return Poll::Ready(Err(TransportSendError::PeerReset));
                }
                Poll::Ready(Ok(n)) => self.pos += n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) if is_reset(&e) => {
                    self.reset = true;
                    return Poll::Ready(Err(TransportSendError::PeerReset));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
            }
        }
        self.out.clear();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room in the queue for a frame of `frame` bytes: writes the queue out first if it would
    /// go past `max_buffered` (nothing of the new frame is queued while this waits).
    async fn room_for(&mut self, frame: usize) -> Result<(), TransportSendError> {
        if self.buffered() > 0 && self.buffered() + frame > self.max_buffered {
            self.drain().await?;
        }
        if self.pos > 0 {
            self.out.drain(..self.pos);
            self.pos = 0;
        }
        Ok(())
    }

    /// Flushes the writer's own buffer, if it has one (tokio's sockets and pipes have none).
    async fn flush_writer(&mut self) -> Result<(), TransportSendError> {
        let Some(w) = self.w.as_mut() else { return Err(TransportSendError::Closed) };
        poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx)).await.map_err(|e| {
            if is_reset(&e) {
                TransportSendError::PeerReset
            } else {
                e.into()
            }
        })
    }
}

impl<W: AsyncWrite + Unpin + Send> AsyncSender for AsyncStreamSender<W> {
    /// Queued frames and this one go out together, in one `write` when the socket takes them.
    async fn send_frame(&mut self, ext: u16, parts: &[&[u8]]) -> Result<(), TransportSendError> {
        let len = self.check(ext, parts)?;
        self.room_for(8 + len).await?;
        encode_checked(&mut self.out, Kind::Data, ext, len as u32, parts);
        self.drain().await
    }

    async fn send_buffered(&mut self, msg: &[u8]) -> Result<(), TransportSendError> {
        let len = self.check(0, &[msg])?;
        self.room_for(8 + len).await?;
        encode_checked(&mut self.out, Kind::Data, 0, len as u32, &[msg]);
        if self.buffered() > self.max_buffered {
            // A single frame larger than the bound is written through.
            self.drain().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TransportSendError> {
        if self.reset && self.w.is_some() {
            return Err(TransportSendError::PeerReset);
        }
        self.drain().await?;
        self.flush_writer().await
    }

    /// Flushes, then shuts the writing side down (`shutdown(SHUT_WR)` on a socket; a pipe is closed).
    async fn close(&mut self) -> Result<(), TransportSendError> {
        if self.w.is_none() {
            return Ok(());
        }
        let r = if self.reset {
            Ok(())
        } else {
            match self.drain().await {
                Ok(()) => self.flush_writer().await,
                Err(e) => Err(e),
            }
        };
        if let Some(mut w) = self.w.take() {
            let _ = poll_fn(|cx| Pin::new(&mut w).poll_shutdown(cx)).await;
        }
        self.out = Vec::new();
        self.pos = 0;
        r
    }

    fn max_message(&self) -> usize {
        self.max
    }
}

/// `std::io::Read` over an `AsyncRead` for one poll: `Pending` reads as `WouldBlock` (the waker is
/// registered), so [`FrameDecoder::read_from`] can fill its buffer straight from the async reader.
struct PollRead<'a, 'b, R> {
    r: &'a mut R,
    cx: &'a mut Context<'b>,
}

impl<R: AsyncRead + Unpin> Read for PollRead<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.r).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// The receiving half of an async stream transport: a [`FrameDecoder`] fed from `R` (a tokio
/// `OwnedReadHalf`, a pipe, a child's stdout, ...). Holds at most `max(max_message + 8, 64 KiB)` bytes
/// of buffer whatever the peer sends. [`recv`](AsyncReceiver::recv) is cancel-safe: partly received
/// frames stay in the decoder.
///
/// ```no_run
/// use ringwire::transport::tokio::{AsyncReceiver, AsyncStreamReceiver};
/// # async fn run(socket_half: tokio::net::tcp::OwnedReadHalf) -> Result<(), ringwire::transport::TransportRecvError> {
/// let mut rx = AsyncStreamReceiver::new(socket_half);
/// rx.set_max_message(64 << 10);
/// let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
/// loop {
///     tokio::select! {
///         // Dropping `recv` when the tick wins loses nothing.
///         msg = rx.recv() => println!("{} bytes", msg?.len()),
///         _ = tick.tick() => println!("tick"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncStreamReceiver<R> {
    r: Option<R>,
    dec: FrameDecoder,
    eof: bool,
}

impl<R: AsyncRead + Unpin + Send> AsyncStreamReceiver<R> {
    /// Wraps a reader. Messages of up to [`DEFAULT_MAX_MESSAGE`] bytes.
    pub fn new(r: R) -> Self {
        AsyncStreamReceiver { r: Some(r), dec: FrameDecoder::new(DEFAULT_MAX_MESSAGE), eof: false }
    }

    /// Sets the largest message accepted; a longer one is [`FrameError::Oversize`], skipped.
    pub fn set_max_message(&mut self, max: usize) {
        self.dec.set_max_payload(max.min(u32::MAX as usize));
    }

    /// The reader, unless closed.
    pub fn get_ref(&self) -> Option<&R> {
        self.r.as_ref()
    }

    /// Bytes of buffer memory held now.
    pub fn buffer_allocated(&self) -> usize {
        self.dec.allocated()
    }

    /// Bytes received and not yet returned: the start of a frame still arriving (or whole frames not
    /// yet taken with `recv`).
    pub fn buffered(&self) -> usize {
        self.dec.buffered()
    }

    /// Polls for the next frame; `take` turns the decoder's borrowed frame into the result.
    fn poll_frame<T>(
        &mut self,
        cx: &mut Context<'_>,
        take: &mut impl FnMut(u16, &[u8]) -> T,
    ) -> Poll<Result<T, TransportRecvError>> {
        let Some(r) = self.r.as_mut() else { return Poll::Ready(Err(TransportRecvError::Closed)) };
        loop {
            match self.dec.next_frame() {
                Ok(Some(frame)) => return Poll::Ready(Ok(take(frame.ext, frame.payload))),
                Ok(None) => {}
                // Skipped (its payload is thrown away as it arrives): the stream goes on.
                Err(e @ FrameError::Oversize { .. }) => return Poll::Ready(Err(TransportRecvError::BadFrame(e))),
                // No way to find the next frame boundary: the stream is dead.
                Err(e) => return Poll::Ready(Err(TransportRecvError::Broken(e))),
            }
            if self.eof {
                return Poll::Ready(Err(match self.dec.finish() {
                    Ok(()) => TransportRecvError::PeerGone,
                    Err(FrameError::Truncated { .. }) => TransportRecvError::PeerReset,
                    Err(e) => TransportRecvError::Broken(e),
                }));
            }
            match self.dec.read_from(&mut PollRead { r: &mut *r, cx: &mut *cx }) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) if is_reset(&e) => return Poll::Ready(Err(TransportRecvError::PeerReset)),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

impl<R: AsyncRead + Unpin + Send> AsyncReceiver for AsyncStreamReceiver<R> {
    async fn recv_frame(&mut self) -> Result<RecvFrame, TransportRecvError> {
        let mut take = |ext, payload: &[u8]| RecvFrame { ext, bytes: payload.to_vec() };
        poll_fn(|cx| self.poll_frame(cx, &mut take)).await
    }

    async fn recv_frame_into_vec(&mut self, buf: &mut Vec<u8>) -> Result<u16, TransportRecvError> {
        let mut take = |ext, payload: &[u8]| {
            buf.clear();
            buf.extend_from_slice(payload);
            ext
        };
        poll_fn(|cx| self.poll_frame(cx, &mut take)).await
    }

    /// Drops the reader (for a socket's read half: `shutdown(SHUT_RD)` is not done; the peer's writes
    /// are taken and discarded by the kernel until the whole socket closes).
    fn close(&mut self) {
        self.r = None;
    }

    fn max_message(&self) -> usize {
        self.dec.max_payload()
    }
}
