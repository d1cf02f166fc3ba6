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
echo "held-out byte hit ratio, all sites pooled (model vs LRU, LFU, GDSF, ARC, S3-FIFO and Belady):"
"$VENV/bin/python" -m smartcache.tasks.evaluate.summary "${eval_dir}metrics.json"
echo "plot: ${eval_dir}byte_hit_ratio.png"
# the same window as the evaluation: the whole trace replayed (warm caches), requests counted from its first day
from_day=$("$VENV/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["summary"]["window"]["from"])' \
  "${eval_dir}metrics.json")
sc simulate --trace "${eval_dir}trace.csv" --from "$from_day" --site T2_IT_Pisa --cache-size 1TB,3TB,10TB \
  --policy lru,lfu,gdsf,arc,s3fifo,belady,model:cachenet --plot "$SMARTCACHE_HOME/T2_IT_Pisa-simulation.png"
echo "placement lists pushed to: $SMARTCACHE_HOME/push/"
