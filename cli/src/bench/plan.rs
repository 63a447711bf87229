//! What one row of `ringwire bench` runs, and the helpers every row shares.

use crate::peer::{PeerArgs, PeerMode};
use crate::util::{available_cpus, CliResult};
use hdrhistogram::Histogram;
use std::process::{Child, Command, Stdio};

/// How many messages each measurement moves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    pub(crate) rtt_warmup: u64,
    pub(crate) rtt_samples: u64,
    pub(crate) probe_samples: u64,
    stream_small: u64,
    stream_large: u64,
}

impl Counts {
    pub(crate) fn new(quick: bool) -> Self {
        let full = Counts {
            rtt_warmup: 50_000,
            rtt_samples: 1_000_000,
            probe_samples: 200_000,
            stream_small: 10_000_000,
            stream_large: 1_000_000,
        };
        if quick {
            Counts {
                rtt_warmup: 1_000,
                rtt_samples: 10_000,
                probe_samples: 5_000,
                stream_small: 100_000,
                stream_large: 10_000,
            }
        } else {
            full
        }
    }
    pub(crate) fn stream(&self, size: usize) -> u64 {
        if size <= 512 {
            self.stream_small
        } else {
            self.stream_large
        }
    }
}

/// One row to run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) transport: &'static str,
    pub(crate) wait: &'static str,
    pub(crate) size: usize,
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// `ringwire __peer` in `mode` (this very executable), pinned to cpu 1 where there is one.
pub(crate) fn peer_command(mode: PeerMode, size: usize, count: u64, wait: &str) -> CliResult<Command> {
    let args = PeerArgs { size, count, wait: wait.into(), ..PeerArgs::new(mode) };
    let mut cmd = peer_process(&args)?;
    cmd.stdin(Stdio::null());
    Ok(cmd)
}

/// `ringwire __peer` (this very executable) running `args`, pinned to cpu 1 where there is one.
pub(crate) fn peer_process(args: &PeerArgs) -> CliResult<Command> {
    let mut args = args.clone();
    if available_cpus() >= 2 {
        args.cpu = Some(1);
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("__peer").args(args.to_args());
    Ok(cmd)
}

/// Waits for a peer and turns a failed exit into an error.
pub(crate) fn reap(mut child: Child) -> CliResult {
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("benchmark peer failed: {status}").into());
    }
    Ok(())
}
