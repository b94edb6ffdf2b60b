"""Named reads and writes of the correlator: new observations, transaction keys, members,
transactions and exceptions. The correlator holds no SQL of its own.

The reads that scale with the backlog (link rows, member rows, stored transaction keys) and the
writes that scale with the transactions (transactions, their keys) run on the driver's cursor
with plain tuples: SQLAlchemy's per-row processing cost more than the whole correlation.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite

from syncwatch.store.bulk import chunks, driver_cursor, insert_tuples
from syncwatch.store.schema import actions, exceptions, transaction_keys, transactions
from syncwatch.store.writes import upsert_insert

Node = tuple[str, str]
TRACE = "trace"
# An observation as linking sees it: its id and its nodes, identity keys first, its trace id last.
LinkRow = tuple[int, tuple[Node, ...]]
# id, kind, system, operation, start (aware UTC), outcome, status_code, error_message, duplicates,
# attributes (JSON text).
MemberRow = tuple[int, str, str, str, datetime, str, int | None, str | None, int, str]
SCAN_FROM = 50_000  # nodes from which counting the stored keys is worth it
FETCH = 20_000  # rows per fetchmany: bounds the driver's buffers on a whole-backlog read
_MEMBER_COLUMNS = (
    "id, kind, system, operation, start_time, outcome, status_code, error_message, duplicates, {attributes}"
)


def _sql(conn: Connection, text: str) -> str:
    """``text`` with ``?`` placeholders in the driver's paramstyle and JSON columns read as text."""
    if conn.dialect.name == "postgresql":
        return text.replace("?", "%s").replace("{attributes}", "attributes::text")
    return text.replace("{attributes}", "attributes")


def _in(conn: Connection, count: int) -> str:
    """The membership test for a list parameter: ``= ANY(%s)`` on PostgreSQL, ``IN (?, …)`` on SQLite."""
    return "= ANY(?)" if conn.dialect.name == "postgresql" else f"IN ({', '.join('?' * count)})"


def _in_params(conn: Connection, values: Sequence[Any]) -> list[Any]:
    return [list(values)] if conn.dialect.name == "postgresql" else list(values)


def _fetch(conn: Connection, text: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
    with driver_cursor(conn) as cursor:
        cursor.execute(_sql(conn, text), params)
        while batch := cursor.fetchmany(FETCH):
            yield from batch


def _fetch_in(conn: Connection, text: str, values: Iterable[Any], params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``text`` (with ``{in}`` where the list goes, before ``params``) for every chunk of ``values``."""
    found: list[tuple[Any, ...]] = []
    for chunk in chunks(sorted(set(values))):
        found.extend(_fetch(conn, text.replace("{in}", _in(conn, len(chunk))), [*_in_params(conn, chunk), *params]))
    return found


def as_time(value: str | datetime) -> datetime:
    """A stored time as an aware UTC datetime: SQLite gives naive ISO text, PostgreSQL a timestamptz."""
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")  # several times faster than .replace(tzinfo=UTC)
    return value.astimezone(UTC)


CORRELATOR_LOCK = 7_164_020_812  # arbitrary, constant: held by the one instance correlating now


def claim_correlation(conn: Connection) -> bool:
    """Whether this transaction may correlate: on PostgreSQL, several `serve` instances share the
    database and only the one holding the advisory lock runs a batch; SQLite's write lock (BEGIN
    IMMEDIATE) already lets one writer in at a time."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({CORRELATOR_LOCK})").scalar())


