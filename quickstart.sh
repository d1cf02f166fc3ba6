#!/usr/bin/env bash
# Install smartcache into a virtualenv and run the main job end to end on the embedded
# defaults (SQLite catalog, local executor): the README's first Quick start command.
#   bash quickstart.sh                     # ./.venv, SMARTCACHE_HOME (default ~/.smartcache)
#   MONTHS=2 bash quickstart.sh            # a shorter window
# Steps: init -> sites -> generate 6 months of CMS access logs -> one DAG (reduce -> features
# -> train -> evaluate -> score -> push) -> what came out (catalog, plot, placement lists).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${SMARTCACHE_VENV:-$PWD/.venv}
MONTHS=${MONTHS:-6}
END=${END:-2026-10}
export SMARTCACHE_HOME=${SMARTCACHE_HOME:-$HOME/.smartcache}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q -e .
sc() { echo "+ smartcache $*" >&2; "$VENV/bin/smartcache" "$@"; }

sc init
# Four sites of the generated grid, with caches of a few percent of what they read in six months,
# each pushing its placement list to a folder (file://; root:// and https:// work the same way).
for spec in T2_IT_Pisa:3TB T2_IT_Bari:1.5TB T2_US_UCSD:2.5TB T1_US_FNAL:4TB; do
  site=${spec%%:*}
  sc sites list --json | grep -q "\"$site\"" ||
    sc sites add "$site" --cache-size "${spec#*:}" --push "file://$SMARTCACHE_HOME/push/$site"
done
sc generate logs --months "$MONTHS" --end "$END"
sc submit pipeline --months "$MONTHS" --end "$END" --chunk 7 --wait
sc runs --limit 3
sc models list
sc placements list
eval_dir=$(ls -dt "$SMARTCACHE_HOME"/data/evaluation/*/ | head -n 1)
echo "held-out byte hit ratio, all sites (site = the sites' own cache sizes; % = of each site's working set):"
"$VENV/bin/python" - "${eval_dir}metrics.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
bhr = s["byte_hit_ratio"]
policies = list(next(iter(bhr.values())))
print("  ".join(["size".ljust(6)] + [p.rjust(15) for p in policies]))
for label in sorted(bhr, key=lambda k: (k != "site", float(k.rstrip("%") or 0) if k != "site" else 0)):
    print("  ".join([label.ljust(6)] + [f"{bhr[label][p]:15.4f}" for p in policies]))
for model, gap in s.get("gap_closed", {}).items():
    print(f"{model} closes {gap:.0%} of the LRU-to-Belady gap (model stage: see 'smartcache models list')")
PY
echo "plot: ${eval_dir}byte_hit_ratio.png"
sc simulate --trace "${eval_dir}trace.csv" --site T2_IT_Pisa --cache-size 1TB,3TB,10TB \
  --policy lru,lfu,gdsf,belady,model:cachenet --plot "$SMARTCACHE_HOME/T2_IT_Pisa-simulation.png"
echo "placement lists pushed to: $SMARTCACHE_HOME/push/"
