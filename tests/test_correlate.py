"""The correlator against the simulator's ground truth, and its independence from arrival order.

The fixture is the real chain: `syncwatch sim --generate` writes two days of the network in its
wire formats, `syncwatch ingest` stores them, and one correlator pass runs as of the window end.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from correlator.exceptions import category_of
from correlator.kpis import kpi_table, partner_onboarding
from correlator.linking import Linker
from correlator.passes import Correlator
from correlator.processes import Member, compile_processes, in_time_order
from correlator.sla import add_budget, evaluate
from syncwatch.config import load_config
from syncwatch.model import BusinessKey, ExceptionCategory, Observation, ObservationKind, Outcome, SlaState, as_utc
from syncwatch.store import Store
from syncwatch.store import queries as q
from syncwatch.store.correlation import CORRELATOR_LOCK
from syncwatch.store.locks import hold_until_commit
from syncwatch.store.reads import redeliveries
from syncwatch.store.schema import exceptions, observations, transaction_keys, transactions

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
# As of the last thing the files know: later than that, the simulated network simply stops.
AS_OF = datetime(2026, 11, 8, 23, 59, tzinfo=UTC)


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "syncwatch", *args], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, list[dict]]:
    """The committed sample_data/ week, ingested and correlated as of its last observation."""
    folder = tmp_path_factory.mktemp("correlate")
    out, url = SAMPLE_DATA, f"sqlite:///{folder / 'sample.db'}"
    run("db", "upgrade", "--db", url)
    files = [p for p in out.rglob("*") if p.suffix in (".jsonl", ".log") and p.name != "ground_truth.jsonl"]
    run("ingest", "--db", url, *sorted(map(str, files)))
    store = Store.open(url)
    Correlator(store, load_config(), clock=lambda: AS_OF).run_pass()
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    return store, truth


def groupings(store: Store) -> dict[str, frozenset[tuple[str, str]]]:
    keys: dict[str, set[tuple[str, str]]] = defaultdict(set)
    c = transaction_keys.c
    with store.engine.connect() as conn:
        for tid, key_type, value in conn.execute(select(c.transaction_id, c.key_type, c.value)):
            if key_type != "trace":
                keys[tid].add((key_type, value))
    return {tid: frozenset(k) for tid, k in keys.items()}


def exception_categories(store: Store) -> dict[str, Counter]:
    found: dict[str, Counter] = defaultdict(Counter)
    with store.engine.connect() as conn:
        for tid, category in conn.execute(select(exceptions.c.transaction_id, exceptions.c.category)):
            found[tid][category] += 1
    return found


CONTEXT = ("channel", "customer", "order_value", "promised_at")
OWNED = {p.name: p.keys for p in compile_processes(load_config())}


def truth_keys(record: dict) -> frozenset[tuple[str, str]]:
    """The record's identifiers of its own process: a return refers to its order's ids, but the
    order's keys link the order; the return is the transaction of its RMA."""
    owned = OWNED[record["type"]]
    return frozenset((key_type, v) for key_type, values in record["keys"].items() for v in values if key_type in owned)


def test_every_simulated_order_is_exactly_one_transaction(sample: tuple[Store, list[dict]]) -> None:
    store, truth = sample
    assert sorted(groupings(store).values(), key=sorted) == sorted((truth_keys(r) for r in truth), key=sorted)


def test_every_injected_fault_is_an_exception_of_its_category_and_healthy_orders_have_none(
    sample: tuple[Store, list[dict]],
) -> None:
    store, truth = sample
    by_keys = {keys: tid for tid, keys in groupings(store).items()}
    found = exception_categories(store)
    faults = [r for r in truth if r["faults"]]
    assert faults, "the default profile should inject faults into a sample this size"
    for record in truth:
        got = found.get(by_keys[truth_keys(record)], Counter())
        assert set(got) == {f["category"] for f in record["faults"]}, record["id"]


def test_every_injected_fault_is_charged_to_the_system_it_was_injected_at(sample: tuple[Store, list[dict]]) -> None:
    """A late confirmation read 'last seen at wms': the shipper that was on time carried the order's
    open exception. Each fault's exception names the system the simulator made fail or wait."""
    store, truth = sample
    by_keys = {keys: tid for tid, keys in groupings(store).items()}
    with store.engine.connect() as conn:
        rows = conn.execute(select(exceptions.c.transaction_id, exceptions.c.category, exceptions.c.system)).all()
    systems: dict[tuple[str, str], set[str]] = {}
    for transaction_id, category, system in rows:
        systems.setdefault((transaction_id, category), set()).add(system)
    wrong = [
        (
            record["id"],
            fault["category"],
            fault["system"],
            systems.get((by_keys[truth_keys(record)], fault["category"])),
        )
        for record in truth
        for fault in record["faults"]
        if fault["system"] not in systems.get((by_keys[truth_keys(record)], fault["category"]), set())
    ]
    assert not wrong, wrong


