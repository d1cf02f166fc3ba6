"""Tables and plots of simulation results (matplotlib's Agg canvas: no display, no global state).

Every policy has one colour wherever it is drawn (``simulate --plot`` and the evaluation's plot alike):
:func:`policy_color` maps the policy's name to a fixed palette, never the order it was simulated in.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Sequence

from smartcache.catalog.units import format_size
from smartcache.tasks.simulate.core import SimResult
from smartcache.tasks.simulate.grid import GAP_DEFINITION, HEURISTICS, best_of, gap_fraction

TABLE_HEADERS = ["site", "policy", "cache", "requests", "hit ratio", "byte hit", "written", "remote (WAN)"]

# tab10-like colours, one per policy name; Belady (the bound) is black and dashed
POLICY_COLORS = {"lru": "#1f77b4", "lfu": "#8c564b", "gdsf": "#2ca02c", "arc": "#9467bd", "s3fifo": "#ff7f0e",
                 "sieve": "#17becf", "belady": "#000000", "belady-bypass": "#7f7f7f", "model": "#d62728",
                 # libCacheSim's learned policies (benchmarks/bench_policy.py)
                 "lrb": "#e7ba52", "glcache": "#8ca252", "3lcache": "#7b4173"}
MODEL_COLORS = ("#d62728", "#e377c2", "#bcbd22", "#393b79", "#637939", "#843c39")
OTHER_COLOR = "#7f7f7f"


def policy_color(policy: str) -> str:
    """The colour of ``policy`` in every plot: fixed per name; ``model:NAME[:VERSION]`` by NAME (a stable
    checksum, not Python's per-process ``hash``), so a model keeps its colour from plot to plot."""
    if policy in POLICY_COLORS:
        return POLICY_COLORS[policy]
    base, _, rest = policy.partition(":")
    if base == "model" and rest:
        name = rest.split(":", 1)[0]
        return MODEL_COLORS[zlib.crc32(name.encode()) % len(MODEL_COLORS)]
    return OTHER_COLOR


def _line_style(policy: str) -> str:
    return "--" if policy.startswith("belady") else "-"


def gap_fields(results: Sequence[SimResult]) -> dict[tuple[str, str, int], dict]:
    """Per row (site, policy, size), the figures printed beside it, each from that row's site and size alone.

    ``gap_closed``: :data:`GAP_DEFINITION` with LRU as the low end (every policy but LRU and Belady, when
    both were simulated; None where Belady is not above LRU). Model rows also get ``best_heuristic`` (the
    best of :data:`HEURISTICS` simulated there), ``vs_best_heuristic`` (the difference in byte hit ratio)
    and ``gap_closed_vs_best`` (the same gap share with that heuristic as the low end)."""
    table: dict[tuple[str, int], dict[str, float]] = {}
    for r in results:
        table.setdefault((r.site, r.cache_size), {})[r.policy] = r.overall.byte_hit_ratio
    fields: dict[tuple[str, str, int], dict] = {}
    for (site, size), by_policy in table.items():
        lru, belady = by_policy.get("lru"), by_policy.get("belady")
        best = best_of(by_policy)
        for policy, value in by_policy.items():
            f: dict = {}
            if lru is not None and belady is not None and policy not in ("lru", "belady"):
                f["gap_closed"] = gap_fraction(value, lru, belady)
            if policy.startswith("model") and best is not None:
                f["best_heuristic"] = best[0]
                f["vs_best_heuristic"] = value - best[1]
                if belady is not None:
                    f["gap_closed_vs_best"] = gap_fraction(value, best[1], belady)
            if f:
                fields[(site, policy, size)] = f
    return fields


def gap_cells(results: Sequence[SimResult]) -> dict[tuple[str, str, int], tuple[str, str]]:
    """:func:`gap_fields` as the table prints them: ("37%", "+0.0123 vs s3fifo")."""
    cells = {}
    for key, f in gap_fields(results).items():
        gap = "" if "gap_closed" not in f else ("-" if f["gap_closed"] is None else f"{f['gap_closed']:.0%}")
        vs = f"{f['vs_best_heuristic']:+.4f} vs {f['best_heuristic']}" if "best_heuristic" in f else ""
        cells[key] = (gap, vs)
    return cells


def table_rows(results: Sequence[SimResult]) -> list[list[str]]:
    return [[r.site, r.policy, format_size(r.cache_size), str(r.overall.requests), f"{r.overall.hit_ratio:.4f}",
             f"{r.overall.byte_hit_ratio:.4f}", format_size(r.overall.bytes_written),
             format_size(r.overall.bytes_remote)] for r in results]


def format_table(results: Sequence[SimResult]) -> str:
    """The table, with a gap-closed column (and, for models, the margin over the best heuristic) when
    LRU and Belady were simulated, and a footnote saying exactly what those columns are."""
    headers, rows = list(TABLE_HEADERS), table_rows(results)
    cells = gap_cells(results)
    show_gap = any(g for g, _ in cells.values())
    show_vs = any(v for _, v in cells.values())
    if show_gap:
        headers.append("gap closed")
    if show_vs:
        headers.append("vs best heuristic")
    for r, row in zip(results, rows):
        gap, vs = cells.get((r.site, r.policy, r.cache_size), ("", ""))
        row += ([gap] if show_gap else []) + ([vs] if show_vs else [])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    if show_gap:
        lines.append("gap closed = " + GAP_DEFINITION.format(low="LRU").replace("policy", "row")
                     + "; each row on its own, nothing averaged")
    if show_vs:
        lines.append("vs best heuristic = the model's byte hit ratio minus the best of "
                     f"{', '.join(h for h in HEURISTICS)} simulated at the same site and size")
    return "\n".join(lines)


MAX_PANELS = 6


def plot_byte_hit_ratio(results: Sequence[SimResult], path: str | Path, title: str | None = None) -> Path:
    """PNG: byte hit ratio vs cache size, one line per policy, one panel per site (see :func:`byte_hit_figure`)."""
    fig = byte_hit_figure(results, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path


def legend_order(policies: Sequence[str]) -> list[str]:
    """Heuristics in :data:`POLICY_COLORS` order, then models by name, then the Belady bounds."""
    rank = {p: k for k, p in enumerate(POLICY_COLORS)}

    def key(p: str) -> tuple:
        if p.startswith("belady"):
            return (2, rank.get(p, 0), p)
        if p.startswith("model"):
            return (1, 0, p)
        return (0, rank.get(p, len(rank)), p)
    return sorted(dict.fromkeys(policies), key=key)


def byte_hit_figure(results: Sequence[SimResult], title: str | None = None):
    """The matplotlib Figure of :func:`plot_byte_hit_ratio`; every line coloured by :func:`policy_color`.

    With more than ``MAX_PANELS`` sites only the all-sites panel (site ``*``) is drawn, if there is one.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    sites = list(dict.fromkeys(r.site for r in results))
    if len(sites) > MAX_PANELS and "*" in sites:
        sites = ["*"]
    cols = min(3, max(1, len(sites)))
    rows = (len(sites) + cols - 1) // cols
    height = 3.8 * rows + (0.4 if title and len(sites) > 1 else 0)
    fig = Figure(figsize=(5.2 * cols, height))
    FigureCanvasAgg(fig)
    for k, site in enumerate(sites):
        ax = fig.add_subplot(rows, cols, k + 1)
        mine = [r for r in results if r.site == site]
        sizes = sorted({r.cache_size for r in mine})
        for policy in legend_order([r.policy for r in mine]):
            pts = sorted((r.cache_size, r.overall.byte_hit_ratio) for r in mine if r.policy == policy)
            ax.plot([p[0] / 1e12 for p in pts], [p[1] for p in pts], marker="o", label=policy,
                    color=policy_color(policy), linestyle=_line_style(policy))
        if len(sizes) > 1 and sizes[0] > 0 and sizes[-1] / sizes[0] >= 10:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        if len(sizes) <= 8:   # tick the simulated sizes themselves
            ax.set_xticks([x / 1e12 for x in sizes], [format_size(x) for x in sizes], fontsize="small")
            ax.set_xlabel("cache size")
        else:
            ax.set_xlabel("cache size (TB)")
        ax.set_ylabel("byte hit ratio")
        name = "all sites" if site == "*" else site
        ax.set_title(f"{title}: {name}" if title and len(sites) == 1 else name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    # fixed margins in inches: constrained layout costs seconds with many panels
    fig.subplots_adjust(left=0.75 / (5.2 * cols), right=1 - 0.2 / (5.2 * cols), bottom=0.55 / height,
                        top=1 - (0.75 if title and len(sites) > 1 else 0.4) / height, wspace=0.3, hspace=0.45)
    if title and len(sites) > 1:
        fig.suptitle(title)
    return fig
