"""Tables and plots of simulation results (matplotlib's Agg canvas: no display, no global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from smartcache.catalog.units import format_size
from smartcache.tasks.simulate.core import SimResult

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


MAX_PANELS = 6


def plot_byte_hit_ratio(results: Sequence[SimResult], path: str | Path, title: str | None = None) -> Path:
    """PNG: byte hit ratio vs cache size, one line per policy, one panel per site.

    With more than ``MAX_PANELS`` sites only the all-sites panel (site ``*``) is drawn, if there is one.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    path = Path(path)
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
        for policy in dict.fromkeys(r.policy for r in mine):
            pts = sorted((r.cache_size, r.overall.byte_hit_ratio) for r in mine if r.policy == policy)
            ax.plot([p[0] / 1e12 for p in pts], [p[1] for p in pts], marker="o", label=policy)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path
