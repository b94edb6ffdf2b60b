"""Named reads for the dashboard pages: the database aggregates, pages and limits; pages get small frames.

Every query here is bounded: by an index (exceptions by status and age, transactions by SLA state,
observations by system and time, keys by value), by a time window, or by a LIMIT. The hot ones are
checked with EXPLAIN in tests/test_dashboard_queries.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Float, String, and_, case, cast, exists, func, literal, or_, select, union
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.functions import FunctionElement

from syncwatch.model import PARTNER_CALLED
from syncwatch.store import actions as action_reads
from syncwatch.store import alerts as alert_outbox
from syncwatch.store import quiet, reads
from syncwatch.store.database import Store
from syncwatch.store.filters import ACTIVE_EXCEPTION, QueueFilter, conditions, transactions_with_key
from syncwatch.store.kpis import NO_CHANNEL, NO_PARTNER
from syncwatch.store.schema import (
    actions,
    alerts,
    audit_log,
    business_keys,
    exceptions,
    observations,
    quarantine,
    transaction_keys,
    transactions,
)
from syncwatch.store.traces import in_traces

t = transactions.c
e = exceptions.c
o = observations.c
LATE = ("at_risk", "breached")
OPEN_SLA = ("on_track", "at_risk", "breached")
OBSERVATION_COLUMNS = (
    "id",
    "kind",
    "system",
    "operation",
    "start_time",
    "end_time",
    "outcome",
    "status_code",
    "error_message",
    "trace_id",
    "span_id",
    "parent_id",
)


def frame(store: Store, stmt: Any) -> pd.DataFrame:
    """Run one statement and return its rows as a DataFrame with the statement's column names."""
    with store.engine.connect() as conn:
        result = conn.execute(stmt)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def scalar(store: Store, stmt: Any) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(stmt).scalar()


def has_data(store: Store) -> bool:
    """True once anything was collected: a fresh database gets the how-to-start page instead."""
    return bool(scalar(store, select(exists().where(o.id.is_not(None)))))


def as_of(store: Store) -> datetime | None:
    """The correlator's clock: its latest change (indexed), so replayed history reads as of its own end."""
    return scalar(store, select(func.max(t.updated_at)))


# --- Operations -------------------------------------------------------------------------------

# What a transaction without a channel or partner shows: its first stage was not seen (the order
# came in through the ERP, say), or it has not reached the stage that hands it to a partner.


def open_by_sla(store: Store) -> pd.DataFrame:
    """Open transactions per type, channel, partner and SLA state: one small grid the page slices every way."""
    channel = func.coalesce(t.channel, NO_CHANNEL).label("channel")
    partner = func.coalesce(t.partner, NO_PARTNER).label("partner")
    stmt = (
        select(t.type, channel, partner, t.sla_state, func.count().label("transactions"))
        .where(and_(t.sla_state.in_(OPEN_SLA), t.status == "open"))
        .group_by(t.type, channel, partner, t.sla_state)
    )
    return frame(store, stmt)


def late_transactions(store: Store, limit: int | None = 50) -> pd.DataFrame:
    """Open at-risk and breached transactions, least time left first, each with the category of an
    active exception it has (None: nothing to act on, as when only time has made it late); ``limit``
    None: every one."""
    active = (
        select(func.min(e.category))
        .where(and_(e.transaction_id == t.id, e.status.in_(ACTIVE_EXCEPTION)))
        .scalar_subquery()
    )
    stmt = (
        select(
            active.label("exception"),
            t.id,
            t.type,
            t.sla_state,
            t.stage_at_fault,
            t.due_at,
            t.channel,
            t.partner,
            t.customer,
            t.order_value,
        )
        .where(and_(t.sla_state.in_(LATE), t.status == "open"))
        .order_by(t.due_at.is_(None), t.due_at, t.id)
        .limit(limit)
    )
    return frame(store, stmt)


