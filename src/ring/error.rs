//! Errors of the ring layer that every ring kind shares: what an endpoint's attach can fail with, and
//! what a ring found wrong with its memory. Each ring's send and receive errors live with that ring
//! (`spsc`, `mpmc`, `broadcast`); the shared-memory layer above wraps [`AttachError`] in its own
//! `shm::OpenError`.

use super::{ConfigError, Role};

/// What the ring found wrong with its shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// Ring position where it was found (bytes since creation for SPSC, messages for the slot rings).
    pub at: u64,
    /// What was wrong.
    pub what: &'static str,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at ring position {}", self.what, self.at)
    }
}

/// Why an endpoint could not attach to a ring (any storage: heap or shared memory).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The requested sizes are invalid (in-process `channel` constructors).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage holds another kind of ring than the endpoint's (1 SPSC, 2 MPMC, 3 broadcast).
    #[error("the region holds a ring of kind {0} ({name}), not the kind asked for", name = kind_name(*.0))]
    WrongKind(u32),
    /// Another live endpoint already holds this SPSC role.
    #[error("the {0} role is already taken")]
    RoleTaken(Role),
    /// Every participant entry of an MPMC or broadcast ring is taken
    /// ([`MAX_PARTICIPANTS`](super::slots::MAX_PARTICIPANTS) endpoints are attached).
    #[error("the ring has no free participant entry")]
    Full,
    /// The ring uses asymmetric fences but this process can't register for `membarrier` (old kernel or
    /// a seccomp filter). Create the ring with `ShmOptions::asymmetric_fences(false)` instead.
    #[error("this process cannot use membarrier, which the ring's asymmetric fences require")]
    Membarrier,
    /// A header field has an impossible value for this ring kind.
    #[error("invalid header field: {0}")]
    BadHeader(&'static str),
    /// The cursors or records in the ring are impossible.
    #[error("ring corrupted: {0}")]
    Corrupt(Corruption),
    /// The storage failed to take the endpoint's lock (a system error).
    #[error("{op}: {source}")]
    Io {
        /// The failing operation.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A kind number's name, for messages.
pub(crate) fn kind_name(kind: u32) -> String {
    super::RingKind::from_u32(kind).map_or_else(|| "unknown".to_string(), |k| k.to_string())
}
