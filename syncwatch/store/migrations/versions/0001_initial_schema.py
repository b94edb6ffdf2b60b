"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
            comment="Append-only sequence",
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, comment="When (UTC)"),
        sa.Column("actor", sa.String(length=128), nullable=False, comment="Who"),
        sa.Column("role", sa.String(length=32), nullable=True, comment="The actor's role at the time"),
        sa.Column("action", sa.String(length=32), nullable=False, comment="What was attempted"),
        sa.Column("target", sa.String(length=128), nullable=True, comment="Exception, transaction or setting acted on"),
        sa.Column("request_summary", sa.Text(), nullable=True, comment="What was asked, with personal data masked"),
        sa.Column("result", sa.String(length=16), nullable=False, comment="allowed | refused | succeeded | failed"),
        sa.Column("detail", sa.JSON(), nullable=False, comment="Links to the action, SLA state before and after"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        comment="Every attempted action, allowed or refused; rows are only ever added",
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table(
        "checkpoints",
        sa.Column("source", sa.String(length=512), nullable=False, comment="Collector source (file path, job name)"),
        sa.Column("position", sa.BigInteger(), nullable=False, comment="Offset or sequence already processed"),
        sa.Column("state", sa.JSON(), nullable=False, comment="Source identity (inode, fingerprint) and extra state"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, comment="Last advance (UTC)"),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_checkpoints")),
        comment="Where each collector and correlator pass got to, so restarts neither lose nor repeat",
    )
    op.create_table(
        "observations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
            comment="Surrogate id, grows with arrival",
        ),
        sa.Column(
            "natural_id",
            sa.String(length=255),
            nullable=False,
            comment="Deduplication id: trace+span id, source+event id, or source+line hash",
        ),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="span | log | event"),
        sa.Column(
            "system",
            sa.String(length=128),
            nullable=False,
            comment="Reporting system (service.name, gateway, event source)",
        ),
        sa.Column(
            "operation", sa.String(length=255), nullable=False, comment="Span name, 'METHOD /route' or event type"
        ),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False, comment="When it started (UTC)"),
        sa.Column(
            "end_time",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When it ended (UTC); null for instantaneous events",
        ),
        sa.Column("outcome", sa.String(length=8), nullable=False, comment="ok | error"),
        sa.Column("status_code", sa.Integer(), nullable=True, comment="HTTP status where one applies"),
        sa.Column("error_message", sa.Text(), nullable=True, comment="Error text reported by the system"),
        sa.Column("trace_id", sa.String(length=32), nullable=True, comment="W3C trace id (hex) where known"),
        sa.Column("span_id", sa.String(length=16), nullable=True, comment="Span id (hex) where known"),
        sa.Column("parent_id", sa.String(length=16), nullable=True, comment="Parent span id (hex) where known"),
        sa.Column(
            "source",
            sa.String(length=255),
            nullable=False,
            comment="Collector source: file path, endpoint or token name",
        ),
        sa.Column(
            "extracted_keys", sa.JSON(), nullable=False, comment="All extracted keys: [[key_type, value, identity], …]"
        ),
        sa.Column("attributes", sa.JSON(), nullable=False, comment="Remaining attributes as reported"),
        sa.Column(
            "payload", sa.LargeBinary(), nullable=True, comment="Raw body (event data, request body), needed to re-send"
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, comment="When syncwatch stored it (UTC)"),
        sa.Column(
            "redelivered_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When it last arrived again (UTC); null if delivered once",
        ),
        sa.Column(
            "duplicates",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
            comment="How many times it was delivered again after the first",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
        sa.UniqueConstraint("natural_id", name=op.f("uq_observations_natural_id")),
        comment="One thing a system reported: a span, an access-log line or a business event",
    )
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_observations_redelivered_at"), ["redelivered_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_observations_system_start_time"), ["system", "start_time"], unique=False)
        batch_op.create_index(batch_op.f("ix_observations_trace_id"), ["trace_id"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
            comment="Sequence",
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, comment="When it arrived (UTC)"),
        sa.Column("source", sa.String(length=512), nullable=False, comment="Endpoint, file or token it came from"),
        sa.Column(
            "position",
            sa.String(length=64),
            nullable=True,
            comment="Offset, line number or item index within the source",
        ),
        sa.Column("reason", sa.Text(), nullable=False, comment="Why it was rejected, in one sentence"),
        sa.Column("content_type", sa.String(length=128), nullable=True, comment="Declared content type"),
        sa.Column("raw", sa.LargeBinary(), nullable=True, comment="The rejected bytes, cut at the configured limit"),
        sa.Column("raw_size", sa.BigInteger(), nullable=False, comment="Size of the rejected input before cutting"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        comment="Rejected input with its reason; nothing rejected is silently dropped",
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_received_at"), ["received_at"], unique=False)

    op.create_table(
        "transactions",
        sa.Column("id", sa.String(length=64), nullable=False, comment="Stable transaction id"),
        sa.Column(
            "type", sa.String(length=32), nullable=False, comment="Process definition: order | inventory_sync | return"
        ),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'open'"), nullable=False, comment="open | complete"
        ),
        sa.Column("sla_state", sa.String(length=16), nullable=False, comment="met | on_track | at_risk | breached"),
        sa.Column("current_stage", sa.String(length=64), nullable=True, comment="Last stage reached"),
        sa.Column("stage_at_fault", sa.String(length=64), nullable=True, comment="Stage that is late or failing"),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True, comment="When the next stage is due (UTC)"),
        sa.Column("channel", sa.String(length=64), nullable=True, comment="Sales channel (marketplace) where known"),
        sa.Column(
            "partner", sa.String(length=64), nullable=True, comment="Fulfilment partner (warehouse or 3PL) where known"
        ),
        sa.Column("customer", sa.String(length=128), nullable=True, comment="Customer where known"),
        sa.Column(
            "order_value", sa.String(length=32), nullable=True, comment="Order value as a decimal string where known"
        ),
        sa.Column(
            "promised_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Promised ship-by date carried on the order",
        ),
        sa.Column(
            "stages", sa.JSON(), nullable=False, comment="Stage timeline: [{name, reached_at, due_at, sla_state}]"
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, comment="First observation time (UTC)"),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, comment="Latest observation time (UTC)"),
        sa.Column("observation_count", sa.Integer(), nullable=False, comment="Observations that belong to it"),
        sa.Column(
            "sla_check_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When its SLA state changes next if nothing arrives (UTC)",
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, comment="Last change by the correlator (UTC)"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        comment="End-to-end business transactions derived by the correlator",
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transactions_sla_check_at"), ["sla_check_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_transactions_sla_state_updated_at"), ["sla_state", "updated_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_transactions_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "business_keys",
        sa.Column("value", sa.String(length=255), nullable=False, comment="The identifier as reported"),
        sa.Column(
            "key_type",
            sa.String(length=64),
            nullable=False,
            comment="Identity key type, e.g. marketplace_order, erp_order, shipment, tracking",
        ),
        sa.Column(
            "observation_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            comment="The observation the key was extracted from",
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_business_keys_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("value", "key_type", "observation_id", name=op.f("pk_business_keys")),
        comment="Identity keys of observations, for lookup by any identifier (all keys: observations.extracted_keys)",
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("business_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_business_keys_observation_id"), ["observation_id"], unique=False)

    op.create_table(
        "exceptions",
        sa.Column("id", sa.String(length=64), nullable=False, comment="Stable exception id"),
        sa.Column(
            "transaction_id", sa.String(length=64), nullable=False, comment="The transaction that needs attention"
        ),
        sa.Column(
            "category",
            sa.String(length=32),
            nullable=False,
            comment="validation | partner_unavailable | throttled | timeout | stuck | duplicate_notice | dead_lettered",
        ),
        sa.Column("status", sa.String(length=16), nullable=False, comment="open | retrying | resolved | ignored"),
        sa.Column("system", sa.String(length=128), nullable=False, comment="The failing system"),
        sa.Column("endpoint", sa.String(length=255), nullable=True, comment="The failing endpoint or operation"),
        sa.Column("stage", sa.String(length=64), nullable=True, comment="The process stage that failed or is stuck"),
        sa.Column("summary", sa.Text(), nullable=False, comment="One sentence an agent reads first"),
        sa.Column(
            "suggested_action",
            sa.String(length=16),
            nullable=True,
            comment="retry | reroute | replay | resolve (fix data)",
        ),
        sa.Column("assignee", sa.String(length=128), nullable=True, comment="Who works on it"),
        sa.Column(
            "context", sa.JSON(), nullable=False, comment="Business context: channel, customer, value, promised date"
        ),
        sa.Column(
            "observation_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
            comment="The observation that showed the failure",
        ),
        sa.Column(
            "resolved_by_observation_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
            comment="The observation that showed the step succeeded",
        ),
        sa.Column(
            "attempts", sa.Integer(), server_default=sa.text("1"), nullable=False, comment="Failures seen for this step"
        ),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False, comment="When the failure happened (UTC)"),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, comment="Latest failure seen (UTC)"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, comment="Last status change (UTC)"),
        sa.Column(
            "resolved_at", sa.DateTime(timezone=True), nullable=True, comment="When it was resolved or ignored (UTC)"
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_exceptions_observation_id_observations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_observation_id"],
            ["observations.id"],
            name=op.f("fk_exceptions_resolved_by_observation_id_observations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_exceptions_transaction_id_transactions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exceptions")),
        comment="Transaction steps that need a person or a policy",
    )
    with op.batch_alter_table("exceptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exceptions_status_opened_at"), ["status", "opened_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_exceptions_transaction_id"), ["transaction_id"], unique=False)

    op.create_table(
        "transaction_keys",
        sa.Column("transaction_id", sa.String(length=64), nullable=False, comment="The transaction"),
        sa.Column("key_type", sa.String(length=64), nullable=False, comment="Identity key type"),
        sa.Column("value", sa.String(length=255), nullable=False, comment="Identity key value"),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_transaction_keys_transaction_id_transactions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("transaction_id", "key_type", "value", name=op.f("pk_transaction_keys")),
        comment="Identity keys and trace ids (key_type 'trace') of a transaction; its observations share one",
    )
    with op.batch_alter_table("transaction_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transaction_keys_value_key_type"), ["value", "key_type"], unique=False)

    op.create_table(
        "actions",
        sa.Column("id", sa.String(length=64), nullable=False, comment="Stable action id"),
        sa.Column("exception_id", sa.String(length=64), nullable=True, comment="The exception acted on"),
        sa.Column(
            "kind", sa.String(length=16), nullable=False, comment="retry | reroute | replay | resolve | ignore | assign"
        ),
        sa.Column("actor", sa.String(length=128), nullable=False, comment="User or policy that asked for it"),
        sa.Column(
            "idempotency_key",
            sa.String(length=128),
            nullable=False,
            comment="Sent to the partner; the same key never runs twice",
        ),
        sa.Column(
            "status", sa.String(length=16), nullable=False, comment="pending | running | succeeded | failed | cancelled"
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False, comment="Attempts made"),
        sa.Column("request", sa.JSON(), nullable=False, comment="What was asked (payload edits, target system)"),
        sa.Column("outcome", sa.JSON(), nullable=False, comment="What happened: status codes, partner ids, errors"),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, comment="When it was asked for (UTC)"),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True, comment="When it finished (UTC)"),
        sa.ForeignKeyConstraint(
            ["exception_id"], ["exceptions.id"], name=op.f("fk_actions_exception_id_exceptions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_actions_idempotency_key")),
        comment="Retry, reroute, replay, resolve, ignore and assign requests and their outcomes",
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actions_exception_id"), ["exception_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actions_exception_id"))

    op.drop_table("actions")
    with op.batch_alter_table("transaction_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transaction_keys_value_key_type"))

    op.drop_table("transaction_keys")
    with op.batch_alter_table("exceptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exceptions_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_exceptions_status_opened_at"))

    op.drop_table("exceptions")
    with op.batch_alter_table("business_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_business_keys_observation_id"))

    op.drop_table("business_keys")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transactions_updated_at"))
        batch_op.drop_index(batch_op.f("ix_transactions_sla_state_updated_at"))
        batch_op.drop_index(batch_op.f("ix_transactions_sla_check_at"))

    op.drop_table("transactions")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_received_at"))

    op.drop_table("quarantine")
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_observations_trace_id"))
        batch_op.drop_index(batch_op.f("ix_observations_system_start_time"))
        batch_op.drop_index(batch_op.f("ix_observations_redelivered_at"))

    op.drop_table("observations")
    op.drop_table("checkpoints")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