def new_observations(conn: Connection, after_id: int, limit: int) -> list[LinkRow]:
    """The next ``limit`` observations after ``after_id``, as link rows (identity keys are read
    from the business_keys index, so no JSON is decoded)."""
    heads = list(
        _fetch(conn, "SELECT id, trace_id FROM observations WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
    )
    if not heads:
        return []
    sql = "SELECT observation_id, key_type, value FROM business_keys WHERE observation_id > ? AND observation_id <= ?"
    return _link_rows(heads, _fetch(conn, sql, (after_id, heads[-1][0])))


def redelivered_since(conn: Connection, since: datetime) -> list[LinkRow]:
    """Observations delivered again after ``since``: their duplicate count changed since a pass
    last saw them (a partner sending the same notice twice)."""
    heads = list(
        _fetch(conn, "SELECT id, trace_id FROM observations WHERE redelivered_at > ?", (_db_time(conn, since),))
    )
    sql = "SELECT observation_id, key_type, value FROM business_keys WHERE observation_id {in}"
    return _link_rows(heads, _fetch_in(conn, sql, [oid for oid, _ in heads]))


def _link_rows(heads: Iterable[tuple[int, str | None]], keys: Iterable[tuple[int, str, str]]) -> list[LinkRow]:
    """Link rows from (id, trace id) and (id, key type, value); equal nodes are one tuple, to spare memory."""
    nodes: dict[Node, Node] = {}
    by_id: dict[int, list[Node]] = defaultdict(list)
    for oid, key_type, value in keys:
        node = (key_type, value)
        by_id[oid].append(nodes.setdefault(node, node))
    rows = []
    for oid, trace in heads:
        own = by_id.pop(oid, [])
        if trace:
            node = (TRACE, trace)
            own.append(nodes.setdefault(node, node))
        rows.append((oid, tuple(own)))
    return rows


def member_rows(conn: Connection, after_id: int, up_to_id: int) -> Iterator[MemberRow]:
    """Member columns of every observation with an id in (after_id, up_to_id], in id order."""
    sql = f"SELECT {_MEMBER_COLUMNS} FROM observations WHERE id > ? AND id <= ? ORDER BY id"
    return _fetch(conn, sql, (after_id, up_to_id))  # type: ignore[return-value]


def transactions_holding(conn: Connection, nodes: set[Node]) -> dict[str, set[Node]]:
    """Every stored transaction holding one of ``nodes``, with all of its nodes. A backlog larger
    than the stored keys reads them whole instead of asking for each node."""
    stored = next(_fetch(conn, "SELECT count(*) FROM transaction_keys"))[0] if len(nodes) > SCAN_FROM else None
    if not nodes or stored == 0:
        return {}
    if stored is not None and stored <= len(nodes):
        rows = _fetch(conn, "SELECT transaction_id, key_type, value FROM transaction_keys")
        ids = {tid for tid, key_type, value in rows if (key_type, value) in nodes}
    else:
        sql = "SELECT transaction_id, key_type, value FROM transaction_keys WHERE value {in}"
        ids = {tid for tid, t, v in _fetch_in(conn, sql, [v for _, v in nodes]) if (t, v) in nodes}
    return keys_of_transactions(conn, ids)


def keys_of_transactions(conn: Connection, ids: Iterable[str]) -> dict[str, set[Node]]:
    found: dict[str, set[Node]] = defaultdict(set)
    sql = "SELECT transaction_id, key_type, value FROM transaction_keys WHERE transaction_id {in}"
    for tid, key_type, value in _fetch_in(conn, sql, ids):
        found[tid].add((key_type, value))
    return found


def observations_of_nodes(
    conn: Connection, nodes: Iterable[Node], up_to_id: int | None = None
) -> tuple[list[MemberRow], list[tuple[int, Node]]]:
    """The observations (up to ``up_to_id``, when given) carrying any of ``nodes`` — identity keys
    or trace ids — with every identity key and the trace id each carries: (member rows,
    [(observation id, node)])."""
    wanted = set(nodes)
    bound = up_to_id if up_to_id is not None else 2**63 - 1
    # One-column IN: SQLite answers a row-value IN over (value, key_type) with a full scan.
    sql = "SELECT observation_id, key_type, value FROM business_keys WHERE value {in} AND observation_id <= ?"
    ids = {oid for oid, t, v in _fetch_in(conn, sql, [v for t, v in wanted if t != TRACE], [bound]) if (t, v) in wanted}
    sql = "SELECT id FROM observations WHERE trace_id {in} AND id <= ?"
    ids.update(oid for (oid,) in _fetch_in(conn, sql, [v for t, v in wanted if t == TRACE], [bound]))
    sql = f"SELECT {_MEMBER_COLUMNS}, trace_id FROM observations WHERE id {{in}}"
    rows = _fetch_in(conn, sql, ids)
    links = [(row[0], (TRACE, row[-1])) for row in rows if row[-1]]
    sql = "SELECT observation_id, key_type, value FROM business_keys WHERE observation_id {in}"
    links.extend((oid, (t, v)) for oid, t, v in _fetch_in(conn, sql, ids))
    return [row[:-1] for row in rows], links  # type: ignore[misc]


def sla_states(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    return dict(_fetch_in(conn, "SELECT id, sla_state FROM transactions WHERE id {in}", ids))  # type: ignore[arg-type]


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


TRANSACTION_COLUMNS = tuple(c.name for c in transactions.c)


def replace_transactions(conn: Connection, rows: list[dict[str, Any]], keys: list[tuple[str, str, str]]) -> None:
    """Write the recomputed transactions and their (transaction id, key type, value) keys."""
    sql = "DELETE FROM transaction_keys WHERE transaction_id {in}"
    for chunk in chunks(sorted({row["id"] for row in rows})):
        with driver_cursor(conn) as cursor:
            cursor.execute(_sql(conn, sql.replace("{in}", _in(conn, len(chunk)))), _in_params(conn, chunk))
    if rows:
        values = [_transaction_values(conn, row) for row in rows]
        with driver_cursor(conn) as cursor:
            cursor.executemany(_upsert_sql(conn.dialect.name), values)
    insert_tuples(
        conn, transaction_keys, ("transaction_id", "key_type", "value"), keys, ("transaction_id", "key_type", "value")
    )


def _transaction_values(conn: Connection, row: dict[str, Any]) -> tuple[Any, ...]:
    values = []
    for name in TRANSACTION_COLUMNS:
        value = row[name]
        if name == "stages":
            value = json.dumps(value)
        elif isinstance(value, datetime):
            value = _db_time(conn, value)
        values.append(value)
    return tuple(values)


def _db_time(conn: Connection, value: datetime) -> str | datetime:
    """A time as the driver stores it: ISO text on SQLite (as SQLAlchemy writes it), else aware."""
    if conn.dialect.name == "sqlite":
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


@cache
def _upsert_sql(dialect: str) -> str:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(transactions)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"], set_={name: stmt.excluded[name] for name in TRANSACTION_COLUMNS if name != "id"}
    )
    compiled = stmt.compile(dialect=module.dialect(paramstyle="qmark" if dialect == "sqlite" else "format"))
    return compiled.string


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
