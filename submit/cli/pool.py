"""``smartcache pool``: the project's single-machine HTCondor pool and its autoscaler."""

from __future__ import annotations

from pathlib import Path

import click

from smartcache.catalog import Config
from smartcache.submit.context import echo_json, echo_table, get_config, json_option

root_option = click.option(
    "--root", type=click.Path(path_type=Path), envvar="SMARTCACHE_POOL_ROOT",
    help="Chroot of the pool [env SMARTCACHE_POOL_ROOT; default /opt/smartcache-pool].")


def _binds(cfg: Config) -> list[Path]:
    """The smartcache dirs jobs read and write, besides the home folder itself."""
    return [d for d in (cfg.runs_dir, cfg.data_root) if cfg.home not in d.parents and d != cfg.home]


@click.group()
def pool() -> None:
    """The project's own HTCondor pool on this machine (a Debian chroot; needs root).

    Host-side HTCondor clients must use the pool's config: run `eval "$(smartcache pool env)"`.
    """


@pool.command("up")
@root_option
@click.option("--cpus", type=click.IntRange(1), help="CPUs of the base startd [4].")
@click.option("--memory", "memory_mb", type=click.IntRange(64), help="Memory of the base startd, MB.")
@click.option("--port", type=click.IntRange(1024, 65535), help="Collector port on 127.0.0.1 [9618].")
@click.option("--bind", "binds", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="More host dirs to show at the same path inside the pool (repeatable).")
@click.option("--quiet", is_flag=True, help="Only print errors.")
@click.pass_context
def pool_up_cmd(ctx: click.Context, root: Path | None, cpus: int | None, memory_mb: int | None,
                port: int | None, binds: tuple[Path, ...], quiet: bool) -> None:
    """Create the chroot if needed (debootstrap, apt) and start the pool; idempotent."""
    from smartcache.condor.pool import pool_up
    cfg = get_config(ctx)
    status = pool_up(root, home=cfg.home, binds=[*_binds(cfg), *binds], cpus=cpus,
                     memory_mb=memory_mb, port=port, quiet=quiet)
    click.echo(f"pool up: {status.root} (condor_master pid {status.master_pid}, "
               f"{len(status.slots)} slot(s))")
    click.echo(f'host clients: eval "$(smartcache pool env)"  # CONDOR_CONFIG={status.condor_config}')


@pool.command("down")
@root_option
@click.option("--quiet", is_flag=True, help="Only print errors.")
def pool_down_cmd(root: Path | None, quiet: bool) -> None:
    """Stop the pool and its elastic workers, and unmount the chroot (the chroot is kept)."""
    from smartcache.condor.pool import pool_down, pool_root
    pool_down(root, quiet=quiet)
    click.echo(f"pool down: {pool_root(root)}")


@pool.command("env")
@root_option
def pool_env_cmd(root: Path | None) -> None:
    """Print the shell exports that point HTCondor clients at the pool."""
    import shlex

    from smartcache.condor.pool import pool_env
    for key, value in pool_env(root).items():
        click.echo(f"export {key}={shlex.quote(value)}")


@pool.command("status")
@root_option
@json_option
@click.pass_context
def pool_status_cmd(ctx: click.Context, root: Path | None, as_json: bool) -> None:
    """Whether the pool runs, its daemons and slots (and the autoscaler's last decisions)."""
    from smartcache.condor.pool import pool_status
    status = pool_status(root)
    decisions = _last_decisions(get_config(ctx))
    if as_json:
        return echo_json({**status.to_dict(), "autoscale": decisions})
    state = "running" if status.running else ("stopped" if status.installed else "not installed")
    click.echo(f"pool        {status.root}: {state}"
               + (f" (condor_master pid {status.master_pid})" if status.running else ""))
    click.echo(f"config      CONDOR_CONFIG={status.condor_config}")
    if status.error:
        click.echo(f"collector   {status.error}")
    for kind, names in status.daemons.items():
        click.echo(f"{kind:<11} {', '.join(names) or '-'}")
    if status.slots:
        echo_table(["slot", "state", "activity", "cpus", "memory", "elastic"],
                   [(s.name, s.state, s.activity, s.cpus, s.memory_mb, "yes" if s.elastic else "")
                    for s in status.slots])
    if decisions:
        click.echo("autoscaler, last decisions:")
        echo_table(["time", "demand", "supply", "workers", "target", "action", "reason"],
                   [(d.get("time"), d.get("demand"), d.get("supply"), d.get("workers"),
                     d.get("target"), d.get("action"), d.get("reason")) for d in decisions])


