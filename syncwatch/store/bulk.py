"""Fast inserts for the ingest and correlator write paths.

SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself, so the hot
writes hand ready DBAPI values to the driver's cursor: multi-row INSERT statements on SQLite,
``unnest`` arrays on PostgreSQL. Values must already be in driver form (text times on SQLite,
JSON as text).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

IN_CHUNK = 900  # stays under every engine's bound-parameter limit
# Rows in one SQLite INSERT: as many as its bound-parameter limit allows, up to this many (which
# bounds the prepared statements pysqlite caches). A tail shorter than that is sent as one multiple
# of TAIL_STEP rows and one shorter statement, so only a few dozen distinct statements get prepared.
MAX_ROWS_PER_STATEMENT = 2048
TAIL_STEP = 64
PG_ROWS_PER_STATEMENT = 10_000  # bounds one statement's arrays (and the server's memory for them)
# SQLite assigns max(rowid) + 1 to a new row until the largest 64-bit id is taken; after that it
# picks ids at random, and the ids of a batch can no longer be inferred from the last one.
_MAX_ROWID = 2**63 - 1


def insert_tuples(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    conflict: tuple[str, ...],
    update: bool = False,
) -> int:
    """INSERT ready DBAPI tuples (in ``columns`` order) on the raw cursor; returns rows written. A
    row whose ``conflict`` columns are taken is left out, or with ``update`` replaces the other columns.

    SQLite gets multi-row statements as long as its parameter limit allows: pysqlite releases the
    GIL around every statement step, and each step of the writer waits up to a whole GIL switch
    interval to get it back from the parsing threads, so the fewer statements the better."""
    if not rows:
        return 0
    if conn.dialect.name != "sqlite":
        return len(pg_insert_unnest(conn, table, columns, rows, conflict, "1", update))
    inserted = 0
    with driver_cursor(conn) as cursor:
        limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(columns)
        per_statement = min(limit, MAX_ROWS_PER_STATEMENT)
        for sql, params in insert_statements(conn, table, columns, rows, conflict, update, per_statement):
            cursor.execute(sql, params)
            inserted += cursor.rowcount
    return inserted


def insert_statements(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    conflict: tuple[str, ...],
    update: bool = False,
    per_statement: int = MAX_ROWS_PER_STATEMENT,
) -> list[tuple[str, Any]]:
    """``insert_tuples``'s statements with their parameters, for a caller that runs them later
    (the correlator's writer thread): on SQLite ``per_statement`` rows each (the caller keeps
    that within the bound-parameter limit), on PostgreSQL ``unnest`` arrays without RETURNING."""
    if conn.dialect.name != "sqlite":
        sql = _pg_unnest_sql(table, columns, conflict, None, update)
        return [(sql, arrays) for arrays in _pg_arrays(rows)]
    statements, start = [], 0
    for size in statement_sizes(len(rows), per_statement):
        statements.append(
            (
                _sqlite_multirow(table, columns, conflict, size, update),
                list(chain.from_iterable(rows[start : start + size])),
            )
        )
        start += size
    return statements


def statement_sizes(total: int, per_statement: int) -> list[int]:
    """Rows per INSERT for ``total`` rows: full statements, then the tail in at most two."""
    full, tail = divmod(total, per_statement)
    sizes = [per_statement] * full
    step = min(TAIL_STEP, per_statement)
    if tail >= step:
        sizes.append(tail - tail % step)
    if tail % step:
        sizes.append(tail % step)
    return sizes


def pg_insert_unnest(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    conflict: tuple[str, ...],
    returning: str,
    update: bool = False,
) -> list[tuple[Any, ...]]:
    """INSERT … SELECT FROM unnest(one array per column) … RETURNING on PostgreSQL: one short
    statement per chunk, where psycopg re-parses a long multi-row VALUES text on every call and
    its pipelined executemany pays a round of protocol messages per row."""
    returned: list[tuple[Any, ...]] = []
    sql = _pg_unnest_sql(table, columns, conflict, returning, update)
    with driver_cursor(conn) as cursor:
        for arrays in _pg_arrays(rows):
            cursor.execute(sql, arrays)
            returned.extend(cursor.fetchall())
    return returned


def _pg_arrays(rows: Sequence[tuple[Any, ...]]) -> Iterator[list[list[Any]]]:
    """One array per column for each ``unnest`` statement, of PG_ROWS_PER_STATEMENT rows at most."""
    for chunk in chunks(rows, PG_ROWS_PER_STATEMENT):
        yield [list(column) for column in zip(*chunk, strict=True)]


@cache
def _pg_unnest_sql(
    table: Table, columns: tuple[str, ...], conflict: tuple[str, ...], returning: str | None, update: bool
) -> str:
    arrays = ", ".join(pg_array(table.c[name]) for name in columns)
    on_conflict = _on_conflict(columns, conflict, update)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}){on_conflict}"
    return sql if returning is None else f"{sql} RETURNING {returning}"


def pg_array(column: Any) -> str:
    """The placeholder of an array parameter holding ``column``'s values, for unnest: sent in
    binary (``%b``), since psycopg escapes every element of a text array with a regex (most of the
    correlator's writer thread in a large pass, holding the GIL). ``VARCHAR(255)`` becomes
    ``text``: unnest needs no length."""
    compiled = column.type.compile(dialect=postgresql.dialect())
    return f"%b::{'text' if compiled.startswith('VARCHAR') else compiled.lower()}[]"


@cache
def _sqlite_multirow(
    table: Table, columns: tuple[str, ...], conflict: tuple[str, ...], count: int, update: bool
) -> str:
    row = "(" + ", ".join(["?"] * len(columns)) + ")"
    on_conflict = _on_conflict(columns, conflict, update)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {', '.join([row] * count)}{on_conflict}"


def _on_conflict(columns: tuple[str, ...], conflict: tuple[str, ...], update: bool) -> str:
    """The clause for a row whose ``conflict`` columns are taken: nothing, or its other columns replace."""
    if not conflict:
        return ""
    if not update:
        return f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    replaced = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in conflict)
    return f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {replaced}"


@contextmanager
def driver_cursor(conn: Connection) -> Iterator[Any]:
    """A cursor on the DBAPI connection inside ``conn``'s transaction (the same BEGIN). Driver
    errors leave as SQLAlchemy's DBAPIError subclasses, as from ``conn.execute``, so callers
    (the server answers 503 on SQLAlchemyError) see one family of errors whichever path failed."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        yield cursor
    except dbapi_error as err:
        raise DBAPIError.instance(None, None, err, dbapi_error, dialect=conn.dialect) from err
    finally:
        cursor.close()


def sqlite_last_ids(conn: Connection, count: int) -> range | None:
    """Ids of the ``count`` rows just inserted by one ``insert_tuples`` under SQLite's write lock, or
    None when SQLite may have chosen them at random (so the caller must select them)."""
    with driver_cursor(conn) as cursor:
        last = int(cursor.execute("SELECT last_insert_rowid()").fetchone()[0])
    return None if last >= _MAX_ROWID else range(last - count + 1, last + 1)


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
