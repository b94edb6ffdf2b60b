"""`syncwatch bench dashboard`: server-side render time of every page at 100k transactions / 1M observations.

The database is written directly through the schema (synthetic rows shaped like the correlator's:
stage timelines, keys, trace ids, exceptions on about 6 % of transactions), which takes a minute
where simulating, ingesting and correlating the same volume would take an hour on a small machine.
Each page is then rendered in-process with Streamlit's AppTest, as a signed-in lead would see it.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from syncwatch.bench import Benchmark, Figures, percentile
from syncwatch.store import Checkpoint, Store
from syncwatch.store.correlation import CORRELATOR_CHECKPOINT
from syncwatch.store.schema import business_keys, exceptions, observations, transaction_keys, transactions
from syncwatch.store.writes import save_checkpoint

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
STAGES = ("captured", "accepted_by_erp", "allocated", "released", "shipped", "confirmed", "invoiced")
HOPS = (
    ("marketplace-amz", "POST /orders"),
    ("erp", "POST /sales-orders"),
    ("erp", "POST /sales-orders/{erp_order}/allocate"),
    ("wms", "POST /pick-orders"),
    ("3pl-fastship", "POST /fulfillment-orders"),
    ("gateway", "POST /sales-orders"),
    ("erp", "POST /invoices"),
    ("marketplace-amz", "POST /orders/{marketplace_order}/shipment-confirmation"),
    ("marketplace-b2b", "POST /purchase-orders"),
    ("3pl-parcelpro", "POST /fulfillment-orders"),
)
CHANNELS = ("marketplace-amz", "marketplace-b2b", "marketplace-shopify")
PARTNERS = ("wms", "3pl-fastship", "3pl-parcelpro")
CATEGORIES = ("validation", "partner_unavailable", "throttled", "timeout", "stuck", "dead_lettered")
PAGES = {
    "operations": ("operations.py", None),
    "exceptions": ("exceptions.py", None),
    "exception detail": ("exceptions.py", "detail"),
    "endpoints": ("endpoints.py", None),
    "transaction search": ("search.py", "search"),
    "kpis": ("kpis.py", None),
    "admin": ("admin.py", None),
}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="database to render (default: a new SQLite file, generated)")
    parser.add_argument("--transactions", type=int, default=100_000, help="transactions to generate (100000)")
    parser.add_argument("--observations-per", type=int, default=10, help="observations per transaction (10)")
    parser.add_argument("--runs", type=int, default=10, help="renders per page after the first, cold one (10)")


def _rows(n: int, per: int, seed: int = 7) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(table, rows) chunks for ``n`` transactions, in an order the foreign keys accept."""
    rng = random.Random(seed)
    span = timedelta(days=28)
    for first in range(0, n, 2_000):
        chunk: dict[str, list[dict[str, Any]]] = {"t": [], "k": [], "o": [], "b": [], "e": []}
        for i in range(first, min(n, first + 2_000)):
            _transaction(rng, i, per, NOW - span + span * (i / n), chunk)
        yield from (
            (name, chunk[key])
            for name, key in (("transactions", "t"), ("transaction_keys", "k"), ("observations", "o"))
        )
        yield from (("business_keys", chunk["b"]), ("exceptions", chunk["e"]))


def _transaction(rng: random.Random, i: int, per: int, start: datetime, out: dict[str, list[dict[str, Any]]]) -> None:
    tid, order, so, trace = f"order:{i:09d}", f"{i % 999:03d}-{i:07d}-0000001", f"SO-{i}", f"{i:032x}"
    reached = [start + timedelta(minutes=m) for m in (0, 2, 8, 20, 300, 330, 360)]
    complete = reached[-1] < NOW - timedelta(hours=6) and rng.random() < 0.95
    state = "met" if complete else rng.choices(("on_track", "at_risk", "breached"), (80, 8, 12))[0]
    stages = [
        {"name": s, "reached_at": r.isoformat() if complete or k < 4 else None, "due_at": None, "sla_state": "met"}
        for k, (s, r) in enumerate(zip(STAGES, reached, strict=True))
    ]
    out["t"].append(
        {
            "id": tid,
            "type": "order",
            "status": "complete" if complete else "open",
            "sla_state": state,
            "current_stage": "invoiced" if complete else "released",
            "stage_at_fault": None if complete else "shipped",
            "due_at": None if complete else start + timedelta(days=1),
            "channel": CHANNELS[i % 3],
            "partner": PARTNERS[i % 3],
            "customer": f"C-{i % 5000}",
            "order_value": f"{rng.uniform(20, 2000):.2f}",
            "promised_at": start + timedelta(days=2),
            "stages": stages,
            "started_at": start,
            "last_seen_at": reached[-1] if complete else reached[3],
            "observation_count": per,
            "sla_check_at": None,
            "updated_at": min(NOW, reached[-1] if complete else reached[3]),
        }
    )
    for key_type, value in (("marketplace_order", order), ("erp_order", so), ("shipment", f"SH-{i}"), ("trace", trace)):
        out["k"].append({"transaction_id": tid, "key_type": key_type, "value": value})
    first_id = i * per + 1
    for j in range(per):
        _observation(rng, first_id + j, j, start, (order, so, trace), out)
    if rng.random() < 0.06:
        _exception(rng, i, tid, first_id + per - 1, start, complete, out)


