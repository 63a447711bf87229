//! Async UDP over tokio's `UdpSocket`, with the rules of [`transport::udp`](crate::transport::udp):
//! one frame per datagram on a connected socket; a message that would make a datagram larger than the
//! maximum (default [`DEFAULT_MAX_DATAGRAM`]) is refused with `Oversize`; a received datagram that is
//! too large (detected with `MSG_TRUNC`), shorter or longer than its header says, or not a frame is
//! `BadFrame` for that datagram alone. No clean close (the peer never sees `PeerGone`); a dead peer is
//! seen only through an ICMP "port unreachable" (`PeerReset`).
//!
//! Both futures are cancel-safe: a datagram is sent or received in the poll that returns it (with
//! [`AsyncUdpReceiver::enable_gro`], a coalesced run is received in one poll and its other datagrams
//! wait in the receiver, not in the future, for the next receives).
//! [`send_buffered`](super::AsyncSender::send_buffered) queues up to [`MAX_BUFFERED_DATAGRAMS`]
//! datagrams ([`DEFAULT_MAX_BUFFERED`](crate::transport::DEFAULT_MAX_BUFFERED) bytes) and sends them
//! with one `sendmmsg(2)`.
//!
//! ```no_run
//! use ringwire::transport::tokio::{udp, AsyncReceiver, AsyncSender};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut tx, mut rx) = udp::connect("127.0.0.1:0", "127.0.0.1:9000").await?;
//! tx.send(b"ping").await?;
//! let pong = rx.recv().await?;
//! # let _ = pong; Ok(()) }
//! ```

use super::{AsyncReceiver, AsyncSender};
use crate::transport::codec::{decode_datagram, encode_parts_into};
use crate::transport::udp::Run;
pub use crate::transport::udp::{DEFAULT_MAX_DATAGRAM, MAX_BUFFERED_DATAGRAMS};
use crate::transport::{check_frame, is_reset, RecvFrame, TransportRecvError, TransportSendError};
use crate::wire::{Kind, HEADER_LEN};
use ::tokio::io::Interest;
use ::tokio::net::{ToSocketAddrs, UdpSocket};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// The sending half of an async UDP transport.
#[derive(Debug)]
pub struct AsyncUdpSender {
    sock: Option<Arc<UdpSocket>>,
    max: usize,
    buf: Vec<u8>,
    /// Queued datagrams: their bytes back to back, each one's end offset, how many have been sent.
    queue: Vec<u8>,
    ends: Vec<usize>,
    sent: usize,
    max_buffered: usize,
    gso: crate::transport::udp::Gso,
}

/// The receiving half of an async UDP transport.
#[derive(Debug)]
pub struct AsyncUdpReceiver {
    sock: Option<Arc<UdpSocket>>,
    max: usize,
    /// The last receive's bytes: one datagram, or (with `gro`) a coalesced run of them.
    buf: Vec<u8>,
    /// Whether the socket delivers runs coalesced ([`enable_gro`](Self::enable_gro)).
    gro: bool,
    /// What is left of the last receive, handed out datagram by datagram.
    run: Run,
}

/// Binds a socket to `local`, connects it to `remote`, and returns its halves.
pub async fn connect(
    local: impl ToSocketAddrs,
    remote: impl ToSocketAddrs,
) -> io::Result<(AsyncUdpSender, AsyncUdpReceiver)> {
    let sock = UdpSocket::bind(local).await?;
    sock.connect(remote).await?;
    from_socket(sock)
}

/// Makes a transport of a connected tokio socket. A socket with `UDP_GRO` already on is received from
/// as [`AsyncUdpReceiver::enable_gro`] would; don't turn it on through
/// [`socket`](AsyncUdpReceiver::socket) afterwards (its coalesced runs would come as one datagram,
/// refused). Options that add control messages (timestamps) are fine.
pub fn from_socket(sock: UdpSocket) -> io::Result<(AsyncUdpSender, AsyncUdpReceiver)> {
    sock.peer_addr()?; // must be connected
    let gro = crate::transport::udp::gro_is_on(sock.as_raw_fd());
    let sock = Arc::new(sock);
    let max = DEFAULT_MAX_DATAGRAM - HEADER_LEN;
    Ok((
        AsyncUdpSender {
            sock: Some(sock.clone()),
            max,
            buf: Vec::new(),
            queue: Vec::new(),
            ends: Vec::new(),
            sent: 0,
            max_buffered: crate::transport::DEFAULT_MAX_BUFFERED,
            gso: Default::default(),
        },
        AsyncUdpReceiver { sock: Some(sock), max, buf: Vec::new(), gro, run: Run::default() },
    ))
}

