//! Small helpers every part of the command shares: errors, pinning, the benchmark message stream.

use ringwire::WaitStrategy;

/// Errors of the command line tools: a message for the user.
pub type CliResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Pins the calling thread to `cpu` if the machine has it; returns whether it did.
pub fn pin_to(cpu: usize) -> bool {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    if cpu >= available_cpus() {
        return false;
    }
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// CPUs online on the machine (not the affinity mask: after pinning, that would say 1).
pub fn available_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// The message `seq` of a benchmark stream: `base` with the sequence number in its first 8 bytes.
#[inline]
pub fn stamp(buf: &mut [u8], base: &[u8], seq: u64) {
    buf.copy_from_slice(base);
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Whether `msg` is exactly message `seq` of a stream built on `base`.
#[inline]
pub fn verify(msg: &[u8], base: &[u8], seq: u64) -> bool {
    let n = base.len().min(8);
    msg.len() == base.len() && msg[..n] == seq.to_le_bytes()[..n] && msg[n..] == base[n..]
}

/// A deterministic, non-constant payload of `size` bytes.
pub fn base_payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i as u32).wrapping_mul(2654435761).rotate_right(13) as u8).collect()
}

/// Parses a `--wait` value: `spin`, `yield` or `adaptive`.
pub fn parse_wait(s: &str) -> CliResult<WaitStrategy> {
    Ok(match s {
        "spin" => WaitStrategy::Spin,
        "yield" => WaitStrategy::SpinYield,
        // A ring's blocking wait is the adaptive one (spin briefly, then sleep on the futex).
        "adaptive" | "block" => WaitStrategy::default(),
        other => return Err(format!("unknown wait strategy {other:?} (spin, yield, adaptive, block)").into()),
    })
}

/// Parses a `--wait` value for a kernel transport: `block` (poll at once), `spin` (busy-poll the
/// syscall), `adaptive` (busy-poll 50 µs, then poll).
pub fn parse_io_wait(s: &str) -> CliResult<ringwire::transport::IoWait> {
    use ringwire::transport::IoWait;
    Ok(match s {
        "block" => IoWait::Block,
        "spin" => IoWait::Spin,
        "adaptive" => IoWait::Adaptive { spin: std::time::Duration::from_micros(50) },
        other => return Err(format!("unknown wait {other:?} for a kernel transport (block, spin, adaptive)").into()),
    })
}
