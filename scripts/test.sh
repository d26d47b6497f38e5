#!/usr/bin/env bash
# Runs Eddy's whole test suite on a fresh machine: installs the clients the end-to-end tests
# drive (psql from Debian's postgresql-client), then builds and runs every test in release mode
# (one build serves the server binary, the tests and the benches).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy-target}"
cargo fmt --all -- --check
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --all-targets 2>&1 | tee "$log"
# One closing line over all test binaries.
awk '/^test result:/ { p += $4; f += $6 } END { printf "eddy: %d passed, %d failed\n", p, f }' "$log"
