#!/usr/bin/env bash
# The whole test suite: unit, integration (real processes, kill -9 loops, security, corruption property
# tests), doc tests, the criterion benches in test mode and the `ringwire bench --quick --json` smoke
# test, then the loom model checks. This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# Services the tests may talk to. Redis: this machine kind starts one on 127.0.0.1:6379; start it if
# it is not answering (the same command the machine uses). Tests that need isolation start their own
# private redis-server on a free port.
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if command -v redis-server >/dev/null; then
        mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            --dir /tmp --logfile /tmp/ringwire-ci-redis.log || echo "note: could not start redis-server"
    fi
fi

# Tools the tests run as real peers: tests/redis.rs, the redis conformance suites and the tools tests start
# private redis-servers on free ports; tests/websocket.rs talks to Node.js's built-in WebSocket client.
# A machine without them gets them from Debian's packages (as root), else the suite stops here.
for tool in redis-server node; do
    if ! command -v "$tool" >/dev/null; then
        pkg=$([ "$tool" = node ] && echo nodejs || echo redis-server)
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing $pkg (needed by the test suite)"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
        fi
        command -v "$tool" >/dev/null || { echo "$tool is needed by the test suite (see README.md)" >&2; exit 1; }
    fi
done

echo "== house rules =="
# Every atomic in the library goes through src/sync.rs, the loom facade (clippy's disallowed-types can't
# tell the facade's re-exports from direct use, so this is a grep). The command-line tool (src/cli/,
# src/main.rs) is not model-checked and may use std atomics (the bench's bare probes must).
if grep -rnE 'std::sync::atomic|core::sync::atomic' src --include='*.rs' | grep -vE '^src/sync\.rs:|^src/cli/|^src/main\.rs:'; then
    echo "direct std atomics outside src/sync.rs (use crate::sync)" >&2
    exit 1
fi

echo "== unit, integration, benches (test mode) =="
cargo test --all-targets
echo "== doc tests, and docs that build without warnings (broken or private links) =="
cargo test --doc
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
echo "== loom model checks =="
bash loom-tests/run.sh
echo "== ThreadSanitizer (in-process ring tests) =="
./scripts/tsan.sh
echo "== fuzzing (30 s) =="
./scripts/fuzz.sh 30
