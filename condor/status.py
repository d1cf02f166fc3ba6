"""Per-node state of a run, from the files DAGMan (or the local executor) writes in the DAG dir.

- the node status file (``NODE_STATUS_FILE``, ClassAds): DAGMan's view of every node — done,
  failed, futile, queued, retry count; the local executor writes the same format;
- the nodes' job event log (``<dag>.nodes.log``, read with ``htcondor2.JobEventLog``): whether a
  queued node's job is idle, running or held, and why it is held;
- optionally the schedd's current view of the node jobs (passed in by the caller, see
  :func:`smartcache.condor.schedd.node_jobs`), which wins over the log when given;
- ``<dag>.metrics`` (JSON, written when a DAG run ends): its exit code.

States are the catalog's: idle, running, done, failed, held, retrying.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import classad2
import htcondor2

from smartcache.condor import dag as dagmod

# DAGMan node status codes (NodeStatus in the node status file).
NOT_READY, READY, PRERUN, SUBMITTED, POSTRUN, DONE, ERROR, FUTILE = range(8)
CODE_NAMES = ("STATUS_NOT_READY", "STATUS_READY", "STATUS_PRERUN", "STATUS_SUBMITTED", "STATUS_POSTRUN",
              "STATUS_DONE", "STATUS_ERROR", "STATUS_FUTILE")
_JOB_STATUS = {1: "idle", 2: "running", 3: "failed", 4: "done", 5: "held", 6: "running", 7: "idle"}
_ET = htcondor2.JobEventType


@dataclass
class NodeState:
    node: str
    task: str | None = None
    partition: str | None = None
    status: str = "idle"
    retries: int = 0
    message: str | None = None

    def to_catalog(self) -> dict:
        return {"node": self.node, "task": self.task, "status": self.status, "retries": self.retries,
                "message": self.message}


@dataclass
class RunState:
    nodes: list[NodeState]
    exit_code: int | None = None            # set once the DAG run has ended
    updated: float | None = None            # when the node status file was written
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.exit_code is not None

    @property
    def total(self) -> int:
        return len(self.nodes)


# -- node status file ---------------------------------------------------------------------
def read_status_file(path: Path) -> tuple[dict, dict[str, dict]]:
    """The DagStatus ad and the NodeStatus ads by node name ({} and {} if not written yet)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}, {}
    dag_ad: dict = {}
    nodes: dict[str, dict] = {}
    try:
        for ad in classad2.parseAds(text):
            ad = dict(ad)
            if ad.get("Type") == "DagStatus":
                dag_ad = ad
            elif ad.get("Type") == "NodeStatus":
                nodes[str(ad.get("Node"))] = ad
    except (classad2.ClassAdException, ValueError):
        return {}, {}   # caught mid-write by a writer that does not rename; the next read will do
    return dag_ad, nodes


def write_status_file(path: Path, nodes: Iterable[tuple[str, int, str, int]], dag_status: int = SUBMITTED,
                      next_update: float | None = None) -> None:
    """Write a node status file as DAGMan 23 does; ``nodes`` is (name, code, details, retries) and
    ``dag_status`` is, as in DAGMan's file, a node code: SUBMITTED while running, DONE, ERROR."""
    now = int(time.time())
    nodes = list(nodes)
    codes = [c for _, c, _, _ in nodes]
    head = {"Type": "DagStatus", "DagFiles": [dagmod.DAG_FILE], "Timestamp": now, "DagStatus": dag_status,
            "NodesTotal": len(nodes), "NodesDone": codes.count(DONE), "NodesPre": codes.count(PRERUN),
            "NodesQueued": codes.count(SUBMITTED), "NodesPost": codes.count(POSTRUN),
            "NodesReady": codes.count(READY), "NodesUnready": codes.count(NOT_READY),
            "NodesFutile": codes.count(FUTILE), "NodesFailed": codes.count(ERROR),
            "JobProcsHeld": 0, "JobProcsIdle": 0}
    ads = [classad2.ClassAd(head)]
    for name, code, details, retries in nodes:
        ads.append(classad2.ClassAd({"Type": "NodeStatus", "Node": name, "NodeStatus": code,
                                     "StatusDetails": details or "", "RetryCount": retries,
                                     "JobProcsQueued": 1 if code == SUBMITTED else 0, "JobProcsHeld": 0}))
    ads.append(classad2.ClassAd({"Type": "StatusEnd", "EndTime": now,
                                 "NextUpdate": int(next_update or now)}))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(str(ad) for ad in ads))
    os.replace(tmp, path)   # readers never see half a file


