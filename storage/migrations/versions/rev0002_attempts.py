"""Schema version 2: `attempts`, one row per attempt of a trial (where it ran, how it ended).

`trials.attempts`, `node_id`, `started_at`, `finished_at` and `error` stay: they describe the
last attempt, as before. Backfill from version 1, which kept only the last attempt: every
attempt number 1..trials.attempts gets a row (version 1 numbered only attempts it dispatched);
the last one takes the trial's node, times, final status and error; the earlier ones (lost
workers, or a driver stopped while they ran) keep only their number: version 1 recorded
nothing else about them. Metrics rows need no change: they already carry their attempt.
On PostgreSQL the `trial_results` view is made anew: version 1's gave numeric params as JSON
strings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.migrations.versions.rev0001_v1_schema import _TRIAL_RESULTS

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

_BACKFILL = """
INSERT INTO attempts (trial_id, attempt, node_id, started_at, finished_at, outcome, reason)
WITH RECURSIVE numbers (n) AS (
    SELECT 1
    UNION ALL
    SELECT n + 1 FROM numbers WHERE n < (SELECT max(attempts) FROM trials)
)
SELECT t.trial_id, numbers.n,
       CASE WHEN numbers.n = t.attempts THEN t.node_id END,
       CASE WHEN numbers.n = t.attempts THEN t.started_at END,
       CASE WHEN numbers.n = t.attempts AND t.status IN {final} THEN t.finished_at END,
       CASE WHEN numbers.n = t.attempts AND t.status IN {final} THEN t.status END,
       CASE WHEN numbers.n = t.attempts AND t.status IN {final} THEN t.error END
FROM trials t JOIN numbers ON numbers.n <= t.attempts
"""
_FINAL = "('completed', 'failed', 'diverged')"
# Version 1's view turned numeric params into JSON strings on PostgreSQL (value::text).
_PG_PARAMS_JSON = "json_object_agg(p.name, COALESCE(to_jsonb(p.value), to_jsonb(p.text)))"


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column(
            "trial_id",
            sa.Integer,
            sa.ForeignKey("trials.trial_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("node_id", sa.String(64)),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("outcome", sa.String(10)),
        sa.Column("reason", sa.Text),
    )
    op.execute(_BACKFILL.format(final=_FINAL))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP VIEW trial_results")
        op.execute(_TRIAL_RESULTS.format(params_json=_PG_PARAMS_JSON))
    meta = sa.table("hpsearch_meta", sa.column("key"), sa.column("value"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="2"))


def downgrade() -> None:
    raise NotImplementedError("hpsearch migrates forward only; restore the .bak copy instead")
