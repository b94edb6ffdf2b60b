"""Named reads and writes of the correlator: new observations, transaction keys, members,
transactions and exceptions. The correlator holds no SQL of its own.

The reads that scale with the backlog (new observations with their keys, stored transaction
keys) and the writes that scale with the transactions (transactions, their keys) run on the
driver's cursor with plain tuples: SQLAlchemy's per-row processing cost more than the whole
correlation.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from operator import itemgetter
from queue import Queue
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, select
from sqlalchemy.exc import DBAPIError

from syncwatch.store.bulk import chunks, driver_cursor, insert_statements, insert_tuples
from syncwatch.store.engine import sqlite_file
from syncwatch.store.locks import try_hold_until_commit
from syncwatch.store.schema import (
    NOT_OWN_TRACE_PREFIX,
    TRANSACTION_KEYS_BY_VALUE,
    UTCDateTime,
    actions,
    exceptions,
    observations,
    transaction_keys,
    transactions,
)
from syncwatch.store.traces import SPANS_OF_TRACES
from syncwatch.store.writes import json_text, read_checkpoint, upsert_insert

Node = tuple[str, str]
TRACE = "trace"
# id, kind, system, operation, start (text on SQLite), outcome, status_code, error_message,
# duplicates, attributes (JSON text), payload.
MemberRow = tuple[int, str, str, str, str | datetime, str, int | None, str | None, int, str, bytes | None]
NewRow = tuple[int, str, str, str, str | datetime, str, int | None, str | None, int, str, bytes | None, str | None]
SCAN_FROM = 50_000  # observations from which counting the stored keys is worth it
KEY_SCAN_FROM = 50_000  # new observations from which their keys are read along the key table (SQLite)
KEY_SCAN_SHARE = 10  # ... and from a tenth of the observations before them: that read passes the whole key table
ROOMY_CACHE_KIB = -262_144  # 256 MiB, as PRAGMA cache_size takes it
FETCH = 20_000  # rows per fetchmany: bounds the driver's buffers on a whole-backlog read
_cursors = count()
_MEMBER_COLUMNS = (
    "id, kind, system, operation, start_time, outcome, status_code, error_message, duplicates, {attributes}, payload"
)


def _sql(conn: Connection, text: str) -> str:
    """``text`` with ``?`` placeholders in the driver's paramstyle and JSON columns read as text."""
    if conn.dialect.name == "postgresql":
        return text.replace("?", "%s").replace("{attributes}", "attributes::text")
    return text.replace("{attributes}", "attributes")


def _in(conn: Connection, size: int) -> str:
    """The membership test for a list parameter: ``= ANY(%b)`` on PostgreSQL (a binary array, see
    ``bulk.pg_array``), ``IN (?, …)`` on SQLite."""
    return "= ANY(%b)" if conn.dialect.name == "postgresql" else f"IN ({', '.join('?' * size)})"


def _in_params(conn: Connection, values: Sequence[Any]) -> list[Any]:
    return [list(values)] if conn.dialect.name == "postgresql" else list(values)


