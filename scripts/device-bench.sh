#!/usr/bin/env bash
# Scaling runs on a borrowed many-core machine (the session tool `device`; nothing is installed there and
# nothing outside it can be reached): `ringwire bench`'s ring rows and the hub fan-out group, one hub and
# two hubs (shm, Redis Streams, Redis pub/sub) against socket.io (one server, and two with
# @socket.io/redis-adapter), with the machine's own cores instead of this project's 2-vCPU VMs.
#
# What it needs, carried in DIR (default .device/, ignored by git), made on the development machine:
#   ringwire.xz                 the release `ringwire` binary (x86-64, glibc <= the machine's), xz'd
#   node.xz                     a Node.js 20 binary, xz'd
#   node_modules.tar.xz         tests/js's node_modules (socket.io, @socket.io/redis-adapter, redis),
#                               socketio_fanout_server.mjs and package.json
#   redis-server, lib/          redis-server and the shared libraries it links (LD_LIBRARY_PATH)
# BENCH_FLAGS (e.g. --quick), FANOUT_CLIENTS (10,100,1000) and FANOUT_THREADS (the load generator's, 8) adjust
# the runs. Results go to $OUT (the tool's output folder): rings.json/.txt, fanout.json/.txt, machine.txt.
set -euo pipefail
DIR=${1:-.device}
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
WORK=$(mktemp -d)
unxz() { python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; }
unxz "$DIR/ringwire.xz" "$WORK/ringwire" && chmod +x "$WORK/ringwire"
mkdir -p "$WORK/bin" "$WORK/js"
unxz "$DIR/node.xz" "$WORK/bin/node.real" && chmod +x "$WORK/bin/node.real"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$(realpath "$DIR/lib")" "$WORK/bin/node.real" > "$WORK/bin/node"
chmod +x "$WORK/bin/node"
tar -xJf "$DIR/node_modules.tar.xz" -C "$WORK/js"
export PATH="$WORK/bin:$PATH"
{ nproc; lscpu | grep -E 'Model name|Thread|Core|Socket|NUMA node\(s\)'; uname -r; node --version; } > "$OUT/machine.txt" 2>&1 || true
LD_LIBRARY_PATH="$(realpath "$DIR/lib")" "$DIR/redis-server" --port 6379 --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no > "$OUT/redis.log" 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
ulimit -n "$(ulimit -Hn)" || true
"$WORK/ringwire" bench ${BENCH_FLAGS:-} --transports limit,shm-spsc,shm-mpmc,shm-broadcast,crossbeam,rtrb --json > "$OUT/rings.json" 2> "$OUT/rings.err" || true
python3 - "$OUT/rings.json" > "$OUT/rings.txt" <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["results"]:
    print(f'{r["transport"]:<14} {r["wait"]:<9} {r["size"]:>5} rtt p50 {r["rtt_ns"]["p50"]:>7} ns  {r["throughput"]["msgs_per_sec"]/1e6:8.2f} M msgs/s')
PY
"$WORK/ringwire" bench ${BENCH_FLAGS:-} --fanout-threads ${FANOUT_THREADS:-8} --transports hub,hub-cluster --fanout-clients ${FANOUT_CLIENTS:-10,100,1000} --socketio-dir "$WORK/js" \
    > "$OUT/fanout.txt" 2> "$OUT/fanout.err" || true
echo done
