//! UDP: one frame per datagram, on a connected socket (it talks to one peer and drops datagrams from
//! anyone else).
//!
//! A message that would make a datagram larger than the maximum (default [`DEFAULT_MAX_DATAGRAM`], the
//! largest UDP payload over IPv4) is refused on send with
//! [`Oversize`](super::TransportSendError::Oversize). On receive, a datagram that is too large (detected
//! with `MSG_TRUNC`, whatever the buffer), shorter than its header says, longer, or not a frame at all is
//! [`BadFrame`](super::TransportRecvError::BadFrame) for that datagram alone: the next receive goes on.
//! UDP has no connection: there is no clean close ([`close`](super::Sender::close) sends nothing
//! and the peer never sees [`PeerGone`](super::TransportRecvError::PeerGone)), and a dead peer is seen
//! only if the kernel gets an ICMP "port unreachable" for something sent to it
//! ([`PeerReset`](super::TransportRecvError::PeerReset)).
//!
//! [`send_buffered`](super::Sender::send_buffered) queues datagrams (at most
//! [`MAX_BUFFERED_DATAGRAMS`] and [`DEFAULT_MAX_BUFFERED`](super::DEFAULT_MAX_BUFFERED) bytes; a single
//! larger one is sent at once) and sends them when the queue is full, on
//! [`flush`](super::Sender::flush), on a plain send (queue first) or on close: a run of datagrams of
//! one size (the last may be shorter, 64 KiB at most in all) as one `sendmsg(2)` that the kernel cuts
//! into those datagrams (UDP segmentation offload, `UDP_SEGMENT`: the receiver sees the same
//! datagrams), anything else, or a run the path refuses to segment (`EINVAL`, `EIO`, ...: a segment
//! over the route's MTU, no checksum offload, a kernel before 4.18), with one `sendmmsg(2)`. A refusal
//! is remembered: runs of that datagram size or larger (of every size, when the path can't segment at
//! all) then go straight to `sendmmsg` ([`UdpSender::gso_refused_from`]). A datagram
//! is sent whole or not at all, so a queue that the socket takes only in part keeps the rest, in order.
//! (64-byte datagrams over loopback: ~0.4 M -> ~1.5 M msgs/s with segmentation alone, ~14.6 M with a
//! receiver that takes them coalesced, below; README.)
//!
//! A receiver can ask the kernel for coalesced delivery (`UDP_GRO`, Linux 5.0,
//! [`UdpReceiver::enable_gro`]), and does so by itself the first time one batch receive (a `recvmmsg`,
//! next paragraph) finds several datagrams waiting at once (a stream: a round trip has one in flight). From then on a
//! run of datagrams from one segmented send (over loopback, or merged by a network device) comes in one
//! `recvmsg(2)` of up to 64 KiB with the datagrams' size, and the receiver cuts it back into the
//! datagrams and hands them out one by one, in order, each checked on its own as above. (64-byte
//! datagrams over loopback from a coalescing sender: ~1.5 M -> ~14.6 M msgs/s busy-polling, ~1.4 M ->
//! ~2.6 M blocking; README.) It then holds one 64 KiB buffer, and each receive, a round trip's too, is
//! a `recvmsg` (~0.2 µs more than a `recv` here), which is why a receiver that only ever waits for its
//! datagrams does not ask. A receiver whose datagram limit leaves room for one datagram in 64 KiB (the
//! default limit) never batches, so it does not ask by itself either. The async receiver
//! (`transport::tokio::udp`) asks only when told (`AsyncUdpReceiver::enable_gro`).
//!
//! Until then (for good on a kernel without `UDP_GRO`), a receiver that finds datagrams waiting takes
//! them in batches, one `recvmmsg(2)` for up to [`MAX_RECV_BATCH`] of them, each into a slot of the largest accepted datagram's size (so a datagram is never cut short by the
//! batching), and hands them out one by one, in arrival order, each checked on its own as above. The
//! batch holds as many slots as fit in [`DEFAULT_MAX_BUFFERED`](super::DEFAULT_MAX_BUFFERED) bytes (at
//! least one): with the default datagram limit (64 KiB) that is one, a plain `recv` per datagram; a
//! receiver limited to small datagrams ([`UdpReceiver::set_max_datagram`]) batches. Either way it
//! holds at most `max(max_datagram, DEFAULT_MAX_BUFFERED)` bytes of buffer.

use super::{
    check_frame, is_reset, poll_fd, IoWait, Receiver, RecvFrame, Sender, Spin, TransportRecvError, TransportSendError,
    Wait,
};
use crate::transport::codec::{decode_datagram, encode_parts_into, FrameError};
use crate::wire::{Kind, HEADER_LEN};
use std::io;
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

