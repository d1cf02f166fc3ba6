"""``smartcache train --trace FILE.csv``: a next-read model from any site's access trace."""

from __future__ import annotations

from pathlib import Path

import click

from smartcache.catalog import SmartcacheError
from smartcache.submit.context import echo_json, get_store, json_option, user_errors


@click.command()
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Trace CSV: timestamp,site,lfn,size (as `smartcache export trace` writes it).")
@click.option("--name", required=True, help="Model name (a new version is registered, stage staging).")
@click.option("--site", help="Train on this site's requests only [default: every site in the trace].")
@click.option("--until", help="Train on requests before this day (YYYY-MM-DD, UTC) [default: all of them].")
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True, help="At most (early stopping).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--max-rows", type=click.IntRange(min=0), default=2_000_000, show_default=True,
              help="Train on the most recent requests beyond this many (0: all).")
@json_option
@click.pass_context
@user_errors
def train(ctx: click.Context, trace_path: Path, name: str, site: str | None, until: str | None, epochs: int,
          seed: int, max_rows: int, as_json: bool) -> None:
    """Train a next-read model on a trace's requests before --until and register it in the catalog.

    The model predicts, at each request, when the file will be read again at the site; `smartcache simulate
    --policy model:NAME` and `evaluate` run it as a cache policy, `serve` answers /decide with it.
    """
    from smartcache.tasks.common.trace import read_trace_csv
    from smartcache.tasks.train.nextgap import NextGapConfig
    from smartcache.tasks.train.trace import parse_until, register_trace_file, train_on_trace

    store = get_store(ctx)
    trace = read_trace_csv(trace_path)
    if site is not None and site not in trace.sites:
        raise SmartcacheError(f"site {site!r} is not in {trace_path} (sites: {', '.join(trace.site_names())})")
    source = register_trace_file(store, trace_path, trace)
    model = train_on_trace(store, trace, name, source, until=parse_until(until), site=site,
                           cfg=NextGapConfig(seed=seed, epochs=epochs), max_rows=max_rows or None)
    if as_json:
        return echo_json({"model": model.ref, "stage": model.stage, "trace": source.dataset, **model.metrics})
    m = model.metrics
    click.echo(f"model {model.ref} ({model.stage}): trained on {m['n_train'] + m['n_val']:,} requests "
               f"{m['train_from']} .. before {m['until']} in {m['fit_seconds']:.0f} s ({m['epochs']} epochs)")
    aucs = ", ".join(f"{k[4:]} {v:.3f}" for k, v in m.items() if k.startswith("auc_"))
    click.echo(f"held-out: log-likelihood per request {-m['val_nll']:.3f}; AUC of 'read again within' {aucs}")
    click.echo(f"lineage: {source.dataset}; try it: smartcache simulate --trace {trace_path} "
               f"--from {m['until']} --policy lru,gdsf,belady,model:{model.ref}")


commands = [train]
