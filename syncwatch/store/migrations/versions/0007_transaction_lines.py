"""transactions.lines: line-level fulfilment of split and backordered orders

An order shipped in several parts is complete only when every line has shipped; the correlator
keeps which lines shipped in which shipment, and which are backordered until when.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COMMENT = "Line-level fulfilment: {ordered, shipped, outstanding, backordered, backorder_due, shipments}"


def upgrade() -> None:
    op.add_column("transactions", sa.Column("lines", sa.JSON(), nullable=True, comment=COMMENT))


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch_op:
        batch_op.drop_column("lines")
