"""The store suite, run against every engine (SQLite file and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from syncwatch.model import BusinessKey, Observation, ObservationKind, Outcome, from_ns
from syncwatch.store import Checkpoint, QuarantineItem, Store, correlation, migrate
from syncwatch.store.bulk import insert_tuples, statement_sizes
from syncwatch.store.engine import make_engine
from syncwatch.store.reads import quarantine_reasons
from syncwatch.store.schema import (
    COUNTED_TABLES,
    business_keys,
    checkpoints,
    exceptions,
    metadata,
    observations,
    transactions,
)
from syncwatch.store.writes import INGEST_CACHE_KIB, SQLITE_FORM, WriteResult, json_text

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def span(n: int, **changes: object) -> Observation:
    fields: dict[str, object] = {
        "natural_id": f"trace{n:04d}:span{n:04d}",
        "kind": ObservationKind.SPAN,
        "system": "erp",
        "operation": "POST /sales-orders",
        "start": T0 + timedelta(seconds=n),
        "end": T0 + timedelta(seconds=n, milliseconds=40),
        "status_code": 201,
        "trace_id": f"{n:032x}",
        "span_id": f"{n:016x}",
        "source": "test",
        "keys": (BusinessKey("erp_order", f"SO-{n}"), BusinessKey("sku", "SKU-1", identity=False)),
        "attributes": {"erp.sales_order": f"SO-{n}", "http.response.status_code": 201},
    }
    fields.update(changes)
    return Observation(**fields)  # type: ignore[arg-type]


def rows(store: Store, table=observations) -> list:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return list(conn.execute(select(table)))


def test_a_new_database_counts_zero_everywhere(store: Store) -> None:
    assert store.counts() == dict.fromkeys(COUNTED_TABLES, 0)


def test_upgrading_twice_changes_nothing(store: Store) -> None:
    store.write_observations([span(1)])
    store.upgrade()
    store.require_schema()
    assert store.counts()["observations"] == 1


def test_migrations_create_exactly_the_declared_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_transaction_keys_lose_their_rowid_on_sqlite_and_keep_their_rows(tmp_path: Path) -> None:
    """Revision 0017 rebuilds transaction_keys without a rowid: the keys stored before it stay,
    found by value, but for one naming no stored transaction (it would fail the copy), and
    removing a transaction still takes its keys along. A downgrade gives the rowid back."""
    path = tmp_path / "older.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0016")
    with closing(sqlite3.connect(path)) as raw, raw:  # foreign keys unenforced, as an old writer may have left them
        raw.execute("INSERT INTO transaction_keys VALUES ('order:gone', 'marketplace_order', '113-0')")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO transactions (id, type, status, sla_state, stages, started_at, last_seen_at,"
            " observation_count, updated_at) VALUES ('order:113-1', 'order', 'open', 'on_track', '[]',"
            " '2026-11-02 10:00:00', '2026-11-02 10:00:00', 2, '2026-11-02 10:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO transaction_keys VALUES ('order:113-1', 'marketplace_order', '113-1'),"
            " ('order:113-1', 'erp_order', 'SO-1')"
        )
    migrate.upgrade(engine)
    table = "SELECT sql FROM sqlite_master WHERE name = 'transaction_keys'"
    with engine.begin() as conn:
        rebuilt = conn.exec_driver_sql(table).scalar_one()
        found = conn.exec_driver_sql("SELECT transaction_id FROM transaction_keys WHERE value = 'SO-1'").all()
        kept = conn.exec_driver_sql("SELECT count(*) FROM transaction_keys").scalar_one()
        conn.exec_driver_sql("DELETE FROM transactions WHERE id = 'order:113-1'")
        left = conn.exec_driver_sql("SELECT count(*) FROM transaction_keys").scalar_one()
    with engine.connect() as conn, conn.begin():
        command.downgrade(migrate._config(conn), "0016")
    with engine.begin() as conn:
        downgraded = conn.exec_driver_sql(table).scalar_one()
    engine.dispose()
    assert "WITHOUT ROWID" in rebuilt
    assert (found, kept) == ([("order:113-1",)], 2)
    assert "WITHOUT ROWID" not in downgraded
    assert left == 0


def test_the_same_observation_twice_is_stored_once_and_counted(store: Store) -> None:
    first = store.write_observations([span(1), span(2)])
    again = store.write_observations([span(1)])
    assert (first.stored, first.duplicates) == (2, 0)
    assert (again.stored, again.duplicates) == (0, 1)
    stored = {row.natural_id: row.duplicates for row in rows(store)}
    assert stored == {"trace0001:span0001": 1, "trace0002:span0002": 0}


def test_a_repeat_inside_one_batch_is_stored_once(store: Store) -> None:
    result = store.write_observations([span(7), span(7), span(7)])
    assert (result.stored, result.duplicates) == (1, 2)
    assert [row.duplicates for row in rows(store)] == [2]


def test_a_batch_of_new_and_redelivered_rows_stores_the_new_ones_under_their_own_ids(store: Store) -> None:
    """The writer inserts first and looks up only what was left out: the ids, identity keys and
    duplicate counts must still land on the right rows when a batch mixes both."""
    store.write_observations([span(2), span(4)])
    result = store.write_observations([span(1), span(2), span(3), span(4), span(4), span(5)])
    assert (result.stored, result.duplicates) == (3, 3)
    by_id = {row.natural_id: row for row in rows(store)}
    assert {nid: row.duplicates for nid, row in by_id.items()} == {
        f"trace{n:04d}:span{n:04d}": {2: 1, 4: 2}.get(n, 0) for n in range(1, 6)
    }
    keys = {(row.value, row.observation_id) for row in rows(store, business_keys)}
    assert keys == {(f"SO-{n}", by_id[f"trace{n:04d}:span{n:04d}"].id) for n in range(1, 6)}


def test_sqlite_ids_taken_at_random_still_tell_new_rows_from_stored_ones(tmp_path: Path) -> None:
    """Once the largest 64-bit id is taken SQLite picks new ids at random: the writer then looks
    the stored ones up before inserting, since the new ones no longer follow the largest."""
    store = Store.open(f"sqlite:///{tmp_path / 'top.db'}")
    store.upgrade()
    store.write_observations([span(1)])
    top = 2**63 - 1
    with store.engine.begin() as conn:  # span 1 moved, with its identity key, to the largest id
        conn.execute(business_keys.delete())
        conn.execute(observations.update().values(id=top))
        conn.execute(business_keys.insert().values(value="SO-1", key_type="erp_order", observation_id=top))
    result = store.write_observations([span(1), span(2), span(3)])
    assert (result.stored, result.duplicates) == (2, 1)
    by_id = {row.natural_id: row for row in rows(store)}
    assert by_id["trace0001:span0001"].duplicates == 1 and by_id["trace0001:span0001"].id == top
    keys = {(row.value, row.observation_id) for row in rows(store, business_keys)}
    assert keys == {(f"SO-{n}", by_id[f"trace{n:04d}:span{n:04d}"].id) for n in (1, 2, 3)}
    store.close()


def test_a_sqlite_connection_that_writes_observations_keeps_a_roomy_page_cache(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'cache.db'}")
    store.upgrade()
    store.write_observations([span(1)])
    with store.engine.connect() as conn:  # the pool hands back the connection that wrote
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -INGEST_CACHE_KIB
    store.close()


def test_every_field_survives_the_round_trip(store: Store) -> None:
    original = span(
        3,
        outcome=Outcome.ERROR,
        status_code=422,
        error_message="unknown SKU",
        payload=b'{"a":1}',
        parent_id="00000000000000aa",
    )
    store.write_observations([original])
    (row,) = rows(store)
    assert (row.kind, row.system, row.operation, row.outcome) == ("span", "erp", "POST /sales-orders", "error")
    assert (row.status_code, row.error_message, row.payload) == (422, "unknown SKU", b'{"a":1}')
    assert (row.trace_id, row.span_id, row.parent_id) == (original.trace_id, original.span_id, "00000000000000aa")
    assert row.start_time == original.start and row.end_time == original.end
    assert row.attributes == original.attributes
    assert row.extracted_keys == [["erp_order", "SO-3", True], ["sku", "SKU-1", False]]


def test_attributes_orjson_refuses_are_stored_all_the_same(store: Store) -> None:
    awkward = {"big": 2**70, "lone": "\ud800", "nested": {"n": [1.5, None, True]}, "when": T0}
    store.write_observations([span(5, attributes=awkward)])
    (row,) = rows(store)
    assert row.attributes == {**awkward, "when": str(T0)}


def test_json_text_is_compact_json_either_way() -> None:
    assert json_text({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'
    assert json_text({"a": 2**70}) == '{"a":1180591620717411303424}'


def test_sqlite_times_from_nanoseconds_match_the_datetime_path() -> None:
    edges = [946_684_800 * 10**9, 1_764_150_000_123_456_789, 1_764_150_059_999_999_999, 1_764_150_060_000_000_999]
    spread = [946_684_800 * 10**9 + n * 1_577_000_000_123_457 for n in range(2000)]  # 2000 to 2100, odd offsets
    for ns in edges + spread:
        assert SQLITE_FORM.ns(ns) == SQLITE_FORM.moment(from_ns(ns))


def test_a_transaction_time_is_written_as_its_own_text_whatever_was_written_before() -> None:
    """Texts are kept by the time object's identity: a time made later at the address of one gone
    (CPython reuses them) must not be given the text of the one gone."""
    chicago = timezone(timedelta(hours=-6))
    first = datetime(2026, 11, 2, 3, 30, 0, 250, tzinfo=UTC)
    assert correlation._sqlite_time(first) == "2026-11-02 03:30:00.000250"
    assert correlation._sqlite_time(first) == "2026-11-02 03:30:00.000250"
    later = datetime(2026, 11, 2, 3, 30, tzinfo=chicago)
    correlation._TEXTS[id(later)] = (first, "2026-11-02 03:30:00.000250")  # as if ``later`` took ``first``'s place
    assert correlation._sqlite_time(later) == "2026-11-02 09:30:00.000000"
    assert correlation._sqlite_time(None) is None


def test_exceptions_written_through_the_driver_read_back_as_sqlalchemy_writes_them(tmp_path: Path) -> None:
    """SQLite takes a pass's exceptions through the driver; the text it stores (times, the context's
    JSON) must be what SQLAlchemy's types store, or rows written before would read differently."""
    first = datetime(2026, 11, 2, 3, 30, 0, 250, tzinfo=UTC)
    parent = {"id": "order:1", "type": "order", "sla_state": "breached", "stages": [], "observation_count": 1}
    parent |= {"started_at": first, "last_seen_at": first, "updated_at": first}
    row = {
        "id": "exc-1",
        "transaction_id": "order:1",
        "category": "timeout",
        "status": "open",
        "system": "erp",
        "endpoint": "POST /sales-orders",
        "stage": "booked",
        "summary": "erp did not answer",
        "suggested_action": "retry",
        "assignee": None,
        "context": {"channel": "marketplace-amz", "customer": "Zoë", "order_value": "12.50", "promised_at": None},
        "observation_id": None,
        "resolved_by_observation_id": None,
        "attempts": 2,
        "opened_at": first,
        "last_seen_at": datetime(2026, 11, 2, 9, 30, tzinfo=timezone(timedelta(hours=6))),
        "updated_at": datetime(2026, 11, 2, 4, tzinfo=UTC),
        "resolved_at": None,
    }
    stored = []
    for through_driver in (True, False):
        store = Store.open(f"sqlite:///{tmp_path / f'{through_driver}.db'}")
        store.upgrade()
        with store.writing() as conn:
            conn.execute(transactions.insert(), [parent])
            if through_driver:
                correlation.upsert_exceptions(conn, [row])
                correlation.upsert_exceptions(conn, [{**row, "status": "resolved", "resolved_at": first}])
            else:  # the SQLAlchemy statement every engine took before
                stmt = sqlite_insert(exceptions)
                update = stmt.on_conflict_do_update(
                    index_elements=["id"], set_={name: stmt.excluded[name] for name in row if name != "id"}
                )
                conn.execute(update, [row])
                conn.execute(update, [{**row, "status": "resolved", "resolved_at": first}])
            stored.append(conn.exec_driver_sql("SELECT * FROM exceptions").fetchall())
            read = conn.execute(select(exceptions)).mappings().one()
        store.close()
        assert read["context"] == row["context"] and read["last_seen_at"] == row["last_seen_at"]
        assert (read["status"], read["resolved_at"]) == ("resolved", first)
    assert stored[0] == stored[1]


