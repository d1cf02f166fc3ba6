#!/usr/bin/env bash
# Install what the tests need and run them: the README's test command, and what CI runs.
#   bash tests/run.sh [pytest args...]
# On a fresh Debian 12 machine as root: Debian packages (PostgreSQL, debootstrap for the
# HTCondor pool), a virtualenv with the project and its test extras, a throwaway PostgreSQL
# on 127.0.0.1; then pytest; then it stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${SMARTCACHE_VENV:-$ROOT/.venv}
WORK=${SMARTCACHE_TEST_WORK:-$ROOT/.ci/work}
# a free port, so that a developer's own server (or a second checkout's) never collides
PG_PORT=${SMARTCACHE_TEST_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
log() { printf '[tests/run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

debs=(postgresql debootstrap xrootd-server libxrootd-server-dev libxrootd-dev g++ bubblewrap curl)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    for i in 1 2 3; do
      apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >/dev/null && break
      log "apt-get failed (attempt $i)"; sleep 5
    done
  fi
  # the distribution's own cluster is not ours: never start it
  command -v pg_ctlcluster >/dev/null && service postgresql stop >/dev/null 2>&1 || true
else
  log "not root: skipping Debian packages (${debs[*]}); tests that need them will say so"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
log "installing smartcache[test] into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q -e ".[test]"

mkdir -p "$WORK"
cleanup() {
  bash tests/services/postgres.sh stop "$WORK/pg" || true
}
trap cleanup EXIT
if PG_URL=$(bash tests/services/postgres.sh start "$WORK/pg" "$PG_PORT"); then
  export SMARTCACHE_TEST_PG_URL=$PG_URL
  log "PostgreSQL on 127.0.0.1:$PG_PORT"
else
  log "PostgreSQL could not start: its tests will be skipped (and fail under CI)"
fi

log "pytest"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then log "pytest collected no tests"; rc=0; fi
exit $rc
