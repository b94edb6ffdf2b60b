"""Retry against the live simulator: the real ERP over HTTP, spans through a real collector,
a real SQLite store, and the correlator moving the transaction on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from actions.api import perform
from actions.services import close_all
from tests.actions_support import World, world


def erp(w: World) -> httpx.Client:
    return httpx.Client(base_url=w.config.file.partners["erp"].base_url)


def test_unknown_sku_then_master_data_then_retry_creates_one_order_and_resolves(
    run_collector: Any, tmp_path: Path
) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        order = w.order()
        exc = w.exception("validation")
        assert exc["status"] == "open" and exc["suggested_action"] == "retry"
        sku = re.search(r"SKU (\S+) is not in the item master", exc["summary"])
        assert sku is not None, exc["summary"]
        with erp(w) as client:
            assert client.post("/master-data/skus", json={"sku": sku[1]}).status_code == 201
            result = perform(w.store, w.config, action="retry", exception_id=exc["id"], actor="sam")
            w.settle()
            assert result.ok, result.message
            assert result.status == "resolved" and w.status(exc["id"]) == "resolved"
            assert client.get("/sales-orders", params={"external_ref": order["order"]}).json()["count"] == 1
        entries = [(e["actor"], e["action"], e["result"]) for e in w.audit()]
        assert entries == [("sam", "retry", "allowed"), ("sam", "retry", "succeeded")]
        assert w.audit()[-1]["detail"]["status_after"] == "resolved"
    close_all()