def test_a_row_inserted_again_is_left_out_or_with_update_replaces_its_other_columns(store: Store) -> None:
    when = datetime(2026, 11, 2, 3, 30, tzinfo=UTC)
    driver_time = SQLITE_FORM.moment(when) if store.dialect == "sqlite" else when
    columns = ("source", "position", "state", "updated_at")

    def written(position: int, **how: bool) -> tuple[int, int]:
        with store.writing() as conn:
            count = insert_tuples(
                conn, checkpoints, columns, [("tail", position, "{}", driver_time)], ("source",), **how
            )
        return count, store.checkpoint("tail").position  # type: ignore[union-attr]

    assert written(5) == (1, 5)
    assert written(7) == (0, 5)
    assert written(9, update=True) == (1, 9)


def test_inserts_are_cut_into_few_statements_of_few_distinct_sizes() -> None:
    assert statement_sizes(0, 1927) == []
    assert statement_sizes(1000, 1927) == [960, 40]
    assert statement_sizes(4000, 1927) == [1927, 1927, 128, 18]
    assert statement_sizes(130, 58) == [58, 58, 14]
    for total in range(0, 5000, 37):
        sizes = statement_sizes(total, 1927)
        assert sum(sizes) == total and all(0 < size <= 1927 for size in sizes) and len(sizes) <= total // 1927 + 2


