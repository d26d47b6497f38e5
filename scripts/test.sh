#!/usr/bin/env bash
# Runs Eddy's whole test suite on a fresh machine: installs the clients the end-to-end tests
# drive (psql, pgjdbc, psqlODBC and a Python venv with psycopg, SQLAlchemy, asyncpg and pyodbc:
# see scripts/install-test-deps.sh), then builds and runs every test in release mode (one build
# serves the server binary, the tests and the benches).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-test-deps.sh
export EDDY_VENV="${EDDY_VENV:-$HOME/.cache/eddy-venv}"
export EDDY_PYTHON="$EDDY_VENV/bin/python"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy-target}"
cargo fmt --all -- --check
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --all-targets --no-fail-fast 2>&1 | tee "$log"
# One closing line over all test binaries.
awk '/^test result:/ { p += $4; f += $6 } END { printf "eddy: %d passed, %d failed\n", p, f }' "$log"
