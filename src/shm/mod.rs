//! Shared-memory regions: a ring's memory mapped from a named file under `/dev/shm` or from an anonymous
//! sealed memfd that a child process inherits.
//!
//! This module owns everything about files, mappings, permissions and role locks; the ring algorithms in
//! [`crate::ring`] only see the [`Storage`](crate::ring::Storage) trait.
//!
//! # Role locks and crash detection
//!
//! Each endpoint holds an open-file-description (OFD) write lock on one byte of the region file (byte 0
//! for the producer, byte 1 for the consumer), taken on its own freshly opened description of the file.
//! The kernel drops the lock when the process dies, however it dies. So "state says ATTACHED, but nobody
//! holds the lock" means the endpoint's process died without closing; a second endpoint asking for a held
//! role is refused; and a role freed by a crash can be claimed again.

mod error;
mod file;
#[cfg(not(ringwire_loom))]
pub mod inspect;
mod region;

pub use error::OpenError;
pub use file::validate_name;
pub use region::ShmRegion;

use crate::ring::{ControlBlock, RingConfig, RingKind};
use file::*;
use region::*;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where named rings live unless told otherwise.
pub const DEFAULT_DIR: &str = "/dev/shm";
/// The environment variable [`ShmRing::share_with`] sets by default for a child.
pub const DEFAULT_FD_VAR: &str = "RINGWIRE_FD";

/// A shared-memory ring: create or open it, then attach a [`producer`](Self::producer) or a
/// [`consumer`](Self::consumer). Cheap to clone; the region stays mapped while any clone or endpoint lives.
///
/// ```
/// use ringwire::{RingConfig, ShmRing};
/// let name = format!("ringwire-doc-{}", std::process::id());
/// let ring = ShmRing::create(&name, RingConfig::default())?;
/// let mut tx = ring.producer()?;
/// // Usually another process: ShmRing::open(&name)?.consumer()?
/// let mut rx = ShmRing::open(&name)?.consumer()?;
/// tx.send(b"ping")?;
/// assert_eq!(&*rx.recv()?, b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShmRing(Arc<ShmRegion>);

/// The producer end of a shared-memory ring.
pub type ShmProducer = crate::spsc::Producer<Arc<ShmRegion>>;
/// The consumer end of a shared-memory ring.
pub type ShmConsumer = crate::spsc::Consumer<Arc<ShmRegion>>;

/// A shared-memory MPMC ring (work queue): create or open it, then attach any number of
/// [`producer`](Self::producer)s and [`consumer`](Self::consumer)s, in any processes.
///
/// ```
/// use ringwire::{RingConfig, ShmQueue};
/// let name = format!("ringwire-doc-q-{}", std::process::id());
/// let q = ShmQueue::create(&name, RingConfig::new(1 << 16, 256))?;
/// let mut tx = q.producer()?;
/// let mut rx = ShmQueue::open(&name)?.consumer()?; // usually in another process
/// tx.send(b"job")?;
/// assert_eq!(&*rx.recv()?, b"job");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShmQueue(Arc<ShmRegion>);

/// A producer of a shared-memory MPMC ring.
pub type ShmQueueProducer = crate::mpmc::Producer<Arc<ShmRegion>>;
/// A consumer of a shared-memory MPMC ring.
pub type ShmQueueConsumer = crate::mpmc::Consumer<Arc<ShmRegion>>;

/// A shared-memory broadcast ring: create or open it, then attach any number of
/// [`publisher`](Self::publisher)s and [`subscriber`](Self::subscriber)s, in any processes.
///
/// ```
/// use ringwire::{broadcast::Mode, RingConfig, ShmBroadcast};
/// let name = format!("ringwire-doc-b-{}", std::process::id());
/// let ring = ShmBroadcast::create(&name, RingConfig::new(1 << 16, 256), Mode::Overwrite)?;
/// let mut a = ShmBroadcast::open(&name)?.subscriber()?; // usually other processes
/// let mut b = ShmBroadcast::open(&name)?.subscriber()?;
/// ring.publisher()?.send(b"news")?;
/// assert_eq!(a.recv_vec()?, b"news");
/// assert_eq!(b.recv_vec()?, b"news");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShmBroadcast(Arc<ShmRegion>);