def test_only_identity_keys_go_to_the_lookup_table(store: Store) -> None:
    store.write_observations([span(4)])
    (key,) = rows(store, business_keys)
    assert (key.key_type, key.value) == ("erp_order", "SO-4")


def test_times_are_utc_whatever_zone_they_came_in(store: Store) -> None:
    chicago = timezone(timedelta(hours=-6))
    local = datetime(2026, 11, 2, 3, 30, tzinfo=chicago)
    naive = datetime(2026, 11, 2, 9, 30)
    store.write_observations([span(5, start=local, end=None), span(6, start=naive, end=None)])
    starts = {row.start_time for row in rows(store)}
    assert starts == {T0}
    assert all(start.tzinfo is not None and start.utcoffset() == timedelta(0) for start in starts)


def test_quarantine_keeps_reason_and_bounded_raw_bytes(store: Store) -> None:
    store.raw_limit = 10
    store.quarantine([QuarantineItem("otlp:/v1/traces", "invalid JSON at byte 3", b"x" * 25, "3", "application/json")])
    (item,) = rows(store, metadata.tables["quarantine"])
    assert (item.reason, item.raw, item.raw_size, item.position) == ("invalid JSON at byte 3", b"x" * 10, 25, "3")
    assert store.counts()["quarantine"] == 1


