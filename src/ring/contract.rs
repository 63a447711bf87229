//! One contract for the three rings: the method family every sending handle and every receiving handle
//! offers, as traits ([`RingSender`], [`RingReceiver`]) that SPSC, MPMC and broadcast implement, and one
//! error vocabulary ([`ErrorKind`]) shared with the transports.
//!
//! Each ring keeps its own error enums, holding only the variants it can return (SPSC's `PeerReset`,
//! broadcast's `Lagged`); their variants carry the names below, the same as the transports' errors,
//! and [`RingError::kind`] maps each onto this vocabulary for code written against the traits. The
//! handles also have every method as an inherent method, so a program using one ring needs no trait
//! import. `tests/ring_contract.rs` checks the contract on every ring over both storages.
//!
//! | form | sending handle | receiving handle |
//! |---|---|---|
//! | no wait | `try_send`, `try_reserve` → `WouldBlock` | `try_recv`, `try_recv_into` → `Empty` |
//! | blocking | `send`, `reserve` | `recv`, `recv_into`, `recv_vec` |
//! | relative limit | `send_timeout`, `reserve_timeout` → `Timeout` | `recv_timeout` → `Timeout` |
//! | absolute limit | `send_deadline`, `reserve_deadline` → `Timeout` | `recv_deadline` → `Timeout` |
//!
//! A `_timeout` too large to be turned into a deadline (`Duration::MAX`) waits without one: it never
//! panics. A blocking call returns when the peer side is gone (`PeerGone`, `PeerReset`), so none waits
//! on a dead peer forever.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// What went wrong, in the one vocabulary of the rings and the transports (as `std::io::ErrorKind` is
/// for I/O). Not every ring returns every kind; each ring's error enum says which it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `try_` sends: no room right now.
    WouldBlock,
    /// `try_` receives: nothing to read right now.
    Empty,
    /// A `_timeout` / `_deadline` call ran out of time.
    Timeout,
    /// The message is larger than the ring's maximum; nothing was written, the ring stays usable.
    Oversize,
    /// The other side closed cleanly (after everything it sent, for a receiver).
    PeerGone,
    /// The other side's process died without closing (SPSC: detected by its role lock).
    PeerReset,
    /// Broadcast: the subscriber fell a lap behind and lost messages.
    Lagged,
    /// `recv_into`: the buffer is too small; the message stays in the ring.
    BufferTooSmall,
    /// The shared memory holds something no correct peer writes.
    Corrupt,
}

/// A ring's send or receive error: its kind in the shared vocabulary.
pub trait RingError: std::error::Error + Send + Sync + 'static {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}

/// A reservation made by [`RingSender::reserve`] (and its forms): write the message in place through
/// `DerefMut`, then [`commit`](Commit::commit) it. Dropping it uncommitted abandons the message: nothing
/// is delivered, and the ring goes on.
pub trait Commit: DerefMut<Target = [u8]> {
    /// Publishes the whole reservation.
    fn commit(self);
    /// Publishes the first `len` bytes (`len` at most the reserved length; more panics).
    fn commit_len(self, len: usize);
    /// Publishes the first `len` bytes, of which the first `ext` are an event name: the frame header's
    /// `ext` field ([`crate::wire`]). `len` beyond the reservation or `ext > len` panics.
    fn commit_ext(self, len: usize, ext: u16);
}

/// The sending handle of any ring: SPSC [`Producer`](super::spsc::Producer), MPMC
/// [`Producer`](super::mpmc::Producer), broadcast [`Publisher`](super::broadcast::Publisher).
pub trait RingSender {
    /// This ring's send error.
    type Error: RingError;
    /// This ring's reservation (zero-copy for SPSC and MPMC; broadcast stages the bytes and copies them
    /// into the slot at commit, because its subscribers read slots through a sequence lock).
    type Reservation<'a>: Commit
    where
        Self: 'a;

