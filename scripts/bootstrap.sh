#!/usr/bin/env bash
# Tsunagari set-up on a fresh Debian machine, then run something.
#
#   scripts/bootstrap.sh demo [ARGS…]   Python env only, then `tsunagari demo ARGS…`
#   scripts/bootstrap.sh test [ARGS…]   everything the tests need (Debian packages,
#                                       the project env, Synapse's own env), then the
#                                       format check, lint, types and import layers, then pytest ARGS…
#   scripts/bootstrap.sh check [ARGS…]  the same as test (CI runs test: what check checks)
#   scripts/bootstrap.sh bench [ARGS…]  set up as for test, then every benchmark in benchmarks/ at its
#                                       standard size (benchmarks/run_all.py ARGS…), writing
#                                       benchmarks/RESULTS.md (tens of minutes; the machine should be idle)
#   scripts/bootstrap.sh setup          everything, run nothing
#
# Idempotent: a second run only checks. Servers (Dovecot, Postfix, Synapse,
# Prometheus, Pushgateway, PostgreSQL, Chromium) are started by the test suite itself on
# loopback, with free ports and run folders under the pytest temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENV=${TSUNAGARI_VENV:-$ROOT/.venv}
SYNAPSE_VENV=${TSUNAGARI_SYNAPSE_VENV:-$HOME/.cache/tsunagari/synapse-venv}
# iproute2, nftables: network namespaces and packet loss for the fault matrix (tests/faults).
# fonts-ipaexfont-gothic: Japanese glyphs for the scorecard charts (matplotlib) and Chromium screenshots.
# prometheus-blackbox-exporter: the peer of `tsunagari serve /probe` in benchmarks/bench_preflight_vs_blackbox.py.
# postgresql: the PostgreSQL journal's tests start their own server (initdb into a temp dir,
#   tests/servers/postgres.py); the package's own cluster service is never started.
APT_PKGS=(dovecot-imapd dovecot-lmtpd postfix prometheus prometheus-pushgateway chromium fonts-ipaexfont-gothic iproute2 nftables prometheus-blackbox-exporter postgresql)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_deps() {
  local missing=()
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The packages' own services must not start (tests run private instances).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | sudo_ tee /usr/sbin/policy-rc.d >/dev/null
      sudo_ chmod +x /usr/sbin/policy-rc.d
    fi
    # postgresql: no "main" cluster either (the tests initdb their own; postgresql-common
    # reads createcluster.d before the package's post-install makes one).
    sudo_ mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' |
      sudo_ tee /etc/postgresql-common/createcluster.d/tsunagari-no-main-cluster.conf >/dev/null
    sudo_ apt-get update -q >/dev/null
    sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

py_env() {
  local stamp=$VENV/.tsunagari-installed
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing the project and its test dependencies"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
  # An editable install leaves the project's own modules to be compiled by every process
  # that imports them (and never saved where PYTHONDONTWRITEBYTECODE is set): compile
  # them once, as pip does for an installed package. Only what changed is compiled again.
  "$VENV/bin/python" -m compileall -q -j 0 drills probes >/dev/null
}

synapse_env() {
  if [ ! -x "$SYNAPSE_VENV/bin/synapse_homeserver" ]; then
    log "installing matrix-synapse into $SYNAPSE_VENV"
    mkdir -p "$(dirname "$SYNAPSE_VENV")"
    "$PY" -m venv "$SYNAPSE_VENV"
    "$SYNAPSE_VENV/bin/python" -m pip install -q "matrix-synapse>=1.100"
  fi
}

# ruff format --check, ruff check, mypy, lint-imports (the layers in pyproject.toml):
# each runs (a few seconds), and any failure fails.
static_checks() {
  local failed=()
  log "ruff format --check ."
  "$VENV/bin/ruff" format --check . || failed+=("ruff format --check")
  log "ruff check ."
  "$VENV/bin/ruff" check . || failed+=("ruff check")
  log "mypy drills probes"
  "$VENV/bin/mypy" drills probes || failed+=("mypy")
  log "lint-imports"
  "$VENV/bin/lint-imports" || failed+=("lint-imports")
  if [ ${#failed[@]} -gt 0 ]; then
    log "failed: ${failed[*]}"
    return 1
  fi
}

cmd=${1:-test}
shift || true
case "$cmd" in
  demo)
    py_env
    exec "$VENV/bin/tsunagari" demo "$@"
    ;;
  test | check)
    apt_deps
    py_env
    synapse_env
    export TSUNAGARI_SYNAPSE_VENV=$SYNAPSE_VENV
    static_checks
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  bench)
    apt_deps
    py_env
    synapse_env
    export TSUNAGARI_SYNAPSE_VENV=$SYNAPSE_VENV
    exec "$VENV/bin/python" benchmarks/run_all.py "$@"
    ;;
  setup)
    apt_deps
    py_env
    synapse_env
    ;;
  *)
    echo "usage: $0 demo|test|check|bench|setup [ARGS…]" >&2
    exit 2
    ;;
esac
