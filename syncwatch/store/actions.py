"""Named reads and writes of the action layer: the exception to act on and what to re-send, action
claims keyed by idempotency key, the append-only audit log, exception status, and bulk jobs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from syncwatch.model import as_utc
from syncwatch.store.filters import QueueFilter, conditions
from syncwatch.store.schema import (
    action_jobs,
    actions,
    audit_log,
    exceptions,
    observations,
    transaction_keys,
    transactions,
)
from syncwatch.store.traces import in_traces

e, t, o, a = exceptions.c, transactions.c, observations.c, actions.c
STEP_COLUMNS = (
    o.id,
    o.kind,
    o.system,
    o.operation,
    o.outcome,
    o.status_code,
    o.trace_id,
    o.span_id,
    o.attributes,
    o.payload,
)


def exception_target(conn: Connection, exception_id: str) -> dict[str, Any] | None:
    """The exception with what an action needs of its transaction (SLA state, channel, partner)."""
    stmt = (
        select(
            exceptions,
            t.type,
            t.sla_state,
            t.channel,
            t.partner,
            t.current_stage,
            t.status.label("transaction_status"),
        )
        .join(transactions, t.id == e.transaction_id)
        .where(e.id == exception_id)
    )
    row = conn.execute(stmt).first()
    return dict(row._mapping) if row else None


def step_observations(conn: Connection, observation_id: int | None, transaction_id: str) -> list[dict[str, Any]]:
    """The failing observation, then the other failures of the same operation in the transaction's
    traces (client, server, gateway): together they say where the request went and what it carried."""
    if observation_id is None:
        return []
    first = conn.execute(select(*STEP_COLUMNS).where(o.id == observation_id)).first()
    if first is None:
        return []
    k = transaction_keys.c
    traces = select(k.value).where(k.transaction_id == transaction_id, k.key_type == "trace")
    same = and_(
        o.id.in_(in_traces(conn.dialect.name, traces)),
        o.operation == first.operation,
        o.outcome == "error",
        o.id != first.id,
    )
    rest = conn.execute(select(*STEP_COLUMNS).where(same).order_by(o.id.desc()))
    return [dict(first._mapping), *(dict(r._mapping) for r in rest)]


def transaction_keys_of(conn: Connection, transaction_id: str) -> dict[str, list[str]]:
    """Identity keys and trace ids of a transaction, by key type."""
    c = transaction_keys.c
    keys: dict[str, list[str]] = {}
    for key_type, value in conn.execute(
        select(c.key_type, c.value).where(c.transaction_id == transaction_id).order_by(c.key_type, c.value)
    ):
        keys.setdefault(key_type, []).append(value)
    return keys


def sla_state(conn: Connection, transaction_id: str) -> str | None:
    return conn.execute(select(t.sla_state).where(t.id == transaction_id)).scalar()


def actions_of(conn: Connection, exception_id: str, kind: str) -> list[dict[str, Any]]:
    """Earlier actions of one kind on one exception, newest first."""
    stmt = select(actions).where(a.exception_id == exception_id, a.kind == kind).order_by(a.requested_at.desc())
    return [dict(r._mapping) for r in conn.execute(stmt)]


def rerouted_among(conn: Connection, exception_ids: list[str]) -> set[str]:
    """Those of the exceptions a reroute succeeded on: a second would move the order again."""
    if not exception_ids:
        return set()
    stmt = select(a.exception_id).where(a.kind == "reroute", a.status == "succeeded", a.exception_id.in_(exception_ids))
    return set(conn.execute(stmt).scalars())


def action(conn: Connection, action_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(actions).where(a.id == action_id)).first()
    return dict(row._mapping) if row else None


def insert_action(conn: Connection, row: Mapping[str, Any]) -> bool:
    """Claim an idempotency key; False when another request holds it already (unique key)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(actions).values(**row))
    except IntegrityError:
        return False
    return True


def take_over_action(conn: Connection, action_id: str, from_status: str, now: datetime, values: dict[str, Any]) -> bool:
    """Re-claim an action that failed without a definite answer, or whose lease ran out (a crash)."""
    free = a.lease_until.is_(None) | (a.lease_until < now) if from_status == "running" else a.status == from_status
    stmt = (
        update(actions)
        .where(a.id == action_id, a.status == from_status, free)
        .values(attempts=a.attempts + 1, **values)
    )
    return conn.execute(stmt).rowcount == 1


def update_action(conn: Connection, action_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(actions).where(a.id == action_id).values(**values))


SENDING_ACTIONS = ("retry", "replay", "reroute")  # the actions that send the failed step again, somewhere


def unconfirmed(conn: Connection, before: datetime) -> list[dict[str, Any]]:
    """Exceptions left retrying since before ``before``, with the last action that set them so."""
    stmt = select(e.id, e.status, e.updated_at).where(and_(e.status == "retrying", e.updated_at < before))
    found = []
    for row in conn.execute(stmt).all():
        sent = select(actions).where(a.exception_id == row.id, a.kind.in_(SENDING_ACTIONS))
        last = conn.execute(sent.order_by(a.requested_at.desc()).limit(1)).first()
        found.append({**row._mapping, "last": dict(last._mapping) if last else None})
    return found


