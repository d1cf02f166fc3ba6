"""Partial aggregates set aside on disk, one file set per site, so a big day reduces in bounded memory.

The reduce's partials (one row per (site, file) per slice of input, with distinct-id lists) grow
with the number of distinct files a day touches; merging them all at once took ~1.2 GB for a day
of 700 k records. Once the partials held in memory pass a row budget, every partial is split by
site and written to Arrow IPC files in a scratch folder (the job's ``TMPDIR``, which HTCondor points
at the job's scratch dir); at the end the sites are merged and finalised one at a time, in site
order, so the day's table comes out sorted by (site, file) as before and only one site's partials
are in memory at once.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc


class Spill:
    """Per-site Arrow IPC files of partial aggregates (deleted by ``close``)."""

    def __init__(self, prefix: str = "smartcache-reduce-spill-"):
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.files: dict[str, list[Path]] = {}
        self.rows = 0

    def add(self, partial: pa.Table) -> None:
        """Split ``partial`` by site and append each share to that site's files."""
        if partial.num_rows == 0:
            return
        t = partial.take(pc.sort_indices(partial["site"]))
        counts = pc.value_counts(t["site"])          # in order of first appearance: site order here
        start = 0
        for site, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
            files = self.files.setdefault(site, [])
            path = self.dir / f"{list(self.files).index(site)}-{len(files)}.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, t.schema) as writer:
                writer.write_table(t.slice(start, n))
            files.append(path)
            start += n
        self.rows += partial.num_rows

    def sites(self) -> Iterator[tuple[str, list[pa.Table]]]:
        """(site, its partials) in site order; each site's tables are memory-mapped from disk."""
        for site in sorted(self.files):
            tables = []
            for path in self.files[site]:
                with pa.memory_map(str(path)) as source:
                    tables.append(pa.ipc.open_file(source).read_all())
            yield site, tables

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
