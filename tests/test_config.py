import pytest

from smartcache.catalog import ConfigError, load_config
from smartcache.catalog.config import write_default_config


def test_defaults(tmp_path):
    cfg = load_config(env={"SMARTCACHE_HOME": str(tmp_path)})
    assert cfg.home == tmp_path.resolve()
    assert cfg.catalog_url == f"sqlite:///{tmp_path.resolve()}/catalog.db"
    assert cfg.executor == "auto"
    assert cfg.data_root == tmp_path.resolve() / "data"
    assert cfg.inference.token is None


def test_file_then_environment(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[catalog]\nurl = "sqlite:////x/file.db"\n[executor]\nkind = "local"\n'
        '[condor]\nschedd = "s1"\nmax_jobs = 7\n[inference]\ntoken = "from-file"\nport = 9000\n')
    cfg = load_config(env={"SMARTCACHE_HOME": str(tmp_path)})
    assert (cfg.catalog_url, cfg.executor, cfg.condor.schedd, cfg.condor.max_jobs) == \
        ("sqlite:////x/file.db", "local", "s1", 7)
    assert (cfg.inference.token, cfg.inference.port) == ("from-file", 9000)
    env = {"SMARTCACHE_HOME": str(tmp_path), "SMARTCACHE_CATALOG_URL": "postgresql://u@127.0.0.1/db",
           "SMARTCACHE_EXECUTOR": "condor", "SMARTCACHE_SCHEDD": "s2", "SMARTCACHE_COLLECTOR": "127.0.0.1:9618",
           "SMARTCACHE_INFERENCE_URL": "http://127.0.0.1:1", "SMARTCACHE_TOKEN": "from-env"}
    cfg = load_config(env=env)
    assert cfg.catalog_url == "postgresql://u@127.0.0.1/db"
    assert (cfg.executor, cfg.condor.schedd, cfg.condor.collector) == ("condor", "s2", "127.0.0.1:9618")
    assert (cfg.inference.url, cfg.inference.token) == ("http://127.0.0.1:1", "from-env")


def test_config_is_frozen(tmp_path):
    cfg = load_config(env={"SMARTCACHE_HOME": str(tmp_path)})
    with pytest.raises(AttributeError):
        cfg.executor = "condor"  # type: ignore[misc]


@pytest.mark.parametrize("body,match", [
    ("[executor]\nkind = 'slurm'\n", "executor must be one of"),
    ("not toml = = =", "not valid TOML"),
    ("[inference]\nport = 'eighty'\n", "invalid configuration value"),
    ("executor = 3\n", "must be a table"),
])
def test_bad_config(tmp_path, body, match):
    (tmp_path / "config.toml").write_text(body)
    with pytest.raises(ConfigError, match=match):
        load_config(env={"SMARTCACHE_HOME": str(tmp_path)})


def test_default_config_has_private_token(tmp_path):
    path = write_default_config(tmp_path / "h")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    cfg = load_config(env={"SMARTCACHE_HOME": str(tmp_path / "h")})
    assert cfg.inference.token and len(cfg.inference.token) >= 32
    assert write_default_config(tmp_path / "h").read_text() == path.read_text()  # never overwritten