@pool.command("autoscale")
@root_option
@click.option("--backend", type=click.Choice(["local", "command"]), default="local", show_default=True,
              help="local: extra startds in this machine's pool; command: run --command with the count.")
@click.option("--command", "scale_command", help="For --backend command, e.g. "
              "'kubectl scale deployment wn-pod --replicas {n}'.")
@click.option("--min", "min_workers", type=click.IntRange(0), default=0, show_default=True)
@click.option("--max", "max_workers", type=click.IntRange(0), default=4, show_default=True)
@click.option("--worker-cpus", type=click.IntRange(1), default=1, show_default=True)
@click.option("--worker-memory", "worker_memory_mb", type=click.IntRange(1), default=2048, show_default=True,
              help="MB per worker.")
@click.option("--idle-timeout", type=click.FloatRange(0), default=60, show_default=True,
              help="Seconds a surplus must last before idle workers are removed.")
@click.option("--up-cooldown", type=click.FloatRange(0), default=10, show_default=True)
@click.option("--down-cooldown", type=click.FloatRange(0), default=0, show_default=True)
@click.option("--idle-grace", type=click.FloatRange(0), default=0, show_default=True,
              help="Jobs idle for less than this many seconds are not demand yet.")
@click.option("--constraint", help="Which jobs are demand (ClassAd expression).")
@click.option("--interval", type=click.FloatRange(0.1), default=5, show_default=True)
@click.option("--cycles", type=click.IntRange(1), help="Stop after this many cycles (default: run until ^C).")
@click.option("--metrics-port", type=click.IntRange(1024, 65535), help="Serve Prometheus metrics on 127.0.0.1.")
@click.option("--quiet", is_flag=True, help="Do not print scaling actions.")
@click.pass_context
def pool_autoscale_cmd(ctx: click.Context, root: Path | None, backend: str, scale_command: str | None,
                       min_workers: int, max_workers: int, worker_cpus: int, worker_memory_mb: int,
                       idle_timeout: float, up_cooldown: float, down_cooldown: float, idle_grace: float,
                       constraint: str | None, interval: float, cycles: int | None,
                       metrics_port: int | None, quiet: bool) -> None:
    """Grow and shrink elastic workers with the smartcache jobs in the queue.

    Every decision is logged with its reason (see `smartcache pool status`) and exported as
    Prometheus metrics (<home>/pool/autoscale.prom, and --metrics-port).
    """
    from smartcache.catalog.errors import ConfigError
    from smartcache.condor.autoscale import Policy
    from smartcache.condor.pool import activate_pool_env
    from smartcache.condor.provision import DEFAULT_CONSTRAINT, Autoscaler, Metrics
    from smartcache.condor.workers import CommandBackend, LocalBackend
    cfg = get_config(ctx)
    policy = Policy(min_workers, max_workers, worker_cpus, worker_memory_mb, up_cooldown=up_cooldown,
                    idle_timeout=idle_timeout, down_cooldown=down_cooldown, idle_grace=idle_grace)
    if backend == "command":
        if not scale_command:
            raise ConfigError("--backend command needs --command '... {n} ...'")
        scaler_backend = CommandBackend(scale_command)
    else:
        activate_pool_env(root)     # the local pool's own config, for this process's HTCondor client
        scaler_backend = LocalBackend(root, worker_cpus=worker_cpus, worker_memory_mb=worker_memory_mb,
                                      idle_timeout=idle_timeout + 60)
    metrics = Metrics(cfg.home / "pool" / "autoscale.prom", metrics_port)
    scaler = Autoscaler(cfg, policy, scaler_backend, constraint=constraint or DEFAULT_CONSTRAINT,
                        metrics=metrics)
    try:
        scaler.run(interval, cycles=cycles, quiet=quiet)
    except KeyboardInterrupt:
        click.echo("autoscaler stopped", err=True)


def _last_decisions(cfg: Config, n: int = 10) -> list[dict]:
    from smartcache.condor.autoscale_log import read_decisions
    return read_decisions(cfg.home, n)


commands = [pool]
