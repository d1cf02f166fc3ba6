"""Per-request features from access state: what a cache knows at the moment a file is opened.

A cache decides at each request, with the history of the requests before it. This module keeps that
history as compact per-file, per-dataset and per-site state (numpy arrays, updated by one compiled
function per request) and reads the model's inputs off it *before* the request updates it:

- file at the site: the last :data:`N_GAPS` inter-request gaps (``gap_1`` = time since the previous read),
  how many reads came before, exponentially decayed read counters (half-lives :data:`FILE_HALF_LIVES`,
  as in LRB) and the time since the first read;
- its dataset at the site: time since its last read, decayed read counters, how many distinct files of it
  were read, the decayed share of its reads that were re-reads (users re-running an analysis), decayed
  first reads of its files (a scan in progress) and its age;
- the site: decayed request and first-read counters (load and churn);
- the file itself: log10 size and the CMS tier code.

Times are seconds; every gap and age enters as ``log1p(seconds)`` and counts as ``log1p(count)``, so the
model sees scale-free numbers. A quantity that does not exist yet (no previous read) is
:data:`NEVER_S` seconds. The same :func:`advance` runs in the simulator (a whole trace, dense ids), in
training and in the inference service (state kept across requests), so the three see the same numbers.
State per tracked file is :data:`FILE_STATE_BYTES` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a declared dependency
    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda f: f)

N_GAPS = 4
FILE_HALF_LIVES = (3600.0, 6 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0, 30 * 86400.0)
DS_HALF_LIVES = (3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0)
SITE_HALF_LIFE = 3600.0
REREAD_HALF_LIFE = 7 * 86400.0
NEW_FILES_HALF_LIFE = 86400.0
NEVER_S = 1.0e8                  # ~3 years: "no such event yet"
LONGEST_WINDOW_S = 4 * 30 * 86400.0   # state unseen this long is worth nothing (30 d half-life, 4x)


def _names(prefix: str, half_lives) -> list[str]:
    return [f"{prefix}_{_label(h)}" for h in half_lives]


def _label(seconds: float) -> str:
    return f"{int(seconds // 86400)}d" if seconds >= 86400 else f"{int(seconds // 3600)}h"


ONLINE_FEATURES: list[str] = (
    [f"gap_{k + 1}" for k in range(N_GAPS)] + ["n_prev"] + _names("edc", FILE_HALF_LIVES) + ["age"]
    + ["ds_gap"] + _names("ds_edc", DS_HALF_LIVES) + ["ds_files", "ds_reread", "ds_new_1d", "ds_age"]
    + ["site_edc_1h", "site_new_1h", "site_edc_1d", "hour_sin", "hour_cos", "weekend", "log_size", "tier_code"])

# column offsets in a feature row
_GAP, _NPREV = 0, N_GAPS
_EDC = _NPREV + 1
_AGE = _EDC + len(FILE_HALF_LIVES)
_DSGAP = _AGE + 1
_DSEDC = _DSGAP + 1
_DSFILES = _DSEDC + len(DS_HALF_LIVES)
_DSREREAD, _DSNEW, _DSAGE = _DSFILES + 1, _DSFILES + 2, _DSFILES + 3
_SITE, _SITENEW, _SITEDAY = _DSAGE + 1, _DSAGE + 2, _DSAGE + 3
_HSIN, _HCOS, _WEEKEND = _SITEDAY + 1, _SITEDAY + 2, _SITEDAY + 3
_SIZE, _TIER = _WEEKEND + 1, _WEEKEND + 2
N_FEATURES = _TIER + 1
if N_FEATURES != len(ONLINE_FEATURES):  # pragma: no cover - the offsets above and the names must agree
    raise ImportError("online feature offsets and names disagree")

# per-file state: float64 [last_t, first_t], float32 [n, N_GAPS - 1 previous gaps, edcs...]
_FE = N_GAPS                     # first edc column of f32
_F64, _F32 = 2, N_GAPS + len(FILE_HALF_LIVES)
# per-dataset state: float64 [last_t, first_t], float32 [files, reread, total, new, edcs...]
_D64, _D32 = 2, 4 + len(DS_HALF_LIVES)
# per-site state: float64 [last_t], float32 [edc 1h, new 1h, edc 1d]
FILE_STATE_BYTES = 8 * _F64 + 4 * _F32 + 4       # + the file's dataset slot


@dataclass
class State:
    """Access state of files, datasets and sites, in slots (dense ids chosen by the caller)."""

    f64: np.ndarray = field(default_factory=lambda: np.zeros((0, _F64)))
    f32: np.ndarray = field(default_factory=lambda: np.zeros((0, _F32), np.float32))
    d64: np.ndarray = field(default_factory=lambda: np.zeros((0, _D64)))
    d32: np.ndarray = field(default_factory=lambda: np.zeros((0, _D32), np.float32))
    s64: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    s32: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))

    @classmethod
    def empty(cls, n_files: int, n_datasets: int, n_sites: int) -> "State":
        st = cls()
        st.grow(n_files, n_datasets, n_sites)
        return st

    def grow(self, n_files: int, n_datasets: int, n_sites: int) -> None:
        """Room for at least this many slots; new slots are empty ("never seen")."""
        self.f64, self.f32 = _grow(self.f64, n_files), _grow(self.f32, n_files)
        self.d64, self.d32 = _grow(self.d64, n_datasets), _grow(self.d32, n_datasets)
        self.s64, self.s32 = _grow(self.s64, n_sites), _grow(self.s32, n_sites)

    def clear_files(self, slots: np.ndarray) -> None:
        self.f64[slots] = 0.0
        self.f32[slots] = 0.0

    def clear_datasets(self, slots: np.ndarray) -> None:
        self.d64[slots] = 0.0
        self.d32[slots] = 0.0


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    if a.shape[0] >= n:
        return a
    out = np.zeros((max(n, 2 * a.shape[0]), a.shape[1]), a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True, nogil=True, inline="always")
def _decay(value, dt, half_life):
    return value * 2.0 ** (-dt / half_life)


@njit(cache=True, nogil=True)
def advance(ts, f_slot, d_slot, s_slot, log_size, tier, f64, f32, d64, d32, s64, s32, fhl, dhl, out):
    """For each request in order: write its features into ``out`` (from the state before it), then update.

    A slot whose ``n`` (files) or ``last_t`` (datasets, sites) is 0 has never been seen.
    """
    for i in range(ts.shape[0]):
        step(ts[i], f_slot[i], d_slot[i], s_slot[i], log_size[i], tier[i], f64, f32, d64, d32, s64, s32, fhl, dhl,
             out[i])


@njit(cache=True, nogil=True)
def step(t, f, d, s, log_size, tier, f64, f32, d64, d32, s64, s32, fhl, dhl, row):
    """One request: its features into ``row`` (the state before it), then the state updated with it.

    The one definition the simulator, the trainer and the inference service share.
    """
    ng = N_GAPS
    nf = fhl.shape[0]
    nd = dhl.shape[0]
    # -- file --------------------------------------------------------------------------
    n_prev = f32[f, 0]
    seen = n_prev > 0
    gap = t - f64[f, 0] if seen else NEVER_S
    gap = max(gap, 0.0)
    row[_GAP] = np.log1p(gap)
    for k in range(1, ng):
        row[_GAP + k] = np.log1p(f32[f, k]) if n_prev > k else np.log1p(NEVER_S)
    row[_NPREV] = np.log1p(n_prev)
    for k in range(nf):
        row[_EDC + k] = np.log1p(_decay(f32[f, _FE + k], gap, fhl[k]) if seen else 0.0)
    row[_AGE] = np.log1p(max(t - f64[f, 1], 0.0)) if seen else 0.0
    # -- dataset -----------------------------------------------------------------------
    d_seen = d64[d, 0] > 0
    dgap = max(t - d64[d, 0], 0.0) if d_seen else NEVER_S
    row[_DSGAP] = np.log1p(dgap)
    for k in range(nd):
        row[_DSEDC + k] = np.log1p(_decay(d32[d, 4 + k], dgap, dhl[k]) if d_seen else 0.0)
    row[_DSFILES] = np.log1p(d32[d, 0])
    rr = _decay(d32[d, 1], dgap, REREAD_HALF_LIFE) if d_seen else 0.0
    tot = _decay(d32[d, 2], dgap, REREAD_HALF_LIFE) if d_seen else 0.0
    row[_DSREREAD] = rr / tot if tot > 1e-6 else 0.0
    new = _decay(d32[d, 3], dgap, NEW_FILES_HALF_LIFE) if d_seen else 0.0
    row[_DSNEW] = np.log1p(new)
    row[_DSAGE] = np.log1p(max(t - d64[d, 1], 0.0)) if d_seen else 0.0
    # -- site and file ------------------------------------------------------------------
    s_seen = s64[s, 0] > 0
    sgap = max(t - s64[s, 0], 0.0)
    sedc = _decay(s32[s, 0], sgap, SITE_HALF_LIFE) if s_seen else 0.0
    snew = _decay(s32[s, 1], sgap, SITE_HALF_LIFE) if s_seen else 0.0
    sday = _decay(s32[s, 2], sgap, 86400.0) if s_seen else 0.0
    row[_SITE] = np.log1p(sedc)
    row[_SITENEW] = np.log1p(snew)
    row[_SITEDAY] = np.log1p(sday)
    # the time of day and of the week (UTC): people submit work by day and less at weekends
    phase = 2.0 * np.pi * ((t % 86400.0) / 86400.0)
    row[_HSIN] = np.sin(phase)
    row[_HCOS] = np.cos(phase)
    row[_WEEKEND] = 1.0 if ((t // 86400.0) + 3) % 7 >= 5 else 0.0   # 1970-01-01 was a Thursday
    row[_SIZE] = log_size
    row[_TIER] = tier
    # -- update ------------------------------------------------------------------------
    if seen:
        for k in range(ng - 1, 1, -1):
            f32[f, k] = f32[f, k - 1]
        if ng > 1:
            f32[f, 1] = gap
        for k in range(nf):
            f32[f, _FE + k] = _decay(f32[f, _FE + k], gap, fhl[k]) + 1.0
    else:
        f64[f, 1] = t
        for k in range(nf):
            f32[f, _FE + k] = 1.0
    f32[f, 0] = n_prev + 1.0
    f64[f, 0] = t
    if d_seen:
        for k in range(nd):
            d32[d, 4 + k] = _decay(d32[d, 4 + k], dgap, dhl[k]) + 1.0
    else:
        d64[d, 1] = t
        for k in range(nd):
            d32[d, 4 + k] = 1.0
    d32[d, 1] = rr + (1.0 if seen else 0.0)
    d32[d, 2] = tot + 1.0
    d32[d, 3] = new + (0.0 if seen else 1.0)
    if not seen:
        d32[d, 0] += 1.0
    d64[d, 0] = t
    s32[s, 0] = sedc + 1.0
    s32[s, 1] = snew + (0.0 if seen else 1.0)
    s32[s, 2] = sday + 1.0
    s64[s, 0] = t


def run(state: State, ts: np.ndarray, f_slot: np.ndarray, d_slot: np.ndarray, s_slot: np.ndarray,
        size: np.ndarray, tier: np.ndarray) -> np.ndarray:
    """Features ``[n, N_FEATURES]`` (float32) of requests in time order; updates ``state`` in place."""
    n = len(ts)
    out = np.empty((n, N_FEATURES), np.float32)
    if n == 0:
        return out
    log_size = np.log10(np.maximum(np.asarray(size, np.float64), 1.0))
    advance(np.ascontiguousarray(ts, np.float64), np.ascontiguousarray(f_slot, np.int64),
            np.ascontiguousarray(d_slot, np.int64), np.ascontiguousarray(s_slot, np.int64), log_size,
            np.ascontiguousarray(tier, np.float64), state.f64, state.f32, state.d64, state.d32, state.s64,
            state.s32, np.array(FILE_HALF_LIVES), np.array(DS_HALF_LIVES), out)
    return out


def trace_slots(trace) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Dense file, dataset and site slots of every request of a :class:`~smartcache.tasks.common.trace.Trace`.

    A file (and a dataset) at one site is another slot than at another site: state is per site.
    Returns ``(f_slot, d_slot, s_slot, n_file_slots, n_dataset_slots)``.
    """
    import pyarrow.compute as pc

    from smartcache.tasks.common.cms import dataset_from_lfn

    site = trace.site.astype(np.int64)
    n_sites = max(len(trace.sites), 1)
    f_slot, nf = _dense(trace.obj * n_sites + site, max(trace.n_obj, 1) * n_sites)
    ds = pc.dictionary_encode(dataset_from_lfn(trace.lfns)) if trace.n_obj else None
    ds_of_obj = np.asarray(ds.indices.to_numpy(zero_copy_only=False), np.int64) if ds is not None \
        else np.zeros(0, np.int64)
    d_key = ds_of_obj[trace.obj] * n_sites + site
    d_slot, nd = _dense(d_key, (int(ds_of_obj.max()) + 1 if len(ds_of_obj) else 1) * n_sites)
    return f_slot, d_slot, site, nf, nd


