"""Synthetic request-trace families (``timestamp, site, lfn, size``) for benchmarks and trials.

The CMS log generator (:mod:`.task`) writes raw JobMonitoring records; these families write a trace
directly, each stressing a cache policy in its own way, so that a policy tuned on one can be tried on
the others:

- ``scan``: one site, dataset scans. Analysis tasks read a slice of a dataset file by file over a few
  hours and are re-run by their users over the following days; datasets appear over time and their
  Zipf popularity drifts; one-off reads of old files are mixed in. Files of 0.5--5 GB by tier.
- ``zipf``: one site, independent requests (IRM) over a Zipf(0.9) catalogue with heavy-tailed sizes;
  every few days a share of the popular ranks is given to new files (popularity shifts).
- ``drift``: the scan family whose users' habits change halfway (re-runs after hours instead of days,
  smaller slices): for continued training.
- ``mix``: three sites with different loads; periodic reprocessing campaigns that sweep whole
  datasets, a hot set of calibration files read all the time, bursts of analysis on new datasets,
  and one-off reads. Kept aside when tuning: it is the family to try a finished policy on.

Every family is a pure function of its parameters and seed (same seed, same trace).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcache.catalog.errors import SmartcacheError

DAY = 86400.0
START = 1_767_225_600.0          # 2026-01-01T00:00:00Z
FAMILIES = ("scan", "zipf", "mix", "drift")
TIERS = (("NANOAODSIM", 0.6e9, 0.5), ("MINIAODSIM", 2.2e9, 0.4), ("AODSIM", 3.3e9, 0.35))


class TraceFamilyError(SmartcacheError):
    """Unknown family or unusable parameters."""


@dataclass(frozen=True)
class Requests:
    """A generated trace as columns, in time order."""

    ts: np.ndarray       # float64 epoch seconds
    lfn: list[str]
    size: np.ndarray     # int64 bytes
    site: list[str]

    def __len__(self) -> int:
        return len(self.ts)


class _Catalogue:
    """Datasets of CMS-named files: per dataset a tier, a birth time and a contiguous range of file ids."""

    def __init__(self, rng: np.random.Generator, n_datasets: int, days: float, files_mean: float,
                 prefix: str = "Synth"):
        self.tier = rng.integers(0, len(TIERS), n_datasets)
        self.birth = np.sort(rng.random(n_datasets)) * days * DAY * 0.9
        self.n_files = np.maximum(2, rng.lognormal(np.log(files_mean), 0.8, n_datasets)).astype(np.int64)
        self.first = np.concatenate([[0], np.cumsum(self.n_files)[:-1]])
        self.size = np.empty(int(self.n_files.sum()), np.int64)
        for d in range(n_datasets):
            _, mean, sigma = TIERS[self.tier[d]]
            sl = slice(self.first[d], self.first[d] + self.n_files[d])
            self.size[sl] = np.clip(rng.lognormal(np.log(mean), sigma, self.n_files[d]), 5e7, 2e10)
        self.dataset_of = np.repeat(np.arange(n_datasets), self.n_files)
        self.prefix = prefix

    def lfns(self, files: np.ndarray) -> list[str]:
        out = []
        for f in files.tolist():
            d = int(self.dataset_of[f])
            tier = TIERS[self.tier[d]][0]
            out.append(f"/store/mc/Synth26/{self.prefix}{d:05d}/{tier}/v1-{d % 7}/{(f - self.first[d]) // 1000:04d}/"
                       f"{f:09d}.root")
        return out


def _finish(ts: list[np.ndarray], files: list[np.ndarray], sites: list[np.ndarray], cat: _Catalogue,
            site_names: tuple[str, ...], end: float) -> Requests:
    t, f, s = np.concatenate(ts), np.concatenate(files), np.concatenate(sites)
    keep = (t >= 0) & (t < end)
    t, f, s = t[keep], f[keep], s[keep]
    order = np.argsort(t, kind="stable")
    t, f, s = t[order], f[order], s[order]
    names = np.array(site_names, dtype=object)
    return Requests(START + t, cat.lfns(f), cat.size[f], names[s].tolist())


def _scan_sessions(rng: np.random.Generator, cat: _Catalogue, n_tasks: int, days: float, weights_at,
                   rerun_p: float, site: int = 0, slice_frac: tuple[float, float] = (0.2, 1.0),
                   hours: float = 6.0, rerun_after=lambda t: 1.5 * DAY) -> tuple[list, list, list]:
    """Analysis tasks: each reads a slice of one dataset in file order over a few hours; re-runs follow
    (after ``rerun_after(t)`` seconds on average, exponentially distributed)."""
    ts, files, sites = [], [], []
    starts = np.sort(rng.random(n_tasks)) * days * DAY
    for t0 in starts:
        w = weights_at(t0)
        if w.sum() <= 0:
            continue
        d = rng.choice(len(w), p=w / w.sum())
        n = int(cat.n_files[d])
        k = max(1, int(n * rng.uniform(*slice_frac)))
        lo = int(rng.integers(0, n - k + 1))
        chunk = cat.first[d] + np.arange(lo, lo + k)
        t = t0
        while True:
            ts.append(t + np.sort(rng.random(k)) * hours * 3600.0 * rng.uniform(0.3, 1.0))
            files.append(chunk)
            sites.append(np.full(k, site))
            if rng.random() >= rerun_p:
                break
            t += rng.exponential(rerun_after(t)) + 1800.0  # the user comes back: minutes to days later
    return ts, files, sites


def scan(seed: int = 0, days: float = 120.0, n_datasets: int = 900, tasks_per_day: float = 45.0,
         one_off_share: float = 0.15) -> Requests:
    """The single-site, scan-heavy family with drifting popularity (~300k requests by default)."""
    rng = np.random.default_rng([seed, 1])
    cat = _Catalogue(rng, n_datasets, days, files_mean=40.0)
    base = (np.arange(1, n_datasets + 1) ** -0.9)[rng.permutation(n_datasets)]
    life = rng.lognormal(np.log(20 * DAY), 0.7, n_datasets)

    def weights_at(t: float) -> np.ndarray:
        age = t - cat.birth
        return np.where(age >= 0, base * np.exp(-np.maximum(age, 0) / life), 0.0)
    ts, files, sites = _scan_sessions(rng, cat, int(tasks_per_day * days), days, weights_at, rerun_p=0.55)
    n_scan = sum(len(x) for x in files)
    n_one = int(n_scan * one_off_share / (1 - one_off_share))
    t1 = rng.random(n_one) * days * DAY
    born = np.searchsorted(cat.birth, t1)                    # a one-off read of any file already born
    d1 = (rng.random(n_one) * np.maximum(born, 1)).astype(np.int64)
    f1 = cat.first[d1] + (rng.random(n_one) * cat.n_files[d1]).astype(np.int64)
    ts.append(t1), files.append(f1), sites.append(np.zeros(n_one, np.int64))
    return _finish(ts, files, sites, cat, ("T2_XX_Scan",), days * DAY)


def drift(seed: int = 0, days: float = 90.0, n_datasets: int = 700, tasks_per_day: float = 45.0) -> Requests:
    """The scan family whose habits change halfway: re-runs come back after 1.5 days, then after 3 hours,
    and slices shrink -- what a model trained on the first half has not seen (for continued training)."""
    rng = np.random.default_rng([seed, 4])
    cat = _Catalogue(rng, n_datasets, days, files_mean=40.0, prefix="Drift")
    base = (np.arange(1, n_datasets + 1) ** -0.9)[rng.permutation(n_datasets)]
    half = days * DAY / 2

    def weights_at(t: float) -> np.ndarray:
        age = t - cat.birth
        return np.where(age >= 0, base * np.exp(-np.maximum(age, 0) / (15 * DAY)), 0.0)
    first = _scan_sessions(rng, cat, int(tasks_per_day * days / 2), days / 2, weights_at, rerun_p=0.55,
                           rerun_after=lambda t: 1.5 * DAY)
    rng2 = np.random.default_rng([seed, 5])
    second = _scan_sessions(rng2, cat, int(tasks_per_day * days / 2), days / 2, lambda t: weights_at(t + half),
                            rerun_p=0.7, slice_frac=(0.05, 0.4), rerun_after=lambda t: 3 * 3600.0)
    ts = first[0] + [x + half for x in second[0]]
    return _finish(ts, first[1] + second[1], first[2] + second[2], cat, ("T2_XX_Drift",), days * DAY)


def zipf(seed: int = 0, days: float = 60.0, n_requests: int = 1_000_000, n_files: int = 100_000,
         alpha: float = 0.9, shift_every: float = 5.0, shift_share: float = 0.2) -> Requests:
    """The IRM family: Zipf(alpha) popularity, heavy-tailed sizes, popular ranks handed to new files."""
    rng = np.random.default_rng([seed, 2])
    p = np.arange(1, n_files + 1, dtype=np.float64) ** -alpha
    p /= p.sum()
    n_epochs = max(1, int(np.ceil(days / shift_every)))
    owner = rng.permutation(n_files).astype(np.int64)        # rank -> file id
    next_id = n_files
    ts, files = [], []
    per_epoch = n_requests // n_epochs
    for e in range(n_epochs):
        ranks = rng.choice(n_files, size=per_epoch, p=p)
        ts.append((e + np.sort(rng.random(per_epoch))) * shift_every * DAY)
        files.append(owner[ranks])
        moved = np.flatnonzero(rng.random(n_files) < shift_share)
        owner[moved] = np.arange(next_id, next_id + len(moved))  # new files take those ranks
        next_id += len(moved)
    cat = _Catalogue(rng, 1, days, files_mean=2.0, prefix="Zipf")
    cat.size = np.clip(rng.pareto(1.3, next_id) * 1.0e9 + 1.0e8, 5e7, 2e10).astype(np.int64)
    cat.dataset_of = np.zeros(next_id, np.int64)
    cat.first = np.zeros(1, np.int64)
    cat.tier = np.zeros(1, np.int64)
    sites = [np.zeros(len(x), np.int64) for x in files]
    return _finish(ts, files, sites, cat, ("T2_XX_Zipf",), n_epochs * shift_every * DAY)


def mix(seed: int = 0, days: float = 90.0, n_datasets: int = 700) -> Requests:
    """Three sites: reprocessing sweeps, a hot calibration set, analysis bursts on new data, one-off reads."""
    rng = np.random.default_rng([seed, 3])
    cat = _Catalogue(rng, n_datasets, days, files_mean=60.0, prefix="Mix")
    site_names = ("T1_XX_Big", "T2_XX_Mid", "T3_XX_Small")
    load = np.array([1.0, 0.6, 0.25])
    ts, files, sites = [], [], []
    hot = rng.choice(len(cat.size), 300, replace=False)
    for s, lf in enumerate(load):
        # analysis bursts on young datasets (popularity decays fast)
        base = rng.pareto(1.1, n_datasets) + 0.1

        def young(t: float, base=base) -> np.ndarray:
            age = t - cat.birth
            return np.where(age >= 0, base * np.exp(-np.maximum(age, 0) / (6 * DAY)), 0.0)
        a = _scan_sessions(rng, cat, int(30 * lf * days), days, young, rerun_p=0.4, site=s,
                           slice_frac=(0.05, 0.5), hours=3.0)
        # reprocessing: a weekly sweep over a few whole older datasets, in file order
        b = _scan_sessions(rng, cat, int(2 * lf * days), days, lambda t: (t - cat.birth > 14 * DAY).astype(float),
                           rerun_p=0.0, site=s, slice_frac=(1.0, 1.0), hours=30.0)
        for part in (a, b):
            ts += part[0]
            files += part[1]
            sites += part[2]
        n_hot = int(4000 * lf * days / 10)
        ts.append(rng.random(n_hot) * days * DAY)
        files.append(hot[np.minimum((rng.pareto(1.0, n_hot) * 10).astype(np.int64), len(hot) - 1)])
        sites.append(np.full(n_hot, s))
        n_one = int(1500 * lf * days / 10)
        t1 = rng.random(n_one) * days * DAY
        ts.append(t1)
        files.append(rng.integers(0, len(cat.size), n_one))
        sites.append(np.full(n_one, s))
    return _finish(ts, files, sites, cat, site_names, days * DAY)


def generate_trace(family: str, seed: int = 0, scale: float = 1.0) -> Requests:
    """One family's trace; ``scale`` multiplies its length in days (and so its number of requests)."""
    if scale <= 0:
        raise TraceFamilyError(f"scale must be positive, not {scale}")
    if family == "scan":
        return scan(seed, days=120.0 * scale)
    if family == "zipf":
        return zipf(seed, days=60.0 * scale, n_requests=int(1_000_000 * scale))
    if family == "mix":
        return mix(seed, days=90.0 * scale)
    if family == "drift":
        return drift(seed, days=90.0 * scale)
    raise TraceFamilyError(f"unknown trace family {family!r} (choose from {', '.join(FAMILIES)})")


def write_trace(family: str, out, seed: int = 0, scale: float = 1.0):
    """Generate one family's trace and write it as the trace CSV (atomically); returns the Trace."""
    from pathlib import Path

    from smartcache.tasks.common.trace import make_trace, write_trace_csv
    req = generate_trace(family, seed, scale)
    trace = make_trace(req.ts, req.lfn, req.size, req.site)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.part")
    try:
        write_trace_csv(trace, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return trace
