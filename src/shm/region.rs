//! A mapped region: creating, sizing and initialising it, mapping and validating an existing one, and
//! the [`Storage`] implementation the rings run on.

use super::file::*;
use super::OpenError;
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
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A mapped ring region (the [`Storage`] behind shared-memory endpoints).
#[derive(Debug)]
pub struct ShmRegion {
    pub(crate) map: MmapRaw,
    /// The ring kind in the header (validated copy).
    pub(crate) kind: RingKind,
    /// The descriptor the region was mapped from. It holds no lock, so `F_OFD_GETLK` on it sees every
    /// endpoint's lock, ours included.
    pub(crate) file: File,
    pub(crate) config: RingConfig,
    /// The header flags, validated copy.
    pub(crate) flags: u32,
    /// Set for a named ring whose file this value unlinks when dropped.
    pub(crate) unlink: Option<PathBuf>,
    /// Whether the file had a name when mapped (a named ring, not a memfd). An endpoint attaching to a
    /// named ring whose file has since been removed (`ringwire clean`) is refused: it would hold a ring
    /// nobody else can find.
    pub(crate) linked: bool,
}

/// Whether `file` has at least one name in the filesystem.
fn has_name(file: &File) -> bool {
    file.metadata().map(|m| std::os::unix::fs::MetadataExt::nlink(&m) > 0).unwrap_or(false)
}

/// Lock bytes of the region file that endpoints may hold: SPSC uses bytes 0 and 1, the slot rings one
/// byte per participant slot.
pub(crate) const LOCK_BYTES: i64 = 4096;

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
        // A cleaner removes a ring only while it holds every lock byte, so once we hold ours either the
        // file still has its name (and the cleaner will find us) or it was removed before: refuse then.
        if self.linked && !has_name(&self.file) {
            return Err(AttachError::Io {
                op: "attach",
                source: io::Error::new(io::ErrorKind::NotFound, "the ring was removed (ringwire clean)"),
            });
        }
        Ok(Some(RoleToken(Some(fd))))
    }
    fn alive(&self, lock: u32, _state: &AtomicU32) -> bool {
        // On error assume alive: a failing liveness probe must not make us drop messages.
        is_locked(&self.file, lock as i64).unwrap_or(true)
    }
}

/// Sizes, maps and initialises a freshly created (or reclaimed) named file.
pub(crate) fn init_region<C: ControlBlock>(
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
pub(crate) fn init_mapped<C: ControlBlock>(
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
    let linked = has_name(&file);
    let region = ShmRegion { map, kind: C::KIND, file, config, flags, unlink: None, linked };
    crate::ring::publish(region.control::<C>());
    Ok(region)
}

/// Maps an existing ring file and validates its header against the file's real size before anything
/// else is touched.
pub(crate) fn map_existing(file: File, kind: RingKind) -> Result<ShmRegion, OpenError> {
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
    let linked = has_name(&file);
    Ok(ShmRegion { map, kind, file, config, flags, unlink: None, linked })
}

/// Reads every header field exactly once and checks it. `base` maps `size` >= one page.
pub(crate) fn validate_header(base: *const u8, size: u64) -> Result<(RingKind, RingConfig, u32), OpenError> {
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
