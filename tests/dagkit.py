"""Small DAGs of the noop task for executor tests (local and HTCondor)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Mapping, Sequence

from smartcache.condor import dag as dagmod
from smartcache.condor.submitdesc import quote_args


def noop_workflow(out: Path, *, fan_out: int = 4, retries: int = 2, max_jobs: int | None = None,
                  flags: Mapping[int, Sequence[str]] | None = None, last_flags: Sequence[str] = (),
                  sleep: float = 0.0, run_id: int = 1, catalog_url: str | None = None) -> dagmod.Workflow:
    """``first-000..first-N`` (fan-out) then ``last-000`` (fan-in over their outputs).

    Every node counts its attempts in ``out/<node>.count`` and appends its run interval to
    ``out/trace.txt``; ``flags`` adds noop options per first-layer node index.
    """
    flags = flags or {}
    common = ("--out", str(out), "--name", "$(JOB)", "--counter", f"{out}/$(JOB).count",
              "--trace", f"{out}/trace.txt", "--sleep", str(sleep))
    if catalog_url:
        common += ("--catalog-url", catalog_url, "--run-id", str(run_id))
    first = tuple({"partition": f"p{i}", "flags": quote_args(flags.get(i, ()))} for i in range(fan_out))
    sources = quote_args([f"{out}/first-{i:03d}.txt" for i in range(fan_out)])
    layers = (
        dagmod.Layer("first", "noop", (*common, "$(flags)"), first, retries=retries, category="first"),
        dagmod.Layer("last", "noop", (*common, "$(sources)", "$(flags)"),
                     ({"partition": "all", "sources": sources, "flags": quote_args(last_flags)},),
                     parents=("first",), retries=retries),
    )
    return dagmod.Workflow("noop", run_id, layers, {"first": max_jobs} if max_jobs else {})


def write(wf: dagmod.Workflow, dag_dir: Path) -> Path:
    return dagmod.write(dagmod.build(wf, dag_dir), dag_dir)


def counts(out: Path) -> dict[str, int]:
    return {p.name[:-len(".count")]: int(p.read_text()) for p in out.glob("*.count")}


def max_overlap(trace: Path, names_prefix: str = "") -> int:
    """Most intervals of ``trace`` (name start end) running at one instant."""
    events = []
    for line in trace.read_text().splitlines():
        name, start, end = line.split()
        if name.startswith(names_prefix):
            events += [(float(start), 1), (float(end), -1)]
    best = cur = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        cur += delta
        best = max(best, cur)
    return best


def open_up(path: Path) -> Path:
    """HTCondor checks a job's initialdir itself: every parent needs o+x (pytest's tmp is 0700)."""
    path = Path(path).absolute()
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, mode | stat.S_IXOTH | stat.S_IROTH)
    return path
