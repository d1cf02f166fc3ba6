"""Feedback for retrain tests, written the way the inference service writes it."""

from __future__ import annotations

from smartcache.inference.feedback import FeedbackWriter


def write_feedback(store, root, ts, sites, lfns, sizes) -> None:
    """Accesses through the service's own writer, each day registered as the service does (feedback/<S>/<D>)."""
    def register(name, folder, meta):
        store.register_dataset(name, "feedback", folder.resolve().as_uri(), format="parquet", n_rows=meta["rows"],
                               n_bytes=meta["bytes"], meta=meta)
    w = FeedbackWriter(root, register, flush_seconds=3600)
    w.add(list(ts), list(sites), list(lfns), list(sizes), "decide", model="cachenet:1")
    w.close()


def drift_feedback(cfg, store, cache_fraction: float) -> tuple[str, int]:
    """27 days of the drifting scan family (62k requests, seed 1) as one site's feedback; the site is added
    with a cache of ``cache_fraction`` of its held-out working set. Returns (site, that working set)."""
    from smartcache.tasks.common.trace import make_trace
    from smartcache.tasks.generate.traces import generate_trace
    from smartcache.tasks.train.trace import held_out_start
    r = generate_trace("drift", seed=1, scale=0.3)
    write_feedback(store, cfg.data_root / "feedback", r.ts, r.site, r.lfn, r.size)
    tr = make_trace(r.ts, r.lfn, r.size, r.site)
    ws = tr.take(tr.ts >= held_out_start(tr, 0.2)).working_set()
    store.add_site(r.site[0], int(ws * cache_fraction))
    return r.site[0], ws
