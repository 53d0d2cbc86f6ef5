"""Schema version 6: `stage_leases`, which driver runs a study's stage of a kind right now.

A driver inserts its row (driver id, host, pid) before it starts or resumes a stage, renews
`heartbeat_at` every few seconds while the stage runs and deletes the row when it stops; a
second driver finds the row and stops instead of running the same trials again. One row per
(study, kind), since a study resumes its unfinished stage of a kind. Existing databases get
the empty table: no driver holds a lease while the database is upgraded. No row changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_leases",
        sa.Column("study", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(10), primary_key=True),
        sa.Column("driver_id", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )
    meta = sa.table("hpsearch_meta", sa.column("key"), sa.column("value"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="6"))


def downgrade() -> None:
    raise NotImplementedError("hpsearch migrates forward only; restore the .bak copy instead")