def test_the_same_input_rejected_again_is_one_row_that_counts_its_deliveries(store: Store) -> None:
    bad = QuarantineItem("orders.log", "line time is 4.9 h in the future", b"garbage", "offset 0")
    assert store.quarantine([bad, bad]) == 2, "a repeat inside one batch"
    later = QuarantineItem("orders.log", "line time is 5.25 h in the future", b"garbage", "offset 0")
    assert store.quarantine([later]) == 1
    (item,) = rows(store, metadata.tables["quarantine"])
    assert (item.deliveries, item.reason, item.raw) == (3, "line time is 5.25 h in the future", b"garbage")
    assert item.last_received_at is not None and item.last_received_at >= item.received_at
    elsewhere = [
        QuarantineItem("orders.log", "line time is 4.9 h in the future", b"garbage", "offset 8"),
        QuarantineItem("returns.log", "line time is 4.9 h in the future", b"garbage", "offset 0"),
        QuarantineItem("orders.log", "line time is 4.9 h in the future", b"garbage!", "offset 0"),
        QuarantineItem("orders.log", "line is not in the combined log format", b"garbage", "offset 0"),
    ]
    store.quarantine(elsewhere)
    assert store.counts()["quarantine"] == 5, "another position, source, content or kind of reason is another item"


def test_quarantine_reasons_leave_the_database_with_emails_masked(store: Store) -> None:
    store.quarantine([QuarantineItem("webhook/shopify", "customer jane.doe@example.com has no order id", b"{}")])
    with store.engine.connect() as conn:
        [reason] = quarantine_reasons(conn)
    assert reason["reason"] == "customer j•••@••• has no order id" and reason["items"] == 1