def late_count(store: Store) -> int:
    """How many open transactions are at risk or breached (``late_transactions`` lists the first)."""
    stmt = select(func.count()).select_from(transactions).where(and_(t.sla_state.in_(LATE), t.status == "open"))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def stage_delays(store: Store, now: datetime) -> pd.DataFrame:
    """Open orders late or at risk, per stage at fault and partner (a return's or an inventory
    sync's stages are not an order's; a finished order is no longer anyone's to chase). ``behind``:
    a breach whose late stage the order has since passed, with nothing overdue now (its stage at
    fault, 'released was late', is behind it and no longer where it waits)."""
    partner = func.coalesce(t.partner, NO_PARTNER).label("partner")
    stage = func.coalesce(t.stage_at_fault, "unknown").label("stage")
    behind = case((and_(t.sla_state == "breached", or_(t.due_at.is_(None), t.due_at >= now)), 1), else_=0)
    stmt = (
        select(stage, partner, behind.label("behind"), func.count().label("transactions"))
        .where(and_(t.type == "order", t.sla_state.in_(LATE), t.status == "open"))
        .group_by(stage, partner, behind)
    )
    return frame(store, stmt)


def throughput(store: Store, since: datetime, until: datetime) -> pd.DataFrame:
    """Per hour: orders started and completed; the backlog is derived from the open count now (orders,
    as Operations counts them: returns and inventory syncs beside them put the line 100 above its card)."""
    started = _hour(store, t.started_at)
    done = _hour(store, t.last_seen_at)
    # The correlator changes a transaction after its observations arrive, so updated_at is never much older
    # than started_at or last_seen_at (an hour covers allowed clock skew): a bound the updated_at index serves.
    touched = and_(t.updated_at >= since - timedelta(hours=1), t.type == "order")
    begun = select(started.label("hour"), func.count().label("started"), literal(0).label("completed")).where(
        and_(touched, t.started_at >= since, t.started_at < until)
    )
    finished = select(done.label("hour"), literal(0).label("started"), func.count().label("completed")).where(
        and_(touched, t.status == "complete", t.last_seen_at >= since, t.last_seen_at < until)
    )
    both = union(begun.group_by(started), finished.group_by(done)).subquery()
    stmt = (
        select(both.c.hour, func.sum(both.c.started).label("started"), func.sum(both.c.completed).label("completed"))
        .group_by(both.c.hour)
        .order_by(both.c.hour)
    )
    return frame(store, stmt)


def open_count(store: Store) -> int:
    """Open orders (what the throughput chart's backlog line ends at)."""
    is_open = and_(t.sla_state.in_(OPEN_SLA), t.status == "open", t.type == "order")
    return int(scalar(store, select(func.count()).where(is_open)) or 0)


def failing_systems(store: Store) -> pd.DataFrame:
    """Systems with active exceptions, most first: the partners to call out, with how many of each
    category (a system with stuck orders or rejected data is not the same call as one that is down),
    and when the oldest and the newest opened (a partner failing now, or an old backlog)."""
    stmt = (
        select(
            e.system,
            e.category,
            func.count().label("exceptions"),
            func.min(e.opened_at).label("oldest"),
            func.max(e.opened_at).label("newest"),
        )
        .where(e.status.in_(ACTIVE_EXCEPTION))
        .group_by(e.system, e.category)
    )
    rows = frame(store, stmt)
    if rows.empty:
        return pd.DataFrame(columns=["system", "exceptions", "oldest", "newest", "categories"])
    rows = rows.sort_values(["exceptions", "category"], ascending=[False, True])
    described = rows.assign(part=rows["exceptions"].astype(str) + " " + rows["category"].str.replace("_", " "))
    by_system = described.groupby("system").agg(
        exceptions=("exceptions", "sum"),
        oldest=("oldest", "min"),
        newest=("newest", "max"),
        categories=("part", ", ".join),
    )
    return by_system.reset_index().sort_values(["exceptions", "system"], ascending=[False, True], ignore_index=True)


# --- Exceptions ---------------------------------------------------------------------------------


def _queue_base(f: QueueFilter) -> Select[Any]:
    joined = exceptions.join(transactions, t.id == e.transaction_id)
    return select(e.id).select_from(joined).where(and_(*conditions(f)))


class amount(FunctionElement[float]):
    """A decimal kept as text (``order_value``) as a number to sort by; text that is no plain
    decimal sorts as none, on SQLite as on PostgreSQL (where a bare CAST would fail the query)."""

    type = Float()
    inherit_cache = True


@compiles(amount, "sqlite")
def _amount_sqlite(element: amount, compiler: Any, **kw: Any) -> str:
    value = f"trim({compiler.process(element.clauses, **kw)})"
    plain = f"{value} GLOB '*[0-9]*' AND {value} NOT GLOB '*[^0-9.]*' AND {value} NOT GLOB '*.*.*'"
    return f"CASE WHEN {plain} THEN CAST({value} AS REAL) END"


