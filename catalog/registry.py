"""Model registry and placement lists: the part of the store the ML steps and sites use."""

from __future__ import annotations

from typing import Iterable, Mapping

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from smartcache.catalog import records as R
from smartcache.catalog.base import Conflict, check_name, one_dataset, one_site, sha256
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.catalog.models import (ArtifactRow, DatasetRow, ModelDatasetRow, ModelRow, PlacementRow,
                                       SiteRow, utcnow)


class RegistryMixin:
    """Models (with their artifact bytes) and placement lists."""

    def register_model(self, name: str, framework: str, artifacts: Mapping[str, bytes], *,
                       input_features: Iterable[str] = (), metrics: Mapping | None = None,
                       params: Mapping | None = None, datasets: Iterable[tuple[str, str]] = (),
                       description: str | None = None, run_id: int | None = None,
                       stage: str = "staging", stage_reason: str | None = None) -> R.Model:
        """Store a new version of model ``name`` (versions count 1, 2, …).

        ``datasets`` is lineage as ``(role, dataset name)`` pairs, e.g. ``("train", "features/…")``.
        """
        check_name(name, "model name")
        if stage not in R.STAGES:
            raise Invalid(f"stage must be one of {R.STAGES}")
        if not artifacts:
            raise Invalid("a model needs at least one artifact")
        links = list(dict.fromkeys((str(role), str(ds)) for role, ds in datasets))

        def fn(s: Session) -> R.Model:
            if s.bind.dialect.name == "postgresql":
                # Writers of one name take turns to pick its next version (held to the end of this
                # transaction): racing for it under load could lose every retry. SQLite's BEGIN
                # IMMEDIATE already serializes writers.
                s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"smartcache.model:{name}"})
            version = (s.scalar(select(func.max(ModelRow.version)).where(ModelRow.name == name)) or 0) + 1
            row = ModelRow(name=name, version=version, framework=framework, stage=stage,
                           stage_reason=stage_reason, input_features=list(input_features),
                           metrics=dict(metrics or {}), params=dict(params or {}),
                           description=description, run_id=run_id, created=utcnow())
            row.artifacts = [ArtifactRow(kind=k, sha256=sha256(v), size=len(v), content=v)
                             for k, v in artifacts.items()]
            s.add(row)
            try:
                s.flush()
            except IntegrityError as e:  # another writer took this version number: retry
                raise Conflict(str(e)) from e
            for role, ds in links:
                s.add(ModelDatasetRow(model_id=row.id, dataset_id=one_dataset(s, ds).id, role=role))
            if stage == "production":
                _archive_others(s, name, version)
            s.flush()
            return _model(s, row)
        return self._tx(fn)

    def get_model(self, name: str, version: int | None = None, stage: str | None = None) -> R.Model:
        """A given version; else the newest in ``stage``; else production if any, else the newest."""
        return self._tx(lambda s: _model(s, _find_model(s, name, version, stage)))

    def list_models(self, name: str | None = None) -> list[R.Model]:
        q = select(ModelRow).options(selectinload(ModelRow.artifacts)).order_by(ModelRow.name,
                                                                                 ModelRow.version)
        if name:
            q = q.where(ModelRow.name == name)
        return self._tx(lambda s: [_model(s, r) for r in s.scalars(q)])

    def production_models(self) -> list[tuple[str, int, dict]]:
        """``(name, version, params)`` of every production version, newest first (no artifact is read)."""
        q = (select(ModelRow.name, ModelRow.version, ModelRow.params).where(ModelRow.stage == "production")
             .order_by(ModelRow.created.desc(), ModelRow.id.desc()))
        return self._tx(lambda s: [(n, int(v), dict(p or {})) for n, v, p in s.execute(q)])

    def model_artifact(self, name: str, version: int, kind: str) -> bytes:
        """The artifact's bytes, verified against the recorded checksum."""
        def fn(s: Session) -> bytes:
            row = _find_model(s, name, version, None)
            art = s.scalar(select(ArtifactRow).where(ArtifactRow.model_id == row.id, ArtifactRow.kind == kind))
            if art is None:
                raise NotFound(f"model {name}:{version} has no {kind!r} artifact")
            data = bytes(art.content)
            if sha256(data) != art.sha256:
                raise Invalid(f"artifact {kind} of {name}:{version} is corrupt (checksum mismatch)")
            return data
        return self._tx(fn)

    def set_model_stage(self, name: str, version: int, stage: str, reason: str | None = None) -> R.Model:
        """Move a version to ``stage``; promoting to production archives the previous production one."""
        if stage not in R.STAGES:
            raise Invalid(f"stage must be one of {R.STAGES}")

        def fn(s: Session) -> R.Model:
            row = _find_model(s, name, version, None)
            row.stage, row.stage_reason = stage, reason
            if stage == "production":
                _archive_others(s, name, version)
            s.flush()
            return _model(s, row)
        return self._tx(fn)

    def delete_model(self, name: str, version: int | None = None) -> int:
        """Delete one version, or every version when ``version`` is None; returns how many."""
        def fn(s: Session) -> int:
            q = select(ModelRow).where(ModelRow.name == name)
            if version is not None:
                q = q.where(ModelRow.version == version)
            rows = list(s.scalars(q))
            if not rows:
                raise NotFound(f"no model {name}" + (f":{version}" if version is not None else ""))
            for row in rows:
                s.delete(row)
            return len(rows)
        return self._tx(fn)

    # -- placements -------------------------------------------------------------------------
    def add_placement(self, site: str, uri: str, n_files: int, n_bytes: int, *,
                      model: tuple[str, int] | None = None, checksum: str | None = None,
                      run_id: int | None = None) -> R.Placement:
        def fn(s: Session) -> R.Placement:
            site_row = one_site(s, site)
            model_id = _find_model(s, model[0], model[1], None).id if model else None
            row = PlacementRow(site_id=site_row.id, model_id=model_id, uri=uri, checksum=checksum,
                               n_files=n_files, n_bytes=n_bytes, run_id=run_id, push_status="pending",
                               created=utcnow())
            s.add(row)
            s.flush()
            return _placement(s, row)
        return self._tx(fn)

    def set_push_status(self, placement_id: int, status: str, message: str | None = None) -> R.Placement:
        if status not in R.PUSH_STATES:
            raise Invalid(f"push status must be one of {R.PUSH_STATES}")

        def fn(s: Session) -> R.Placement:
            row = s.get(PlacementRow, placement_id)
            if row is None:
                raise NotFound(f"no placement {placement_id}")
            row.push_status, row.push_message = status, message
            if status == "pushed":
                row.pushed = utcnow()
            return _placement(s, row)
        return self._tx(fn)

    def list_placements(self, site: str | None = None) -> list[R.Placement]:
        def fn(s: Session) -> list[R.Placement]:
            q = select(PlacementRow).order_by(PlacementRow.id.desc())
            if site:
                q = q.where(PlacementRow.site_id == one_site(s, site).id)
            return [_placement(s, r) for r in s.scalars(q)]
        return self._tx(fn)

    def latest_placement(self, site: str) -> R.Placement:
        found = self.list_placements(site)
        if not found:
            raise NotFound(f"no placement list for site {site}")
        return found[0]


