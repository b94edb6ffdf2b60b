"""`syncwatch serve`'s SQLite tuning: its connections checkpoint the WAL less often."""

from __future__ import annotations

from pathlib import Path

from syncwatch.store import Store
from syncwatch.store.database import WAL_AUTOCHECKPOINT_PAGES


def test_serve_connections_checkpoint_the_wal_less_often(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'serve.db'}")
    store.upgrade()
    store.checkpoint_less_often()
    try:
        with store.writing() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert (pages, mode) == (WAL_AUTOCHECKPOINT_PAGES, "wal")
    finally:
        store.close()
