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


SANDBOXES = ("bubblewrap", "off")
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class InferenceConfig:
    url: str = "http://127.0.0.1:8083"
    token: str | None = None           # bearer token for mutating routes
    # False only by ``smartcache serve --no-auth``: mutating routes open to anyone. With auth on
    # and no usable token, mutating routes are closed (fail closed), never open.
    auth: bool = True
    host: str = "127.0.0.1"
    port: int = 8083
    workers: int = 2
    max_upload_bytes: int = 256 * 2**20
    model_cache_size: int = 10
    # Uploaded models are converted inside a bubblewrap sandbox; "off" is the operator's explicit
    # opt-out (conversions then run unconfined, and the service says so loudly).
    sandbox: str = "bubblewrap"
    # /decide and POST /access keep per-site access state (shared by the workers) and write feedback
    access_state: bool = True
    state_files: int = 1 << 20         # file slots of the access state (~64 bytes each, sparse until used)

    def token_problem(self) -> str | None:
        """Why the configured token cannot be used (None when it can)."""
        t = self.token
        if t is None or t == "":
            return "no inference token is configured"
        if not isinstance(t, str):
            return "the inference token is not a string"
        if any(c.isspace() or not c.isprintable() for c in t):
            return "the inference token contains whitespace or control characters"
        if len(t) < MIN_TOKEN_CHARS:
            return f"the inference token is shorter than {MIN_TOKEN_CHARS} characters"
        return None


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
            token=_token(inf.get("token")),
            host=str(inf.get("host", InferenceConfig.host)),
            port=int(inf.get("port", InferenceConfig.port)),
            workers=int(inf.get("workers", InferenceConfig.workers)),
            max_upload_bytes=int(inf.get("max_upload_bytes", InferenceConfig.max_upload_bytes)),
            model_cache_size=int(inf.get("model_cache_size", InferenceConfig.model_cache_size)),
            sandbox=_sandbox(inf.get("sandbox", InferenceConfig.sandbox)),
            access_state=_bool(inf.get("access_state", True)),
            state_files=_positive(int(inf.get("state_files", InferenceConfig.state_files)), "inference.state_files"),
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


def _positive(value: int, what: str) -> int:
    if value < 16:
        raise ConfigError(f"{what} must be at least 16, not {value}")
    return value


def _token(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"inference.token must be a string (quote it in config.toml), not {type(value).__name__}")
    return value


def _sandbox(value: object) -> str:
    if value not in SANDBOXES:
        raise ConfigError(f"inference.sandbox must be one of {', '.join(map(repr, SANDBOXES))}, not {value!r}")
    return str(value)


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by its owner only; an existing one is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)       # the mode is set by mkdir itself: no window with a wider one
    except FileExistsError:
        pass
    return path


def create_private_file(path: Path, data: bytes = b"") -> bool:
    """Create ``path`` with mode 0600 from the first byte on; False (untouched) if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` catalog URL (None for other databases and in-memory SQLite)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def precreate_catalog(url: str) -> None:
    """Create an SQLite catalog file 0600 before SQLite does (it would use 0644); SQLite gives its
    journal and WAL files the database file's mode."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private_file(path)


def write_default_config(home: Path) -> Path:
    """Create ``config.toml`` (0600) with a fresh inference token in ``home`` (0700), unless one exists."""
    path = home / CONFIG_FILE
    if path.exists():
        return path
    make_private_dir(home)
    token = secrets.token_urlsafe(32)
    create_private_file(path, (
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
    ).encode())
    return path