/// A publisher of a shared-memory broadcast ring.
pub type ShmPublisher = crate::broadcast::Publisher<Arc<ShmRegion>>;
/// A subscriber of a shared-memory broadcast ring.
pub type ShmSubscriber = crate::broadcast::Subscriber<Arc<ShmRegion>>;

macro_rules! slot_ring_common {
    ($ty:ident, $kind:expr) => {
        impl $ty {
            /// Opens the named ring at `/dev/shm/NAME`, validating its header, kind and size.
            pub fn open(name: &str) -> Result<$ty, OpenError> {
                Self::open_in(DEFAULT_DIR, name)
            }

            /// Opens the named ring in `dir`.
            pub fn open_in(dir: impl AsRef<Path>, name: &str) -> Result<$ty, OpenError> {
                ShmRegion::open_in(dir.as_ref(), name, $kind).map($ty)
            }

            /// Maps a ring from a sealed memfd received from another process.
            pub fn from_fd(fd: OwnedFd) -> Result<$ty, OpenError> {
                ShmRegion::from_fd(fd, $kind).map($ty)
            }

            /// Maps the ring whose memfd this process inherited (see [`share_with`](Self::share_with)).
            pub fn from_env(var: &str) -> Result<$ty, OpenError> {
                ShmRegion::from_env(var, $kind).map($ty)
            }

            /// Lets the child started by `cmd` inherit this ring, its descriptor number in the child's
            /// environment variable `var`; the child calls `from_env(var)`. Any number of children may.
            pub fn share_with(&self, cmd: &mut std::process::Command, var: &str) {
                self.0.share_with(cmd, var)
            }

            /// The ring's validated sizes.
            pub fn config(&self) -> RingConfig {
                self.0.config
            }

            /// The file path of a named ring that this value created and will unlink.
            pub fn path(&self) -> Option<&Path> {
                self.0.unlink_path()
            }
        }
    };
}

slot_ring_common!(ShmQueue, RingKind::Mpmc);
slot_ring_common!(ShmBroadcast, RingKind::Broadcast);

impl ShmQueue {
    /// Creates a named MPMC ring at `/dev/shm/NAME` (see [`ShmOptions::create_queue`] for choices).
    pub fn create(name: &str, config: RingConfig) -> Result<ShmQueue, OpenError> {
        ShmOptions::new(config).create_queue(name)
    }

    /// Creates an anonymous MPMC ring in a sealed memfd.
    pub fn anonymous(config: RingConfig) -> Result<ShmQueue, OpenError> {
        ShmRegion::anonymous::<crate::mpmc::Control>(config, 0).map(ShmQueue)
    }

    /// Attaches a producer.
    pub fn producer(&self) -> Result<ShmQueueProducer, OpenError> {
        Ok(crate::mpmc::Producer::attach(self.0.clone())?)
    }

    /// Attaches a consumer.
    pub fn consumer(&self) -> Result<ShmQueueConsumer, OpenError> {
        Ok(crate::mpmc::Consumer::attach(self.0.clone())?)
    }
}

impl ShmBroadcast {
    /// Creates a named broadcast ring at `/dev/shm/NAME` (see [`ShmOptions::create_broadcast`]).
    pub fn create(name: &str, config: RingConfig, mode: crate::broadcast::Mode) -> Result<ShmBroadcast, OpenError> {
        ShmOptions::new(config).create_broadcast(name, mode)
    }

    /// Creates an anonymous broadcast ring in a sealed memfd.
    pub fn anonymous(config: RingConfig, mode: crate::broadcast::Mode) -> Result<ShmBroadcast, OpenError> {
        ShmRegion::anonymous::<crate::broadcast::Control>(config, mode.flags()).map(ShmBroadcast)
    }

    /// Attaches a publisher.
    pub fn publisher(&self) -> Result<ShmPublisher, OpenError> {
        Ok(crate::broadcast::Publisher::attach(self.0.clone())?)
    }

    /// Attaches a subscriber; it sees every message published from now on.
    pub fn subscriber(&self) -> Result<ShmSubscriber, OpenError> {
        Ok(crate::broadcast::Subscriber::attach(self.0.clone())?)
    }
}