def test_a_notice_sent_twice_is_at_its_stage_and_opened_when_the_second_came(sample: tuple[Store, list[dict]]) -> None:
    store, truth = sample
    by_keys = {keys: tid for tid, keys in groupings(store).items()}
    query = select(exceptions.c.transaction_id, exceptions.c.stage, exceptions.c.opened_at).where(
        exceptions.c.category == "duplicate_notice"
    )
    with store.engine.connect() as conn:
        found = {tid: (stage, as_utc(opened)) for tid, stage, opened in conn.execute(query)}
    faults = [(r, f) for r in truth for f in r["faults"] if f["category"] == "duplicate_notice"]
    assert faults
    for record, fault in faults:
        stage, opened = found[by_keys[truth_keys(record)]]
        at = datetime.fromisoformat(fault["at"])
        assert stage == fault["stage"] and abs(opened - at) <= timedelta(seconds=60), (record["id"], opened, at)


def stored_lines(store: Store) -> dict[str, tuple[str, dict | None]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(transactions.c.id, transactions.c.status, transactions.c.lines))
        return {tid: (status, json.loads(lines) if isinstance(lines, str) else lines) for tid, status, lines in rows}


def test_every_exception_of_an_order_carries_its_business_context(sample: tuple[Store, list[dict]]) -> None:
    """An agent deciding what to fix first sees channel, customer, value and promised date on every
    order's exception, not only on orders that got as far as an invoice."""
    store, _ = sample
    query = select(exceptions.c.id, exceptions.c.context).join(transactions).where(transactions.c.type == "order")
    with store.engine.connect() as conn:
        contexts = dict(conn.execute(query).all())
    assert len(contexts) > 20
    missing = {eid: ctx for eid, ctx in contexts.items() if None in (ctx.get(k) for k in CONTEXT)}
    assert not missing, missing
    with store.engine.connect() as conn:
        values = list(conn.execute(select(transactions.c.order_value).where(transactions.c.order_value.is_not(None))))
    uneven = [value for (value,) in values if not re.fullmatch(r"\d+\.\d\d", value)]
    assert values and not uneven, f"an amount to the cent, as money is: {uneven[:5]}"


def test_every_order_knows_which_lines_shipped_and_is_complete_only_when_all_did(
    sample: tuple[Store, list[dict]],
) -> None:
    store, truth = sample
    by_keys = {keys: tid for tid, keys in groupings(store).items()}
    found = stored_lines(store)
    orders = [r for r in truth if r["type"] == "order"]
    partly = 0
    for record in orders:
        status, lines = found[by_keys[truth_keys(record)]]
        shipped = {line["sku"] for carried in record.get("shipments", {}).values() for line in carried}
        backordered = record.get("backorder", {}).get("skus", [])
        assert lines is not None, record["id"]
        assert (lines["ordered"], lines["shipped"]) == (len(record["lines"]), len(shipped)), record["id"]
        assert {s["reference"] for s in lines["shipments"]} == set(record.get("shipments", {})), record["id"]
        assert lines["backordered"] == [sku for sku in backordered if sku not in shipped], record["id"]
        # Invoiced runs beside confirmed (after shipped): an order is done when both have come.
        done = {"confirmed", "invoiced"} <= set(record["stages"]) and len(shipped) == len(record["lines"])
        assert status == ("complete" if done else "open"), record["id"]
        partly += bool(shipped) and len(shipped) < len(record["lines"])
    assert partly, "the sample should hold orders shipped in part at the end of its week"


def reload_observations(store: Store) -> list[Observation]:
    with store.engine.connect() as conn:
        rows = list(conn.execute(select(observations)))
    return [
        Observation(
            natural_id=r.natural_id,
            kind=ObservationKind(r.kind),
            system=r.system,
            operation=r.operation,
            start=r.start_time,
            end=r.end_time,
            outcome=Outcome(r.outcome),
            status_code=r.status_code,
            error_message=r.error_message,
            trace_id=r.trace_id,
            span_id=r.span_id,
            parent_id=r.parent_id,
            source=r.source,
            keys=tuple(BusinessKey(*k) for k in r.extracted_keys),
            attributes=r.attributes,
            payload=r.payload,
        )
        for r in rows
        for _ in range(1 + r.duplicates)
    ]


def disturbed(obs: Observation, skew: timedelta) -> Observation:
    """Trace context lost at every hop, and the ERP's clock ``skew`` fast."""
    shift = skew if obs.system == "erp" else timedelta(0)
    end = obs.end + shift if obs.end else None
    return Observation(
        **{
            **{f: getattr(obs, f) for f in Observation.__slots__},
            "trace_id": None,
            "span_id": None,
            "parent_id": None,
            "start": obs.start + shift,
            "end": end,
        }
    )


