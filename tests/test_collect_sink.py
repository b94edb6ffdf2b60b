"""The sink's write path on every engine: re-deliveries are counted and stamped, identity keys
are linked to the right rows, and concurrent commits (grouped into shared transactions) store
each observation once and tell every caller what its own batch did."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from collectors.base import Parsed
from collectors.sink import Committed, Sink
from syncwatch.config import load_config
from syncwatch.model import BusinessKey, Observation, ObservationKind
from syncwatch.store import Store
from syncwatch.store.schema import business_keys, observations
from syncwatch.store.writes import driver_form, observation_row

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def span(n: int) -> Observation:
    return Observation(
        natural_id=f"{n:032x}:{n:016x}",
        kind=ObservationKind.SPAN,
        system="erp",
        operation="POST /sales-orders",
        start=T0 + timedelta(milliseconds=n),
        trace_id=f"{n:032x}",
        span_id=f"{n:016x}",
        source="test",
        keys=(BusinessKey("erp_order", f"SO-{n}"), BusinessKey("erp_order", f"SO-{n}"), BusinessKey("sku", "S", False)),
    )


def parsed(store: Store, batch: list[Observation]) -> Parsed:
    """What a parser would hand the sink for ``batch``."""
    form = driver_form(store.dialect)
    return Parsed([observation_row(o, form) for o in batch])


def sink_for(store: Store) -> Sink:
    return Sink(store, load_config(None, {"db": store.url}, environ={}))


def stored(store: Store) -> dict[str, tuple[int, datetime | None]]:
    query = select(observations.c.natural_id, observations.c.duplicates, observations.c.redelivered_at)
    with store.engine.connect() as conn:
        return {nid: (duplicates, at) for nid, duplicates, at in conn.execute(query)}


def test_a_redelivery_is_counted_and_stamped(store: Store) -> None:
    sink = sink_for(store)
    assert sink.commit(parsed(store, [span(1), span(2)]), "test") == Committed(stored=2)
    before = datetime.now(UTC)
    assert sink.commit(parsed(store, [span(1), span(1), span(3)]), "test") == Committed(stored=1, duplicates=2)
    rows = stored(store)
    assert rows[span(2).natural_id] == (0, None) and rows[span(3).natural_id] == (0, None)
    duplicates, redelivered_at = rows[span(1).natural_id]
    assert duplicates == 2 and redelivered_at is not None and redelivered_at >= before - timedelta(seconds=1)


def test_identity_keys_point_at_their_own_rows(store: Store) -> None:
    sink_for(store).commit(parsed(store, [span(n) for n in range(1, 301)]), "test")
    query = select(business_keys.c.value, observations.c.natural_id, business_keys.c.key_type).join(observations)
    with store.engine.connect() as conn:
        linked = list(conn.execute(query))
    assert len(linked) == 300
    assert all(value == f"SO-{int(nid.split(':')[1], 16)}" and kind == "erp_order" for value, nid, kind in linked)


def test_concurrent_commits_store_once_and_report_per_caller(store: Store) -> None:
    sink = sink_for(store)
    # 40 overlapping batches: batch b holds spans b*50 .. b*50+99, so half of each is shared.
    batches = [[span(n) for n in range(b * 50, b * 50 + 100)] for b in range(40)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda batch: sink.commit(parsed(store, batch), "test"), batches))
    rows = stored(store)
    assert len(rows) == 39 * 50 + 100
    assert sum(r.stored for r in results) == len(rows)
    assert sum(r.duplicates for r in results) == sum(d for d, _ in rows.values()) == 40 * 100 - len(rows)


def test_a_failing_batch_fails_only_its_caller_as_a_store_error(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths, so nothing here makes a write fail")
    sink = sink_for(store)
    too_long = dataclasses.replace(span(1), natural_id="x" * 300)
    with pytest.raises(SQLAlchemyError):  # what the server turns into 503 + Retry-After
        sink.commit(parsed(store, [too_long]), "test")
    assert sink.commit(parsed(store, [span(2)]), "test") == Committed(stored=1)
    assert list(stored(store)) == [span(2).natural_id]


def test_quarantined_input_is_logged_with_source_position_and_reason_at_most_once_a_minute(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from collectors.base import Rejection
    from collectors.sink import RejectionLog

    sink = sink_for(store)
    now = [0.0]
    sink.rejections = RejectionLog(interval_s=60, clock=lambda: now[0])
    bad = [Rejection("line is not in the combined log format", b"garbage", f"offset {n}") for n in (0, 8)]
    with caplog.at_level("WARNING", logger="collectors.sink"):
        assert sink.commit(Parsed([], bad), "/var/log/edge.log").quarantined == 2
        now[0] = 30
        sink.commit(Parsed([], bad[:1]), "/var/log/edge.log")
        sink.reject("partner-x", "body is not valid JSON near 'jo@example.com'", b"{", content_type="application/json")
        now[0] = 61
        sink.commit(Parsed([], bad[1:]), "/var/log/edge.log")
        sink.reject("partner-y", "status " + "9" * 100_000 + " is not a number", b"...")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "quarantined from /var/log/edge.log at offset 0: line is not in the combined log format"
        " (1 more with it; `syncwatch stats` lists them)",
        "quarantined from partner-x at its whole body: body is not valid JSON near 'j•••@•••'",
        "quarantined from /var/log/edge.log at offset 8: line is not in the combined log format"
        " (1 more since the last report; `syncwatch stats` lists them)",
        "quarantined from partner-y at its whole body: status " + "9" * 293 + "…",
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="collectors.sink"):
        sink.commit(Parsed([], bad), "/var/log/edge.log")  # a burst within the interval: counted
        sink.rejections.flush()  # too early: nothing
        now[0] = 122
        sink.rejections.flush()  # its interval over, the rest of the burst is told once
        sink.rejections.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "quarantined from /var/log/edge.log: 2 more since the last report (`syncwatch stats` lists them)"
    ]


def test_requests_refused_and_not_kept_are_told_once_an_interval_and_the_rest_flushed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from collectors.sink import RejectionLog

    now = [0.0]
    told = RejectionLog(interval_s=60, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="collectors.sink"):
        for _ in range(3):
            told.not_kept("otlp/traces", "bearer token is not valid", "over 60 a minute")
        told.flush()  # too early: nothing
        now[0] = 61
        told.flush()
        told.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "refused at otlp/traces and not kept (over 60 a minute): bearer token is not valid",
        "refused at otlp/traces and not kept: 2 more since the last report",
    ]
