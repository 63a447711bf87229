//! Operator tools for the named rings of this host: `ringwire ls`, `inspect`, `clean` (read through
//! `ringwire::shm::inspect`, which never writes to a ring), and `pub` / `sub` / `send` / `recv`, which
//! carry stdin lines in and messages out like `redis-cli publish` / `subscribe`.

use crate::util::CliResult;
use ringwire::broadcast;
use ringwire::shm::inspect::{self, RegionInfo, Removal};
use ringwire::{RingKind, ShmBroadcast, ShmQueue, ShmRing};
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Print JSON (an array of regions) instead of a table.
    #[arg(long)]
    json: bool,
    /// Where named rings live.
    #[arg(long, default_value = ringwire::shm::DEFAULT_DIR)]
    dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The ring's name (a file in --dir).
    name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Where named rings live.
    #[arg(long, default_value = ringwire::shm::DEFAULT_DIR)]
    dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct CleanArgs {
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where named rings live.
    #[arg(long, default_value = ringwire::shm::DEFAULT_DIR)]
    dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct RingArgs {
    /// The ring's name (a file in --dir).
    name: String,
    /// Where named rings live.
    #[arg(long, default_value = ringwire::shm::DEFAULT_DIR)]
    dir: PathBuf,
}

fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Messages (slot rings) or bytes (SPSC) written and not yet read.
fn fill(info: &RegionInfo) -> u64 {
    let s = &info.snapshot;
    match s.kind {
        RingKind::Spsc | RingKind::Mpmc => s.tail.saturating_sub(s.head),
        RingKind::Broadcast => 0,
    }
}

fn to_json(info: &RegionInfo) -> Value {
    let s = &info.snapshot;
    let endpoints: Vec<Value> = s
        .endpoints
        .iter()
        .zip(&info.alive)
        .map(|(e, alive)| {
            let mut v = json!({"lock": e.lock, "role": e.role, "state": e.state, "pid": e.pid, "alive": alive});
            if let Some(c) = e.cursor {
                v["cursor"] = json!(c);
                v["lag"] = json!(s.tail.saturating_sub(c));
            }
            v
        })
        .collect();
    json!({
        "name": name_of(&info.path),
        "path": info.path,
        "kind": s.kind.to_string(),
        "capacity": s.config.capacity,
        "max_message": s.config.max_message,
        "slots": s.slots,
        "fill": fill(info),
        "fill_unit": if s.kind == RingKind::Spsc { "bytes" } else { "messages" },
        "head": s.head,
        "tail": s.tail,
        "creator": {"pid": info.creator.0, "alive": info.creator.1},
        "in_use": info.in_use(),
        "endpoints": endpoints,
        "skipped": s.skipped,
        "reclaimed": s.reclaimed,
    })
}

fn endpoints_line(info: &RegionInfo) -> String {
    let s = &info.snapshot;
    let parts: Vec<String> = s
        .endpoints
        .iter()
        .zip(&info.alive)
        .map(|(e, alive)| {
            let lag = e.cursor.map(|c| format!(" lag {}", s.tail.saturating_sub(c))).unwrap_or_default();
            format!("{} {} {}{}", e.role, e.pid, if *alive { "alive" } else { "dead" }, lag)
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// `ringwire ls`: every ringwire region in --dir.
pub fn ls(args: LsArgs) -> CliResult {
    let mut out = std::io::stdout().lock();
    let regions = inspect::list(&args.dir)?;
    if args.json {
        let all: Vec<Value> = regions
            .iter()
            .map(|(p, r)| match r {
                Ok(info) => to_json(info),
                Err(e) => json!({"name": name_of(p), "path": p, "error": e.to_string()}),
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:<9} {:>10} {:>8} {:>10} {:>8} {:>9}  endpoints",
        "name", "kind", "capacity", "max msg", "fill", "skipped", "reclaimed"
    )?;
    for (p, r) in &regions {
        match r {
            Ok(i) => writeln!(
                out,
                "{:<32} {:<9} {:>10} {:>8} {:>10} {:>8} {:>9}  {}",
                name_of(p),
                i.snapshot.kind,
                i.snapshot.config.capacity,
                i.snapshot.config.max_message,
                fill(i),
                i.snapshot.skipped,
                i.snapshot.reclaimed,
                endpoints_line(i)
            )?,
            Err(e) => writeln!(out, "{:<32} error: {e}", name_of(p))?,
        }
    }
    Ok(())
}

/// `ringwire inspect NAME`: header, cursors, states, counters and participant table of one region.
pub fn inspect_cmd(args: InspectArgs) -> CliResult {
    let mut out = std::io::stdout().lock();
    let path = args.dir.join(&args.name);
    let info = inspect::inspect(&path).map_err(|e| format!("{}: not a ringwire region: {e}", path.display()))?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&to_json(&info))?)?;
        return Ok(());
    }
    let s = &info.snapshot;
    writeln!(out, "{}: {} ring", path.display(), s.kind)?;
    writeln!(
        out,
        "  capacity {} bytes, max message {} bytes{}",
        s.config.capacity,
        s.config.max_message,
        s.slots.map(|n| format!(", {n} slots")).unwrap_or_default()
    )?;
    writeln!(out, "  creator pid {} ({})", info.creator.0, if info.creator.1 { "running" } else { "gone" })?;
    writeln!(
        out,
        "  head {}  tail {}  fill {} {}",
        s.head,
        s.tail,
        fill(&info),
        if s.kind == RingKind::Spsc { "bytes" } else { "messages" }
    )?;
    if s.kind != RingKind::Spsc {
        writeln!(out, "  skipped {}  reclaimed {}", s.skipped, s.reclaimed)?;
    }
    writeln!(out, "  endpoints:")?;
    for (e, alive) in s.endpoints.iter().zip(&info.alive) {
        let cursor = e.cursor.map(|c| format!("  cursor {c} (lag {})", s.tail.saturating_sub(c))).unwrap_or_default();
        writeln!(
            out,
            "    [{:>3}] {:<10} {:<8} pid {:<8} {}{}",
            e.lock,
            e.role,
            e.state,
            e.pid,
            if *alive { "alive" } else { "dead" },
            cursor
        )?;
    }
    Ok(())
}

/// `ringwire clean [--dry-run]`: removes the regions nothing uses any more.
pub fn clean(args: CleanArgs) -> CliResult {
    let mut out = std::io::stdout().lock();
    for (path, r) in inspect::list(&args.dir)? {
        let info = match r {
            Ok(i) => i,
            Err(e) => {
                eprintln!("ringwire clean: {}: left alone: {e}", path.display());
                continue;
            }
        };
        if info.in_use() {
            continue;
        }
        if args.dry_run {
            writeln!(out, "would remove {}", path.display())?;
            continue;
        }
        match inspect::remove_if_unused(&path) {
            Ok(Removal::Removed) => writeln!(out, "removed {}", path.display())?,
            Ok(Removal::InUse) => {}
            Err(e) => eprintln!("ringwire clean: {}: {e}", path.display()),
        }
    }
    Ok(())
}

/// Each stdin line (without its `\n`, bytes unchanged) to `send`.
fn each_line(mut send: impl FnMut(&[u8]) -> CliResult) -> CliResult {
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        if stdin.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        send(&line)?;
    }
}

fn print(out: &mut impl Write, msg: &[u8]) -> CliResult {
    out.write_all(msg)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn kind_of(args: &RingArgs) -> CliResult<RingKind> {
    let path = args.dir.join(&args.name);
    Ok(inspect::inspect(&path).map_err(|e| format!("{}: {e}", path.display()))?.snapshot.kind)
}

/// `ringwire pub NAME`: stdin lines published on a broadcast ring.
pub fn publish(args: RingArgs) -> CliResult {
    let mut tx = ShmBroadcast::open_in(&args.dir, &args.name)?.publisher()?;
    each_line(|l| Ok(tx.send(l)?))
}

/// `ringwire sub NAME`: every message of a broadcast ring from now on, one per line, until every
/// publisher has gone; losses (`Lagged`) on stderr.
pub fn subscribe(args: RingArgs) -> CliResult {
    let mut rx = ShmBroadcast::open_in(&args.dir, &args.name)?.subscriber()?;
    let mut out = std::io::stdout().lock();
    loop {
        match rx.recv() {
            Ok(m) => print(&mut out, m)?,
            Err(broadcast::RecvError::Lagged(n)) => eprintln!("ringwire sub: lagged: {n} messages lost"),
            Err(broadcast::RecvError::PeerGone) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// `ringwire send NAME`: stdin lines into a queue (SPSC or MPMC ring).
pub fn send(args: RingArgs) -> CliResult {
    match kind_of(&args)? {
        RingKind::Spsc => {
            let mut tx = ShmRing::open_in(&args.dir, &args.name)?.producer()?;
            each_line(|l| Ok(tx.send(l)?))
        }
        RingKind::Mpmc => {
            let mut tx = ShmQueue::open_in(&args.dir, &args.name)?.producer()?;
            each_line(|l| Ok(tx.send(l)?))
        }
        RingKind::Broadcast => Err("a broadcast ring: use `ringwire pub`".into()),
    }
}

/// `ringwire recv NAME`: messages of a queue (SPSC or MPMC ring), one per line, until every producer
/// has gone.
pub fn recv(args: RingArgs) -> CliResult {
    let mut out = std::io::stdout().lock();
    match kind_of(&args)? {
        RingKind::Spsc => {
            let mut rx = ShmRing::open_in(&args.dir, &args.name)?.consumer()?;
            loop {
                match rx.recv() {
                    Ok(m) => print(&mut out, &m)?,
                    Err(ringwire::spsc::RecvError::PeerGone) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        RingKind::Mpmc => {
            let mut rx = ShmQueue::open_in(&args.dir, &args.name)?.consumer()?;
            loop {
                match rx.recv() {
                    Ok(m) => print(&mut out, &m)?,
                    Err(ringwire::mpmc::RecvError::PeerGone) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        RingKind::Broadcast => Err("a broadcast ring: use `ringwire sub`".into()),
    }
}
