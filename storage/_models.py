"""SQLAlchemy models: the tables users query with SQL (a public interface, keep stable).

The models mirror the newest Alembic revision in `storage/migrations/versions/`: the migrations
create and change the tables, the models only read and write them (a test compares the two).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage._schema import SCHEMA_VERSION as SCHEMA_VERSION  # the head the models mirror


class Base(DeclarativeBase):
    pass


def table(model: type[Base]) -> Table:
    """The Core table of a model, for fast executemany inserts and updates."""
    return Base.metadata.tables[model.__tablename__]


class Meta(Base):
    __tablename__ = "hpsearch_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Study(Base):
    __tablename__ = "studies"
    study_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    trainable: Mapped[str] = mapped_column(String(300))
    metric: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Stage(Base):
    __tablename__ = "stages"
    stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.study_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))  # 'coarse' | 'fine' | 'ensemble'
    parent_stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.stage_id"))
    status: Mapped[str] = mapped_column(String(10))  # 'running' | 'finished'
    seed: Mapped[int] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer)
    n_trials: Mapped[int] = mapped_column(Integer)  # with an epoch budget: inserted so far
    ranges: Mapped[dict[str, Any]] = mapped_column(
        JSON(none_as_null=True)
    )  # the exact ranges this stage samples from
    fixed: Mapped[dict[str, Any]] = mapped_column(JSON(none_as_null=True))
    proposal: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True)
    )  # ranges proposed for the next stage
    created_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # epochs the stage may spend (ASHA, `budget = "epochs"`); NULL: it runs n_trials trials
    epoch_budget: Mapped[int | None] = mapped_column(Integer)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("stage_id", "number"),
        Index("ix_trials_stage_status_best", "stage_id", "status", "best_value"),
    )
    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(
        ForeignKey("stages.stage_id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)  # 0-based position within its stage
    status: Mapped[str] = mapped_column(String(10), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    node_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    best_value: Mapped[float | None] = mapped_column(Float)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    epochs_run: Mapped[int] = mapped_column(Integer, default=0)


class Param(Base):
    __tablename__ = "params"
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.trial_id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # numeric params (and bools as 0/1)
    text: Mapped[str | None] = mapped_column(Text)  # choice params that are strings


class MetricName(Base):
    """Each metric name once; `metric_values` refers to it by its small integer id."""

    __tablename__ = "metric_names"
    name_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class MetricValue(Base):
    """One value per trial, attempt, epoch and metric: users read it through the view `metrics`
    (trial_id, attempt, epoch, name, value). On SQLite a WITHOUT ROWID table: the primary key
    is the table, each row stored once (~23 bytes)."""

    __tablename__ = "metric_values"
    __table_args__ = {"sqlite_with_rowid": False}
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.trial_id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    name_id: Mapped[int] = mapped_column(ForeignKey("metric_names.name_id"), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # NaN is stored as NULL


class Attempt(Base):
    """One attempt of a trial: where it ran and how it ended (`trials` keeps only the last)."""

    __tablename__ = "attempts"
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.trial_id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str | None] = mapped_column(String(10))  # AttemptOutcome; NULL: no end seen
    reason: Mapped[str | None] = mapped_column(Text)  # the error, or why the worker was lost


class Flag(Base):
    __tablename__ = "flags"
    flag_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(
        ForeignKey("stages.stage_id", ondelete="CASCADE"), index=True
    )
    param: Mapped[str] = mapped_column(String(200))
    side: Mapped[str] = mapped_column(String(10))  # 'low' | 'high' | 'scale'
    value: Mapped[float | None] = mapped_column(Float)
    position: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)


class Checkpoint(Base):
    """One file of a trial's checkpoint at one epoch, kept in the artifact store."""

    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_trial_epoch", "trial_id", "epoch"),)
    checkpoint_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.trial_id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(Text)  # absolute: a local path or a URL
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class Ensemble(Base):
    """A model ensemble built from a study's checkpoints, and how it scored on one split."""

    __tablename__ = "ensembles"
    ensemble_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.study_id", ondelete="CASCADE"), index=True
    )
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.stage_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(12))  # 'top' | 'seeds' | 'checkpoints'
    size: Mapped[int] = mapped_column(Integer)  # number of members
    split: Mapped[str] = mapped_column(String(10))  # 'val' | 'test'
    accuracy: Mapped[float] = mapped_column(Float)  # of the averaged probabilities
    best_member_accuracy: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class EnsembleMember(Base):
    """One member of an ensemble: a trial's checkpoint at one epoch, and its own accuracy."""

    __tablename__ = "ensemble_members"
    ensemble_id: Mapped[int] = mapped_column(
        ForeignKey("ensembles.ensemble_id", ondelete="CASCADE"), primary_key=True
    )
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.trial_id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    accuracy: Mapped[float] = mapped_column(Float)


class StageLease(Base):
    """The driver running a study's stage of a kind (one at a time); see `hpsearch.lease`."""

    __tablename__ = "stage_leases"
    study: Mapped[str] = mapped_column(String(200), primary_key=True)  # the study's name
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # 'coarse' | 'fine'
    driver_id: Mapped[str] = mapped_column(String(32))  # one run of a driver
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)  # renewed every few seconds