/// Largest datagram sent or accepted unless told otherwise: the largest UDP payload over IPv4
/// (65535 - 20 bytes of IP header - 8 of UDP header). The largest message is 8 bytes less (the frame
/// header).
pub const DEFAULT_MAX_DATAGRAM: usize = 65507;

/// The most datagrams one `sendmmsg` of a UDP sender's queue carries (and the most it queues).
pub const MAX_BUFFERED_DATAGRAMS: usize = 64;

/// The most datagrams a UDP receiver takes with one `recvmmsg` (fewer when they would not fit in
/// [`DEFAULT_MAX_BUFFERED`](super::DEFAULT_MAX_BUFFERED) bytes at the receiver's datagram limit).
pub const MAX_RECV_BATCH: usize = 64;

/// The sending half of a UDP transport.
#[derive(Debug)]
pub struct UdpSender {
    sock: Option<Arc<UdpSocket>>,
    max: usize,
    buf: Vec<u8>,
    io_wait: IoWait,
    /// Queued datagrams ([`Sender::send_buffered`]): their bytes back to back, each one's end offset,
    /// and how many of them have been sent.
    queue: Vec<u8>,
    ends: Vec<usize>,
    sent: usize,
    max_buffered: usize,
    gso: Gso,
}

/// The receiving half of a UDP transport.
#[derive(Debug)]
pub struct UdpReceiver {
    sock: Option<Arc<UdpSocket>>,
    max: usize,
    /// The last receive's bytes: a `recvmmsg` batch's slots, `slot` bytes each, back to back, or one
    /// coalesced run ([`GRO_BUFFER`] bytes).
    buf: Vec<u8>,
    /// A `recvmmsg` batch: its slot size (the datagram limit when it came), the real length
    /// (`MSG_TRUNC`) of each datagram in slot order, and the next one to hand out.
    slot: usize,
    lens: Vec<usize>,
    next: usize,
    /// A coalesced run in `buf`, handed out datagram by datagram.
    run: Run,
    /// Whether the socket delivers datagrams of one sender coalesced (`UDP_GRO`), and whether the
    /// receiver may still turn that on by itself (the first time it finds datagrams waiting).
    gro: bool,
    gro_auto: bool,
    /// Whether the last receive found its datagram waiting (then the next takes a batch).
    batching: bool,
    io_wait: IoWait,
}

/// Binds a socket to `local`, connects it to `remote`, and returns its halves.
pub fn connect(local: impl ToSocketAddrs, remote: impl ToSocketAddrs) -> io::Result<(UdpSender, UdpReceiver)> {
    let sock = UdpSocket::bind(local)?;
    sock.connect(remote)?;
    from_socket(sock)
}

/// Makes a transport of a connected socket (switched to non-blocking mode). A socket with `UDP_GRO`
/// already on is received from as [`UdpReceiver::enable_gro`] would; don't turn it on through
/// [`socket`](UdpReceiver::socket) afterwards (its coalesced runs would come as one datagram,
/// refused). Options that add control messages (timestamps) are fine.
pub fn from_socket(sock: UdpSocket) -> io::Result<(UdpSender, UdpReceiver)> {
    sock.peer_addr()?; // must be connected
    sock.set_nonblocking(true)?;
    let gro = gro_is_on(sock.as_raw_fd());
    let sock = Arc::new(sock);
    let max = DEFAULT_MAX_DATAGRAM - HEADER_LEN;
    Ok((
        UdpSender {
            sock: Some(sock.clone()),
            max,
            buf: Vec::new(),
            io_wait: IoWait::Block,
            queue: Vec::new(),
            ends: Vec::new(),
            sent: 0,
            max_buffered: super::DEFAULT_MAX_BUFFERED,
            gso: Gso::default(),
        },
        UdpReceiver {
            sock: Some(sock),
            max,
            buf: Vec::new(),
            slot: 0,
            lens: Vec::with_capacity(MAX_RECV_BATCH),
            next: 0,
            run: Run::default(),
            gro,
            gro_auto: !gro,
            batching: false,
            io_wait: IoWait::Block,
        },
    ))
}

/// The message size limit for a datagram limit: what is left after the frame header, capped at UDP's.
fn max_for(max_datagram: usize) -> usize {
    max_datagram.min(DEFAULT_MAX_DATAGRAM).saturating_sub(HEADER_LEN)
}

impl UdpSender {
    /// Sets the largest datagram sent (capped at [`DEFAULT_MAX_DATAGRAM`]); messages may be 8 bytes less.
    pub fn set_max_datagram(&mut self, max_datagram: usize) {
        self.max = max_for(max_datagram);
    }

