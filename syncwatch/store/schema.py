"""The SQL schema: a documented, stable contract (README "SQL schema") that BI tools read.

Every table and column carries a comment, which the README table is checked against.
Times are UTC: ``timestamptz`` on PostgreSQL, ISO text on SQLite (which sorts correctly).
Changes go through an Alembic migration in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

from syncwatch.model import as_utc

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# SQLite only autoincrements INTEGER PRIMARY KEY; BigInteger keeps PostgreSQL ids 64-bit.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every engine."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


observations = Table(
    "observations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True, comment="Surrogate id, grows with arrival"),
    Column(
        "natural_id",
        String(255),
        nullable=False,
        unique=True,
        comment=(
            "Deduplication id: trace:span for a span, event:source:id for an event,"
            " line/file/offset/content for a log line"
        ),
    ),
    Column("kind", String(16), nullable=False, comment="span | log | event"),
    Column("system", String(128), nullable=False, comment="Reporting system (service.name, gateway, event source)"),
    Column("operation", String(255), nullable=False, comment="Span name, 'METHOD /route' or event type"),
    Column("start_time", UTCDateTime, nullable=False, comment="When it started (UTC)"),
    Column("end_time", UTCDateTime, comment="When it ended (UTC); null for instantaneous events"),
    Column("outcome", String(8), nullable=False, comment="ok | error"),
    Column("status_code", Integer, comment="HTTP status where one applies"),
    Column("error_message", Text, comment="Error text reported by the system"),
    Column("trace_id", String(32), comment="W3C trace id (hex) where known"),
    Column("span_id", String(16), comment="Span id (hex) where known"),
    Column("parent_id", String(16), comment="Parent span id (hex) where known"),
    Column("source", String(255), nullable=False, comment="Collector source: file path, endpoint or token name"),
    Column(
        "extracted_keys",
        JSON,
        nullable=False,
        comment="All extracted keys: [[key_type, value, identity], …]",
    ),
    Column("attributes", JSON, nullable=False, comment="Remaining attributes as reported"),
    Column("payload", LargeBinary, comment="Raw body (event data, request body), needed to re-send"),
    Column("received_at", UTCDateTime, nullable=False, comment="When syncwatch stored it (UTC)"),
    Column("redelivered_at", UTCDateTime, comment="When it last arrived again (UTC); null if delivered once"),
    Column(
        "duplicates",
        Integer,
        nullable=False,
        server_default=text("0"),
        comment="How many times it was delivered again after the first",
    ),
    comment="One thing a system reported: a span, an access-log line or a business event",
)
# Partial: only rows that have the value are indexed, since the queries look values up. A log
# line or an event without trace context, and every row never delivered twice, costs no index entry.
Index(
    None,
    observations.c.redelivered_at,
    sqlite_where=observations.c.redelivered_at.isnot(None),
    postgresql_where=observations.c.redelivered_at.isnot(None),
)
# A span's natural id is ``trace:span``: SQLite's natural-id index (binary order) already keeps a
# trace's spans side by side, so there the trace index holds only the traced rows whose natural id
# does not begin with their trace id (log records, events), and a span pays one random index entry,
# not two. ``store.traces`` finds a trace's rows through both. PostgreSQL's natural-id index follows
# the database's collation, which does not promise where ':' sorts, so it indexes every traced row.
NOT_OWN_TRACE_PREFIX = "substr(natural_id, 1, length(trace_id) + 1) <> trace_id || ':'"
Index(
    None,
    observations.c.trace_id,
    sqlite_where=text(f"trace_id IS NOT NULL AND {NOT_OWN_TRACE_PREFIX}"),
    postgresql_where=observations.c.trace_id.isnot(None),
)
Index(None, observations.c.system, observations.c.start_time)

business_keys = Table(
    "business_keys",
    metadata,
    Column("value", String(255), primary_key=True, comment="The identifier as reported"),
    Column(
        "key_type",
        String(64),
        primary_key=True,
        comment="Identity key type, e.g. marketplace_order, erp_order, shipment, tracking",
    ),
    Column(
        "observation_id",
        Id,
        ForeignKey("observations.id", ondelete="CASCADE"),
        primary_key=True,
        comment="The observation the key was extracted from",
    ),
    comment="Identity keys of observations, for lookup by any identifier (all keys: observations.extracted_keys)",
    sqlite_with_rowid=False,
)
Index(None, business_keys.c.observation_id)

transactions = Table(
    "transactions",
    metadata,
    Column("id", String(64), primary_key=True, comment="Stable transaction id"),
    Column("type", String(32), nullable=False, comment="Process definition: order | inventory_sync | return"),
    Column("status", String(16), nullable=False, server_default=text("'open'"), comment="open | complete"),
    Column("sla_state", String(16), nullable=False, comment="met | on_track | at_risk | breached"),
    Column("current_stage", String(64), comment="Last stage reached"),
    Column("stage_at_fault", String(64), comment="Stage that is late or failing"),
    Column("due_at", UTCDateTime, comment="When the next stage is due (UTC)"),
    Column("channel", String(64), comment="Sales channel (marketplace) where known"),
    Column("partner", String(64), comment="Fulfilment partner (warehouse or 3PL) where known"),
    Column("customer", String(128), comment="Customer where known"),
    Column("order_value", String(32), comment="Order value as a decimal string where known"),
    Column("promised_at", UTCDateTime, comment="Promised ship-by date carried on the order"),
    Column("stages", JSON, nullable=False, comment="Stage timeline: [{name, reached_at, due_at, sla_state}]"),
    Column("started_at", UTCDateTime, nullable=False, comment="First observation time (UTC)"),
    Column("last_seen_at", UTCDateTime, nullable=False, comment="Latest observation time (UTC)"),
    Column("observation_count", Integer, nullable=False, comment="Observations that belong to it"),
    Column("sla_check_at", UTCDateTime, comment="When its SLA state changes next if nothing arrives (UTC)"),
    Column("updated_at", UTCDateTime, nullable=False, comment="Last change by the correlator (UTC)"),
    Column(
        "lines",
        JSON,
        comment="Line-level fulfilment: {ordered, shipped, outstanding, backordered, backorder_due, shipments}",
    ),
    comment="End-to-end business transactions derived by the correlator",
)
Index(None, transactions.c.sla_state, transactions.c.updated_at)
Index(None, transactions.c.updated_at)
Index(None, transactions.c.sla_check_at)
Index(None, transactions.c.type, transactions.c.started_at)

transaction_keys = Table(
    "transaction_keys",
    metadata,
    Column(
        "transaction_id",
        String(64),
        ForeignKey("transactions.id", ondelete="CASCADE"),
        primary_key=True,
        comment="The transaction",
    ),
    Column("key_type", String(64), primary_key=True, comment="Identity key type"),
    Column("value", String(255), primary_key=True, comment="Identity key value"),
    comment="Identity keys and trace ids (key_type 'trace') of a transaction; its observations share one",
    sqlite_with_rowid=False,
)
TRANSACTION_KEYS_BY_VALUE = Index(None, transaction_keys.c.value, transaction_keys.c.key_type)

exceptions = Table(
    "exceptions",
    metadata,
    Column("id", String(64), primary_key=True, comment="Stable exception id"),
    Column(
        "transaction_id",
        String(64),
        ForeignKey("transactions.id", ondelete="CASCADE"),
        nullable=False,
        comment="The transaction that needs attention",
    ),
    Column(
        "category",
        String(32),
        nullable=False,
        comment="validation | partner_unavailable | throttled | timeout | stuck | duplicate_notice | dead_lettered",
    ),
    Column("status", String(16), nullable=False, comment="open | retrying | resolved | ignored"),
    Column("system", String(128), nullable=False, comment="The failing system"),
    Column("endpoint", String(255), comment="The failing endpoint or operation"),
    Column("stage", String(64), comment="The process stage that failed or is stuck"),
    Column("summary", Text, nullable=False, comment="One sentence an agent reads first"),
    Column("suggested_action", String(16), comment="retry | reroute | replay | resolve (fix data)"),
    Column("assignee", String(128), comment="Who works on it"),
    Column("context", JSON, nullable=False, comment="Business context: channel, customer, value, promised date"),
    Column(
        "observation_id",
        Id,
        ForeignKey("observations.id", ondelete="SET NULL"),
        comment="The observation that showed the failure",
    ),
    Column(
        "resolved_by_observation_id",
        Id,
        ForeignKey("observations.id", ondelete="SET NULL"),
        comment="The observation that showed the step succeeded",
    ),
    Column("attempts", Integer, nullable=False, server_default=text("1"), comment="Failures seen for this step"),
    Column("opened_at", UTCDateTime, nullable=False, comment="When the failure happened (UTC)"),
    Column("last_seen_at", UTCDateTime, nullable=False, comment="Latest failure seen (UTC)"),
    Column("updated_at", UTCDateTime, nullable=False, comment="Last status change (UTC)"),
    Column("resolved_at", UTCDateTime, comment="When it was resolved or ignored (UTC)"),
    comment="Transaction steps that need a person or a policy",
)
Index(None, exceptions.c.status, exceptions.c.opened_at)
Index(None, exceptions.c.transaction_id)
# Deleting an observation (retention) looks for exceptions naming it, to set their link null.
Index(None, exceptions.c.observation_id)
Index(None, exceptions.c.resolved_by_observation_id)

actions = Table(
    "actions",
    metadata,
    Column("id", String(64), primary_key=True, comment="Stable action id"),
    Column(
        "exception_id",
        String(64),
        ForeignKey("exceptions.id", ondelete="SET NULL"),
        comment="The exception acted on",
    ),
    Column(
        "kind",
        String(16),
        nullable=False,
        comment="retry | reroute | replay | resolve | ignore | assign | note | reopen",
    ),
    Column("actor", String(128), nullable=False, comment="User or policy that asked for it"),
    Column(
        "idempotency_key",
        String(128),
        nullable=False,
        unique=True,
        comment="Sent to the partner; the same key never runs twice",
    ),
    Column("status", String(16), nullable=False, comment="pending | running | succeeded | failed | cancelled"),
    Column("attempts", Integer, nullable=False, server_default=text("0"), comment="Attempts made"),
    Column("request", JSON, nullable=False, comment="What was asked (payload edits, target system)"),
    Column("outcome", JSON, nullable=False, comment="What happened: status codes, partner ids, errors"),
    Column("requested_at", UTCDateTime, nullable=False, comment="When it was asked for (UTC)"),
    Column("finished_at", UTCDateTime, comment="When it finished (UTC)"),
    Column(
        "lease_until",
        UTCDateTime,
        comment="A running action holds its key until then (UTC); after it, a new request may take over",
    ),
    Column("job_id", String(64), comment="The bulk job that asked for it, if any"),
    comment="Retry, reroute, replay, resolve, ignore, assign, note and reopen actions and their outcomes",
)
Index(None, actions.c.exception_id)
Index(None, actions.c.job_id)

action_jobs = Table(
    "action_jobs",
    metadata,
    Column("id", String(64), primary_key=True, comment="Stable job id"),
    Column(
        "kind",
        String(16),
        nullable=False,
        comment="The action applied to each exception: retry | replay | reroute | resolve | ignore | assign",
    ),
    Column("actor", String(128), nullable=False, comment="Who started it"),
    Column("filters", JSON, nullable=False, comment="The filter the exceptions were selected by"),
    Column("partners", JSON, nullable=False, comment="Exceptions per partner when it was planned"),
    Column("exception_ids", JSON, nullable=False, comment="The exceptions planned, in order"),
    Column("note", Text, comment="Note recorded with each action (resolve, ignore)"),
    Column("status", String(16), nullable=False, comment="running | cancelling | cancelled | finished"),
    Column("total", Integer, nullable=False, comment="Exceptions planned"),
    Column(
        "done",
        Integer,
        nullable=False,
        server_default=text("0"),
        comment=(
            "Exceptions reached so far: succeeded + failed + those found already done"
            " (another's action got there first)"
        ),
    ),
    Column("succeeded", Integer, nullable=False, server_default=text("0"), comment="Actions that succeeded"),
    Column(
        "failed",
        Integer,
        nullable=False,
        server_default=text("0"),
        comment="Actions that failed or were refused (not those found already done)",
    ),
    Column("created_at", UTCDateTime, nullable=False, comment="When it was started (UTC)"),
    Column("updated_at", UTCDateTime, nullable=False, comment="Last progress (UTC)"),
    Column("finished_at", UTCDateTime, comment="When it finished or stopped (UTC)"),
    comment="Bulk jobs: one action over every exception matching a filter, with progress",
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True, comment="Append-only sequence"),
    Column("at", UTCDateTime, nullable=False, comment="When (UTC)"),
    Column("actor", String(128), nullable=False, comment="Who"),
    Column("role", String(32), comment="The actor's role at the time"),
    Column("action", String(32), nullable=False, comment="What was attempted"),
    Column("target", String(128), comment="Exception, transaction or setting acted on"),
    Column("request_summary", Text, comment="What was asked, with personal data masked"),
    Column("result", String(16), nullable=False, comment="allowed | refused | succeeded | failed"),
    Column("detail", JSON, nullable=False, comment="Links to the action, SLA state before and after"),
    comment="Every attempted action, allowed or refused; rows are only ever added",
)
Index(None, audit_log.c.at)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True, comment="Sequence"),
    Column(
        "dedupe_key", String(320), nullable=False, comment="Same key, same alert: sent once, or once per quiet period"
    ),
    Column(
        "kind",
        String(32),
        nullable=False,
        comment="transaction_at_risk | transaction_breached | endpoint_failing | correlation_behind | system_quiet",
    ),
    Column("transaction_id", String(64), comment="The transaction it names, if any"),
    Column("text", Text, nullable=False, comment="The message as posted"),
    Column("link", String(512), comment="Where it points in the dashboard"),
    Column("created_at", UTCDateTime, nullable=False, comment="When the correlator raised it (UTC)"),
    Column("sent_at", UTCDateTime, comment="When the webhook accepted it (UTC); null while pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0"), comment="Delivery attempts"),
    Column("last_attempt_at", UTCDateTime, comment="When a delivery was last tried (UTC); null before the first"),
    Column("last_error", Text, comment="Why the last delivery attempt failed"),
    comment="Alerts raised by the correlator and their delivery to the configured webhook",
)
Index(None, alerts.c.dedupe_key, alerts.c.created_at)
Index(None, alerts.c.sent_at)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("source", String(512), primary_key=True, comment="Collector source (file path, job name)"),
    Column("position", BigInteger, nullable=False, comment="Offset or sequence already processed"),
    Column("state", JSON, nullable=False, comment="Source identity (inode, fingerprint) and extra state"),
    Column("updated_at", UTCDateTime, nullable=False, comment="Last advance (UTC)"),
    comment="Where each collector and correlator pass got to, so restarts neither lose nor repeat",
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True, comment="Sequence"),
    Column("received_at", UTCDateTime, nullable=False, comment="When it first arrived (UTC)"),
    Column("source", String(512), nullable=False, comment="Endpoint, file or token it came from"),
    Column("position", String(64), comment="Offset, line number or item index within the source"),
    Column("reason", Text, nullable=False, comment="Why it was rejected (the last time), in one sentence"),
    Column("content_type", String(128), comment="Declared content type"),
    Column("raw", LargeBinary, comment="The rejected bytes, cut at the configured limit"),
    Column("raw_size", BigInteger, nullable=False, comment="Size of the rejected input before cutting"),
    Column(
        "fingerprint",
        String(32),
        comment="Hash of source, position and all the rejected bytes: the same input rejected again is one row",
    ),
    Column(
        "deliveries",
        Integer,
        nullable=False,
        server_default=text("1"),
        comment="How many times this input was delivered and rejected",
    ),
    Column("last_received_at", UTCDateTime, comment="When it last arrived (UTC); null if delivered once"),
    comment="Rejected input with its reason; nothing rejected is silently dropped, nor kept twice",
)
Index(None, quarantine.c.received_at)
Index(None, quarantine.c.fingerprint, unique=True)

COUNTED_TABLES = (
    "observations",
    "business_keys",
    "transactions",
    "exceptions",
    "actions",
    "audit_log",
    "checkpoints",
    "quarantine",
    "alerts",
)
