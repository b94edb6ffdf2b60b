"""Named locks for processes that share one PostgreSQL database: a scheduled job runs in one
`serve` instance at a time (the others skip that run instead of repeating its work: an alert
sent twice, a policy retry racing another), and ingest transactions commit one after another."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

from syncwatch.store.engine import sqlite_file
from syncwatch.store.errors import StoreError


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


@contextmanager
def sole_serve(engine: Engine) -> Iterator[None]:
    """One `serve` per SQLite file, as its single writer needs: a lock on a file beside the database,
    held while the block runs and freed by the system when the process ends, even by kill -9.
    Several `serve` instances may share a PostgreSQL database, so there it holds nothing."""
    database = sqlite_file(engine)
    if database is None:
        yield
        return
    path = f"{database}.serve-lock"
    try:
        handle = open(path, "a+")  # noqa: SIM115 - held open for the block, closed below
    except OSError as err:
        raise StoreError(f"cannot take the serve lock {path}: {err.strerror} (SQLite writes beside its file)") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip()
            raise StoreError(
                f"another syncwatch serve{f' (pid {pid})' if pid else ''} is using {database}: SQLite takes one "
                "serve per database file; stop that one, or move to PostgreSQL to run several"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
