#!/usr/bin/env bash
# Model-checks the production ring code with loom. Extra arguments go to `cargo test`
# (e.g. `./run.sh --test wrap`, or `./run.sh -- --nocapture`).
# LOOM_MAX_PREEMPTIONS bounds the preemptions per execution (default 2). Individual tests may
# set a tighter bound of their own; see the comment at the top of each test file.
set -euo pipefail
cd "$(dirname "$0")" && RUSTFLAGS="--cfg ringwire_loom" LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2} cargo test --release "$@"
