//! Results of `ringwire bench`: the JSON schema (kept stable; extend, don't break) and the table.
//!
//! ```json
//! {"machine": {"cpu": "...", "cpus": 2, "kernel": "...", "hypervisor": true, "pinned": true, ...},
//!  "results": [{"transport": "shm-spsc", "wait": "spin", "size": 64,
//!               "rtt_ns": {"p50": .., "p90": .., "p99": .., "p999": .., "max": ..},
//!               "throughput": {"msgs_per_sec": .., "bytes_per_sec": ..},
//!               "limit_ratio": {"rtt_p50": .., "throughput": ..},
//!               "spsc_ratio": {"rtt_p50": .., "throughput": ..},
//!               "raw_ratio": {"rtt_p50": .., "throughput": ..},
//!               "mechanism": "raw-pipe", "mechanism_ratio": {"rtt_p50": .., "throughput": ..},
//!               "limit_probe": {"before": {"rtt_p50": .., "msgs_per_sec": ..}, "after": {..}}}],
//!  "skipped": [{"transport": "redis-pubsub", "wait": "block", "size": 64, "reason": "..."},
//!              {"transport": "socket.io", "wait": "block", "size": 64, "clients": 1000, "reason": "..."}],
//!  "fanout": [{"server": "hub", "clients": 1000, "size": 64, "samples": 300,
//!              "latency_ns": {"p50": .., "p90": .., "p99": .., "p999": .., "max": ..},
//!              "throughput": {"deliveries_per_sec": .., "broadcasts_per_sec": .., "window": 256, "secs": 1.5},
//!              "cpu": {"server_ns_per_delivery": .., "client_ns_per_delivery": .., "server_cores": .., "client_cores": ..},
//!              "socketio_ratio": {"throughput": .., "latency_p50": .., "latency_p99": ..,
//!                                 "p99_to_socketio_p50": ..}}],
//!  "fanout_memory": [{"server": "hub", "connections": 1000, "rss_before": .., "rss_after": ..,
//!                     "bytes_per_connection": ..}]}
//! ```
//!
//! `fanout` and `fanout_memory` (the `hub` group, `fanout.rs`) and `skipped[].clients` were added later,
//! and so were `mechanism` / `mechanism_ratio` (kernel transport rows: the `raw-*` row of their kernel
//! mechanism, see `raw.rs`, and the row's ratio to it; null elsewhere).

use super::fanout::{FanoutReport, FanoutRow, IdleMemory};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

#[derive(Serialize, Debug)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    pub hypervisor: bool,
    /// Whether the two sides were pinned to different cores (cpu 0 and cpu 1).
    pub pinned: bool,
    pub ringwire: &'static str,
    /// Seconds since the Unix epoch when the run started.
    pub timestamp: u64,
}

