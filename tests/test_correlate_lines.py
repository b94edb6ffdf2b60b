"""Line-level fulfilment: a backordered order ships in two parts, is complete only when its last
line has shipped, and a line still outstanding past the date the ERP promised is an exception
that the late shipment resolves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from observation_support import span
from sqlalchemy import select

from correlator.lines import check_lines, read_lines
from correlator.passes import Correlator
from correlator.processes import Member
from syncwatch.config import load_config
from syncwatch.model import BusinessKey, Observation, ObservationKind, Outcome, SlaState
from syncwatch.store import Store
from syncwatch.store.schema import exceptions, transactions

AT = datetime(2026, 11, 23, 9, tzinfo=UTC)  # a Monday
ORDER = "111-2223334-4455566"
PROMISED = AT + timedelta(days=2)
BACKORDER_DUE = AT + timedelta(days=5)
SHIPPED = "com.syncwatch.shipment.shipped"


def described(n: int, operation: str, system: str, at: datetime, attributes: dict, **keys: str) -> Observation:
    return Observation(**{**_fields(span(n, operation, system, at, **keys)), "attributes": attributes})


def shipped(n: int, at: datetime, shipment: str, skus: list[str], event_id: str | None = None) -> Observation:
    """The warehouse's shipment notice, its data carrying the lines it shipped."""
    data = {"sales_order": "SO-1", "shipment_id": shipment, "lines": [{"sku": sku, "qty": 2} for sku in skus]}
    return Observation(
        natural_id=event_id or f"event-{n}",
        kind=ObservationKind.EVENT,
        system="wms",
        operation=SHIPPED,
        start=at,
        end=None,
        outcome=Outcome.OK,
        status_code=None,
        error_message=None,
        source="test",
        keys=(BusinessKey("erp_order", "SO-1"), BusinessKey("shipment", shipment)),
        payload=json.dumps(data).encode(),
    )


def _fields(obs: Observation) -> dict:
    return {f: getattr(obs, f) for f in Observation.__slots__}


def first_shipment() -> list[Observation]:
    """A two-line order: captured, accepted, allocated with CHR-2 backordered, and CHR-1 shipped,
    confirmed and invoiced the same day."""
    minute = timedelta(minutes=1)
    return [
        described(
            1,
            "POST /orders",
            "marketplace-amz",
            AT,
            {"order.line_count": 2, "order.promised_ship_by": PROMISED.isoformat()},
            marketplace_order=ORDER,
        ),
        span(2, "POST /sales-orders", "erp", AT + 5 * minute, marketplace_order=ORDER, erp_order="SO-1"),
        described(
            3,
            "POST /sales-orders/SO-1/allocate",
            "erp",
            AT + 10 * minute,
            {"erp.backorder.skus": ["CHR-2"], "erp.backorder.expected_by": BACKORDER_DUE.isoformat()},
            erp_order="SO-1",
        ),
        span(4, "POST /pick-orders", "wms", AT + 20 * minute, erp_order="SO-1"),
        shipped(5, AT + timedelta(hours=5), "SH-1", ["CHR-1"]),
        span(
            6,
            f"POST /orders/{ORDER}/shipment-confirmation",
            "marketplace-amz",
            AT + timedelta(hours=6),
            marketplace_order=ORDER,
        ),
        span(7, "POST /invoices", "erp", AT + timedelta(hours=7), erp_order="SO-1", invoice="INV-1"),
    ]


def transaction(store: Store) -> dict:
    with store.engine.connect() as conn:
        (row,) = conn.execute(select(transactions).where(transactions.c.type == "order")).mappings().all()
    return dict(row)


def exception_rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(exceptions)).mappings()]


def correlate_at(store: Store, now: datetime, reevaluate: bool = False) -> None:
    correlator = Correlator(store, load_config(environ={}), clock=lambda: now)
    correlator.run_pass()
    if reevaluate:
        correlator.reevaluate()


