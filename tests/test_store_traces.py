"""A trace's observations are found whole, whichever index holds them (store.traces)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from observation_support import span
from sqlalchemy import literal, select

from syncwatch.model import ObservationKind
from syncwatch.store import Store
from syncwatch.store.correlation import trace_observation_ids
from syncwatch.store.schema import NOT_OWN_TRACE_PREFIX
from syncwatch.store.traces import in_traces

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
NEIGHBOUR = "4bf92f3577b34da6a3ce929d0e0e4737"  # sorts right after TRACE: a prefix range must stop before it


def _stored(store: Store) -> dict[str, int]:
    """One trace's span, second span, log record, event and a span with its own kind of natural id,
    plus a neighbouring trace's span and an untraced line: natural id → row id."""
    rows = [
        replace(span(1, "POST /orders", "shop", AT), natural_id=f"{TRACE}:00f067aa0ba902b7", trace_id=TRACE),
        replace(span(2, "POST /sales-orders", "erp", AT), natural_id=f"{TRACE}:00f067aa0ba902b8", trace_id=TRACE),
        replace(span(3, "order placed", "erp", AT), natural_id="log:9f2c", kind=ObservationKind.LOG, trace_id=TRACE),
        replace(span(4, "shipped", "3pl", AT), natural_id="event:3pl:77", kind=ObservationKind.EVENT, trace_id=TRACE),
        replace(span(5, "POST /allocate", "wms", AT), trace_id=TRACE),  # natural id "span-5"
        replace(span(6, "POST /orders", "shop", AT), natural_id=f"{NEIGHBOUR}:00f067aa0ba902b7", trace_id=NEIGHBOUR),
        replace(span(7, "GET /stock", "gateway", AT), natural_id="line:1", kind=ObservationKind.LOG),
    ]
    store.write_observations(rows)
    with store.engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT natural_id, id FROM observations").all())


def test_every_row_of_a_trace_is_found_and_nothing_else(store: Store) -> None:
    ids = _stored(store)
    expected = {ids[nid] for nid in ids if nid.startswith(TRACE) or nid in ("log:9f2c", "event:3pl:77", "span-5")}
    assert len(expected) == 5
    with store.engine.connect() as conn:
        assert sorted(trace_observation_ids(conn, [TRACE])) == sorted(expected)
        assert trace_observation_ids(conn, []) == []
        chosen = select(literal(TRACE).label("value"))
        assert sorted(conn.execute(in_traces(store.dialect, chosen)).scalars()) == sorted(expected)
        assert len(trace_observation_ids(conn, [TRACE, NEIGHBOUR])) == 6


def test_sqlite_answers_trace_lookups_from_indexes(tmp_path) -> None:
    """Neither half of the lookup may scan the table: at a million spans that is seconds per pass."""
    store = Store.open(f"sqlite:///{tmp_path / 'plan.db'}")
    store.upgrade()
    lookups = [
        f"SELECT id FROM observations WHERE trace_id IN ('{TRACE}') AND {NOT_OWN_TRACE_PREFIX}",
        str(
            in_traces("sqlite", select(literal(TRACE).label("value"))).compile(
                store.engine, compile_kwargs={"literal_binds": True}
            )
        ),
    ]
    with store.engine.connect() as conn:
        for sql in lookups:
            plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            touching = [step for step in plan if "observations" in step or " own " in f" {step} "]
            assert touching and all("USING" in step and "INDEX" in step for step in touching), plan
    store.close()
