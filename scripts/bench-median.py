#!/usr/bin/env python3
"""Runs `ringwire bench --json` N times and prints, per row, the median of each number and of each
ratio to the adjacent `limit` probes. On a VM whose vCPUs migrate between placements a single run can
straddle a placement change; medians over runs are what the README quotes.

Usage: scripts/bench-median.py [N] [extra ringwire bench args...]
"""
import json, statistics, subprocess, sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
extra = sys.argv[2:]
exe = "target/release/ringwire"
rows, machine = {}, None
for i in range(n):
    out = subprocess.run([exe, "bench", "--json", *extra], check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    machine = doc["machine"]
    for r in doc["results"]:
        key = (r["transport"], r["wait"], r["size"])
        d = rows.setdefault(key, {k: [] for k in ("p50", "p99", "mps", "rtt_lim", "tput_lim")})
        d["p50"].append(r["rtt_ns"]["p50"])
        d["p99"].append(r["rtt_ns"]["p99"])
        d["mps"].append(r["throughput"]["msgs_per_sec"])
        d["rtt_lim"].append(r["limit_ratio"]["rtt_p50"])
        d["tput_lim"].append(r["limit_ratio"]["throughput"])
med = statistics.median
print(f"machine: {machine['cpu']}, {machine['cpus']} cpus, kernel {machine['kernel']}, "
      f"{'VM' if machine['hypervisor'] else 'bare metal'}, pinned={machine['pinned']}; medians of {n} runs")
print(f"| transport | wait | size | rtt p50 | rtt p99 | msgs/s | rtt / limit | tput / limit |")
print(f"|---|---|---:|---:|---:|---:|---:|---:|")
for (t, w, s), d in rows.items():
    print(f"| {t} | {w} | {s} | {med(d['p50']):.0f} ns | {med(d['p99']):.0f} ns | {med(d['mps'])/1e6:.2f} M "
          f"| {med(d['rtt_lim']):.2f} ({min(d['rtt_lim']):.2f}-{max(d['rtt_lim']):.2f}) "
          f"| {med(d['tput_lim']):.2f} ({min(d['tput_lim']):.2f}-{max(d['tput_lim']):.2f}) |")
