//! The shared-memory ring as a transport: a duplex pair of SPSC rings, one per direction, so that it
//! compares like for like with the other adapters.
//!
//! Anonymous: the parent makes a [`Duplex`], [`shares`](Duplex::share_with) it with a child and takes
//! its [`parent`](Duplex::parent) halves; the child calls [`from_env`]. Named: one side calls
//! [`create`]`(name)` (rings `NAME.down` and `NAME.up` under `/dev/shm`, removed when its halves are
//! dropped), the other [`open`]`(name)`.

use super::{check_frame, Receiver, RecvFrame, Sender, TransportRecvError, TransportSendError, Wait};
use crate::shm::{ShmConsumer, ShmProducer};
use crate::spsc::{RecvError, SendError};
use crate::{OpenError, RingConfig, ShmRing};
use std::io;
use std::process::Command;

/// Environment variable naming the parent-to-child ring's memfd in the child.
pub const DOWN_VAR: &str = "RINGWIRE_SHM_DOWN_FD";
/// Environment variable naming the child-to-parent ring's memfd in the child.
pub const UP_VAR: &str = "RINGWIRE_SHM_UP_FD";

/// The sending half: a ring producer.
pub struct ShmSender(Option<ShmProducer>);
/// The receiving half: a ring consumer.
pub struct ShmReceiver(Option<ShmConsumer>);

/// Two anonymous rings to share with a child process.
#[derive(Clone, Debug)]
pub struct Duplex {
    down: ShmRing,
    up: ShmRing,
}

impl Duplex {
    /// Two anonymous (sealed memfd) rings of `config`.
    pub fn anonymous(config: RingConfig) -> Result<Duplex, OpenError> {
        Ok(Duplex { down: ShmRing::anonymous(config)?, up: ShmRing::anonymous(config)? })
    }

    /// Lets the child that `cmd` starts inherit both rings ([`DOWN_VAR`], [`UP_VAR`]).
    pub fn share_with(&self, cmd: &mut Command) {
        self.down.share_with(cmd, DOWN_VAR);
        self.up.share_with(cmd, UP_VAR);
    }

    /// The parent's halves: producer of the down ring, consumer of the up ring.
    pub fn parent(&self) -> Result<(ShmSender, ShmReceiver), OpenError> {
        halves(&self.down, &self.up)
    }
}

/// In a child: the rings inherited from [`Duplex::share_with`] (producer of the up ring, consumer of the
/// down ring).
pub fn from_env() -> Result<(ShmSender, ShmReceiver), OpenError> {
    halves(&ShmRing::from_env(UP_VAR)?, &ShmRing::from_env(DOWN_VAR)?)
}

/// Creates the named rings `NAME.down` (this side sends) and `NAME.up` (this side receives).
pub fn create(name: &str, config: RingConfig) -> Result<(ShmSender, ShmReceiver), OpenError> {
    create_with(name, &crate::ShmOptions::new(config))
}

/// As [`create`], with `opts` (directory, [`reuse_stale`](crate::ShmOptions::reuse_stale): take over
/// rings left by a dead server, refuse ones in use with [`OpenError::Busy`]).
pub fn create_with(name: &str, opts: &crate::ShmOptions) -> Result<(ShmSender, ShmReceiver), OpenError> {
    halves(&opts.create(&format!("{name}.down"))?, &opts.create(&format!("{name}.up"))?)
}

/// Opens the named rings made by [`create`] from the other side.
pub fn open(name: &str) -> Result<(ShmSender, ShmReceiver), OpenError> {
    halves(&ShmRing::open(&format!("{name}.up"))?, &ShmRing::open(&format!("{name}.down"))?)
}

fn halves(send: &ShmRing, recv: &ShmRing) -> Result<(ShmSender, ShmReceiver), OpenError> {
    Ok((ShmSender(Some(send.producer()?)), ShmReceiver(Some(recv.consumer()?))))
}

impl ShmSender {
    /// The ring producer (to set its wait strategy or liveness interval, or to use zero-copy
    /// reservations), unless closed.
    pub fn producer(&mut self) -> Option<&mut ShmProducer> {
        self.0.as_mut()
    }
}

impl ShmReceiver {
    /// The ring consumer (to set its wait strategy or liveness interval, or to read in place), unless
    /// closed.
    pub fn consumer(&mut self) -> Option<&mut ShmConsumer> {
        self.0.as_mut()
    }
}

