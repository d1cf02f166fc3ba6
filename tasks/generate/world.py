"""The generator's dataset world: datasets appearing week by week, their popularity, their files.

Datasets are born in weekly batches drawn from ``(seed, week)``, so the population on any day depends
only on the seed, the scale and the parameters -- never on which window is being generated. A
dataset's files (LFNs, sizes, blocks) are drawn from ``(seed, dataset uid)`` when first needed and
kept in a bounded LRU cache.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smartcache.tasks.generate import names as nm
from smartcache.tasks.generate.params import GeneratorParams

TAG_DATASETS, TAG_EVERGREEN, TAG_FILES = 101, 102, 103
EVERGREEN_BIRTH = nm.to_day(nm.dt.date(2024, 5, 14))
RUN_ORIGIN = nm.to_day(nm.dt.date(2022, 7, 5))      # first Run 3 physics run: 355000
UID_STRIDE = 4096                                  # datasets per week batch are < this


@dataclass(frozen=True)
class DatasetBatch:
    """Struct-of-arrays description of a set of datasets."""

    uid: np.ndarray
    names: tuple[str, ...]
    prefixes: tuple[str, ...]
    tier: np.ndarray         # index into params.tiers
    birth: np.ndarray        # epoch day
    amp: np.ndarray          # popularity amplitude
    rise: np.ndarray
    decay: np.ndarray
    n_files: np.ndarray
    evergreen: np.ndarray

    def __len__(self) -> int:
        return len(self.uid)


@dataclass(frozen=True)
class FileSet:
    """The files of one dataset."""

    lfn: pa.Array
    size: np.ndarray         # bytes
    block: np.ndarray        # block index of each file
    block_name: pa.Array     # per block
    block_id: np.ndarray     # per block


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFFFFFF for k in key])


def _primaries(rng: np.random.Generator, tiers: np.ndarray, params: GeneratorParams) -> list[tuple[str, int]]:
    """(primary, dup) per dataset; dup counts repeats of (primary, tier) so names stay unique."""
    mc_w = np.where(np.arange(len(nm.MC_PRIMARIES)) < nm.N_SM, 3.0, 1.0)
    mc_w /= mc_w.sum()
    out, seen = [], {}
    for t in tiers:
        if params.tiers[t].mc:
            p = nm.MC_PRIMARIES[rng.choice(len(nm.MC_PRIMARIES), p=mc_w)]
        else:
            p = nm.DATA_PRIMARIES[rng.integers(len(nm.DATA_PRIMARIES))]
        dup = seen.get((p, t), 0)
        seen[(p, t)] = dup + 1
        out.append((p, dup))
    return out


def _names(params: GeneratorParams, prims, tiers, births, weeks) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names, prefixes = [], []
    for (primary, dup), t, b, w in zip(prims, tiers, births, weeks):
        tier = params.tiers[t]
        fn = nm.mc_names if tier.mc else nm.data_names
        ds, prefix = fn(primary, tier.name, int(b), int(w), dup)
        names.append(ds)
        prefixes.append(prefix)
    return tuple(names), tuple(prefixes)


def _popularity_amp(rng, prims, params: GeneratorParams) -> np.ndarray:
    amp = np.minimum(rng.lognormal(0.0, params.popularity_sigma, len(prims)), params.popularity_cap)
    cold = np.array([p.startswith(("SMS-", "Zprime", "GluGlutoRadion", "VBFHH", "ZeroBias", "NoBPTX", "Commissioning",
                                   "HLTPhysics", "Special", "Neutrino", "MinBias")) for p, _ in prims], dtype=bool)
    return np.where(cold, amp * 0.3, amp)


def _n_files(rng, tiers, median, params: GeneratorParams) -> np.ndarray:
    n = rng.lognormal(np.log(median), params.files_sigma, len(tiers))
    small = np.array([params.tiers[t].size_gb < 1.5 for t in tiers], dtype=bool)   # NANO: fewer, smaller files
    n = np.where(small, n * 0.4, n)
    return np.clip(np.rint(n), 3, params.files_max).astype(np.int64)


def make_batch(seed: int, scale: float, params: GeneratorParams, week: int) -> DatasetBatch:
    """The datasets born during ``week`` (epoch week index)."""
    rng = _rng(seed, TAG_DATASETS, week)
    n = min(int(rng.poisson(params.datasets_per_week * scale)), UID_STRIDE - 1)
    weights = np.array([t.birth for t in params.tiers])
    tiers = rng.choice(len(params.tiers), size=n, p=weights / weights.sum())
    births = 7 * week + rng.integers(0, 7, n)
    prims = _primaries(rng, tiers, params)
    names, prefixes = _names(params, prims, tiers, births, [week] * n)
    return DatasetBatch(
        uid=(week + 2) * UID_STRIDE + np.arange(n, dtype=np.int64), names=names, prefixes=prefixes,
        tier=tiers.astype(np.int16), birth=births.astype(np.int64), amp=_popularity_amp(rng, prims, params),
        rise=rng.exponential(params.rise_days, n) + 0.5,
        decay=rng.lognormal(np.log(params.decay_days), 0.6, n),
        n_files=_n_files(rng, tiers, params.files_median, params), evergreen=np.zeros(n, dtype=bool))


def make_evergreen(seed: int, scale: float, params: GeneratorParams) -> DatasetBatch:
    """Datasets that everyone keeps reading (reference data and standard-model MC), flat popularity."""
    rng = _rng(seed, TAG_EVERGREEN)
    n = min(max(1, int(round(params.evergreen_datasets * scale))), UID_STRIDE - 1)
    analysis = [i for i, t in enumerate(params.tiers) if t.analysis >= 0.1] or list(range(len(params.tiers)))
    tiers = np.array(analysis)[rng.integers(0, len(analysis), n)]
    prims, seen = [], {}
    for t in tiers:
        pool = nm.MC_PRIMARIES[:8] if params.tiers[t].mc else nm.DATA_PRIMARIES[:6]
        p = pool[rng.integers(len(pool))]
        prims.append((p, 10 + seen.get((p, t), 0)))      # dup >= 10: never collides with a batch
        seen[(p, t)] = prims[-1][1] - 9
    births = np.full(n, EVERGREEN_BIRTH, dtype=np.int64)
    names, prefixes = _names(params, prims, tiers, births, [EVERGREEN_BIRTH // 7] * n)
    return DatasetBatch(
        uid=np.arange(1, n + 1, dtype=np.int64), names=names, prefixes=prefixes, tier=tiers.astype(np.int16),
        birth=births, amp=params.evergreen_popularity * rng.lognormal(0.0, 0.3, n), rise=np.ones(n),
        decay=np.ones(n), n_files=_n_files(rng, tiers, params.files_median * 2.5, params),
        evergreen=np.ones(n, dtype=bool))


def concat(batches: list[DatasetBatch]) -> DatasetBatch:
    return DatasetBatch(
        uid=np.concatenate([b.uid for b in batches]),
        names=tuple(x for b in batches for x in b.names), prefixes=tuple(x for b in batches for x in b.prefixes),
        **{f: np.concatenate([getattr(b, f) for b in batches])
           for f in ("tier", "birth", "amp", "rise", "decay", "n_files", "evergreen")})


def popularity(pool: DatasetBatch, day: int, max_age: int) -> np.ndarray:
    """Relative read interest of each dataset on ``day``: rise after birth, exponential decay."""
    age = (day - pool.birth).astype(np.float64)
    alive = (age >= 0) & (age <= max_age)
    curve = pool.amp * (1.0 - np.exp(-(age + 1.0) / pool.rise)) * np.exp(-np.maximum(age, 0.0) / pool.decay)
    return np.where(pool.evergreen, pool.amp, np.where(alive, curve, 0.0))


def make_files(seed: int, params: GeneratorParams, pool: DatasetBatch, i: int) -> FileSet:
    """Draw the files of dataset ``i`` of ``pool`` (depends only on the seed and the dataset uid)."""
    uid, n, tier = int(pool.uid[i]), int(pool.n_files[i]), params.tiers[int(pool.tier[i])]
    rng = _rng(seed, TAG_FILES, uid)
    per_block = np.maximum(1, np.rint(rng.lognormal(np.log(params.files_per_block), 0.7, n)).astype(np.int64))
    nb = int(np.searchsorted(np.cumsum(per_block), n) + 1)
    block = np.repeat(np.arange(nb, dtype=np.int32), per_block[:nb])[:n]
    median = tier.size_gb * 1e9 * rng.lognormal(0.0, 0.15)
    size = median * np.exp(rng.normal(0.0, params.size_sigma, n))
    tail = rng.random(n) < params.size_tail_frac
    size = np.where(tail, size * (1.0 + rng.pareto(2.2, n)), size)
    last = np.r_[block[1:] != block[:-1], True]             # a block's last file is a partial merge
    size = np.where(last, size * rng.uniform(0.1, 1.0, n), size)
    size = np.clip(size, 2e7, 2e10).astype(np.int64)
    guid = nm.guids(rng, n)
    if tier.mc:
        counters = pa.array([str(c * 10000) for c in rng.integers(1, 300, nb)])
        lfn = pc.binary_join_element_wise(pool.prefixes[i], counters.take(pa.array(block)), "/", guid, ".root", "")
    else:
        run0 = 355_000 + max(0, int(pool.birth[i]) - RUN_ORIGIN) * 40
        runs = np.clip(run0 + np.sort(rng.integers(0, 400, n)), 100_000, 999_999)
        rs = pc.cast(pa.array(runs), pa.string())
        lfn = pc.binary_join_element_wise(pool.prefixes[i], pc.utf8_slice_codeunits(rs, 0, 3), "/",
                                          pc.utf8_slice_codeunits(rs, 3, 6), "/00000/", guid, ".root", "")
    block_name = pc.binary_join_element_wise(pool.names[i], "#", nm.guids(rng, nb, upper=False), "")
    return FileSet(lfn=lfn, size=size, block=block, block_name=block_name,
                   block_id=uid * 8192 + np.arange(nb, dtype=np.int64))


class DatasetWorld:
    """Lazily built, cached dataset population of one (seed, scale, params)."""

    def __init__(self, seed: int, scale: float, params: GeneratorParams, max_cached_files: int = 600_000):
        self.seed, self.scale, self.params = seed, scale, params
        self.evergreen = make_evergreen(seed, scale, params)
        self._batches: dict[int, DatasetBatch] = {}
        self._pools: OrderedDict[int, DatasetBatch] = OrderedDict()
        self._files: OrderedDict[int, FileSet] = OrderedDict()
        self._cached_files = 0
        self._max_cached_files = max_cached_files

    def batch(self, week: int) -> DatasetBatch:
        if week not in self._batches:
            self._batches[week] = make_batch(self.seed, self.scale, self.params, week)
        return self._batches[week]

    def pool(self, week: int) -> DatasetBatch:
        """Every dataset that can be read during ``week``: the evergreen ones and those born recently."""
        if week not in self._pools:
            lookback = self.params.max_dataset_age_days // 7 + 1
            self._pools[week] = concat([self.evergreen] + [self.batch(w) for w in range(week - lookback, week + 1)])
            while len(self._pools) > 8:
                self._pools.popitem(last=False)
            for w in [w for w in self._batches if w < week - lookback - 8]:   # bounded memory
                del self._batches[w]
        return self._pools[week]

    def locate(self, uid: int) -> tuple[DatasetBatch, int]:
        """The batch holding dataset ``uid`` and its index there."""
        if uid < UID_STRIDE:
            return self.evergreen, uid - 1
        return self.batch(uid // UID_STRIDE - 2), uid % UID_STRIDE

    def files(self, uid: int) -> FileSet:
        fs = self._files.get(uid)
        if fs is None:
            batch, i = self.locate(uid)
            fs = make_files(self.seed, self.params, batch, i)
            self._files[uid] = fs
            self._cached_files += len(fs.size)
            while self._cached_files > self._max_cached_files and len(self._files) > 1:
                _, old = self._files.popitem(last=False)
                self._cached_files -= len(old.size)
        else:
            self._files.move_to_end(uid)
        return fs
