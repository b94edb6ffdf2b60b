"""Named reads for export and reporting: transactions with their keys, exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, or_, select

from syncwatch.redact import mask_emails
from syncwatch.store.correlation import CORRELATOR_CHECKPOINT, TRACE
from syncwatch.store.schema import (
    business_keys,
    exceptions,
    observations,
    quarantine,
    transaction_keys,
    transactions,
)
from syncwatch.store.writes import read_checkpoint

EXCEPTION_FIELDS = (
    "id",
    "transaction_id",
    "category",
    "status",
    "system",
    "endpoint",
    "stage",
    "summary",
    "suggested_action",
    "assignee",
    "attempts",
    "opened_at",
    "last_seen_at",
    "resolved_at",
)


TRANSACTION_FIELDS = (
    "id",
    "type",
    "status",
    "sla_state",
    "current_stage",
    "stage_at_fault",
    "due_at",
    "started_at",
    "last_seen_at",
    "channel",
    "partner",
    "customer",
    "order_value",
    "promised_at",
    "observation_count",
    "keys",
    "stages",
    "lines",
)
CONTEXT_FIELDS = ("channel", "partner", "customer", "order_value", "promised_at")  # an exception's business context


def iter_transactions(conn: Connection) -> Iterator[dict[str, Any]]:
    """Every transaction with its identity keys (trace ids left out), in id order: what a BI tool
    charts volumes, lead times and SLA by."""
    keys: dict[str, dict[str, list[str]]] = {}
    c = transaction_keys.c
    for tid, key_type, value in conn.execute(
        select(c.transaction_id, c.key_type, c.value).where(c.key_type != "trace")
    ):
        keys.setdefault(tid, {}).setdefault(key_type, []).append(value)
    columns = [transactions.c[name] for name in TRANSACTION_FIELDS if name != "keys"]
    for row in conn.execute(select(*columns).order_by(transactions.c.id)):
        found = keys.get(row.id, {})
        exported = _exported(row)
        exported["stages"] = [_timed(stage) for stage in exported["stages"] or []]
        yield {**exported, "keys": {t: sorted(v) for t, v in sorted(found.items())}}


def iter_exceptions(conn: Connection) -> Iterator[dict[str, Any]]:
    """Every exception with its order's business context, oldest first."""
    columns = [exceptions.c[name] for name in EXCEPTION_FIELDS]
    stmt = select(*columns, exceptions.c.context).order_by(exceptions.c.opened_at, exceptions.c.id)
    for row in conn.execute(stmt):
        exported = _exported(row)
        context = exported.pop("context") or {}
        yield {**exported, **{name: context.get(name) for name in CONTEXT_FIELDS}}


def _exported(row: Any) -> dict[str, Any]:
    """A row as export writes it: times as ISO text, always to the microsecond (a time on a whole
    second written without them gave a column two formats, which pandas refuses to read as one)."""
    return {k: (_iso(v) if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}


def _iso(moment: Any) -> str:
    return str(moment.isoformat(timespec="microseconds"))


def _timed(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage of the timeline with its times in the export's one format."""
    return {k: _iso(datetime.fromisoformat(v)) if k in STAGE_TIMES and v else v for k, v in stage.items()}


STAGE_TIMES = ("reached_at", "due_at")


QUARANTINE_FIELDS = ("id", "source", "position", "reason", "deliveries", "received_at", "last_received_at")
QUARANTINE_FIELDS += ("content_type", "raw_size")


def iter_quarantine(conn: Connection) -> Iterator[dict[str, Any]]:
    """Rejected inputs without their bytes (the Admin page shows those, masked): what a partner
    needs to find and fix them in its own files. Reasons may quote the input: emails are masked."""
    q = quarantine.c
    for row in conn.execute(select(*(q[name] for name in QUARANTINE_FIELDS)).order_by(q.received_at, q.id)):
        yield {**_exported(row), "reason": mask_emails(row.reason)}


def redeliveries(conn: Connection) -> int:
    """Deliveries beyond the first, over every observation: read from the rows stamped
    ``redelivered_at``, which the partial index holds, so it costs nothing on a large store."""
    o = observations.c
    query = select(func.coalesce(func.sum(o.duplicates), 0)).where(o.redelivered_at.isnot(None))
    return int(conn.execute(query).scalar_one())


def quarantine_reasons(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent (source, reason) pairs of quarantined items, most first, with how many
    times those items were delivered (an item rejected again is kept once). A reason may quote the
    input: emails in it are masked."""
    q = quarantine.c
    items = func.count().label("items")
    deliveries = func.sum(q.deliveries).label("deliveries")
    stmt = (
        select(q.source, q.reason, items, deliveries)
        .group_by(q.source, q.reason)
        .order_by(items.desc(), q.source, q.reason)
    )
    return [{**row._mapping, "reason": mask_emails(row.reason)} for row in conn.execute(stmt.limit(limit))]


def unlinked_observations(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    """Per system, kind and operation, the observations the correlator has read that belong to no
    transaction (no business key, and no trace that one shares) beside all of them: events and calls
    first, then log lines, most unlinked first. A gateway's line of
    a POST names no order in its path, so some are expected; an event type or span none of whose
    observations link is usually a key rule that names its system or field wrongly."""
    o, b, t = observations.c, business_keys.c, transaction_keys.c
    keyless = ~exists().where(b.observation_id == o.id)
    traced = exists().where(and_(t.key_type == TRACE, t.value == o.trace_id))
    unlinked = func.sum(case((and_(keyless, or_(o.trace_id.is_(None), ~traced)), 1), else_=0)).label("unlinked")
    checkpoint = read_checkpoint(conn, CORRELATOR_CHECKPOINT)
    stmt = (
        select(o.system, o.kind, o.operation, unlinked, func.count().label("observations"))
        .where(o.id <= (checkpoint.position if checkpoint else 0))
        .group_by(o.system, o.kind, o.operation)
        .order_by(case((o.kind == "log", 1), else_=0), unlinked.desc(), o.system, o.kind, o.operation)
    )
    # A path no template names may carry an email where an id goes (/customers/jane@…): masked, as reasons are.
    return [
        {**row._mapping, "operation": mask_emails(row.operation)}
        for row in conn.execute(stmt.limit(limit))
        if row.unlinked
    ]
