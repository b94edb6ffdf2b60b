"""Named reads and writes of the correlator: new observations, transaction keys, members,
transactions and exceptions. The correlator holds no SQL of its own."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, Text, and_, delete, exists, select, type_coerce

from syncwatch.store.bulk import chunks, insert_many
from syncwatch.store.schema import actions, business_keys, exceptions, observations, transaction_keys, transactions
from syncwatch.store.writes import upsert_insert

Node = tuple[str, str]
TRACE = "trace"
# Times and attributes come back as the driver gives them: the correlator parses only what it uses.
MEMBER_COLUMNS = (
    observations.c.id,
    observations.c.natural_id,
    observations.c.kind,
    observations.c.system,
    observations.c.operation,
    type_coerce(observations.c.start_time, String).label("start_time"),
    observations.c.outcome,
    observations.c.status_code,
    observations.c.error_message,
    observations.c.duplicates,
    type_coerce(observations.c.attributes, Text).label("attributes"),
    observations.c.trace_id,
)


@dataclass(frozen=True, slots=True)
class LinkRow:
    """What linking needs of a new observation: its id, identity keys and trace id."""

    id: int
    keys: tuple[Node, ...]
    trace_id: str | None


CORRELATOR_LOCK = 7_164_020_812  # arbitrary, constant: held by the one instance correlating now


def claim_correlation(conn: Connection) -> bool:
    """Whether this transaction may correlate: on PostgreSQL, several `serve` instances share the
    database and only the one holding the advisory lock runs a batch; SQLite's write lock (BEGIN
    IMMEDIATE) already lets one writer in at a time."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({CORRELATOR_LOCK})").scalar())


def new_observations(conn: Connection, after_id: int, limit: int) -> list[LinkRow]:
    """The next ``limit`` observations after ``after_id``: ids, trace ids and identity keys
    (read from the business_keys index, so no JSON is decoded)."""
    o = observations.c
    heads = conn.execute(select(o.id, o.trace_id).where(o.id > after_id).order_by(o.id).limit(limit)).all()
    if not heads:
        return []
    bk = business_keys.c
    keys: dict[int, list[Node]] = defaultdict(list)
    stmt = select(bk.observation_id, bk.key_type, bk.value).where(
        and_(bk.observation_id > after_id, bk.observation_id <= heads[-1].id)
    )
    for oid, key_type, value in conn.execute(stmt):
        keys[oid].append((key_type, value))
    return [LinkRow(oid, tuple(keys.get(oid, ())), trace) for oid, trace in heads]


def member_rows(conn: Connection, after_id: int, up_to_id: int) -> list[Any]:
    """Member columns of every observation with an id in (after_id, up_to_id]."""
    o = observations.c
    return conn.execute(select(*MEMBER_COLUMNS).where(and_(o.id > after_id, o.id <= up_to_id))).all()


def redelivered_since(conn: Connection, since: datetime) -> list[LinkRow]:
    """Observations delivered again after ``since``: their duplicate count changed since a pass
    last saw them (a partner sending the same notice twice)."""
    o, bk = observations.c, business_keys.c
    heads = conn.execute(select(o.id, o.trace_id).where(o.redelivered_at > since)).all()
    keys: dict[int, list[Node]] = defaultdict(list)
    for chunk in chunks([oid for oid, _ in heads]):
        for oid, key_type, value in conn.execute(
            select(bk.observation_id, bk.key_type, bk.value).where(bk.observation_id.in_(chunk))
        ):
            keys[oid].append((key_type, value))
    return [LinkRow(oid, tuple(keys.get(oid, ())), trace) for oid, trace in heads]


def transactions_of_nodes(conn: Connection, nodes: Iterable[Node]) -> list[tuple[str, str, str]]:
    """(transaction id, key type, value) for every stored transaction holding one of ``nodes``."""
    wanted = set(nodes)
    found = []
    c = transaction_keys.c
    for chunk in chunks(sorted({value for _, value in wanted})):
        rows = conn.execute(select(c.transaction_id, c.key_type, c.value).where(c.value.in_(chunk)))
        found.extend(tuple(r) for r in rows if (r.key_type, r.value) in wanted)
    return found


def keys_of_transactions(conn: Connection, ids: Iterable[str]) -> list[tuple[str, str, str]]:
    c = transaction_keys.c
    found = []
    for chunk in chunks(sorted(set(ids))):
        found.extend(
            tuple(r)
            for r in conn.execute(select(c.transaction_id, c.key_type, c.value).where(c.transaction_id.in_(chunk)))
        )
    return found


