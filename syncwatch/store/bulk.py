"""Fast executemany for the ingest path.

SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself, so the hot
writes compile a Core ``insert()`` once per dialect and hand ready DBAPI values to the driver's
executemany. Values must already be in driver form (text times on SQLite, JSON as text).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.dialects import postgresql, sqlite

IN_CHUNK = 900  # stays under every engine's bound-parameter limit
# SQLite assigns max(rowid) + 1 to a new row until the largest 64-bit id is taken; after that it
# picks ids at random, and the ids of a batch can no longer be inferred from the last one.
_MAX_ROWID = 2**63 - 1


def insert_many(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, ignore_conflicts_on: tuple[str, ...] = ()
) -> None:
    """INSERT rows with one executemany; rows sharing a unique key are skipped when asked."""
    if not rows:
        return
    sql, order = _compiled(conn.dialect, table, tuple(rows[0]), ignore_conflicts_on)
    params: Sequence[Any] = [tuple(row[c] for c in order) for row in rows] if order else rows
    conn.exec_driver_sql(sql, params)  # type: ignore[arg-type]


def insert_tuples(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]], conflict: tuple[str, ...]
) -> int:
    """INSERT ready DBAPI tuples (in ``columns`` order) on the raw cursor; returns rows inserted."""
    if not rows:
        return 0
    sql = insert_sql(conn.dialect, table, columns, conflict)
    cursor = driver_cursor(conn)
    try:
        cursor.executemany(sql, rows)
        return int(cursor.rowcount)
    finally:
        cursor.close()


@cache
def insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...], conflict: tuple[str, ...] = ()) -> str:
    """The driver's positional INSERT for ``columns`` (``?`` on SQLite, ``%s`` on psycopg)."""
    sql, order = _compiled(dialect, table, columns, conflict)
    if order is not None and order != columns:
        raise ValueError(f"{table.name}: compiled column order {order} differs from {columns}")
    return sql if dialect.name == "sqlite" else _positional_pg(sql, columns)


def _positional_pg(sql: str, columns: tuple[str, ...]) -> str:
    """psycopg's compiled form uses named ``%(col)s`` markers; executemany of tuples wants ``%s``."""
    for name in columns:
        sql = sql.replace(f"%({name})s", "%s")
    return sql


def driver_cursor(conn: Connection) -> Any:
    """A cursor on the DBAPI connection inside ``conn``'s transaction (the same BEGIN)."""
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def sqlite_last_ids(conn: Connection, count: int) -> range | None:
    """Ids of the ``count`` rows just inserted by one executemany under SQLite's write lock, or
    None when SQLite may have chosen them at random (so the caller must select them)."""
    cursor = driver_cursor(conn)
    try:
        last = int(cursor.execute("SELECT last_insert_rowid()").fetchone()[0])
    finally:
        cursor.close()
    return None if last >= _MAX_ROWID else range(last - count + 1, last + 1)


@cache
def _compiled(
    dialect: Dialect, table: Table, columns: tuple[str, ...], conflict: tuple[str, ...]
) -> tuple[str, tuple[str, ...] | None]:
    module = postgresql if dialect.name == "postgresql" else sqlite
    stmt = module.insert(table)
    if conflict:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    positional = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    return compiled.string, positional


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