    /// The socket, unless closed.
    pub fn socket(&self) -> Option<&UdpSocket> {
        self.sock.as_deref()
    }

    /// Sets the bound on the bytes [`Sender::send_buffered`] may queue (default
    /// [`DEFAULT_MAX_BUFFERED`](super::DEFAULT_MAX_BUFFERED)); the queue also holds at most
    /// [`MAX_BUFFERED_DATAGRAMS`] datagrams.
    pub fn set_max_buffered(&mut self, max_buffered: usize) {
        self.max_buffered = max_buffered;
    }

    /// Datagrams queued and not yet sent.
    pub fn buffered(&self) -> usize {
        self.ends.len() - self.sent
    }

    /// The smallest datagram size (bytes, frame header included) whose segmented send this socket's
    /// path refused; runs of datagrams that size or larger now go out with `sendmmsg` without asking
    /// again (module docs). `None` while nothing was refused; `Some(0)` once segmentation offload was
    /// refused whatever the size (`EIO`, `ENOPROTOOPT`, `EOPNOTSUPP`: no checksum offload, a kernel
    /// without it).
    pub fn gso_refused_from(&self) -> Option<usize> {
        self.gso.refused_from()
    }

    fn queued_bytes(&self) -> usize {
        let from = if self.sent == 0 { 0 } else { self.ends[self.sent - 1] };
        self.queue.len() - from
    }

    /// Sends the queued datagrams, as many per `sendmmsg` as there are, waiting as `wait` allows. On
    /// `WouldBlock` / `Timeout` some may have been sent (the rest stay queued, in order).
    fn drain(&mut self, wait: Wait) -> Result<(), TransportSendError> {
        let Some(sock) = self.sock.as_deref() else { return Err(TransportSendError::Closed) };
        let mut spin = Spin::default();
        while self.sent < self.ends.len() {
            let n = send_queued(sock.as_raw_fd(), &self.queue, &self.ends, self.sent, &mut self.gso);
            if n > 0 {
                self.sent += n as usize;
                spin = Spin::default();
                continue;
            }
            let e = if n == 0 { io::Error::from(io::ErrorKind::WouldBlock) } else { io::Error::last_os_error() };
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    if self.io_wait.keep_spinning(wait, &mut spin) {
                        continue;
                    }
                    if !poll_fd(sock.as_fd(), libc::POLLOUT, wait)? {
                        return Err(if wait == Wait::Never {
                            TransportSendError::WouldBlock
                        } else {
                            TransportSendError::Timeout
                        });
                    }
                }
                _ if is_reset(&e) => {
                    // That datagram is lost to a peer that is gone: drop the queue.
                    self.clear_queue();
                    return Err(TransportSendError::PeerReset);
                }
                _ => return Err(e.into()),
            }
        }
        self.clear_queue();
        Ok(())
    }

    fn clear_queue(&mut self) {
        self.queue.clear();
        self.ends.clear();
        self.sent = 0;
    }

    /// Drops the datagrams already sent from the front of the queue.
    fn compact(&mut self) {
        if self.sent > 0 {
            let from = self.ends[self.sent - 1];
            self.queue.drain(..from);
            self.ends.drain(..self.sent);
            for e in &mut self.ends {
                *e -= from;
            }
            self.sent = 0;
        }
    }
}

impl Sender for UdpSender {
    fn send_frame_wait(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
        if self.sock.is_none() {
            return Err(TransportSendError::Closed);
        }
        check_frame(ext, parts, self.max)?;
        // Queued datagrams go first; if they can't, this one is not accepted.
        self.drain(wait)?;
        let Some(sock) = self.sock.as_deref() else { return Err(TransportSendError::Closed) };
        self.buf.clear();
        encode_parts_into(&mut self.buf, Kind::Data, ext, parts).expect("checked: max < u32::MAX, ext <= len");
        let mut spin = Spin::default();
        loop {
            // SAFETY: `buf` is valid for reads of its length during the call.
            let n =
                unsafe { libc::send(sock.as_raw_fd(), self.buf.as_ptr().cast(), self.buf.len(), libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    if self.io_wait.keep_spinning(wait, &mut spin) {
                        continue;
                    }
                    if !poll_fd(sock.as_fd(), libc::POLLOUT, wait)? {
                        return Err(if wait == Wait::Never {
                            TransportSendError::WouldBlock
                        } else {
                            TransportSendError::Timeout
                        });
                    }
                }
                _ if is_reset(&e) => return Err(TransportSendError::PeerReset),
                _ => return Err(e.into()),
            }
        }
    }

