"""A whole backlog correlated in one pass derives what small incremental passes derive, a batch
ends at its limit, and a pass that fails midway leaves the store as it was.

The fixture ingests the committed sample_data/ week once; each test correlates its own copy.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import threading
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from observation_support import span
from sqlalchemy import delete, event, func, select, update

from correlator import parallel, passes
from correlator.members import MemberReader
from correlator.passes import CHECKPOINT, Correlator
from syncwatch.config import load_config
from syncwatch.store import Checkpoint, Store, correlation
from syncwatch.store.schema import business_keys, exceptions, observations, transaction_keys, transactions

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
AS_OF = datetime(2026, 11, 8, 23, 59, tzinfo=UTC)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_data/ ingested into a SQLite file, not yet correlated."""
    path = tmp_path_factory.mktemp("backlog") / "ingested.db"
    files = sorted(
        str(p) for p in SAMPLE_DATA.rglob("*") if p.suffix in (".jsonl", ".log") and p.name != "ground_truth.jsonl"
    )
    for args in (("db", "upgrade"), ("ingest", *files)):
        subprocess.run([sys.executable, "-m", "syncwatch", *args, "--db", f"sqlite:///{path}"], check=True, timeout=300)
    return path


def copy_of(ingested: Path, folder: Path) -> Store:
    folder.mkdir()
    target = folder / "copy.db"
    with sqlite3.connect(ingested) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return Store.open(f"sqlite:///{target}")


def derived(store: Store) -> tuple[list[tuple[Any, ...]], ...]:
    """Every transaction, key and exception, without the time the pass wrote them."""
    tables = (transactions, transaction_keys, exceptions)
    with store.engine.connect() as conn:
        return tuple(
            sorted((tuple(r) for r in conn.execute(select(*(c for c in t.c if c.name != "updated_at")))), key=repr)
            for t in tables
        )


def test_a_batch_ends_at_its_limit_whichever_way_its_last_id_is_found(store: Store) -> None:
    """A batch is the whole rest where the newest id is within its limit, else that many
    observations counted past the gaps that deleted ones leave (retention makes them)."""
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    store.write_observations(
        [span(n, "POST /orders", "marketplace-amazon", at, marketplace_order=f"113-{n}") for n in range(10)]
    )
    with store.writing() as conn:
        ids = list(conn.execute(select(observations.c.id).order_by(observations.c.id)).scalars())
        conn.execute(delete(observations).where(observations.c.id.in_(ids[2:5])))
    kept = ids[:2] + ids[5:]

    def batch(after: int, limit: int) -> list[int]:
        with store.engine.connect() as conn:
            end = correlation.batch_end(conn, after, limit)
            found = correlation.new_observations(conn, after, end) if end is not None else []
            return [row[0] for rows in found for row, _ in rows]

    assert batch(0, 100) == kept
    assert batch(0, 4) == kept[:4], "four observations, two of them past the gap"
    assert batch(kept[3], 7) == kept[4:]
    assert batch(ids[-1], 5) == []


def test_one_pass_over_the_backlog_derives_what_small_passes_derive(ingested: Path, tmp_path: Path) -> None:
    whole = copy_of(ingested, tmp_path / "whole")
    steps = copy_of(ingested, tmp_path / "steps")
    one = Correlator(whole, load_config(), clock=lambda: AS_OF).run_pass()
    assert one.observations == whole.counts()["observations"]
    Correlator(steps, load_config(), clock=lambda: AS_OF).run_pass(batch=400)
    expected = derived(whole)
    assert all(expected), "the sample should derive transactions, keys and exceptions"
    assert derived(steps) == expected


