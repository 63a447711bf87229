//! Shared-memory regions: a ring's memory mapped from a named file under `/dev/shm` or from an anonymous
//! sealed memfd that a child process inherits.
//!
//! This module owns everything about files, mappings, permissions and role locks; the ring algorithms in
//! [`crate::ring`] only see the [`Storage`] trait.
//!
//! # Role locks and crash detection
//!
//! Each endpoint holds an open-file-description (OFD) write lock on one byte of the region file (byte 0
//! for the producer, byte 1 for the consumer), taken on its own freshly opened description of the file.
//! The kernel drops the lock when the process dies, however it dies. So "state says ATTACHED, but nobody
//! holds the lock" means the endpoint's process died without closing; a second endpoint asking for a held
//! role is refused; and a role freed by a crash can be claimed again.

mod error;

pub use error::OpenError;

use crate::ring::{
    AttachError, ConfigError, ControlBlock, Header, RingConfig, RingKind, RoleToken, Storage, FLAG_ASYMMETRIC_FENCES,
    LAYOUT_VERSION, MAGIC,
};
use crate::sync::{AtomicU32, Ordering};
use memmap2::{MmapOptions, MmapRaw};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where named rings live unless told otherwise.
pub const DEFAULT_DIR: &str = "/dev/shm";
/// The environment variable [`ShmRing::share_with`] sets by default for a child.
pub const DEFAULT_FD_VAR: &str = "RINGWIRE_FD";

/// A mapped ring region (the [`Storage`] behind shared-memory endpoints).
#[derive(Debug)]
pub struct ShmRegion {
    map: MmapRaw,
    /// The ring kind in the header (validated copy).
    kind: RingKind,
    /// The descriptor the region was mapped from. It holds no lock, so `F_OFD_GETLK` on it sees every
    /// endpoint's lock, ours included.
    file: File,
    config: RingConfig,
    /// The header flags, validated copy.
    flags: u32,
    /// Set for a named ring whose file this value unlinks when dropped.
    unlink: Option<PathBuf>,
}

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

/// Options for creating a named ring.
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

    /// Attaches as the producer. Fails with [`AttachError::RoleTaken`] (wrapped in
    /// [`OpenError::Attach`]) while another producer lives.
    pub fn producer(&self) -> Result<ShmProducer, OpenError> {
        Ok(crate::spsc::Producer::attach(self.0.clone())?)
    }

    /// Attaches as the consumer. Fails with [`AttachError::RoleTaken`] (wrapped in
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

/// Lock bytes of the region file that endpoints may hold: SPSC uses bytes 0 and 1, the slot rings one
/// byte per participant slot.
const LOCK_BYTES: i64 = 4096;

impl ShmRegion {
    /// Opens the named region `dir/NAME`, which must hold a ring of `kind`.
    pub(crate) fn open_in(dir: &Path, name: &str, kind: RingKind) -> Result<Arc<ShmRegion>, OpenError> {
        validate_name(name)?;
        let path = dir.join(name);
        let file = open_file(&path, libc::O_RDWR).map_err(|e| open_errno(e, &path))?;
        check_file(&file)?;
        map_existing(file, kind).map(Arc::new)
    }