def test_inputs_that_differ_beyond_the_kept_bytes_are_different_items(store: Store) -> None:
    store.raw_limit = 4
    store.quarantine(
        [
            QuarantineItem("otlp/traces", "too large", b"same-prefix-1"),
            QuarantineItem("otlp/traces", "too large", b"same-prefix-2"),
        ]
    )
    assert [row.deliveries for row in rows(store, metadata.tables["quarantine"])] == [1, 1]


def test_a_reason_quoting_a_huge_input_is_cut_like_the_raw_bytes(store: Store) -> None:
    store.quarantine([QuarantineItem("edge.log", f"status {'9' * 10_000_000!r} is not a number", b"{}", "offset 0")])
    (item,) = rows(store, metadata.tables["quarantine"])
    assert len(item.reason) == 1_000 and item.reason.startswith("status '999") and item.reason.endswith("…")


def test_checkpoints_advance_in_place(store: Store) -> None:
    assert store.checkpoint("file:/var/log/nginx/access.log") is None
    store.save_checkpoint(Checkpoint("file:/var/log/nginx/access.log", 100, {"inode": 7}))
    store.save_checkpoint(Checkpoint("file:/var/log/nginx/access.log", 250, {"inode": 7}))
    assert store.checkpoint("file:/var/log/nginx/access.log") == Checkpoint(
        "file:/var/log/nginx/access.log", 250, {"inode": 7}
    )
    assert store.counts()["checkpoints"] == 1


def _write_overlapping(url: str, worker: int, batches: int) -> None:
    store = Store.open(url)
    for b in range(batches):
        # Both workers write observations 0..n of every batch, so each id arrives twice.
        store.write_observations([span(b * 50 + i, source=f"worker{worker}") for i in range(50)])
    store.close()


def test_two_processes_write_one_sqlite_file_without_locking_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Store.open(url).upgrade()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_overlapping, args=(url, w, 40)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    store = Store.open(url)
    stored = rows(store)
    assert len(stored) == 40 * 50
    assert sum(row.duplicates for row in stored) == 40 * 50
    store.close()


def test_the_queue_sorts_order_values_as_amounts_on_every_engine(store: Store) -> None:
    from syncwatch.store import queries as q

    values = {"a": "90.43", "b": "8796.77", "c": "858.20", "d": "n/a", "e": None, "f": " 1000 "}
    failure = {"category": "timeout", "system": "erp", "summary": "ERP timed out"}
    with store.engine.begin() as conn:
        for name, value in values.items():
            order_with_exception(conn, name, {"order_value": value}, failure)
    queue = q.exception_queue(store, q.QueueFilter(), order="highest order value first")
    assert list(queue["id"]) == ["exc-b", "exc-f", "exc-c", "exc-a", "exc-d", "exc-e"]


def test_a_callers_calls_are_an_endpoint_row_per_partner_called_on_every_engine(store: Store) -> None:
    """The ERP releasing to two 3PLs through one route: each 3PL's answers are that 3PL's row."""
    from dataclasses import replace

    from observation_support import span

    from syncwatch.store import queries as q

    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    client = {"span.kind": "client"}
    calls = [
        *(("api.fastship.example", 503 if n < 2 else 202) for n in range(4)),
        *(("api.parcelpro.example", 202) for _ in range(3)),
    ]
    store.write_observations(
        [
            replace(
                span(n, "POST /fulfillment-orders", "erp", at, status), attributes={**client, "server.address": host}
            )
            for n, (host, status) in enumerate(calls)
        ]
        + [span(100, "POST /sales-orders", "erp", at, 201)]
    )
    stats = q.endpoint_stats(store, at - timedelta(hours=1), at + timedelta(hours=1)).set_index("peer")
    assert stats.loc["api.fastship.example", ["requests", "errors"]].tolist() == [4, 2]
    assert stats.loc["api.parcelpro.example", ["requests", "errors"]].tolist() == [3, 0]
    assert stats.loc["", "operation"] == "POST /sales-orders" and stats.loc["", "p95_ms"] == pytest.approx(80, abs=1)
    assert stats.loc["api.fastship.example", "last_error"] == "upstream unavailable"
    timeline = q.endpoint_timeline(
        store,
        "erp",
        "POST /fulfillment-orders",
        at - timedelta(hours=1),
        at + timedelta(hours=1),
        "api.fastship.example",
    )
    assert timeline["requests"].sum() == 4 and timeline["errors"].sum() == 2