def _find_model(s: Session, name: str, version: int | None, stage: str | None) -> ModelRow:
    q = select(ModelRow).where(ModelRow.name == name)
    if version is not None:
        row = s.scalar(q.where(ModelRow.version == version))
    elif stage is not None:
        row = s.scalar(q.where(ModelRow.stage == stage).order_by(ModelRow.version.desc()).limit(1))
    else:
        row = (s.scalar(q.where(ModelRow.stage == "production").order_by(ModelRow.version.desc()).limit(1))
               or s.scalar(q.order_by(ModelRow.version.desc()).limit(1)))
    if row is None:
        what = f"{name}:{version}" if version is not None else (f"{name} in stage {stage}" if stage else name)
        raise NotFound(f"no model {what}")
    return row


def _archive_others(s: Session, name: str, version: int) -> None:
    for other in s.scalars(select(ModelRow).where(ModelRow.name == name, ModelRow.stage == "production",
                                                  ModelRow.version != version)):
        other.stage, other.stage_reason = "archived", f"superseded by version {version}"


def _model(s: Session, r: ModelRow) -> R.Model:
    arts = tuple(R.Artifact(a.kind, a.sha256, a.size) for a in sorted(r.artifacts, key=lambda a: a.kind))
    links = s.execute(select(ModelDatasetRow.role, DatasetRow.name)
                      .join(DatasetRow, DatasetRow.id == ModelDatasetRow.dataset_id)
                      .where(ModelDatasetRow.model_id == r.id).order_by(ModelDatasetRow.role)).all()
    return R.Model(r.id, r.name, r.version, r.framework, r.stage, r.stage_reason, list(r.input_features or []),
                   dict(r.metrics or {}), dict(r.params or {}), r.description, r.run_id, r.created, arts,
                   tuple((role, ds) for role, ds in links))


def _placement(s: Session, r: PlacementRow) -> R.Placement:
    site = s.get(SiteRow, r.site_id)
    model = s.get(ModelRow, r.model_id) if r.model_id else None
    return R.Placement(r.id, site.name, f"{model.name}:{model.version}" if model else None, r.uri, r.checksum,
                       r.n_files, r.n_bytes, r.push_status, r.push_message, r.pushed, r.run_id, r.created)