@compiles(amount, "postgresql")
def _amount_postgresql(element: amount, compiler: Any, **kw: Any) -> str:
    value = f"trim({compiler.process(element.clauses, **kw)})"
    return f"CASE WHEN {value} ~ '^[0-9]+(\\.[0-9]+)?$' THEN CAST({value} AS DOUBLE PRECISION) END"


ORDER_VALUE = amount(t.order_value)
# How the queue can be ordered: each needs the database, since only the first rows are fetched.
QUEUE_ORDERS = {
    "newest first": (e.opened_at.desc(), e.id),
    "oldest first": (e.opened_at, e.id),
    "least time left first": (t.due_at.is_(None), t.due_at, e.opened_at, e.id),
    "highest order value first": (ORDER_VALUE.is_(None), ORDER_VALUE.desc(), e.opened_at, e.id),
}


def exception_queue(
    store: Store, f: QueueFilter, limit: int = 200, order: str = "newest first", offset: int = 0
) -> pd.DataFrame:
    """``limit`` rows of the queue from row ``offset`` in ``order`` (one of QUEUE_ORDERS), with the
    business context an agent sorts by."""
    joined = exceptions.join(transactions, t.id == e.transaction_id)
    stmt = (
        select(
            e.id,
            e.opened_at,
            e.category,
            e.status,
            e.system,
            e.stage,
            e.summary,
            e.suggested_action,
            e.assignee,
            e.attempts,
            e.transaction_id,
            t.channel,
            t.partner,
            t.customer,
            t.order_value,
            t.sla_state,
            t.due_at,
        )
        .select_from(joined)
        .where(and_(*conditions(f)))
        .order_by(*QUEUE_ORDERS[order])
        .limit(limit)
        .offset(offset)
    )
    return frame(store, stmt)


def exception_count(store: Store, f: QueueFilter) -> int:
    return int(scalar(store, select(func.count()).select_from(_queue_base(f).subquery())) or 0)


def exception_ids(store: Store, f: QueueFilter) -> list[str]:
    """Every exception id matching the filter, for bulk plans (ids only, never whole rows)."""
    with store.engine.connect() as conn:
        return list(conn.execute(_queue_base(f)).scalars())


def exception_row(store: Store, exception_id: str) -> dict[str, Any] | None:
    """One exception with its transaction's SLA fields, as a plain dict (the action layer takes it too)."""
    joined = exceptions.join(transactions, t.id == e.transaction_id)
    stmt = (
        select(
            exceptions,
            t.type,
            t.current_stage,
            t.sla_state,
            t.due_at,
            t.stage_at_fault,
            t.channel,
            t.partner,
            t.customer,
            t.order_value,
            t.promised_at,
            t.stages,
        )
        .select_from(joined)
        .where(e.id == exception_id)
    )
    with store.engine.connect() as conn:
        row = conn.execute(stmt).first()
    return dict(row._mapping) if row else None


def exception_actions(store: Store, exception_id: str) -> pd.DataFrame:
    """What people and policies did about one exception, newest first, with what they asked
    (note, target) and what happened (the steps sent to partners)."""
    a = actions.c
    stmt = (
        select(a.id, a.kind, a.actor, a.status, a.attempts, a.requested_at, a.finished_at, a.request, a.outcome)
        .where(a.exception_id == exception_id)
        .order_by(a.requested_at.desc())
        .limit(50)
    )
    return frame(store, stmt)


def observation(store: Store, observation_id: int) -> dict[str, Any] | None:
    """One observation with its attributes and raw payload (what was sent)."""
    with store.engine.connect() as conn:
        row = conn.execute(select(observations).where(o.id == observation_id)).first()
    return dict(row._mapping) if row else None


# --- Transactions -------------------------------------------------------------------------------


def find_transactions(store: Store, key: str, limit: int = 50) -> pd.DataFrame:
    """Transactions carrying ``key`` (any identity key, or the transaction id itself)."""
    matching = transactions_with_key(key.strip()).subquery()
    stmt = (
        select(t.id, t.type, t.status, t.sla_state, t.current_stage, t.channel, t.partner, t.started_at)
        .where(t.id.in_(select(matching.c.transaction_id)))
        .order_by(t.started_at.desc())
        .limit(limit)
    )
    return frame(store, stmt)