    fn send_buffered(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        if self.sock.is_none() {
            return Err(TransportSendError::Closed);
        }
        let len = check_frame(0, &[msg], self.max)?;
        let datagram = HEADER_LEN + len;
        if self.queued_bytes() + datagram > self.max_buffered || self.buffered() >= MAX_BUFFERED_DATAGRAMS {
            if datagram > self.max_buffered {
                return self.send_frame_wait(0, &[msg], wait);
            }
            // Full: the queue goes out first (this message is not accepted if it can't).
            self.drain(wait)?;
        }
        self.compact();
        encode_parts_into(&mut self.queue, Kind::Data, 0, &[msg]).expect("checked: max < u32::MAX");
        self.ends.push(self.queue.len());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransportSendError> {
        self.drain(Wait::Forever)
    }

    /// Sends what is queued (waiting at most as a blocking send would), then closes.
    fn close(&mut self) -> Result<(), TransportSendError> {
        let r = if self.sock.is_some() { self.drain(Wait::Forever) } else { Ok(()) };
        self.clear_queue();
        self.sock = None;
        r
    }

    fn max_message(&self) -> usize {
        self.max
    }

    fn set_io_wait(&mut self, wait: IoWait) {
        self.io_wait = wait;
    }
}

impl Drop for UdpSender {
    fn drop(&mut self) {
        // Best effort without blocking, as a stream sender's drop.
        if self.sock.is_some() {
            let _ = self.drain(Wait::Never);
        }
    }
}

impl UdpReceiver {
    /// Sets the largest datagram accepted (capped at [`DEFAULT_MAX_DATAGRAM`]); messages may be 8 bytes
    /// less. A larger datagram is [`FrameError::Oversize`].
    /// Datagrams of a batch or coalesced run already received are checked, as they are handed out,
    /// against the lower of this and the limit in force when they came (a batch's slots were cut to
    /// that). Whether the receiver may turn `UDP_GRO` on by itself follows the new limit (module docs).
    pub fn set_max_datagram(&mut self, max_datagram: usize) {
        self.max = max_for(max_datagram);
    }

    /// The socket, unless closed.
    pub fn socket(&self) -> Option<&UdpSocket> {
        self.sock.as_deref()
    }

    /// Whether the kernel hands this receiver a run of datagrams from one segmented send (or coalesced
    /// by the network device) in one receive (`UDP_GRO`, Linux 5.0): after
    /// [`enable_gro`](Self::enable_gro), when the socket came with it on, or once one `recvmmsg` found
    /// several datagrams waiting, which only a receiver whose datagram limit fits two or more in
    /// 64 KiB (32 KiB or less, [`set_max_datagram`](Self::set_max_datagram)) ever does (module docs).
    /// Unchanged by [`close`](Receiver::close).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Asks the kernel to hand this receiver runs of datagrams coalesced (`UDP_GRO`) from now on, as the
    /// receiver does by itself the first time one `recvmmsg` finds several datagrams waiting (with a
    /// datagram limit of 32 KiB or less; with the default limit it never does). For good: a socket that may hold a
    /// coalesced run can't go back. Each receive is then a `recvmsg` of up to 64 KiB (~0.2 µs more than
    /// a `recv` per datagram on this project's VM).
    ///
    /// # Errors
    /// The socket's: `ENOPROTOOPT` on a kernel without `UDP_GRO` (before 5.0); `NotConnected` after
    /// [`close`](Receiver::close).
    pub fn enable_gro(&mut self) -> io::Result<()> {
        let Some(sock) = self.sock.as_deref() else { return Err(io::ErrorKind::NotConnected.into()) };
        if !self.gro {
            set_gro(sock.as_raw_fd())?;
            self.gro = true;
        }
        Ok(())
    }

