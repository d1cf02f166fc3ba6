"""``smartcache serve``: the inference service under gunicorn (gthread workers).

The Flask development server is only for tests; this runs the same application factory in
N gunicorn worker processes, each with a few threads. Each worker builds its own app after
the fork (its own catalog connection pool, model cache and refresh thread).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable

import click

from smartcache.catalog import Config, open_store

DEFAULT_THREADS = 8      # measured: 8 beat 1, 2 and 4 at 32 concurrent keep-alive clients


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_options(cfg: Config, host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    def child_exit(_server, worker) -> None:
        # Drop a dead worker's live gauges from the multiprocess metrics files.
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)

    return {
        "bind": _bind(host, port),
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 120,            # gthread: a heartbeat timeout, not a per-request one
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,         # one log line per request would cost more than the request
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "smartcache-serve",
        "child_exit": child_exit,
        "control_socket_disable": True,   # gunicorn 27: no shared ~/.gunicorn socket between servers
    }


def run_gunicorn(factory: Callable[[], Any], options: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return factory()

    _App().run()


@click.command()
@click.option("--host", help="Address to bind [config inference.host, default 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="Port [config inference.port, default 8083].")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes [config inference.workers].")
@click.option("--threads", type=click.IntRange(1, 256), default=DEFAULT_THREADS, show_default=True,
              help="Threads per worker.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None, threads: int) -> None:
    """Run the TFaaS-compatible inference service (gunicorn, N workers)."""
    cfg: Config = ctx.find_object(Config)
    inf = cfg.inference
    host, port, workers = host or inf.host, inf.port if port is None else port, workers or inf.workers
    open_store(cfg.catalog_url, migrate=True).close()   # schema ready before workers start
    # Before any worker imports prometheus_client: metrics shared by all workers via files.
    prom_dir = tempfile.mkdtemp(prefix="smartcache-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    click.echo(f"smartcache inference on http://{_bind(host, port)} ({workers} workers x {threads} threads), "
               f"catalog {cfg.catalog_url}", err=True)

    def factory():
        from smartcache.inference import create_app
        return create_app(cfg)

    try:
        run_gunicorn(factory, gunicorn_options(cfg, host, port, workers, threads))
    finally:
        shutil.rmtree(prom_dir, ignore_errors=True)


commands = [serve]