def test_keys_read_along_the_key_table_derive_what_keys_merged_by_observation_derive(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large batch on SQLite reads its keys node by node (``correlation._keys_by_observation``)
    while it is at least a tenth of the observations before it; the sample is smaller than that
    takes, so the threshold is lowered: of 25 batches, the first eleven read keys that way (each
    leaving out keys of observations on either side of it), the rest merged by observation."""
    merged = copy_of(ingested, tmp_path / "merged")
    Correlator(merged, load_config(), clock=lambda: AS_OF).run_pass()
    scans = []
    scan = correlation._keys_by_observation
    monkeypatch.setattr(correlation, "KEY_SCAN_FROM", 0)
    monkeypatch.setattr(correlation, "_keys_by_observation", lambda *args: scans.append(args[1:3]) or scan(*args))
    scanned = copy_of(ingested, tmp_path / "scanned")
    batch = scanned.counts()["observations"] // 25 + 1
    Correlator(scanned, load_config(), clock=lambda: AS_OF).run_pass(batch=batch)
    assert [after for after, _ in scans] == [batch * n for n in range(11)]
    assert derived(scanned) == derived(merged)


def key_indexes(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transaction_keys' ORDER BY name"
        return list(conn.exec_driver_sql(sql).scalars())


def test_a_pass_writing_many_keys_indexes_them_by_value_after_writing_them(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass writing at least a quarter as many keys as are stored drops the keys' value index
    and builds it again before it commits; the sample writes fewer keys than that takes, so the
    threshold is lowered. A small pass on top of that history keeps the index as it is."""
    plain = copy_of(ingested, tmp_path / "plain")
    Correlator(plain, load_config(), clock=lambda: AS_OF).run_pass()
    indexes = key_indexes(plain)
    assert indexes == ["ix_transaction_keys_value_key_type"]
    monkeypatch.setattr(correlation, "INDEX_AFTER_FROM", 0)
    store = copy_of(ingested, tmp_path / "after")
    ddl: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _index_ddl(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if "INDEX" in sql:
            ddl.append(" ".join(sql.split()))

    correlator = Correlator(store, load_config(), clock=lambda: AS_OF)
    correlator.run_pass()
    assert ddl == [
        "DROP INDEX ix_transaction_keys_value_key_type",
        "CREATE INDEX ix_transaction_keys_value_key_type ON transaction_keys (value, key_type)",
    ]
    assert key_indexes(store) == indexes
    assert derived(store) == derived(plain)
    ddl.clear()
    store.save_checkpoint(Checkpoint(CHECKPOINT, store.counts()["observations"] - 50))
    assert correlator.run_pass().transactions
    assert ddl == []


def test_the_keys_value_index_is_built_after_a_large_pass_on_sqlite_only(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a DROP INDEX would lock the key table against every reader until the pass
    commits: the index stays there, however many keys a pass writes."""
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    orders = [span(n, "POST /orders", "marketplace-amazon", at, marketplace_order=f"113-{n}") for n in range(20)]
    store.write_observations(orders)
    monkeypatch.setattr(correlation, "INDEX_AFTER_FROM", 0)
    ddl: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _index_ddl(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql.strip().startswith(("DROP INDEX", "CREATE INDEX")):
            ddl.append(sql.split()[0])

    assert Correlator(store, load_config(), clock=lambda: AS_OF).run_pass().transactions == len(orders)
    assert ddl == (["DROP", "CREATE"] if store.dialect == "sqlite" else [])


def test_a_pass_writing_many_keys_brings_back_a_value_index_dropped_by_hand(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = copy_of(ingested, tmp_path / "lost")
    with store.writing() as conn:
        conn.exec_driver_sql("DROP INDEX ix_transaction_keys_value_key_type")
    monkeypatch.setattr(correlation, "INDEX_AFTER_FROM", 0)
    Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    assert key_indexes(store) == ["ix_transaction_keys_value_key_type"]


def test_a_pass_failing_midway_leaves_the_store_as_it_was(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its keys' value index too, which a pass writing many keys drops until its writes are done."""
    store = copy_of(ingested, tmp_path / "failed")
    indexes = key_indexes(store)
    monkeypatch.setattr(correlation, "INDEX_AFTER_FROM", 0)
    derive, calls = passes.derive, []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > passes.WRITE_EVERY * 3 // 2:  # after a chunk went to the writer thread
            raise RuntimeError("interrupted")
        return derive(*args, **kwargs)

    monkeypatch.setattr(passes, "WRITE_EVERY", 200)
    monkeypatch.setattr(passes, "derive", failing)
    threads = threading.active_count()
    with pytest.raises(RuntimeError, match="interrupted"):
        Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    assert gc.isenabled() and threading.active_count() == threads
    counts = store.counts()
    assert (counts["transactions"], counts["exceptions"], store.checkpoint(CHECKPOINT)) == (0, 0, None)
    assert not any(derived(store))
    assert key_indexes(store) == indexes
    monkeypatch.setattr(passes, "derive", derive)
    Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    assert derived(store) == derived(copy_of_correlated(ingested, tmp_path))


def test_each_batch_lets_go_of_its_transactions_before_the_next_one_begins(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's transactions are freed on a thread while it commits: the pass waits for it, so
    no thread is left to stop the next batch's helpers, and the cycle collector is on again."""
    store = copy_of(ingested, tmp_path / "batches")
    written: list[weakref.ref[Any]] = []
    alive_as_batches_began: list[int] = []
    write, new = Correlator._write, Correlator._new

    def writing(correlator: Correlator, conn: Any, components: list[Any], *args: Any, **kwargs: Any) -> None:
        written.extend(weakref.ref(component) for component in components)
        write(correlator, conn, components, *args, **kwargs)

    def next_batch(correlator: Correlator, *args: Any, **kwargs: Any) -> tuple[int, int]:
        alive_as_batches_began.append(sum(ref() is not None for ref in written))
        return new(correlator, *args, **kwargs)

    monkeypatch.setattr(Correlator, "_write", writing)
    monkeypatch.setattr(Correlator, "_new", next_batch)
    threads = threading.active_count()
    Correlator(store, load_config(), clock=lambda: AS_OF).run_pass(batch=2_000)
    assert len(alive_as_batches_began) > 3 and written
    assert not any(alive_as_batches_began) and not any(ref() for ref in written)
    assert gc.isenabled() and threading.active_count() == threads


def test_a_pass_that_gets_no_thread_lets_go_of_its_transactions_itself(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = threading.Thread.start

    def refusing(thread: threading.Thread) -> None:
        if thread.name == "correlator-let-go":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refusing)
    store = copy_of(ingested, tmp_path / "threadless")
    Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    assert derived(store) == derived(copy_of_correlated(ingested, tmp_path))


def unpacked_members(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many members each list a read helper sent held, as the pass unpacks them."""
    counted: list[int] = []
    unpack = MemberReader._unpack

    def counting(reader: MemberReader, packed: list[tuple[Any, ...]], found: list[Any]) -> None:
        counted.append(len(packed))
        unpack(reader, packed, found)

    monkeypatch.setattr(MemberReader, "_unpack", counting)
    return counted


def test_a_backlog_read_partly_by_a_helper_process_derives_what_one_process_derives(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample is smaller than a helper reads for, so the threshold is lowered: the helper
    reads the later part of the observations on its own connection, in lists of 500."""
    alone = copy_of(ingested, tmp_path / "alone")
    single = Correlator(alone, load_config(), clock=lambda: AS_OF).run_pass()
    unpacked = unpacked_members(monkeypatch)
    monkeypatch.setattr(passes, "READ_APART_FROM", 0)
    monkeypatch.setenv("SYNCWATCH_CORRELATE_PROCESSES", "2")  # a helper to read, on any number of cores
    monkeypatch.setattr(correlation, "FETCH", 500)
    shared = copy_of(ingested, tmp_path / "shared")
    two = Correlator(shared, load_config(), clock=lambda: AS_OF).run_pass()
    assert len(unpacked) > 1, "the helper should have sent its members in several lists"
    assert sum(unpacked) == members_after(shared, int(two.observations * passes.READ_HERE["sqlite"]))
    assert two.observations == single.observations == shared.counts()["observations"]
    assert derived(shared) == derived(alone)
    monkeypatch.setenv("SYNCWATCH_CORRELATE_PROCESSES", "1")
    unpacked.clear()
    Correlator(copy_of(ingested, tmp_path / "one"), load_config(), clock=lambda: AS_OF).run_pass()
    assert not unpacked, "correlate_processes = 1 forks no helper, not even to read"


def members_after(store: Store, mid: int) -> int:
    """Observations after id ``mid`` that are members of something: with an identity key or a trace id."""
    keyed = select(business_keys.c.observation_id).where(business_keys.c.observation_id == observations.c.id).exists()
    linked = (func.coalesce(observations.c.trace_id, "") != "") | keyed
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).where(observations.c.id > mid, linked)).scalar_one()


def test_a_read_helper_reads_what_the_pass_reads_on_either_engine(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The helper's own connection reads the database as the pass's transaction saw it when it
    forked the helper: each order's capture, read by the pass, links with its booking, read by
    the helper. On PostgreSQL the pass exports its snapshot: a booking's key changed by another
    connection after that is read as it was. On SQLite the pass holds the write lock, so no other
    connection can change anything meanwhile."""
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    orders = 40
    captures = [span(n, "POST /orders", "marketplace-amazon", at, marketplace_order=f"113-{n}") for n in range(orders)]
    bookings = [
        span(orders + n, "POST /sales-orders", "erp", at, marketplace_order=f"113-{n}", erp_order=f"SO-{n}")
        for n in range(orders)
    ]
    store.write_observations(captures)
    store.write_observations(bookings)
    export, tried = correlation.shared_snapshot, []

    def exported_then_changed(conn: Any) -> str | None:
        snapshot = export(conn)
        tried.append(rekey_elsewhere(store, "SO-0", "SO-changed"))
        return snapshot

    monkeypatch.setattr(correlation, "shared_snapshot", exported_then_changed)
    unpacked = unpacked_members(monkeypatch)
    monkeypatch.setattr(passes, "READ_APART_FROM", 0)
    monkeypatch.setenv("SYNCWATCH_CORRELATE_PROCESSES", "2")  # a helper to read, on any number of cores
    monkeypatch.setattr(correlation, "FETCH", 10)
    monkeypatch.setitem(passes.READ_HERE, store.dialect, 0.5)  # the pass reads the captures, the helper the bookings
    result = Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    assert tried == ["changed" if store.dialect == "postgresql" else "database is locked"]
    assert sum(unpacked) == orders, "the helper should have read the bookings"
    assert "failed" not in caplog.text
    assert (result.observations, result.transactions) == (2 * orders, orders)
    with store.engine.connect() as conn:
        linked = conn.execute(
            select(transaction_keys.c.transaction_id).where(transaction_keys.c.key_type == "erp_order")
        ).scalars()
        assert sorted(linked) == sorted(f"order:113-{n}" for n in range(orders))
        values = conn.execute(select(transaction_keys.c.value).where(transaction_keys.c.key_type == "erp_order"))
        assert "SO-0" in set(values.scalars()), "the helper should read the key as the pass's snapshot has it"


def rekey_elsewhere(store: Store, value: str, new: str) -> str:
    """Change a business key's value on a connection of its own: "changed", or why it could not be."""
    path = store.sqlite_file()
    if path is None:
        with store.engine.begin() as conn:
            conn.execute(update(business_keys).where(business_keys.c.value == value).values(value=new))
        return "changed"
    with sqlite3.connect(path, timeout=0.05) as conn:
        try:
            conn.execute("UPDATE business_keys SET value = ? WHERE value = ?", (new, value))
        except sqlite3.OperationalError as err:
            return str(err)
    return "changed"


def test_a_read_helper_that_dies_leaves_what_it_did_not_send_to_the_pass(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reference = copy_of_correlated(ingested, tmp_path)
    parent, packed = os.getpid(), MemberReader.packed

    def dying(reader: MemberReader, batches: Any) -> Any:
        for sent, found in enumerate(packed(reader, batches)):
            if sent == 2 and os.getpid() != parent:
                os._exit(9)  # as a helper killed by the system would end, sending nothing more
            yield found

    unpacked = unpacked_members(monkeypatch)
    monkeypatch.setattr(MemberReader, "packed", dying)
    monkeypatch.setattr(passes, "READ_APART_FROM", 0)
    monkeypatch.setenv("SYNCWATCH_CORRELATE_PROCESSES", "2")  # a helper to read, on any number of cores
    monkeypatch.setattr(correlation, "FETCH", 500)
    store = copy_of(ingested, tmp_path / "dying")
    result = Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    assert len(unpacked) == 2, "the helper should have sent two lists before it died"
    assert "helper process correlator-read failed (it ended with exit code 9)" in caplog.text
    assert result.observations == store.counts()["observations"]
    assert derived(store) == derived(reference)


def test_a_read_helper_that_dies_at_once_leaves_the_pass_only_the_new_observations(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The pass's own part is empty (all of it the helper's), and the helper dies before sending
    anything: the pass reads the batch itself, and nothing before its checkpoint."""
    store = copy_of(ingested, tmp_path / "dead")
    total = store.counts()["observations"]
    store.save_checkpoint(Checkpoint(CHECKPOINT, total // 2))
    parent = os.getpid()

    def dead(reader: MemberReader, batches: Any) -> Any:
        if os.getpid() != parent:
            os._exit(9)
        yield from ()

    unpacked = unpacked_members(monkeypatch)
    monkeypatch.setattr(MemberReader, "packed", dead)
    monkeypatch.setattr(passes, "READ_APART_FROM", 0)
    monkeypatch.setenv("SYNCWATCH_CORRELATE_PROCESSES", "2")  # a helper to read, on any number of cores
    monkeypatch.setitem(passes.READ_HERE, "sqlite", 0.0)
    result = Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    assert "helper process correlator-read failed (it ended with exit code 9)" in caplog.text
    assert not unpacked
    assert result.observations == total - total // 2
    assert store.checkpoint(CHECKPOINT).position == total


def copy_of_correlated(ingested: Path, tmp_path: Path) -> Store:
    store = copy_of(ingested, tmp_path / "reference")
    Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    return store


def test_helper_processes_derive_what_one_process_derives(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample is smaller than a pass forks helpers for, so the threshold is lowered and the
    chunks made small: two helpers derive two of every three chunks."""
    alone = copy_of(ingested, tmp_path / "alone")
    monkeypatch.setenv("SYNCWATCH_CORRELATE_PROCESSES", "1")
    single = Correlator(alone, load_config(), clock=lambda: AS_OF).run_pass()
    sent = helper_results(monkeypatch)
    monkeypatch.setattr(passes, "PARALLEL_FROM", 0)
    monkeypatch.setattr(passes, "WRITE_EVERY", 50)
    monkeypatch.setenv("SYNCWATCH_CORRELATE_PROCESSES", "3")
    shared = copy_of(ingested, tmp_path / "shared")
    several = Correlator(shared, load_config(), clock=lambda: AS_OF).run_pass()
    chunks = -(-single.transactions // 50)
    assert len(sent) == chunks - -(-chunks // 3), "the helpers should derive two chunks of every three"
    assert derived(shared) == derived(alone)
    assert (several.transactions, several.exceptions, several.alerts) == (
        single.transactions,
        single.exceptions,
        single.alerts,
    )


def test_a_helper_that_fails_leaves_its_share_to_the_pass(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reference = copy_of_correlated(ingested, tmp_path)
    parent, derive = os.getpid(), passes.derive

    def failing_in_helpers(*args: Any, **kwargs: Any) -> Any:
        if os.getpid() != parent:
            raise MemoryError("no room")
        return derive(*args, **kwargs)

    monkeypatch.setattr(passes, "derive", failing_in_helpers)
    monkeypatch.setattr(passes, "PARALLEL_FROM", 0)
    monkeypatch.setattr(passes, "WRITE_EVERY", 50)
    monkeypatch.setenv("SYNCWATCH_CORRELATE_PROCESSES", "2")
    store = copy_of(ingested, tmp_path / "failing")
    Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    assert derived(store) == derived(reference)
    assert "helper process correlator-derive-1 failed (MemoryError: no room)" in caplog.text


def helper_results(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every result a helper process sent, as the pass takes them."""
    sent: list[object] = []
    take = parallel._Helper.next_result

    def counted(helper: parallel._Helper) -> object:
        found = take(helper)
        if found is not parallel._MISSING:
            sent.append(found)
        return found

    monkeypatch.setattr(parallel._Helper, "next_result", counted)
    return sent