@njit(cache=True, nogil=True)
def _dense_kernel(keys, first, out):
    n = 0
    for i in range(keys.shape[0]):
        k = keys[i]
        if first[k] < 0:
            first[k] = n
            n += 1
        out[i] = first[k]
    return n


def _dense(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, int]:
    """Dense ids 0..n-1 in order of first appearance for keys in [0, n_keys): one pass, no sort."""
    out = np.empty(len(keys), np.int64)
    n = _dense_kernel(np.ascontiguousarray(keys, np.int64), np.full(n_keys, -1, np.int64), out)
    return out, int(n)


def tier_codes(trace) -> np.ndarray:
    """The CMS tier code of every request's file (0 when the LFN does not name a tier)."""
    from smartcache.tasks.common.cms import tier_code, tier_from_lfn

    per_obj = np.asarray(tier_code(tier_from_lfn(trace.lfns)).to_numpy(zero_copy_only=False), np.float64)
    return per_obj[trace.obj] if len(per_obj) else np.zeros(len(trace))


def trace_features(trace) -> np.ndarray:
    """:data:`ONLINE_FEATURES` of every request of a trace, each from the requests before it (float32)."""
    f_slot, d_slot, s_slot, nf, nd = trace_slots(trace)
    state = State.empty(nf, nd, max(len(trace.sites), 1))
    return run(state, trace.ts, f_slot, d_slot, s_slot, trace.size, tier_codes(trace))
