"""The one database wrapper every read and write goes through (pages and actions hold no SQL)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, func, select, text

from syncwatch.model import Observation
from syncwatch.store import correlation, gauges, locks, migrate, quiet, writes
from syncwatch.store.backup import Backup, backup_sqlite
from syncwatch.store.correlation import Backlog
from syncwatch.store.engine import check_connection, describe, make_engine, sqlite_file
from syncwatch.store.gauges import ServiceGauges
from syncwatch.store.quiet import QuietSystem
from syncwatch.store.schema import COUNTED_TABLES, metadata
from syncwatch.store.writes import Checkpoint, QuarantineItem, WriteResult

DEFAULT_RAW_LIMIT = 64 * 1024
# WAL pages after which a commit copies the log back into the database file (SQLite's default is
# 1,000). Spans' ids are random, so each commit rewrites hundreds of index pages, and at 1,000
# nearly every commit also paid a checkpoint (a copy and two fsyncs); at 10,000 (40 MB with 4 KiB
# pages) a page rewritten by ten commits is copied once. Durability is unchanged for a killed
# process; on power loss, synchronous=NORMAL already allows the latest commits to roll back.
WAL_AUTOCHECKPOINT_PAGES = 10_000


class Store:
    """A syncwatch database: one engine, named writes and named queries."""

    def __init__(self, engine: Engine, *, raw_limit: int = DEFAULT_RAW_LIMIT) -> None:
        self.engine = engine
        self.raw_limit = raw_limit

    @classmethod
    def open(cls, url: str, *, raw_limit: int = DEFAULT_RAW_LIMIT, must_exist: bool = False) -> Store:
        """Open and check the database at ``url`` (raises DatabaseUnavailable with one sentence)."""
        engine = make_engine(url, must_exist=must_exist)
        check_connection(engine)
        return cls(engine, raw_limit=raw_limit)

    def reopened(self) -> Store:
        """The same database on an engine of its own, for a forked helper process: the engine it
        inherits holds its parent's connections, which it must neither use nor close."""
        return Store(make_engine(self.engine.url.render_as_string(hide_password=False)), raw_limit=self.raw_limit)

    @property
    def url(self) -> str:
        return describe(self.engine.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def checkpoint_less_often(self) -> None:
        """For `serve`'s random-id span writes: SQLite checkpoints every WAL_AUTOCHECKPOINT_PAGES
        instead of every 1,000 (no-op on PostgreSQL). A file import, whose line ids mostly append,
        measured slower with it (23k against 27k lines/s): a longer WAL is slower to look up."""
        if self.dialect != "sqlite":
            return

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")

        self.engine.dispose()  # the connections already pooled (an upgrade's) are opened again with it

    def backup(self, target: Path) -> Backup:
        """A consistent, checked copy of a SQLite database at ``target`` (see ``backup.backup_sqlite``)."""
        return backup_sqlite(self.engine, target)

    def sqlite_file(self) -> Path | None:
        """The database file, for SQLite on a file; None otherwise."""
        return sqlite_file(self.engine)

    def upgrade(self) -> None:
        migrate.upgrade(self.engine)

    def require_schema(self) -> None:
        migrate.require_current(self.engine)

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """Whether this process may run the job ``name`` now (see ``locks.exclusive``)."""
        return locks.exclusive(self.engine, name)

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            yield conn

    def write_observations(self, batch: Sequence[Observation]) -> WriteResult:
        with self.writing() as conn:
            return writes.write_observations(conn, batch)

    def quarantine(self, items: Iterable[QuarantineItem]) -> int:
        with self.writing() as conn:
            return writes.write_quarantine(conn, items, self.raw_limit)

    def ordered_line_ids(self) -> bool:
        """Whether access-log lines get ordered natural ids here (see ``writes.ordered_line_ids``);
        the write lock is taken only while the choice is still to be made."""
        with self.engine.connect() as conn:
            recorded = writes.recorded_line_ids(conn)
        if recorded is not None:
            return recorded
        with self.writing() as conn:
            return writes.ordered_line_ids(conn)

    def checkpoint(self, source: str) -> Checkpoint | None:
        with self.engine.connect() as conn:
            return writes.read_checkpoint(conn, source)

    def correlation_backlog(self, within_s: float | None = None) -> Backlog:
        """What waits for the correlator: for /healthz, the dashboard's warning and the alert. With
        ``within_s``, a database that does not answer in time (a table locked) raises, as one that
        does not answer at all: a health check must answer its monitor, not wait with the writers."""
        with self._answering(within_s) as conn:
            return correlation.correlation_backlog(conn)

    def service_gauges(self, now: datetime, within_s: float | None = None) -> ServiceGauges:
        """What `serve`'s /metrics reports from the database at each scrape (``within_s`` as above)."""
        with self._answering(within_s) as conn:
            return gauges.service_gauges(conn, now)

    @contextmanager
    def _answering(self, within_s: float | None) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if within_s is not None and conn.dialect.name == "postgresql":  # SQLite readers never wait (WAL)
                conn.execute(text(f"SET LOCAL statement_timeout = {int(within_s * 1000)}"))
            yield conn

    def quiet_systems(self, now: datetime) -> list[QuietSystem]:
        """Systems that stopped sending (see ``quiet``), for the Operations page and the alert."""
        with self.engine.connect() as conn:
            return quiet.quiet_systems(conn, now)

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self.writing() as conn:
            writes.save_checkpoint(conn, checkpoint)

    def counts(self) -> dict[str, int]:
        """Rows per table, the figures `syncwatch stats` prints."""
        tables = metadata.tables
        query = select(
            *(select(func.count()).select_from(tables[name]).scalar_subquery().label(name) for name in COUNTED_TABLES)
        )
        with self.engine.connect() as conn:
            return dict(conn.execute(query).one()._mapping)
