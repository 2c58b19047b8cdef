# Sourced by tests/run.sh and .ci/run after CARGO_TARGET_DIR is set: keeps the build cache,
# which is shared between runs and checkouts, from filling the disk.

# Incremental compilation keeps a directory per crate and checkout that is never pruned; a run
# of this script rebuilds the workspace's own crates from scratch in about the same time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Artifacts of other checkouts and of earlier dependency versions pile up in a cache that is
# shared between runs. Past a bound, start again from nothing rather than fill the disk.
cache_limit_kib=$((30 * 1024 * 1024))
if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -sk "$CARGO_TARGET_DIR" | cut -f1)" -gt "$cache_limit_kib" ]; then
  echo "build cache: $CARGO_TARGET_DIR is over 30 GiB; removing it" >&2
  rm -rf "$CARGO_TARGET_DIR"
fi
