"""actions outlive their exception: ON DELETE SET NULL instead of CASCADE

An action is history (who retried what, and what the partner answered). Deleting an exception,
for instance when a merge of transactions retires it, must not erase that history with it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FK_NAME = "fk_actions_exception_id_exceptions"


def _point_actions_at_exceptions(ondelete: str) -> None:
    with op.batch_alter_table("actions") as batch_op:
        batch_op.drop_constraint(FK_NAME, type_="foreignkey")
        batch_op.create_foreign_key(FK_NAME, "exceptions", ["exception_id"], ["id"], ondelete=ondelete)


def upgrade() -> None:
    _point_actions_at_exceptions("SET NULL")


def downgrade() -> None:
    _point_actions_at_exceptions("CASCADE")