def _fetch(conn: Connection, text: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
    for batch in _batches(conn, text, params):
        yield from batch


def _batches(conn: Connection, text: str, params: Sequence[Any], stream: bool = False) -> Iterator[list[Any]]:
    """The rows of ``text``, ``FETCH`` at a time. ``stream`` (for a whole backlog) takes a
    server-side cursor on PostgreSQL, where a client-side one holds the entire result in memory."""
    if stream and conn.dialect.name == "postgresql":
        name = f"correlate_{next(_cursors)}"
        with _pg_errors(conn), conn.connection.driver_connection.cursor(name=name) as cursor:  # type: ignore[union-attr]
            cursor.execute(_sql(conn, text), params)
            while batch := cursor.fetchmany(FETCH):
                yield batch
        return
    with driver_cursor(conn) as cursor:
        cursor.execute(_sql(conn, text), params)
        while batch := cursor.fetchmany(FETCH):
            yield batch


@contextmanager
def _pg_errors(conn: Connection) -> Iterator[None]:
    """Driver errors leave as SQLAlchemy's DBAPIError subclasses, as from ``driver_cursor``."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as err:
        raise DBAPIError.instance(None, None, err, dbapi_error, dialect=conn.dialect) from err


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


CORRELATOR_LOCK = "correlator"  # held by the one instance correlating now
CORRELATOR_CHECKPOINT = "correlator"  # the checkpoints row: the last observation id correlated
BACKLOG_COUNT_LIMIT = 10_000  # a backlog is counted up to here: 1.5 ms, not 150 ms for a million
BACKLOG_PATIENCE_S = 60.0  # a backlog younger than this is the correlator's normal lag


@dataclass(frozen=True, slots=True)
class Backlog:
    """Observations stored but not correlated yet: how many (up to ``BACKLOG_COUNT_LIMIT``), and
    when the oldest of them arrived."""

    observations: int
    waiting_since: datetime | None

    def overdue(self, interval_s: float, now: datetime) -> bool:
        """Whether the oldest has waited longer than a correlator running every ``interval_s``
        would let it (a minute at least: a pass over a large batch takes a while)."""
        patience = timedelta(seconds=max(BACKLOG_PATIENCE_S, 12 * interval_s))
        return self.waiting_since is not None and now - self.waiting_since > patience

    def describe(self) -> str:
        more = "+" if self.observations >= BACKLOG_COUNT_LIMIT else ""
        since = f"{self.waiting_since:%Y-%m-%d %H:%M} UTC" if self.waiting_since else "?"
        many = self.observations != 1
        return (
            f"{self.observations:,}{more} observation{'s' if many else ''} received since {since} "
            f"{'are' if many else 'is'} not correlated yet"
        )


def correlation_backlog(conn: Connection) -> Backlog:
    """What the dashboard does not show yet: the observations after the correlator's checkpoint.
    Both reads follow the primary key."""
    position = read_checkpoint(conn, CORRELATOR_CHECKPOINT)
    after = position.position if position else 0
    o = observations.c
    waiting = select(o.id).where(o.id > after).limit(BACKLOG_COUNT_LIMIT).subquery()
    pending = conn.execute(select(func.count()).select_from(waiting)).scalar_one()
    if not pending:
        return Backlog(0, None)
    oldest = conn.execute(select(o.received_at).where(o.id > after).order_by(o.id).limit(1)).scalar_one()
    return Backlog(int(pending), oldest)


def claim_correlation(conn: Connection) -> bool:
    """Whether this transaction may correlate: on PostgreSQL, several `serve` instances share the
    database and only the one holding the advisory lock runs a batch; SQLite's write lock (BEGIN
    IMMEDIATE) already lets one writer in at a time."""
    return try_hold_until_commit(conn, CORRELATOR_LOCK)


def new_observations(
    conn: Connection, after_id: int, last: int, shared: dict[Node, Node] | None = None
) -> Iterator[list[tuple[NewRow, list[Node]]]]:
    """The observations ``after_id < id <= last`` (``batch_end``) in id order, in lists: member
    columns and trace id, with their identity keys (from the business_keys index: no JSON is
    decoded), each (key type, value) one tuple shared by every observation carrying it: the one
    in ``shared`` where the caller gives that table (it gains the others), so that equal nodes of
    several reads are one object too."""
    # Both ranges bounded: a planner without statistics yet (right after a bulk load) still takes the indexes.
    sql = f"SELECT {_MEMBER_COLUMNS}, trace_id FROM observations WHERE id > ? AND id <= ? ORDER BY id"
    shared = {} if shared is None else shared
    if conn.dialect.name == "sqlite" and last - after_id >= max(KEY_SCAN_FROM, after_id // KEY_SCAN_SHARE):
        keys = _keys_by_observation(conn, after_id, last, shared)
        for rows in _batches(conn, sql, (after_id, last)):
            yield [(row, keys[row[0] - after_id - 1] or []) for row in rows]
        return
    yield from _merged_with_keys(conn, sql, after_id, last, shared)


def shared_snapshot(conn: Connection) -> str | None:
    """What another connection needs to read exactly what ``conn`` reads now (``read_snapshot``),
    or None where none can: a database in memory is one connection's alone. PostgreSQL exports
    the snapshot; SQLite needs nothing while ``conn`` holds the write lock, as a pass does:
    nothing commits until it ends. (A helper forked from the pass inherits its SQLite lock
    bookkeeping, so its reads may take no file locks of their own; they need none: the pass holds
    its locks until after the helper has ended.)"""
    if conn.dialect.name == "postgresql":
        return str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
    return "" if sqlite_file(conn.engine) is not None else None


def read_snapshot(conn: Connection, snapshot: str) -> None:
    """Have ``conn``, before its first statement, read the snapshot ``shared_snapshot`` gave."""
    if conn.dialect.name != "postgresql":
        return
    if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):  # SET takes no parameters: never quote what is not an id
        raise ValueError(f"not a PostgreSQL snapshot id: {snapshot!r}")
    conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")


def batch_end(conn: Connection, after_id: int, limit: int) -> int | None:
    """The id of the ``limit``-th observation after ``after_id`` (or of the last one, when fewer
    wait). Ids are distinct integers, so when the newest id is at most ``limit`` past ``after_id``
    the whole rest fits, and the primary key's last entry answers; only a backlog with more ids
    than that steps through them (1.1 s for 1.8M observations, a twentieth of a pass)."""
    newest = next(_fetch(conn, "SELECT max(id) FROM observations"))[0]
    if newest is None or newest <= after_id:
        return None
    if newest - after_id <= limit:
        return int(newest)
    sql = "SELECT max(id) FROM (SELECT id FROM observations WHERE id > ? ORDER BY id LIMIT ?) batch"
    return next(_fetch(conn, sql, (after_id, limit)))[0]


def _keys_by_observation(
    conn: Connection, after_id: int, last: int, shared: dict[Node, Node]
) -> list[list[Node] | None]:
    """The identity keys of observations ``after_id < id <= last``, at ``id - after_id - 1``: for a
    batch not much smaller than the history before it, read key by key along the primary key,
    which makes each (key type, value) once, instead of a row per key merged with the
    observations. The scan passes the whole table in C (0.1 s for 2.5M keys); the ids outside
    the batch stay there (unary ``+``: the id index would cost a sort of the groups)."""
    found: list[list[Node] | None] = [None] * (last - after_id)
    sql = (
        "SELECT key_type, value, group_concat(observation_id) FROM business_keys"
        " WHERE +observation_id > ? AND +observation_id <= ? GROUP BY value, key_type"
    )
    share = shared.setdefault
    for rows in _batches(conn, sql, (after_id, last)):
        for key_type, value, ids in rows:
            node = (key_type, value)
            node = share(node, node)
            for oid in map(int, ids.split(",")):
                own = found[oid - after_id - 1]
                if own is None:
                    found[oid - after_id - 1] = [node]
                else:
                    own.append(node)
    return found


def _merged_with_keys(
    conn: Connection, sql: str, after_id: int, last: int, shared: dict[Node, Node]
) -> Iterator[list[tuple[NewRow, list[Node]]]]:
    """The observations of ``sql`` merged with their keys, both read in observation id order."""
    keys = _batches(
        conn,
        "SELECT observation_id, key_type, value FROM business_keys"
        " WHERE observation_id > ? AND observation_id <= ? ORDER BY observation_id",
        (after_id, last),
        stream=True,
    )
    share = shared.setdefault
    pending, at = next(keys, []), 0
    for rows in _batches(conn, sql, (after_id, last), stream=True):
        found = []
        for row in rows:
            oid, own = row[0], []
            while pending:
                key = pending[at]
                if key[0] > oid:
                    break
                if key[0] == oid:
                    node = (key[1], key[2])
                    own.append(share(node, node))
                at += 1
                if at == len(pending):
                    pending, at = next(keys, []), 0
            found.append((row, own))
        yield found
    keys.close()


def redelivered_since(conn: Connection, since: datetime) -> list[tuple[int, list[Node], str | None]]:
    """(id, identity keys, trace id) of observations delivered again after ``since``: their
    duplicate count changed since a pass last saw them (a partner sending the same notice twice)."""
    heads = list(
        _fetch(conn, "SELECT id, trace_id FROM observations WHERE redelivered_at > ?", (_db_time(conn, since),))
    )
    keys: dict[int, list[Node]] = defaultdict(list)
    sql = "SELECT observation_id, key_type, value FROM business_keys WHERE observation_id {in}"
    for oid, key_type, value in _fetch_in(conn, sql, [oid for oid, _ in heads]):
        keys[oid].append((key_type, value))
    return [(oid, keys[oid], trace) for oid, trace in heads]


def transactions_holding(conn: Connection, rows: Sequence[Sequence[Node]]) -> dict[str, set[Node]]:
    """Every stored transaction holding one of the nodes of ``rows``, with all of its nodes. A
    backlog with more nodes than are stored reads the stored keys whole instead of asking for each."""
    stored = _keys_held(conn) if len(rows) > SCAN_FROM else None
    if not rows or stored == 0:
        return {}
    nodes = {n for row in rows for n in row}
    if stored is not None and stored <= len(nodes):
        found = _fetch(conn, "SELECT transaction_id, key_type, value FROM transaction_keys")
        ids = {tid for tid, key_type, value in found if (key_type, value) in nodes}
    else:
        sql = "SELECT transaction_id, key_type, value FROM transaction_keys WHERE value {in}"
        ids = {tid for tid, t, v in _fetch_in(conn, sql, [v for _, v in nodes]) if (t, v) in nodes}
    return keys_of_transactions(conn, ids)


def _keys_held(conn: Connection) -> int:
    """How many transaction keys are stored: a scan of the table, for passes large enough to ask."""
    return int(next(_fetch(conn, "SELECT count(*) FROM transaction_keys"))[0])


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
    # One-column IN: SQLite answers a row-value IN over (value, key_type) with a full scan. The
    # bound is applied here: asked in SQL, a planner without statistics scans the id range.
    sql = "SELECT observation_id, key_type, value FROM business_keys WHERE value {in}"
    keys = [v for t, v in wanted if t != TRACE]
    ids = {oid for oid, t, v in _fetch_in(conn, sql, keys) if oid <= bound and (t, v) in wanted}
    ids.update(oid for oid in trace_observation_ids(conn, [v for t, v in wanted if t == TRACE]) if oid <= bound)
    sql = f"SELECT {_MEMBER_COLUMNS}, trace_id FROM observations WHERE id {{in}}"
    rows = _fetch_in(conn, sql, ids)
    links = [(row[0], (TRACE, row[-1])) for row in rows if row[-1]]
    sql = "SELECT observation_id, key_type, value FROM business_keys WHERE observation_id {in}"
    links.extend((oid, (t, v)) for oid, t, v in _fetch_in(conn, sql, ids))
    return [row[:-1] for row in rows], links  # type: ignore[misc]


def trace_observation_ids(conn: Connection, traces: Collection[str]) -> list[int]:
    """Ids of every observation in ``traces``, through the indexes the schema keeps for them
    (``store.traces``): on SQLite, other traced rows by trace id and spans by natural id."""
    sql = "SELECT id FROM observations WHERE trace_id {in}"
    if conn.dialect.name != "sqlite":
        return [oid for (oid,) in _fetch_in(conn, sql, traces)]
    found = [oid for (oid,) in _fetch_in(conn, f"{sql} AND {NOT_OWN_TRACE_PREFIX}", traces)]
    if traces:
        found.extend(oid for (oid,) in _fetch(conn, SPANS_OF_TRACES, (json_text(sorted(set(traces))),)))
    return found


def stored_transactions(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` the transactions table holds already."""
    return {row[0] for row in _fetch_in(conn, "SELECT id FROM transactions WHERE id {in}", ids)}


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
_ordered = itemgetter(*TRANSACTION_COLUMNS)
_ID = TRANSACTION_COLUMNS.index("id")
KeyRow = tuple[str, str, str]  # transaction id, key type, value


