"""alerts.last_attempt_at, and actions.kind names reopen

A failed alert delivery is tried again a while after its last attempt, not on a clock started when
it was raised: alerts waiting when `serve` starts used to spend their attempts five seconds apart.
An exception whose retry nothing confirmed is opened again, recorded as a ``reopen`` action; the
column and table comments, which BI tools read as the contract, list every kind. SQLite keeps no
comments.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

LAST_ATTEMPT = "When a delivery was last tried (UTC); null before the first"
KIND_BEFORE = "retry | reroute | replay | resolve | ignore | assign | note"
KIND_AFTER = "retry | reroute | replay | resolve | ignore | assign | note | reopen"
TABLE_BEFORE = "Retry, reroute, replay, resolve, ignore, assign and note requests and their outcomes"
TABLE_AFTER = "Retry, reroute, replay, resolve, ignore, assign, note and reopen actions and their outcomes"


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
    op.add_column("alerts", sa.Column("last_attempt_at", sa.DateTime(timezone=True), comment=LAST_ATTEMPT))
    _comments((KIND_BEFORE, KIND_AFTER), (TABLE_BEFORE, TABLE_AFTER))


def downgrade() -> None:
    _comments((KIND_AFTER, KIND_BEFORE), (TABLE_AFTER, TABLE_BEFORE))
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_column("last_attempt_at")
