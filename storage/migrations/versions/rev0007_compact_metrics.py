"""Schema version 7: compact metric rows; `metrics` becomes a view with the same columns.

Versions before 7 stored every metric row in the table `metrics` with its name as text,
and SQLite kept each row twice (the table and its primary-key index): about 60 bytes a row.
Now each name is stored once in `metric_names` (`name_id`, `name`), and the values in
`metric_values` (`trial_id`, `attempt`, `epoch`, `name_id`, `value`), keyed by those four
columns; on SQLite it is a WITHOUT ROWID table, so the key is the table (about 23 bytes a row).
The view `metrics` (`trial_id`, `attempt`, `epoch`, `name`, `value`) joins the two, so every
query of `metrics` reads as before. Every row is kept: names get ids in alphabetical order and
the rows are copied in key order in the database (one INSERT ... SELECT), then the old table is
dropped. On SQLite the file does not shrink by itself: `VACUUM` returns the freed pages.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

_NAMES = "INSERT INTO metric_names (name) SELECT DISTINCT name FROM metrics ORDER BY name"
_VALUES = """
INSERT INTO metric_values (trial_id, attempt, epoch, name_id, value)
SELECT m.trial_id, m.attempt, m.epoch, n.name_id, m.value
FROM metrics m JOIN metric_names n ON n.name = m.name
ORDER BY m.trial_id, m.attempt, m.epoch, n.name_id
"""
METRICS_VIEW = """
CREATE VIEW metrics AS
SELECT v.trial_id AS trial_id, v.attempt AS attempt, v.epoch AS epoch, n.name AS name,
       v.value AS value
FROM metric_values v
JOIN metric_names n ON n.name_id = v.name_id
"""


def upgrade() -> None:
    op.create_table(
        "metric_names",
        sa.Column("name_id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "metric_values",
        sa.Column(
            "trial_id",
            sa.Integer,
            sa.ForeignKey("trials.trial_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("name_id", sa.Integer, sa.ForeignKey("metric_names.name_id"), primary_key=True),
        sa.Column("value", sa.Float),
        sqlite_with_rowid=False,
    )
    op.execute(_NAMES)
    op.execute(_VALUES)
    op.drop_table("metrics")
    op.execute(METRICS_VIEW)
    meta = sa.table("hpsearch_meta", sa.column("key"), sa.column("value"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="7"))


def downgrade() -> None:
    raise NotImplementedError("hpsearch migrates forward only; restore the .bak copy instead")
