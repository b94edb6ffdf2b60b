"""SQLite: find a trace's spans through the natural-id index, index only other traced rows

A span's natural id is its trace id, ':' and its span id, so the unique natural-id index already
orders a trace's spans together. Indexing their trace id as well cost every span insert a second
random b-tree entry, the largest write cost of span ingest after the natural id itself. The
trace index keeps the rows whose natural id does not begin with their trace id (log records and
events with trace context). PostgreSQL is unchanged: its text order follows the collation.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NAME = "ix_observations_trace_id"
NOT_OWN_TRACE_PREFIX = "substr(natural_id, 1, length(trace_id) + 1) <> trace_id || ':'"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index(NAME, table_name="observations")
    where = sa.text(f"trace_id IS NOT NULL AND {NOT_OWN_TRACE_PREFIX}")
    op.create_index(NAME, "observations", ["trace_id"], sqlite_where=where)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index(NAME, table_name="observations")
    op.create_index(NAME, "observations", ["trace_id"], sqlite_where=sa.text("trace_id IS NOT NULL"))
