"""A partner that takes an order late (a reroute away from a 3PL that was down, past the promised
ship-by) has the stage's own budget from when it took the order before it is charged as stuck.

The demo's bulk reroute of a down 3PL's orders opened 'Stage shipped is overdue … the order is with
3pl-parcelpro' the moment parcelpro took them, and Operations read the healthy 3PL as failing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from observation_support import span
from sqlalchemy import select

from correlator.passes import Correlator
from syncwatch.config import load_config
from syncwatch.model import PARTNER_CALLED, BusinessKey, Observation, ObservationKind
from syncwatch.store import Store
from syncwatch.store.schema import exceptions, transactions

CAPTURED = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)  # a Monday, before the 14:00 Chicago cut-off
PROMISED = datetime(2026, 11, 17, 23, 59, tzinfo=UTC)
REROUTED = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # Wednesday 09:00 in Chicago, the promise already broken
OWN_DUE = datetime(2026, 11, 19, 6, 0, tzinfo=UTC)  # one business day after: the end of Wednesday in Chicago
KEYS = {"marketplace_order": "111-0000000-0000042", "erp_order": "SO-42"}


def observed(
    n: int, operation: str, system: str, at: datetime, status: int, attributes: dict[str, Any], **keys: str
) -> Observation:
    """``span`` with attributes (the call's peer), of the order's sales order unless keys are given."""
    return replace(span(n, operation, system, at, status, **(keys or {"erp_order": "SO-42"})), attributes=attributes)


def rerouted_order(tmp_path: Path, shipped_at: datetime | None = None, **config: str) -> Store:
    """Released to 3pl-fastship, which was down; rerouted to 3pl-parcelpro after the promised ship-by."""
    store = Store.open(f"sqlite:///{tmp_path / 'handover.db'}")
    store.upgrade()
    release = "POST /fulfillment-orders"
    written = [
        span(1, "POST /orders", "marketplace-amz", CAPTURED, marketplace_order=KEYS["marketplace_order"]),
        observed(
            2,
            "POST /sales-orders",
            "erp",
            CAPTURED + timedelta(minutes=2),
            201,
            {"order.promised_ship_by": f"{PROMISED:%Y-%m-%dT%H:%M:%SZ}"},
            **KEYS,
        ),
        span(3, "POST /sales-orders/SO-42/allocate", "erp", CAPTURED + timedelta(minutes=5), erp_order="SO-42"),
        observed(
            4,
            release,
            "erp",
            CAPTURED + timedelta(minutes=9),
            503,
            {"span.kind": "client", "url.full": "http://api.fastship.example/fulfillment-orders"},
        ),
        observed(5, release, "syncwatch", REROUTED, 201, {"span.kind": "client", PARTNER_CALLED: "3pl-parcelpro"}),
        span(6, release, "3pl-parcelpro", REROUTED + timedelta(milliseconds=20), erp_order="SO-42"),
    ]
    if shipped_at is not None:
        written.append(
            Observation(
                natural_id="shipped-1",
                kind=ObservationKind.EVENT,
                system="3pl-parcelpro",
                operation="com.syncwatch.shipment.shipped",
                start=shipped_at,
                source="test",
                keys=(BusinessKey("erp_order", "SO-42"), BusinessKey("shipment", "SH-42")),
            )
        )
    store.write_observations(written)
    return store


def exceptions_of(store: Store) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(exceptions)).mappings().all()
    return {row["category"]: dict(row) for row in rows}


def the_order(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(transactions)).mappings().one())


def test_the_3pl_that_took_a_late_order_has_the_stages_own_budget_before_it_is_stuck(tmp_path: Path) -> None:
    store = rerouted_order(tmp_path)
    config = load_config(environ={})
    Correlator(store, config, clock=lambda: REROUTED + timedelta(hours=1)).run_pass()
    order = the_order(store)
    assert (order["partner"], order["sla_state"], order["stage_at_fault"]) == ("3pl-parcelpro", "breached", "shipped")
    found = exceptions_of(store)
    assert "stuck" not in found, found["stuck"]["summary"]
    assert found["partner_unavailable"]["system"] == "3pl-fastship", "the blame stays with the 3PL that was down"
    assert order["sla_check_at"].replace(tzinfo=UTC) == OWN_DUE, "looked at again when parcelpro's own time is up"

    late = Correlator(store, config, clock=lambda: OWN_DUE + timedelta(minutes=1))
    assert late.reevaluate() == 1
    stuck = exceptions_of(store)["stuck"]
    store.close()
    assert (stuck["system"], stuck["status"], stuck["stage"]) == ("3pl-parcelpro", "open", "shipped")
    assert stuck["opened_at"].replace(tzinfo=UTC) == OWN_DUE
    assert stuck["summary"] == (
        "Stage shipped is overdue: it was due 2026-11-17 23:59 UTC; 3pl-parcelpro took the order"
        " 2026-11-18 15:00 UTC and had until 2026-11-19 06:00 UTC; the order is with 3pl-parcelpro."
    )


def test_a_3pl_that_ships_a_late_order_within_its_own_budget_is_not_charged(tmp_path: Path) -> None:
    """The customer's promise was broken (the order stays breached), but not by parcelpro."""
    store = rerouted_order(tmp_path, shipped_at=REROUTED + timedelta(hours=5))
    Correlator(store, load_config(environ={}), clock=lambda: REROUTED + timedelta(hours=6)).run_pass()
    order, found = the_order(store), exceptions_of(store)
    store.close()
    assert (order["sla_state"], order["current_stage"]) == ("breached", "shipped")
    assert set(found) == {"partner_unavailable"}, found.get("stuck", {}).get("summary")


def test_a_3pl_that_ships_after_its_own_budget_arrived_late_at_its_own_due(tmp_path: Path) -> None:
    store = rerouted_order(tmp_path, shipped_at=OWN_DUE + timedelta(hours=2))
    Correlator(store, load_config(environ={}), clock=lambda: OWN_DUE + timedelta(hours=3)).run_pass()
    stuck = exceptions_of(store)["stuck"]
    store.close()
    assert (stuck["system"], stuck["status"]) == ("3pl-parcelpro", "resolved")
    assert stuck["summary"].startswith("Stage shipped arrived late: it was due 2026-11-17 23:59 UTC; 3pl-parcelpro")


def test_without_a_budget_of_its_own_the_stage_is_due_at_the_promise_and_says_when_the_partner_took_it(
    tmp_path: Path,
) -> None:
    """A stage measured only against the promise has no budget to give: it is stuck at once, and says
    that the partner took the order after it was due, so nothing is silently dropped."""
    store = rerouted_order(tmp_path)
    correlator = Correlator(store, load_config(environ={}), clock=lambda: REROUTED + timedelta(hours=1))
    correlator.processes = tuple(
        replace(p, stages=tuple(replace(s, sla=None) if s.name == "shipped" else s for s in p.stages))
        for p in correlator.processes
    )
    correlator.run_pass()
    stuck = exceptions_of(store)["stuck"]
    store.close()
    assert (stuck["system"], stuck["status"]) == ("3pl-parcelpro", "open")
    assert stuck["summary"] == (
        "Stage shipped is overdue: it was due 2026-11-17 23:59 UTC; 3pl-parcelpro took the order"
        " 2026-11-18 15:00 UTC, after it was due; the order is with 3pl-parcelpro."
    )


def test_the_stage_the_partner_owes_follows_the_process_however_it_was_made() -> None:
    """The stage after the hand-over is worked out once per process: one made again with another
    hand-over stage (``dataclasses.replace``) must owe the stage after that one, not the old one."""
    from correlator.processes import compile_processes

    order = next(p for p in compile_processes(load_config(environ={})) if p.name == "order")
    names = [s.name for s in order.stages]
    assert names[order.handed_over] == names[names.index("released") + 1]  # type: ignore[index]
    assert replace(order, partner_stage=names[0]).handed_over == 1
    assert replace(order, partner_stage=names[-1]).handed_over is None
    assert replace(order, partner_stage="not a stage").handed_over is None
    assert replace(order, partner_stage=None).handed_over is None
