"""action_jobs comments: items found already done are counted in ``done`` only

A bulk job counts the exceptions it found already done (another agent's resolve, an earlier retry or
reroute) apart from the ones it fixed or failed on, and reroute is a bulk action now; the column
comments, which BI tools read as the contract, say so. SQLite keeps no comments.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COMMENTS = {  # column: (type, before, after)
    "kind": (
        sa.String(16),
        "The action applied to each exception: retry | resolve | …",
        "The action applied to each exception: retry | replay | reroute | resolve | ignore | assign",
    ),
    "done": (
        sa.Integer(),
        "Exceptions acted on so far",
        "Exceptions reached so far: succeeded + failed + those found already done (another's action got there first)",
    ),
    "failed": (
        sa.Integer(),
        "Actions that failed or were refused",
        "Actions that failed or were refused (not those found already done)",
    ),
}


def _comments(after: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for column, (kind, before, now) in COMMENTS.items():
        op.alter_column(
            "action_jobs",
            column,
            existing_type=kind,
            existing_nullable=False,
            comment=now if after else before,
            existing_comment=before if after else now,
        )


def upgrade() -> None:
    _comments(after=True)


def downgrade() -> None:
    _comments(after=False)