def refresh_statistics(conn: Connection) -> None:
    """After a large pass, tell PostgreSQL's planner how big the tables have grown. Without fresh
    statistics (a bulk load, a server without autovacuum) it scans all of ``observations`` for
    each lookup of the next small pass: 4.8 s instead of 0.4 s for 1,000 new observations."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE observations, business_keys, transaction_keys, transactions, exceptions")


@contextmanager
def roomy_cache(conn: Connection) -> Iterator[None]:
    """A page cache the size of a backlog's indexes on SQLite while the block runs: keys inserted
    in random order into the value index (a pass below the size that builds it after them, see
    ``_keys_indexed_after``) otherwise spill and reread pages."""
    if conn.dialect.name != "sqlite":
        yield
        return
    with driver_cursor(conn) as cursor:
        previous = cursor.execute("PRAGMA cache_size").fetchone()[0]
        cursor.execute(f"PRAGMA cache_size = {ROOMY_CACHE_KIB}")
    try:
        yield
    finally:
        with driver_cursor(conn) as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(previous)}")


Statement = tuple[str, Sequence[Any]]


def ready_to_write(dialect: str, rows: list[dict[str, Any]], keys: list[KeyRow]) -> ReadyToWrite:
    """Recomputed transactions in ``TRANSACTION_COLUMNS`` order with times as the ``dialect``'s
    driver takes them, and their keys sorted: made where they were derived, a helper process for
    its share, since the pass's own process is the one that keeps both cores waiting. Tuples of
    text also pickle at a fraction of the cost of rows of datetimes."""
    time = _sqlite_time if dialect == "sqlite" else _same
    # In key order, SQLite appends to the primary key's b-tree instead of splitting pages all over it.
    keys.sort()
    return [_transaction_values(row, time) for row in rows], keys


ReadyToWrite = tuple[list[tuple[Any, ...]], list[KeyRow]]  # (transactions' values, their keys), see ready_to_write


@contextmanager
def transaction_writer(
    conn: Connection, stored: Collection[str], keys_to_write: int = 0
) -> Iterator[Callable[[ReadyToWrite], None]]:
    """A writer of recomputed transactions and their (transaction id, key type, value) keys
    (``ready_to_write``) whose statements run on a second thread while the caller derives the
    next transactions: the drivers release the GIL while the database works, so most of the
    writing costs no wall time. ``stored`` are the ids already in the database, whose old keys
    go first; ``keys_to_write``, about how many keys the caller will hand over (see
    ``_keys_indexed_after``). The caller leaves ``conn`` alone until the block ends; the block
    waits for the last statement, and raises the first error one raised."""
    with _keys_indexed_after(conn, keys_to_write), _writer_thread(conn, stored) as write:
        yield write


# A pass that writes at least a quarter as many keys as the table already holds, and at least
# INDEX_AFTER_FROM, builds the keys' value index after its inserts (one sort) instead of putting
# each key into it at a random place: the 995,659 keys of a 100k-order backlog took the writer
# thread 3.7 s with the index and 1.1 s without, and building it took 0.6 s.
INDEX_AFTER_FROM = 50_000
INDEX_AFTER_SHARE = 4


@contextmanager
def _keys_indexed_after(conn: Connection, keys_to_write: int) -> Iterator[None]:
    """Drop the keys' value index for the block and build it again at its end, when the block
    writes enough keys for that to be cheaper (SQLite only: readers keep their snapshot there,
    index included, whereas PostgreSQL's DROP INDEX would lock the table against every reader
    until the pass commits). Nothing in the pass reads keys by value while the block runs. When
    the block fails, the index is not rebuilt: the pass's transaction rolls back, drop included."""
    if conn.dialect.name != "sqlite" or keys_to_write < INDEX_AFTER_FROM:
        yield
        return
    if _keys_held(conn) > keys_to_write * INDEX_AFTER_SHARE:
        yield
        return
    TRANSACTION_KEYS_BY_VALUE.drop(conn, checkfirst=True)  # one lost by hand comes back
    yield
    TRANSACTION_KEYS_BY_VALUE.create(conn)


