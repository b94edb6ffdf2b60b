"""Hot queries of the pages and of `stats` use indexes: EXPLAIN QUERY PLAN shows no full table scan."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from syncwatch.store import Store
from syncwatch.store import queries as q
from syncwatch.store.reads import redeliveries

NOW = datetime(2026, 11, 8, 23, 59, tzinfo=UTC)
DAY = timedelta(days=1)
# Tables that grow with traffic; a plan may touch them only through an index.
BIG = ("observations", "business_keys", "transaction_keys", "exceptions", "transactions", "audit_log", "quarantine")

HOT: dict[str, Callable[[Store], Any]] = {
    "late transactions": q.late_transactions,
    "open by SLA": q.open_by_sla,
    "stage delays": lambda s: q.stage_delays(s, NOW),
    "failing systems": q.failing_systems,
    "exception queue": lambda s: q.exception_queue(s, q.QueueFilter()),
    "queue count": lambda s: q.exception_count(s, q.QueueFilter()),
    **{
        f"queue, {order}": lambda s, order=order: q.exception_queue(s, q.QueueFilter(), order=order)
        for order in q.QUEUE_ORDERS
    },
    "queue by key": lambda s: q.exception_queue(s, q.QueueFilter(key="SO-109458")),
    "exception": lambda s: q.exception_row(s, "exc-8830ade68e815d71"),
    "find by key": lambda s: q.find_transactions(s, "944139036750"),
    "transaction observations": lambda s: q.transaction_observations(s, "order:215-2680494-0958771"),
    "systems": q.systems,
    "endpoint stats": lambda s: q.endpoint_stats(s, NOW - DAY, NOW),
    "endpoint timeline": lambda s: q.endpoint_timeline(s, "erp", "POST /sales-orders", NOW - DAY, NOW),
    "quarantine": q.quarantine_recent,
    "audit log": q.audit_recent,
    "paused partners": lambda s: q.held_circuits(s, NOW),
    "as of": q.as_of,
    "open count": q.open_count,
    "throughput": lambda s: q.throughput(s, NOW - 2 * DAY, NOW),
    "stats: re-deliveries": lambda s: _on_connection(s, redeliveries),
}


def _on_connection(store: Store, read: Callable[[Any], Any]) -> Any:
    with store.engine.connect() as conn:
        return read(conn)


@pytest.fixture(scope="module")
def store(sample_db: str) -> Iterator[Store]:
    store = Store.open(sample_db)
    yield store
    store.close()


def plans(store: Store, run: Callable[[Store], Any]) -> list[str]:
    """The query plan of every statement ``run`` sends, one string each."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        run(store)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    with store.engine.connect() as conn:
        return [
            "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
            for sql, params in sent
        ]


def full_scans(plan: str) -> list[str]:
    """Plan lines that read a big table without an index."""
    lines = [line.strip() for line in plan.splitlines()]
    return [
        line
        for line in lines
        if line.startswith("SCAN ") and line.split()[1] in BIG and "USING" not in line and "INDEX" not in line
    ]


@pytest.mark.parametrize("name", HOT)
def test_hot_queries_use_indexes(store: Store, name: str) -> None:
    found = plans(store, HOT[name])
    assert found, f"{name} ran no query"
    for plan in found:
        assert not full_scans(plan), f"{name} scans a whole table:\n{plan}"


def test_the_check_finds_a_full_scan() -> None:
    assert full_scans("SCAN observations\nSEARCH exceptions USING INDEX ix_exceptions_status_opened_at (status=?)")
    assert not full_scans("SEARCH observations USING INDEX ix_observations_system_start_time (system=?)")
