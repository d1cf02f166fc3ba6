"""CMS names as features: dataset and tier from an LFN or a dataset name, site tier and region.

Vectorised over Arrow string arrays (the regex runs once per distinct value), so that both the
reduce and the feature builder (which may only have a plain trace of LFNs) derive the same keys.
The LFN layouts are CMS's (ARCHITECTURE.md §2)::

    /store/data/<era>/<primary>/<TIER>/<version>/000/<run>/<run>/00000/<GUID>.root
        -> dataset /<primary>/<era>-<version>/<TIER>
    /store/mc/<campaign>/<primary>/<TIER>/<procstring-vN>/<counter>/<GUID>.root
        -> dataset /<primary>/<campaign>-<procstring-vN>/<TIER>

An LFN of another shape gets its parent directory as the dataset key and an unknown tier.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

# Stable tier vocabulary: a tier's code is its index + 1; 0 = unknown. Append only, never reorder
# (models trained on old codes must keep meaning the same thing).
TIERS = ("RAW", "RECO", "AOD", "MINIAOD", "NANOAOD", "GEN-SIM", "AODSIM", "MINIAODSIM", "NANOAODSIM",
         "GEN", "GEN-SIM-RAW", "GEN-SIM-DIGI-RAW", "GEN-SIM-RECO", "ALCARECO", "FEVT", "RAW-RECO", "USER",
         "DQMIO", "LHE", "PREMIX")

_LFN_RE = (r"^/store/(?P<kind>[^/]+)/(?P<a>[^/]+)/(?P<primary>[^/]+)/(?P<tier>[^/]+)/(?P<ver>[^/]+)/")
_DS_RE = r"^/(?P<primary>[^/]+)/(?P<processed>[^/]+)/(?P<tier>[^/]+)$"


def _unique_map(values: pa.Array | pa.ChunkedArray, fn) -> pa.Array:
    """Apply ``fn`` (Arrow array -> Arrow array) to the distinct values only, then spread back."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    enc = pc.dictionary_encode(values)
    mapped = fn(enc.dictionary)
    return pc.take(mapped, enc.indices)


def _dataset_from_lfn_unique(lfn: pa.Array) -> pa.Array:
    m = pc.extract_regex(lfn, _LFN_RE)
    kind, a, primary = pc.struct_field(m, "kind"), pc.struct_field(m, "a"), pc.struct_field(m, "primary")
    tier, ver = pc.struct_field(m, "tier"), pc.struct_field(m, "ver")
    cms = pc.is_in(kind, pa.array(["data", "mc", "hidata", "himc", "relval", "generator"]))
    name = pc.binary_join_element_wise(pa.scalar(""), primary,
                                       pc.binary_join_element_wise(a, ver, "-"), tier, "/")
    parent = pc.replace_substring_regex(lfn, r"/[^/]*$", "")
    return pc.if_else(pc.and_(pc.is_valid(m), pc.fill_null(cms, False)), name, parent)


def dataset_from_lfn(lfn: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The CMS dataset name an LFN belongs to (or its parent directory for non-CMS layouts)."""
    return _unique_map(lfn, _dataset_from_lfn_unique)


def tier_from_dataset(dataset: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``/Primary/Processed/TIER`` -> TIER; null when the name has another shape."""
    return _unique_map(dataset, lambda d: pc.struct_field(pc.extract_regex(d, _DS_RE), "tier"))


def tier_from_lfn(lfn: pa.Array | pa.ChunkedArray) -> pa.Array:
    return _unique_map(lfn, lambda d: pc.struct_field(pc.extract_regex(d, _LFN_RE), "tier"))


def tier_code(tier: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Stable integer code of a tier name (0 = unknown)."""
    idx = pc.index_in(tier, value_set=pa.array(TIERS))
    return pc.fill_null(pc.add(idx, 1), 0).cast(pa.int32())


def site_tier(site: pa.Array | pa.ChunkedArray) -> pa.Array:
    """T1_IT_CNAF -> 1 (0 when the name is not ``T<n>_...``)."""
    def fn(s: pa.Array) -> pa.Array:
        digit = pc.struct_field(pc.extract_regex(s, r"^T(?P<t>\d)_"), "t")
        return pc.cast(digit, pa.int32())
    return pc.fill_null(_unique_map(site, fn), 0)


def site_region(name: str) -> str | None:
    """Country code of a CMS site name: T2_IT_Pisa -> IT."""
    parts = name.split("_")
    return parts[1].upper() if len(parts) >= 3 and parts[0][:1] == "T" else None


_CMS_KINDS = ("data", "mc", "hidata", "himc", "relval", "generator")
_LFN_PY = re.compile(_LFN_RE)


def dataset_of(lfn: str) -> str:
    """:func:`dataset_from_lfn` for one LFN (the inference service's per-request path; the same rules)."""
    m = _LFN_PY.match(lfn)
    if m and m.group("kind") in _CMS_KINDS:
        return f"/{m.group('primary')}/{m.group('a')}-{m.group('ver')}/{m.group('tier')}"
    return lfn[: lfn.rfind("/")] if "/" in lfn else lfn


def tier_code_of(lfn: str) -> int:
    """``tier_code(tier_from_lfn(...))`` for one LFN."""
    m = _LFN_PY.match(lfn)
    tier = m.group("tier") if m else None
    return TIERS.index(tier) + 1 if tier in TIERS else 0


_TIER_CODE = {t: i + 1 for i, t in enumerate(TIERS)}


def dataset_tier_of(lfn: str) -> tuple[str, int]:
    """``(dataset_of(lfn), tier_code_of(lfn))`` with one regex match: both are on every /decide's path."""
    m = _LFN_PY.match(lfn)
    if m is None:
        return (lfn[: lfn.rfind("/")] if "/" in lfn else lfn), 0
    tier = m.group("tier")
    ds = f"/{m.group('primary')}/{m.group('a')}-{m.group('ver')}/{tier}" if m.group("kind") in _CMS_KINDS \
        else lfn[: lfn.rfind("/")]
    return ds, _TIER_CODE.get(tier, 0)
