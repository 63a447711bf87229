#!/usr/bin/env bash
# Soak test of `ringwire echo` / `ringwire cat` under client kills and Redis connection kills (see
# scripts/soak.py). Usage: scripts/soak.sh [seconds]   (default 600; the test command runs 60)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p ringwire-cli
exec python3 scripts/soak.py "${1:-600}"
