"""A file the user named that cannot be written is one line -- ``Error: cannot write <what> <path>: <reason>``,
exit 1, no traceback -- for every command that writes files.

The tests run as root in CI, and permission bits do not stop root: what does is a path under a regular
file (every command below), a read-only or a full file system (a small tmpfs, where mounting is allowed).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from smartcache.submit.context import user_errors
from smartcache.submit.fileerrors import FileError, os_error_line, root_os_error, writing

TRACE = "timestamp,site,lfn,size\n1700000000,T2_XX_A,/store/a.root,1000\n1700000060,T2_XX_A,/store/a.root,1000\n"

# {b}: a path under a regular file; {raw}: generated raw logs; {trace}: a small trace CSV
COMMANDS = {
    "generate logs": (["generate", "logs", "--months", "1", "--scale", "0.01", "--out", "{b}/raw"],
                      "the raw logs to {b}/raw"),
    "export trace": (["export", "trace", "--raw", "{raw}", "--out", "{b}/t.csv"], "the trace {b}/t.csv"),
    "simulate --plot": (["simulate", "--trace", "{trace}", "--cache-size", "1TB", "--policy", "lru",
                         "--plot", "{b}/x.png"], "the plot {b}/x.png"),
    "reduce": (["reduce", "--source-root", "{raw}", "--out", "{b}/d", "--no-catalog", "--no-progress"],
               "the reduce output to {b}/d"),
    "features": (["features", "--reduced", "{raw}", "--out", "{b}/f", "--no-catalog"], "the features output to {b}/f"),
    "score": (["score", "--features", "f", "--model", "m", "--out", "{b}/p"], "placement lists to {b}/p"),
    "site up": (["site", "up", "--site", "T3_XX_Blocked", "--dir", "{b}/site"], "the demo site to"),
    "site agent": (["site", "agent", "--site", "T3_XX_Blocked", "--list", "{raw}/", "--cache", "root://127.0.0.1:1",
                    "--state-dir", "{b}/state"], "the agent's state to {b}/state"),
    "site build-plugin": (["site", "build-plugin", "--out", "{b}/plugin"], "the plugin to {b}/plugin"),
    "init": (["--home", "{b}/home", "init"], "the smartcache home"),
    "submit": (["submit", "reduce", "--months", "1", "--source", "{raw}", "--executor", "local"],
               "the run's outputs under {b}/data"),
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    r = CliRunner().invoke(_cli(), ["generate", "logs", "--months", "1", "--end", "2026-01", "--scale", "0.01",
                                    "--out", str(out), "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def _cli():
    from smartcache.submit.cli import cli
    return cli


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_path_under_a_file_is_one_line(name, cli, raw, tmp_path, monkeypatch):
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file, not a folder\n")
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    if name == "submit":
        monkeypatch.setenv("SMARTCACHE_DATA", f"{blocker}/data")
    args, what = COMMANDS[name]
    fill = {"b": str(blocker), "raw": str(raw), "trace": str(trace)}
    line = _one_error_line(cli(*[a.format(**fill) for a in args]))
    assert line.startswith(f"Error: cannot write {what.format(**fill)}")
    assert line.endswith(f"{blocker} is a file, not a folder")


def test_a_home_under_a_file_is_one_line_for_catalog_commands(cli, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("SMARTCACHE_HOME", str(tmp_path / "afile" / "home"))
    line = _one_error_line(cli("sites", "add", "T2_XX_A", "--cache-size", "1TB"))
    assert line.startswith("Error: cannot") and line.endswith(f"{tmp_path / 'afile'} is a file, not a folder")


# -- full and read-only file systems ---------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (``mount(options)`` -> its folder); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {proc.stderr.strip()}")
        mounted.append(where)
        return where
    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_while_writing_is_one_line(cli, raw, tmp_path, tmpfs):
    full = tmpfs("size=64k")
    line = _one_error_line(cli("export", "trace", "--raw", str(raw), "--out", f"{full}/t.csv", "--no-progress"))
    assert line == f"Error: cannot write the trace {full}/t.csv: No space left on device"
    assert list(full.iterdir()) == []                       # the half-written .part is gone
    line = _one_error_line(cli("generate", "logs", "--months", "1", "--end", "2026-01", "--scale", "0.05",
                               "--out", f"{full}/raw", "--no-progress"))
    assert line == f"Error: cannot write the raw logs to {full}/raw: No space left on device"


def test_a_read_only_file_system_is_said_before_the_work(cli, raw, tmp_path, tmpfs):
    ro = tmpfs("ro,size=64k")
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    line = _one_error_line(cli("simulate", "--trace", str(trace), "--cache-size", "1TB", "--plot", f"{ro}/x.png"))
    assert line == f"Error: cannot write the plot {ro}/x.png: {ro} is not writable (read-only file system)"
    line = _one_error_line(cli("export", "trace", "--raw", str(raw), "--out", f"{ro}/t.csv"))
    assert line.endswith("(read-only file system)")


# -- the pieces ------------------------------------------------------------------------------------
def test_the_first_error_of_a_chain_is_the_one_reported(tmp_path):
    """A cleanup that fails too (``finally: unlink(tmp)``) must not hide the cause."""
    out = tmp_path / "t.csv"
    with pytest.raises(FileError) as info:
        with writing("the trace", out):
            try:
                raise PermissionError(errno.EACCES, "Permission denied", str(out) + ".part")
            finally:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(out) + ".part")
    assert str(info.value) == f"cannot write the trace {out}: Permission denied"
    assert isinstance(root_os_error(info.value.__cause__), PermissionError)


def test_errors_about_other_files_are_not_blamed_on_the_output(tmp_path):
    with pytest.raises(FileNotFoundError):
        with writing("the trace", tmp_path / "t.csv"):
            open(tmp_path / "missing-input.csv")
    assert os_error_line(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/in.csv")) == \
        "cannot use /x/in.csv: No such file or directory"


def test_any_other_os_error_of_a_command_is_one_line():
    @click.command()
    @user_errors
    def boom():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    r = CliRunner().invoke(boom, [])
    assert r.exit_code == 1 and r.output == "Error: file system error: No space left on device\n"
