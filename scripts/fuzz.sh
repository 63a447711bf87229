#!/usr/bin/env bash
# Coverage-guided fuzzing of the shared-memory parsers (fuzz/fuzz_targets/ring_reader.rs) with
# cargo-fuzz on stable (RUSTC_BOOTSTRAP, no sanitizer: `-s none`). Installs cargo-fuzz if missing.
# Fails if the build fails or the fuzzer finds a crash (input left in fuzz/artifacts/).
# Usage: scripts/fuzz.sh [seconds]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd fuzz
log=$(mktemp)
if ! RUSTC_BOOTSTRAP=1 cargo fuzz run -s none ring_reader -- -max_total_time="${1:-30}" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzzing failed (see above)" >&2
    exit 1
fi
grep -E "^Done [0-9]+ runs" "$log"
rm -f "$log"
