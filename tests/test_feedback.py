"""Feedback partitions: written by the service's writer, bounded, atomic, registered, exported as a trace."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from smartcache.inference.feedback import FeedbackWriter
from smartcache.tasks.common.trace import read_trace_csv
from smartcache.tasks.feedback import describe, read_feedback

DAY = 86400.0
T0 = 1_790_000_000.0 - 1_790_000_000.0 % DAY


def test_writer_partitions_by_site_and_day_and_loses_nothing_on_close(tmp_path):
    registered = {}
    w = FeedbackWriter(tmp_path / "fb", lambda name, folder, meta: registered.__setitem__(name, meta),
                       flush_seconds=3600)
    ts = T0 + np.arange(10) * (DAY / 4)              # 2.5 days
    w.add(ts, ["A", "B"] * 5, [f"/store/f{i}.root" for i in range(10)], [10**9] * 10, "decide",
          scores=[0.5] * 10, model="m:1")
    assert w.pending() == 10 and not (tmp_path / "fb").exists()      # nothing written before a flush
    w.close()
    assert w.pending() == 0 and w.written == 10
    folders = sorted(p.relative_to(tmp_path / "fb").as_posix() for p in (tmp_path / "fb").glob("site=*/day=*"))
    assert len(folders) == 6 and all(f.startswith(("site=A/day=", "site=B/day=")) for f in folders)
    assert not list((tmp_path / "fb").rglob("*.tmp")), "parts are renamed into place"
    back = read_feedback(tmp_path / "fb")
    assert back.num_rows == 10 and back.column("timestamp").to_pylist() == sorted(ts.tolist())
    assert sum(m["rows"] for m in registered.values()) == 10
    assert set(registered) == {f"feedback/{f.split('/')[0][5:]}/{f.split('/')[1][4:]}" for f in folders}


def test_writer_buffer_is_bounded_and_failed_writes_are_retried(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    w = FeedbackWriter(blocker, flush_seconds=3600, max_buffer=100)
    w.add([T0] * 150, ["A"] * 150, ["/x"] * 150, [1] * 150, "access")
    assert w.pending() == 100 and w.dropped == 50
    assert w.flush() == 0 and w.failed_flushes == 1 and w.pending() == 100   # kept for the next try
    w.root = tmp_path / "fb"
    w.close()
    assert w.written == 100 and describe(next((tmp_path / "fb").glob("site=A/day=*")))["rows"] == 100


def test_export_trace_from_feedback(cli, home, tmp_path):
    root = home / "data" / "feedback"
    w = FeedbackWriter(root, flush_seconds=3600)
    w.add([T0 + 5, T0 + 1, T0 + DAY + 3], ["A", "A", "B"], ["/a", "/b", "/c"], [1, 2, 3], "decide")
    w.close()
    cli("init")
    out = tmp_path / "t.csv"
    res = cli("export", "trace", "--feedback", "--site", "A", "--out", str(out))
    assert res.exit_code == 0, res.output
    tr = read_trace_csv(out)
    assert len(tr) == 2 and tr.ts.tolist() == [T0 + 1, T0 + 5]
    res = cli("export", "trace", "--feedback", "--site", "Z", "--out", str(out))
    assert res.exit_code == 1 and "no feedback" in res.output
    assert pq.read_table(next(root.glob("site=B/day=*/part-*.parquet"))).num_rows == 1