    /// Test hook: keeps the receiver off `UDP_GRO` (unless asked with `enable_gro`), on the `recvmmsg`
    /// path of a kernel without it.
    #[doc(hidden)]
    pub fn __without_gro(&mut self) {
        self.gro_auto = false;
    }
}

impl UdpReceiver {
    /// Receives what is waiting on the socket into a batch of `slots` slots of `cap` bytes in `buf`
    /// (grown to fit) without waiting, each datagram's real length into `lens`, retrying at once for as
    /// long as `retry` says of the error (a busy-polling receiver). Errors are the socket's
    /// (`WouldBlock` included); at least one datagram came on `Ok`.
    fn fill(
        sock: &UdpSocket,
        buf: &mut Vec<u8>,
        lens: &mut Vec<usize>,
        cap: usize,
        slots: usize,
        mut retry: impl FnMut(&io::Error) -> bool,
    ) -> io::Result<()> {
        if buf.len() < slots * cap {
            buf.resize(slots * cap, 0);
        }
        lens.clear();
        if slots == 1 {
            loop {
                // MSG_TRUNC: the return value is the datagram's real length even when it did not fit.
                // SAFETY: `buf` is valid for writes of `cap` bytes during the call.
                let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), cap, libc::MSG_TRUNC) };
                if n >= 0 {
                    lens.push(n as usize);
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                if !retry(&e) {
                    return Err(e);
                }
            }
        }
        let base = buf.as_mut_ptr();
        // SAFETY: all-zero is a valid iovec (null, 0).
        let mut iov: [libc::iovec; MAX_RECV_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: all-zero is a valid mmsghdr (no address, no control data, no iovecs yet).
        let mut msgs: [libc::mmsghdr; MAX_RECV_BATCH] = unsafe { std::mem::zeroed() };
        for (i, v) in iov[..slots].iter_mut().enumerate() {
            // SAFETY: slot `i` lies within `buf` (`slots * cap <= buf.len()`).
            *v = libc::iovec { iov_base: unsafe { base.add(i * cap) }.cast(), iov_len: cap };
        }
        // Pointers taken once every iovec is written (recvmmsg only reads the iovecs).
        let iov_at = iov.as_mut_ptr();
        for (i, m) in msgs[..slots].iter_mut().enumerate() {
            // SAFETY: `i < slots <= MAX_RECV_BATCH`: within `iov`.
            m.msg_hdr.msg_iov = unsafe { iov_at.add(i) };
            m.msg_hdr.msg_iovlen = 1;
        }
        let n = loop {
            // MSG_TRUNC: each `msg_len` is its datagram's real length even when it did not fit.
            // SAFETY: `msgs[..slots]` are valid headers, each pointing at one iovec over its own
            // `cap`-byte slot of `buf`; `iov`, `msgs` and `buf` live, unmoved, until the call returns.
            let n = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    slots as libc::c_uint,
                    libc::MSG_TRUNC,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if !retry(&e) {
                return Err(e);
            }
        };
        lens.extend(msgs[..n].iter().map(|m| m.msg_len as usize));
        Ok(())
    }

