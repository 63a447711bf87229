//! Why a shared-memory region could not be created or opened: file, descriptor and header problems,
//! and (wrapped) the ring layer's attach errors.

use crate::ring::{AttachError, ConfigError};
use std::path::PathBuf;

/// Why a ring could not be created, opened or attached to.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The ring name is not acceptable.
    #[error("invalid ring name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The requested sizes are invalid.
    #[error(transparent)]
    Config(ConfigError),
    /// Something already exists at the name (and reuse was not asked for).
    #[error("{0} already exists")]
    AlreadyExists(PathBuf),
    /// The name is a symbolic link; rings never follow links.
    #[error("{0} is a symbolic link")]
    Symlink(PathBuf),
    /// No ring at the name.
    #[error("{0} not found")]
    NotFound(PathBuf),
    /// The file is not a regular file.
    #[error("not a regular file")]
    NotRegularFile,
    /// The file belongs to another user.
    #[error("file owned by uid {owner}, expected {expected}")]
    WrongOwner {
        /// The file's owner.
        owner: u32,
        /// Our effective uid.
        expected: u32,
    },
    /// Reuse was asked for, but an endpoint still holds a role in the existing ring.
    #[error("{0} is in use")]
    Busy(PathBuf),
    /// A received memfd is not sealed against shrinking and growing.
    #[error("memfd lacks F_SEAL_SHRINK|F_SEAL_GROW (seals {seals:#x})")]
    MissingSeals {
        /// The seals found.
        seals: i32,
    },
    /// The environment variable naming an inherited ring is missing, not a number, or not an open fd.
    #[error("no inherited ring descriptor in ${0}")]
    NoInheritedFd(String),
    /// The file is too small to hold a ring.
    #[error("file of {size} bytes is too small for a ring (minimum {min})")]
    Truncated {
        /// File size.
        size: u64,
        /// Smallest possible ring file.
        min: u64,
    },
    /// The header's size disagrees with the file's (a truncated or resized file).
    #[error("header says {header} bytes, file has {file}")]
    SizeMismatch {
        /// Size recorded in the header.
        header: u64,
        /// Actual file size.
        file: u64,
    },
    /// The magic number is still zero: the creator has not finished initialising the ring.
    #[error("ring not initialised yet")]
    Uninitialized,
    /// Not a ringwire ring.
    #[error("bad magic number {0:#018x}")]
    BadMagic(u64),
    /// Made by an incompatible version of ringwire.
    #[error("layout version {found}, this build speaks {expected}")]
    Version {
        /// Version in the file.
        found: u32,
        /// Version of this build.
        expected: u32,
    },
    /// The region holds another kind of ring than asked for (1 SPSC, 2 MPMC, 3 broadcast; other values
    /// are unknown kinds).
    #[error("the region holds a ring of kind {0} ({name}), not the kind asked for", name = crate::ring::kind_name(*.0))]
    WrongKind(u32),
    /// A header field has an impossible value.
    #[error("invalid header field: {0}")]
    BadHeader(&'static str),
    /// The shared-memory filesystem is full.
    #[error("no space left for the ring")]
    NoSpace,
    /// The ring in the region refused the endpoint (role taken, no free participant entry,
    /// `membarrier` unavailable, corrupted cursors, ...).
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// Any other system error.
    #[error("{op}: {source}")]
    Io {
        /// The failing operation.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}
