"""The smartcache CLI through click's CliRunner: happy paths and user errors."""

import json

import pytest


def test_version_and_help(cli):
    from smartcache.catalog import __version__
    r = cli("--version")
    assert r.exit_code == 0 and __version__ in r.output
    r = cli("--help")
    for group in ("init", "db", "sites", "datasets", "models", "runs", "placements"):
        assert group in r.output


def test_init_creates_home_config_and_schema(cli, home):
    r = cli("init")
    assert r.exit_code == 0, r.output
    assert (home / "config.toml").exists() and (home / "catalog.db").exists()
    assert "schema 0001" in r.output
    r = cli("db", "current")
    assert "up to date" in r.output
    assert cli("init").exit_code == 0  # idempotent


def test_sites_add_list_json(cli):
    r = cli("sites", "add", "T2_IT_Pisa", "--cache-size", "500TB", "--push", "file:///tmp/pisa")
    assert r.exit_code == 0, r.output
    assert "500 TB" in r.output
    cli("sites", "add", "T2_US_UCSD", "--cache-size", "1.5PiB")
    r = cli("sites", "list")
    assert "T2_IT_Pisa" in r.output and "500 TB" in r.output and "1.689 PB" in r.output
    data = json.loads(cli("sites", "list", "--json").output)
    assert {d["name"]: (d["cache_size"], d["region"]) for d in data} == {
        "T2_IT_Pisa": (500 * 10**12, "IT"), "T2_US_UCSD": (int(1.5 * 2**50), "US")}
    assert cli("sites", "set", "T2_IT_Pisa", "--cache-size", "600TB").exit_code == 0
    assert json.loads(cli("sites", "list", "--json").output)[0]["cache_size"] == 600 * 10**12


@pytest.mark.parametrize("args,message", [
    (("sites", "add", "T2_IT_Pisa", "--cache-size", "lots"), "not a size"),
    (("sites", "add", "../x", "--cache-size", "1TB"), "invalid site name"),
    (("sites", "remove", "T2_XX_Nowhere"), "no site named"),
    (("models", "stage", "nope", "1", "production"), "no model nope:1"),
])
def test_user_errors_are_one_line(cli, args, message):
    r = cli(*args)
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output


def test_duplicate_site_is_a_clear_error(cli):
    cli("sites", "add", "T2_IT_Bari", "--cache-size", "1TB")
    r = cli("sites", "add", "T2_IT_Bari", "--cache-size", "1TB")
    assert r.exit_code == 1 and r.output.strip() == "Error: site T2_IT_Bari already exists"


def test_bad_config_is_a_clear_error(cli, home):
    home.mkdir(parents=True)
    (home / "config.toml").write_text("[executor]\nkind = 'slurm'\n")
    r = cli("sites", "list")
    assert r.exit_code == 1 and "executor must be one of" in r.output and "Traceback" not in r.output


def test_empty_listings(cli):
    for group in ("datasets", "models", "runs", "placements"):
        r = cli(group, "list")
        assert r.exit_code == 0 and "(none)" in r.output
        assert json.loads(cli(group, "list", "--json").output) == []
    assert cli("runs").exit_code == 0
    assert cli("datasets", "quarantine").exit_code == 0


def test_listings_show_catalog_rows(cli, home):
    from smartcache.catalog import load_config, open_store
    cli("init")
    store = open_store(load_config().catalog_url)
    store.register_dataset("raw/2026-10-01", "raw", "file:///r", n_rows=5, n_bytes=2_000_000)
    store.register_model("cachenet", "tensorflow", {"tflite": b"x"}, metrics={"auc": 0.8123})
    run = store.create_run("reduce")
    store.close()
    assert "2 MB" in cli("datasets", "list").output
    assert "cachenet:1" in cli("models", "list").output and "0.812" in cli("models", "list").output
    assert json.loads(cli("runs", "--json").output)[0]["id"] == run.id


def test_console_script_installed():
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    exe = shutil.which("smartcache", path=str(Path(sys.executable).parent))
    assert exe, "the smartcache console script is not installed in this environment"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "Commands:" in out