    /// One `recvmsg` into a [`GRO_BUFFER`]-byte buffer without waiting ([`recv_coalesced`]), retrying
    /// at once for as long as `retry` says of the error, as [`fill`](Self::fill).
    fn fill_coalesced(
        sock: &UdpSocket,
        buf: &mut Vec<u8>,
        mut retry: impl FnMut(&io::Error) -> bool,
    ) -> io::Result<(usize, Option<usize>)> {
        if buf.len() < GRO_BUFFER {
            buf.resize(GRO_BUFFER, 0);
        }
        loop {
            match recv_coalesced(sock.as_raw_fd(), &mut buf[..GRO_BUFFER]) {
                Ok(r) => return Ok(r),
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the next datagram (from the batch, or a new batch) and hands its frame to `take`.
    fn next_with<T>(&mut self, wait: Wait, take: impl FnOnce(u16, &[u8]) -> T) -> Result<T, TransportRecvError> {
        let Some(sock) = self.sock.as_deref() else { return Err(TransportRecvError::Closed) };
        let mut spin = Spin::default();
        loop {
            let next = self.run.next().or_else(|| {
                let n = *self.lens.get(self.next)?;
                self.next += 1;
                Some(checked((self.next - 1) * self.slot, n, self.slot))
            });
            if let Some(datagram) = next {
                let (at, n) = datagram.map_err(TransportRecvError::BadFrame)?;
                return match decode_datagram(&self.buf[at..at + n], self.max) {
                    Ok(frame) => Ok(take(frame.ext, frame.payload)),
                    Err(e) => Err(TransportRecvError::BadFrame(e)),
                };
            }
            let cap = self.max + HEADER_LEN;
            let max_slots = (super::DEFAULT_MAX_BUFFERED / cap).clamp(1, MAX_RECV_BATCH);
            // A batch only while datagrams are found waiting: a receiver that has to wait for each
            // one (a round trip) takes it with a plain `recv`, cheaper to retry than `recvmmsg`. A
            // socket that coalesces (`gro`) needs no batch: one receive takes a sender's run at once.
            let batch = !self.gro && self.batching && max_slots > 1;
            let slots = if batch { max_slots } else { 1 };
            (self.next, self.run) = (0, Run::default());
            self.lens.clear();
            // Busy-polling (as `io_wait` allows) retries the receive in place, in a tight loop. The
            // first `EAGAIN` of a batch ends it: the wait goes on with single receives.
            let io_wait = self.io_wait;
            let mut waited = false;
            let retry = |e: &io::Error| match e.kind() {
                io::ErrorKind::Interrupted => true,
                io::ErrorKind::WouldBlock => {
                    waited = true;
                    !batch && io_wait.keep_spinning(wait, &mut spin)
                }
                _ => false,
            };
            let got = if self.gro {
                Self::fill_coalesced(sock, &mut self.buf, retry)
                    .map(|(total, segment)| self.run = Run::new(total, segment, cap))
            } else {
                Self::fill(sock, &mut self.buf, &mut self.lens, cap, slots, retry).map(|()| {
                    self.slot = cap;
                    if self.lens.len() >= 2 && self.gro_auto {
                        // Several datagrams were waiting at once (a round trip has one in flight): a
                        // stream, so from the next receive on a segmented run comes in one. Not before:
                        // a `recvmsg` costs more than a `recv`. A kernel without it keeps `recvmmsg`.
                        self.gro_auto = false;
                        self.gro = set_gro(sock.as_raw_fd()).is_ok();
                    }
                })
            };
            let e = match got {
                Ok(()) => {
                    self.batching = !waited;
                    continue;
                }
                Err(e) => e,
            };
            if batch && e.kind() == io::ErrorKind::WouldBlock {
                self.batching = false;
                continue;
            }
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    if !poll_fd(sock.as_fd(), libc::POLLIN, wait)? {
                        return Err(if wait == Wait::Never {
                            TransportRecvError::Empty
                        } else {
                            TransportRecvError::Timeout
                        });
                    }
                }
                _ if is_reset(&e) => return Err(TransportRecvError::PeerReset),
                _ => return Err(e.into()),
            }
        }
    }
}

/// The receive buffer of a socket that coalesces: larger than any UDP payload (65507 bytes over IPv4,
/// 65527 over IPv6), so a coalesced run is never cut short.
pub(crate) const GRO_BUFFER: usize = 64 << 10;

/// `UDP_GRO` (linux/udp.h; not in the `libc` crate for glibc targets): as a socket option, lets the
/// kernel hand a run of datagrams of one sender to one receive; as a control message, the size of the
/// datagrams of such a run (an `int`).
const UDP_GRO: libc::c_int = 104;

/// One `recvmsg` into `buf` ([`GRO_BUFFER`] bytes) on a socket that may coalesce: the bytes received
/// (their real length, `MSG_TRUNC`) and, when the kernel coalesced datagrams of one sender (`UDP_GRO`),
/// their size. The socket's error as is (`WouldBlock` on a non-blocking socket with nothing waiting).
/// Shared with the async receiver (`transport::tokio::udp`).
pub(crate) fn recv_coalesced(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<usize>)> {
    debug_assert!(buf.len() >= GRO_BUFFER);
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // Room for the control messages other socket options may add ahead of `UDP_GRO`'s (timestamps:
    // `SO_TIMESTAMPING` takes 64 bytes; address and TTL options a few dozen more), 8-aligned as
    // `cmsghdr` needs.
    let mut control = [0u64; CONTROL_WORDS];
    // SAFETY: all-zero is a valid msghdr (no address, no iovecs, no control data yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // MSG_TRUNC: the return value is the real length even if it did not fit (it always does: no UDP
    // payload is larger than GRO_BUFFER).
    // SAFETY: `msg` points at one iovec over `buf` and at `control`, all alive and unmoved until the
    // call returns; `fd` is the caller's open socket.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let segment = gro_segment(&msg);
    if segment.is_none() && msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // The segment size may have been among what did not fit: cutting the bytes as one datagram
        // could hand out a wrong one. Refuse the receive (its datagrams are lost) and say why.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "UDP receive: control messages truncated, the datagrams' size is unknown (fewer socket options \
             that add control messages, e.g. timestamps, would fit)",
        ));
    }
    Ok((n as usize, segment))
}

/// The control buffer of [`recv_coalesced`], in 8-byte words: 512 bytes.
const CONTROL_WORDS: usize = 64;

/// Whether `UDP_GRO` is already on for the socket (a caller set it before making the transport).
pub(crate) fn gro_is_on(fd: std::os::fd::RawFd) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is the caller's open socket; `on` and `len` are live and describe an int.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_UDP, UDP_GRO, (&mut on as *mut libc::c_int).cast(), &mut len) };
    r == 0 && on != 0
}