# -- job event log ------------------------------------------------------------------------
def node_events(log_path: Path) -> dict[str, dict]:
    """From a DAG's node job event log: per node, its last job's state, hold reason and submits."""
    out: dict[str, dict] = {}
    if not Path(log_path).exists():
        return out
    by_cluster: dict[int, str] = {}
    jel = htcondor2.JobEventLog(str(log_path))
    try:
        for ev in jel.events(stop_after=0):
            if ev.type == _ET.SUBMIT:
                notes = str(ev.get("LogNotes") or "")
                if notes.startswith("DAG Node:"):
                    node = notes.split(":", 1)[1].strip()
                    by_cluster[ev.cluster] = node
                    info = out.setdefault(node, {"submits": 0})
                    info.update(submits=info["submits"] + 1, state="idle", hold_reason=None)
                continue
            node = by_cluster.get(ev.cluster)
            if node is None:
                continue
            info = out[node]
            if ev.type == _ET.EXECUTE:
                info["state"] = "running"
            elif ev.type == _ET.JOB_HELD:
                info.update(state="held", hold_reason=str(ev.get("HoldReason") or "held"))
            elif ev.type == _ET.JOB_RELEASED:
                info.update(state="idle", hold_reason=None)
            elif ev.type == _ET.JOB_EVICTED:
                info["state"] = "idle"
            elif ev.type == _ET.JOB_TERMINATED:
                rv = ev.get("ReturnValue")
                info.update(state="done" if rv == 0 else "failed", return_value=rv)
            elif ev.type == _ET.JOB_ABORTED:
                info.update(state="failed", hold_reason=None, message="removed")
    finally:
        jel.close()
    return out


# -- putting it together ------------------------------------------------------------------
def read_metrics(dag_file: Path) -> dict | None:
    """What the ended DAG run wrote to ``<dag>.metrics`` (None while it runs or before it starts)."""
    path = Path(str(dag_file) + ".metrics")
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def collect(dag_file: Path, jobs: Iterable[Mapping] | None = None) -> RunState:
    """The state of every node of the DAG in ``dag_file``; ``jobs`` are the schedd's node job ads
    (with DAGNodeName, JobStatus, HoldReason) when the caller could reach the schedd."""
    spec = dagmod.read(dag_file)
    dag_ad, ads = read_status_file(spec.status_file or spec.dir / dagmod.STATUS_FILE)
    events = node_events(Path(str(spec.path) + ".nodes.log"))
    queue = {str(j.get("DAGNodeName")): j for j in (jobs or []) if j.get("DAGNodeName")}
    done_before = dagmod.rescued(spec.path)
    states = []
    for name in spec.order():
        node = spec.nodes[name]
        st = NodeState(name, task=node.layer, partition=node.vars.get("partition") or None)
        ad = ads.get(name)
        if ad is not None:
            _from_status_ad(st, ad)
        elif name in done_before or node.done:
            st.status = "done"
        _overlay(st, events.get(name), queue.get(name))
        states.append(st)
    metrics = read_metrics(spec.path)
    counts: dict[str, int] = {}
    for st in states:
        counts[st.status] = counts.get(st.status, 0) + 1
    return RunState(states, exit_code=None if metrics is None else int(metrics.get("exitcode", 1)),
                    updated=dag_ad.get("Timestamp"), counts=counts)


def _from_status_ad(st: NodeState, ad: Mapping) -> None:
    code = int(ad.get("NodeStatus", NOT_READY))
    st.retries = int(ad.get("RetryCount", 0) or 0)
    details = str(ad.get("StatusDetails") or "") or None
    if code == DONE:
        st.status = "done"
    elif code == ERROR:
        st.status, st.message = "failed", details
    elif code == FUTILE:
        st.status, st.message = "idle", "will not run: an ancestor failed"
    elif code in (PRERUN, SUBMITTED, POSTRUN):
        st.status = "held" if int(ad.get("JobProcsHeld", 0) or 0) else "running"
    else:
        st.status = "retrying" if st.retries else "idle"
        st.message = details if st.retries else None


def _overlay(st: NodeState, event: Mapping | None, job: Mapping | None) -> None:
    """A queued node is idle, running or held: the schedd knows best (and sooner than the node
    status file, which DAGMan rewrites every few seconds), else the job event log."""
    if job is not None and st.status not in ("done", "failed"):
        st.status = _JOB_STATUS.get(int(job.get("JobStatus", 2)), "running")
        st.message = str(job.get("HoldReason") or "held") if st.status == "held" else None
    elif st.status in ("running", "held") and event is not None and event.get("state") in ("idle", "running", "held"):
        st.status = event["state"]
        if st.status == "held":
            st.message = event.get("hold_reason")
