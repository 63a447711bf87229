//! The `limit` transport: the bare cost of moving cache lines between two processes, measured the same
//! way as every other row so that each row can be quoted as a ratio to it.
//!
//! * Latency: one 8-byte counter per direction, each on its own 128-byte block of a shared page. The
//!   client stores `i` to `ping` and spins until `pong == i`; the echo process spins on `ping` and
//!   copies it to `pong`. One round trip = two cache-line transfers, nothing else.
//! * Throughput: a fixed-slot SPSC ring (Lamport queue with cached indices, one slot per message, no
//!   framing, no waiting strategy but spinning), with the same copy-in and verify-out work per message
//!   that the ring rows do.
//!
//! These probes deliberately use std atomics directly rather than the library's facade: they are the
//! yardstick, not the thing measured.
#![allow(clippy::disallowed_types)]

use crate::util::{stamp, verify, CliResult};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const PROBE_FD_VAR: &str = "RINGWIRE_PROBE_FD";
const PING: usize = 0;
const PONG: usize = 128;
const HEAD: usize = 256;
const TAIL: usize = 384;
const DONE: usize = 512;
const READY: usize = 640;
const SLOTS: usize = 4096;
/// Bytes of slot memory: the same as the ring rows' data area.
pub const SLOT_BYTES: usize = 1 << 20;
pub const STOP: u64 = u64::MAX;

/// A shared anonymous mapping (memfd) for the probes.
pub struct SharedMem {
    map: MmapRaw,
    file: File,
}

impl SharedMem {
    pub fn create() -> CliResult<Self> {
        let name = c"ringwire-probe";
        // SAFETY: `name` is NUL-terminated; memfd_create returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: memfd_create just returned this fd, owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len((SLOTS + SLOT_BYTES + 4096) as u64)?;
        let map = MmapOptions::new().map_raw(&file)?;
        Ok(SharedMem { map, file })
    }

    pub fn from_env() -> CliResult<Self> {
        let fd: i32 = std::env::var(PROBE_FD_VAR)?.parse()?;
        // SAFETY: the parent passed us this fd for our exclusive use (see bench::spawn_peer).
        let file = unsafe { File::from_raw_fd(fd) };
        let map = MmapOptions::new().map_raw(&file)?;
        if map.len() < SLOTS + SLOT_BYTES {
            return Err("probe mapping too small".into());
        }
        Ok(SharedMem { map, file })
    }

    pub fn pass_to(&self, cmd: &mut std::process::Command) {
        ringwire::process::pass_fd(cmd, self.file.as_raw_fd(), PROBE_FD_VAR);
    }

    fn atomic(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off + 8 <= SLOTS);
        // SAFETY: `off` is an aligned offset inside the mapping (which is page-aligned and lives as long
        // as `self`); the word is only accessed atomically by both processes.
        unsafe { &*(self.map.as_ptr().add(off) as *const AtomicU64) }
    }

    fn slots(&self) -> *mut u8 {
        // SAFETY: SLOTS + SLOT_BYTES is within the mapping (checked at creation / from_env).
        unsafe { self.map.as_mut_ptr().add(SLOTS) }
    }
}

/// Spins until `cond` holds, failing if the peer process exits first or `limit` passes.
fn spin_until(child: &mut Child, limit: Duration, mut cond: impl FnMut() -> bool) -> CliResult {
    let start = Instant::now();
    let mut n: u32 = 0;
    while !cond() {
        std::hint::spin_loop();
        n = n.wrapping_add(1);
        if n % (1 << 16) == 0 {
            if let Some(status) = child.try_wait()? {
                // It may have done what we wait for just before exiting (the stream's verdict is its
                // last act), after our last look.
                if cond() {
                    return Ok(());
                }
                return Err(format!("probe peer exited early: {status}").into());
            }
            if start.elapsed() > limit {
                return Err("probe peer stopped answering".into());
            }
        }
    }
    Ok(())
}