    /// A region of kind `C` in a fresh memfd sealed against shrinking and growing.
    pub(crate) fn anonymous<C: ControlBlock>(config: RingConfig, flags: u32) -> Result<Arc<ShmRegion>, OpenError> {
        config.validate_for(C::KIND).map_err(OpenError::Config)?;
        let label = CString::new("ringwire").expect("no NUL");
        // SAFETY: `label` is a valid NUL-terminated string; memfd_create returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return Err(io_err("memfd_create", io::Error::last_os_error()));
        }
        // SAFETY: memfd_create just returned this fd, which nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let total = (C::KIND.data_offset() + config.capacity) as u64;
        size_file(&file, total)?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: plain fcntl on an fd we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io_err("F_ADD_SEALS", io::Error::last_os_error()));
        }
        init_mapped::<C>(file, config, true, flags).map(Arc::new)
    }

    /// Maps a region of `kind` from a memfd received from another process; it must be sealed against
    /// shrinking and growing.
    pub(crate) fn from_fd(fd: OwnedFd, kind: RingKind) -> Result<Arc<ShmRegion>, OpenError> {
        let file = File::from(fd);
        // SAFETY: plain fcntl on an fd we own.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals < 0 || seals & needed != needed {
            return Err(OpenError::MissingSeals { seals: seals.max(0) });
        }
        check_file(&file)?;
        map_existing(file, kind).map(Arc::new)
    }

    /// Maps the region of `kind` whose memfd this process inherited, its number in the environment
    /// variable `var`. The descriptor is duplicated, not taken over.
    pub(crate) fn from_env(var: &str, kind: RingKind) -> Result<Arc<ShmRegion>, OpenError> {
        let value = std::env::var(var).map_err(|_| OpenError::NoInheritedFd(var.to_string()))?;
        let raw: RawFd = value.trim().parse().map_err(|_| OpenError::NoInheritedFd(var.to_string()))?;
        // SAFETY: F_DUPFD_CLOEXEC on any integer is harmless: it fails with EBADF if it is not open.
        let dup = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(OpenError::NoInheritedFd(var.to_string()));
        }
        // SAFETY: fcntl just created `dup`, which nothing else owns.
        Self::from_fd(unsafe { OwnedFd::from_raw_fd(dup) }, kind)
    }

    /// Lets the child started by `cmd` inherit this region's descriptor, named in its variable `var`.
    pub(crate) fn share_with(&self, cmd: &mut std::process::Command, var: &str) {
        crate::process::pass_fd(cmd, self.file.as_raw_fd(), var)
    }

    /// The file path of a named region that this value will unlink.
    pub(crate) fn unlink_path(&self) -> Option<&Path> {
        self.unlink.as_deref()
    }
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        if let Some(path) = &self.unlink {
            let _ = std::fs::remove_file(path);
        }
    }
}

// SAFETY: `map` is a live mapping of `kind.data_offset() + config.capacity` bytes whose header was
// validated against exactly these sizes and this kind (or written by us), page-aligned; it stays mapped
// while `self` lives.
unsafe impl Storage for ShmRegion {
    #[inline(always)]
    fn kind(&self) -> RingKind {
        self.kind
    }
    #[inline(always)]
    fn control_page(&self) -> *const u8 {
        self.map.as_ptr()
    }
    #[inline(always)]
    fn data(&self) -> *mut u8 {
        // SAFETY: the data offset is inside the mapping (its size was checked).
        unsafe { self.map.as_mut_ptr().add(self.kind.data_offset()) }
    }
    #[inline(always)]
    fn config(&self) -> RingConfig {
        self.config
    }
    #[inline(always)]
    fn flags(&self) -> u32 {
        self.flags
    }
    fn claim(&self, lock: u32, _state: &AtomicU32) -> Result<Option<RoleToken>, AttachError> {
        debug_assert!((lock as i64) < LOCK_BYTES);
        let as_attach = |e: OpenError| match e {
            OpenError::Io { op, source } => AttachError::Io { op, source },
            other => AttachError::Io { op: "lock", source: io::Error::other(other.to_string()) },
        };
        let fd = reopen(&self.file).map_err(as_attach)?;
        if !try_lock(&fd, lock as i64, 1).map_err(as_attach)? {
            return Ok(None);
        }
        Ok(Some(RoleToken(Some(fd))))
    }
    fn alive(&self, lock: u32, _state: &AtomicU32) -> bool {
        // On error assume alive: a failing liveness probe must not make us drop messages.
        is_locked(&self.file, lock as i64).unwrap_or(true)
    }
}

/// Checks a ring name: 1 to 200 characters from `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), OpenError> {
    let bad = |reason| Err(OpenError::InvalidName { name: name.to_string(), reason });
    if name.is_empty() || name.len() > 200 {
        return bad("must be 1 to 200 characters");
    }
    if name == "." || name == ".." {
        return bad("must not be . or ..");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return bad(if c == '/' { "must not contain /" } else { "may only use A-Z a-z 0-9 . _ -" });
    }
    Ok(())
}