def customer_transactions(store: Store, customer: str, limit: int = 200) -> pd.DataFrame:
    """A customer's transactions, newest first, whatever the case typed: for a caller who knows
    their account number and not the order's. A scan, so only run after no key matched."""
    stmt = (
        select(t.id, t.type, t.status, t.sla_state, t.current_stage, t.channel, t.partner, t.order_value, t.started_at)
        .where(func.upper(t.customer) == customer.strip().upper())
        .order_by(t.started_at.desc())
        .limit(limit)
    )
    return frame(store, stmt)


SIMILAR_FROM = 4  # characters a fragment needs before keys are scanned for it: fewer would match everything


def similar_keys(store: Store, fragment: str, limit: int = 10) -> pd.DataFrame:
    """Identity keys containing ``fragment``, whatever their case: for a search that matched no key
    exactly (a lower-cased PO, a number without its prefix). A scan, so only run after that miss."""
    fragment = fragment.strip()
    if len(fragment) < SIMILAR_FROM:
        return pd.DataFrame(columns=["value", "key_type", "transaction_id"])
    tk = transaction_keys.c
    escaped = fragment.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    stmt = (
        select(tk.value, tk.key_type, tk.transaction_id)
        .where(and_(tk.key_type != "trace", func.lower(tk.value).like(f"%{escaped}%", escape="\\")))
        .order_by(tk.value)
        .limit(limit)
    )
    return frame(store, stmt)


def transaction_row(store: Store, transaction_id: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(transactions).where(t.id == transaction_id)).first()
    return dict(row._mapping) if row else None


def transaction_key_list(store: Store, transaction_id: str) -> pd.DataFrame:
    tk = transaction_keys.c
    stmt = (
        select(tk.key_type, tk.value)
        .where(and_(tk.transaction_id == transaction_id, tk.key_type != "trace"))
        .order_by(tk.key_type, tk.value)
    )
    return frame(store, stmt)


def transaction_exceptions(store: Store, transaction_id: str) -> pd.DataFrame:
    stmt = (
        select(e.id, e.opened_at, e.category, e.status, e.system, e.stage, e.summary, e.assignee, e.resolved_at)
        .where(e.transaction_id == transaction_id)
        .order_by(e.opened_at)
    )
    return frame(store, stmt)


def transaction_actions(store: Store, transaction_id: str) -> pd.DataFrame:
    a = actions.c
    stmt = (
        select(a.id, a.exception_id, a.kind, a.actor, a.status, a.requested_at, a.finished_at, a.request, a.outcome)
        .select_from(actions.join(exceptions, e.id == a.exception_id))
        .where(e.transaction_id == transaction_id)
        .order_by(a.requested_at.desc())  # newest first, as an exception's history reads
        .limit(200)
    )
    return frame(store, stmt)


def transaction_observations(store: Store, transaction_id: str, limit: int = 500) -> pd.DataFrame:
    """Every observation of a transaction (sharing one of its keys or trace ids), in time order."""
    tk, bk = transaction_keys.c, business_keys.c
    by_key = (
        select(bk.observation_id.label("id"))
        .select_from(business_keys.join(transaction_keys, and_(tk.value == bk.value, tk.key_type == bk.key_type)))
        .where(and_(tk.transaction_id == transaction_id, tk.key_type != "trace"))
    )
    traces = select(tk.value).where(and_(tk.transaction_id == transaction_id, tk.key_type == "trace"))
    by_trace = in_traces(store.dialect, traces)
    ids = union(by_key, by_trace).subquery()
    stmt = (
        select(*(o[name] for name in OBSERVATION_COLUMNS))
        .where(o.id.in_(select(ids.c.id)))
        .order_by(o.start_time, o.id)
        .limit(limit)
    )
    return frame(store, stmt)


# --- Endpoints ----------------------------------------------------------------------------------


def systems(store: Store) -> list[str]:
    """Distinct reporting systems by skipping along the (system, start_time) index: a few seeks, no scan."""
    with store.engine.connect() as conn:
        return quiet.distinct_systems(conn)


def _window(names: list[str], since: datetime, until: datetime) -> ColumnElement[bool]:
    # Requests are spans and access-log lines (log records with an HTTP status and a duration); other
    # log records are not, not even one quoting a status (the ERP logging a partner's 429 at it).
    request = or_(o.kind == "span", and_(o.kind == "log", o.status_code.is_not(None), o.end_time.is_not(None)))
    return and_(o.system.in_(names), o.start_time >= since, o.start_time < until, request)


