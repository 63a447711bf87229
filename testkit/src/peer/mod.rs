//! The fault-injecting test peers of the `ringwire-testpeer` binary, and the typed description that a
//! test (the parent) and the peer (the child) share.
//!
//! A peer's command line is `ringwire-testpeer FAMILY MODE [OPTIONS]`: the family and mode are
//! [`TestPeer`] (one enum per family, parsed by clap on the child side and matched exhaustively), the
//! options are each family's clap `Args` struct, defined once here for both halves. `bench` runs the
//! very peers `ringwire bench` uses ([`ringwire_cli::peer::PeerArgs`]).

pub mod misbehave;
pub mod ring;
pub mod slots;

use clap::Parser;
use std::process::Command;

/// Errors of a peer: a message on stderr and a failed exit.
pub type PeerResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Which peer to run: the family, with its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestPeer {
    /// An SPSC ring endpoint ([`ring`]).
    Ring(ring::Mode),
    /// An MPMC or broadcast endpoint ([`slots`]).
    Slots(slots::Mode),
    /// A transport peer that misbehaves in one specific way ([`misbehave`]).
    Misbehave(misbehave::Mode),
}

impl From<ring::Mode> for TestPeer {
    fn from(m: ring::Mode) -> Self {
        TestPeer::Ring(m)
    }
}
impl From<slots::Mode> for TestPeer {
    fn from(m: slots::Mode) -> Self {
        TestPeer::Slots(m)
    }
}
impl From<misbehave::Mode> for TestPeer {
    fn from(m: misbehave::Mode) -> Self {
        TestPeer::Misbehave(m)
    }
}

fn value_name<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value().expect("no skipped variants").get_name().to_string()
}

impl TestPeer {
    /// The family and mode arguments.
    pub fn args(self) -> [String; 2] {
        match self {
            TestPeer::Ring(m) => ["ring".into(), value_name(m)],
            TestPeer::Slots(m) => ["slots".into(), value_name(m)],
            TestPeer::Misbehave(m) => ["misbehave".into(), value_name(m)],
        }
    }
}

/// The `ringwire-testpeer` binary: the executable next to the running test or bench's own directory
/// (`target/PROFILE/deps/TEST` → `target/PROFILE/ringwire-testpeer`), which cargo builds with every test
/// and bench of this crate.
pub fn bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    let dir = exe.parent().and_then(|d| if d.ends_with("deps") { d.parent() } else { Some(d) });
    let bin = dir.expect("executable directory").join("ringwire-testpeer");
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p ringwire-testkit`", bin.display());
    bin
}

/// A command running test peer `peer` (add the mode's options with `.args`).
pub fn command(peer: impl Into<TestPeer>) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(peer.into().args());
    cmd
}

/// A command running the bench peer `args` (what `ringwire __peer` runs).
pub fn bench_command(args: &ringwire_cli::peer::PeerArgs) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("bench").args(args.to_args());
    cmd
}

#[derive(Parser, Debug)]
#[command(name = "ringwire-testpeer")]
enum Cli {
    /// A `ringwire bench` peer.
    Bench(ringwire_cli::peer::PeerArgs),
    /// An SPSC ring endpoint.
    Ring(ring::Args),
    /// An MPMC or broadcast endpoint.
    Slots(slots::Args),
    /// A transport peer that misbehaves.
    Misbehave(misbehave::Args),
}

/// The child side: parses the command line and runs the peer.
pub fn main() -> std::process::ExitCode {
    // Die with the parent: a test peer must never outlive the test that started it.
    // SAFETY: prctl(PR_SET_PDEATHSIG) has no memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let result = match Cli::parse() {
        Cli::Bench(args) => ringwire_cli::peer::run(args),
        Cli::Ring(args) => ring::run(args),
        Cli::Slots(args) => slots::run(args),
        Cli::Misbehave(args) => misbehave::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringwire-testpeer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints one line on stdout and flushes it (how peers tell the test where they are).
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Blocks until the process is killed.
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}
