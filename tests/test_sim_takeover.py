"""The live simulator takes over the orders a generated history's --until cut off: each goes on to its
planned end (its fault failing the same call as in the history), and none is left to look stuck."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from actions_support import partners_toml
from sqlalchemy import select

from correlator.passes import Correlator
from syncwatch.cli import main
from syncwatch.config import Config, load_config
from syncwatch.sim.driver import LiveOptions, LiveThread, otlp_exporter
from syncwatch.sim.faults import build_profile
from syncwatch.sim.flow import SHIPPED
from syncwatch.sim.generate import FILES, IN_FLIGHT, Plan, generate
from syncwatch.sim.history import InFlight, in_flight
from syncwatch.sim.ports import free_port_run
from syncwatch.store.schema import exceptions, transaction_keys, transactions

FAULTS = ["throttled=0.1", "duplicate_notice=0.1", "partner_down=0.06", "dead_letter=0.06", "unknown_sku=0.06"]
LAST_STAGE = {"partner_down": "allocated", "dead_letter": "released", "unknown_sku": "captured"}
"""Where an order with this fault stops, in the history as live; every other order is invoiced."""
RAISES = {"partner_down": "partner_unavailable", "dead_letter": "dead_lettered", "unknown_sku": "validation"}


@dataclass
class History:
    folder: Path
    store: Any
    config: Config
    orders: list[dict[str, Any]]
    """The ground truth's orders."""
    carried: list[InFlight]

    def correlate(self, days_later: float = 0) -> None:
        """A correlator pass, and the SLA re-evaluation as ``days_later`` days from now would see it."""
        later = datetime.now(UTC) + timedelta(days=days_later)
        correlator = Correlator(self.store, self.config, clock=lambda: later)
        correlator.run_pass()
        correlator.reevaluate()

    def reached(self) -> dict[str, set[str]]:
        """The stages each order reached in the database, by the order's id."""
        query = (
            select(transaction_keys.c.value, transactions.c.stages)
            .join(transactions, transactions.c.id == transaction_keys.c.transaction_id)
            .where(transactions.c.type == "order", transaction_keys.c.value.in_([o["id"] for o in self.orders]))
        )
        with self.store.engine.connect() as conn:
            return {value: {s["name"] for s in stages if s.get("reached_at")} for value, stages in conn.execute(query)}

    def raised(self) -> dict[str, set[str]]:
        """The categories of the exceptions on each order, by the order's id."""
        query = (
            select(transaction_keys.c.value, exceptions.c.category)
            .join(exceptions, exceptions.c.transaction_id == transaction_keys.c.transaction_id)
            .where(transaction_keys.c.value.in_([o["id"] for o in self.orders]))
        )
        found: dict[str, set[str]] = {}
        with self.store.engine.connect() as conn:
            for value, category in conn.execute(query):
                found.setdefault(value, set()).add(category)
        return found

    def stuck(self) -> list[str]:
        """The summaries of open stuck exceptions on orders."""
        query = (
            select(exceptions.c.summary)
            .join(transactions, transactions.c.id == exceptions.c.transaction_id)
            .where(exceptions.c.category == "stuck", exceptions.c.status == "open", transactions.c.type == "order")
        )
        with self.store.engine.connect() as conn:
            return list(conn.scalars(query))


def planned_end(order: dict[str, Any], carried: dict[str, InFlight]) -> str:
    """The last stage the order's plan reaches: its fault is in the ground truth if it fell before the
    history's end, else only in the plan of what was left."""
    faults = [f["name"] for f in order["faults"]] + ([carried[order["id"]].fault] if order["id"] in carried else [])
    return next((LAST_STAGE[name] for name in faults if name in LAST_STAGE), "invoiced")


