"""Fast executemany for the ingest path.

SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself, so the hot
writes compile a Core ``insert()`` once per dialect and hand ready DBAPI values to the driver's
executemany. Values must already be in driver form (see ``db_time`` and ``db_json``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.dialects import postgresql, sqlite

from syncwatch.model import as_utc

IN_CHUNK = 900  # stays under every engine's bound-parameter limit


def insert_many(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, ignore_conflicts_on: tuple[str, ...] = ()
) -> None:
    """INSERT rows with one executemany; rows sharing a unique key are skipped when asked."""
    if not rows:
        return
    sql, order = _compiled(conn.dialect, table, tuple(rows[0]), ignore_conflicts_on)
    params: Sequence[Any] = [tuple(row[c] for c in order) for row in rows] if order else rows
    conn.exec_driver_sql(sql, params)  # type: ignore[arg-type]


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


def db_time(dialect: Dialect, value: datetime | None) -> Any:
    """A datetime as the column type stores it: UTC text on SQLite, aware datetime elsewhere."""
    if value is None:
        return None
    value = as_utc(value)
    if dialect.name == "sqlite":
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value


_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def db_json(dialect: Dialect, value: Any) -> Any:
    text = _encode(value)
    if dialect.name == "postgresql":
        from psycopg.types.json import Json

        return Json(value, dumps=lambda v: text)
    return text
