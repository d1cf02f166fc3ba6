"""Typed, frozen configuration, loaded once by an entry point and passed down.

Sources, later ones winning: built-in defaults, ``$SMARTCACHE_HOME/config.toml``,
environment variables. Nothing here is module-level mutable state: callers hold
the :class:`Config` they were given.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from smartcache.catalog.errors import ConfigError

EXECUTORS = ("auto", "local", "condor")
CONFIG_FILE = "config.toml"

# Environment variable -> (section, key) in the config file.
ENV_KEYS: dict[str, tuple[str, str]] = {
    "SMARTCACHE_CATALOG_URL": ("catalog", "url"),
    "SMARTCACHE_EXECUTOR": ("executor", "kind"),
    "SMARTCACHE_SCHEDD": ("condor", "schedd"),
    "SMARTCACHE_COLLECTOR": ("condor", "collector"),
    "SMARTCACHE_INFERENCE_URL": ("inference", "url"),
    "SMARTCACHE_TOKEN": ("inference", "token"),
    "SMARTCACHE_DATA": ("data", "root"),
}


@dataclass(frozen=True)
class CondorConfig:
    schedd: str | None = None          # schedd name; None = the local schedd
    collector: str | None = None       # collector host[:port]; None = from HTCondor's config
    max_jobs: int = 50                 # CATEGORY throttle for reduce nodes
    transfer_files: bool = False       # shared filesystem by default


@dataclass(frozen=True)
class InferenceConfig:
    url: str = "http://127.0.0.1:8083"
    token: str | None = None           # bearer token for mutating routes; None = open
    host: str = "127.0.0.1"
    port: int = 8083
    workers: int = 2
    max_upload_bytes: int = 256 * 2**20
    model_cache_size: int = 10


@dataclass(frozen=True)
class Config:
    home: Path
    catalog_url: str
    data_root: Path
    executor: str = "auto"
    condor: CondorConfig = field(default_factory=CondorConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def with_overrides(self, **changes) -> "Config":
        return replace(self, **changes)


def default_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("SMARTCACHE_HOME") or Path.home() / ".smartcache").expanduser()


def load_config(env: Mapping[str, str] | None = None, home: Path | None = None) -> Config:
    """Build the configuration from defaults, the config file and the environment."""
    env = os.environ if env is None else env
    home = (home or default_home(env)).expanduser().resolve()
    values = _read_file(home / CONFIG_FILE)
    for var, (section, key) in ENV_KEYS.items():
        if env.get(var):
            values.setdefault(section, {})[key] = env[var]
    return _build(home, values)


def _read_file(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    for section, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
    return {k: dict(v) for k, v in data.items()}


def _build(home: Path, v: dict[str, dict]) -> Config:
    cat, ex, co, inf, data = (v.get(s, {}) for s in ("catalog", "executor", "condor", "inference", "data"))
    executor = str(ex.get("kind", "auto"))
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    try:
        condor = CondorConfig(
            schedd=co.get("schedd") or None,
            collector=co.get("collector") or None,
            max_jobs=int(co.get("max_jobs", CondorConfig.max_jobs)),
            transfer_files=_bool(co.get("transfer_files", False)),
        )
        inference = InferenceConfig(
            url=str(inf.get("url", InferenceConfig.url)),
            token=inf.get("token") or None,
            host=str(inf.get("host", InferenceConfig.host)),
            port=int(inf.get("port", InferenceConfig.port)),
            workers=int(inf.get("workers", InferenceConfig.workers)),
            max_upload_bytes=int(inf.get("max_upload_bytes", InferenceConfig.max_upload_bytes)),
            model_cache_size=int(inf.get("model_cache_size", InferenceConfig.model_cache_size)),
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid configuration value: {e}") from e
    return Config(
        home=home,
        catalog_url=str(cat.get("url") or f"sqlite:///{home / 'catalog.db'}"),
        data_root=Path(data.get("root") or home / "data").expanduser(),
        executor=executor,
        condor=condor,
        inference=inference,
    )


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def write_default_config(home: Path) -> Path:
    """Create ``config.toml`` with a fresh inference token, unless one exists."""
    path = home / CONFIG_FILE
    if path.exists():
        return path
    home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.write_text(
        "# smartcache configuration; environment variables (SMARTCACHE_*) override these.\n"
        "[catalog]\n"
        f"# url = \"postgresql+psycopg://user@127.0.0.1/smartcache\"  (default: sqlite in this folder)\n\n"
        "[executor]\n"
        "kind = \"auto\"   # auto | local | condor\n\n"
        "[condor]\n"
        "# schedd = \"minicondor\"\n# collector = \"127.0.0.1:9618\"\nmax_jobs = 50\n\n"
        "[inference]\n"
        f"url = \"{InferenceConfig.url}\"\n"
        f"token = \"{token}\"\n"
    )
    path.chmod(0o600)
    return path