/// A receive of a socket that may coalesce ([`recv_coalesced`]), handed out datagram by datagram:
/// `total` bytes cut into datagrams of `segment` bytes (the last may be shorter). Shared with the async
/// receiver.
#[derive(Debug, Default)]
pub(crate) struct Run {
    /// The largest datagram accepted when the run came (the datagram limit then).
    cap: usize,
    total: usize,
    segment: usize,
    /// How many datagrams, and the next one to hand out (`count`: none left).
    count: usize,
    next: usize,
}

impl Run {
    /// `total` bytes received with the segment size the kernel reported, if any, under a datagram limit
    /// of `cap`. Without a segment size (one datagram), or larger than the buffer (refused whole as
    /// Oversize), it is one piece.
    pub(crate) fn new(total: usize, segment: Option<usize>, cap: usize) -> Run {
        let segment = match segment {
            Some(s) if s > 0 && total <= GRO_BUFFER => s,
            _ => total.max(1),
        };
        Run { cap, total, segment, count: total.div_ceil(segment).max(1), next: 0 }
    }

    /// The next datagram, if one is left: where it starts in the receive buffer and its length, or
    /// `Oversize` if it is larger than the limit it came under.
    pub(crate) fn next(&mut self) -> Option<Result<(usize, usize), FrameError>> {
        if self.next >= self.count {
            return None;
        }
        let at = self.next * self.segment;
        self.next += 1;
        Some(checked(at, self.segment.min(self.total - at), self.cap))
    }
}

/// A received datagram at `at`, `n` bytes really (`MSG_TRUNC`), if it is within the datagram limit
/// `cap` it came under; `Oversize` otherwise (then its bytes may not all be in the buffer).
fn checked(at: usize, n: usize, cap: usize) -> Result<(usize, usize), FrameError> {
    if n > cap {
        return Err(FrameError::Oversize { len: n - HEADER_LEN, max: cap - HEADER_LEN });
    }
    Ok((at, n))
}

/// Asks the kernel to deliver runs of datagrams coalesced (`UDP_GRO`, Linux 5.0).
pub(crate) fn set_gro(fd: std::os::fd::RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is the caller's open socket; the option value is a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The segment size a `recvmsg` reported in its `UDP_GRO` control message, if any.
fn gro_segment(msg: &libc::msghdr) -> Option<usize> {
    // SAFETY: `msg` is a header `recvmsg` filled: its control pointer and length describe the control
    // messages it wrote (CMSG_FIRSTHDR/NXTHDR stay inside them, or return null); the data of a
    // SOL_UDP/UDP_GRO message is an `int`, read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP
                && (*cmsg).cmsg_type == UDP_GRO
                && (*cmsg).cmsg_len as usize >= libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize
            {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// What a sender learnt of its path's segmentation offload: the smallest segment size (datagram bytes)
/// refused, `usize::MAX` while none was. Shared by the blocking and the async senders.
///
/// A refusal is remembered so that a flush does not pay a failed `sendmsg` before every `sendmmsg`.
/// It is remembered by size because the commonest refusal is (`EINVAL`, `EMSGSIZE`: a segment with its
/// headers over the route's MTU, say 4 KiB datagrams over a 1500-byte link) and smaller segments still
/// go; a refusal that says the path can't segment at all (`EIO`: no checksum offload on the device or a
/// transform on the route; `ENOPROTOOPT`, `EOPNOTSUPP`: a kernel before 4.18) stops it for every size.
/// A socket whose only trouble is path-wide but reported as `EINVAL` (`SO_NO_CHECK`) pays one refusal
/// per smaller size it meets. Never forgotten: a route whose MTU grows keeps sending those sizes with
/// `sendmmsg` (the same datagrams, only more syscalls).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gso {
    refused_from: usize,
}

impl Default for Gso {
    fn default() -> Gso {
        Gso { refused_from: usize::MAX }
    }
}

impl Gso {
    pub(crate) fn refused_from(self) -> Option<usize> {
        (self.refused_from != usize::MAX).then_some(self.refused_from)
    }

    fn allows(self, segment: usize) -> bool {
        segment < self.refused_from
    }

    /// Records a refusal of `segment`-byte segments with `errno`; false if `errno` is not a refusal
    /// (a real send error).
    fn refused(&mut self, segment: usize, errno: Option<i32>) -> bool {
        match errno {
            Some(libc::EINVAL | libc::EMSGSIZE) => self.refused_from = self.refused_from.min(segment),
            Some(libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP) => self.refused_from = 0,
            _ => return false,
        }
        true
    }
}

/// One send of the queued datagrams `ends[sent..]` (datagram `i` is `queue[ends[i - 1]..ends[i]]`, the
/// first starting at 0): a segmented `sendmsg` of the run of equal sizes at the front, unless `gso`
/// says the path refuses that size, or else one `sendmmsg` of them all: the count sent (> 0), 0, or -1
/// with `errno` set, as `sendmmsg` returns. Shared by the blocking and the async
/// (`transport::tokio::udp`) senders.
pub(crate) fn send_queued(
    fd: std::os::fd::RawFd,
    queue: &[u8],
    ends: &[usize],
    sent: usize,
    gso: &mut Gso,
) -> libc::c_int {
    let (run, segment) = gso_run(ends, sent);
    if run >= 2 && gso.allows(segment) {
        let n = send_segmented(fd, queue, ends, sent, run);
        if n >= 0 {
            return run as libc::c_int;
        }
        // The path refused segmentation offload (a segment over its MTU, a device without checksum
        // offload, an older kernel): the same datagrams one by one, below, and from now on without
        // asking for that size again.
        if !gso.refused(segment, io::Error::last_os_error().raw_os_error()) {
            return -1;
        }
    }
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(ends.len() - sent);
    let mut from = if sent == 0 { 0 } else { ends[sent - 1] };
    for &end in &ends[sent..] {
        // sendmmsg only reads through these pointers.
        iov.push(libc::iovec { iov_base: queue[from..].as_ptr() as *mut _, iov_len: end - from });
        from = end;
    }
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: all-zero is a valid mmsghdr (no address, no control data).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: `msgs` holds `msgs.len()` valid headers, each pointing at one iovec over `queue`, all of
    // which live (unmoved) until the call returns; `fd` is the caller's open socket.
    unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, libc::MSG_NOSIGNAL) }
}

