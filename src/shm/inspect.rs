//! Operator views of the named rings on this host (what `ringwire ls`, `inspect` and `clean` show and
//! do): a region is opened read-only and mapped read-only, its header validated like any opener's, its
//! control block read once ([`crate::ring::inspect`]); whether each endpoint is alive is whether its
//! lock byte is held. Nothing here writes to a ring. [`remove_if_unused`] removes a region only while it
//! holds every endpoint lock byte itself, so a process attaching at the same moment either keeps it
//! alive or is refused.

use super::file::{check_file, io_err, is_locked, open_file, try_lock};
use super::region::{validate_header, LOCK_BYTES};
use super::OpenError;
use crate::ring::inspect::{snapshot, Snapshot};
use crate::ring::MAGIC;
use memmap2::MmapOptions;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One named region, as found.
#[derive(Clone, Debug)]
pub struct RegionInfo {
    /// Its file.
    pub path: PathBuf,
    /// The control block, read once.
    pub snapshot: Snapshot,
    /// For each of `snapshot.endpoints`, whether its process is alive (its lock byte is held).
    pub alive: Vec<bool>,
    /// The creator's pid (from the header) and whether that process exists now.
    pub creator: (u32, bool),
}

impl RegionInfo {
    /// Whether anything still uses the region: a live endpoint, or its creator still running (a ring
    /// created and not yet attached to is not garbage).
    pub fn in_use(&self) -> bool {
        self.alive.iter().any(|&a| a) || self.creator.1
    }
}

/// Whether process `pid` exists (it may be another process that reused the number: then a region looks
/// in use when it is not, the safe direction).
fn process_exists(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // A zombie (dead, not yet reaped by its parent) is gone for our purpose.
    exists
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
            .unwrap_or(false)
}

/// Reads the region at `path` without writing to it: `OpenError` if it is not a valid ringwire region
/// (another file, a symlink, another user's file, a bad header).
pub fn inspect(path: &Path) -> Result<RegionInfo, OpenError> {
    let file = open_file(path, libc::O_RDONLY).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound(path.to_path_buf()),
        Some(libc::ELOOP) => OpenError::Symlink(path.to_path_buf()),
        _ => io_err("open", e),
    })?;
    inspect_file(path, &file)
}

fn inspect_file(path: &Path, file: &File) -> Result<RegionInfo, OpenError> {
    check_file(file)?;
    let size = file.metadata().map_err(|e| io_err("fstat", e))?.len();
    let min = crate::ring::RingKind::Spsc.data_offset() as u64;
    if size < min {
        return Err(OpenError::Truncated { size, min });
    }
    // The header first (one page), then the whole control area of that kind.
    let page = {
        // SAFETY: a read-only shared mapping of a regular file we opened; it is only read, and a
        // concurrent truncation by another process is the SIGBUS risk every opener of a named ring
        // takes (ARCHITECTURE.md, trust model).
        unsafe { MmapOptions::new().len(min as usize).map(file) }.map_err(|e| io_err("mmap", e))?
    };
    let (kind, config, _flags) = validate_header(page.as_ptr(), size)?;
    // SAFETY: the header was validated against the file size above.
    let creator_pid =
        unsafe { std::ptr::addr_of!((*(page.as_ptr() as *const crate::ring::Header)).creator_pid).read_volatile() };
    let control_len = kind.data_offset();
    // SAFETY: as above; `control_len` ≤ the file size (validated: total_len = data_offset + capacity).
    let control = unsafe { MmapOptions::new().len(control_len).map(file) }.map_err(|e| io_err("mmap", e))?;
    // SAFETY: `control` maps `kind.data_offset()` readable bytes at a page boundary for this call.
    let snap = unsafe { snapshot(control.as_ptr(), kind, config) };
    let alive = snap
        .endpoints
        .iter()
        .map(|e| e.state == "attached" && is_locked(file, e.lock as i64).unwrap_or(true))
        .collect();
    Ok(RegionInfo {
        path: path.to_path_buf(),
        snapshot: snap,
        alive,
        creator: (creator_pid, process_exists(creator_pid)),
    })
}

/// Whether `path` starts with the ringwire magic (so that listing skips other programs' files quietly).
fn has_magic(path: &Path) -> bool {
    let Ok(mut f) = open_file(path, libc::O_RDONLY) else { return false };
    let mut m = [0u8; 8];
    f.read_exact(&mut m).is_ok() && u64::from_le_bytes(m) == MAGIC
}

/// Every ringwire region in `dir` (regular files of ours that start with the ringwire magic), sorted by
/// name, each with what [`inspect`] found (an error for one that is damaged or half-made).
pub fn list(dir: &Path) -> std::io::Result<Vec<(PathBuf, Result<RegionInfo, OpenError>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if has_magic(&path) {
            let info = inspect(&path);
            out.push((path, info));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What [`remove_if_unused`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The region was unused and its file is gone.
    Removed,
    /// Something uses it (a live endpoint or creator); left alone.
    InUse,
}

/// Removes the region at `path` if nothing uses it: no endpoint alive and its creator gone. The file is
/// unlinked while this call holds a write lock on every endpoint lock byte, so an endpoint that attaches
/// concurrently either got its lock first (and the region is left alone) or is refused afterwards
/// (its attach sees the file was removed). A region of another kind of file is an error, never removed.
pub fn remove_if_unused(path: &Path) -> Result<Removal, OpenError> {
    let file = open_file(path, libc::O_RDWR).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound(path.to_path_buf()),
        Some(libc::ELOOP) => OpenError::Symlink(path.to_path_buf()),
        _ => io_err("open", e),
    })?;
    let info = inspect_file(path, &file)?;
    if info.in_use() {
        return Ok(Removal::InUse);
    }
    // Every endpoint lock byte, in one lock: it fails if any endpoint holds one (alive).
    if !try_lock(&file, 0, LOCK_BYTES)? {
        return Ok(Removal::InUse);
    }
    std::fs::remove_file(path).map_err(|e| io_err("unlink", e))?;
    // The lock goes with `file`.
    Ok(Removal::Removed)
}
