"""Plain, frozen records the store returns: no ORM object ever leaves a transaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

STAGES = ("staging", "production", "archived")
RUN_STATES = ("created", "submitted", "running", "done", "failed", "cancelled")
NODE_STATES = ("idle", "running", "done", "failed", "held", "retrying")
PUSH_STATES = ("pending", "pushed", "failed")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Record:
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Site(Record):
    id: int
    name: str
    cache_size: int
    push_uri: str | None
    region: str | None
    created: datetime


@dataclass(frozen=True)
class RunNode(Record):
    node: str
    task: str | None
    status: str
    retries: int
    message: str | None
    updated: datetime


@dataclass(frozen=True)
class Run(Record):
    id: int
    workflow: str
    status: str
    executor: str | None
    dag_dir: str | None
    cluster_id: int | None
    params: dict
    message: str | None
    created: datetime
    started: datetime | None
    finished: datetime | None


@dataclass(frozen=True)
class Dataset(Record):
    id: int
    name: str
    kind: str
    uri: str
    format: str | None
    checksum: str | None
    n_rows: int | None
    n_bytes: int | None
    meta: dict
    run_id: int | None
    created: datetime
    updated: datetime
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Quarantine(Record):
    id: int
    source: str
    reason: str
    partial: bool
    n_bytes: int | None
    records_read: int
    records_lost: int | None
    run_id: int | None
    created: datetime


@dataclass(frozen=True)
class Artifact(Record):
    kind: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Model(Record):
    id: int
    name: str
    version: int
    framework: str
    stage: str
    stage_reason: str | None
    input_features: list
    metrics: dict
    params: dict
    description: str | None
    run_id: int | None
    created: datetime
    artifacts: tuple[Artifact, ...] = ()
    datasets: tuple[tuple[str, str], ...] = field(default=())  # (role, dataset name)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Placement(Record):
    id: int
    site: str
    model: str | None          # "name:version"
    uri: str
    checksum: str | None
    n_files: int
    n_bytes: int
    push_status: str
    push_message: str | None
    pushed: datetime | None
    run_id: int | None
    created: datetime