def replay(store: Store, tmp_path: Path, skew: timedelta) -> Store:
    """The sample's observations again: shuffled, each delivered twice, traceless, correlated in small steps."""
    items = [disturbed(o, skew) for o in reload_observations(store)] * 2
    random.Random(3).shuffle(items)
    other = Store.open(f"sqlite:///{tmp_path / 'shuffled.db'}")
    other.upgrade()
    correlator = Correlator(other, load_config(), clock=lambda: AS_OF)
    for start in range(0, len(items), 700):
        other.write_observations(items[start : start + 700])
        correlator.run_pass(batch=300)
    return other


def categories(store: Store) -> Counter:
    return Counter(c for v in exception_categories(store).values() for c in v)


@pytest.mark.parametrize("skew", [timedelta(0), timedelta(minutes=5)], ids=["in-sync", "erp-5min-fast"])
def test_shuffled_duplicated_traceless_arrival_gives_the_same_transactions(
    sample: tuple[Store, list[dict]], tmp_path: Path, skew: timedelta
) -> None:
    store, _ = sample
    other = replay(store, tmp_path, skew)
    assert sorted(groupings(other).values(), key=sorted) == sorted(groupings(store).values(), key=sorted)
    if skew:
        return
    expected, got = categories(store), categories(other)
    # Every notice arriving twice is, by design, the duplicate-notice signal; all else must match.
    assert got.pop("duplicate_notice") >= expected.pop("duplicate_notice")
    assert got == expected


def test_a_trace_spanning_two_orders_never_merges_them() -> None:
    linker = Linker(["marketplace_order"])
    linker.link([("marketplace_order", "A"), ("erp_order", "SO-1"), ("trace", "batch")])
    linker.link([("marketplace_order", "B"), ("erp_order", "SO-2"), ("trace", "batch")])
    groups = sorted(sorted(nodes) for nodes in linker.components().values())
    assert [("erp_order", "SO-1"), ("marketplace_order", "A"), ("trace", "batch")] in groups
    assert [("erp_order", "SO-2"), ("marketplace_order", "B")] in groups
    assert linker.refused == 1 and linker.conflicts == []  # a batch trace across orders is no data conflict


def test_an_order_after_the_cutoff_on_friday_is_due_at_the_end_of_monday() -> None:
    calendar = compile_processes(load_config()).__getitem__(0).calendar
    friday_after_cutoff = datetime(2026, 11, 6, 21, 0, tzinfo=UTC)  # 15:00 in Chicago
    friday_before_cutoff = datetime(2026, 11, 6, 19, 0, tzinfo=UTC)  # 13:00 in Chicago
    assert add_budget(friday_after_cutoff, timedelta(days=1), calendar) == datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
    assert add_budget(friday_before_cutoff, timedelta(days=1), calendar) == datetime(2026, 11, 7, 6, 0, tzinfo=UTC)
    assert add_budget(friday_after_cutoff, timedelta(minutes=15), calendar) == friday_after_cutoff + timedelta(
        minutes=15
    )


def test_a_holiday_is_no_business_day_whether_toml_writes_it_as_a_date_or_as_text(tmp_path: Path) -> None:
    config = tmp_path / "holidays.toml"
    config.write_text('[calendars.us_central]\ntimezone = "America/Chicago"\nholidays = [2026-11-09, "2026-11-26"]\n')
    calendar = compile_processes(load_config(str(config), environ={}))[0].calendar
    friday_after_cutoff = datetime(2026, 11, 6, 21, 0, tzinfo=UTC)
    assert add_budget(friday_after_cutoff, timedelta(days=1), calendar) == datetime(2026, 11, 11, 6, 0, tzinfo=UTC)
    wednesday_after_cutoff = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)  # Thanksgiving follows
    assert add_budget(wednesday_after_cutoff, timedelta(days=1), calendar) == datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def test_sla_state_moves_from_on_track_to_at_risk_to_breached_as_time_passes() -> None:
    order = compile_processes(load_config())[0]
    captured = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
    states = [evaluate(order, {"captured": captured}, {}, captured + timedelta(minutes=m), 0.8) for m in (5, 13, 16)]
    assert [s.state for s in states] == [SlaState.ON_TRACK, SlaState.AT_RISK, SlaState.BREACHED]
    assert states[0].check_at == captured + timedelta(minutes=12)
    assert states[2].stage_at_fault == "accepted_by_erp"
    assert states[0].due_at == captured + timedelta(minutes=15)


def test_an_order_invoiced_before_its_confirmation_came_is_not_finished() -> None:
    """Invoiced runs beside confirmed (after shipped): an invoice reached the last stage, so an order
    whose confirmation never came read 'complete', out of Open orders and the late table."""
    order = compile_processes(load_config())[0]
    t0 = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
    names = ("captured", "accepted_by_erp", "allocated", "released")
    reached = {**dict.fromkeys(names, t0), "shipped": t0 + timedelta(hours=2)}
    invoiced = {**reached, "invoiced": t0 + timedelta(hours=3)}
    waiting = evaluate(order, invoiced, {}, t0 + timedelta(hours=5), 0.8)
    assert not waiting.complete and waiting.stage_at_fault == "confirmed" and waiting.state is SlaState.BREACHED
    assert waiting.due_at == t0 + timedelta(hours=4), "the confirmation's due time, so it is evaluated again"
    done = evaluate(order, {**invoiced, "confirmed": t0 + timedelta(hours=6)}, {}, t0 + timedelta(hours=7), 0.8)
    assert done.complete


