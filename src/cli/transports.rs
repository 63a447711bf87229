//! `ringwire bench` rows for the transports of `ringwire::transport`: each row talks to a
//! `ringwire __peer echo-<t>` (round trips) or `sink-<t>` (one-way stream) process, connected exactly as
//! the conformance tests connect them.

use super::peer::sink_ack_every;
use super::{available_cpus, base_payload, stamp, verify, CliResult};
use hdrhistogram::Histogram;
use ringwire::transport::{fork, pipe, stdio, tcp, udp, unix, Receiver, Sender};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The transports measured here, in table order.
pub const NAMES: &[&str] = &["pipe", "stdio", "fork", "unix", "tcp", "udp"];

/// A peer that does not answer for this long has failed (no row waits forever).
const STALL: Duration = Duration::from_secs(10);

/// A connected peer process (killed and reaped on drop).
struct Conn {
    tx: Box<dyn Sender>,
    rx: Box<dyn Receiver>,
    _peer: Peer,
}

enum Peer {
    /// Kept for its Drop, which kills and reaps the child if it still runs.
    Ours(#[allow(dead_code)] stdio::ChildProcess),
    Std(Child),
}

impl Drop for Peer {
    fn drop(&mut self) {
        // ChildProcess kills and reaps a child still running when dropped; do the same for the others.
        if let Peer::Std(c) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn peer_cmd(mode: &str, size: usize, count: u64) -> CliResult<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["__peer", mode, "--size", &size.to_string(), "--count", &count.to_string()]);
    cmd.args(["--max-message", &(size + 64).to_string()]);
    if available_cpus() >= 2 {
        cmd.args(["--cpu", "1"]);
    }
    Ok(cmd)
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-bench-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Connects to a fresh `echo-<t>` / `sink-<t>` peer (`role` is "echo" or "sink").
fn connect(transport: &str, role: &str, size: usize, count: u64) -> CliResult<Conn> {
    // The bench's `pipe` row runs over named FIFOs (the peer is not our child's stdio: that is `stdio`).
    let mode = format!("{role}-{}", if transport == "pipe" { "fifo" } else { transport });
    let mut cmd = peer_cmd(&mode, size, count)?;
    let boxed = |tx: Box<dyn Sender>, rx: Box<dyn Receiver>, peer| Ok(Conn { tx, rx, _peer: peer });
    match transport {
        "stdio" => {
            let (tx, rx, child) = stdio::spawn(&mut cmd)?;
            boxed(Box::new(tx), Box::new(rx), Peer::Ours(child))
        }
        "fork" => {
            let (tx, rx, child) = fork::spawn(cmd.stdin(Stdio::null()))?;
            boxed(Box::new(tx), Box::new(rx), Peer::Ours(child))
        }
        "pipe" => {
            let dir = std::env::temp_dir().join(unique("fifo"));
            std::fs::create_dir(&dir)?;
            pipe::create_fifo(dir.join("down"))?;
            pipe::create_fifo(dir.join("up"))?;
            let child =
                cmd.args(["--addr", dir.to_str().ok_or("temp dir is not UTF-8")?]).stdin(Stdio::null()).spawn()?;
            let tx = pipe::open_fifo_sender(dir.join("down"))?;
            let rx = pipe::open_fifo_receiver(dir.join("up"))?;
            std::fs::remove_dir_all(&dir)?;
            boxed(Box::new(tx), Box::new(rx), Peer::Std(child))
        }
        "unix" => {
            let path = std::env::temp_dir().join(unique("sock"));
            let listener = unix::Listener::bind(&path)?;
            let child =
                cmd.args(["--addr", path.to_str().ok_or("temp dir is not UTF-8")?]).stdin(Stdio::null()).spawn()?;
            let (tx, rx) = listener.accept()?;
            boxed(Box::new(tx), Box::new(rx), Peer::Std(child))
        }
        "tcp" => {
            let listener = tcp::Listener::bind("127.0.0.1:0")?;
            let child = cmd.args(["--addr", &listener.local_addr()?.to_string()]).stdin(Stdio::null()).spawn()?;
            let (tx, rx, _) = listener.accept()?;
            boxed(Box::new(tx), Box::new(rx), Peer::Std(child))
        }
        "udp" => {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
            let child = cmd.args(["--addr", &sock.local_addr()?.to_string()]).stdin(Stdio::null()).spawn()?;
            sock.set_read_timeout(Some(STALL))?;
            let mut hello = [0u8; 64];
            let (_, from) = sock.recv_from(&mut hello)?;
            sock.connect(from)?;
            sock.set_read_timeout(None)?;
            let (tx, rx) = udp::from_socket(sock)?;
            boxed(Box::new(tx), Box::new(rx), Peer::Std(child))
        }
        other => Err(format!("no transport {other}").into()),
    }
}

/// Round trips through an echo peer: `warmup + samples` messages, the last `samples` recorded.
pub fn rtt(transport: &str, size: usize, warmup: u64, samples: u64, h: &mut Histogram<u64>) -> CliResult {
    let mut c = connect(transport, "echo", size, 0)?;
    let base = base_payload(size);
    let mut msg = base.clone();
    for i in 0..warmup + samples {
        stamp(&mut msg, &base, i);
        let t0 = Instant::now();
        c.tx.send_deadline(&msg, t0 + STALL)?;
        let reply = c.rx.recv_deadline(t0 + STALL)?;
        let dt = t0.elapsed().as_nanos() as u64;
        if !verify(&reply, &base, i) {
            return Err(format!("{transport} echo returned a wrong message at {i}").into());
        }
        if i >= warmup {
            h.saturating_record(dt);
        }
    }
    c.tx.close()?;
    Ok(())
}

/// One-way stream of `count` messages into a sink peer that checks each one, with at most four
/// acknowledgement intervals (about 64 KiB) unacknowledged; returns the time from the first send to the
/// sink's verdict.
pub fn stream(transport: &str, size: usize, count: u64) -> CliResult<Duration> {
    let mut c = connect(transport, "sink", size, count)?;
    let base = base_payload(size);
    let mut msg = base.clone();
    let mut acked = 0u64;
    let window = 4 * sink_ack_every(size);
    let t0 = Instant::now();
    for i in 0..count {
        while i - acked >= window {
            let ack = c.rx.recv_deadline(Instant::now() + STALL)?;
            acked = u64::from_le_bytes(ack.as_slice().try_into().map_err(|_| "bad acknowledgement")?);
        }
        stamp(&mut msg, &base, i);
        c.tx.send_deadline(&msg, Instant::now() + STALL)?;
    }
    let verdict = loop {
        let m = c.rx.recv_deadline(Instant::now() + STALL)?;
        if m.len() != 8 {
            break m;
        }
    };
    let elapsed = t0.elapsed();
    c.tx.close()?;
    if verdict != b"ok" {
        return Err(format!("{transport} sink saw a wrong message").into());
    }
    Ok(elapsed)
}
