"""A plain (non-editable) install carries every part and its data files under smartcache.*."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("catalog", "condor", "submit", "tasks", "inference")
# tasks/: one sub-package per part of the flow, in flow order; ``common`` is what they share
TASK_PARTS = ("common", "generate", "feedback", "reduce", "features", "train", "simulate", "evaluate", "score", "push", "site")
NODE_KINDS = ("feedback", "reduce", "features", "train", "evaluate", "score", "push")


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
    for part in TASK_PARTS:
        assert f"smartcache/tasks/{part}/__init__.py" in names
    assert "smartcache/tasks/site/templates/xcache.cfg.in" in names
    assert "smartcache/tasks/site/cpp/XrdPfcListDecision.cc" in names
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


def _part_imports() -> dict[str, set[str]]:
    """{part: the other tasks/ parts its modules import} (module-level and function-level imports)."""
    import ast
    edges: dict[str, set[str]] = {p: set() for p in TASK_PARTS}
    for part in TASK_PARTS:
        for path in (ROOT / "tasks" / part).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smartcache.tasks."):
                    other = node.module.split(".")[2]
                    if other != part:
                        edges[part].add(other)
    return edges


def test_task_parts_have_no_cycles_and_common_imports_no_part():
    edges = _part_imports()
    assert edges["common"] == set(), "tasks/common imports nothing else of tasks/"
    assert set().union(*edges.values()) <= set(TASK_PARTS), "every import names a part"
    # a depth-first search for a cycle in the part graph
    state: dict[str, int] = {}

    def visit(part: str, path: list[str]) -> None:
        state[part] = 1
        for other in sorted(edges[part]):
            assert state.get(other) != 1, f"import cycle: {' -> '.join(path + [part, other])}"
            if other not in state:
                visit(other, path + [part])
        state[part] = 2
    for part in TASK_PARTS:
        if part not in state:
            visit(part, [])


def test_every_part_says_what_it_takes_and_gives_and_every_node_starts_with_python_m():
    import importlib
    for part in TASK_PARTS:
        doc = importlib.import_module(f"smartcache.tasks.{part}").__doc__ or ""
        assert len(doc.split()) > 15, f"tasks/{part}/__init__.py needs a docstring saying what it takes and gives"
    for kind in NODE_KINDS:
        out = subprocess.run([sys.executable, "-m", f"smartcache.tasks.{kind}", "--help"], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and "usage:" in out.stdout, (kind, out.stderr[-500:])
