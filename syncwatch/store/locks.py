"""Named locks for processes that share one PostgreSQL database: a scheduled job runs in one
`serve` instance at a time (the others skip that run instead of repeating its work: an alert
sent twice, a policy retry racing another), and ingest transactions commit one after another."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text


def lock_id(name: str) -> int:
    """A stable signed 64-bit id for ``name`` (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[bool]:
    """Yield whether this process holds ``name`` for the duration of the block.

    On PostgreSQL a session advisory lock, held on a connection of its own and released on exit
    (or when the process dies). SQLite has one writer per file and one `serve` per file, so it
    always yields True.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id(name)}).scalar())
        conn.commit()
        try:
            yield held
        finally:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id(name)})
                conn.commit()


def hold_until_commit(conn: Connection, name: str) -> None:
    """Wait for ``name`` and hold it until ``conn``'s transaction ends, so transactions that take it
    commit one after another. PostgreSQL only: SQLite's write lock (BEGIN IMMEDIATE) already does."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id(name)})


def try_hold_until_commit(conn: Connection, name: str) -> bool:
    """``hold_until_commit`` without waiting: whether ``name`` is now held (always, on SQLite)."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": lock_id(name)}).scalar())
