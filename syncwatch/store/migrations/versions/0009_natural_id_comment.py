"""observations.natural_id: the comment names the forms the ids take now

Access-log lines get ordered ids (line/FILE/OFFSET/CONTENT) in new databases; the column comment,
which BI tools read as the contract, says so. SQLite keeps no comments.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BEFORE = "Deduplication id: trace+span id, source+event id, or source+line hash"
AFTER = "Deduplication id: trace:span for a span, event:source:id for an event, line/file/offset/content for a log line"


def _comment(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column(
        "observations",
        "natural_id",
        existing_type=sa.String(length=255),
        existing_nullable=False,
        comment=new,
        existing_comment=old,
    )


def upgrade() -> None:
    _comment(BEFORE, AFTER)


def downgrade() -> None:
    _comment(AFTER, BEFORE)
