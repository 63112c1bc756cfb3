#!/usr/bin/env bash
# Issue 19's long fuzz campaign: CASES mutants per reader (default 10,000) through the CLI's
# readers, each in a child process with a 1 GiB address-space cap, sorted into accepted / clean
# error / other error / crash / over memory / hang (crates/scllm/tests/fuzz_readers.rs, the
# same harness CI runs at 120 mutants). With BEFORE_BIN=PATH (a binary built from an older
# commit), the same seed and mutants run through it first, for the before/after table.
#
#   bash bench/fuzz_campaign.sh [CASES] [SEED]            # e.g. 10000 7
#   BEFORE_BIN=/tmp/scllm-old ONLY=h5ad bash bench/fuzz_campaign.sh 2000 7
#
# Prints one markdown table per binary and writes bench/results/fuzz_*.json. Mutants that crashed,
# hung or went over memory are kept in target/tmp/fuzz-findings/ to reproduce.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-10000}"
seed="${2:-7}"
mkdir -p bench/results
run() { # name, binary (empty: the build's own)
  echo "## $1 ($cases mutants per reader, seed $seed)"
  SCLLM_FUZZ_CASES="$cases" SCLLM_FUZZ_SEED="$seed" SCLLM_FUZZ_ONLY="${ONLY:-}" \
    SCLLM_FUZZ_BIN="$2" SCLLM_FUZZ_REPORT="bench/results/fuzz_$1.json" \
    cargo test --release -q -p scllm --test fuzz_readers -- --nocapture 2>&1 |
    sed -n '/^| reader/,/^$/p' | grep '^|' || true
}
cargo build --release -q -p scllm --tests
if [ -n "${BEFORE_BIN:-}" ]; then
  run before "$BEFORE_BIN"
fi
run after ""
