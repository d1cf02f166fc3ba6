"""Sites' current placement lists, held in memory for ``/decide``.

A placement list (``store.latest_placement(site).uri``) is either a Parquet file with at
least the columns ``lfn`` and ``score`` (or just ``lfn``), or a text file with one LFN per
line (``#`` comments and blank lines skipped; an optional second whitespace-separated field
is the score). Files on the list without a score get score 1.0. A newer placement replaces
the loaded one at the next refresh; a list that cannot be read keeps the previous one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import unquote, urlparse

from smartcache.catalog import Placement, Store
from smartcache.catalog.base import check_name
from smartcache.catalog.errors import Invalid, NotFound, Unavailable

log = logging.getLogger(__name__)
_NEGATIVE_MAX = 1024


@dataclass(frozen=True, eq=False)
class SiteList:
    site: str
    placement: Placement | None
    scores: Mapping[str, float] = field(repr=False, default_factory=dict)

    @property
    def model(self) -> str | None:
        return self.placement.model if self.placement else None


def read_list(uri: str) -> dict[str, float]:
    """Read a placement list file into {lfn: score}."""
    import fsspec
    parsed = urlparse(uri)
    path = unquote(parsed.path) if parsed.scheme == "file" else uri
    try:
        with fsspec.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError) as e:
        raise Unavailable(f"cannot read placement list {uri}: {e}") from e
    if data[:4] == b"PAR1":
        return _read_parquet(data, uri)
    return _read_text(data, uri)


def _read_parquet(data: bytes, uri: str) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as e:
        raise Unavailable(f"placement list {uri} is not readable Parquet: {e}") from e
    if "lfn" not in table.column_names:
        raise Invalid(f"placement list {uri} has no 'lfn' column")
    lfns = table.column("lfn").to_pylist()
    if "score" in table.column_names:
        scores = [1.0 if s is None else float(s) for s in table.column("score").to_pylist()]
    else:
        scores = [1.0] * len(lfns)
    return {lfn: s for lfn, s in zip(lfns, scores) if lfn}


def _read_text(data: bytes, uri: str) -> dict[str, float]:
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise Invalid(f"placement list {uri} is neither Parquet nor UTF-8 text") from e
    out: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            out[fields[0]] = float(fields[1]) if len(fields) > 1 else 1.0
        except ValueError:
            out[fields[0]] = 1.0
    return out


class PlacementCache:
    """site -> SiteList, loaded lazily, refreshed when the catalog has a newer placement."""

    def __init__(self, store: Store, negative_ttl: float = 5.0):
        self.store, self.negative_ttl = store, negative_ttl
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._sites: dict[str, SiteList] = {}
        self._unknown: dict[str, float] = {}

    def get(self, site: str) -> SiteList:
        """The loaded list (``placement`` None when the site has none); NotFound for unknown sites."""
        cur = self._sites.get(site)
        if cur is not None:
            return cur
        check_name(site, "site name")
        if self._unknown.get(site, 0.0) > time.monotonic():
            raise NotFound(f"no site named {site!r}")
        with self._load_lock:
            cur = self._sites.get(site)
            if cur is not None:
                return cur
            try:
                self.store.get_site(site)
            except NotFound:
                self._remember_unknown(site)
                raise
            loaded = self._load(site, None)
            with self._lock:
                self._sites[site] = loaded
            return loaded

    def refresh(self) -> list[str]:
        """Reload sites whose latest placement changed; returns what changed."""
        changed = []
        for site, cur in list(self._sites.items()):
            try:
                new = self._load(site, cur)
            except NotFound:
                with self._lock:
                    self._sites.pop(site, None)
                changed.append(f"{site} -> removed")
                continue
            if new is not cur:
                with self._lock:
                    self._sites[site] = new
                changed.append(f"{site} -> placement {new.placement.id if new.placement else None}")
        return changed

    def loaded(self) -> list[SiteList]:
        return list(self._sites.values())

    def _load(self, site: str, cur: SiteList | None) -> SiteList:
        try:
            placement = self.store.latest_placement(site)
        except NotFound:
            self.store.get_site(site)   # raises NotFound if the site itself is gone
            return cur if cur is not None and cur.placement is None else SiteList(site, None)
        if cur is not None and cur.placement is not None and cur.placement.id == placement.id:
            return cur
        try:
            scores = read_list(placement.uri)
        except (Invalid, Unavailable) as e:
            log.warning("site %s: keeping the previous list: %s", site, e)
            return cur if cur is not None else SiteList(site, None)
        return SiteList(site, placement, scores)

    def _remember_unknown(self, site: str) -> None:
        with self._lock:
            if len(self._unknown) >= _NEGATIVE_MAX:
                self._unknown.clear()
            self._unknown[site] = time.monotonic() + self.negative_ttl
