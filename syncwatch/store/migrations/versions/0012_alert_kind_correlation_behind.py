"""alerts.kind: the comment names the new kind, correlation_behind

syncwatch alerts on itself when observations wait for correlation too long; the column comment,
which BI tools read as the contract, lists every kind. SQLite keeps no comments.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BEFORE = "transaction_at_risk | transaction_breached | endpoint_failing"
AFTER = "transaction_at_risk | transaction_breached | endpoint_failing | correlation_behind"


def _comment(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column(
        "alerts", "kind", existing_type=sa.String(length=32), existing_nullable=False, comment=new, existing_comment=old
    )


def upgrade() -> None:
    _comment(BEFORE, AFTER)


def downgrade() -> None:
    _comment(AFTER, BEFORE)