@contextmanager
def _writer_thread(conn: Connection, stored: Collection[str]) -> Iterator[Callable[[ReadyToWrite], None]]:
    work: Queue[list[Statement] | None] = Queue(maxsize=2)
    errors: list[BaseException] = []

    def run() -> None:
        while (statements := work.get()) is not None:
            if not errors:
                try:
                    _execute(conn, statements)
                except BaseException as err:  # re-raised in the caller's thread
                    errors.append(err)

    def write(ready: ReadyToWrite) -> None:
        if errors:
            raise errors[0]
        work.put(_replace_statements(conn, *ready, stored))

    thread = threading.Thread(target=run, name="correlator-writer", daemon=True)
    thread.start()
    try:
        yield write
    finally:
        work.put(None)
        thread.join()
    if errors:
        raise errors[0]


def _execute(conn: Connection, statements: list[Statement]) -> None:
    with driver_cursor(conn) as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def _replace_statements(
    conn: Connection, values: list[tuple[Any, ...]], keys: list[KeyRow], stored: Collection[str]
) -> list[Statement]:
    """The statements that replace the transactions and their keys, with parameters ready for the
    driver: few statements of many rows each, since a writer thread waits for the GIL after each.
    Only stored transactions have keys to delete: on PostgreSQL a delete by id from a key table
    growing in the same transaction, before it has statistics, scans it whole."""
    statements: list[Statement] = []
    sql = "DELETE FROM transaction_keys WHERE transaction_id {in}"
    for chunk in chunks(sorted({row[_ID] for row in values} & set(stored))):
        statements.append((_sql(conn, sql.replace("{in}", _in(conn, len(chunk)))), _in_params(conn, chunk)))
    statements += insert_statements(conn, transactions, TRANSACTION_COLUMNS, values, ("id",), True, UPSERT_ROWS)
    statements += insert_statements(conn, transaction_keys, KEY_COLUMNS, keys, KEY_COLUMNS, False, KEY_ROWS)
    return statements


