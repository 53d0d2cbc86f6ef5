"""Schema version 4: `checkpoints`, one row per file of a trial's checkpoint.

A trainable that accepts `checkpoint_dir` leaves files there before yielding an epoch; the
driver writes them to the artifact store and records each here: whose (trial, attempt), which
epoch, where (`uri`, absolute: a local path or a URL), its size and sha256. The index finds a
trial's checkpoints, latest epoch last. No existing row changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("checkpoint_id", sa.Integer, primary_key=True),
        sa.Column(
            "trial_id",
            sa.Integer,
            sa.ForeignKey("trials.trial_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_checkpoints_trial_epoch", "checkpoints", ["trial_id", "epoch"])
    meta = sa.table("hpsearch_meta", sa.column("key"), sa.column("value"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="4"))


def downgrade() -> None:
    raise NotImplementedError("hpsearch migrates forward only; restore the .bak copy instead")