fn io_err(op: &'static str, source: io::Error) -> OpenError {
    if source.raw_os_error() == Some(libc::ENOSPC) {
        return OpenError::NoSpace;
    }
    OpenError::Io { op, source }
}

fn open_errno(e: io::Error, path: &Path) -> OpenError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound(path.to_path_buf()),
        Some(libc::ELOOP) => OpenError::Symlink(path.to_path_buf()),
        _ => io_err("open", e),
    }
}

/// `open(2)` with O_NOFOLLOW | O_CLOEXEC added and mode 0600 for creation.
fn open_file(path: &Path, flags: i32) -> io::Result<File> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a valid NUL-terminated path; open returns a new fd or -1.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this fd, which nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Refuses anything but a regular file owned by our effective uid.
fn check_file(file: &File) -> Result<(), OpenError> {
    let meta = file.metadata().map_err(|e| io_err("fstat", e))?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotRegularFile);
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(OpenError::WrongOwner { owner: meta.uid(), expected: me });
    }
    Ok(())
}

/// Sets the file to `total` bytes and allocates them now, so that a full tmpfs is an error here rather
/// than a SIGBUS at the first touch of a page.
fn size_file(file: &File, total: u64) -> Result<(), OpenError> {
    file.set_len(total).map_err(|e| io_err("ftruncate", e))?;
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, total as libc::off_t) };
    if r != 0 {
        return Err(io_err("posix_fallocate", io::Error::from_raw_os_error(r)));
    }
    Ok(())
}

/// Sizes, maps and initialises a freshly created (or reclaimed) named file.
fn init_region<C: ControlBlock>(
    file: File,
    config: RingConfig,
    asymmetric: bool,
    flags: u32,
) -> Result<ShmRegion, OpenError> {
    // Whatever the umask said, the ring is readable and writable by its owner only.
    // SAFETY: plain syscall on an fd we own.
    if unsafe { libc::fchmod(file.as_raw_fd(), 0o600) } < 0 {
        return Err(io_err("fchmod", io::Error::last_os_error()));
    }
    size_file(&file, (C::KIND.data_offset() + config.capacity) as u64)?;
    init_mapped::<C>(file, config, asymmetric, flags)
}

/// Maps a sized file and writes a fresh control block into it.
fn init_mapped<C: ControlBlock>(
    file: File,
    config: RingConfig,
    asymmetric: bool,
    flags: u32,
) -> Result<ShmRegion, OpenError> {
    let data_offset = C::KIND.data_offset();
    let total = data_offset + config.capacity;
    let asymmetric = asymmetric && crate::sync::asymmetric_barrier_available();
    let flags = flags | if asymmetric { FLAG_ASYMMETRIC_FENCES } else { 0 };
    let map = MmapOptions::new().len(total).populate().map_raw(&file).map_err(|e| io_err("mmap", e))?;
    let control = C::new(Header::new(C::KIND, config, flags), config);
    // SAFETY: the mapping is `total` >= data_offset >= size_of::<C>() bytes, page-aligned, and not yet
    // visible to any other endpoint (a new file, or one whose lock bytes we hold; openers check the
    // magic, published last).
    unsafe {
        // Zero the control pages and the whole data area before publishing: both algorithms read zero
        // as "nothing here yet" (a reclaimed file may hold an old ring's bytes).
        std::ptr::write_bytes(map.as_mut_ptr(), 0, total);
        (map.as_mut_ptr() as *mut C).write(control);
    }
    let region = ShmRegion { map, kind: C::KIND, file, config, flags, unlink: None };
    crate::ring::publish(region.control::<C>());
    Ok(region)
}