/// Makes a transport of a connected `std::net::UdpSocket` (switched to non-blocking mode, registered
/// with the current runtime).
pub fn from_std(sock: std::net::UdpSocket) -> io::Result<(AsyncUdpSender, AsyncUdpReceiver)> {
    sock.set_nonblocking(true)?;
    from_socket(UdpSocket::from_std(sock)?)
}

fn max_for(max_datagram: usize) -> usize {
    max_datagram.min(DEFAULT_MAX_DATAGRAM).saturating_sub(HEADER_LEN)
}

fn send_error(e: io::Error) -> TransportSendError {
    if is_reset(&e) {
        TransportSendError::PeerReset
    } else {
        e.into()
    }
}

impl AsyncUdpSender {
    /// Sets the largest datagram sent (capped at [`DEFAULT_MAX_DATAGRAM`]); messages may be 8 bytes less.
    pub fn set_max_datagram(&mut self, max_datagram: usize) {
        self.max = max_for(max_datagram);
    }

    /// Sets the bound on the bytes `send_buffered` may queue.
    pub fn set_max_buffered(&mut self, max_buffered: usize) {
        self.max_buffered = max_buffered;
    }

    /// Datagrams queued and not yet sent.
    pub fn buffered(&self) -> usize {
        self.ends.len() - self.sent
    }

    /// As [`UdpSender::gso_refused_from`](crate::transport::udp::UdpSender::gso_refused_from): the
    /// smallest datagram size whose segmented send the path refused, sent with `sendmmsg` since.
    pub fn gso_refused_from(&self) -> Option<usize> {
        self.gso.refused_from()
    }

    /// The socket, unless closed.
    pub fn socket(&self) -> Option<&UdpSocket> {
        self.sock.as_deref()
    }

    fn queued_bytes(&self) -> usize {
        let from = if self.sent == 0 { 0 } else { self.ends[self.sent - 1] };
        self.queue.len() - from
    }

    fn clear_queue(&mut self) {
        self.queue.clear();
        self.ends.clear();
        self.sent = 0;
    }

