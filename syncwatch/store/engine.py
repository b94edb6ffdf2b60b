"""One engine from one URL: a SQLite file by default, PostgreSQL (psycopg 3) at scale.

SQLite is set up for several processes on one file: WAL, foreign keys, a busy timeout, and
write transactions that start with ``BEGIN IMMEDIATE`` so that two writers queue on the busy
timeout instead of failing with "database is locked" when a read lock cannot be upgraded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.engine import URL

from syncwatch.redact import SECRET_WORDS
from syncwatch.store.errors import DatabaseUnavailable

BUSY_TIMEOUT_MS = 30_000
SUPPORTED = ("sqlite", "postgresql")
SQLITE_ENDINGS = (".db", ".sqlite", ".sqlite3")


def parse_url(raw: str) -> URL:
    """Read a database URL; a bare path means a SQLite file, ``postgresql://`` means psycopg 3. A
    bare word (``review_ops``) is refused: it reads as a PostgreSQL database's name as much as a file's."""
    if "://" not in raw:
        if "/" not in raw and not raw.endswith(SQLITE_ENDINGS):
            raise DatabaseUnavailable(
                f"'{raw}' is not a database URL: for a SQLite file write sqlite:///{raw} (or a path ending in .db), "
                f"for a PostgreSQL database postgresql://USER@HOST:PORT/{raw}"
            )
        raw = f"sqlite:///{raw}"
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw.removeprefix("postgres://")  # the form Heroku and others hand out
    try:
        url = make_url(raw)
    except (exc.ArgumentError, ValueError) as err:
        raise DatabaseUnavailable(
            f"'{_masked(raw)}' is not a database URL; expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        ) from err
    backend = url.get_backend_name()
    if backend not in SUPPORTED:
        raise DatabaseUnavailable(f"'{backend}' databases are not supported; use sqlite:///PATH or postgresql://…")
    if backend == "sqlite" and (url.host or url.port):
        raise DatabaseUnavailable(
            f"'{describe(url)}' names a host, which a SQLite file has not: write sqlite:///PATH "
            "(three slashes before a relative path, four before an absolute one)"
        )
    if backend == "postgresql" and url.get_driver_name() in ("", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def describe(url: URL) -> str:
    """The URL as it may be shown to a person: no password, in its place or in the query
    (``?password=…``, ``sslpassword``, ``sslkey``…)."""
    return _masked(url.render_as_string(hide_password=True))


def shown(raw: str) -> str:
    """A database URL as given (``--db``, SYNCWATCH_DB), as it may be shown to a person."""
    return _masked(raw)


def _masked(raw: str) -> str:
    """A URL, parsed or not, with whatever may be a password starred (one holding an unencoded
    ``@`` too: the password runs to the last ``@`` before the host)."""
    raw = re.sub(r"(://[^:/@]*:)[^/]*@", r"\1***@", raw)
    words = "|".join(SECRET_WORDS)
    return re.sub(rf"([?&][^=&]*(?:{words})[^=&]*=)[^&]*", r"\1***", raw, flags=re.IGNORECASE)


def make_engine(raw_url: str, *, must_exist: bool = False, **kwargs: Any) -> Engine:
    """An engine for ``raw_url``; with ``must_exist`` a missing SQLite file is an error, not a new file."""
    url = parse_url(raw_url)
    if url.get_backend_name() == "sqlite":
        if must_exist and url.database not in (None, "", ":memory:") and not _file_exists(url.database):
            raise DatabaseUnavailable(
                f"there is no database file at {url.database}; create it with `syncwatch db upgrade --db {raw_url}`"
            )
        return _sqlite_engine(url, **kwargs)
    # Day boundaries and text renderings of times are UTC whatever the server's default zone. A
    # server that stops answering (a host gone from the network) fails a connection in
    # CONNECT_TIMEOUT_S instead of the operating system's minutes, for requests and /healthz alike.
    options = {"options": "-c timezone=UTC", "connect_timeout": CONNECT_TIMEOUT_S}
    return create_engine(url, pool_pre_ping=True, connect_args=options, **kwargs)


CONNECT_TIMEOUT_S = 10


def sqlite_file(engine: Engine) -> Path | None:
    """The file a SQLite engine opens; None for a database in memory, or on another engine."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


def _file_exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except OSError as err:
        raise DatabaseUnavailable(f"cannot look for the database file {path}: {err.strerror}") from None


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself instead of pysqlite's implicit one.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def check_connection(engine: Engine) -> None:
    """Open one connection, translating driver errors into one readable sentence."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except exc.DBAPIError as err:
        reason = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
        raise DatabaseUnavailable(f"cannot open the database {describe(engine.url)}: {reason}") from err