/// Maps an existing ring file and validates its header against the file's real size before anything
/// else is touched.
fn map_existing(file: File, kind: RingKind) -> Result<ShmRegion, OpenError> {
    let size = file.metadata().map_err(|e| io_err("fstat", e))?.len();
    // Every kind's control pages and smallest data area; the header says which kind it really is.
    let min = (RingKind::Spsc.data_offset() + 4096) as u64;
    if size < min {
        return Err(OpenError::Truncated { size, min });
    }
    if size > (crate::ring::slots::DATA_OFFSET as u64) + (1 << 40) {
        return Err(OpenError::BadHeader("file larger than any ring"));
    }
    let map = MmapOptions::new().len(size as usize).populate().map_raw(&file).map_err(|e| io_err("mmap", e))?;
    let (found, config, flags) = validate_header(map.as_ptr(), size)?;
    if found != kind {
        return Err(OpenError::WrongKind(found as u32));
    }
    Ok(ShmRegion { map, kind, file, config, flags, unlink: None })
}

/// Reads every header field exactly once and checks it. `base` maps `size` >= one page.
fn validate_header(base: *const u8, size: u64) -> Result<(RingKind, RingConfig, u32), OpenError> {
    let h = base as *const Header;
    // SAFETY: the mapping holds at least DATA_OFFSET bytes, more than a Header, at a page-aligned address.
    // `magic` is read through its atomic; the other fields with volatile reads, since a peer may be
    // writing them: each value is copied once into a local and only the local is used.
    let (magic, version, kind, total_len, data_offset, capacity, max_message, flags) = unsafe {
        (
            // SYNC POINT: Acquire pairs with the creator's Release store in Control::publish.
            (*h).magic.load(Ordering::Acquire),
            std::ptr::addr_of!((*h).version).read_volatile(),
            std::ptr::addr_of!((*h).kind).read_volatile(),
            std::ptr::addr_of!((*h).total_len).read_volatile(),
            std::ptr::addr_of!((*h).data_offset).read_volatile(),
            std::ptr::addr_of!((*h).capacity).read_volatile(),
            std::ptr::addr_of!((*h).max_message).read_volatile(),
            std::ptr::addr_of!((*h).flags).read_volatile(),
        )
    };
    if magic == 0 {
        return Err(OpenError::Uninitialized);
    }
    if magic != MAGIC {
        return Err(OpenError::BadMagic(magic));
    }
    if version != LAYOUT_VERSION {
        return Err(OpenError::Version { found: version, expected: LAYOUT_VERSION });
    }
    let Some(kind) = RingKind::from_u32(kind) else {
        return Err(OpenError::WrongKind(kind));
    };
    let data_offset_want = kind.data_offset() as u64;
    if data_offset != data_offset_want {
        return Err(OpenError::BadHeader("data offset"));
    }
    let config = RingConfig { capacity: capacity as usize, max_message: max_message as usize };
    if capacity > 1 << 40 {
        return Err(OpenError::BadHeader("capacity"));
    }
    config.validate_for(kind).map_err(|e| match e {
        ConfigError::Capacity(_) => OpenError::BadHeader("capacity"),
        ConfigError::MaxMessage { .. } => OpenError::BadHeader("max message size"),
    })?;
    if total_len != data_offset_want + capacity || total_len != size {
        return Err(OpenError::SizeMismatch { header: total_len, file: size });
    }
    if flags & !crate::ring::known_flags(kind) != 0 {
        return Err(OpenError::BadHeader("unknown flags"));
    }
    Ok((kind, config, flags))
}

/// A new open file description of the same file (through /proc), close-on-exec, for a role lock.
fn reopen(file: &File) -> Result<OwnedFd, OpenError> {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_err("reopen", e))?;
    Ok(f.into())
}

fn flock(kind: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

/// Tries to take an OFD write lock on `[start, start + len)`; `Ok(false)` if someone else holds it.
fn try_lock(fd: &impl AsRawFd, start: i64, len: i64) -> Result<bool, OpenError> {
    let fl = flock(libc::F_WRLCK, start, len);
    // SAFETY: F_OFD_SETLK reads the flock struct we pass by pointer; it lives across the call.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(io_err("F_OFD_SETLK", e)),
    }
}

/// Whether any open file description holds a lock on byte `start`.
fn is_locked(fd: &impl AsRawFd, start: i64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK, start, 1);
    // SAFETY: F_OFD_GETLK reads and writes the flock struct we pass by pointer.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}
