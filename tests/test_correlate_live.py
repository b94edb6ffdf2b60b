"""The correlator over the live simulator: what it charges where the partners' config names only
their ``base_url`` (the test world's, like a config pointing at the simulator's ports without ``hosts``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actions_support import world

from syncwatch.config.schema import Partner
from syncwatch.model import called_system, partner_hosts


def test_a_3pl_down_in_the_live_simulator_is_charged_to_that_3pl(run_collector: Any, tmp_path: Path) -> None:
    """The ERP's call to the 3PL shows the 3PL's address in ``url.full``: the exception, the order's
    partner and the summary name the 3PL, as they do for the same fault in a generated history."""
    with world(run_collector, tmp_path, ["partner_down=1"]) as w:
        order = w.order()
        exc = w.exception("partner_unavailable")
        assert order["system"] == "3pl-fastship"
        assert exc["system"] == "3pl-fastship" and exc["context"]["partner"] == "3pl-fastship", exc
        assert exc["summary"].startswith("3pl-fastship POST /fulfillment-orders 503"), exc["summary"]
        assert w.transaction(exc)["partner"] == "3pl-fastship"


def test_an_address_two_partners_share_names_neither() -> None:
    """One gateway in front of two 3PLs, told apart by path: its address alone cannot say which."""
    partners = {
        "3pl-a": Partner(kind="3pl", base_url="https://gw.example/a"),
        "3pl-b": Partner(kind="3pl", base_url="https://gw.example/b", hosts=["b.example"]),
        "wms": Partner(kind="wms", base_url="http://127.0.0.1:8104"),
    }
    hosts = partner_hosts(partners)
    assert called_system({"url.full": "https://gw.example/a/orders"}, hosts) is None
    assert called_system({"server.address": "b.example", "url.full": "https://gw.example/b/x"}, hosts) == "3pl-b"
    assert called_system({"server.address": "wms.internal", "url.full": "http://127.0.0.1:8104/p"}, hosts) == "wms"
    assert called_system({"url.full": "http://127.0.0.1:8105/p"}, hosts) is None
