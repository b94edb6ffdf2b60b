"""The stage cache of a long-running `serve` stays bounded when paths carry ids."""

from __future__ import annotations

from datetime import UTC, datetime

from correlator.processes import Member, compile_processes
from correlator.transactions import Stager
from syncwatch.config import load_config


def test_concrete_paths_do_not_grow_the_stage_cache_without_end() -> None:
    order = next(p for p in compile_processes(load_config(environ={})) if p.name == "order")
    stager = Stager()
    stager.LIMIT = 100
    at = datetime(2026, 11, 26, tzinfo=UTC)
    for n in range(1_000):
        member = Member(n, "log", "erp", f"GET /products/{n}", at, "ok", 200, None, 0)
        assert stager.stages_of(order, member) == ()
    shipped = Member(0, "event", "wms", "com.syncwatch.shipment.shipped", at, "ok", None, None, 0)
    assert stager.stages_of(order, shipped) == ("shipped",)
    assert len(stager._cache) <= 100
