#!/usr/bin/env bash
# The whole test suite: set-up, house rules, formatting and lints, unit and integration tests (real
# processes, kill -9 loops, hostile peers, security and corruption property tests), doc tests, the
# criterion benches in test mode and the `ringwire bench --quick --json` smoke test, a 60 s soak, loom
# model checks, ThreadSanitizer, and 30 s of fuzzing. This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== set-up (scripts/setup.sh) =="
./scripts/setup.sh

echo "== house rules =="
# Every atomic in the library goes through src/sync.rs, the loom facade (clippy's disallowed-types can't
# tell the facade's re-exports from direct use, so this is a grep). The command-line tool (cli/) and the
# test kit are not model-checked and may use std atomics (the bench's bare probes must); nor is the hub
# (src/hub/, on tokio: counters and flags, each ordering argued in src/hub/mod.rs, "Atomics").
if grep -rnE 'std::sync::atomic|core::sync::atomic' src --include='*.rs' | grep -vE '^src/sync\.rs:|^src/hub/'; then
    echo "direct std atomics outside src/sync.rs (use crate::sync)" >&2
    exit 1
fi
# The library's layers import only downwards (ARCHITECTURE.md, "Layers").
python3 scripts/layers.py

echo "== formatting and lints =="
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
# What a library user compiles: the rings alone, and each feature on its own.
cargo build --quiet -p ringwire --no-default-features
for f in transport json redis websocket amqp events msgpack hub tokio tokio-websocket "tokio transport"; do
    cargo build --quiet -p ringwire --no-default-features --features "$f"
done

echo "== unit, integration, benches (test mode) =="
# tests/examples.rs runs the example binaries: build them first (all features, as the workspace does).
cargo build --quiet --workspace --examples
cargo test --workspace --all-targets
echo "== doc tests, and docs that build without warnings (broken or private links) =="
cargo test --workspace --doc
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== soak: echo/cat under client and Redis connection kills (60 s) =="
./scripts/soak.sh 60
echo "== loom model checks =="
bash loom-tests/run.sh
echo "== ThreadSanitizer (in-process ring tests) =="
./scripts/tsan.sh
echo "== fuzzing (30 s) =="
./scripts/fuzz.sh 30
