"""`syncwatch db backup`: a consistent, checked copy of a SQLite database taken while another
process keeps committing, never over an existing file; PostgreSQL is pointed at pg_dump."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from cli_support import syncwatch
from observation_support import span

from syncwatch.store import Store

BATCH = 400


def _write_batches(url: str, stop: threading.Event, written: list[int]) -> None:
    """Another writer (as `serve` is), committing whole batches until told to stop."""
    writer = Store.open(url)
    at = datetime(2026, 11, 20, tzinfo=UTC)
    try:
        n = 0
        while not stop.is_set():
            writer.write_observations([span(n + i, "POST /orders", "erp", at) for i in range(BATCH)])
            n += BATCH
            written.append(n)
    finally:
        writer.close()


def test_a_backup_taken_while_another_process_commits_holds_whole_batches_and_checks_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    assert syncwatch("db", "upgrade", "--db", url).returncode == 0
    stop, written = threading.Event(), [0]
    writer = threading.Thread(target=_write_batches, args=(url, stop, written))
    writer.start()
    try:
        while written[-1] < 20 * BATCH:
            stop.wait(0.05)
        before = written[-1]
        result = syncwatch("db", "backup", "--db", url, str(tmp_path / "copy.db"))
        after = written[-1]
    finally:
        stop.set()
        writer.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backed up {url} to {tmp_path / 'copy.db'}: ")
    assert f"remove {tmp_path / 'live.db'}-wal and " in result.stdout
    copy = sqlite3.connect(tmp_path / "copy.db")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows, top = copy.execute("SELECT count(*), max(id) FROM observations").fetchone()
    finally:
        copy.close()
    assert before <= rows <= after + BATCH, "what was committed before the backup began is in it"
    assert rows % BATCH == 0 and rows == top, "one snapshot: whole batches, no gaps"
    assert not (tmp_path / "copy.db.partial").exists()
    stats = syncwatch("stats", "--db", f"sqlite:///{tmp_path / 'copy.db'}", "--json")
    assert stats.returncode == 0, "the copy is a syncwatch database at this version's schema"


def test_a_backup_never_overwrites_and_postgresql_is_sent_to_pg_dump(store: Store, tmp_path: Path) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    existing = tmp_path / "monday.db"
    existing.write_bytes(b"yesterday's backup")
    refused = syncwatch("db", "backup", "--db", url, str(existing))
    assert refused.returncode == 2
    if store.dialect == "postgresql":
        assert "is not a SQLite file; back PostgreSQL up with pg_dump" in refused.stderr
    else:
        assert refused.stderr == f"syncwatch: {existing} exists; name a new file (a backup never overwrites one)\n"
        nowhere = syncwatch("db", "backup", "--db", url, str(tmp_path / "gone" / "copy.db"))
        assert (nowhere.returncode, nowhere.stderr) == (2, f"syncwatch: {tmp_path / 'gone'} is not a directory\n")
    assert existing.read_bytes() == b"yesterday's backup"