/// Options for creating a named ring: the directory, taking over a ring left by a process that died
/// ([`reuse_stale`](Self::reuse_stale)), the fence mode.
///
/// ```
/// use ringwire::{RingConfig, ShmOptions};
/// let dir = std::env::temp_dir();
/// let name = format!("ringwire-doc-opts-{}", std::process::id());
/// let opts = ShmOptions::new(RingConfig::new(1 << 16, 1024)).dir(&dir).reuse_stale(true);
/// let ring = opts.create(&name)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.send(b"in a private directory")?;
/// assert_eq!(&*rx.recv()?, b"in a private directory");
/// assert!(dir.join(&name).exists()); // removed when `ring` (the creator's handle) drops
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShmOptions {
    config: RingConfig,
    dir: PathBuf,
    reuse: bool,
    persist: bool,
    asymmetric: bool,
}

impl ShmOptions {
    /// Options for a ring of `config` under [`DEFAULT_DIR`], refusing an existing file, unlinked on drop.
    pub fn new(config: RingConfig) -> Self {
        ShmOptions { config, dir: PathBuf::from(DEFAULT_DIR), reuse: false, persist: false, asymmetric: true }
    }

    /// Use asymmetric barriers in the sleep/wake protocol (default: yes, where the kernel supports
    /// `membarrier`): a sender then pays no fence per message, and a receiver about to sleep pays a
    /// `membarrier` syscall instead. Every process attaching must be able to call `membarrier` (no
    /// seccomp filter against it); turn this off if one can't.
    pub fn asymmetric_fences(mut self, yes: bool) -> Self {
        self.asymmetric = yes;
        self
    }

    /// Creates the file in `dir` instead of `/dev/shm` (it should be on a tmpfs).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// If a regular file of ours already exists at the name and no endpoint holds a role in it (say, a
    /// ring left behind by a crashed creator), re-initialise it instead of failing. Symlinks, other
    /// owners' files and rings in use are still refused.
    pub fn reuse_stale(mut self, yes: bool) -> Self {
        self.reuse = yes;
        self
    }

    /// Keep the file when the creating [`ShmRing`] is dropped (remove it later with [`ShmRing::unlink`]).
    pub fn persist(mut self, yes: bool) -> Self {
        self.persist = yes;
        self
    }

    /// Creates the SPSC ring.
    pub fn create(&self, name: &str) -> Result<ShmRing, OpenError> {
        self.create_region::<crate::spsc::Control>(name).map(ShmRing)
    }

    /// Creates a named MPMC ring.
    pub fn create_queue(&self, name: &str) -> Result<ShmQueue, OpenError> {
        self.create_region::<crate::mpmc::Control>(name).map(ShmQueue)
    }

    /// Creates a named broadcast ring.
    pub fn create_broadcast(&self, name: &str, mode: crate::broadcast::Mode) -> Result<ShmBroadcast, OpenError> {
        self.create_region_flags::<crate::broadcast::Control>(name, mode.flags()).map(ShmBroadcast)
    }

    /// Creates a region holding a ring of kind `C`.
    pub(crate) fn create_region<C: ControlBlock>(&self, name: &str) -> Result<Arc<ShmRegion>, OpenError> {
        self.create_region_flags::<C>(name, 0)
    }

    /// Creates a region holding a ring of kind `C`, with extra header flags.
    pub(crate) fn create_region_flags<C: ControlBlock>(
        &self,
        name: &str,
        flags: u32,
    ) -> Result<Arc<ShmRegion>, OpenError> {
        self.config.validate_for(C::KIND).map_err(OpenError::Config)?;
        validate_name(name)?;
        let path = self.dir.join(name);
        let file = match open_file(&path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(OpenError::Symlink(path));
                }
                if !self.reuse {
                    return Err(OpenError::AlreadyExists(path));
                }
                return self.reuse_existing::<C>(path, flags);
            }
            Err(e) => return Err(io_err("open", e)),
        };
        let mut region = init_region::<C>(file, self.config, self.asymmetric, flags).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })?;
        region.unlink = (!self.persist).then_some(path);
        Ok(Arc::new(region))
    }

    fn reuse_existing<C: ControlBlock>(&self, path: PathBuf, flags: u32) -> Result<Arc<ShmRegion>, OpenError> {
        let file = open_file(&path, libc::O_RDWR).map_err(|e| open_errno(e, &path))?;
        check_file(&file)?;
        // Hold every endpoint lock byte while we re-initialise, so nobody attaches to a half-written
        // header and nobody still attached is overwritten.
        let guard = reopen(&file)?;
        if !try_lock(&guard, 0, LOCK_BYTES)? {
            return Err(OpenError::Busy(path));
        }
        let mut region = init_region::<C>(file, self.config, self.asymmetric, flags)?;
        drop(guard);
        region.unlink = (!self.persist).then_some(path);
        Ok(Arc::new(region))
    }
}