def test_the_health_read_answers_in_time_or_fails_while_a_table_is_locked(store: Store) -> None:
    """/healthz hung with its monitor while PostgreSQL waited on a lock; SQLite's readers never wait."""
    from sqlalchemy.exc import SQLAlchemyError

    with store.writing() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("LOCK TABLE observations IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(SQLAlchemyError):
                store.correlation_backlog(within_s=0.5)
        else:
            conn.exec_driver_sql("DELETE FROM observations")  # the write lock is held until the block ends
            assert store.correlation_backlog(within_s=0.5).observations == 0
    assert store.correlation_backlog(within_s=0.5).observations == 0


def test_the_serve_lock_beside_a_sqlite_file_it_cannot_write_is_one_sentence(tmp_path: Path) -> None:
    from syncwatch.store.errors import StoreError
    from syncwatch.store.locks import sole_serve

    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    (tmp_path / "x.db.serve-lock").mkdir()  # as a lock in a folder serve may not write to, it cannot be opened
    refused = r"cannot take the serve lock .*x\.db\.serve-lock: Is a directory"
    with pytest.raises(StoreError, match=refused), sole_serve(store.engine):
        pass


def test_a_call_both_traced_and_logged_is_one_request_of_its_endpoint_on_every_engine(store: Store) -> None:
    """The 3PL's server span and the gateway's access-log line of the same calls counted them twice."""
    from dataclasses import replace

    from observation_support import span

    from syncwatch.model import ObservationKind
    from syncwatch.store import queries as q

    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    traced = [span(n, "POST /fulfillment-orders", "3pl-fastship", at, 503 if n == 0 else 202) for n in range(3)]
    logged = [replace(s, natural_id=f"line-{n}", kind=ObservationKind.LOG) for n, s in enumerate(traced)]
    store.write_observations([*traced, *logged, replace(logged[0], natural_id="line-extra")])
    stats = q.endpoint_stats(store, at - timedelta(hours=1), at + timedelta(hours=1))
    assert stats[["system", "requests", "errors"]].values.tolist() == [["3pl-fastship", 4, 2]], "the log saw more"
    window = (at - timedelta(hours=1), at + timedelta(hours=1))
    timeline = q.endpoint_timeline(store, "3pl-fastship", "POST /fulfillment-orders", *window, logged=True)
    assert (timeline["requests"].sum(), timeline["errors"].sum()) == (4, 2), "as the table counts: once, not 7"


def test_a_gateways_lines_of_a_traced_endpoint_are_its_view_of_that_endpoint_on_every_engine(store: Store) -> None:
    """nginx in front of the ERP logged every call the ERP traced: Endpoints listed each twice, once as
    'gateway'. A 3PL known only by its edge lines serves calls of its own; a log record quoting a
    partner's 429 is no request."""
    from dataclasses import replace

    from observation_support import span

    from syncwatch.model import ObservationKind
    from syncwatch.store import queries as q

    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    erp = [span(n, "POST /sales-orders", "erp", at, 500 if n == 0 else 201) for n in range(10)]
    nginx = [replace(s, natural_id=f"line-{n}", kind=ObservationKind.LOG, system="gateway") for n, s in enumerate(erp)]
    parcelpro = [span(100 + n, "POST /fulfillment-orders", "3pl-parcelpro", at, 202) for n in range(10)]
    fastship = [
        replace(s, natural_id=f"edge-{n}", kind=ObservationKind.LOG, system="3pl-fastship")
        for n, s in enumerate(parcelpro[:4])
    ]
    quoted = replace(span(200, "log", "erp", at, 429), natural_id="log-1", kind=ObservationKind.LOG, end=None)
    store.write_observations([*erp, *nginx, *parcelpro, *fastship, quoted])
    window = (at - timedelta(hours=1), at + timedelta(hours=1))
    stats = q.endpoint_stats(store, *window)
    rows = stats[["system", "operation", "peer", "gateway", "requests", "errors"]].values.tolist()
    assert sorted(rows) == [
        ["3pl-fastship", "POST /fulfillment-orders", "", False, 4, 0],
        ["3pl-parcelpro", "POST /fulfillment-orders", "", False, 10, 0],
        ["erp", "POST /sales-orders", "", False, 10, 1],
        ["gateway", "POST /sales-orders", "erp", True, 10, 1],
    ]
    timeline = q.endpoint_timeline(store, "gateway", "POST /sales-orders", *window, "erp", gateway=True)
    assert timeline["requests"].sum() == 10 and timeline["errors"].sum() == 1
    # A traced system whose own lines outnumber its spans is no gateway before another system.
    other = [span(300 + n, "POST /orders", "3pl-other", at, 202) for n in range(9)]
    mixed = [span(400 + n, "POST /orders", "3pl-mixed", at, 202) for n in range(9)]
    lines = [replace(s, natural_id=f"mixed-line-{n}", kind=ObservationKind.LOG) for n, s in enumerate(mixed)]
    store.write_observations([*other, *mixed[:8], *lines])
    rows = q.endpoint_stats(store, *window).set_index("system").loc[["3pl-mixed", "3pl-other"]]
    assert list(rows["peer"]) == ["", ""] and list(rows["gateway"]) == [False, False], rows


def order_with_exception(conn: Any, name: str, order: dict[str, Any], failure: dict[str, Any]) -> None:
    """Order ``name`` (on track, started at noon on 26 Nov) with one open exception, ``exc-NAME``."""
    from sqlalchemy import insert

    from syncwatch.store.schema import exceptions, transactions

    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    times = {"last_seen_at": at, "updated_at": at}
    base = {"type": "order", "sla_state": "on_track", "stages": [], "observation_count": 1, "started_at": at}
    conn.execute(insert(transactions).values(id=f"order:{name}", **base, **times, **order))
    conn.execute(
        insert(exceptions).values(
            id=f"exc-{name}",
            transaction_id=f"order:{name}",
            status="open",
            context={},
            opened_at=at,
            **times,
            **failure,
        )
    )


def test_the_partner_filter_holds_the_partners_own_failures_on_orders_not_yet_its_on_every_engine(
    store: Store,
) -> None:
    """A release the 3PL refused leaves the order with no partner: the 3PL's filter, on which a person
    scoped to it opens the queue, showed none of its outages (39 on the demo)."""
    from syncwatch.store import queries as q

    cases = {"shipped-late": ("3pl-fastship", "erp"), "refused": (None, "3pl-fastship"), "other": ("wms", "wms")}
    with store.engine.begin() as conn:
        for name, (partner, failing) in cases.items():
            failure = {"category": "partner_unavailable", "system": failing, "summary": "unavailable"}
            order_with_exception(conn, name, {"partner": partner}, failure)
    queue = q.exception_queue(store, q.QueueFilter(partners=("3pl-fastship",)), order="oldest first")
    assert sorted(queue["id"]) == ["exc-refused", "exc-shipped-late"]


def test_an_event_id_reused_with_other_content_is_a_conflict_not_a_duplicate_on_every_engine(store: Store) -> None:
    from dataclasses import replace

    from observation_support import span

    from syncwatch.model import ObservationKind

    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    notice = replace(
        span(1, "fulfillment.created", "3pl-quickship", at),
        natural_id="event:3pl-quickship:f-1",
        kind=ObservationKind.EVENT,
        payload=b'{"sales_order": "SO-1", "lines": 2}',
    )
    assert store.write_observations([notice]).stored == 1
    same = replace(notice, payload=b'{"lines":2,"sales_order":"SO-1"}')  # spacing and key order: the same notice
    assert store.write_observations([same]) == WriteResult(duplicates=1)
    changed = replace(notice, operation="fulfillment.updated", payload=b'{"sales_order": "SO-1", "tracking": "1Z9"}')
    result = store.write_observations([changed, changed])
    assert (result.stored, result.duplicates, len(result.conflicts)) == (0, 0, 2)
    assert result.conflicts[0].source == "test" and b"1Z9" in result.conflicts[0].raw
