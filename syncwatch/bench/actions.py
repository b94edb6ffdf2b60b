"""`syncwatch bench actions`: how long an action takes from request to resolved state (partner time
left out), and how long a bulk retry of many exceptions takes within a partner's rate limit.

Everything is real and local: the simulator's services on free ports, a SQLite store, spans of
both sides stored through the collectors' own parser, the correlator moving transactions on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from actions.api import bulk_status, perform, plan_bulk, start_bulk
from actions.client import partner_time
from actions.services import close_all
from actions.telemetry import StoreSpanExporter
from correlator.passes import Correlator
from syncwatch.bench import Benchmark, Figures, percentile
from syncwatch.config import Config, load_config
from syncwatch.sim.catalog import FAMILIES
from syncwatch.sim.driver import Driver, LiveOptions, LiveThread
from syncwatch.sim.faults import build_profile
from syncwatch.sim.live import SYSTEMS
from syncwatch.sim.ports import free_port_run
from syncwatch.store import Store
from syncwatch.store.schema import exceptions, observations

KINDS = {"marketplace-amz": "marketplace", "marketplace-b2b": "marketplace", "erp": "erp", "wms": "wms"}
LEAD, AGENT = "alex", "sam"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--single", type=int, default=100, help="single retries timed one by one (default 100)")
    parser.add_argument("--bulk", type=int, default=1000, help="exceptions retried by one bulk job (default 1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="the ERP's rate limit in requests/s (default 50)")


def _config(folder: Path, base_port: int, rate: float) -> Config:
    blocks = [
        f'[partners.{system}]\nkind = "{KINDS.get(system, "3pl")}"\n'
        f'base_url = "http://127.0.0.1:{base_port + index}"\nrate_limit_per_s = {rate}\n'
        for index, system in enumerate(SYSTEMS)
    ]
    path = folder / "bench.toml"
    path.write_text("\n".join(blocks))
    return load_config(str(path), {"db": f"sqlite:///{folder / 'bench.db'}"}, environ={})


def _rejected_orders(sim: LiveThread, driver: Driver, store: Store, config: Config, count: int) -> list[str]:
    """``count`` orders the ERP rejects for an unknown SKU, correlated into validation exceptions."""
    for _ in range(count):
        sim.call(driver.order(time.time_ns() // 1000))
    sim.flush()
    Correlator(store, config).run_pass()
    # The fix an agent makes first: the missing SKUs go into the item master.
    driver.network.erp.skus.update(f"{family}-{n:04d}" for family in FAMILIES for n in range(9000, 10000))
    with store.engine.connect() as conn:
        query = select(exceptions.c.id).where(exceptions.c.category == "validation").order_by(exceptions.c.id)
        return list(conn.execute(query).scalars())


def _single(store: Store, config: Config, ids: list[str]) -> dict[str, Any]:
    own, resolved = [], 0
    for exception_id in ids:
        began = time.perf_counter()
        with partner_time() as spent:
            result = perform(store, config, action="retry", exception_id=exception_id, actor=AGENT)
        own.append((time.perf_counter() - began - sum(spent)) * 1000)
        resolved += result.status == "resolved"
    return {
        "single_retries": len(ids),
        "single_resolved": resolved,
        "single_p50_ms": round(percentile(own, 0.5), 1),
        "single_p95_ms": round(percentile(own, 0.95), 1),
    }


def _bulk(store: Store, config: Config, ids: list[str]) -> dict[str, Any]:
    plan = plan_bulk(store, config, action="retry", filters={"ids": ids}, actor=LEAD)
    began = time.perf_counter()
    job_id = start_bulk(store, config, plan, LEAD)
    while (status := bulk_status(store, job_id))["status"] not in ("finished", "cancelled"):
        time.sleep(0.2)
    seconds = time.perf_counter() - began
    with store.engine.connect() as conn:
        resolved = conn.execute(
            select(exceptions.c.id).where(exceptions.c.id.in_(ids), exceptions.c.status == "resolved")
        ).all()
    return {
        "bulk_exceptions": plan.count,
        "bulk_succeeded": status["succeeded"],
        "bulk_resolved": len(resolved),
        "bulk_seconds": round(seconds, 2),
        "bulk_partner_peak_per_s": _peak_rate(store),
    }


def _peak_rate(store: Store) -> int:
    """The most retries the ERP received in any one second, read from the stored action spans."""
    query = select(observations.c.start_time).where(
        observations.c.system == "syncwatch", observations.c.operation == "POST /sales-orders"
    )
    with store.engine.connect() as conn:
        starts = sorted(t.timestamp() for t in conn.execute(query).scalars())
    peak, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= 1.0:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def _run(args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory(prefix="syncwatch-bench-actions-") as folder:
        base = free_port_run(len(SYSTEMS))
        config = _config(Path(folder), base, args.rate)
        store = Store.open(config.db)
        store.upgrade()
        options = LiveOptions(base_port=base)
        sim = LiveThread(options, build_profile(["none"], ["unknown_sku=1"]), lambda: StoreSpanExporter(store, config))
        try:
            with sim as driver:
                ids = _rejected_orders(sim, driver, store, config, args.single + args.bulk)
                figures = {**_single(store, config, ids[: args.single]), **_bulk(store, config, ids[args.single :])}
        finally:
            close_all()
            store.close()
    return {**figures, "rate_limit_per_s": args.rate}


BENCHMARK = Benchmark(
    "actions", "retry latency to resolved state and a bulk retry within a rate limit", _add_arguments, _run
)
