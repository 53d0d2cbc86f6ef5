"""Schema version 3: an index that ranks a stage's trials, `(stage_id, status, best_value)`.

`hpsearch show`, the dashboard and `trials --top` ask for a stage's best completed trials
(`WHERE stage_id = ? AND status = 'completed' ORDER BY best_value`) and count its trials by
status: with this index both read only what they return, however many trials the stage has.
No row changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trials_stage_status_best", "trials", ["stage_id", "status", "best_value"])
    meta = sa.table("hpsearch_meta", sa.column("key"), sa.column("value"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="3"))


def downgrade() -> None:
    raise NotImplementedError("hpsearch migrates forward only; restore the .bak copy instead")
