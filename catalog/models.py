"""SQLAlchemy ORM models of the catalog. ORM rows never leave :mod:`smartcache.catalog.store`.

Schema changes go through an Alembic revision in ``migrations/versions``; a test checks
that the migrated schema equals these models.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary,
                        MetaData, String, Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


TS = DateTime(timezone=True)


class SiteRow(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    cache_size: Mapped[int] = mapped_column(BigInteger)
    push_uri: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(TS, default=utcnow)


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="created")
    executor: Mapped[str | None] = mapped_column(String(16))
    dag_dir: Mapped[str | None] = mapped_column(Text)
    cluster_id: Mapped[int | None] = mapped_column(BigInteger)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(TS, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(TS)
    finished: Mapped[datetime | None] = mapped_column(TS)
    nodes: Mapped[list["RunNodeRow"]] = relationship(back_populates="run", cascade="all, delete-orphan")


class RunNodeRow(Base):
    """Per-node state of a run, as last seen by the executor or the monitor."""
    __tablename__ = "run_nodes"
    __table_args__ = (UniqueConstraint("run_id", "node"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    node: Mapped[str] = mapped_column(String(128))
    task: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="idle")
    retries: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    updated: Mapped[datetime] = mapped_column(TS, default=utcnow, onupdate=utcnow)
    run: Mapped[RunRow] = relationship(back_populates="nodes")


class DatasetRow(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    uri: Mapped[str] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(32))
    checksum: Mapped[str | None] = mapped_column(String(80))
    n_rows: Mapped[int | None] = mapped_column(BigInteger)
    n_bytes: Mapped[int | None] = mapped_column(BigInteger)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    created: Mapped[datetime] = mapped_column(TS, default=utcnow)
    updated: Mapped[datetime] = mapped_column(TS, default=utcnow, onupdate=utcnow)


class DatasetParentRow(Base):
    """Lineage: ``child`` was made from ``parent``."""
    __tablename__ = "dataset_parents"
    child_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)


class QuarantineRow(Base):
    """A raw input that could not be read (wholly or partly); the file itself is left untouched."""
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text, unique=True)
    reason: Mapped[str] = mapped_column(Text)
    partial: Mapped[bool] = mapped_column(default=False)
    n_bytes: Mapped[int | None] = mapped_column(BigInteger)
    records_read: Mapped[int] = mapped_column(BigInteger, default=0)
    records_lost: Mapped[int | None] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    created: Mapped[datetime] = mapped_column(TS, default=utcnow)


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    framework: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(16), default="staging")
    stage_reason: Mapped[str | None] = mapped_column(Text)
    input_features: Mapped[list] = mapped_column(JSON, default=list)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    description: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created: Mapped[datetime] = mapped_column(TS, default=utcnow)
    artifacts: Mapped[list["ArtifactRow"]] = relationship(cascade="all, delete-orphan")


class ArtifactRow(Base):
    """Model bytes live in the catalog itself, so remote workers and servers share only its URL."""
    __tablename__ = "model_artifacts"
    __table_args__ = (UniqueConstraint("model_id", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class ModelDatasetRow(Base):
    """Lineage: a model was trained (or evaluated) on a dataset."""
    __tablename__ = "model_datasets"
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)


class PlacementRow(Base):
    __tablename__ = "placements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    uri: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(80))
    n_files: Mapped[int] = mapped_column(BigInteger)
    n_bytes: Mapped[int] = mapped_column(BigInteger)
    push_status: Mapped[str] = mapped_column(String(16), default="pending")
    push_message: Mapped[str | None] = mapped_column(Text)
    pushed: Mapped[datetime | None] = mapped_column(TS)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created: Mapped[datetime] = mapped_column(TS, default=utcnow)
