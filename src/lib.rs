//! ringwire: lock-free shared-memory rings for latency-sensitive programs.
//!
//! The crate is layered; each layer only uses the ones above it:
//!
//! 1. `sync` (private): the atomics / futex facade, swapped for loom under
//!    `cfg(ringwire_loom)`.
//! 2. [`ring`]: the ring algorithms ([`spsc`]), generic over a [`Storage`](ring::Storage).
//! 3. [`shm`] (memory regions: named `/dev/shm` files, sealed memfds, role locks) and [`wait`]
//!    (spin / yield / futex strategies and the sleep-wake protocol).
//! 4. [`frame`]: the frame header shared by the ring and every transport, and the stream codec.
//! 5. [`transport`]: one `Sender` / `Receiver` interface over the ring, pipes, sockets, UDP, child stdio,
//!    inherited socketpairs, WebSocket and Redis.
//! 6. The `ringwire` binary (`src/main.rs`, `src/cli/`): `ringwire bench`, `echo`, `cat`.
//!
//! # In one process (threads)
//!
//! ```
//! let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
//! std::thread::spawn(move || tx.send(b"hello").unwrap());
//! assert_eq!(&*rx.recv()?, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Across processes
//!
//! See [`ShmRing`]: create a named ring (or an anonymous memfd one that a child inherits), attach a
//! producer on one side and a consumer on the other.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub(crate) mod sync;

pub mod frame;
pub mod ring;
pub mod shm;
#[cfg(feature = "transport")]
pub mod transport;
pub mod wait;

pub use ring::{broadcast, mpmc, spsc};
pub use ring::{ConfigError, RingConfig, RingKind, Role};
pub use shm::{ShmBroadcast, ShmOptions, ShmQueue, ShmRing};
pub use spsc::{RecvError, SendError};
pub use wait::WaitStrategy;

use std::path::PathBuf;

fn kind_name(kind: u32) -> String {
    ring::RingKind::from_u32(kind).map_or_else(|| "unknown".to_string(), |k| k.to_string())
}

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
    #[error("the region holds a ring of kind {0} ({name}), not the kind asked for", name = kind_name(*.0))]
    WrongKind(u32),
    /// A header field has an impossible value.
    #[error("invalid header field: {0}")]
    BadHeader(&'static str),
    /// The cursors or records in the ring are impossible.
    #[error("ring corrupted: {0}")]
    Corrupt(spsc::Corruption),
    /// Another live endpoint already holds this role.
    #[error("the {0} role is already taken")]
    RoleTaken(Role),
    /// Every participant entry of an MPMC or broadcast ring is taken
    /// ([`MAX_PARTICIPANTS`](ring::slots::MAX_PARTICIPANTS) endpoints are attached).
    #[error("the ring has no free participant entry")]
    Full,
    /// The ring uses asymmetric fences but this process can't register for `membarrier` (old kernel or
    /// a seccomp filter). Create the ring with `ShmOptions::asymmetric_fences(false)` instead.
    #[error("this process cannot use membarrier, which the ring's asymmetric fences require")]
    Membarrier,
    /// The shared-memory filesystem is full.
    #[error("no space left for the ring")]
    NoSpace,
    /// Any other system error.
    #[error("{op}: {source}")]
    Io {
        /// The failing operation.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}
