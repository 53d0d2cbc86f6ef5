"""Schema version 8: `stages.epoch_budget`, the epochs a stage may spend, when it has one.

A stage under ASHA with `budget = "epochs"` draws trials until `trials x epochs` epochs are
spent, so how many trials it holds is known only when it ends: `n_trials` counts the trials
inserted so far and `epoch_budget` keeps the budget a resumed run goes on spending. NULL: the
stage runs exactly `n_trials` trials (every stage before version 8). No row changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stages", sa.Column("epoch_budget", sa.Integer, nullable=True))
    meta = sa.table("hpsearch_meta", sa.column("key"), sa.column("value"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="8"))


def downgrade() -> None:
    raise NotImplementedError("hpsearch migrates forward only; restore the .bak copy instead")