def test_the_stage_at_fault_is_the_one_overdue_now_not_one_that_finished_late() -> None:
    order = compile_processes(load_config())[0]
    captured = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
    reached = {"captured": captured, "accepted_by_erp": captured + timedelta(minutes=20)}  # 5 minutes late
    done_late = evaluate(order, reached, {}, captured + timedelta(minutes=21), 0.8)
    assert (done_late.state, done_late.stage_at_fault) == (SlaState.BREACHED, "accepted_by_erp")
    weeks_later = evaluate(order, reached, {}, captured + timedelta(days=30), 0.8)
    overdue = [s.name for s in weeks_later.stages if s.reached_at is None and s.state is SlaState.BREACHED]
    assert overdue and weeks_later.stage_at_fault == overdue[0] != "accepted_by_erp"


def test_kpis_aggregate_the_sample_by_day_and_channel(sample: tuple[Store, list[dict]]) -> None:
    store, truth = sample
    table = kpi_table(store, load_config(), AS_OF - timedelta(days=7), AS_OF, by="channel")
    assert set(table["group"]) == {"marketplace-amz", "marketplace-b2b"}, "a warehouse is no sales channel"
    orders = table.dropna(subset=["transactions"])
    assert orders["transactions"].sum() == sum(1 for r in truth if r["type"] == "order")
    needing_person = {
        r["id"] for r in truth if r["type"] == "order" and any(f["category"] != "duplicate_notice" for f in r["faults"])
    }
    assert orders["with_exception"].sum() == len(needing_person)
    with store.engine.connect() as conn:
        late = conn.execute(
            select(func.count()).where(transactions.c.type == "order", transactions.c.sla_state == "breached")
        ).scalar_one()
        late_open = conn.execute(
            select(func.count()).where(
                transactions.c.type == "order", transactions.c.sla_state == "breached", transactions.c.status == "open"
            )
        ).scalar_one()
    assert late_open > 0 and orders["breached"].sum() == late, "open orders already late count as misses"
    decided = orders["met"] + orders["breached"]
    assert (orders["sla_attainment"] == orders["met"] / decided).all()
    assert set(orders["group"]) == {"marketplace-amz", "marketplace-b2b"}
    assert (orders["cycle_time_p50_h"] <= orders["cycle_time_p90_h"]).all()
    assert "inventory_latency_p50_min" not in table, "inventory syncs have no channel"
    overall = kpi_table(store, load_config(), AS_OF - timedelta(days=7), AS_OF)
    assert 0 < overall["inventory_latency_p50_min"].max() < 60 and set(overall["group"]) == {"all"}
    by_partner = set(kpi_table(store, load_config(), AS_OF - timedelta(days=7), AS_OF, by="partner")["group"])
    assert by_partner == {"wms", "3pl-fastship", "3pl-parcelpro", "not released yet"}, "rejected orders have no partner"


def test_where_orders_are_late_holds_order_stages_only(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'late.db'}")
    store.upgrade()
    late = {"sla_state": "breached", "status": "open", "stages": [], "observation_count": 1}
    times = {"started_at": AS_OF, "last_seen_at": AS_OF, "updated_at": AS_OF}
    overdue, ahead = AS_OF - timedelta(hours=1), AS_OF + timedelta(hours=5)
    with store.engine.begin() as conn:
        conn.execute(
            transactions.insert(),
            [
                {"id": "order:1", "type": "order", "stage_at_fault": "shipped", "due_at": overdue, **late, **times},
                {"id": "order:2", "type": "order", "stage_at_fault": "released", "due_at": ahead, **late, **times},
                {"id": "return:1", "type": "return", "stage_at_fault": "refunded", "due_at": overdue, **late, **times},
            ],
        )
    delays = q.stage_delays(store, AS_OF)
    assert sorted(zip(delays["stage"], delays["behind"], strict=True)) == [("released", 1), ("shipped", 0)], (
        "released was late, but the order waits at no stage now"
    )
    with store.engine.begin() as conn:
        conn.execute(transactions.update().values(status="complete"))
    assert q.stage_delays(store, AS_OF).empty, "a finished order is no longer anyone's to chase"
    store.close()


