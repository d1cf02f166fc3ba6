"""Statistics of generated records: per-partition category counts and the daily reuse ceiling."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smartcache.tasks.generate.params import GeneratorParams


def partition_counts(table: pa.Table) -> dict[str, int]:
    """Records by disjoint category: analysis_ok (successful analysis, known size), null_size (successful
    analysis, FileSize null), failed (analysis, SuccessFlag 0), production (Type production); plus the
    distinct (site, file) pairs and the bytes of analysis_ok records."""
    prod = pc.equal(table["Type"], "production")
    ok = pc.and_(pc.invert(prod), pc.equal(table["SuccessFlag"], 1))
    has_size = pc.is_valid(table["FileSize"])
    good = table.filter(pc.and_(ok, has_size))
    pairs = good.group_by(["SiteName", "FileName"]).aggregate([]).num_rows if good.num_rows else 0
    return {
        "records": table.num_rows,
        "analysis_ok": good.num_rows,
        "null_size": int(pc.sum(pc.and_(ok, pc.invert(has_size))).as_py() or 0),
        "failed": int(pc.sum(pc.and_(pc.invert(prod), pc.invert(ok))).as_py() or 0),
        "production": int(pc.sum(prod).as_py() or 0),
        "analysis_ok_site_files": pairs,
        "analysis_ok_bytes": int(pc.sum(good["FileSize"]).as_py() or 0),
    }


def daily_reuse(table: pa.Table, params: GeneratorParams | None = None) -> pa.Table:
    """Per (day, region): requests, unique files and the reuse ceiling (requests - unique) / requests,
    over successful analysis records. Regions come from ``params`` (else the site's country code)."""
    params = params or GeneratorParams()
    t = table.filter(pc.and_(pc.equal(table["Type"], "analysis"), pc.equal(table["SuccessFlag"], 1)))
    sites = pc.unique(t["SiteName"]).to_pylist()
    regions = [params.region_of(s) or (s.split("_")[1] if s and s.count("_") >= 2 else "??") for s in sites]
    region = pa.array(regions, pa.string()).take(pc.index_in(t["SiteName"], value_set=pa.array(sites, pa.string())))
    day = pc.divide(t["FinishedTimeStamp"], 86_400_000)
    g = pa.table({"day": day, "region": region, "lfn": t["FileName"]}).group_by(["day", "region"]).aggregate(
        [("lfn", "count"), ("lfn", "count_distinct")])
    req, uniq = g["lfn_count"].to_numpy(), g["lfn_count_distinct"].to_numpy()
    return pa.table({"day": g["day"], "region": g["region"], "requests": req, "unique_files": uniq,
                     "ceiling": (req - uniq) / np.maximum(req, 1)}).sort_by([("day", "ascending"), ("region", "ascending")])


def reuse_ceiling(table: pa.Table, params: GeneratorParams | None = None) -> dict[str, float]:
    """Mean over days of the daily reuse ceiling, per region."""
    d = daily_reuse(table, params)
    region, ceil = d["region"].to_pylist(), d["ceiling"].to_numpy()
    return {r: float(np.mean(ceil[[x == r for x in region]])) for r in sorted(set(region))}