/// Slot geometry for messages of `size` bytes.
pub fn slot_geometry(size: usize) -> (usize, usize) {
    let slot = size.max(8).next_multiple_of(8);
    let count = (SLOT_BYTES / slot).next_power_of_two() / 2;
    (slot, count.max(2))
}

/// Client side of the latency probe: `warmup + samples` round trips, recording the last `samples`.
pub fn latency(
    mem: &SharedMem,
    child: &mut Child,
    warmup: u64,
    samples: u64,
    mut record: impl FnMut(u64),
) -> CliResult {
    let (ping, pong) = (mem.atomic(PING), mem.atomic(PONG));
    spin_until(child, Duration::from_secs(30), || mem.atomic(READY).load(Ordering::Acquire) == 1)?;
    for i in 1..=warmup + samples {
        let t0 = Instant::now();
        ping.store(i, Ordering::Release);
        spin_until(child, Duration::from_secs(10), || pong.load(Ordering::Acquire) == i)?;
        let dt = t0.elapsed().as_nanos() as u64;
        if i > warmup {
            record(dt);
        }
    }
    ping.store(STOP, Ordering::Release);
    Ok(())
}

/// Echo side of the latency probe.
pub fn latency_peer(mem: &SharedMem) {
    let (ping, pong) = (mem.atomic(PING), mem.atomic(PONG));
    mem.atomic(READY).store(1, Ordering::Release);
    let mut last = 0;
    loop {
        let v = ping.load(Ordering::Acquire);
        if v == STOP {
            return;
        }
        if v != last {
            pong.store(v, Ordering::Release);
            last = v;
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Producer side of the throughput probe: streams `count` messages of `base.len()` bytes and returns
/// the time from the first send to the consumer's verdict.
pub fn stream(mem: &SharedMem, child: &mut Child, base: &[u8], count: u64) -> CliResult<Duration> {
    let (slot, nslots) = slot_geometry(base.len());
    let (head, tail) = (mem.atomic(HEAD), mem.atomic(TAIL));
    spin_until(child, Duration::from_secs(30), || mem.atomic(READY).load(Ordering::Acquire) == 1)?;
    let t0 = Instant::now();
    let mut cached_head = 0u64;
    for i in 0..count {
        if i - cached_head == nslots as u64 {
            spin_until(child, Duration::from_secs(10), || {
                cached_head = head.load(Ordering::Acquire);
                i - cached_head < nslots as u64
            })?;
        }
        let idx = (i as usize) & (nslots - 1);
        // SAFETY: slot `idx` lies within the slot area, and the consumer has released it (head > i - nslots).
        let dst = unsafe { std::slice::from_raw_parts_mut(mem.slots().add(idx * slot), base.len()) };
        stamp(dst, base, i);
        tail.store(i + 1, Ordering::Release);
    }
    let done = mem.atomic(DONE);
    spin_until(child, Duration::from_secs(30), || done.load(Ordering::Acquire) != 0)?;
    let elapsed = t0.elapsed();
    if done.load(Ordering::Acquire) != 1 {
        return Err("bare ring probe: consumer saw a wrong message".into());
    }
    Ok(elapsed)
}

/// Consumer side of the throughput probe.
pub fn stream_peer(mem: &SharedMem, size: usize, count: u64) {
    let base = crate::util::base_payload(size);
    let (slot, nslots) = slot_geometry(size);
    let (head, tail) = (mem.atomic(HEAD), mem.atomic(TAIL));
    mem.atomic(READY).store(1, Ordering::Release);
    let mut cached_tail = 0u64;
    let mut ok = true;
    for i in 0..count {
        while cached_tail == i {
            cached_tail = tail.load(Ordering::Acquire);
            if cached_tail == i {
                std::hint::spin_loop();
            }
        }
        let idx = (i as usize) & (nslots - 1);
        // SAFETY: slot `idx` is within the slot area and was published by the producer (tail > i).
        let src = unsafe { std::slice::from_raw_parts(mem.slots().add(idx * slot), size) };
        ok &= verify(src, &base, i);
        head.store(i + 1, Ordering::Release);
    }
    mem.atomic(DONE).store(if ok { 1 } else { 2 }, Ordering::Release);
}
