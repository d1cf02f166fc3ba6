#!/usr/bin/env bash
# Install smartcache into a virtualenv and run the main job end to end on the embedded
# defaults (SQLite catalog, local executor): the README's first Quick start command.
#   bash quickstart.sh            # uses ./.venv and SMARTCACHE_HOME (default ~/.smartcache)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${SMARTCACHE_VENV:-$PWD/.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q -e .
sc() { echo "+ smartcache $*" >&2; "$VENV/bin/smartcache" "$@"; }

sc init
sc sites list --json | grep -q '"T2_IT_Pisa"' || sc sites add T2_IT_Pisa --cache-size 200TB --push "file://$HOME/.smartcache/push/T2_IT_Pisa"
sc sites list
sc datasets list
sc runs