impl Machine {
    pub fn detect(pinned: bool) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let hypervisor =
            cpuinfo.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
        let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
        Machine {
            cpu,
            cpus: crate::util::available_cpus(),
            kernel,
            hypervisor,
            pinned,
            ringwire: env!("CARGO_PKG_VERSION"),
            timestamp: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

#[derive(Serialize, Clone, Copy, Debug)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[derive(Serialize, Clone, Copy, Debug)]
pub struct Throughput {
    pub msgs_per_sec: f64,
    pub bytes_per_sec: f64,
}

impl Throughput {
    pub fn new(count: u64, size: usize, elapsed: Duration) -> Self {
        let s = elapsed.as_secs_f64().max(1e-9);
        Throughput { msgs_per_sec: count as f64 / s, bytes_per_sec: (count as f64 * size as f64) / s }
    }
}

#[derive(Serialize, Clone, Copy, Debug)]
pub struct Ratio {
    pub rtt_p50: f64,
    pub throughput: f64,
}

/// One `limit` probe: ping-pong p50 and bare-ring throughput.
#[derive(Serialize, Clone, Copy, Debug, Default)]
pub struct ProbeSample {
    pub rtt_p50: f64,
    pub msgs_per_sec: f64,
}

#[derive(Serialize, Clone, Copy, Debug)]
pub struct Probes {
    pub before: ProbeSample,
    pub after: ProbeSample,
}

#[derive(Serialize, Debug)]
pub struct Row {
    pub transport: &'static str,
    pub wait: &'static str,
    pub size: usize,
    pub rtt_ns: Percentiles,
    pub throughput: Throughput,
    /// Row / mean of the adjacent `limit` probes (rtt: >1 is slower; throughput: <1 is slower).
    pub limit_ratio: Ratio,
    /// Row / the `shm-spsc` spin row of the same size, when that row ran.
    pub spsc_ratio: Option<Ratio>,
    /// `+events` and `+batch` rows: row / the same transport's plain row (same wait, same size) in this
    /// run (for `+batch`: after / before write coalescing), when that
    /// row ran (null otherwise, and on every other row). Added after the first schema: new field only.
    pub raw_ratio: Option<Ratio>,
    /// Kernel transport rows: the raw-mechanism row they are compared with (`raw-pipe`, `raw-unix`,
    /// `raw-tcp`, `raw-udp`; its wait is `block` for `block`, `spin` for `spin` and `adaptive`). Added
    /// later: new field only.
    pub mechanism: Option<&'static str>,
    /// Row / its `mechanism` row (same size, this run), when that row ran: rtt > 1 is slower, throughput
    /// < 1 is slower. Added later: new field only.
    pub mechanism_ratio: Option<Ratio>,
    pub limit_probe: Probes,
}

impl Row {
    pub fn new(
        transport: &'static str,
        wait: &'static str,
        size: usize,
        h: &Histogram<u64>,
        throughput: Throughput,
        before: ProbeSample,
        after: ProbeSample,
    ) -> Self {
        let rtt_ns = Percentiles::of(h);
        let probe_rtt = (before.rtt_p50 + after.rtt_p50) / 2.0;
        let probe_tput = (before.msgs_per_sec + after.msgs_per_sec) / 2.0;
        Row {
            transport,
            wait,
            size,
            rtt_ns,
            throughput,
            limit_ratio: Ratio {
                rtt_p50: rtt_ns.p50 as f64 / probe_rtt.max(1.0),
                throughput: throughput.msgs_per_sec / probe_tput.max(1e-9),
            },
            spsc_ratio: None,
            raw_ratio: None,
            mechanism: None,
            mechanism_ratio: None,
            limit_probe: Probes { before, after },
        }
    }
}

/// Fills each row's ratio to the `shm-spsc` (spin) row of the same size. Ratios of ratios: each side is
/// first normalised by its own adjacent probes, so a placement change between the rows cancels out.
pub fn fill_spsc_ratios(rows: &mut [Row]) {
    let refs: Vec<(usize, Ratio)> = rows
        .iter()
        .filter(|r| r.transport == "shm-spsc" && r.wait == "spin")
        .map(|r| (r.size, r.limit_ratio))
        .collect();
    for row in rows.iter_mut() {
        if let Some((_, base)) = refs.iter().find(|(s, _)| *s == row.size) {
            row.spsc_ratio = Some(Ratio {
                rtt_p50: row.limit_ratio.rtt_p50 / base.rtt_p50,
                throughput: row.limit_ratio.throughput / base.throughput,
            });
        }
    }
}

/// Fills each `+events` and `+batch` row's ratio to its plain row (`tcp+events` / `tcp`, `tcp+batch` /
/// `tcp`, same wait and size; `+batch` rows: the rows' numbers divided directly). Where the
/// bare probe is the floor of the measurement (the rings: a round trip within 20x the probe) both rows are
/// first normalised by their own adjacent probes, as in [`fill_spsc_ratios`], so that a vCPU placement
/// flip between the two rows cancels out; where it is not (kernel and brokered transports, tens of
/// microseconds of syscalls and wake-ups), the rows' own numbers are divided directly, since dividing by a
/// 100 ns probe that moved 5x would only add noise.
pub fn fill_raw_ratios(rows: &mut [Row]) {
    let refs = ratio_refs(rows);
    for row in rows.iter_mut() {
        if let Some(ring @ ("shm-spsc" | "shm-mpmc" | "shm-broadcast")) = row.transport.strip_suffix("+batch") {
            // A ring's buffered publication: a ring row, normalised by its probes.
            row.raw_ratio = ratio_to(row, &refs, ring, row.wait);
            continue;
        }
        if let Some(plain) = row.transport.strip_suffix("+batch") {
            // Before / after write coalescing: the rows' own numbers, as for `mechanism_ratio`.
            row.raw_ratio = direct_ratio(row, &refs, plain, row.wait);
            continue;
        }
        let Some(raw) = row.transport.strip_suffix("+events").or_else(|| row.transport.strip_suffix("+async")) else {
            continue;
        };
        row.raw_ratio = ratio_to(row, &refs, raw, row.wait);
    }
}

/// What a ratio is taken against: each row's name, wait, size, probe ratios, p50 and msgs/s.
type RatioRef = (&'static str, &'static str, usize, Ratio, f64, f64);

fn ratio_refs(rows: &[Row]) -> Vec<RatioRef> {
    rows.iter()
        .map(|r| (r.transport, r.wait, r.size, r.limit_ratio, r.rtt_ns.p50 as f64, r.throughput.msgs_per_sec))
        .collect()
}

/// `row` / the row `transport` (`wait`, same size) of `refs`, by the rule of [`fill_raw_ratios`].
fn ratio_to(row: &Row, refs: &[RatioRef], transport: &str, wait: &str) -> Option<Ratio> {
    let &(.., base, base_p50, base_tput) =
        refs.iter().find(|(t, w, s, ..)| *t == transport && *w == wait && *s == row.size)?;
    Some(if base.rtt_p50 <= 20.0 {
        Ratio {
            rtt_p50: row.limit_ratio.rtt_p50 / base.rtt_p50,
            throughput: row.limit_ratio.throughput / base.throughput,
        }
    } else {
        Ratio { rtt_p50: row.rtt_ns.p50 as f64 / base_p50, throughput: row.throughput.msgs_per_sec / base_tput }
    })
}

/// Fills each kernel transport row's `mechanism` (from `mechanism_of(transport, wait)`: the raw row and
/// its wait) and, when that row ran, `mechanism_ratio`: the rows' own numbers divided directly. (Not
/// through the probes as in [`fill_raw_ratios`]: a syscall round trip, even busy-polled, is a microsecond
/// or more of kernel work that the probe's cache-line ping-pong does not predict, so dividing by probes
/// taken at other moments only adds their noise.)
pub fn fill_mechanism_ratios(
    rows: &mut [Row],
    mechanism_of: impl Fn(&str, &str) -> Option<(&'static str, &'static str)>,
) {
    let refs = ratio_refs(rows);
    for row in rows.iter_mut() {
        let Some((raw, raw_wait)) = mechanism_of(row.transport, row.wait) else { continue };
        row.mechanism = Some(raw);
        row.mechanism_ratio = direct_ratio(row, &refs, raw, raw_wait);
    }
}

/// `row` / the row `transport` (`wait`, same size) of `refs`: the two rows' own numbers.
fn direct_ratio(row: &Row, refs: &[RatioRef], transport: &str, wait: &str) -> Option<Ratio> {
    let &(.., p50, tput) = refs.iter().find(|(t, w, s, ..)| *t == transport && *w == wait && *s == row.size)?;
    Some(Ratio {
        rtt_p50: row.rtt_ns.p50 as f64 / p50.max(1.0),
        throughput: row.throughput.msgs_per_sec / tput.max(1e-9),
    })
}

/// A row that did not run, and why (no Redis server, a peer that failed, ...).
#[derive(Serialize, Debug)]
pub struct Skipped {
    pub transport: &'static str,
    pub wait: &'static str,
    pub size: usize,
    /// Fan-out rows only (`hub`, `socket.io`): the row's number of clients (for the idle-memory
    /// measurement, its number of idle connections). Absent on the other rows. Added later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<usize>,
    pub reason: String,
}

#[derive(Serialize)]
struct Doc<'a> {
    machine: &'a Machine,
    results: &'a [Row],
    skipped: &'a [Skipped],
    /// Added later (always present, possibly empty): the fan-out rows of `--transports hub`.
    fanout: &'a [FanoutRow],
    /// Added later (always present, possibly empty): memory per idle connection of each fan-out server.
    fanout_memory: &'a [IdleMemory],
}

pub fn json(machine: &Machine, rows: &[Row], skipped: &[Skipped], fanout: &FanoutReport) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&Doc {
        machine,
        results: rows,
        skipped,
        fanout: &fanout.rows,
        fanout_memory: &fanout.memory,
    })
}