def test_a_backordered_line_is_on_track_until_its_promised_date_then_stuck_then_resolved_by_its_shipment(
    store: Store,
) -> None:
    store.write_observations(first_shipment())
    correlate_at(store, AT + timedelta(days=3))  # past the order's promise, before the backorder's
    row = transaction(store)
    lines = row["lines"] if isinstance(row["lines"], dict) else json.loads(row["lines"])
    assert (row["status"], row["sla_state"], row["current_stage"]) == ("open", "on_track", "invoiced")
    assert (lines["ordered"], lines["shipped"], lines["outstanding"], lines["backordered"]) == (2, 1, 1, ["CHR-2"])
    assert [s["reference"] for s in lines["shipments"]] == ["SH-1"]
    assert row["due_at"].replace(tzinfo=UTC) == BACKORDER_DUE
    assert exception_rows(store) == []

    # Nothing arrives; the scheduled re-evaluation finds the backorder overdue.
    correlate_at(store, BACKORDER_DUE + timedelta(hours=1), reevaluate=True)
    row = transaction(store)
    (stuck,) = exception_rows(store)
    assert (row["status"], row["sla_state"], row["stage_at_fault"]) == ("open", "breached", "shipped")
    assert (stuck["category"], stuck["status"], stuck["stage"], stuck["system"]) == ("stuck", "open", "shipped", "wms")
    assert "Shipped 1 of 2 lines; backordered CHR-2" in stuck["summary"] and stuck["suggested_action"] is None

    late = shipped(8, BACKORDER_DUE + timedelta(hours=2), "SH-2", ["CHR-2"])
    store.write_observations([late])
    correlate_at(store, BACKORDER_DUE + timedelta(hours=3))
    row = transaction(store)
    (stuck,) = exception_rows(store)
    assert (row["status"], row["sla_state"]) == ("complete", "breached")
    assert stuck["status"] == "resolved" and stuck["resolved_by_observation_id"] is not None
    assert "shipped late" in stuck["summary"]


def test_a_backordered_line_shipped_by_its_promised_date_completes_the_order_with_no_exception(store: Store) -> None:
    store.write_observations([*first_shipment(), shipped(8, AT + timedelta(days=4), "SH-2", ["CHR-2"])])
    # The same notice again under a new event id (a second notice) counts once.
    store.write_observations([shipped(9, AT + timedelta(days=4, minutes=3), "SH-2", ["CHR-2"], "event-again")])
    correlate_at(store, AT + timedelta(days=6))
    row = transaction(store)
    lines = row["lines"] if isinstance(row["lines"], dict) else json.loads(row["lines"])
    assert (row["status"], row["sla_state"]) == ("complete", "met")
    assert (lines["shipped"], lines["outstanding"], lines["backordered"]) == (2, 0, [])
    assert [e["category"] for e in exception_rows(store)] == ["duplicate_notice"]


def member(n: int, payload: bytes | None, shipment: str, attributes: dict | None = None) -> Member:
    nodes = (("erp_order", "SO-1"), ("shipment", shipment))
    return Member(n, "event", "wms", SHIPPED, AT + timedelta(hours=n), "ok", None, None, 0, attributes, nodes, payload)


def test_lines_are_not_judged_where_the_order_or_a_shipment_does_not_say_what_it_holds() -> None:
    rule = load_config(environ={}).file.processes["order"].lines
    assert rule is not None
    counted = [member(0, None, "SH-0", {"order.line_count": 3})]
    garbled = [member(1, b"{not json", "SH-1"), member(2, json.dumps({"lines": [{"sku": "A"}]}).encode(), "SH-2")]
    lines = read_lines(rule, garbled, counted)
    assert (lines.ordered, lines.known, lines.outstanding) == (3, False, None)
    assert check_lines("shipped", lines, PROMISED, AT + timedelta(days=9), 0.8) is None

    uncounted = read_lines(rule, garbled[1:], [])
    assert (uncounted.ordered, uncounted.known) == (None, False)

    # A known split order past its promise with a line outstanding (not backordered) is breached.
    split = read_lines(rule, garbled[1:], counted)
    assert split.known and split.outstanding == 2
    check = check_lines("shipped", split, PROMISED, PROMISED + timedelta(minutes=1), 0.8)
    assert check is not None and (check.state, check.due_at) == (SlaState.BREACHED, PROMISED)
