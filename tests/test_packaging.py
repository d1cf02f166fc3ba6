"""A plain (non-editable) install carries every part and its data files under smartcache.*."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("catalog", "condor", "submit", "tasks", "inference")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(ROOT), "-w", str(out)], check=True, capture_output=True)
    return next(out.glob("smartcache-*.whl"))


def test_wheel_maps_folders_into_the_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("smartcache-")}
    assert top == {"smartcache"}, "only the smartcache namespace is installed, no bare folders"
    assert "smartcache/__init__.py" not in names, "smartcache stays an implicit namespace"
    for part in PARTS:
        assert f"smartcache/{part}/__init__.py" in names
    assert "smartcache/catalog/migrations/script.py.mako" in names
    assert any(n.startswith("smartcache/catalog/migrations/versions/0001") for n in names)


def test_plain_install_runs(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import smartcache.catalog as c, smartcache.submit.cli as cli\n"
            "from smartcache.catalog.migrate import head_revision\n"
            "print(c.__file__); print(head_revision())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, cwd=tmp_path).stdout.split()
    assert out[0].startswith(str(target)) and out[1] == "0001"


def test_code_imports_parts_through_the_namespace():
    import re
    bare = re.compile(r"^\s*(from|import)\s+(catalog|condor|submit|tasks|inference)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for part in (*PARTS, "tests", "benchmarks")
                 for p in (ROOT / part).rglob("*.py") if bare.search(p.read_text())]
    assert offenders == []