pub(crate) fn ns(v: u64) -> String {
    if v >= 10_000_000 {
        format!("{:.1}ms", v as f64 / 1e6)
    } else if v >= 10_000 {
        format!("{:.1}µs", v as f64 / 1e3)
    } else {
        format!("{v}ns")
    }
}

pub(crate) fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The table's first line: the machine.
pub fn machine_line(m: &Machine, quick: bool) -> String {
    format!(
        "machine: {} ({} cpus{}), kernel {}, {}{}\n",
        m.cpu,
        m.cpus,
        if m.hypervisor { ", VM" } else { "" },
        m.kernel,
        if m.pinned { "sides pinned to cpu 0 and 1" } else { "not pinned" },
        if quick { ", --quick (smoke run: noisy)" } else { "" }
    )
}

pub fn table(m: &Machine, rows: &[Row], skipped: &[Skipped], quick: bool) -> String {
    let mut out = machine_line(m, quick);
    let _ = writeln!(
        out,
        "{:<15} {:<9} {:>6} | {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9} {:>10} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>7}",
        "transport",
        "wait",
        "size",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "msgs/s",
        "MB/s",
        "rtt/lim",
        "tput/lim",
        "rtt/spsc",
        "tput/sp",
        "rtt/raw",
        "tput/rw",
        "rtt/mech",
        "tput/mc"
    );
    let _ = writeln!(out, "{}", "-".repeat(187));
    for r in rows {
        let sp = r
            .spsc_ratio
            .map_or(("-".into(), "-".into()), |s| (format!("{:.2}", s.rtt_p50), format!("{:.2}", s.throughput)));
        let raw = r
            .raw_ratio
            .map_or(("-".into(), "-".into()), |s| (format!("{:.2}", s.rtt_p50), format!("{:.2}", s.throughput)));
        let mech = r
            .mechanism_ratio
            .map_or(("-".into(), "-".into()), |s| (format!("{:.2}", s.rtt_p50), format!("{:.2}", s.throughput)));
        let _ = writeln!(
            out,
            "{:<15} {:<9} {:>6} | {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9} {:>10.1} | {:>7.2} {:>8.2} | {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>7}",
            r.transport,
            r.wait,
            r.size,
            ns(r.rtt_ns.p50),
            ns(r.rtt_ns.p90),
            ns(r.rtt_ns.p99),
            ns(r.rtt_ns.p999),
            ns(r.rtt_ns.max),
            rate(r.throughput.msgs_per_sec),
            r.throughput.bytes_per_sec / 1e6,
            r.limit_ratio.rtt_p50,
            r.limit_ratio.throughput,
            sp.0,
            sp.1,
            raw.0,
            raw.1,
            mech.0,
            mech.1
        );
    }
    // (Fan-out rows that did not run are listed in the fan-out section: `fanout::table`.)
    for s in skipped.iter().filter(|s| s.clients.is_none()) {
        let _ = writeln!(out, "{:<15} {:<9} {:>6} | skipped: {}", s.transport, s.wait, s.size, s.reason);
    }
    let _ = writeln!(
        out,
        "rtt/lim: round-trip p50 / the bare ping-pong probe taken just before and after the row (1.0 = hardware floor).\n\
         tput/lim: one-way msgs/s / a bare fixed-slot ring's, same moment. rtt/spsc, tput/sp: the same ratios relative to shm-spsc (spin).\n\
         rtt/raw, tput/rw (+events, +batch, +async rows): the same ratios relative to the same transport's plain row (the event layer's cost;\n\
         write coalescing's gain: send_buffered, flushed before waiting for the sink's acknowledgement; what awaiting costs).\n\
         rtt/mech, tput/mc (kernel transports): the same ratios relative to the bare read/write of their kernel mechanism in this run\n\
         (raw-pipe: pipe, stdio; raw-unix: unix, fork; raw-tcp: tcp, websocket; raw-udp: udp; block vs block, spin and adaptive vs spin)."
    );
    out
}
