"""index observations' trace ids and re-deliveries only where they have one

Most rows have no redelivered_at, and access-log lines and many events no trace_id; indexing
their NULLs made every ingest insert pay for index entries no query reads (the lookups are
equality, IN and range conditions, which only match rows that have the value).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("trace_id", "redelivered_at")


def upgrade() -> None:
    for column in COLUMNS:
        name = f"ix_observations_{column}"
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="observations")
        op.create_index(name, "observations", [column], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for column in COLUMNS:
        name = f"ix_observations_{column}"
        op.drop_index(name, table_name="observations")
        op.create_index(name, "observations", [column])
