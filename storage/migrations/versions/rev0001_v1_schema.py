"""Schema version 1: the tables, indexes and view of hpsearch 0.1, exactly as it created them.

Frozen: written out here rather than built from the live models, so that later changes to the
models never change what this revision creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

_PARAMS_JSON = {
    "sqlite": "json_group_object(p.name, COALESCE(p.value, p.text))",
    "postgresql": "json_object_agg(p.name, COALESCE(p.value::text, p.text))",
    "mysql": "json_objectagg(p.name, COALESCE(p.value, p.text))",
}

# The exact text of hpsearch 0.1 (SQLite keeps it verbatim in sqlite_master).
_TRIAL_RESULTS = """
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


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    # In the order hpsearch 0.1's create_all used, so SQLite's schema reads the same.
    meta = op.create_table(
        "hpsearch_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "studies",
        sa.Column("study_id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("trainable", sa.String(300), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "stages",
        sa.Column("stage_id", sa.Integer, primary_key=True),
        sa.Column(
            "study_id",
            sa.Integer,
            sa.ForeignKey("studies.study_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("parent_stage_id", sa.Integer, sa.ForeignKey("stages.stage_id")),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("epochs", sa.Integer, nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("ranges", _json(), nullable=False),
        sa.Column("fixed", _json(), nullable=False),
        sa.Column("proposal", _json()),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_table(
        "trials",
        sa.Column("trial_id", sa.Integer, primary_key=True),
        sa.Column(
            "stage_id",
            sa.Integer,
            sa.ForeignKey("stages.stage_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("node_id", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("best_value", sa.Float),
        sa.Column("best_epoch", sa.Integer),
        sa.Column("epochs_run", sa.Integer, nullable=False),
        sa.UniqueConstraint("stage_id", "number"),
    )
    op.create_index("ix_trials_stage_id", "trials", ["stage_id"])
    op.create_index("ix_trials_status", "trials", ["status"])
    op.create_table(
        "flags",
        sa.Column("flag_id", sa.Integer, primary_key=True),
        sa.Column(
            "stage_id",
            sa.Integer,
            sa.ForeignKey("stages.stage_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("param", sa.String(200), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("position", sa.Float),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_flags_stage_id", "flags", ["stage_id"])
    op.create_table(
        "params",
        sa.Column(
            "trial_id",
            sa.Integer,
            sa.ForeignKey("trials.trial_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", sa.Float),
        sa.Column("text", sa.Text),
    )
    op.create_table(
        "metrics",
        sa.Column(
            "trial_id",
            sa.Integer,
            sa.ForeignKey("trials.trial_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", sa.Float),
    )
    dialect = op.get_bind().dialect.name
    params_json = _PARAMS_JSON.get(dialect, _PARAMS_JSON["sqlite"])
    op.execute(_TRIAL_RESULTS.format(params_json=params_json))
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    raise NotImplementedError("hpsearch migrates forward only; restore the .bak copy instead")
