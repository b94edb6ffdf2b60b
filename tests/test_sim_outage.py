"""Staging a partner outage in the running simulator: the live services on free ports, the outage
endpoint and `syncwatch sim outage` over real HTTP, spans to a real collector on SQLite, correlated."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from actions_support import World, partners_toml

from syncwatch.cli import main
from syncwatch.config import load_config
from syncwatch.sim.driver import LiveOptions, LiveThread, otlp_exporter
from syncwatch.sim.faults import build_profile
from syncwatch.sim.outage import PATH, admin_port
from syncwatch.sim.ports import free_port_run

FULFILMENTS = "3pl-fastship POST /fulfillment-orders"


@contextmanager
def staged(run_collector: Any, tmp_path: Path) -> Iterator[tuple[World, int]]:
    """The simulator with its outage endpoint (as `syncwatch sim` runs it), and its base port."""
    base = free_port_run(7)  # the six services and the outage endpoint after them
    collector = run_collector(partners_toml(base))
    config_path = tmp_path / "outage.toml"
    config_path.write_text(partners_toml(base))
    config = load_config(str(config_path), {"db": str(collector.store.engine.url)}, environ={})
    options = LiveOptions(base_port=base, events_url=f"{collector.url}/v1/events", admin_port=admin_port(base))
    sim = LiveThread(options, build_profile(["none"], []), otlp_exporter(collector.url))
    with sim as driver:
        yield World(sim, driver, collector.store, config), base


def next_order_to_fastship(w: World) -> dict[str, Any]:
    """Orders until one is handed to 3pl-fastship (the seeded network routes some to the others)."""
    for _ in range(40):
        before = w.calls(FULFILMENTS)
        result = w.order()
        if w.calls(FULFILMENTS) > before:
            return result
    raise AssertionError("no order was handed to 3pl-fastship in 40")


def test_a_3pl_taken_down_fails_its_next_hand_over_until_it_is_back_up(
    run_collector: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with staged(run_collector, tmp_path) as (w, base):
        assert main(["sim", "outage", "3pl-fastship", "down", "--base-port", str(base)]) == 0
        assert "until `syncwatch sim outage 3pl-fastship up --base-port" in capsys.readouterr().out
        listed = httpx.get(f"http://127.0.0.1:{admin_port(base)}{PATH}", timeout=10).json()
        assert listed == {"outages": {"3pl-fastship": "down"}}
        failed = next_order_to_fastship(w)
        assert (failed["outcome"], failed["status"], failed["system"]) == ("release_failed", 503, "3pl-fastship")
        exc = w.exception("partner_unavailable")
        assert exc["system"] == "3pl-fastship"
        assert exc["transaction_id"] == f"order:{failed['order']}", "the exception is the failed order's"
        # It stays down, unlike with the partner_down fault: the next order to it fails as well.
        assert next_order_to_fastship(w)["outcome"] == "release_failed"

        up = httpx.post(
            f"http://127.0.0.1:{admin_port(base)}{PATH}", json={"partner": "3pl-fastship", "mode": "up"}, timeout=10
        )
        assert up.status_code == 200 and up.json()["outages"] == {}
        shipped = next_order_to_fastship(w)
        assert shipped["outcome"] == "ok", shipped
        assert w.driver.network.partners["3pl-fastship"].documents, "the 3PL took the order"


def test_an_unknown_partner_or_mode_is_refused_in_one_sentence(
    run_collector: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with staged(run_collector, tmp_path) as (w, base):
        url = f"http://127.0.0.1:{admin_port(base)}{PATH}"
        assert main(["sim", "outage", "3pl-nowhere", "down", "--base-port", str(base)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            "syncwatch sim outage: '3pl-nowhere' is not a partner of the simulator; choose one of "
            "marketplace-amz, marketplace-b2b, wms, 3pl-fastship, 3pl-parcelpro."
        )
        assert main(["sim", "outage", "3pl-fastship", "sideways", "--base-port", str(base)]) == 2
        assert (
            capsys.readouterr()
            .err.strip()
            .endswith("'sideways' is not an outage mode; choose one of down, unreachable, slow, up.")
        )
        erp = httpx.post(url, json={"partner": "erp", "mode": "down"}, timeout=10)
        assert erp.status_code == 400 and "'erp' is not a partner of the simulator" in erp.json()["error"]
        garbled = httpx.post(url, content=b"down", timeout=10)
        assert garbled.status_code == 400 and garbled.json()["error"].startswith("the body must be a JSON object")
        assert httpx.get(url, timeout=10).json() == {"outages": {}}, "nothing was staged"
        assert all(not state.outage for state in w.driver.network.partners.values())


def test_outage_names_the_simulator_it_cannot_reach(capsys: pytest.CaptureFixture[str]) -> None:
    base = free_port_run(7)
    assert main(["sim", "outage", "3pl-fastship", "down", "--base-port", str(base)]) == 1
    assert f"nothing answers at 127.0.0.1:{base + 6}" in capsys.readouterr().err
