#!/usr/bin/env python3
"""Runs `ringwire bench --json` N times and prints, per row, the median of each number and of each
ratio to the adjacent `limit` probes. On a VM whose vCPUs migrate between placements a single run can
straddle a placement change; medians over runs are what the README quotes. Rows that carry them also
get the medians (ranges in brackets) of their ratio to their kernel mechanism (`mechanism_ratio`: the
kernel transports against their `raw-*` row) and to their plain row (`raw_ratio`: the `+batch`,
`+events` and `+async` rows), each taken inside one run.

The fan-out rows (`--transports hub`: `ringwire hub` against socket.io; `hub-cluster`: two processes
per server) get their own table of medians (ranges in brackets), with the ratios to socket.io (for the
two-hub rows: socket.io-2-redis) and, for the two-hub rows, to one hub, and each server's memory per
idle connection.

Usage: scripts/bench-median.py [N] [extra ringwire bench args...]
(the binary: $RINGWIRE, default target/release/ringwire; for A/B runs of copied builds)
"""
import json, os, statistics, subprocess, sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
extra = sys.argv[2:]
exe = os.environ.get("RINGWIRE", "target/release/ringwire")
rows, machine = {}, None
fan, mem = {}, {}
for i in range(n):
    out = subprocess.run([exe, "bench", "--json", *extra], check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    machine = doc["machine"]
    for r in doc["results"]:
        key = (r["transport"], r["wait"], r["size"])
        d = rows.setdefault(key, {k: [] for k in ("p50", "p99", "mps", "rtt_lim", "tput_lim", "rtt_mech", "tput_mech", "rtt_raw", "tput_raw")})
        d["p50"].append(r["rtt_ns"]["p50"])
        d["p99"].append(r["rtt_ns"]["p99"])
        d["mps"].append(r["throughput"]["msgs_per_sec"])
        d["rtt_lim"].append(r["limit_ratio"]["rtt_p50"])
        d["tput_lim"].append(r["limit_ratio"]["throughput"])
        for k, j in (("mech", "mechanism_ratio"), ("raw", "raw_ratio")):
            if r.get(j):
                d["rtt_" + k].append(r[j]["rtt_p50"])
                d["tput_" + k].append(r[j]["throughput"])
    for r in doc.get("fanout", []):
        d = fan.setdefault((r["server"], r["clients"]), {k: [] for k in ("p50", "p99", "dps", "srv_ns", "tput_r", "p50_r", "p99_r", "p99_sp50", "h50", "h99", "htput")})
        d["p50"].append(r["latency_ns"]["p50"])
        d["p99"].append(r["latency_ns"]["p99"])
        d["dps"].append(r["throughput"]["deliveries_per_sec"])
        d["srv_ns"].append(r["cpu"]["server_ns_per_delivery"])
        if r["socketio_ratio"]:
            for k, j in (("tput_r", "throughput"), ("p50_r", "latency_p50"), ("p99_r", "latency_p99"), ("p99_sp50", "p99_to_socketio_p50")):
                d[k].append(r["socketio_ratio"][j])
        if r.get("one_hub_ratio"):
            for k, j in (("h50", "latency_p50"), ("h99", "latency_p99"), ("htput", "throughput")):
                d[k].append(r["one_hub_ratio"][j])
    for m in doc.get("fanout_memory", []):
        mem.setdefault(m["server"], []).append(m["bytes_per_connection"])
med = statistics.median


def rng(v, fmt):
    return f"{fmt(med(v))} ({fmt(min(v))}-{fmt(max(v))})" if v else ""


def span(v):
    return rng(v, "{:.2f}".format)


print(f"machine: {machine['cpu']}, {machine['cpus']} cpus, kernel {machine['kernel']}, "
      f"{'VM' if machine['hypervisor'] else 'bare metal'}, pinned={machine['pinned']}; medians of {n} runs")
# The kernel transports' ratios to their raw mechanism (`mechanism_ratio`) and the +batch/+events/+async
# rows' ratios to their plain row (`raw_ratio`) get their own columns when any row of the run has them.
extra = [(k, j) for k, j in (("mech", "mech"), ("raw", "plain")) if any(d["rtt_" + k] for d in rows.values())]
if rows:
    print("| transport | wait | size | rtt p50 | rtt p99 | msgs/s | rtt / limit | tput / limit |"
          + "".join(f" rtt / {j} | tput / {j} |" for _, j in extra))
    print("|---|---|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(extra))


for (t, w, s), d in rows.items():
    print(f"| {t} | {w} | {s} | {med(d['p50']):.0f} ns | {med(d['p99']):.0f} ns | {med(d['mps'])/1e6:.2f} M "
          f"| {span(d['rtt_lim'])} | {span(d['tput_lim'])} |"
          + "".join(f" {span(d['rtt_' + k])} | {span(d['tput_' + k])} |" for k, _ in extra))


ms = lambda ns: f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1e3:.0f} µs"
if fan:
    print()
    print("| server | clients | latency p50 | latency p99 | deliveries/s | server CPU / delivery "
          "| tput / socket.io | p50 / socket.io | p99 / socket.io | p99 / socket.io p50 | p50 / one hub | p99 / one hub | tput / one hub |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (srv, n), d in sorted(fan.items(), key=lambda kv: (kv[0][1], kv[0][0] != "socket.io")):
        print(f"| {srv} | {n} | {rng(d['p50'], ms)} | {rng(d['p99'], ms)} | {rng(d['dps'], lambda v: f'{v / 1e3:.0f}k')} "
              f"| {med(d['srv_ns']) / 1e3:.1f} µs | {rng(d['tput_r'], lambda v: f'{v:.2f}')} | {rng(d['p50_r'], lambda v: f'{v:.2f}')} "
              f"| {rng(d['p99_r'], lambda v: f'{v:.2f}')} | {rng(d['p99_sp50'], lambda v: f'{v:.2f}')} "
              f"| {rng(d['h50'], lambda v: f'{v:.2f}')} | {rng(d['h99'], lambda v: f'{v:.2f}')} | {rng(d['htput'], lambda v: f'{v:.2f}')} |")
for srv, v in mem.items():
    print(f"idle memory, {srv}: {rng(v, lambda b: f'{b / 1024:.1f} KiB')} per connection")
