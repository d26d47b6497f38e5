#!/usr/bin/env bash
# Installs what the end-to-end tests drive, and only what is missing, so it is cheap to re-run:
#   - Debian packages: psql (postgresql-client), pgjdbc (libpostgresql-jdbc-java), a JDK when
#     `javac` is missing, unixODBC and psqlODBC (odbc-postgresql);
#   - a Python venv at ${EDDY_VENV:-$HOME/.cache/eddy-venv} with tests/clients/requirements.txt,
#     reinstalled only when that file's hash differs from the one stamped in the venv;
#   - SQLAlchemy 1.4 alone in ${EDDY_SQLA14:-$HOME/.cache/eddy-venv-sqla14} (the venv keeps 2.x;
#     the 1.4 run of the SQLAlchemy test puts this directory first on PYTHONPATH);
#   - Apache Superset in a venv of its own at ${EDDY_SUPERSET_VENV:-$HOME/.cache/eddy-superset-venv}
#     with tests/clients/superset-requirements.txt (Superset pins SQLAlchemy 1.4 and much else),
#     reinstalled only when that file's hash changes; about a minute and 1 GB the first time.
# Prints what it installs. Uses sudo only when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
installed libpostgresql-jdbc-java || need_apt+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
installed unixodbc || need_apt+=(unixodbc)
installed odbc-postgresql || need_apt+=(odbc-postgresql)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The MQTT source's tests run a real broker and publish with its client (issue 16).
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# `python3 -m venv` needs ensurepip, which Debian ships separately in python3-venv.
if ! command -v python3 >/dev/null 2>&1; then
  need_apt+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

venv="${EDDY_VENV:-$HOME/.cache/eddy-venv}"
req="tests/clients/requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
  echo "install-test-deps: creating Python venv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.eddy-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "install-test-deps: pip install -r $req into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
fi

# SQLAlchemy 1.4 beside the venv's 2.x, without its optional dependencies.
sqla14="${EDDY_SQLA14:-$HOME/.cache/eddy-venv-sqla14}"
sqla14_spec="SQLAlchemy>=1.4.54,<1.5"
if [ "$(cat "$sqla14/.eddy-spec" 2>/dev/null || true)" != "$sqla14_spec" ]; then
  echo "install-test-deps: pip install --target $sqla14 '$sqla14_spec'"
  rm -rf "$sqla14"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --target "$sqla14" "$sqla14_spec"
  echo "$sqla14_spec" >"$sqla14/.eddy-spec"
fi

# Apache Superset, in a venv of its own.
superset_venv="${EDDY_SUPERSET_VENV:-$HOME/.cache/eddy-superset-venv}"
superset_req="tests/clients/superset-requirements.txt"
if [ ! -x "$superset_venv/bin/python" ]; then
  echo "install-test-deps: creating Python venv $superset_venv"
  rm -rf "$superset_venv"
  python3 -m venv "$superset_venv"
fi
superset_stamp="$superset_venv/.eddy-requirements.sha256"
superset_want="$(sha256sum "$superset_req" | cut -d' ' -f1)"
if [ "$(cat "$superset_stamp" 2>/dev/null || true)" != "$superset_want" ]; then
  echo "install-test-deps: pip install -r $superset_req into $superset_venv"
  "$superset_venv/bin/python" -m pip install -q --disable-pip-version-check -r "$superset_req"
  echo "$superset_want" >"$superset_stamp"
fi