    /// The largest message this ring carries, in bytes.
    fn max_message(&self) -> usize;
    /// Reserves room for a `len`-byte message without waiting.
    fn try_reserve(&mut self, len: usize) -> Result<Self::Reservation<'_>, Self::Error>;
    /// Reserves room for a `len`-byte message, waiting for space.
    fn reserve(&mut self, len: usize) -> Result<Self::Reservation<'_>, Self::Error>;
    /// Reserves room for a `len`-byte message, waiting `timeout` at most.
    fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Self::Reservation<'_>, Self::Error>;
    /// Reserves room for a `len`-byte message, waiting until `deadline` at most.
    fn reserve_deadline(&mut self, len: usize, deadline: Instant) -> Result<Self::Reservation<'_>, Self::Error>;
    /// Sends a copy of `msg` without waiting.
    fn try_send(&mut self, msg: &[u8]) -> Result<(), Self::Error>;
    /// Sends a copy of `msg`, waiting for space.
    fn send(&mut self, msg: &[u8]) -> Result<(), Self::Error>;
    /// Sends a copy of `msg`, waiting `timeout` at most.
    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), Self::Error>;
    /// Sends a copy of `msg`, waiting until `deadline` at most.
    fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<(), Self::Error>;
}

/// The receiving handle of any ring: SPSC [`Consumer`](super::spsc::Consumer), MPMC
/// [`Consumer`](super::mpmc::Consumer), broadcast [`Subscriber`](super::broadcast::Subscriber).
pub trait RingReceiver {
    /// This ring's receive error.
    type Error: RingError;
    /// A received message: a read guard into the ring (SPSC, MPMC: the slot is freed when it drops), or
    /// for broadcast a view of the subscriber's own copy.
    type Message<'a>: Deref<Target = [u8]>
    where
        Self: 'a;

    /// The largest message this ring carries, in bytes.
    fn max_message(&self) -> usize;
    /// The next message, without waiting.
    fn try_recv(&mut self) -> Result<Self::Message<'_>, Self::Error>;
    /// The next message, waiting for one.
    fn recv(&mut self) -> Result<Self::Message<'_>, Self::Error>;
    /// The next message, waiting `timeout` at most.
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Self::Message<'_>, Self::Error>;
    /// The next message, waiting until `deadline` at most.
    fn recv_deadline(&mut self, deadline: Instant) -> Result<Self::Message<'_>, Self::Error>;
    /// Copies the next message into `buf` without waiting: its length.
    fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// Copies the next message into `buf`, waiting for one: its length.
    fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// The next message in a new vector of exactly its length, waiting for one.
    fn recv_vec(&mut self) -> Result<Vec<u8>, Self::Error>;
    /// Copies the next message into `buf` (cleared first; it grows as needed, so a reused buffer makes
    /// no allocation) and returns its frame header's `ext` (how many of its first bytes are an event
    /// name, validated `<= len`), without waiting.
    fn try_recv_frame_into(&mut self, buf: &mut Vec<u8>) -> Result<u16, Self::Error>;
    /// As [`try_recv_frame_into`](Self::try_recv_frame_into), waiting until `deadline` (`None`: as long
    /// as it takes).
    fn recv_frame_into(&mut self, deadline: Option<Instant>, buf: &mut Vec<u8>) -> Result<u16, Self::Error>;
}

// The three rings. Every method forwards to the handle's inherent method of the same name.

use super::{broadcast, mpmc, spsc, Storage};

macro_rules! forward_sender {
    ($err:ty) => {
        fn max_message(&self) -> usize {
            Self::max_message(self)
        }
        fn try_reserve(&mut self, len: usize) -> Result<Self::Reservation<'_>, $err> {
            Self::try_reserve(self, len)
        }
        fn reserve(&mut self, len: usize) -> Result<Self::Reservation<'_>, $err> {
            Self::reserve(self, len)
        }
        fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Self::Reservation<'_>, $err> {
            Self::reserve_timeout(self, len, timeout)
        }
        fn reserve_deadline(&mut self, len: usize, deadline: Instant) -> Result<Self::Reservation<'_>, $err> {
            Self::reserve_deadline(self, len, deadline)
        }
        fn try_send(&mut self, msg: &[u8]) -> Result<(), $err> {
            Self::try_send(self, msg)
        }
        fn send(&mut self, msg: &[u8]) -> Result<(), $err> {
            Self::send(self, msg)
        }
        fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), $err> {
            Self::send_timeout(self, msg, timeout)
        }
        fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<(), $err> {
            Self::send_deadline(self, msg, deadline)
        }
    };
}

