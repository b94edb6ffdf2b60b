"""Alembic migrations, run programmatically: ``syncwatch db upgrade`` and at serve/demo start.

The upgrade runs inside one write transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock
on PostgreSQL), so several processes starting at once upgrade the schema exactly once.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from syncwatch.store.errors import SchemaMissing

SCRIPT_LOCATION = "syncwatch.store:migrations"
PG_LOCK_ID = 7_164_020_811  # arbitrary, constant: the advisory lock that serialises upgrades


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_ID})")
        command.upgrade(_config(conn), revision)


def require_current(engine: Engine) -> None:
    """Fail with a readable sentence unless the schema is at this version's head."""
    with engine.connect() as conn:
        current = current_revision(conn)
    if current is None:
        raise SchemaMissing("the database has no syncwatch schema yet; run `syncwatch db upgrade` first")
    if current != head_revision():
        raise SchemaMissing(
            f"the database schema is at revision {current}, this syncwatch needs {head_revision()}; "
            "run `syncwatch db upgrade`"
        )
