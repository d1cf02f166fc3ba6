"""What a CMS logical file name (LFN) tells about a file, and the features it yields.

``/decide`` must answer for files it only knows by name. These model features are derived
from the LFN (and an optional ``size`` query parameter); every other feature a model uses
comes from its ``params["feature_defaults"]`` (the values of a file with no history).

======================  ===========================================================
feature name            value
======================  ===========================================================
``is_mc``               1.0 for ``/store/mc/...``, else 0.0
``is_data``             1.0 for ``/store/data/...``, else 0.0
``tier_<TIER>``         1.0 when the LFN's data tier is ``<TIER>`` (case-insensitive)
``tier_code``           index + 1 of the tier in ``tasks.feat_names.TIERS`` (0 unknown)
``site_tier``           1 for ``T1_*`` sites, 2 for ``T2_*`` ... (0 otherwise)
``size``, ``size_bytes``  file size in bytes (only with ``size=``)
``size_gb``             size / 1e9
``log_size``            log10(max(size, 1)), as the feature table has it
``log1p_size``          ln(1 + size in bytes)
======================  ===========================================================

These follow the feature table of ``tasks/features`` (``log_size``, ``tier_code``,
``site_tier``), so a model trained there gets the same numbers here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class LfnInfo:
    kind: str            # data | mc | other
    era: str | None      # data era, or MC campaign
    primary: str | None
    tier: str | None
    processed: str | None
    dataset: str | None  # /Primary/Processed/TIER when it can be rebuilt


def parse_lfn(lfn: str) -> LfnInfo:
    """Split a CMS LFN (``/store/data/<era>/<primary>/<TIER>/<version>/...`` or
    ``/store/mc/<campaign>/<primary>/<TIER>/<procstring-vN>/...``)."""
    parts = [p for p in lfn.split("/") if p]
    if len(parts) >= 6 and parts[0] == "store" and parts[1] in ("data", "mc"):
        kind, era, primary, tier, version = parts[1], parts[2], parts[3], parts[4], parts[5]
        processed = f"{era}-{version}"
        return LfnInfo(kind, era, primary, tier, processed, f"/{primary}/{processed}/{tier}")
    return LfnInfo("other", None, None, None, None, None)


def _size_features(size: float | None) -> dict[str, float]:
    if size is None:
        return {}
    return {"size": size, "size_bytes": size, "size_gb": size / 1e9,
            "log_size": math.log10(max(size, 1.0)), "log1p_size": math.log1p(size)}


def tier_code(tier: str | None) -> float:
    from smartcache.tasks.common.cms import TIERS
    return float(TIERS.index(tier) + 1) if tier in TIERS else 0.0


def site_tier(site: str | None) -> float:
    m = re.match(r"^T(\d)_", site or "")
    return float(m.group(1)) if m else 0.0


def derive(lfn: str, size: float | None = None, site: str | None = None) -> tuple[LfnInfo, dict[str, float]]:
    info = parse_lfn(lfn)
    values = {"is_mc": float(info.kind == "mc"), "is_data": float(info.kind == "data"),
              "tier_code": tier_code(info.tier)}
    if site:
        values["site_tier"] = site_tier(site)
    values.update(_size_features(size))
    return info, values


def feature_row(lfn: str, features: Sequence[str], defaults: Mapping[str, float],
                size: float | None = None, site: str | None = None) -> np.ndarray | None:
    """The model input row for ``lfn``, or None when a feature is neither derivable nor defaulted."""
    info, derived = derive(lfn, size, site)
    tier = (info.tier or "").lower()
    row = np.empty((1, len(features)), np.float32)
    for j, name in enumerate(features):
        if name in derived:
            row[0, j] = derived[name]
        elif name.startswith("tier_"):
            row[0, j] = float(name[5:].lower() == tier)
        elif name in defaults:
            row[0, j] = defaults[name]
        else:
            return None
    return row