def endpoint_stats(store: Store, since: datetime, until: datetime) -> pd.DataFrame:
    """Per system, operation and peer in the window: requests, errors (of which 429s and other 4xx
    refusals), p50/p95 latency, the last error and the last success. ``peer`` is whom a caller's
    client span called (the partner syncwatch's own calls name, else the host addressed), so one
    caller's calls to two partners are two rows; empty for a system's own endpoints."""
    names = systems(store)
    if not names:
        return pd.DataFrame()
    counts = frame(store, _endpoint_counts(names, since, until))
    if counts.empty:
        return counts
    # A call both traced and logged (a server span and the gateway's access-log line) is one call:
    # per endpoint the report that saw more of them counts, as an exception counts attempts.
    owners = _gateway_owners(counts)  # before the folding below, which may keep a traced system's log row
    counts = counts.sort_values("requests", ascending=False, kind="stable").drop_duplicates(ENDPOINT)
    counts = _as_gateway_views(counts, owners).sort_values(ENDPOINT, kind="stable")
    counts["logged"] = counts["logged"].astype(bool)  # which report counts: the timeline draws the same one
    latency = _as_gateway_views(frame(store, _endpoint_latency(store, names, since, until)), owners)
    last = _as_gateway_views(frame(store, _last_errors(names, since, until)), owners)
    merged = counts.merge(latency, on=[*ENDPOINT, "gateway"], how="left")
    return merged.merge(last, on=[*ENDPOINT, "gateway"], how="left")


