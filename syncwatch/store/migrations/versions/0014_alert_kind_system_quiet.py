"""alerts.kind: the comment names the new kind, system_quiet

syncwatch alerts when a system that was sending goes quiet; the column comment, which BI tools
read as the contract, lists every kind. SQLite keeps no comments.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BEFORE = "transaction_at_risk | transaction_breached | endpoint_failing | correlation_behind"
AFTER = "transaction_at_risk | transaction_breached | endpoint_failing | correlation_behind | system_quiet"


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
