"""Tables and plots of simulation results (matplotlib's Agg canvas: no display, no global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from smartcache.catalog.units import format_size
from smartcache.tasks.cachesim import SimResult

TABLE_HEADERS = ["site", "policy", "cache", "requests", "hit ratio", "byte hit", "written", "remote (WAN)"]


def table_rows(results: Sequence[SimResult]) -> list[list[str]]:
    return [[r.site, r.policy, format_size(r.cache_size), str(r.overall.requests), f"{r.overall.hit_ratio:.4f}",
             f"{r.overall.byte_hit_ratio:.4f}", format_size(r.overall.bytes_written),
             format_size(r.overall.bytes_remote)] for r in results]


def format_table(results: Sequence[SimResult]) -> str:
    rows = table_rows(results)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(TABLE_HEADERS)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(TABLE_HEADERS, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def plot_byte_hit_ratio(results: Sequence[SimResult], path: str | Path, title: str | None = None) -> Path:
    """PNG: byte hit ratio vs cache size, one line per policy, one panel per site."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    path = Path(path)
    sites = list(dict.fromkeys(r.site for r in results))
    cols = min(3, max(1, len(sites)))
    rows = (len(sites) + cols - 1) // cols
    fig = Figure(figsize=(5.2 * cols, 3.8 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for k, site in enumerate(sites):
        ax = fig.add_subplot(rows, cols, k + 1)
        mine = [r for r in results if r.site == site]
        sizes = sorted({r.cache_size for r in mine})
        for policy in dict.fromkeys(r.policy for r in mine):
            pts = sorted((r.cache_size, r.overall.byte_hit_ratio) for r in mine if r.policy == policy)
            ax.plot([p[0] / 1e12 for p in pts], [p[1] for p in pts], marker="o", label=policy)
        if len(sizes) > 1 and sizes[0] > 0 and sizes[-1] / sizes[0] >= 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("cache size (TB)")
        ax.set_ylabel("byte hit ratio")
        ax.set_title("all sites" if site == "*" else site)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path