def test_partner_onboarding_names_every_fulfilment_partner_and_who_was_live_before_the_history(
    sample: tuple[Store, list[dict]], tmp_path: Path
) -> None:
    """Every partner of the sample week read '0.2 days to first success': the hours between the
    history's first order and their first one finished, no onboarding."""
    store, _ = sample
    onboarding = partner_onboarding(store)
    assert set(onboarding["partner"]) == {"wms", "3pl-fastship", "3pl-parcelpro"}
    assert onboarding["before_history"].all(), "every partner of the sample week worked from its first day"
    assert onboarding["days_to_first_success"].isna().all()
    copy = tmp_path / "later.db"
    with sqlite3.connect(str(store.engine.url.database)) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as conn:  # parcelpro's orders began on the week's fourth day
        conn.execute("DELETE FROM transactions WHERE partner = '3pl-parcelpro' AND started_at < '2026-11-05'")
    later = partner_onboarding(Store.open(f"sqlite:///{copy}")).set_index("partner")
    assert not later.loc["3pl-parcelpro", "before_history"] and later.loc["wms", "before_history"]
    assert later.loc["3pl-parcelpro", "days_to_first_success"] >= 0


@pytest.mark.postgres
def test_postgresql_derives_the_same_transactions_and_exceptions(
    sample: tuple[Store, list[dict]], pg_server: Callable[[], str]
) -> None:
    store, _ = sample
    other = Store.open(pg_server())
    other.upgrade()
    items = reload_observations(store)
    for start in range(0, len(items), 2000):
        other.write_observations(items[start : start + 2000])
    Correlator(other, load_config(), clock=lambda: AS_OF).run_pass()
    assert sorted(groupings(other).values(), key=sorted) == sorted(groupings(store).values(), key=sorted)
    assert categories(other) == categories(store)
    for order in q.QUEUE_ORDERS:  # the queue's orders, and stats' sum, read the same on both engines
        queue = q.exception_queue(other, q.QueueFilter(), order=order)
        assert list(queue["id"]) == list(q.exception_queue(store, q.QueueFilter(), order=order)["id"]), order
    with other.engine.connect() as theirs, store.engine.connect() as ours:
        assert redeliveries(theirs) == redeliveries(ours)
    other.close()


def test_a_notice_delivered_again_after_its_pass_becomes_a_duplicate_notice(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'redelivered.db'}")
    store.upgrade()
    at = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    keys = (BusinessKey("marketplace_order", "113-0000001-0000001"), BusinessKey("shipment", "SH-1"))
    capture = Observation(
        natural_id="span-1",
        kind=ObservationKind.SPAN,
        system="marketplace-amz",
        operation="POST /orders",
        start=at,
        source="test",
        keys=keys[:1],
    )
    notice = Observation(
        natural_id="event:3pl-fastship:n-1",
        kind=ObservationKind.EVENT,
        system="3pl-fastship",
        operation="com.syncwatch.shipment.shipped",
        start=at + timedelta(hours=3),
        source="test",
        keys=keys,
    )
    correlator = Correlator(store, load_config(), clock=lambda: at + timedelta(hours=4))
    store.write_observations([capture, notice])
    correlator.run_pass()
    assert categories(store)["duplicate_notice"] == 0
    store.write_observations([notice])
    correlator.run_pass()
    assert categories(store)["duplicate_notice"] == 1
    store.close()


def test_an_email_in_a_partner_error_is_masked_in_the_exception_summary(tmp_path: Path) -> None:
    """The summary reaches the queue, exports and the alert channel; the raw message stays stored."""
    store = Store.open(f"sqlite:///{tmp_path / 'masked.db'}")
    store.upgrade()
    at = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    order = (BusinessKey("marketplace_order", "113-0000001-0000001"),)
    capture = Observation("span-1", ObservationKind.SPAN, "marketplace-amz", "POST /orders", at, source="t", keys=order)
    rejected = Observation(
        "span-2",
        ObservationKind.SPAN,
        "erp",
        "POST /sales-orders",
        at + timedelta(minutes=1),
        outcome=Outcome.ERROR,
        status_code=422,
        error_message="customer jane.doe@example.com is blocked for order 113-0000001-0000001",
        source="t",
        keys=order,
    )
    store.write_observations([capture, rejected])
    Correlator(store, load_config(), clock=lambda: at + timedelta(hours=1)).run_pass()
    with store.engine.connect() as conn:
        [summary] = conn.execute(select(exceptions.c.summary)).scalars()
    store.close()
    assert "jane.doe" not in summary and "j•••@•••" in summary and "113-0000001-0000001" in summary


@pytest.mark.postgres
def test_only_one_instance_correlates_a_postgresql_database_at_a_time(
    sample: tuple[Store, list[dict]], pg_server: Callable[[], str]
) -> None:
    store, _ = sample
    url = pg_server()
    other = Store.open(url)
    other.upgrade()
    other.write_observations(reload_observations(store)[:500])
    with other.engine.connect() as holder, holder.begin():
        hold_until_commit(holder, CORRELATOR_LOCK)
        blocked = Correlator(other, load_config(), clock=lambda: AS_OF).run_pass()
    assert blocked.busy and blocked.observations == 0
    done = Correlator(other, load_config(), clock=lambda: AS_OF).run_pass()
    assert not done.busy and done.observations == 500
    other.close()