impl ShmRing {
    /// Creates a named ring at `/dev/shm/NAME` (mode 0600, refusing anything already there), unlinked
    /// when this value and its clones are dropped. See [`ShmOptions`] for the other choices.
    pub fn create(name: &str, config: RingConfig) -> Result<ShmRing, OpenError> {
        ShmOptions::new(config).create(name)
    }

    /// Opens the named ring at `/dev/shm/NAME`, validating its header and size.
    pub fn open(name: &str) -> Result<ShmRing, OpenError> {
        Self::open_in(DEFAULT_DIR, name)
    }

    /// Opens the named ring in `dir`.
    pub fn open_in(dir: impl AsRef<Path>, name: &str) -> Result<ShmRing, OpenError> {
        ShmRegion::open_in(dir.as_ref(), name, RingKind::Spsc).map(ShmRing)
    }

    /// Creates an anonymous ring in a memfd sealed against shrinking and growing. Hand it to a child
    /// with [`share_with`](Self::share_with); the memory is freed when the last process drops it.
    pub fn anonymous(config: RingConfig) -> Result<ShmRing, OpenError> {
        ShmRegion::anonymous::<crate::spsc::Control>(config, 0).map(ShmRing)
    }

    /// Maps a ring from a memfd received from another process. The memfd must be sealed against
    /// shrinking and growing (so the sender can't make us fault on a truncated mapping), and its header
    /// must be valid.
    pub fn from_fd(fd: OwnedFd) -> Result<ShmRing, OpenError> {
        ShmRegion::from_fd(fd, RingKind::Spsc).map(ShmRing)
    }

    /// Maps the ring whose memfd this process inherited, its number given in the environment variable
    /// `var` (as set by [`share_with`](Self::share_with)). The inherited descriptor is duplicated, not
    /// taken over, so this is safe to call more than once.
    pub fn from_env(var: &str) -> Result<ShmRing, OpenError> {
        ShmRegion::from_env(var, RingKind::Spsc).map(ShmRing)
    }

    /// Lets the child started by `cmd` inherit this ring: the descriptor stays close-on-exec in this
    /// process and is made inheritable only in the child, whose environment variable `var` gets its
    /// number. The child calls [`ShmRing::from_env`]`(var)`.
    pub fn share_with(&self, cmd: &mut std::process::Command, var: &str) {
        self.0.share_with(cmd, var)
    }

    /// Attaches as the producer. Fails with [`AttachError::RoleTaken`](crate::ring::AttachError::RoleTaken) (wrapped in
    /// [`OpenError::Attach`]) while another producer lives.
    pub fn producer(&self) -> Result<ShmProducer, OpenError> {
        Ok(crate::spsc::Producer::attach(self.0.clone())?)
    }

    /// Attaches as the consumer. Fails with [`AttachError::RoleTaken`](crate::ring::AttachError::RoleTaken) (wrapped in
    /// [`OpenError::Attach`]) while another consumer lives.
    pub fn consumer(&self) -> Result<ShmConsumer, OpenError> {
        Ok(crate::spsc::Consumer::attach(self.0.clone())?)
    }

    /// The ring's validated sizes.
    pub fn config(&self) -> RingConfig {
        self.0.config
    }

    /// The file path of a named ring that this value created and will unlink.
    pub fn path(&self) -> Option<&Path> {
        self.0.unlink_path()
    }

    /// Removes the name `dir/NAME` (mapped regions stay valid until unmapped).
    pub fn unlink(dir: impl AsRef<Path>, name: &str) -> Result<(), OpenError> {
        validate_name(name)?;
        let path = dir.as_ref().join(name);
        std::fs::remove_file(&path).map_err(|e| open_errno(e, &path))
    }
}