    /// Sends the queued datagrams, as many per `sendmmsg` as there are. Cancel-safe: `sent` counts
    /// those gone.
    async fn drain(&mut self) -> Result<(), TransportSendError> {
        let Some(sock) = self.sock.clone() else { return Err(TransportSendError::Closed) };
        while self.sent < self.ends.len() {
            let (queue, ends, sent, gso) = (&self.queue, &self.ends, self.sent, &mut self.gso);
            let r = sock
                .async_io(Interest::WRITABLE, || {
                    let n = crate::transport::udp::send_queued(sock.as_raw_fd(), queue, ends, sent, gso);
                    match n {
                        n if n > 0 => Ok(n as usize),
                        0 => Err(io::ErrorKind::WouldBlock.into()),
                        _ => Err(io::Error::last_os_error()),
                    }
                })
                .await;
            match r {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_reset(&e) => {
                    // That datagram is lost to a peer that is gone: drop the queue.
                    self.clear_queue();
                    return Err(TransportSendError::PeerReset);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.clear_queue();
        Ok(())
    }
}

impl AsyncSender for AsyncUdpSender {
    async fn send_frame(&mut self, ext: u16, parts: &[&[u8]]) -> Result<(), TransportSendError> {
        if self.sock.is_none() {
            return Err(TransportSendError::Closed);
        }
        check_frame(ext, parts, self.max)?;
        // Queued datagrams go first; if they can't, this one is not sent.
        self.drain().await?;
        let Some(sock) = self.sock.as_deref() else { return Err(TransportSendError::Closed) };
        self.buf.clear();
        encode_parts_into(&mut self.buf, Kind::Data, ext, parts).expect("checked: max < u32::MAX, ext <= len");
        loop {
            match sock.send(&self.buf).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(send_error(e)),
            }
        }
    }

    async fn send_buffered(&mut self, msg: &[u8]) -> Result<(), TransportSendError> {
        if self.sock.is_none() {
            return Err(TransportSendError::Closed);
        }
        let len = check_frame(0, &[msg], self.max)?;
        let datagram = HEADER_LEN + len;
        if self.queued_bytes() + datagram > self.max_buffered || self.buffered() >= MAX_BUFFERED_DATAGRAMS {
            if datagram > self.max_buffered {
                return self.send_frame(0, &[msg]).await;
            }
            self.drain().await?;
        }
        if self.sent > 0 {
            // Drop the datagrams already sent from the front of the queue.
            let from = self.ends[self.sent - 1];
            self.queue.drain(..from);
            self.ends.drain(..self.sent);
            self.ends.iter_mut().for_each(|e| *e -= from);
            self.sent = 0;
        }
        encode_parts_into(&mut self.queue, Kind::Data, 0, &[msg]).expect("checked: max < u32::MAX");
        self.ends.push(self.queue.len());
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TransportSendError> {
        self.drain().await
    }

    /// Sends what is queued, then closes (nothing is sent to the peer: UDP has no close).
    async fn close(&mut self) -> Result<(), TransportSendError> {
        let r = if self.sock.is_some() { self.drain().await } else { Ok(()) };
        self.clear_queue();
        self.sock = None;
        r
    }

    fn max_message(&self) -> usize {
        self.max
    }
}

impl AsyncUdpReceiver {
    /// Sets the largest datagram accepted (capped at [`DEFAULT_MAX_DATAGRAM`]); messages may be 8 bytes
    /// less. A larger datagram is [`FrameError::Oversize`](crate::transport::codec::FrameError::Oversize). Datagrams of a coalesced run already
    /// received are checked, as they are handed out, against the lower of this and the limit in force
    /// when the run came.
    pub fn set_max_datagram(&mut self, max_datagram: usize) {
        self.max = max_for(max_datagram);
    }

    /// The socket, unless closed.
    pub fn socket(&self) -> Option<&UdpSocket> {
        self.sock.as_deref()
    }

    /// Asks the kernel to hand this receiver runs of datagrams coalesced (`UDP_GRO`, Linux 5.0) from
    /// now on, as [`UdpReceiver::enable_gro`](crate::transport::udp::UdpReceiver::enable_gro): a run
    /// from one segmented send (a peer's `send_buffered` + `flush`) comes in one `recvmsg` of up to
    /// 64 KiB, and the receiver hands its datagrams out one by one, each checked on its own, the rest
    /// kept for the next receives (still cancel-safe: they stay in the receiver, not in a future). For
    /// good; without it (the default) each receive is one `recv` of one datagram. It then holds a
    /// 64 KiB buffer.
    ///
    /// # Errors
    /// The socket's: `ENOPROTOOPT` on a kernel without `UDP_GRO`; `NotConnected` after
    /// [`close`](AsyncReceiver::close).
    pub fn enable_gro(&mut self) -> io::Result<()> {
        let Some(sock) = self.sock.as_deref() else { return Err(io::ErrorKind::NotConnected.into()) };
        if !self.gro {
            crate::transport::udp::set_gro(sock.as_raw_fd())?;
            self.gro = true;
        }
        Ok(())
    }

    /// Whether [`enable_gro`](Self::enable_gro) was called (and succeeded), or the socket came with
    /// `UDP_GRO` on. Unchanged by [`close`](AsyncReceiver::close).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// The next datagram (from the last run, or received now) with its size checked: where it starts in
    /// `self.buf` and its length.
    async fn recv_datagram(&mut self) -> Result<(usize, usize), TransportRecvError> {
        loop {
            let Some(sock) = self.sock.as_deref() else { return Err(TransportRecvError::Closed) };
            if let Some(datagram) = self.run.next() {
                return datagram.map_err(TransportRecvError::BadFrame);
            }
            let cap = self.max + HEADER_LEN;
            let room = if self.gro { crate::transport::udp::GRO_BUFFER } else { cap };
            if self.buf.len() < room {
                self.buf.resize(room, 0);
            }
            let (buf, gro) = (&mut self.buf, self.gro);
            let r = sock
                .async_io(Interest::READABLE, || {
                    if gro {
                        return crate::transport::udp::recv_coalesced(sock.as_raw_fd(), &mut buf[..room]);
                    }
                    // MSG_TRUNC: the return value is the datagram's real length even when it did not fit.
                    // SAFETY: `buf` is valid for writes of `cap` bytes during the call.
                    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), cap, libc::MSG_TRUNC) };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok((n as usize, None))
                    }
                })
                .await;
            match r {
                Ok((total, segment)) => self.run = Run::new(total, segment, cap),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_reset(&e) => return Err(TransportRecvError::PeerReset),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsyncReceiver for AsyncUdpReceiver {
    async fn recv_frame(&mut self) -> Result<RecvFrame, TransportRecvError> {
        let (at, n) = self.recv_datagram().await?;
        match decode_datagram(&self.buf[at..at + n], self.max) {
            Ok(frame) => Ok(RecvFrame { ext: frame.ext, bytes: frame.payload.to_vec() }),
            Err(e) => Err(TransportRecvError::BadFrame(e)),
        }
    }

    async fn recv_frame_into_vec(&mut self, buf: &mut Vec<u8>) -> Result<u16, TransportRecvError> {
        let (at, n) = self.recv_datagram().await?;
        match decode_datagram(&self.buf[at..at + n], self.max) {
            Ok(frame) => {
                buf.clear();
                buf.extend_from_slice(frame.payload);
                Ok(frame.ext)
            }
            Err(e) => Err(TransportRecvError::BadFrame(e)),
        }
    }

    fn close(&mut self) {
        self.sock = None;
    }

    fn max_message(&self) -> usize {
        self.max
    }
}