def unprepared_since(conn: Connection, actor: str, action: str, since: Mapping[str, datetime]) -> dict[str, str]:
    """Why ``action`` by ``actor`` could not be built on each target since the time given for it
    (audited as failed with nothing sent, so no action row counts it): the latest reason each."""
    if not since:
        return {}
    log = audit_log.c
    stmt = (
        select(log.target, log.at, log.detail)
        .where(log.actor == actor, log.action == action, log.result == "failed", log.target.in_(list(since)))
        .order_by(log.id)
    )
    found: dict[str, str] = {}
    for target, at, detail in conn.execute(stmt):
        if "action_id" not in (detail or {}) and as_utc(at) >= as_utc(since[target]):
            found[target] = str((detail or {}).get("reason", "no reason recorded"))
    return found


def append_audit(conn: Connection, entry: Mapping[str, Any]) -> int:
    """Add one audit entry (the table refuses updates and deletes); returns its sequence number."""
    return int(conn.execute(insert(audit_log).values(**entry).returning(audit_log.c.id)).scalar_one())


def set_exception(conn: Connection, exception_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(exceptions).where(e.id == exception_id).values(**values))


def select_exceptions(conn: Connection, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every exception matching ``filters`` (explicit ``ids``, and the queue's filters as
    ``QueueFilter.from_mapping`` reads them), oldest first."""
    stmt = (
        select(
            e.id,
            e.system,
            e.category,
            e.status,
            e.suggested_action,
            e.context,
            e.observation_id,
            t.channel,
            t.partner,
            t.type,
            t.current_stage,
            t.sla_state,
        )
        .join(transactions, t.id == e.transaction_id)
        .where(*_conditions(filters))
        .order_by(e.opened_at, e.id)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _conditions(filters: Mapping[str, Any]) -> list[ColumnElement[bool]]:
    """Explicit ``ids``, or the queue's filter (see ``QueueFilter.from_mapping``)."""
    rest = {name: value for name, value in filters.items() if name != "ids"}
    where = conditions(QueueFilter.from_mapping(rest))
    return [*where, e.id.in_(list(filters["ids"]))] if "ids" in filters else where


def observation_systems(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Where each observation was reported and to whom it was sent: the partner of a failed step."""
    if not ids:
        return {}
    stmt = select(o.id, o.system, o.attributes).where(o.id.in_(ids))
    return {row.id: {"system": row.system, "attributes": row.attributes or {}} for row in conn.execute(stmt)}


def create_job(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(insert(action_jobs).values(**row))


def job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(action_jobs).where(action_jobs.c.id == job_id)).first()
    return dict(row._mapping) if row else None


def job_progress(conn: Connection, job_id: str, succeeded: int, failed: int, now: datetime, skipped: int = 0) -> str:
    """Count finished items; returns the job's status, so a worker sees a cancel request at once.
    An item found already done counts in ``done`` only: ``done - succeeded - failed`` of them."""
    j = action_jobs.c
    conn.execute(
        update(action_jobs)
        .where(j.id == job_id)
        .values(
            done=j.done + succeeded + failed + skipped,
            succeeded=j.succeeded + succeeded,
            failed=j.failed + failed,
            updated_at=now,
        )
    )
    return str(conn.execute(select(j.status).where(j.id == job_id)).scalar_one())


def job_reasons(conn: Connection, job_id: str) -> tuple[Counter[str], Counter[str]]:
    """Why a bulk job's items failed, and why others were found already done: a sent action's
    failure is on its action row; an item refused or skipped before anything was sent only in
    the audit log, whose entry says ``skipped`` when it needed no doing."""
    log = audit_log.c
    sent = select(a.outcome).where(and_(a.job_id == job_id, a.status == "failed"))
    refused = select(log.detail).where(
        and_(log.detail["job_id"].as_string() == job_id, log.result.in_(("refused", "failed")))
    )
    failed: Counter[str] = Counter(
        str((outcome or {}).get("reason") or "no reason recorded") for (outcome,) in conn.execute(sent)
    )
    skipped: Counter[str] = Counter()
    for (detail,) in conn.execute(refused):
        if detail.get("skipped"):
            skipped[str(detail["skipped"])] += 1
        elif "action_id" not in detail:
            failed[str(detail.get("reason") or "no reason recorded")] += 1
    return failed, skipped


def set_job_status(
    conn: Connection, job_id: str, status: str, now: datetime, *, only_from: tuple[str, ...] = ()
) -> bool:
    j = action_jobs.c
    stmt = update(action_jobs).where(j.id == job_id)
    if only_from:
        stmt = stmt.where(j.status.in_(only_from))
    finished = now if status in ("cancelled", "finished") else None
    return conn.execute(stmt.values(status=status, updated_at=now, finished_at=finished)).rowcount == 1


def stalled_jobs(conn: Connection, before: datetime) -> list[str]:
    """Bulk jobs still running or cancelling with no progress since ``before``: their process ended."""
    j = action_jobs.c
    stmt = select(j.id).where(and_(j.status.in_(("running", "cancelling")), j.updated_at < before))
    return list(conn.execute(stmt).scalars())


def open_exceptions_in(conn: Connection, categories: list[str]) -> list[dict[str, Any]]:
    """Open exceptions of the given categories, with their automatic attempts so far (for the policy)."""
    automatic = (
        select(func.count())
        .select_from(actions)
        .where(a.exception_id == e.id, a.kind == "retry", a.actor.like("policy:%"))
        .scalar_subquery()
    )
    stmt = (
        select(
            e.id,
            e.category,
            e.last_seen_at,
            e.opened_at,
            e.observation_id,
            e.transaction_id,
            automatic.label("automatic_attempts"),
        )
        .where(e.status == "open", e.category.in_(categories))
        .order_by(e.last_seen_at)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


CIRCUIT_CHANGES = ("circuit opened", "circuit probe", "circuit closed")
"""The audit log's record of a partner's circuit for automatic retries (``actions.breaker``)."""
CIRCUIT_MEMORY = timedelta(hours=24)
"""How far back the audit log is read for circuits: an open one records a probe or closes well within it."""


def circuit_trail(conn: Connection, actor: str, since: datetime) -> list[dict[str, Any]]:
    """The automatic retries' finished attempts and the circuits' changes since ``since``, in the
    order they were written (the audit log's index on ``at`` bounds the read; see ``_written_order``)."""
    log = audit_log.c
    stmt = (
        select(log.id, log.at, log.action, log.target, log.result, log.detail)
        .where(
            log.at >= since,
            log.actor == actor,
            (log.action.in_(CIRCUIT_CHANGES)) | ((log.action == "retry") & log.result.in_(("succeeded", "failed"))),
        )
        .order_by(log.at)
    )
    return [dict(r._mapping) for r in _written_order(conn.execute(stmt).all())]


def _written_order(rows: list[Any]) -> list[Any]:
    """Rows read along the index on ``at``, put in the order they were written: asked to order by id,
    SQLite scans the whole audit log instead of the last day of it."""
    return sorted(rows, key=lambda row: row.id)


def circuits_open(conn: Connection, now: datetime) -> dict[str, tuple[bool, datetime]]:
    """Each partner whose circuit changed within ``CIRCUIT_MEMORY``: whether it is open now, and
    since when it is as it is (for /metrics; the policy reads the whole trail)."""
    log = audit_log.c
    stmt = (
        select(log.id, log.target, log.action, log.at)
        .where(log.at >= now - CIRCUIT_MEMORY, log.action.in_(CIRCUIT_CHANGES))
        .order_by(log.at)
    )
    found: dict[str, tuple[bool, datetime]] = {}
    for _, partner, change, at in _written_order(conn.execute(stmt).all()):
        if change == "circuit closed":
            found[partner] = (False, as_utc(at))
        elif change == "circuit opened" or partner not in found:
            found[partner] = (True, as_utc(at))
    return found


@dataclass(frozen=True)
class HeldCircuit:
    """A partner whose circuit holds its automatic retries now, as its own audit entries tell it."""

    partner: str
    opened_at: datetime | None
    """When it opened (None: more than ``CIRCUIT_MEMORY`` ago, probed ever since)."""
    reason: str
    """Why it opened, as the opening entry says it: the failures in a row and the partner's last error
    (opened before the day read: what its first probe within it found)."""
    probed_at: datetime
    """When it opened or last let a probe through: the next probe goes a cool-down later."""
    probes: int
    """Probes sent since it opened; each found the partner still down, or it would have closed."""


def circuits_held(conn: Connection, now: datetime) -> dict[str, HeldCircuit]:
    """Each partner whose circuit is open now (its last change within ``CIRCUIT_MEMORY`` is no close),
    for the dashboard: the circuits' own entries alone, a handful a day, as ``circuits_open`` reads
    them for /metrics, so both say the same."""
    log = audit_log.c
    stmt = (
        select(log.id, log.target, log.action, log.at, log.detail)
        .where(log.at >= now - CIRCUIT_MEMORY, log.action.in_(CIRCUIT_CHANGES))
        .order_by(log.at)
    )
    held: dict[str, HeldCircuit] = {}
    for _, partner, change, at, detail in _written_order(conn.execute(stmt).all()):
        at = as_utc(at)
        if change == "circuit closed":
            held.pop(partner, None)
        elif change == "circuit opened":
            held[partner] = HeldCircuit(partner, at, str((detail or {}).get("reason") or ""), at, 0)
        else:  # a probe: opened before, within the day read or (probed for longer) before it
            said = str((detail or {}).get("reason") or "")
            was = held.get(partner) or HeldCircuit(partner, None, said, at, 0)
            held[partner] = replace(was, probed_at=at, probes=was.probes + 1)
    return held
