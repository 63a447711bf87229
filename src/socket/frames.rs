//! What the event layer needs from a medium: send a frame with an `ext` in parts, receive one with its
//! `ext`. Every transport half is one ([`Sender`] / [`Receiver`]); a ring handle becomes one wrapped in
//! [`Ring`], its errors mapped onto the transports' names.

use super::EventRecvError;
use crate::ring::{Commit, ErrorKind, RingError, RingReceiver, RingSender};
use crate::transport::{Receiver, RecvFrame, Sender, TransportRecvError, TransportSendError, Wait};
use std::io;

/// A ring handle ([`RingSender`] or [`RingReceiver`]: SPSC, MPMC, broadcast, heap or shared memory) used
/// as a [`FrameSink`] / [`FrameSource`].
#[derive(Debug)]
pub struct Ring<T>(pub T);

/// The sending side of a medium, as the event layer uses it.
pub trait FrameSink: Send {
    /// Sends one frame: the concatenation of `parts`, the first `ext` bytes of which are the event name.
    fn send_frame(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError>;
    /// The largest frame payload (name and body) this medium carries.
    fn max_message(&self) -> usize;
    /// Closes the sending side (the peer sees the end after what was sent).
    fn close(&mut self) -> Result<(), TransportSendError>;
}

/// The receiving side of a medium, as the event layer uses it.
pub trait FrameSource: Send {
    /// Receives one frame with its `ext`.
    fn recv_frame(&mut self, wait: Wait) -> Result<RecvFrame, EventRecvError> {
        let mut bytes = Vec::new();
        let ext = self.recv_frame_into(wait, &mut bytes)?;
        Ok(RecvFrame { ext, bytes })
    }
    /// Receives one frame into `buf` (its previous contents replaced) and returns its `ext`. Rings copy
    /// into the buffer, so a reused one makes no allocation.
    fn recv_frame_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<u16, EventRecvError>;
    /// Closes the receiving side.
    fn close(&mut self);
}

impl<S: Sender> FrameSink for S {
    fn send_frame(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
        self.send_frame_wait(ext, parts, wait)
    }
    fn max_message(&self) -> usize {
        Sender::max_message(self)
    }
    fn close(&mut self) -> Result<(), TransportSendError> {
        Sender::close(self)
    }
}

impl<R: Receiver> FrameSource for R {
    fn recv_frame(&mut self, wait: Wait) -> Result<RecvFrame, EventRecvError> {
        Ok(self.recv_frame_wait(wait)?)
    }
    fn recv_frame_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<u16, EventRecvError> {
        Ok(self.recv_frame_into_vec(buf, wait)?)
    }
    fn close(&mut self) {
        Receiver::close(self)
    }
}

impl FrameSink for Box<dyn FrameSink> {
    fn send_frame(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
        (**self).send_frame(ext, parts, wait)
    }
    fn max_message(&self) -> usize {
        (**self).max_message()
    }
    fn close(&mut self) -> Result<(), TransportSendError> {
        (**self).close()
    }
}

impl FrameSource for Box<dyn FrameSource> {
    fn recv_frame(&mut self, wait: Wait) -> Result<RecvFrame, EventRecvError> {
        (**self).recv_frame(wait)
    }
    fn recv_frame_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<u16, EventRecvError> {
        (**self).recv_frame_into(wait, buf)
    }
    fn close(&mut self) {
        (**self).close()
    }
}

fn send_error<E: RingError>(e: E, len: usize, max: usize) -> TransportSendError {
    match e.kind() {
        ErrorKind::WouldBlock => TransportSendError::WouldBlock,
        ErrorKind::Timeout => TransportSendError::Timeout,
        ErrorKind::Oversize => TransportSendError::Oversize { len, max },
        ErrorKind::PeerGone => TransportSendError::PeerGone,
        ErrorKind::PeerReset => TransportSendError::PeerReset,
        _ => TransportSendError::Io(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

fn recv_error<E: RingError>(e: E) -> EventRecvError {
    EventRecvError::Transport(match e.kind() {
        ErrorKind::Empty => TransportRecvError::Empty,
        ErrorKind::Timeout => TransportRecvError::Timeout,
        ErrorKind::PeerGone => TransportRecvError::PeerGone,
        ErrorKind::PeerReset => TransportRecvError::PeerReset,
        ErrorKind::Lagged => return EventRecvError::Lagged,
        _ => TransportRecvError::Io(io::Error::new(io::ErrorKind::InvalidData, e)),
    })
}

impl<T: RingSender + Send> FrameSink for Ring<T> {
    fn send_frame(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
        let len = crate::transport::check_frame(ext, parts, self.0.max_message())?;
        let max = self.0.max_message();
        let r = match wait {
            Wait::Never => self.0.try_reserve(len),
            Wait::Forever => self.0.reserve(len),
            Wait::Until(d) => self.0.reserve_deadline(len, d),
        };
        let mut slot = r.map_err(|e| send_error(e, len, max))?;
        let mut at = 0;
        for p in parts {
            slot[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        slot.commit_ext(len, ext);
        Ok(())
    }
    fn max_message(&self) -> usize {
        self.0.max_message()
    }
    fn close(&mut self) -> Result<(), TransportSendError> {
        // A ring handle closes when dropped; the owner of the `Ring` drops it.
        Ok(())
    }
}

impl<T: RingReceiver + Send> FrameSource for Ring<T> {
    #[inline]
    fn recv_frame_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<u16, EventRecvError> {
        match wait {
            Wait::Never => self.0.try_recv_frame_into(buf),
            Wait::Forever => self.0.recv_frame_into(None, buf),
            Wait::Until(d) => self.0.recv_frame_into(Some(d), buf),
        }
        .map_err(recv_error)
    }
    fn close(&mut self) {}
}
