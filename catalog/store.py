"""The catalog store: every public call is one transaction and returns plain records."""

from __future__ import annotations

from typing import Iterable, Mapping

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from smartcache.catalog import records as R
from smartcache.catalog.base import StoreBase, check_name, one_dataset, one_run, one_site
from smartcache.catalog.errors import AlreadyExists, Invalid, NotFound
from smartcache.catalog.models import (DatasetParentRow, DatasetRow, QuarantineRow, RunNodeRow, RunRow,
                                       SiteRow, utcnow)
from smartcache.catalog.registry import RegistryMixin


class Store(RegistryMixin, StoreBase):
    """Access to the catalog. Create one per process; it is safe to share between threads."""

    # -- sites ------------------------------------------------------------------------------
    def add_site(self, name: str, cache_size: int, push_uri: str | None = None,
                 region: str | None = None) -> R.Site:
        check_name(name, "site name")
        if cache_size <= 0:
            raise Invalid(f"cache size of {name} must be positive")

        def fn(s: Session) -> R.Site:
            if s.scalar(select(SiteRow).where(SiteRow.name == name)) is not None:
                raise AlreadyExists(f"site {name} already exists")
            row = SiteRow(name=name, cache_size=cache_size, push_uri=push_uri, region=region)
            s.add(row)
            s.flush()
            return _site(row)
        return self._tx(fn)

    def update_site(self, name: str, *, cache_size: int | None = None, push_uri: str | None = None,
                    region: str | None = None) -> R.Site:
        def fn(s: Session) -> R.Site:
            row = one_site(s, name)
            if cache_size is not None:
                if cache_size <= 0:
                    raise Invalid(f"cache size of {name} must be positive")
                row.cache_size = cache_size
            if push_uri is not None:
                row.push_uri = push_uri
            if region is not None:
                row.region = region
            return _site(row)
        return self._tx(fn)

    def get_site(self, name: str) -> R.Site:
        return self._tx(lambda s: _site(one_site(s, name)))

    def list_sites(self) -> list[R.Site]:
        return self._tx(lambda s: [_site(r) for r in s.scalars(select(SiteRow).order_by(SiteRow.name))])

    def remove_site(self, name: str) -> None:
        self._tx(lambda s: s.delete(one_site(s, name)))

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, workflow: str, params: Mapping | None = None, executor: str | None = None,
                   dag_dir: str | None = None) -> R.Run:
        def fn(s: Session) -> R.Run:
            row = RunRow(workflow=workflow, params=dict(params or {}), executor=executor,
                         dag_dir=dag_dir, status="created")
            s.add(row)
            s.flush()
            return _run(row)
        return self._tx(fn)

    def get_run(self, run_id: int) -> R.Run:
        return self._tx(lambda s: _run(one_run(s, run_id)))

    def list_runs(self, workflow: str | None = None, limit: int | None = None) -> list[R.Run]:
        q = select(RunRow).order_by(RunRow.id.desc())
        if workflow:
            q = q.where(RunRow.workflow == workflow)
        if limit:
            q = q.limit(limit)
        return self._tx(lambda s: [_run(r) for r in s.scalars(q)])

    def update_run(self, run_id: int, **changes) -> R.Run:
        allowed = {"status", "executor", "dag_dir", "cluster_id", "message", "started", "finished", "params"}
        unknown = set(changes) - allowed
        if unknown:
            raise Invalid(f"cannot update run fields {sorted(unknown)}")
        if "status" in changes and changes["status"] not in R.RUN_STATES:
            raise Invalid(f"run status must be one of {R.RUN_STATES}")

        def fn(s: Session) -> R.Run:
            row = one_run(s, run_id)
            for key, value in changes.items():
                setattr(row, key, value)
            return _run(row)
        return self._tx(fn)

    def set_nodes(self, run_id: int, nodes: Iterable[Mapping]) -> None:
        """Upsert per-node state: each mapping has ``node`` and any of task/status/retries/message."""
        nodes = [dict(n) for n in nodes]
        for n in nodes:
            if n.get("status", "idle") not in R.NODE_STATES:
                raise Invalid(f"node status must be one of {R.NODE_STATES}, not {n.get('status')!r}")

        def fn(s: Session) -> None:
            one_run(s, run_id)
            existing = {r.node: r for r in s.scalars(select(RunNodeRow).where(RunNodeRow.run_id == run_id))}
            for n in nodes:
                row = existing.get(n["node"])
                if row is None:
                    row = RunNodeRow(run_id=run_id, node=n["node"], status="idle", retries=0)
                    s.add(row)
                for key in ("task", "status", "retries", "message"):
                    if key in n:
                        setattr(row, key, n[key])
                row.updated = utcnow()
        self._tx(fn)

    def run_nodes(self, run_id: int) -> list[R.RunNode]:
        def fn(s: Session) -> list[R.RunNode]:
            one_run(s, run_id)
            rows = s.scalars(select(RunNodeRow).where(RunNodeRow.run_id == run_id).order_by(RunNodeRow.id))
            return [R.RunNode(r.node, r.task, r.status, r.retries, r.message, r.updated) for r in rows]
        return self._tx(fn)

    # -- datasets ---------------------------------------------------------------------------
    def register_dataset(self, name: str, kind: str, uri: str, *, format: str | None = None,
                         checksum: str | None = None, n_rows: int | None = None,
                         n_bytes: int | None = None, meta: Mapping | None = None,
                         parents: Iterable[str] = (), run_id: int | None = None) -> R.Dataset:
        """Create or replace the dataset called ``name`` (reruns are idempotent) and its lineage."""
        if not name or len(name) > 255:
            raise Invalid(f"invalid dataset name {name!r}")
        parents = list(dict.fromkeys(parents))
        values = dict(name=name, kind=kind, uri=uri, format=format, checksum=checksum, n_rows=n_rows,
                      n_bytes=n_bytes, meta=dict(meta or {}), run_id=run_id)

        def fn(s: Session) -> R.Dataset:
            now = utcnow()
            stmt = self._insert(s)(DatasetRow).values(**values, created=now, updated=now)
            stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={**values, "updated": now})
            dataset_id = s.execute(stmt.returning(DatasetRow.id)).scalar_one()
            parent_ids = dict(s.execute(select(DatasetRow.name, DatasetRow.id)
                                        .where(DatasetRow.name.in_(parents))).all()) if parents else {}
            missing = [p for p in parents if p not in parent_ids]
            if missing:
                raise NotFound(f"parent dataset(s) not in the catalog: {', '.join(missing)}")
            s.execute(delete(DatasetParentRow).where(DatasetParentRow.child_id == dataset_id))
            s.add_all(DatasetParentRow(child_id=dataset_id, parent_id=parent_ids[p]) for p in parents)
            s.flush()
            return _dataset(s, s.get(DatasetRow, dataset_id, populate_existing=True))
        return self._tx(fn)

    def get_dataset(self, name: str) -> R.Dataset:
        return self._tx(lambda s: _dataset(s, one_dataset(s, name)))

    def list_datasets(self, kind: str | None = None, prefix: str | None = None) -> list[R.Dataset]:
        q = select(DatasetRow).order_by(DatasetRow.name)
        if kind:
            q = q.where(DatasetRow.kind == kind)
        if prefix:
            q = q.where(DatasetRow.name.startswith(prefix, autoescape=True))
        return self._tx(lambda s: [_dataset(s, r) for r in s.scalars(q)])

    def dataset_children(self, name: str) -> list[R.Dataset]:
        def fn(s: Session) -> list[R.Dataset]:
            parent = one_dataset(s, name)
            q = (select(DatasetRow).join(DatasetParentRow, DatasetParentRow.child_id == DatasetRow.id)
                 .where(DatasetParentRow.parent_id == parent.id).order_by(DatasetRow.name))
            return [_dataset(s, r) for r in s.scalars(q)]
        return self._tx(fn)

    def delete_dataset(self, name: str) -> None:
        self._tx(lambda s: s.delete(one_dataset(s, name)))

    # -- quarantine -------------------------------------------------------------------------
    def quarantine(self, source: str, reason: str, *, partial: bool = False, n_bytes: int | None = None,
                   records_read: int = 0, records_lost: int | None = None,
                   run_id: int | None = None) -> R.Quarantine:
        """Record (or re-record, on rerun) that ``source`` could not be read in full."""
        values = dict(source=source, reason=reason, partial=partial, n_bytes=n_bytes,
                      records_read=records_read, records_lost=records_lost, run_id=run_id)

        def fn(s: Session) -> R.Quarantine:
            stmt = self._insert(s)(QuarantineRow).values(**values, created=utcnow())
            stmt = stmt.on_conflict_do_update(index_elements=["source"], set_=values)
            qid = s.execute(stmt.returning(QuarantineRow.id)).scalar_one()
            return _quarantine(s.get(QuarantineRow, qid, populate_existing=True))
        return self._tx(fn)

    def release(self, source: str) -> bool:
        """Forget a quarantine entry (the source was repaired and read in full); True if one existed."""
        return self._tx(lambda s: s.execute(delete(QuarantineRow).where(QuarantineRow.source == source))
                        .rowcount > 0)

    def list_quarantine(self, run_id: int | None = None) -> list[R.Quarantine]:
        q = select(QuarantineRow).order_by(QuarantineRow.source)
        if run_id is not None:
            q = q.where(QuarantineRow.run_id == run_id)
        return self._tx(lambda s: [_quarantine(r) for r in s.scalars(q)])


# -- row -> record ------------------------------------------------------------------------
def _site(r: SiteRow) -> R.Site:
    return R.Site(r.id, r.name, r.cache_size, r.push_uri, r.region, r.created)


def _run(r: RunRow) -> R.Run:
    return R.Run(r.id, r.workflow, r.status, r.executor, r.dag_dir, r.cluster_id, dict(r.params or {}),
                 r.message, r.created, r.started, r.finished)


def _dataset(s: Session, r: DatasetRow) -> R.Dataset:
    parents = s.scalars(select(DatasetRow.name).join(DatasetParentRow, DatasetParentRow.parent_id == DatasetRow.id)
                        .where(DatasetParentRow.child_id == r.id).order_by(DatasetRow.name)).all()
    return R.Dataset(r.id, r.name, r.kind, r.uri, r.format, r.checksum, r.n_rows, r.n_bytes,
                     dict(r.meta or {}), r.run_id, r.created, r.updated, tuple(parents))


def _quarantine(r: QuarantineRow) -> R.Quarantine:
    return R.Quarantine(r.id, r.source, r.reason, r.partial, r.n_bytes, r.records_read, r.records_lost,
                        r.run_id, r.created)
