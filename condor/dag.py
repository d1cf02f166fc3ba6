"""Workflows as DAGs: build with ``htcondor2.dags``, write, read back, and rescue files.

The one place that knows DAG semantics. A :class:`Workflow` (plain data: layers of nodes of one
task kind, their VARS, parent layers, retries, throttle categories) becomes an ``htcondor2.dags.DAG``
(:func:`build`), which :func:`write` turns into the ``.dag``, one ``.sub`` per layer and a DOT picture.
DAGMan runs that directory; so does the local executor, which reads it with :func:`read`.
Node names are ``<layer>-<index>`` (``reduce-000``), invertible for rescue files.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from htcondor2 import dags

from smartcache.catalog.errors import SmartcacheError
from smartcache.condor import submitdesc

DAG_FILE = "workflow.dag"
STATUS_FILE = "workflow.status"
DOT_FILE = "workflow.dot"
STATUS_UPDATE_SECONDS = 2
FORMATTER = dags.SimpleFormatter(separator="-", index_format="{:03d}")
_LAYER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_RESCUE = re.compile(r"\.rescue(\d{3})$")


class DagError(SmartcacheError):
    """A workflow could not be turned into a DAG, or a written DAG could not be read."""


@dataclass(frozen=True)
class Layer:
    """Nodes of one task kind sharing a submit description; one node per ``vars`` entry."""
    name: str
    task: str
    argv: tuple[str, ...]
    vars: tuple[Mapping[str, str], ...] = ({},)
    parents: tuple[str, ...] = ()      # every node of every parent layer precedes every node here
    retries: int = 2
    category: str | None = None        # throttled by Workflow.max_jobs[category]
    resources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Workflow:
    name: str
    run_id: int
    layers: tuple[Layer, ...]
    max_jobs: Mapping[str, int] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return sum(len(layer.vars) for layer in self.layers)


def build(wf: Workflow, dag_dir: Path, *, python: str | None = None, env: Mapping[str, str] | None = None,
          transfer_files: bool = False) -> dags.DAG:
    """The ``htcondor2.dags.DAG`` of a workflow (nothing is written)."""
    dag = dags.DAG(
        max_jobs_by_category=dict(wf.max_jobs),
        node_status_file=dags.NodeStatusFile(Path(STATUS_FILE), update_time=STATUS_UPDATE_SECONDS),
        dot_config=dags.DotConfig(Path(DOT_FILE), update=False, overwrite=True),
    )
    made: dict[str, dags.NodeLayer] = {}
    for layer in wf.layers:
        _check_layer(layer, made)
        sub = submitdesc.describe(layer.task, layer.argv, workflow=wf.name, run_id=wf.run_id, dag_dir=dag_dir,
                                  python=python, env=env, resources=layer.resources,
                                  transfer_files=transfer_files)
        node = dag.layer(name=layer.name, submit_description=sub, vars=[dict(v) for v in layer.vars],
                         retries=layer.retries, category=layer.category)
        for parent in layer.parents:
            node.add_parents(made[parent])
        made[layer.name] = node
    return dag


def _check_layer(layer: Layer, made: Mapping[str, object]) -> None:
    if not _LAYER_NAME.match(layer.name):
        raise DagError(f"invalid layer name {layer.name!r}: lowercase letters, digits, '_'")
    if layer.name in made:
        raise DagError(f"duplicate layer {layer.name}")
    if not layer.vars:
        raise DagError(f"layer {layer.name} has no nodes")
    missing = [p for p in layer.parents if p not in made]
    if missing:
        raise DagError(f"layer {layer.name}: parents {missing} must come before it")
    if layer.retries < 0:
        raise DagError(f"layer {layer.name}: retries must be >= 0")


def write(dag: dags.DAG, dag_dir: Path) -> Path:
    """Write the ``.dag``, the ``.sub`` files, ``logs/`` and the DOT picture; return the ``.dag`` path."""
    dag_dir = Path(dag_dir).absolute()
    # htcondor2.dags writes category limits as "CATEGORY <cat> <n>", which DAGMan reads as a node
    # named <cat>; the DAGMan syntax is "MAXJOBS <cat> <n>", so write those lines ourselves.
    max_jobs = dict(dag.max_jobs_per_category)
    dag.max_jobs_per_category = {}
    try:
        path = dags.write_dag(dag, dag_dir, dag_file_name=DAG_FILE, node_name_formatter=FORMATTER)
    finally:
        dag.max_jobs_per_category = max_jobs
    with path.open("a") as f:
        for category, limit in sorted(max_jobs.items()):
            f.write(f"MAXJOBS {category} {int(limit)}\n")
    (dag_dir / submitdesc.LOG_DIR).mkdir(exist_ok=True)
    (dag_dir / DOT_FILE).write_text(to_dot(read(path)))
    return path


# -- reading a written DAG (the subset write() produces) --------------------------------------
@dataclass
class Node:
    name: str
    submit_file: Path
    vars: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    category: str | None = None
    noop: bool = False
    done: bool = False
    parents: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)

    @property
    def layer(self) -> str:
        return self.name.rsplit("-", 1)[0]


@dataclass
class DagSpec:
    path: Path
    nodes: dict[str, Node]
    max_jobs: dict[str, int]
    status_file: Path | None

    @property
    def dir(self) -> Path:
        return self.path.parent

    def order(self) -> list[str]:
        """Node names, parents before children (ties by name)."""
        indeg = {n: len(node.parents) for n, node in self.nodes.items()}
        ready = sorted(n for n, d in indeg.items() if d == 0)
        out: list[str] = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for c in sorted(self.nodes[n].children):
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
            ready.sort()
        if len(out) != len(self.nodes):
            raise DagError(f"{self.path}: the DAG has a cycle")
        return out


_VAR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def read(dag_file: Path) -> DagSpec:
    """Parse a DAG file written by :func:`write` (JOB/VARS/RETRY/CATEGORY/MAXJOBS/PARENT-CHILD)."""
    dag_file = Path(dag_file).absolute()
    try:
        lines = dag_file.read_text().splitlines()
    except OSError as e:
        raise DagError(f"cannot read DAG {dag_file}: {e}") from e
    nodes: dict[str, Node] = {}
    max_jobs: dict[str, int] = {}
    status_file = None
    edges: list[tuple[list[str], list[str]]] = []
    for no, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        key = words[0].upper()
        try:
            if key == "JOB":
                flags = {w.upper() for w in words[3:]}
                nodes[words[1]] = Node(words[1], dag_file.parent / words[2], noop="NOOP" in flags,
                                       done="DONE" in flags)
            elif key == "VARS":
                nodes[words[1]].vars.update({k: re.sub(r"\\(.)", r"\1", v)
                                             for k, v in _VAR.findall(line.split(None, 2)[2])})
            elif key == "RETRY":
                nodes[words[1]].retries = int(words[2])
            elif key == "CATEGORY":
                nodes[words[1]].category = words[2]
            elif key == "MAXJOBS":
                max_jobs[words[1]] = int(words[2])
            elif key == "NODE_STATUS_FILE":
                status_file = dag_file.parent / words[1]
            elif key == "PARENT":
                cut = [w.upper() for w in words].index("CHILD")
                edges.append((words[1:cut], words[cut + 1:]))
        except (IndexError, KeyError, ValueError) as e:
            raise DagError(f"{dag_file}:{no}: cannot read {line!r}") from e
    for parents, children in edges:
        for p in parents:
            for c in children:
                if p not in nodes or c not in nodes:
                    raise DagError(f"{dag_file}: edge {p} -> {c} names an unknown node")
                nodes[p].children.add(c)
                nodes[c].parents.add(p)
    return DagSpec(dag_file, nodes, max_jobs, status_file)


def to_dot(spec: DagSpec) -> str:
    """A Graphviz picture of the node graph."""
    lines = [f'digraph "{spec.path.name}" {{', "  rankdir=TB;", "  node [shape=box];"]
    for name in spec.order():
        lines.append(f'  "{name}";')
    for name in spec.order():
        for child in sorted(spec.nodes[name].children):
            lines.append(f'  "{name}" -> "{child}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- rescue files (DAGMan's format: "DONE <node>" lines) ----------------------------------------
def rescue_files(dag_file: Path) -> list[Path]:
    """Existing rescue files of a DAG, oldest first (``.rescue001.old`` and the like excluded)."""
    dag_file = Path(dag_file)
    found = [(int(m.group(1)), p) for p in dag_file.parent.glob(dag_file.name + ".rescue*")
             if (m := _RESCUE.search(p.name))]
    return [p for _, p in sorted(found)]


def read_rescue(path: Path) -> set[str]:
    done = set()
    for line in Path(path).read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0].upper() == "DONE":
            done.add(words[1])
    return done


def rescued(dag_file: Path) -> set[str]:
    """Nodes the latest rescue file marks done (empty if there is none)."""
    files = rescue_files(dag_file)
    return read_rescue(files[-1]) if files else set()


def write_rescue(dag_file: Path, done: Iterable[str], failed: Iterable[str] = (), total: int | None = None) -> Path:
    """Write the next rescue file, as DAGMan would, so either executor can resume from it."""
    dag_file = Path(dag_file)
    files = rescue_files(dag_file)
    number = int(_RESCUE.search(files[-1].name).group(1)) + 1 if files else 1
    path = dag_file.with_name(f"{dag_file.name}.rescue{number:03d}")
    done, failed = sorted(set(done)), sorted(set(failed))
    header = [
        "# Rescue DAG file, created after running",
        f"#   the {dag_file.name} DAG file",
        f"# Created {time.strftime('%m/%d/%Y %H:%M:%S', time.gmtime())} UTC",
        "# Rescue DAG version: 2.0.1 (partial)",
        "#",
        f"# Total number of Nodes: {total if total is not None else len(done) + len(failed)}",
        f"# Nodes premarked DONE: {len(done)}",
        f"# Nodes that failed: {len(failed)}",
        f"#   {','.join(failed)},<ENDLIST>",
        "",
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(header + [f"DONE {n}" for n in done]) + "\n")
    tmp.rename(path)
    return path
