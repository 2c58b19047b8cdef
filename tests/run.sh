#!/usr/bin/env bash
# Runs every Tongban test on a fresh Debian machine.
#
# Installs what the tests need from Debian's packages (PostgreSQL, Chromium, Node.js, Python's
# venv, Prometheus's promtool), npm (playwright-core, openapi-typescript, TypeScript) and PyPI
# (tests/clients/requirements.txt), starts a throwaway PostgreSQL server on loopback, builds
# the `tongban` binary the end-to-end tests run, and runs the workspace's tests, the console's
# browser tests among them. Extra arguments go to the test runner.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Builds are cached outside the checkout so repeated runs, and CI, reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tongban/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Bounds the shared build cache (see the script).
source "$root/tests/build-cache.sh"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

packages=()
[ -n "$(pg_bin)" ] || packages+=(postgresql)
# The console's browser tests: Debian's Chromium (with CJK fonts, so screenshots show the
# Chinese pages as people see them) driven by playwright-core under Node.js.
[ -x /usr/bin/chromium ] || packages+=(chromium)
fc-list 2>/dev/null | grep -qi 'Noto Sans CJK' || packages+=(fonts-noto-cjk)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
# The OpenAPI document's validator runs from PyPI in a virtual environment.
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
# promtool checks that /metrics is what Prometheus tooling accepts.
command -v promtool >/dev/null || packages+=(prometheus)
# OpenSSL 3 checks the evidence crate's SM2 and ECDSA signatures, and makes some for it.
command -v openssl >/dev/null || packages+=(openssl)
# HAProxy balances the replicas of the scale-out test, with health checks on /readyz.
[ -x /usr/sbin/haproxy ] || packages+=(haproxy)
if [ ${#packages[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${packages[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# A private PostgreSQL cluster on a free loopback port, removed on exit.
PGBIN="$(pg_bin)"
pgroot="$(mktemp -d /tmp/tongban-pg.XXXXXX)"
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$pgroot"
  run_pg() { runuser -u postgres -- "$@"; }
else
  run_pg() { "$@"; }
fi
stop_pg() {
  run_pg "$PGBIN/pg_ctl" -D "$pgroot/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pgroot"
}
trap stop_pg EXIT
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
run_pg "$PGBIN/initdb" -D "$pgroot/data" -A trust -U tongban -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
run_pg "$PGBIN/pg_ctl" -D "$pgroot/data" -l "$pgroot/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $pgroot -c fsync=off -c max_connections=200" start >/dev/null
export TONGBAN_TEST_PG_URL="postgres://tongban@127.0.0.1:$port/postgres"
# Tests that need PostgreSQL fail rather than skip when run from this script.
export TONGBAN_REQUIRE_PG=1

# playwright-core, pinned by tests/console/package-lock.json; it drives the Debian browser and
# downloads none of its own.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
export TONGBAN_REQUIRE_BROWSER=1

# Python tools, pinned in tests/clients/requirements.txt, in a virtual environment beside the
# build cache, rebuilt when that file changes: the OpenAPI validator, the Python client
# generator, schemathesis and an S3-compatible server (moto).
tools_venv="$HOME/.cache/tongban/python-tools"
requirements="$root/tests/clients/requirements.txt"
if ! cmp -s "$requirements" "$tools_venv/requirements.txt"; then
  rm -rf "$tools_venv"
  python3 -m venv "$tools_venv"
  "$tools_venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$tools_venv/requirements.txt"
fi
export TONGBAN_OPENAPI_VALIDATOR="$tools_venv/bin/openapi-spec-validator"
export TONGBAN_PYTHON_CLIENT_GENERATOR="$tools_venv/bin/openapi-python-client"
export TONGBAN_PYTHON="$tools_venv/bin/python"
export TONGBAN_SCHEMATHESIS="$tools_venv/bin/schemathesis"
export TONGBAN_S3_SERVER="$tools_venv/bin/moto_server"
export TONGBAN_KUBERNETES_VALIDATE="$tools_venv/bin/kubernetes-validate"
export TONGBAN_CHECK_JSONSCHEMA="$tools_venv/bin/check-jsonschema"
export TONGBAN_REQUIRE_CLIENTS=1 TONGBAN_REQUIRE_S3=1
# openapi-typescript and the TypeScript compiler, pinned by tests/clients/package-lock.json.
npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
export TONGBAN_PROMTOOL="$(command -v promtool)"
export TONGBAN_REQUIRE_OPENSSL=1

# The end-to-end tests start the real binary. Building every target at once keeps one feature
# resolution (dev-dependencies included), so the binary and the tests share compiled crates.
cargo build --workspace --all-targets
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