def _transaction_values(row: dict[str, Any], time: Callable[[datetime | None], Any]) -> tuple[Any, ...]:
    """The row in ``TRANSACTION_COLUMNS`` order, as the driver takes it (stages are JSON text already)."""
    values = list(_ordered(row))
    for index in _TIME_INDEXES:
        values[index] = time(values[index])
    return tuple(values)


KEY_COLUMNS = ("transaction_id", "key_type", "value")
UPSERT_ROWS = 1_000  # x 19 columns stays under SQLite's 32,766 bound parameters
KEY_ROWS = 10_000  # x 3 columns, likewise


_TIMES = frozenset(("due_at", "promised_at", "started_at", "last_seen_at", "sla_check_at", "updated_at"))
_TIME_INDEXES = tuple(i for i, name in enumerate(TRANSACTION_COLUMNS) if name in _TIMES)


def _sqlite_time(value: datetime | None) -> str | None:
    """A time as SQLAlchemy stores it on SQLite: naive UTC ISO text with microseconds. Most times
    of a pass are shared objects (its clock, the due times a calendar gives every order of a day),
    so each one's text is kept by identity; the entry holds the time, so its id is not reused."""
    if value is None:
        return None
    known = _TEXTS.get(id(value))
    if known is not None and known[0] is value:
        return known[1]
    text = (value.astimezone(UTC) if value.utcoffset() else value).isoformat(" ", "microseconds")[:26]
    if len(_TEXTS) >= _TEXTS_LIMIT:
        _TEXTS.clear()
    _TEXTS[id(value)] = (value, text)
    return text