def test_a_refused_retry_reads_as_the_partners_answer_before_the_partners_own_span_arrives() -> None:
    """syncwatch's client span is exported at once, the ERP's a little later: in between, the title
    names the ERP and its reason, not syncwatch or the client's exception class."""
    from correlator.exceptions import derive

    t0 = AS_OF - timedelta(hours=1)
    reason = "SKU X-1 is not in the item master"
    sent = Member(
        0, "span", "marketplace-amz", "POST /sales-orders", t0, "error", 422, reason, 0, {"span.kind": "client"}
    )
    rejected = Member(1, "span", "erp", "POST /sales-orders", t0, "error", 422, reason, 0, {"span.kind": "server"})
    retried = Member(
        2,
        "span",
        "syncwatch",
        "POST /sales-orders",
        t0 + timedelta(minutes=30),
        "error",
        422,
        "erp answered 422: SKU X-1 is not in the item master",
        0,
        {"syncwatch.partner": "erp", "span.kind": "client"},
    )
    order = next(p for p in compile_processes(load_config()) if p.name == "order")
    sla = evaluate(order, {"captured": t0}, {}, AS_OF, 0.8)
    [draft] = derive("order:1", [sent, rejected, retried], sla, [], {})
    assert draft.summary == "erp POST /sales-orders 422: SKU X-1 is not in the item master (2 attempts)"
    assert draft.system == "erp" and draft.category.value == "validation"


def test_syncwatchs_own_failed_lookup_opens_no_exception_of_its_own() -> None:
    """The check before a retry ('is the order there already?') failed against a 3PL that was down,
    opened a second exception, and the retry policy retried that lookup."""
    from correlator.exceptions import derive

    t0 = AS_OF - timedelta(hours=1)
    down = "3pl-fastship could not be reached (ConnectError)"
    sent = Member(0, "span", "erp", "POST /fulfillment-orders", t0, "error", 503, "unavailable", 0, {})
    ours = {"syncwatch.partner": "3pl-fastship", "span.kind": "client"}
    looked = Member(
        1, "span", "syncwatch", "GET /fulfillment-orders", t0 + timedelta(minutes=5), "error", None, down, 0, ours
    )
    order = next(p for p in compile_processes(load_config()) if p.name == "order")
    sla = evaluate(order, {"captured": t0}, {}, AS_OF, 0.8)
    assert [d.endpoint for d in derive("order:1", [sent, looked], sla, [], {})] == ["POST /fulfillment-orders"]


def test_a_dead_letter_stamped_to_the_millisecond_is_not_resolved_by_a_release_within_it() -> None:
    """The ERP's notice said .709 (to the millisecond); the 3PL's span of the release began at
    .7094, before it. Read as later, the release 'moved the order on' and the dead letter read
    resolved with nothing redelivered. Only the shipment it carried, arriving after, resolves it."""
    from correlator.exceptions import derive

    t0 = AS_OF.replace(microsecond=709000) - timedelta(hours=1)
    order = next(p for p in compile_processes(load_config()) if p.name == "order")
    notice = Member(5, "event", "erp", "com.syncwatch.message.dead_lettered", t0, "error", None, "rejected", 0, {})
    released = Member(
        4, "span", "3pl-fastship", "POST /fulfillment-orders", t0 + timedelta(microseconds=400), "ok", 201, None, 0
    )
    shipped = Member(
        6, "event", "3pl-fastship", "com.syncwatch.shipment.shipped", t0 + timedelta(minutes=9), "ok", None, None, 0
    )
    reached = {"captured": t0 - timedelta(minutes=5), "released": released.start}

    sla = evaluate(order, reached, {}, AS_OF, 0.8)
    drafts = derive("order:1", in_time_order([released, notice]), sla, [], {})
    assert [d.resolved_by for d in drafts if d.category.value == "dead_lettered"] == [None]

    sla = evaluate(order, {**reached, "shipped": shipped.start}, {}, AS_OF, 0.8)
    drafts = derive("order:1", in_time_order([released, notice, shipped]), sla, [], {})
    assert [d.resolved_by for d in drafts if d.category.value == "dead_lettered"] == [shipped]


def test_a_partners_notice_that_it_rejected_the_order_is_a_data_problem_not_an_outage() -> None:
    """A 3PL's 'shipment.rejected' event (reason: address invalid) was filed as the partner being
    down, with Reroute suggested and the automatic retry tried."""
    t0 = AS_OF - timedelta(hours=1)
    rejected = Member(1, "event", "3pl-acme", "com.acme3pl.shipment.rejected", t0, "error", None, "Address invalid", 0)
    assert category_of(rejected) is ExceptionCategory.VALIDATION
    failed = Member(2, "event", "3pl-acme", "com.acme3pl.shipment.failed", t0, "error", None, "upstream down", 0)
    assert category_of(failed) is ExceptionCategory.PARTNER_UNAVAILABLE, "a failure it does not call a refusal"
    unanswered = Member(3, "span", "erp", "POST /fulfillment-orders", t0, "error", None, "invalid response", 0)
    assert category_of(unanswered) is ExceptionCategory.PARTNER_UNAVAILABLE, "a call with no answer is not a refusal"


