"""SQLAlchemy models: the tables users query with SQL (a public interface, keep stable)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1


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
    kind: Mapped[str] = mapped_column(String(10))  # 'coarse' | 'fine'
    parent_stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.stage_id"))
    status: Mapped[str] = mapped_column(String(10))  # 'running' | 'finished'
    seed: Mapped[int] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer)
    n_trials: Mapped[int] = mapped_column(Integer)
    ranges: Mapped[dict] = mapped_column(
        JSON(none_as_null=True)
    )  # the exact ranges this stage samples from
    fixed: Mapped[dict] = mapped_column(JSON(none_as_null=True))
    proposal: Mapped[dict | None] = mapped_column(
        JSON(none_as_null=True)
    )  # ranges proposed for the next stage
    created_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("stage_id", "number"),)
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


class Metric(Base):
    __tablename__ = "metrics"
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.trial_id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # NaN is stored as NULL


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


_PARAMS_JSON = {
    "sqlite": "json_group_object(p.name, COALESCE(p.value, p.text))",
    # to_jsonb keeps numbers numbers (value::text made them JSON strings)
    "postgresql": "json_object_agg(p.name, COALESCE(to_jsonb(p.value), to_jsonb(p.text)))",
    "mysql": "json_objectagg(p.name, COALESCE(p.value, p.text))",
}


def trial_results_view_sql(dialect: str) -> str:
    """`trial_results`: one row per trial with its study, stage, outcome and params as JSON."""
    params_json = _PARAMS_JSON.get(dialect, _PARAMS_JSON["sqlite"])
    return f"""
CREATE VIEW trial_results AS
SELECT s.name AS study, st.stage_id AS stage_id, st.kind AS stage_kind,
       t.trial_id AS trial_id, t.number AS trial, t.status AS status,
       t.best_value AS best_value, t.best_epoch AS best_epoch,
       t.epochs_run AS epochs_run, t.attempts AS attempts, t.node_id AS node_id,
       (SELECT {params_json} FROM params p WHERE p.trial_id = t.trial_id) AS params
FROM trials t
JOIN stages st ON st.stage_id = t.stage_id
JOIN studies s ON s.study_id = st.study_id
"""
