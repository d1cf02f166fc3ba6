"""The one place that talks to an HTCondor schedd (htcondor2 bindings).

``available`` decides ``--executor auto``; ``submit_dag`` turns a written DAG into a DAGMan job;
``query_jobs``/``history``/``remove`` serve monitoring and cancel. Every bindings error becomes
a :class:`CondorError` (a :class:`SmartcacheError`), so the CLI shows one line, not a traceback.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable

import classad2
import htcondor2

from smartcache.catalog.config import CondorConfig
from smartcache.catalog.errors import SmartcacheError

DAGMAN = "condor_dagman"
# What status needs of a DAG's node jobs (see smartcache.condor.status.collect).
NODE_PROJECTION = ["ClusterId", "ProcId", "DAGNodeName", "JobStatus", "HoldReason", "SmartcacheTask",
                   "SmartcachePartition", "NumJobStarts"]
DAGMAN_PROJECTION = ["ClusterId", "JobStatus", "HoldReason", "ExitCode", "JobBatchName"]


class CondorError(SmartcacheError):
    """HTCondor refused or failed an operation."""


class CondorUnavailable(CondorError):
    """No schedd could be reached."""


def _cfg(cfg: Any) -> CondorConfig:
    """Accept the whole Config as well as its ``condor`` part."""
    return getattr(cfg, "condor", cfg) or CondorConfig()


def connect(cfg: Any) -> htcondor2.Schedd:
    """A handle on the configured schedd (the local one unless ``condor.schedd``/``collector`` say otherwise)."""
    c = _cfg(cfg)
    try:
        if c.schedd or c.collector:
            collector = htcondor2.Collector(c.collector) if c.collector else htcondor2.Collector()
            return htcondor2.Schedd(collector.locate(htcondor2.DaemonType.Schedd, c.schedd))
        return htcondor2.Schedd()
    except htcondor2.HTCondorException as e:
        where = c.schedd or "the local schedd"
        raise CondorUnavailable(f"cannot reach HTCondor schedd {where}: {e}") from e


def available(cfg: Any) -> bool:
    """True if a schedd answers and DAGMan can be found: what ``--executor auto`` asks."""
    if shutil.which(DAGMAN) is None:
        return False
    try:
        connect(cfg).query(constraint="false", projection=["ClusterId"], limit=1)
        return True
    except (CondorError, htcondor2.HTCondorException):
        return False


def submit_dag(dag_file: Path, cfg: Any, *, resume: bool = False, batch_name: str | None = None) -> int:
    """Submit the DAGMan job for ``dag_file``; return its cluster id.

    A fresh run is submitted with ``force`` (overwrite DAGMan's own files). A resume is submitted
    without it, so DAGMan runs the latest rescue file (``force`` would set rescue files aside).
    """
    dag_file = Path(dag_file).absolute()
    if shutil.which(DAGMAN) is None:
        raise CondorError(f"{DAGMAN} is not on PATH: Submit.from_dag needs it (and writes its path into the job)")
    options: dict[str, Any] = {} if resume else {"force": True}
    if batch_name:
        options["batch-name"] = batch_name
    schedd = connect(cfg)
    # Node submit files resolve against the submitter's cwd, and DAGMan's iwd is that cwd.
    with contextlib.chdir(dag_file.parent), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # e.g. DAGMan older than the bindings: harmless
        try:
            description = htcondor2.Submit.from_dag(str(dag_file), options)
            return int(schedd.submit(description).cluster())
        except htcondor2.HTCondorException as e:
            raise CondorError(f"submitting {dag_file} failed: {e}") from e


def _plain(value: Any) -> Any:
    if isinstance(value, classad2.ExprTree):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dicts(ads: Iterable[classad2.ClassAd], projection: list[str]) -> list[dict]:
    out = []
    for ad in ads:
        keys = projection or list(ad.keys())
        out.append({k: _plain(ad.get(k)) for k in keys})
    return out


def query_jobs(constraint: str, projection: list[str], cfg: Any) -> list[dict]:
    """Jobs in the queue matching ``constraint`` (projected attributes, missing ones as None)."""
    try:
        return _dicts(connect(cfg).query(constraint=constraint, projection=projection), projection)
    except htcondor2.HTCondorException as e:
        raise CondorUnavailable(f"querying the schedd failed: {e}") from e


def history(constraint: str, projection: list[str], cfg: Any, match: int = 1) -> list[dict]:
    """Jobs that left the queue, newest first."""
    try:
        return _dicts(connect(cfg).history(constraint, projection, match=match), projection)
    except htcondor2.HTCondorException as e:
        raise CondorUnavailable(f"reading the schedd history failed: {e}") from e


def node_jobs(cluster_id: int, cfg: Any) -> list[dict]:
    """The node jobs a DAGMan job has in the queue."""
    return query_jobs(f"DAGManJobId == {int(cluster_id)}", NODE_PROJECTION, cfg)


def dagman_job(cluster_id: int, cfg: Any) -> dict | None:
    """The DAGMan job while it is queued, else its history record, else None."""
    found = query_jobs(f"ClusterId == {int(cluster_id)}", DAGMAN_PROJECTION, cfg)
    if found:
        return {**found[0], "in_queue": True}
    past = history(f"ClusterId == {int(cluster_id)}", DAGMAN_PROJECTION, cfg, match=1)
    return {**past[0], "in_queue": False} if past else None


def remove(cluster_id: int, cfg: Any, reason: str = "cancelled by smartcache") -> int:
    """Remove a DAGMan job (DAGMan removes its node jobs and writes a rescue DAG); return jobs removed."""
    try:
        # htcondor2 25.x passes the reason on only when given as (text, code); a bare str is dropped
        result = connect(cfg).act(htcondor2.JobAction.Remove, f"ClusterId == {int(cluster_id)}",
                                  reason=(reason, 0))
    except htcondor2.HTCondorException as e:
        raise CondorError(f"removing cluster {cluster_id} failed: {e}") from e
    return int(result.get("TotalSuccess", 0) or 0)
