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

# Evidence: signatures per second for SM2 and ECDSA P-256, and a group's tree and receipts.
cargo bench -p tongban-benches --bench evidence

# Policy decisions (criterion).
cargo bench -p tongban-benches --bench decision -- --noplot

# The data plane: verification against DuckDB (from PyPI, in a virtual environment beside
# the build cache) and SQL through per-grant views against direct DataFusion.
venv="${TONGBAN_BENCH_VENV:-$HOME/.cache/tongban/venv}"
if ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb
fi
TONGBAN_BENCH_PYTHON="$venv/bin/python" TONGBAN_BENCH_ROWS=10000000 \
  cargo bench -p tongban-benches --bench dataplane

# Load over real sockets: Tongban's proxy against nginx's bare proxy_pass, and cached
# verification against a bare hyper server, with wrk (both from Debian, installed if absent).
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx-light
fi
# oha (crates.io) for constant-rate load with latency correction, beside the build cache.
tools="$HOME/.cache/tongban/tools"
if [ ! -x "$tools/bin/oha" ]; then
  cargo install oha --locked --version 1.16.0 --root "$tools"
fi
cargo build --release -p tongban-gateway --bin tongban
TONGBAN_BIN="$CARGO_TARGET_DIR/release/tongban" TONGBAN_BENCH_OHA="$tools/bin/oha" \
  cargo bench -p tongban-benches --bench load
# Verification across two peered gateways (河南 and 广东, one process) against the same
# verification made locally at 河南, cached and uncached.
TONGBAN_BIN="$CARGO_TARGET_DIR/release/tongban" cargo bench -p tongban-benches --bench federation