def observations_of_nodes(
    conn: Connection, nodes: Iterable[Node], up_to_id: int | None = None
) -> tuple[list[Any], list[tuple[int, Node]]]:
    """The observations (up to ``up_to_id``, when given) carrying any of ``nodes`` — identity keys
    or trace ids — and which node each carries: (member rows, [(observation id, node)])."""
    keys = sorted({n for n in nodes if n[0] != TRACE})
    traces = sorted({n[1] for n in nodes if n[0] == TRACE})
    links: list[tuple[int, Node]] = []
    bk, o = business_keys.c, observations.c
    wanted = set(keys)
    # One-column IN: SQLite answers a row-value IN over (value, key_type) with a full scan.
    for chunk in chunks(sorted({v for _, v in keys})):
        stmt = select(bk.observation_id, bk.key_type, bk.value).where(bk.value.in_(chunk))
        if up_to_id is not None:
            stmt = stmt.where(bk.observation_id <= up_to_id)
        links.extend((oid, (t, v)) for oid, t, v in conn.execute(stmt) if (t, v) in wanted)
    for chunk in chunks(traces):
        stmt = select(o.id, o.trace_id).where(o.trace_id.in_(chunk))
        if up_to_id is not None:
            stmt = stmt.where(o.id <= up_to_id)
        links.extend((oid, (TRACE, trace)) for oid, trace in conn.execute(stmt))
    rows = []
    for chunk in chunks(sorted({oid for oid, _ in links})):
        rows.extend(conn.execute(select(*MEMBER_COLUMNS).where(o.id.in_(chunk))))
    return rows, links


def sla_states(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in chunks(sorted(set(ids))):
        stmt = select(transactions.c.id, transactions.c.sla_state).where(transactions.c.id.in_(chunk))
        found.update((tid, state) for tid, state in conn.execute(stmt))
    return found


def stored_exceptions(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for chunk in chunks(sorted(set(ids))):
        found.update((r.id, r) for r in conn.execute(select(exceptions).where(exceptions.c.id.in_(chunk))))
    return found


def exceptions_of(conn: Connection, transaction_ids: Iterable[str]) -> list[Any]:
    """(id, status, assignee, acted_on) of every stored exception of these transactions."""
    c = exceptions.c
    acted = exists().where(actions.c.exception_id == c.id)
    found: list[Any] = []
    for chunk in chunks(sorted(set(transaction_ids))):
        stmt = select(c.id, c.status, c.assignee, acted.label("acted_on")).where(c.transaction_id.in_(chunk))
        found.extend(conn.execute(stmt))
    return found


def replace_transactions(conn: Connection, rows: list[dict[str, Any]], keys: list[dict[str, str]]) -> None:
    """Write the recomputed transactions and their keys."""
    ids = [row["id"] for row in rows]
    for chunk in chunks(ids):
        conn.execute(delete(transaction_keys).where(transaction_keys.c.transaction_id.in_(chunk)))
    if rows:
        stmt = upsert_insert(conn, transactions)
        columns = {name: stmt.excluded[name] for name in rows[0] if name != "id"}
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=columns), rows)
    insert_many(conn, transaction_keys, keys, ignore_conflicts_on=("transaction_id", "key_type", "value"))


def retire_transactions(conn: Connection, ids: Iterable[str]) -> None:
    """Drop transactions merged into others (their exceptions must have moved first: they cascade)."""
    for chunk in chunks(sorted(set(ids))):
        conn.execute(delete(transactions).where(transactions.c.id.in_(chunk)))


def upsert_exceptions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = upsert_insert(conn, exceptions)
    columns = {name: stmt.excluded[name] for name in rows[0] if name != "id"}
    conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=columns), rows)


def drop_exceptions(conn: Connection, ids: Sequence[str]) -> None:
    for chunk in chunks(sorted(set(ids))):
        conn.execute(delete(exceptions).where(exceptions.c.id.in_(chunk)))


def due_for_sla_check(conn: Connection, now: datetime, limit: int) -> list[str]:
    c = transactions.c
    stmt = (
        select(c.id)
        .where(and_(c.sla_check_at.is_not(None), c.sla_check_at <= now))
        .order_by(c.sla_check_at)
        .limit(limit)
    )
    return list(conn.execute(stmt).scalars())
