#!/usr/bin/env bash
# Runs Tongban's benchmarks in release mode, into the same persistent target directory CI
# uses, and prints the figures that docs/benchmarks.md records.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tongban/target}"

# Generation: throughput and peak memory at two sizes, each in its own process.
for rows in 1000000 10000000; do
  TONGBAN_BENCH_ROWS=$rows cargo bench -p tongban-benches --bench generate
done
# Key look-up over 10 million people (the dataset is generated once and kept).
TONGBAN_BENCH_ROWS=10000000 cargo bench -p tongban-benches --bench lookup
