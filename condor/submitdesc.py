"""HTCondor submit descriptions for smartcache task kinds, and the argument syntax they use.

One description per task kind (one ``.sub`` per DAG layer); what differs between the nodes of a
layer comes in through DAG ``VARS`` (``$(partition)``, ``$(sources)``, ...). Nodes run the task's
entry point with the very interpreter of the installed environment (``sys.executable``), so a
pool that shares the filesystem (the default) needs nothing installed on its execute nodes.

Arguments and environment use HTCondor's "new" (V2) syntax; :func:`join_args` writes it and
:func:`split_args` reads it back, which is what the local executor does with a written ``.sub``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

import htcondor2

# Resource requests per task kind; modest so a laptop-sized test pool can match every kind.
RESOURCES: dict[str, dict[str, str]] = {
    "reduce":   {"request_cpus": "1", "request_memory": "1024M", "request_disk": "2G"},
    "features": {"request_cpus": "1", "request_memory": "2048M", "request_disk": "4G"},
    "train":    {"request_cpus": "2", "request_memory": "4096M", "request_disk": "4G"},
    "evaluate": {"request_cpus": "1", "request_memory": "2048M", "request_disk": "2G"},
    "score":    {"request_cpus": "1", "request_memory": "2048M", "request_disk": "4G"},
    "push":     {"request_cpus": "1", "request_memory": "512M", "request_disk": "1G"},
    "noop":     {"request_cpus": "1", "request_memory": "64M", "request_disk": "16M"},
}
DEFAULT_RESOURCES = {"request_cpus": "1", "request_memory": "1024M", "request_disk": "1G"}

# Environment a node gets from the submitter. Secrets (the inference token) stay out of files.
PASSED_ENV = ("SMARTCACHE_HOME", "SMARTCACHE_CATALOG_URL", "SMARTCACHE_DATA")
LOG_DIR = "logs"
_VAR_ONLY = re.compile(r"^\$\(\w+\)$")


def quote_arg(arg: str) -> str:
    """One argument in V2 syntax, to go inside the double-quoted ``arguments`` string."""
    arg = str(arg).replace('"', '""')
    if arg == "" or any(c in arg for c in " \t'"):
        return "'" + arg.replace("'", "''") + "'"
    return arg


def quote_args(args: Sequence[str]) -> str:
    """Several arguments as one VARS value that expands into separate arguments."""
    return " ".join(quote_arg(a) for a in args)


def join_args(args: Sequence[str]) -> str:
    """A whole V2 ``arguments`` value. An element that is exactly ``$(var)`` is left unquoted so the
    var's value (made with :func:`quote_args`) can expand into any number of arguments."""
    return '"' + " ".join(a if _VAR_ONLY.match(a) else quote_arg(a) for a in args) + '"'


def split_args(value: str) -> list[str]:
    """Parse an expanded V2 ``arguments``/``environment`` value back into a list."""
    value = value.strip()
    if not (value.startswith('"') and value.endswith('"') and len(value) >= 2):
        return value.split()  # V1 syntax: we never write it; whitespace split is its plain case
    raw = value[1:-1].replace('""', '"')
    args: list[str] = []
    cur: list[str] = []
    in_arg = quoted = False
    i = 0
    while i < len(raw):
        c = raw[i]
        if quoted:
            if c == "'" and raw[i + 1:i + 2] == "'":
                cur.append("'")
                i += 1
            elif c == "'":
                quoted = False
            else:
                cur.append(c)
        elif c == "'":
            quoted = in_arg = True
        elif c in " \t":
            if in_arg:
                args.append("".join(cur))
                cur, in_arg = [], False
        else:
            cur.append(c)
            in_arg = True
        i += 1
    if in_arg:
        args.append("".join(cur))
    return args


def task_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The submitter's SMARTCACHE_* settings a task needs (never the token)."""
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in PASSED_ENV if environ.get(k)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def config_env(cfg) -> dict[str, str]:
    """A node environment that makes a task's ``load_config()`` see the submitter's configuration,
    whatever user and HOME the job runs under (never the token)."""
    return {"SMARTCACHE_HOME": str(cfg.home), "SMARTCACHE_CATALOG_URL": cfg.catalog_url,
            "SMARTCACHE_DATA": str(cfg.data_root), "PYTHONUNBUFFERED": "1"}


def batch_name(workflow: str, run_id: int) -> str:
    return f"smartcache-{workflow}-{run_id}"


def describe(task: str, argv: Sequence[str], *, workflow: str, run_id: int, dag_dir: Path,
             python: str | None = None, env: Mapping[str, str] | None = None,
             resources: Mapping[str, str] | None = None, transfer_files: bool = False) -> htcondor2.Submit:
    """The submit description of one task kind.

    ``argv`` is what follows ``python -m smartcache.tasks.<task>``; it may hold ``$(var)``
    macros that DAG VARS fill per node. Every node should define the ``partition`` var
    (what ``condor_q -af SmartcachePartition`` shows).
    """
    desc: dict[str, str] = {
        "universe": "vanilla",
        "executable": python or sys.executable,
        "arguments": join_args(["-m", f"smartcache.tasks.{task}", *argv]),
        "initialdir": str(Path(dag_dir).absolute()),
        "output": f"{LOG_DIR}/$(JOB).out",
        "error": f"{LOG_DIR}/$(JOB).err",
        "log": f"{LOG_DIR}/$(JOB).log",
        "batch_name": batch_name(workflow, run_id),
        "+SmartcacheRun": str(int(run_id)),
        "+SmartcacheWorkflow": f'"{workflow}"',
        "+SmartcacheTask": f'"{task}"',
        "+SmartcachePartition": '"$(partition)"',
        **RESOURCES.get(task, DEFAULT_RESOURCES),
        **dict(resources or {}),
    }
    environment = task_env() if env is None else dict(env)
    if environment:
        desc["environment"] = join_args([f"{k}={v}" for k, v in sorted(environment.items())])
    if transfer_files:
        # Inputs named by the node's $(inputs) var are shipped; outputs must go to a location the
        # execute node can write (tasks register them in the catalog themselves).
        desc.update({"should_transfer_files": "YES", "when_to_transfer_output": "ON_EXIT",
                     "transfer_executable": "False", "transfer_input_files": "$(inputs)"})
    else:
        desc["should_transfer_files"] = "NO"
    return htcondor2.Submit(desc)


def parse_environment(value: str | None) -> dict[str, str]:
    """The ``environment`` value of a submit description as a dict."""
    if not value:
        return {}
    out = {}
    for item in split_args(value):
        key, sep, val = item.partition("=")
        if sep:
            out[key] = val
    return out
