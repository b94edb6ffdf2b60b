"""alerts outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
            comment="Sequence",
        ),
        sa.Column(
            "dedupe_key",
            sa.String(length=320),
            nullable=False,
            comment="Same key, same alert: sent once, or once per quiet period",
        ),
        sa.Column(
            "kind",
            sa.String(length=32),
            nullable=False,
            comment="transaction_at_risk | transaction_breached | endpoint_failing",
        ),
        sa.Column("transaction_id", sa.String(length=64), nullable=True, comment="The transaction it names, if any"),
        sa.Column("text", sa.Text(), nullable=False, comment="The message as posted"),
        sa.Column("link", sa.String(length=512), nullable=True, comment="Where it points in the dashboard"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, comment="When the correlator raised it (UTC)"
        ),
        sa.Column(
            "sent_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the webhook accepted it (UTC); null while pending",
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False, comment="Delivery attempts"),
        sa.Column("last_error", sa.Text(), nullable=True, comment="Why the last delivery attempt failed"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        comment="Alerts raised by the correlator and their delivery to the configured webhook",
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_dedupe_key_created_at"), ["dedupe_key", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_sent_at"))
        batch_op.drop_index(batch_op.f("ix_alerts_dedupe_key_created_at"))

    op.drop_table("alerts")
