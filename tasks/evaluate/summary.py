"""The evaluation's summary (``metrics.json``'s ``summary``) and the table people read from it.

Byte hit ratios are pooled over the sites per size label (hit bytes / requested bytes of every site at
that label: ``site`` = each site's own catalog size, ``5%`` = 5 % of each site's held-out working set).
Gap closed is given two ways, each saying what it is:

- per size label, from that label's pooled figures: (model - LRU) / (Belady - LRU), and the same with the
  best heuristic of that label (the highest of LRU, LFU, GDSF, ARC, S3-FIFO, SIEVE there) as the low end,
  so that a reader can recompute it from the printed row;
- ``gap_closed``: the unweighted mean over the site x size rows of each row's share (rows where Belady is
  above LRU), with the number of rows in ``gap_closed_rows``; ``gap_closed_vs_best`` likewise.

    python -m smartcache.tasks.evaluate.summary DATA/evaluation/run-N/metrics.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from smartcache.tasks.simulate.core import SimResult
from smartcache.tasks.simulate.grid import HEURISTICS, best_of, gap_fraction, gap_rows

ORDER = (*HEURISTICS, "belady-bypass")


def _is_model(policy: str) -> bool:
    return policy.startswith("model")


def pooled(results: Sequence[SimResult]) -> dict[str, dict[str, float]]:
    """{size label: {policy: byte hit ratio over all sites}} from the per-site rows."""
    sums: dict[tuple[str, str], list[int]] = {}
    for r in results:
        if r.site == "*":
            continue
        acc = sums.setdefault((r.extra.get("size_label", str(r.cache_size)), r.policy), [0, 0])
        acc[0] += r.overall.bytes_hit
        acc[1] += r.overall.bytes_requested
    table: dict[str, dict[str, float]] = {}
    for (label, policy), (hit, req) in sums.items():
        table.setdefault(label, {})[policy] = round(hit / req, 6) if req else 0.0
    return table


def gaps_by_size(table: dict[str, dict[str, float]]) -> dict[str, dict[str, dict]]:
    """Per size label and model: the share of the LRU->Belady and best-heuristic->Belady gaps it closes."""
    out: dict[str, dict[str, dict]] = {}
    for label, by_policy in table.items():
        best = best_of(by_policy)
        belady = by_policy.get("belady")
        for model in (p for p in by_policy if _is_model(p)):
            value = by_policy[model]
            entry: dict = {"vs_lru": None, "best_heuristic": best[0] if best else None, "vs_best": None}
            if belady is not None and "lru" in by_policy:
                entry["vs_lru"] = gap_fraction(value, by_policy["lru"], belady)
            if belady is not None and best is not None:
                entry["vs_best"] = gap_fraction(value, best[1], belady)
            out.setdefault(label, {})[model] = entry
    return out


def summarize(results: Sequence[SimResult], policies: Sequence[str], window: dict | None = None) -> dict:
    """The summary written to metrics.json (see the module docstring)."""
    per_site = [r for r in results if r.site != "*"]
    table = pooled(per_site)
    models = [p for p in policies if _is_model(p)]
    rows = {p: gap_rows(per_site, p) for p in models}
    best_rows = {p: gap_rows(per_site, p, low="best") for p in models}

    def mean(rs: list[dict]) -> float | None:
        return sum(r["fraction"] for r in rs) / len(rs) if rs else None

    counted = {r.site: r.overall.requests for r in per_site}  # every row of a site counts the same requests
    best = {label: dict(zip(("policy", "byte_hit_ratio"), b)) for label, by in table.items()
            if (b := best_of(by)) is not None}
    return {"byte_hit_ratio": table, "best_heuristic": best,
            "gap_closed": {p: mean(rows[p]) for p in models},
            "gap_closed_vs_best": {p: mean(best_rows[p]) for p in models},
            "gap_closed_rows": {p: len(rows[p]) for p in models},
            "gap_closed_definition": (
                "unweighted mean over the site x size rows (those where Belady is above the low end) of "
                "(model - low) / (Belady - low) in byte hit ratio; low = LRU for gap_closed, the row's best "
                "heuristic for gap_closed_vs_best; gap_by_size uses the sites' pooled figures per size label"),
            "gap_by_size": gaps_by_size(table),
            "sites": sorted(counted), "requests": sum(counted.values()), "window": window}


def _label_key(label: str) -> tuple:
    try:
        return (label != "site", float(label.rstrip("%")))
    except ValueError:
        return (label != "site", 0.0)


def column_order(policies) -> list[str]:
    """LRU and the other heuristics, then models, then Belady: the order every table uses."""
    rank = {p: k for k, p in enumerate(ORDER)}
    plain = sorted((p for p in policies if not _is_model(p) and p != "belady"), key=lambda p: rank.get(p, 99))
    return plain + sorted(p for p in policies if _is_model(p)) + (["belady"] if "belady" in policies else [])


def format_summary(summary: dict) -> str:
    """The held-out table (one row per size label, all sites pooled), its gap columns and what they mean."""
    table = summary["byte_hit_ratio"]
    if not table:
        return "no results"
    policies = column_order({p for by in table.values() for p in by})
    models = [p for p in policies if _is_model(p)]
    gaps = summary.get("gap_by_size", {})
    width = max(8, *(len(p) for p in policies))
    head = ["size".ljust(6)] + [p.rjust(width) for p in policies]
    if models:
        head += ["gap closed vs LRU".rjust(18), "vs best heuristic".rjust(26)]
    lines = ["  ".join(head)]
    for label in sorted(table, key=_label_key):
        cells = [label.ljust(6)] + [f"{table[label][p]:{width}.4f}" if p in table[label] else "-".rjust(width)
                                    for p in policies]
        for m in models[:1]:    # the gap columns follow the first model; more models: see metrics.json
            g = gaps.get(label, {}).get(m, {})
            cells.append(_pct(g.get("vs_lru")).rjust(18))
            best = g.get("best_heuristic")
            cells.append((f"{_pct(g.get('vs_best'))} (best: {best})" if best else "-").rjust(26))
        lines.append("  ".join(cells))
    lines.append("site = each site's own cache size; N% = N % of each site's held-out working set; "
                 "sites pooled (hit bytes / requested bytes)")
    for m in models:
        n = summary.get("gap_closed_rows", {}).get(m, 0)
        lines.append(f"{m}: gap closed per row above = ({m} - LRU) / (Belady - LRU) of that row; vs best heuristic "
                     "= the same with the row's best heuristic as the low end")
        if summary.get("gap_closed", {}).get(m) is not None:
            lines.append(f"{m}: mean over the {n} site x size rows: {_pct(summary['gap_closed'][m])} of the "
                         f"LRU-to-Belady gap, {_pct(summary['gap_closed_vs_best'].get(m))} of the "
                         "best-heuristic-to-Belady gap (each row counts once)")
    window = summary.get("window")
    if window and window.get("from"):
        lines.append(f"counted: {window['counted']:,} requests from {window['from']} 00:00 UTC to "
                     f"{window.get('to') or window['last_request']}, after {window['warm_up']:,} that warm the "
                     "caches; the same figures: smartcache simulate --trace "
                     f"{window.get('trace') or 'TRACE.csv'} --from {window['from']} --site SITE --cache-size BYTES")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m smartcache.tasks.evaluate.summary METRICS.json", file=sys.stderr)
        return 2
    try:
        summary = json.loads(Path(argv[0]).read_text())["summary"]
    except (OSError, ValueError, KeyError) as e:
        print(f"error: cannot read the evaluation summary in {argv[0]}: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