def test_an_order_overdue_to_ship_is_the_partners_it_was_released_to(tmp_path: Path) -> None:
    """Once released, the order is with the 3PL: 'erp needs attention' for its late shipments
    would send the lead to the wrong team."""
    from observation_support import span

    store = Store.open(f"sqlite:///{tmp_path / 'stuck.db'}")
    store.upgrade()
    t0, keys = AS_OF - timedelta(days=3), {"marketplace_order": "111-0000000-0000009", "erp_order": "SO-9"}
    store.write_observations(
        [
            span(1, "POST /orders", "marketplace-amz", t0, marketplace_order=keys["marketplace_order"]),
            span(2, "POST /sales-orders", "erp", t0 + timedelta(minutes=2), **keys),
            span(3, "POST /sales-orders/SO-9/allocate", "erp", t0 + timedelta(minutes=5), erp_order="SO-9"),
            span(4, "POST /fulfillment-orders", "3pl-fastship", t0 + timedelta(minutes=9), erp_order="SO-9"),
            span(5, "POST /invoices", "erp", t0 + timedelta(minutes=20), erp_order="SO-9"),
        ]
    )
    Correlator(store, load_config(environ={}), clock=lambda: AS_OF).run_pass()
    with store.engine.connect() as conn:
        stuck = conn.execute(select(exceptions).where(exceptions.c.category == "stuck")).mappings().all()
    store.close()
    [late] = [row for row in stuck if row["stage"] == "shipped"]
    assert late["system"] == "3pl-fastship", late["summary"]
    assert (
        late["summary"].startswith("Stage shipped is overdue: it was due ")
        and "the order is with 3pl-fastship" in late["summary"]
    )


def test_an_order_the_erp_never_accepted_is_stuck_at_the_erp_not_at_the_marketplace(tmp_path: Path) -> None:
    """Operations said 'marketplace-amz needs attention: 5 stuck' when the ERP was not answering: a
    stuck stage was charged to whoever reported last, the marketplace that captured the order."""
    from observation_support import span

    store = Store.open(f"sqlite:///{tmp_path / 'unaccepted.db'}")
    store.upgrade()
    t0 = AS_OF - timedelta(hours=2)
    store.write_observations([span(1, "POST /orders", "marketplace-amz", t0, marketplace_order="111-0000000-0000008")])
    Correlator(store, load_config(environ={}), clock=lambda: AS_OF).run_pass()
    with store.engine.connect() as conn:
        [stuck] = conn.execute(select(exceptions.c.system, exceptions.c.summary)).all()
    store.close()
    assert stuck.system == "erp"
    assert stuck.summary.endswith("; waiting on erp; last seen at marketplace-amz.")


def test_a_piece_without_its_order_number_is_never_a_finished_order(tmp_path: Path) -> None:
    """An invoice and a release that name only the ERP's order reach the last stage, but no marketplace
    order or PO says which order they are: counted complete, they would pass as an order delivered on
    time while the real one runs late. Once the order's own call links them, it is complete."""
    from observation_support import span

    store = Store.open(f"sqlite:///{tmp_path / 'piece.db'}")
    store.upgrade()
    t0 = AS_OF - timedelta(days=1)
    store.write_observations(
        [
            span(1, "POST /fulfillment-orders", "3pl-fastship", t0, erp_order="SO-7"),
            span(2, "POST /invoices", "erp", t0 + timedelta(minutes=20), erp_order="SO-7"),
        ]
    )
    correlator = Correlator(store, load_config(environ={}), clock=lambda: AS_OF)
    correlator.run_pass()
    with store.engine.connect() as conn:
        [piece] = conn.execute(select(transactions.c.id, transactions.c.status, transactions.c.current_stage)).all()
    assert piece == ("order:~erp_order:SO-7", "open", "invoiced")
    order = {"marketplace_order": "111-0000000-0000007", "erp_order": "SO-7"}
    confirmed = "POST /orders/111-0000000-0000007/shipment-confirmation"
    store.write_observations(
        [
            span(3, "POST /sales-orders", "erp", t0 - timedelta(minutes=5), **order),
            span(
                4,
                confirmed,
                "marketplace-amz",
                t0 + timedelta(minutes=30),
                marketplace_order=order["marketplace_order"],
            ),
        ]
    )
    correlator.run_pass()
    with store.engine.connect() as conn:
        [whole] = conn.execute(select(transactions.c.id, transactions.c.status)).all()
    store.close()
    assert whole == ("order:111-0000000-0000007", "complete")


