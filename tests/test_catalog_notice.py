"""A command that creates the catalog says so, once, on stderr; ``init`` keeps its own words."""

from __future__ import annotations

import pytest

NOTICE = "created a new catalog at "


@pytest.mark.parametrize("args", [["runs"], ["sites", "add", "T2_XX_A", "--cache-size", "1TB"], ["sites", "list"]])
def test_first_command_in_an_empty_home_says_it_created_the_catalog(cli, home, args):
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert r.stderr == f"{NOTICE}{home / 'catalog.db'}\n"
    assert NOTICE not in r.stdout                           # stdout stays what scripts parse
    again = cli(*args[:2]) if args[0] == "sites" else cli(*args)
    assert NOTICE not in again.output                       # once: the catalog exists now


def test_init_keeps_its_own_report(cli, home):
    r = cli("init")
    assert r.exit_code == 0 and NOTICE not in r.output and f"catalog  sqlite:///{home}/catalog.db" in r.stdout


def test_an_existing_catalog_is_not_announced(cli, home):
    assert cli("init").exit_code == 0
    r = cli("runs")
    assert r.exit_code == 0 and r.stderr == ""


def test_the_notice_names_a_server_catalog_without_its_password(pg_url):
    from smartcache.catalog import open_store
    seen: list[str] = []
    url = pg_url.replace("smartcache@", "smartcache:secret@")     # trust auth: any password is accepted
    open_store(url, migrate=True, on_create=seen.append).close()
    open_store(url, migrate=True, on_create=seen.append).close()
    assert len(seen) == 1 and "secret" not in seen[0] and seen[0].endswith(pg_url.rsplit("/", 1)[1])
