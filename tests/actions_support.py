"""What the action tests share: the live simulator on free ports exporting to a real collector,
a config whose partners point at those ports, and helpers to find an exception and count calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from correlator.passes import Correlator
from syncwatch.config import Config, load_config
from syncwatch.sim.driver import Driver, LiveOptions, LiveThread, otlp_exporter
from syncwatch.sim.faults import build_profile
from syncwatch.sim.live import SYSTEMS
from syncwatch.sim.outage import admin_port
from syncwatch.sim.ports import free_port_run
from syncwatch.store import Store
from syncwatch.store.schema import audit_log, exceptions, observations, transactions

SEEDED_AT = datetime(2026, 11, 26, 12, tzinfo=UTC)


def seed_exceptions(store: Store, count: int, category: str = "timeout") -> list[str]:
    """``count`` open exceptions on one order, written straight to the store (no partner involved)."""
    ids = [f"exc-{n}" for n in range(count)]
    times = {"last_seen_at": SEEDED_AT, "updated_at": SEEDED_AT}
    order = {"id": "txn-1", "type": "order", "sla_state": "on_track", "stages": [], "observation_count": 1}
    failure = {"transaction_id": "txn-1", "category": category, "status": "open", "system": "erp", "context": {}}
    with store.engine.begin() as conn:
        conn.execute(insert(transactions).values(**order, **times, started_at=SEEDED_AT))
        conn.execute(
            insert(exceptions),
            [{"id": i, **failure, **times, "summary": "ERP timed out", "opened_at": SEEDED_AT} for i in ids],
        )
    return ids


PARTNER_KINDS = {"marketplace-amz": "marketplace", "marketplace-b2b": "marketplace", "erp": "erp", "wms": "wms"}


def partners_toml(base_port: int, rate: float = 50.0) -> str:
    """[partners] pointing at the simulator's ports (alternates as in the packaged defaults)."""
    blocks = []
    for index, system in enumerate(SYSTEMS):
        kind = PARTNER_KINDS.get(system, "3pl")
        alternates = {"3pl-fastship": '["3pl-parcelpro", "wms"]', "3pl-parcelpro": '["3pl-fastship", "wms"]'}
        blocks.append(
            f'[partners.{system}]\nkind = "{kind}"\nbase_url = "http://127.0.0.1:{base_port + index}"\n'
            f"timeout_s = 2\nrate_limit_per_s = {rate}\nalternates = {alternates.get(system, '[]')}\n"
        )
    return "\n".join(blocks)


@dataclass
class World:
    """The simulator, the collector's store, and a config for acting on the simulator."""

    sim: LiveThread
    driver: Driver
    store: Store
    config: Config
    base_port: int = 0
    """The simulator's first port, as `syncwatch sim outage … --base-port` takes it."""

    def order(self) -> dict[str, Any]:
        """One order through the live services, its spans stored, then correlated."""
        result = self.sim.call(self.driver.order(time.time_ns() // 1000))
        self.settle()
        return result

    def settle(self) -> None:
        self.sim.call(self.driver.settle())
        self.sim.flush()
        Correlator(self.store, self.config).run_pass()

    def exception(self, category: str) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(exceptions).where(exceptions.c.category == category))]
        assert len(rows) == 1, f"expected one {category} exception, found {rows}"
        return rows[0]

    def status(self, exception_id: str) -> str:
        with self.store.engine.connect() as conn:
            return str(conn.execute(select(exceptions.c.status).where(exceptions.c.id == exception_id)).scalar_one())

    def transaction(self, exception: dict[str, Any]) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            query = select(transactions).where(transactions.c.id == exception["transaction_id"])
            return dict(conn.execute(query).one()._mapping)

    def observations(self, system: str) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            query = select(observations).where(observations.c.system == system).order_by(observations.c.id)
            return [dict(r._mapping) for r in conn.execute(query)]

    def audit(self) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]

    def calls(self, name: str) -> int:
        return self.driver.network.calls[name]


@contextmanager
def world(
    run_collector: Any, tmp_path: Path, faults: list[str], extra: str = "", *, over_otlp: bool = False
) -> Iterator[World]:
    """``over_otlp``: action spans go to the collector over OTLP/HTTP instead of in process. The
    simulator's outage endpoint (`syncwatch sim outage`) listens after its six services."""
    base = free_port_run(7)
    text = partners_toml(base) + extra
    collector = run_collector(text)
    config_path = tmp_path / "actions.toml"
    config_path.write_text(text + (f'\n[actions]\notlp_endpoint = "{collector.url}"\n' if over_otlp else ""))
    config = load_config(str(config_path), {"db": str(collector.store.engine.url)}, environ={})
    options = LiveOptions(base_port=base, events_url=f"{collector.url}/v1/events", admin_port=admin_port(base))
    sim = LiveThread(options, build_profile(["none"], faults), otlp_exporter(collector.url))
    with sim as driver:
        yield World(sim, driver, collector.store, config, base)
