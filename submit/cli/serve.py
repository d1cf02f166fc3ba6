"""``smartcache serve``: the inference service under gunicorn (gthread workers).

The Flask development server is only for tests; this runs the same application factory in
N gunicorn worker processes, each with a few threads. Each worker builds its own app after
the fork (its own catalog connection pool, model cache and refresh thread).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import replace
from typing import Any, Callable

import click

from smartcache.catalog import Config, ConfigError, open_store
from smartcache.catalog.config import make_private_dir, precreate_catalog

DEFAULT_THREADS = 8      # measured: 8 beat 1, 2 and 4 at 32 concurrent keep-alive clients
# gunicorn's largest request line (it refuses longer ones with 414, in JSON: see gworker.py).
# /decide's documented MAX_LFN (4096 characters) fits with room for the site, size and model.
REQUEST_LINE_LIMIT = 8190
log = logging.getLogger("smartcache.serve")


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_options(cfg: Config, host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    def child_exit(_server, worker) -> None:
        # Drop a dead worker's live gauges from the multiprocess metrics files.
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)

    def worker_exit(_server, worker) -> None:
        # a clean stop loses no access: the worker writes its feedback buffer and snapshots the state
        service = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("smartcache")
        if service is not None:
            service.close()

    return {
        "bind": _bind(host, port),
        "workers": workers,
        "worker_class": "smartcache.inference.gworker.JSONThreadWorker",   # gthread, JSON errors
        "threads": threads,
        "limit_request_line": REQUEST_LINE_LIMIT,
        "limit_request_field_size": 8190,
        "limit_request_fields": 100,
        "timeout": 120,            # gthread: a heartbeat timeout, not a per-request one
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,         # one log line per request would cost more than the request
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "smartcache-serve",
        "child_exit": child_exit,
        "worker_exit": worker_exit,
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
@click.option("--no-auth", is_flag=True,
              help="Serve without a token: anyone who can connect may upload and delete models.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None, threads: int,
          no_auth: bool) -> None:
    """Run the TFaaS-compatible inference service (gunicorn, N workers)."""
    cfg = _checked_config(ctx.find_object(Config), no_auth)
    inf = cfg.inference
    host, port, workers = host or inf.host, inf.port if port is None else port, workers or inf.workers
    make_private_dir(cfg.home)
    precreate_catalog(cfg.catalog_url)
    from smartcache.submit.context import announce_new_catalog
    open_store(cfg.catalog_url, migrate=True, on_create=announce_new_catalog).close()   # schema ready before workers
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


def _checked_config(cfg: Config, no_auth: bool) -> Config:
    """Refuse to start without a usable token unless --no-auth; say loudly what is unsafe."""
    from smartcache.inference.sandbox import Sandbox
    problem = cfg.inference.token_problem()
    if no_auth:
        cfg = replace(cfg, inference=replace(cfg.inference, auth=False))
        _warn("authentication DISABLED (--no-auth): anyone who can connect may upload and delete models")
    elif problem:
        raise ConfigError(f"{problem}: set [inference] token in {cfg.config_file} (smartcache init writes one) "
                          "or SMARTCACHE_TOKEN, or pass --no-auth to serve without authentication")
    sandbox = Sandbox(cfg.inference.sandbox).describe()
    if sandbox != "bubblewrap":
        _warn(f"model conversion sandbox: {sandbox}"
              + ("" if cfg.inference.sandbox == "off" else "; uploads that need conversion are refused"))
    return cfg


def _warn(message: str) -> None:
    click.secho(f"WARNING: {message}", err=True, fg="red", bold=True)
    log.warning(message)


commands = [serve]