/// `UDP_SEGMENT` (linux/udp.h; not in the `libc` crate for glibc targets): the segment size of a
/// `sendmsg`, in a `SOL_UDP` control message.
const UDP_SEGMENT: libc::c_int = 103;

/// The most bytes one segmented send carries: the UDP payload limit of one IPv4 packet.
const GSO_MAX_BYTES: usize = DEFAULT_MAX_DATAGRAM;

/// How many of the queued datagrams `ends[sent..]` one segmented send can carry: a run of equal sizes
/// (the last may be shorter), within [`GSO_MAX_BYTES`], and that size. 0 or 1: not worth it.
fn gso_run(ends: &[usize], sent: usize) -> (usize, usize) {
    let start = if sent == 0 { 0 } else { ends[sent - 1] };
    let Some(&first_end) = ends.get(sent) else { return (0, 0) };
    let size = first_end - start;
    let mut prev = start;
    let mut n = 0;
    for &end in &ends[sent..] {
        let len = end - prev;
        if len > size || end - start > GSO_MAX_BYTES {
            break;
        }
        n += 1;
        prev = end;
        if len < size {
            break; // a shorter one ends a run
        }
    }
    (n, size)
}

/// One `sendmsg` of the `run` datagrams from `ends[sent]`, contiguous in `queue`, as one buffer the kernel
/// cuts into datagrams of the first one's size (UDP generic segmentation offload): the bytes sent, or
/// -1 with `errno` set. A receiver gets the same datagrams as from `sendmmsg`.
fn send_segmented(fd: std::os::fd::RawFd, queue: &[u8], ends: &[usize], sent: usize, run: usize) -> isize {
    let start = if sent == 0 { 0 } else { ends[sent - 1] };
    let (size, end) = (ends[sent] - start, ends[sent + run - 1]);
    let mut iov = libc::iovec { iov_base: queue[start..end].as_ptr() as *mut _, iov_len: end - start };
    // A control buffer for one `u16` (8-aligned, as `cmsghdr` needs).
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid msghdr (no address, no iovecs, no control data yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(msg.msg_controllen <= std::mem::size_of_val(&control));
    // SAFETY: `msg` points at `control`, large enough for one header and a u16 (checked above), so the
    // first header and its data lie inside it; `control` outlives these writes.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
    }
    // SAFETY: `msg` points at one iovec over `queue` and at `control`, all alive and unmoved until the
    // call returns (sendmsg only reads them); `fd` is the caller's open socket.
    unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) }
}

impl Receiver for UdpReceiver {
    fn recv_frame_wait(&mut self, wait: Wait) -> Result<RecvFrame, TransportRecvError> {
        self.next_with(wait, super::owned_frame)
    }

    /// Copies the payload out of the batch into `buf`: no allocation once `buf` has room.
    fn recv_frame_into_vec(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<u16, TransportRecvError> {
        self.next_with(wait, super::copy_into(buf))
    }

    fn close(&mut self) {
        self.sock = None;
    }

    fn max_message(&self) -> usize {
        self.max
    }

    fn set_io_wait(&mut self, wait: IoWait) {
        self.io_wait = wait;
    }
}
