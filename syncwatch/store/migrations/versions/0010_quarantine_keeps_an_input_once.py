"""quarantine: the same rejected input delivered again is one row with a delivery count

Re-importing a file or a partner retrying a refused batch wrote its rejected items again, so the
Admin page and `syncwatch stats` counted one problem twice. A row is now identified by a hash of
its source, position and bytes; rows stored before this revision have none and stay as they are.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE_BEFORE = "Rejected input with its reason; nothing rejected is silently dropped"
TABLE_AFTER = "Rejected input with its reason; nothing rejected is silently dropped, nor kept twice"
COMMENTS = {  # column: (before, after, type)
    "received_at": ("When it arrived (UTC)", "When it first arrived (UTC)", sa.DateTime(timezone=True)),
    "reason": (
        "Why it was rejected, in one sentence",
        "Why it was rejected (the last time), in one sentence",
        sa.Text(),
    ),
}
FINGERPRINT = "Hash of source, position and all the rejected bytes: the same input rejected again is one row"
DELIVERIES = "How many times this input was delivered and rejected"
LAST_RECEIVED = "When it last arrived (UTC); null if delivered once"


def _comments(table: str, columns: dict[str, str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.create_table_comment("quarantine", table)
    for name, comment in columns.items():
        before, after, type_ = COMMENTS[name]
        op.alter_column(
            "quarantine",
            name,
            existing_type=type_,
            existing_nullable=False,
            comment=comment,
            existing_comment=after if comment == before else before,
        )


def upgrade() -> None:
    op.add_column("quarantine", sa.Column("fingerprint", sa.String(length=32), comment=FINGERPRINT))
    op.add_column(
        "quarantine",
        sa.Column("deliveries", sa.Integer(), server_default=sa.text("1"), nullable=False, comment=DELIVERIES),
    )
    op.add_column("quarantine", sa.Column("last_received_at", sa.DateTime(timezone=True), comment=LAST_RECEIVED))
    op.create_index("ix_quarantine_fingerprint", "quarantine", ["fingerprint"], unique=True)
    _comments(TABLE_AFTER, {name: after for name, (_, after, _) in COMMENTS.items()})


def downgrade() -> None:
    _comments(TABLE_BEFORE, {name: before for name, (before, _, _) in COMMENTS.items()})
    op.drop_index("ix_quarantine_fingerprint", table_name="quarantine")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("last_received_at")
        batch.drop_column("deliveries")
        batch.drop_column("fingerprint")
