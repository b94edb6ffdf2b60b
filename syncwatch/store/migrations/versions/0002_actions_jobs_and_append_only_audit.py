"""actions: leases, bulk jobs, and an audit log that refuses updates and deletes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = "audit_log is append-only"
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
    for verb in ("UPDATE", "DELETE")
]
PG_FUNCTION = f"""
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$
"""
PG_TRIGGER = (
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
)


def upgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "lease_until",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="A running action holds its key until then (UTC); after it, a new request may take over",
            )
        )
        batch_op.add_column(
            sa.Column("job_id", sa.String(length=64), nullable=True, comment="The bulk job that asked for it, if any")
        )
        batch_op.create_index(batch_op.f("ix_actions_job_id"), ["job_id"], unique=False)
    _create_jobs()
    _append_only_audit()


def _create_jobs() -> None:
    op.create_table(
        "action_jobs",
        sa.Column("id", sa.String(length=64), nullable=False, comment="Stable job id"),
        sa.Column(
            "kind",
            sa.String(length=16),
            nullable=False,
            comment="The action applied to each exception: retry | resolve | …",
        ),
        sa.Column("actor", sa.String(length=128), nullable=False, comment="Who started it"),
        sa.Column("filters", sa.JSON(), nullable=False, comment="The filter the exceptions were selected by"),
        sa.Column("partners", sa.JSON(), nullable=False, comment="Exceptions per partner when it was planned"),
        sa.Column("exception_ids", sa.JSON(), nullable=False, comment="The exceptions planned, in order"),
        sa.Column("note", sa.Text(), nullable=True, comment="Note recorded with each action (resolve, ignore)"),
        sa.Column(
            "status", sa.String(length=16), nullable=False, comment="running | cancelling | cancelled | finished"
        ),
        sa.Column("total", sa.Integer(), nullable=False, comment="Exceptions planned"),
        sa.Column(
            "done", sa.Integer(), server_default=sa.text("0"), nullable=False, comment="Exceptions acted on so far"
        ),
        sa.Column(
            "succeeded", sa.Integer(), server_default=sa.text("0"), nullable=False, comment="Actions that succeeded"
        ),
        sa.Column(
            "failed",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
            comment="Actions that failed or were refused",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, comment="When it was started (UTC)"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, comment="Last progress (UTC)"),
        sa.Column(
            "finished_at", sa.DateTime(timezone=True), nullable=True, comment="When it finished or stopped (UTC)"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_jobs")),
        comment="Bulk jobs: one action over every exception matching a filter, with progress",
    )


def _append_only_audit() -> None:
    """Rows of the audit log are evidence: the database itself refuses to change or remove them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
        return
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER audit_log_no_{verb}")
    op.drop_table("action_jobs")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actions_job_id"))
        batch_op.drop_column("job_id")
        batch_op.drop_column("lease_until")