_TEXTS: dict[int, tuple[datetime, str]] = {}
_TEXTS_LIMIT = 4096


def _same(value: datetime | None) -> datetime | None:
    return value


def _db_time(conn: Connection, value: datetime) -> str | datetime:
    return _sqlite_time(value) if conn.dialect.name == "sqlite" else value  # type: ignore[return-value]


def retire_transactions(conn: Connection, ids: Iterable[str]) -> None:
    """Drop transactions merged into others (their exceptions must have moved first: they cascade)."""
    for chunk in chunks(sorted(set(ids))):
        conn.execute(delete(transactions).where(transactions.c.id.in_(chunk)))


def upsert_exceptions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert or update exceptions (each row's keys are the same columns, ``id`` among them). On
    SQLite through the driver, in few statements: SQLAlchemy's per-value processing took 0.38 s
    for the 6,904 exceptions of a 100k-order backlog, on one core at the end of the pass."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        _upsert_exceptions_sqlite(conn, rows)
        return
    stmt = upsert_insert(conn, exceptions)
    columns = {name: stmt.excluded[name] for name in rows[0] if name != "id"}
    conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=columns), rows)


def _upsert_exceptions_sqlite(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """The rows as SQLAlchemy would bind them: times as UTC text, the context as ``json.dumps`` writes it."""
    names = tuple(rows[0])
    times = {i for i, name in enumerate(names) if isinstance(exceptions.c[name].type, UTCDateTime)}
    context = names.index("context") if "context" in names else -1
    values, get = [], itemgetter(*names)
    for row in rows:
        value = list(get(row))
        for i in times:
            value[i] = _sqlite_time(value[i])
        if context >= 0:
            value[context] = json.dumps(value[context])
        values.append(tuple(value))
    insert_tuples(conn, exceptions, names, values, ("id",), update=True)


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
