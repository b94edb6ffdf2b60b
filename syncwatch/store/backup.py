"""A consistent copy of a SQLite database taken while `serve` keeps writing to it.

Copying the file is not a backup: the latest commits sit in the ``-wal`` file beside it, and a copy
taken mid-write can be torn. SQLite's backup API copies every page within one read snapshot, which
writers in WAL mode do not wait for. The copy is written under a temporary name, checked, and only
then given its name, so a file under the chosen name is always a whole, checked backup.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine


@dataclass(frozen=True, slots=True)
class Backup:
    path: Path
    size: int  # bytes
    seconds: float


class BackupFailed(RuntimeError):
    """The copy could not be written, or did not pass SQLite's check (nothing is left under its name)."""


def backup_sqlite(engine: Engine, target: Path) -> Backup:
    """Copy the SQLite database behind ``engine`` to ``target``, which must not exist yet."""
    started = time.perf_counter()
    partial = target.with_name(f"{target.name}.partial")
    partial.unlink(missing_ok=True)  # left by a backup that was interrupted
    raw = engine.raw_connection()
    try:
        copy = sqlite3.connect(partial)
        try:
            raw.driver_connection.backup(copy)  # type: ignore[union-attr]  # all pages in one step: one snapshot
            verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            copy.close()
    except sqlite3.Error as err:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"the copy to {target} failed: {err}") from None
    finally:
        raw.close()
    if verdict != "ok":
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"the copy to {target} did not pass SQLite's quick_check: {verdict}")
    partial.rename(target)
    return Backup(target, target.stat().st_size, time.perf_counter() - started)
