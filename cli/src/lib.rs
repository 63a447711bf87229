//! The `ringwire` command: `ringwire bench` (every transport measured side by side against the
//! hardware floor), `ringwire echo` and `ringwire cat`.
//!
//! Modules, each using only those listed before it (no cycles):
//!
//! * [`util`]: errors, CPU pinning, the benchmark message stream.
//! * [`probe`]: both halves of the bare-hardware `limit` probe.
//! * [`peer`]: the far side of every benchmark row (`ringwire __peer MODE`, a typed [`peer::PeerMode`]
//!   both halves share), and [`peer::connect`], which starts a peer and reaches it over one transport
//!   adapter.
//! * [`bench`](mod@bench): `ringwire bench` — plan, rows, report, plot.
//! * [`tools`]: `ringwire echo` and `ringwire cat`.
//! * [`hub`](mod@hub): `ringwire hub`, the socket.io-style chat server.
//! * [`ops`]: `ringwire ls`, `inspect`, `clean`, `pub`, `sub`, `send`, `recv` (named rings of this host).
//!
//! This crate is a library as well as the binary so that the dev-only `ringwire-testkit` crate can run
//! the same peers and connect to them the same way in the test suites and criterion benches.

pub mod bench;
pub mod hub;
pub mod ops;
pub mod peer;
pub mod probe;
pub mod tools;
pub mod util;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub use util::CliResult;

#[derive(Parser, Debug)]
#[command(name = "ringwire", version, about = "Lock-free shared-memory messaging, measured against the hardware floor")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure round-trip latency and streaming throughput of each transport, each row next to a
    /// bare-hardware probe taken right before and after it.
    Bench(bench::BenchArgs),
    /// Serve an echo endpoint: every frame received is sent back (tcp, unix, udp, shm, websocket, redis, amqp).
    Echo(tools::EchoArgs),
    /// Send each line of stdin as one frame and print each frame received as a line (tcp, unix, udp, shm,
    /// websocket, redis, amqp).
    Cat(tools::CatArgs),
    /// Serve the socket.io-style hub: chat page at /, JavaScript client at /client.js, WebSocket at /ws
    /// (rooms, broadcasts, acks, token and origin checks, heartbeats, limits).
    Hub(hub::HubArgs),
    /// List every ringwire region on this host (/dev/shm): kind, sizes, fill, endpoints (pid, alive),
    /// subscriber lag, counters.
    Ls(ops::LsArgs),
    /// Show one region: header, cursors, states, counters, participant table. Never writes.
    Inspect(ops::InspectArgs),
    /// Remove regions nothing uses any more (every endpoint dead, creator gone); prints what it removed.
    Clean(ops::CleanArgs),
    /// Publish each stdin line on a broadcast ring.
    Pub(ops::RingArgs),
    /// Print every message of a broadcast ring from now on, one per line.
    Sub(ops::RingArgs),
    /// Send each stdin line into a queue (SPSC or MPMC ring).
    Send(ops::RingArgs),
    /// Print every message of a queue (SPSC or MPMC ring), one per line.
    Recv(ops::RingArgs),
    /// Internal: the far side of a benchmark row (spawned by `ringwire bench`).
    #[command(name = "__peer", hide = true)]
    Peer(peer::PeerArgs),
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Command::Bench(args) => bench::run(args),
        Command::Echo(args) => tools::echo(args),
        Command::Cat(args) => tools::cat(args),
        Command::Hub(args) => hub::run(args),
        Command::Ls(args) => ops::ls(args),
        Command::Inspect(args) => ops::inspect_cmd(args),
        Command::Clean(args) => ops::clean(args),
        Command::Pub(args) => ops::publish(args),
        Command::Sub(args) => ops::subscribe(args),
        Command::Send(args) => ops::send(args),
        Command::Recv(args) => ops::recv(args),
        Command::Peer(args) => peer::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `ringwire ls | head`: the reader left; nothing more to say.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringwire: {e}");
            ExitCode::FAILURE
        }
    }
}