def test_headline_kpis_read_a_week_as_it_stood_then_not_as_it_stands_now(store: Store) -> None:
    """Last week's orders read as they stand now had a week longer to finish than this week's: an
    order that took two days counted there and not here, so a slower week read as a faster one."""
    from correlator.kpis import as_it_stood

    monday = datetime(2026, 11, 2, tzinfo=UTC)

    def at(hours: float) -> datetime:
        return monday + timedelta(hours=hours)

    process = next(p for p in compile_processes(load_config()) if p.name == "order")
    names = [stage.name for stage in process.stages]

    def order(name: str, status: str, state: str, stages: list[tuple[str, float | None, float | None]]) -> dict:
        given = {n: (r, d) for n, r, d in stages}
        timeline = [
            {"name": n, "reached_at": r and at(r).isoformat(), "due_at": d and at(d).isoformat(), "sla_state": None}
            for n in names
            for r, d in [given.get(n, (None, None))]
        ]
        return {"id": f"order:{name}", "type": "order", "status": status, "sla_state": state, "stages": timeline}

    rows = [
        order("quick", "complete", "met", [("captured", 10, None), ("confirmed", 12, 30), ("invoiced", 13, 40)]),
        order("slow", "complete", "met", [("captured", 11, None), ("confirmed", 59, 70), ("invoiced", 60, 80)]),
        order("stuck", "open", "breached", [("captured", 9, None), ("confirmed", None, 10), ("invoiced", None, None)]),
        order("late", "complete", "breached", [("captured", 8, None), ("confirmed", 32, 20), ("invoiced", 33, 40)]),
    ]
    times = {"started_at": monday, "last_seen_at": monday, "observation_count": 1, "updated_at": monday}
    failure = {"category": "partner_unavailable", "status": "resolved", "system": "erp", "summary": "x", "context": {}}
    with store.engine.begin() as conn:
        conn.execute(transactions.insert(), [{**row, **times} for row in rows])
        conn.execute(
            exceptions.insert(),
            {"id": "x1", "transaction_id": "order:slow", **failure, **dict.fromkeys(EXCEPTION_TIMES, at(33))},
        )
    config = load_config()
    then = as_it_stood(store, config, monday, at(24), at(15))
    assert then["sla_attainment"] == 0.5, "as it stood: quick met, stuck breached; slow and late not decided yet"
    assert then["cycle_time_p50_h"] == 2.0 and then["exception_rate"] == 0.0
    now = as_it_stood(store, config, monday, at(24), at(100))
    assert now["sla_attainment"] == 0.5 and now["cycle_time_p50_h"] == 24.0 and now["exception_rate"] == 0.25
    table = kpi_table(store, config, monday, at(24), grain="week")
    assert [table[column].iloc[0] for column in ("sla_attainment", "cycle_time_p50_h", "exception_rate")] == [
        now["sla_attainment"],
        now["cycle_time_p50_h"],
        now["exception_rate"],
    ], "as it stands now, the cards and the table agree"


EXCEPTION_TIMES = ("opened_at", "last_seen_at", "updated_at")


@pytest.mark.parametrize("by", ["channel", "partner", None])
def test_kpis_by_channel_and_partner_on_every_engine(store: Store, by: str | None) -> None:
    """By channel or partner, PostgreSQL refused the query: its GROUP BY held another copy of the grouping."""
    monday = datetime(2026, 11, 2, tzinfo=UTC)
    rows = [
        {"id": f"order:{n}", "channel": channel, "partner": partner, "sla_state": state, "status": status}
        for n, (channel, partner, state, status) in enumerate(
            [
                ("marketplace-amz", "wms", "met", "complete"),
                ("marketplace-amz", None, "breached", "open"),
                ("marketplace-b2b", "3pl-fastship", "on_track", "open"),
            ]
        )
    ]
    times = {"started_at": monday, "last_seen_at": monday, "updated_at": monday, "observation_count": 1}
    with store.engine.begin() as conn:
        conn.execute(transactions.insert(), [{**row, "type": "order", "stages": [], **times} for row in rows])
    table = kpi_table(store, load_config(), monday, monday + timedelta(days=1), by=by)
    expected = {
        "channel": {"marketplace-amz": 2, "marketplace-b2b": 1},
        "partner": {"wms": 1, "not released yet": 1, "3pl-fastship": 1},
        None: {"all": 3},
    }[by]
    assert dict(zip(table["group"], table["transactions"], strict=True)) == expected


def test_an_order_whose_hand_over_failed_is_the_partners_that_was_down(sample: tuple[Store, list[dict]]) -> None:
    """No partner took it, so it counted as 'not released yet': the 3PL that was down read as never late."""
    store, _ = sample
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(exceptions.c.system, exceptions.c.context, transactions.c.partner)
            .join(transactions, transactions.c.id == exceptions.c.transaction_id)
            .where(exceptions.c.category.in_(("partner_unavailable", "timeout")), exceptions.c.system.like("3pl-%"))
        ).all()
    assert rows, "the sample week has 3PL outages"
    assert all(partner == system == context["partner"] for system, context, partner in rows), rows[:3]