fn corrupt(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn send_error(e: SendError) -> TransportSendError {
    match e {
        SendError::WouldBlock => TransportSendError::WouldBlock,
        SendError::Timeout => TransportSendError::Timeout,
        SendError::PeerGone => TransportSendError::PeerGone,
        SendError::PeerReset => TransportSendError::PeerReset,
        SendError::Oversize { len, max } => TransportSendError::Oversize { len, max },
        e @ SendError::Corrupt(_) => TransportSendError::Io(corrupt(e)),
    }
}

fn recv_error(e: RecvError) -> TransportRecvError {
    match e {
        RecvError::Empty => TransportRecvError::Empty,
        RecvError::Timeout => TransportRecvError::Timeout,
        RecvError::PeerGone => TransportRecvError::PeerGone,
        RecvError::PeerReset => TransportRecvError::PeerReset,
        e => TransportRecvError::Io(corrupt(e)),
    }
}

/// Reserves `len` bytes in the ring, waiting as `wait` allows.
fn reserve(
    tx: &mut ShmProducer,
    len: usize,
    wait: Wait,
) -> Result<crate::spsc::WriteGuard<'_, std::sync::Arc<crate::shm::ShmRegion>>, TransportSendError> {
    match wait {
        Wait::Never => tx.try_reserve(len),
        Wait::Forever => tx.reserve(len),
        Wait::Until(d) => tx.reserve_deadline(len, d),
    }
    .map_err(send_error)
}

impl Sender for ShmSender {
    // The plain send keeps the ring's own copying path.
    fn send_wait(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        let Some(tx) = self.0.as_mut() else { return Err(TransportSendError::Closed) };
        let r = match wait {
            Wait::Never => tx.try_send(msg),
            Wait::Forever => tx.send(msg),
            Wait::Until(d) => tx.send_deadline(msg, d),
        };
        r.map_err(send_error)
    }

    // An event frame: reserve once, copy each part into place, commit with its ext.
    fn send_frame_wait(&mut self, ext: u16, parts: &[&[u8]], wait: Wait) -> Result<(), TransportSendError> {
        let Some(tx) = self.0.as_mut() else { return Err(TransportSendError::Closed) };
        let len = check_frame(ext, parts, tx.max_message())?;
        let mut slot = reserve(tx, len, wait)?;
        let mut at = 0;
        for p in parts {
            slot[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        slot.commit_ext(len, ext);
        Ok(())
    }

    // Buffered publication: the record is written now and published with the rest of its batch
    // (`WriteGuard::commit_buffered`; a full ring publishes before waiting for space).
    fn send_buffered(&mut self, msg: &[u8], wait: Wait) -> Result<(), TransportSendError> {
        let Some(tx) = self.0.as_mut() else { return Err(TransportSendError::Closed) };
        let mut slot = reserve(tx, msg.len(), wait)?;
        slot.copy_from_slice(msg);
        slot.commit_buffered();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransportSendError> {
        let Some(tx) = self.0.as_mut() else { return Err(TransportSendError::Closed) };
        tx.flush();
        Ok(())
    }

    fn close(&mut self) -> Result<(), TransportSendError> {
        // Dropping the producer publishes what it withholds, then closes.
        self.0 = None;
        Ok(())
    }

    fn max_message(&self) -> usize {
        self.0.as_ref().map_or(0, |tx| tx.max_message())
    }
}

impl Receiver for ShmReceiver {
    fn recv_wait(&mut self, wait: Wait) -> Result<Vec<u8>, TransportRecvError> {
        let Some(rx) = self.0.as_mut() else { return Err(TransportRecvError::Closed) };
        let r = match wait {
            Wait::Never => rx.try_recv(),
            Wait::Forever => rx.recv(),
            Wait::Until(d) => rx.recv_deadline(d),
        };
        r.map(|msg| msg.to_vec()).map_err(recv_error)
    }

    fn recv_frame_wait(&mut self, wait: Wait) -> Result<RecvFrame, TransportRecvError> {
        let Some(rx) = self.0.as_mut() else { return Err(TransportRecvError::Closed) };
        let r = match wait {
            Wait::Never => rx.try_recv(),
            Wait::Forever => rx.recv(),
            Wait::Until(d) => rx.recv_deadline(d),
        };
        r.map(|msg| RecvFrame { ext: msg.ext(), bytes: msg.to_vec() }).map_err(recv_error)
    }

    fn close(&mut self) {
        self.0 = None;
    }

    fn max_message(&self) -> usize {
        self.0.as_ref().map_or(0, |rx| rx.max_message())
    }
}