macro_rules! forward_receiver {
    ($err:ty) => {
        fn max_message(&self) -> usize {
            Self::max_message(self)
        }
        fn try_recv(&mut self) -> Result<Self::Message<'_>, $err> {
            Self::try_recv(self)
        }
        fn recv(&mut self) -> Result<Self::Message<'_>, $err> {
            Self::recv(self)
        }
        fn recv_timeout(&mut self, timeout: Duration) -> Result<Self::Message<'_>, $err> {
            Self::recv_timeout(self, timeout)
        }
        fn recv_deadline(&mut self, deadline: Instant) -> Result<Self::Message<'_>, $err> {
            Self::recv_deadline(self, deadline)
        }
        fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, $err> {
            Self::try_recv_into(self, buf)
        }
        fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, $err> {
            Self::recv_into(self, buf)
        }
        fn recv_vec(&mut self) -> Result<Vec<u8>, $err> {
            Self::recv_vec(self)
        }
    };
}

/// The two frame receives of the rings whose messages are read guards with an `ext()` accessor.
macro_rules! guard_frames {
    ($err:ty) => {
        #[inline]
        fn try_recv_frame_into(&mut self, buf: &mut Vec<u8>) -> Result<u16, $err> {
            let m = Self::try_recv(self)?;
            buf.clear();
            buf.extend_from_slice(&m);
            Ok(m.ext())
        }
        #[inline]
        fn recv_frame_into(&mut self, deadline: Option<Instant>, buf: &mut Vec<u8>) -> Result<u16, $err> {
            let m = match deadline {
                Some(d) => Self::recv_deadline(self, d)?,
                None => Self::recv(self)?,
            };
            buf.clear();
            buf.extend_from_slice(&m);
            Ok(m.ext())
        }
    };
}

macro_rules! forward_commit {
    () => {
        fn commit(self) {
            Self::commit(self)
        }
        fn commit_len(self, len: usize) {
            Self::commit_len(self, len)
        }
        fn commit_ext(self, len: usize, ext: u16) {
            Self::commit_ext(self, len, ext)
        }
    };
}

impl<S: Storage> RingSender for spsc::Producer<S> {
    type Error = spsc::SendError;
    type Reservation<'a>
        = spsc::WriteGuard<'a, S>
    where
        Self: 'a;
    forward_sender!(spsc::SendError);
}

impl<S: Storage> RingReceiver for spsc::Consumer<S> {
    type Error = spsc::RecvError;
    type Message<'a>
        = spsc::ReadGuard<'a, S>
    where
        Self: 'a;
    forward_receiver!(spsc::RecvError);
    guard_frames!(spsc::RecvError);
}

impl<S: Storage> Commit for spsc::WriteGuard<'_, S> {
    forward_commit!();
}

impl<S: Storage> RingSender for mpmc::Producer<S> {
    type Error = mpmc::SendError;
    type Reservation<'a>
        = mpmc::WriteGuard<'a, S>
    where
        Self: 'a;
    forward_sender!(mpmc::SendError);
}

impl<S: Storage> RingReceiver for mpmc::Consumer<S> {
    type Error = mpmc::RecvError;
    type Message<'a>
        = mpmc::ReadGuard<'a, S>
    where
        Self: 'a;
    forward_receiver!(mpmc::RecvError);
    guard_frames!(mpmc::RecvError);
}

impl<S: Storage> Commit for mpmc::WriteGuard<'_, S> {
    forward_commit!();
}

impl<S: Storage> RingSender for broadcast::Publisher<S> {
    type Error = broadcast::SendError;
    type Reservation<'a>
        = broadcast::WriteGuard<'a, S>
    where
        Self: 'a;
    forward_sender!(broadcast::SendError);
}

impl<S: Storage> RingReceiver for broadcast::Subscriber<S> {
    type Error = broadcast::RecvError;
    type Message<'a>
        = &'a [u8]
    where
        Self: 'a;
    forward_receiver!(broadcast::RecvError);
    fn try_recv_frame_into(&mut self, buf: &mut Vec<u8>) -> Result<u16, broadcast::RecvError> {
        let m = Self::try_recv(self)?;
        buf.clear();
        buf.extend_from_slice(m);
        Ok(self.last_ext())
    }
    fn recv_frame_into(&mut self, deadline: Option<Instant>, buf: &mut Vec<u8>) -> Result<u16, broadcast::RecvError> {
        let m = match deadline {
            Some(d) => Self::recv_deadline(self, d)?,
            None => Self::recv(self)?,
        };
        buf.clear();
        buf.extend_from_slice(m);
        Ok(self.last_ext())
    }
}

impl<S: Storage> Commit for broadcast::WriteGuard<'_, S> {
    forward_commit!();
}