def _observation(
    rng: random.Random, oid: int, j: int, start: datetime, ids: tuple[str, str, str], out: dict[str, list]
) -> None:
    order, so, trace = ids
    system, operation = HOPS[j % len(HOPS)]
    error = rng.random() < 0.03
    began = start + timedelta(minutes=j * 30, milliseconds=rng.randint(0, 999))
    out["o"].append(
        {
            "id": oid,
            "natural_id": f"{trace}:{oid:016x}",
            "kind": "span" if j % 5 else "event" if j % 10 == 0 else "log",
            "system": system,
            "operation": operation,
            "start_time": began,
            "end_time": began + timedelta(milliseconds=rng.randint(20, 900)),
            "outcome": "error" if error else "ok",
            "status_code": (503 if error else 201) if j % 5 else None,
            "error_message": "upstream unavailable" if error else None,
            "trace_id": trace,
            "span_id": f"{oid:016x}",
            "parent_id": None,
            "source": "bench",
            "extracted_keys": [["erp_order", so, True], ["marketplace_order", order, True]],
            "attributes": {"service.name": system, "erp.sales_order": so},
            "payload": b'{"sales_order": "%s"}' % so.encode() if j == 9 else None,
            "received_at": began,
            "duplicates": 0,
        }
    )
    out["b"].append(
        {
            "value": so if j % 2 else order,
            "key_type": "erp_order" if j % 2 else "marketplace_order",
            "observation_id": oid,
        }
    )


def _exception(
    rng: random.Random, i: int, tid: str, oid: int, start: datetime, complete: bool, out: dict[str, list]
) -> None:
    category = CATEGORIES[i % len(CATEGORIES)]
    out["e"].append(
        {
            "id": f"exc-{i:012x}",
            "transaction_id": tid,
            "category": category,
            "status": "resolved" if complete else "open",
            "system": "erp",
            "endpoint": "POST /fulfillment-orders",
            "stage": "released",
            "summary": f"erp POST /fulfillment-orders 503: upstream unavailable ({category})",
            "suggested_action": "retry",
            "assignee": None,
            "context": {"channel": CHANNELS[i % 3], "partner": PARTNERS[i % 3]},
            "observation_id": oid,
            "resolved_by_observation_id": None,
            "attempts": rng.randint(1, 4),
            "opened_at": start + timedelta(minutes=20),
            "last_seen_at": start + timedelta(minutes=25),
            "updated_at": start + timedelta(minutes=25),
            "resolved_at": start + timedelta(hours=1) if complete else None,
        }
    )


def generate(url: str, n: int, per: int) -> None:
    tables = {t.name: t for t in (transactions, transaction_keys, observations, business_keys, exceptions)}
    store = Store.open(url)
    store.upgrade()
    with store.writing() as conn:
        for name, rows in _rows(n, per):
            if rows:
                conn.execute(tables[name].insert(), rows)
        # As the correlator leaves it: everything read (else every page warns of a backlog).
        save_checkpoint(conn, Checkpoint(CORRELATOR_CHECKPOINT, n * per))
    store.close()


def render_times(url: str, runs: int) -> dict[str, list[float]]:
    """Seconds per render of each page; the first is the cold one (nothing cached yet)."""
    from streamlit.testing.v1 import AppTest

    from syncwatch.commands.dashboard import app_path
    from syncwatch.store import queries as q

    # AppTest runs pages outside a browser session, and Streamlit warns of that. It resets its
    # loggers' levels whenever a test app starts, so a filter (which it leaves alone) drops it.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: "missing ScriptRunContext" not in str(record.msg)
    )
    os.environ.update({"SYNCWATCH_DB": url, "SYNCWATCH_DASHBOARD_DEMO_USER": "alex"})
    store = Store.open(url)
    # The detail of an open exception; a small generated set may have resolved all of them.
    queue = q.exception_queue(store, q.QueueFilter(), limit=1)
    if queue.empty:
        queue = q.exception_queue(store, q.QueueFilter(statuses=()), limit=1)
    store.close()
    if queue.empty:
        raise SystemExit("syncwatch bench dashboard: the database holds no exception to render; use more transactions")
    open_exception = queue["id"].iloc[0]
    times: dict[str, list[float]] = {}
    for name, (page, extra) in PAGES.items():
        at = AppTest.from_file(app_path(), default_timeout=600).run()
        at.switch_page(page)
        if extra == "detail":
            at.query_params["exception"] = open_exception
        if extra == "search":
            at.query_params["key"] = "SO-4242"
        times[name] = [_timed(at) for _ in range(runs + 1)]
        if at.exception:
            raise RuntimeError(f"page {name} failed: {at.exception[0].value}")
    return times


def _timed(at: Any) -> float:
    began = time.perf_counter()
    at.run()
    return time.perf_counter() - began


def _run(args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        generated_s = 0.0
        if not args.db:
            began = time.perf_counter()
            generate(url, args.transactions, args.observations_per)
            generated_s = time.perf_counter() - began
        times = render_times(url, args.runs)
        store = Store.open(url)
        counts = store.counts()
        store.close()
    figures: Figures = {
        "transactions": counts["transactions"],
        "observations": counts["observations"],
        "generate_s": round(generated_s, 1),
    }
    for name, (cold, *values) in times.items():
        key = name.replace(" ", "_")
        figures[f"{key}_cold_ms"] = round(cold * 1000)
        figures[f"{key}_p50_ms"] = round(percentile(values, 0.5) * 1000)
        figures[f"{key}_p95_ms"] = round(percentile(values, 0.95) * 1000)
    return figures


BENCHMARK = Benchmark("dashboard", "server-side render time of every dashboard page", _add_arguments, _run)
