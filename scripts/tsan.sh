#!/usr/bin/env bash
# ThreadSanitizer over the in-process tests (threads sharing a ring, heap and shared-memory storage; the
# async ring calls with their reactor threads),
# on stable Rust via RUSTC_BOOTSTRAP. std is not rebuilt with TSan, so races inside std's own sync
# internals are suppressed (scripts/tsan.supp); ringwire's code is instrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer"
export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp halt_on_error=1 second_deadlock_stack=1"
cargo test --target x86_64-unknown-linux-gnu --target-dir target/tsan -p ringwire --lib "$@"
cargo test --target x86_64-unknown-linux-gnu --target-dir target/tsan -p ringwire-testkit --test inprocess --test slots --test async_rings "$@"
