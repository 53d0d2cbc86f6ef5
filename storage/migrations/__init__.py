"""Alembic revisions of the hpsearch schema, run in code by `storage._migrate` (no env.py).

See docs/migrations.md for how to add one.
"""
