"""Schema version 5: `ensembles` and `ensemble_members`, what `hpsearch ensemble` built.

An ensemble averages the class probabilities of several checkpoints (the best trials', one
configuration's with new seeds, or one trial's epochs); its row keeps the kind, the number of
members, the split it was scored on, its accuracy and its best member's. Each member's row
names the trial and epoch and its own accuracy. No existing row changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ensembles",
        sa.Column("ensemble_id", sa.Integer, primary_key=True),
        sa.Column(
            "study_id",
            sa.Integer,
            sa.ForeignKey("studies.study_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "stage_id",
            sa.Integer,
            sa.ForeignKey("stages.stage_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("split", sa.String(10), nullable=False),
        sa.Column("accuracy", sa.Float, nullable=False),
        sa.Column("best_member_accuracy", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_ensembles_study_id", "ensembles", ["study_id"])
    op.create_table(
        "ensemble_members",
        sa.Column(
            "ensemble_id",
            sa.Integer,
            sa.ForeignKey("ensembles.ensemble_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "trial_id",
            sa.Integer,
            sa.ForeignKey("trials.trial_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("accuracy", sa.Float, nullable=False),
    )
    meta = sa.table("hpsearch_meta", sa.column("key"), sa.column("value"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="5"))


def downgrade() -> None:
    raise NotImplementedError("hpsearch migrates forward only; restore the .bak copy instead")