def _gateway_owners(counts: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(gateway, operation) → the system whose endpoint a gateway's access-log lines are. A system
    that only logs requests may be a gateway in front of traced systems (nginx before our own APIs):
    where one traced system serves nearly all of an operation, and about as many requests of it as
    the lines count, they are the same calls seen from the gateway. Counted apart, each read as two
    endpoints, the ERP's and the gateway's. A partner known only by its lines (a 3PL behind the Kong
    edge) serves calls of its own, as many or as few as they are: it keeps its rows."""
    own = counts[(counts["logged"] == 0) & (counts["peer"] == "")]
    traced = set(counts.loc[counts["logged"] == 0, "system"])
    owner: dict[str, tuple[str, int]] = {}
    for operation, served in own.groupby("operation"):
        top = served.loc[served["requests"].idxmax()]
        if top["requests"] >= OWNER_SHARE * served["requests"].sum():
            owner[operation] = (top["system"], int(top["requests"]))
    lines = counts[(counts["logged"] == 1) & (counts["peer"] == "") & ~counts["system"].isin(traced)]
    found = {}
    for gateway, operation, requests in zip(lines["system"], lines["operation"], lines["requests"], strict=True):
        system, served_requests = owner.get(operation, ("", 0))
        if system and abs(requests - served_requests) <= (1 - OWNER_SHARE) * max(requests, served_requests):
            found[(gateway, operation)] = system
    return found


OWNER_SHARE = 0.9  # of an operation's requests a system must serve, and a gateway's lines match, to be one endpoint


def _as_gateway_views(rows: pd.DataFrame, owners: dict[tuple[str, str], str]) -> pd.DataFrame:
    """``rows`` with a gateway's lines of another system's endpoint as a caller's view of it: the
    system called as their peer, and ``gateway`` set (their own peer is none: they are log lines)."""
    keys = list(zip(rows["system"], rows["operation"], strict=True))
    called = [owners.get(key) if peer == "" else None for key, peer in zip(keys, rows["peer"], strict=True)]
    gateway = pd.Series([c is not None for c in called], index=rows.index, dtype=bool)
    peer = pd.Series([c or p for c, p in zip(called, rows["peer"], strict=True)], index=rows.index, dtype=object)
    return rows.assign(peer=peer, gateway=gateway)


ENDPOINT = ["system", "operation", "peer"]


def _peer() -> ColumnElement[str]:
    """Whom a client span called: the partner syncwatch's own calls name, else the host addressed."""
    attributes = o.attributes
    called = func.coalesce(attributes[PARTNER_CALLED].as_string(), attributes["server.address"].as_string())
    return func.coalesce(case((attributes["span.kind"].as_string() == "client", called)), literal("")).label("peer")


def _endpoint_counts(names: list[str], since: datetime, until: datetime) -> Select[Any]:
    # Grouped over a subquery: PostgreSQL cannot tell that the peer in GROUP BY, with its own bound
    # parameters, is the one selected.
    logged = case((o.kind == "log", 1), else_=0).label("logged")
    rows = select(o.system, o.operation, _peer(), logged, o.outcome, o.status_code, o.start_time).where(
        _window(names, since, until)
    )
    r = rows.subquery().c
    return select(
        r.system,
        r.operation,
        r.peer,
        r.logged,
        func.count().label("requests"),
        func.sum(case((r.outcome == "error", 1), else_=0)).label("errors"),
        func.sum(case((r.status_code == 429, 1), else_=0)).label("throttled"),
        func.sum(case((and_(r.outcome == "error", _refused(r.status_code)), 1), else_=0)).label("rejected"),
        func.sum(case((and_(r.outcome == "error", _unanswered(r.status_code)), 1), else_=0)).label("failed"),
        func.max(case((r.outcome == "ok", r.start_time))).label("last_ok_at"),
        func.max(case((and_(r.outcome == "error", _unanswered(r.status_code)), r.start_time))).label("last_failed_at"),
    ).group_by(r.system, r.operation, r.peer, r.logged)


def _refused(status: Any) -> ColumnElement[bool]:
    """An answer refusing the request as it was (4xx), other than a 429's 'not now': the endpoint works."""
    return and_(status >= 400, status < 500, status != 429)


def _unanswered(status: Any) -> ColumnElement[bool]:
    """A failed call without a 4xx (a 429 among them), which would be the endpoint answering: no answer, or a 5xx."""
    return or_(status.is_(None), status < 400, status >= 500)


def _duration_ms(store: Store) -> ColumnElement[Any]:
    if store.dialect == "sqlite":
        return (func.julianday(o.end_time) - func.julianday(o.start_time)) * 86_400_000.0
    return func.extract("epoch", o.end_time - o.start_time) * 1000.0


def _endpoint_latency(store: Store, names: list[str], since: datetime, until: datetime) -> Select[Any]:
    """Nearest-rank p50 and p95 with window functions, so only one row per endpoint leaves the database."""
    part = (o.system, o.operation, _peer())
    duration = cast(_duration_ms(store), Float)
    ranked = (
        select(
            o.system,
            o.operation,
            _peer(),
            duration.label("ms"),
            func.row_number().over(partition_by=part, order_by=duration).label("rn"),
            func.count().over(partition_by=part).label("n"),
        )
        .where(and_(_window(names, since, until), o.end_time.is_not(None)))
        .subquery()
    )
    r = ranked.c
    return select(
        r.system,
        r.operation,
        r.peer,
        func.max(case((r.rn == (r.n * 50 + 99) // 100, r.ms))).label("p50_ms"),
        func.max(case((r.rn == (r.n * 95 + 99) // 100, r.ms))).label("p95_ms"),
    ).group_by(r.system, r.operation, r.peer)


def _last_errors(names: list[str], since: datetime, until: datetime) -> Select[Any]:
    part = (o.system, o.operation, _peer())
    ranked = (
        select(
            o.system,
            o.operation,
            _peer(),
            o.start_time.label("last_error_at"),
            func.coalesce(o.error_message, literal("HTTP ") + cast(o.status_code, String)).label("last_error"),
            func.row_number().over(partition_by=part, order_by=(o.start_time.desc(), o.id.desc())).label("rn"),
        )
        .where(and_(_window(names, since, until), o.outcome == "error"))
        .subquery()
    )
    r = ranked.c
    return select(r.system, r.operation, r.peer, r.last_error_at, r.last_error).where(r.rn == 1)


def endpoint_timeline(
    store: Store,
    system: str,
    operation: str,
    since: datetime,
    until: datetime,
    peer: str = "",
    gateway: bool = False,
    logged: bool = False,
) -> pd.DataFrame:
    """Requests, errors, 429s and other refusals per time bucket for one endpoint row of
    ``endpoint_stats`` (minutes for a short window, else hours); ``gateway``: the row is a gateway's
    lines, whose peer it named; ``logged``: the row counts log lines, not spans. A call both traced
    and logged counts once in the table, by the report that saw more: drawn from both, the timeline
    showed it twice."""
    peer = "" if gateway else peer
    kind = "log" if logged or gateway else "span"
    minutes = until - since <= timedelta(hours=2)
    bucket = (_minute(store, o.start_time) if minutes else _hour(store, o.start_time)).label("bucket")
    stmt = (
        select(
            bucket,
            func.count().label("requests"),
            func.sum(case((o.outcome == "error", 1), else_=0)).label("errors"),
            func.sum(case((o.status_code == 429, 1), else_=0)).label("throttled"),
            func.sum(case((and_(o.outcome == "error", _refused(o.status_code)), 1), else_=0)).label("rejected"),
            func.sum(case((and_(o.outcome == "error", _unanswered(o.status_code)), 1), else_=0)).label("failed"),
        )
        .where(and_(_window([system], since, until), o.operation == operation, _peer() == peer, o.kind == kind))
        .group_by(bucket)
        .order_by(bucket)
    )
    return frame(store, stmt)


def _hour(store: Store, column: Any) -> ColumnElement[str]:
    if store.dialect == "sqlite":
        return func.substr(column, 1, 13)
    return func.to_char(column, "YYYY-MM-DD HH24")


def _minute(store: Store, column: Any) -> ColumnElement[str]:
    if store.dialect == "sqlite":
        return func.substr(column, 1, 16)
    return func.to_char(column, "YYYY-MM-DD HH24:MI")


# --- Admin --------------------------------------------------------------------------------------


def quarantine_recent(store: Store, limit: int = 100) -> pd.DataFrame:
    """The items first rejected most recently, with how many times each was delivered."""
    q = quarantine.c
    stmt = (
        select(
            q.id,
            q.received_at,
            q.last_received_at,
            q.deliveries,
            q.source,
            q.position,
            q.reason,
            q.content_type,
            q.raw_size,
        )
        .order_by(q.received_at.desc(), q.id.desc())
        .limit(limit)
    )
    return frame(store, stmt)


def quarantine_totals(store: Store) -> tuple[int, int]:
    """(items kept, deliveries rejected) over the whole quarantine."""
    q = quarantine.c
    with store.engine.connect() as conn:
        items, deliveries = conn.execute(select(func.count(), func.coalesce(func.sum(q.deliveries), 0))).one()
    return int(items), int(deliveries)


def quarantine_by_reason(store: Store, limit: int = 10) -> pd.DataFrame:
    """The most frequent (source, reason) pairs, as ``syncwatch stats`` prints them."""
    with store.engine.connect() as conn:
        found = reads.quarantine_reasons(conn, limit)
    return pd.DataFrame(found, columns=["source", "reason", "items", "deliveries"])


def quarantine_raw(store: Store, item_id: int) -> bytes | None:
    return scalar(store, select(quarantine.c.raw).where(quarantine.c.id == item_id))


def alerts_recent(store: Store, limit: int = 100) -> pd.DataFrame:
    """The latest alerts with their delivery: sent, or attempts so far and the last error."""
    a = alerts.c
    stmt = select(a.id, a.created_at, a.kind, a.text, a.sent_at, a.attempts, a.last_attempt_at, a.last_error, a.link)
    return frame(store, stmt.order_by(a.id.desc()).limit(limit))


def alerts_given_up(store: Store) -> int:
    """Alerts the webhook never took, after every attempt: Admin offers to deliver them again."""
    with store.engine.connect() as conn:
        return alert_outbox.given_up(conn)


def alerts_undelivered(store: Store) -> int:
    """Alerts the webhook has not accepted: waiting for a delivery, or given up on."""
    return int(scalar(store, select(func.count()).where(alerts.c.sent_at.is_(None))) or 0)


def held_circuits(store: Store, now: datetime) -> dict[str, action_reads.HeldCircuit]:
    """The partners whose automatic retries are paused now (``actions.breaker``): the circuits' own
    audit entries of the last day, a handful, read by the audit log's index on time."""
    with store.engine.connect() as conn:
        return action_reads.circuits_held(conn, now)


def audit_recent(
    store: Store, limit: int = 200, actor: str | None = None, not_actor: str | None = None
) -> pd.DataFrame:
    """The newest entries, of ``actor`` alone or of everyone but ``not_actor`` where given."""
    a = audit_log.c
    stmt = select(a.id, a.at, a.actor, a.role, a.action, a.target, a.request_summary, a.result, a.detail).order_by(
        a.at.desc(), a.id.desc()
    )
    if actor:
        stmt = stmt.where(a.actor == actor)
    if not_actor:
        stmt = stmt.where(a.actor != not_actor)
    return frame(store, stmt.limit(limit))
