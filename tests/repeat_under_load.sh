#!/usr/bin/env bash
# Run the tests of the real-service fixtures (XRootD/XCache, PostgreSQL, the HTCondor pool) N times in a
# row while the CPUs are kept busy, and count failures: a fixture that waits for a log line or a sleep
# instead of for what proves the server serves shows up here, not in someone's CI run.
#   bash tests/repeat_under_load.sh [N=20] [pytest args...]
# Uses the venv and the PostgreSQL that tests/run.sh sets up (run that once first); every run's output is
# kept in $WORK/repeat/run-K.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-20}
shift || true
VENV=${SMARTCACHE_VENV:-$ROOT/.venv}
WORK=${SMARTCACHE_TEST_WORK:-$ROOT/.ci/work}
LOAD=${SMARTCACHE_TEST_LOAD:-$(nproc)}            # busy processes: one per core by default
PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log() { printf '[repeat_under_load %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# the fixtures' own tests: every test that starts or uses XRootD, PostgreSQL or the pool
TESTS=(tests/test_push.py tests/test_site.py tests/test_pool.py tests/test_condor_dag.py
       tests/test_store.py tests/test_config.py tests/test_migrations.py tests/test_concurrency.py)

mkdir -p "$WORK/repeat"
busy=()
cleanup() {
  for p in "${busy[@]}"; do kill "$p" 2>/dev/null || true; done
  bash tests/services/postgres.sh stop "$WORK/repeat-pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT
SMARTCACHE_TEST_PG_URL=$(bash tests/services/postgres.sh start "$WORK/repeat-pg" "$PG_PORT")
export SMARTCACHE_TEST_PG_URL SMARTCACHE_POOL_KEEP=1
for _ in $(seq "$LOAD"); do
  python3 -c 'while True: pass' &
  busy+=($!)
done
log "$LOAD busy processes; ${#TESTS[@]} test files x $N runs"

failed=0
for k in $(seq "$N"); do
  start=$SECONDS
  if "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@" >"$WORK/repeat/run-$k.log" 2>&1; then
    log "run $k/$N passed in $((SECONDS - start)) s: $(tail -n 1 "$WORK/repeat/run-$k.log")"
  else
    failed=$((failed + 1))
    log "run $k/$N FAILED in $((SECONDS - start)) s (see $WORK/repeat/run-$k.log):"
    grep -E '^(FAILED|ERROR) ' "$WORK/repeat/run-$k.log" >&2 || tail -n 20 "$WORK/repeat/run-$k.log" >&2
  fi
done
log "$failed of $N runs failed under load"
[ "$failed" -eq 0 ]