@contextmanager
def history(run_collector: Any, tmp_path: Path) -> Iterator[tuple[History, LiveThread, Any]]:
    """Yesterday and today until now generated with faults, ingested and correlated; the live network
    started as the demo starts it after that history, knowing its unfinished orders."""
    base = free_port_run(6)
    collector = run_collector(partners_toml(base))
    url, folder = str(collector.store.engine.url), tmp_path / "history"
    now = datetime.now(UTC)
    yesterday = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    generate(Plan(2, 120, 7, yesterday, build_profile(["none"], FAULTS), until=now), folder)
    files = [str(folder / FILES[name]) for name in ("traces", "logs", "events", "gateway", "edge")]
    assert main(["ingest", "--db", url, *files]) == 0
    config_path = tmp_path / "partners.toml"
    config_path.write_text(partners_toml(base))
    config = load_config(str(config_path), {"db": url}, environ={})
    with (folder / FILES["truth"]).open(encoding="utf-8") as truth:
        orders = [r for r in map(json.loads, truth) if r["type"] == "order"]
    h = History(folder, collector.store, config, orders, in_flight(folder / IN_FLIGHT))
    h.correlate()
    options = LiveOptions(
        base_port=base,
        events_url=f"{collector.url}/v1/events",
        seed=7,
        continue_after=folder / FILES["truth"],
        in_flight=tuple(h.carried),
    )
    sim = LiveThread(options, build_profile(["none"], []), otlp_exporter(collector.url))
    with sim as driver:
        yield h, sim, driver


def test_the_orders_the_historys_end_cut_off_go_on_live_to_their_planned_end(
    run_collector: Any, tmp_path: Path
) -> None:
    with history(run_collector, tmp_path) as (h, sim, driver):
        by_ref = {o.ref: o for o in h.carried}
        ends = {o["id"]: planned_end(o, by_ref) for o in h.orders}
        stranded = {ref for ref, stages in h.reached().items() if ends[ref] not in stages}
        carried = {o.ref for o in h.carried}
        assert len(stranded) >= 20 and stranded <= carried, (len(stranded), stranded - carried)
        assert {o.fault for o in h.carried} - {""}, "no fault planned for an unfinished order"
        sim.call(driver.take_over(h.carried))
        sim.call(driver.settle())
        sim.flush()
        h.correlate()
        reached = h.reached()
        left = {ref: stages for ref, stages in reached.items() if ends[ref] not in stages}
        assert left == {}, [(o, ends[o.ref]) for o in h.carried if o.ref in left]
        assert len(reached) == len(h.orders)
        raised = h.raised()
        faulty = [o for o in h.carried if o.fault in RAISES]
        assert faulty and all(RAISES[o.fault] in raised.get(o.ref, set()) for o in faulty), (faulty, raised)


def test_the_taken_over_orders_use_the_historys_documents_and_no_history_id_again(
    run_collector: Any, tmp_path: Path
) -> None:
    with history(run_collector, tmp_path) as (h, sim, driver):
        accepted = [o for o in h.carried if o.erp_order]
        assert accepted and all(driver.network.erp.orders[o.erp_order]["external_ref"] == o.ref for o in accepted)
        truth = (h.folder / FILES["truth"]).read_text(encoding="utf-8")
        sim.call(driver.take_over(h.carried))
        sim.call(driver.settle())
        shipped = [e["data"]["shipment_id"] for e in driver.delivery.delivered if e["type"] == SHIPPED]
        assert shipped and all(f'"{shipment}"' not in truth for shipment in shipped), shipped
        assert driver.network.calls["erp POST /sales-orders"] == sum("accepted_by_erp" in o.at for o in h.carried)


def test_no_order_of_the_history_looks_stuck_days_after_it_was_taken_over(run_collector: Any, tmp_path: Path) -> None:
    with history(run_collector, tmp_path) as (h, sim, driver):
        h.correlate(days_later=4)
        assert h.stuck(), "the cut-off orders look stuck when nobody carries them on"
        sim.call(driver.take_over(h.carried))
        sim.call(driver.settle())
        sim.flush()
        h.correlate(days_later=4)
        assert h.stuck() == []


def test_a_history_that_runs_to_the_end_of_its_days_writes_no_in_flight_orders(tmp_path: Path) -> None:
    generate(Plan(1, 30, 7, datetime(2026, 11, 2, tzinfo=UTC), build_profile(["none"], [])), tmp_path)
    assert not (tmp_path / IN_FLIGHT).exists() and in_flight(tmp_path / IN_FLIGHT) == []
