//! A read-only look at a ring's control block, for operator tools (`ringwire ls`, `ringwire inspect`):
//! cursors, endpoint states and pids, the participant table, counters. Only loads, never a store; every
//! value is read once and reported as found (a ring being written concurrently gives a snapshot that may
//! mix moments, which is fine for a report and is never acted upon).

use super::slots::{self, SlotControl, MAX_PARTICIPANTS};
use super::spsc::Control as SpscControl;
use super::{endpoint, RingConfig, RingKind, Role};
use crate::sync::Ordering;

/// What one attached (or once attached) endpoint looks like in the control block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSnapshot {
    /// The lock byte of its claim (SPSC: 0 producer, 1 consumer; slot rings: the participant index):
    /// whether the endpoint is alive is whether this byte of the region file is locked.
    pub lock: u32,
    /// `producer`, `consumer`, `publisher` or `subscriber` (`unknown` for a corrupted role word).
    pub role: &'static str,
    /// `attached`, `closed` or `vacant` (`unknown` for a corrupted state word).
    pub state: &'static str,
    /// The process id it recorded when it attached (0 if none).
    pub pid: u32,
    /// Broadcast subscribers: the next position they will read (lag = tail - cursor).
    pub cursor: Option<u64>,
}

/// A ring's control block, read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The ring kind.
    pub kind: RingKind,
    /// The validated sizes.
    pub config: RingConfig,
    /// SPSC: the producer's committed-position hint (bytes since creation). Slot rings: the next
    /// position a writer claims (messages since creation).
    pub tail: u64,
    /// SPSC: the consumer's published read position (bytes). MPMC: the next position a consumer
    /// claims. Broadcast: unused (0).
    pub head: u64,
    /// Slot rings: the number of slots (`None` for SPSC).
    pub slots: Option<u64>,
    /// Every endpoint entry that is not vacant.
    pub endpoints: Vec<EndpointSnapshot>,
    /// Slot rings: positions skipped because their writer died mid-message.
    pub skipped: u64,
    /// Slot rings: slots released because their reader died holding them.
    pub reclaimed: u64,
}

fn state_name(s: u32) -> &'static str {
    match s {
        endpoint::VACANT => "vacant",
        endpoint::ATTACHED => "attached",
        endpoint::CLOSED => "closed",
        _ => "unknown",
    }
}

fn role_name(r: u32) -> &'static str {
    match r {
        slots::role::PRODUCER => "producer",
        slots::role::CONSUMER => "consumer",
        slots::role::PUBLISHER => "publisher",
        slots::role::SUBSCRIBER => "subscriber",
        _ => "unknown",
    }
}

/// Reads the control block at `control` of a ring of `kind` and `config` (from a validated header).
///
/// # Safety
///
/// `control` points to at least `kind.data_offset()` readable bytes, aligned to a page, that stay mapped
/// for the call (writable or not: only loads are made).
pub unsafe fn snapshot(control: *const u8, kind: RingKind, config: RingConfig) -> Snapshot {
    // Relaxed everywhere: a report of values as found, never used to read ring data.
    match kind {
        RingKind::Spsc => {
            // SAFETY: the caller guarantees the page; `Control` is repr(C), valid for any bit pattern
            // (atomics and integers), and fits in the first page (const-asserted with its definition).
            let c = unsafe { &*(control as *const SpscControl) };
            let endpoints = [Role::Producer, Role::Consumer]
                .into_iter()
                .filter_map(|role| {
                    let state = c.state(role).load(Ordering::Relaxed);
                    (state != endpoint::VACANT).then(|| EndpointSnapshot {
                        lock: super::spsc::lock_of(role),
                        role: if role == Role::Producer { "producer" } else { "consumer" },
                        state: state_name(state),
                        pid: c.pid(role).load(Ordering::Relaxed),
                        cursor: None,
                    })
                })
                .collect();
            Snapshot {
                kind,
                config,
                tail: c.tail.load(Ordering::Relaxed),
                head: c.head.load(Ordering::Relaxed),
                slots: None,
                endpoints,
                skipped: 0,
                reclaimed: 0,
            }
        }
        RingKind::Mpmc | RingKind::Broadcast => {
            // SAFETY: as above; `SlotControl` fits in the slot rings' control pages (data_offset).
            let c = unsafe { &*(control as *const SlotControl) };
            let mut endpoints = Vec::new();
            for (i, p) in c.participants.iter().enumerate().take(MAX_PARTICIPANTS) {
                let state = p.state.load(Ordering::Relaxed);
                if state == endpoint::VACANT {
                    continue;
                }
                let role = p.role.load(Ordering::Relaxed);
                endpoints.push(EndpointSnapshot {
                    lock: i as u32,
                    role: role_name(role),
                    state: state_name(state),
                    pid: p.pid.load(Ordering::Relaxed),
                    cursor: (role == slots::role::SUBSCRIBER).then(|| p.cursor.load(Ordering::Relaxed)),
                });
            }
            Snapshot {
                kind,
                config,
                tail: c.tail.load(Ordering::Relaxed),
                head: if kind == RingKind::Mpmc { c.head.load(Ordering::Relaxed) } else { 0 },
                slots: slots::Geometry::of(config).map(|g| g.slots),
                endpoints,
                skipped: c.stats.skipped.load(Ordering::Relaxed),
                reclaimed: c.stats.reclaimed.load(Ordering::Relaxed),
            }
        }
    }
}
