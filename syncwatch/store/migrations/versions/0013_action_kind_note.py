"""actions.kind: the comments name the new kind, note

An agent can add a note to an exception's history without changing it; the column and table
comments, which BI tools read as the contract, list every kind. SQLite keeps no comments.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

KIND_BEFORE = "retry | reroute | replay | resolve | ignore | assign"
KIND_AFTER = "retry | reroute | replay | resolve | ignore | assign | note"
TABLE_BEFORE = "Retry, reroute, replay, resolve, ignore and assign requests and their outcomes"
TABLE_AFTER = "Retry, reroute, replay, resolve, ignore, assign and note requests and their outcomes"


def _comments(kind: tuple[str, str], table: tuple[str, str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column(
        "actions",
        "kind",
        existing_type=sa.String(16),
        existing_nullable=False,
        comment=kind[1],
        existing_comment=kind[0],
    )
    op.create_table_comment("actions", table[1], existing_comment=table[0])


def upgrade() -> None:
    _comments((KIND_BEFORE, KIND_AFTER), (TABLE_BEFORE, TABLE_AFTER))


def downgrade() -> None:
    _comments((KIND_AFTER, KIND_BEFORE), (TABLE_AFTER, TABLE_BEFORE))
