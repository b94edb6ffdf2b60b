"""The generator is deterministic, injects faults at the profile's rates, and its ground truth
agrees with the records it wrote."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncwatch.cli import main
from syncwatch.sim.clock import DEFAULT_START
from syncwatch.sim.faults import FAULTS, PROFILES, FaultSpecError, build_profile
from syncwatch.sim.generate import FILES, Plan, generate


def read(out: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / FILES[name]).read_text(encoding="utf-8").splitlines()]


def spans(out: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(service.name, span, plain attributes) for every span written."""
    found = []
    for request in read(out, "traces"):
        for resource in request["resourceSpans"]:
            system = resource["resource"]["attributes"][0]["value"]["stringValue"]
            for span in resource["scopeSpans"][0]["spans"]:
                attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
                found.append((system, span, attrs))
    return found


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chaos")
    generate(Plan(3, 200, 5, DEFAULT_START, build_profile(["chaos"])), folder)
    return folder


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    argv = ["sim", "--generate", "--days", "2", "--orders-per-day", "40", "--seed", "9", "--profile", "chaos"]
    for name in ("a", "b", "c"):
        seed = ["--seed", "10"] if name == "c" else []
        assert main([*argv, *seed, "--out", str(tmp_path / name)]) == 0
    for relative in FILES.values():
        first, second = (tmp_path / "a" / relative).read_bytes(), (tmp_path / "b" / relative).read_bytes()
        assert first == second, relative
    assert (tmp_path / "a" / FILES["traces"]).read_bytes() != (tmp_path / "c" / FILES["traces"]).read_bytes()


def test_fault_rates_match_the_profile_over_ten_thousand_orders(tmp_path: Path) -> None:
    profile = build_profile(["default"])
    summary = generate(Plan(7, 1430, 3, DEFAULT_START, profile), tmp_path)
    orders = summary.counts["orders"]
    assert orders >= 10_000
    for name in FAULTS:
        observed = summary.faults.get(name, 0) / orders
        assert abs(observed - profile.rate(name)) <= 0.01, (name, observed)
    needs_person = sum(n for name, n in summary.faults.items() if FAULTS[name].needs_person) / orders
    assert 0.03 <= needs_person <= 0.05
    truth = read(tmp_path, "truth")
    counted = Counter(f["name"] for r in truth if r["type"] == "order" for f in r["faults"][:1])
    assert counted == Counter(summary.faults)


def test_profile_none_injects_nothing(tmp_path: Path) -> None:
    summary = generate(Plan(1, 300, 2, DEFAULT_START, build_profile(["none"])), tmp_path)
    assert summary.faults == {}
    assert all(not r["faults"] for r in read(tmp_path, "truth"))


def test_until_stops_the_traffic_within_the_last_day(tmp_path: Path) -> None:
    noon = DEFAULT_START.replace(hour=12, minute=30)
    argv = ["sim", "--generate", "--days", "1", "--orders-per-day", "200", "--seed", "4", "--profile", "none"]
    assert main([*argv, "--until", "2026-11-02T12:30", "--out", str(tmp_path)]) == 0
    truth = read(tmp_path, "truth")
    reached = [datetime.fromisoformat(t) for r in truth for t in r["stages"].values()]
    began = [int(span["startTimeUnixNano"]) / 1e9 for _, span, _ in spans(tmp_path)]
    assert truth and max(reached) < noon and max(began) < noon.timestamp()
    assert 40 < sum(r["type"] == "order" for r in truth) < 120, "the morning's share of 200 orders, no more"
    assert main([*argv, "--until", "2026-11-01T23:00", "--out", str(tmp_path / "none")]) == 2


def test_fault_overrides_combine_with_profiles() -> None:
    profile = build_profile(["none", "chaos"], ["validation=0.1", "throttled=0"])
    assert profile.rate("unknown_sku") == profile.rate("blocked_customer") == pytest.approx(0.05)
    assert profile.rate("throttled") == 0 and profile.rate("dead_letter") == PROFILES["chaos"]["dead_letter"]
    for bad in (["nope=0.1"], ["throttled=2"], ["throttled"], ["throttled=0.6", "partner_down=0.6"]):
        with pytest.raises(FaultSpecError):
            build_profile(["default"], bad)


def test_every_truth_key_appears_in_the_records(chaos: Path) -> None:
    written = "".join(
        (chaos / relative).read_text(encoding="utf-8") for name, relative in FILES.items() if name != "truth"
    )
    for record in read(chaos, "truth"):
        for values in record["keys"].values():
            for value in values:
                assert value in written, (record["id"], value)


def test_stages_match_the_spans_and_events(chaos: Path) -> None:
    captured = {
        a.get("amz.order_id") or a.get("b2b.po_number"): s
        for system, s, a in spans(chaos)
        if s["name"] in ("POST /orders", "POST /purchase-orders")
    }
    shipped = {
        e["data"]["sales_order"]: e["time"]
        for e in reversed(read(chaos, "events"))
        if e["type"] == "com.syncwatch.shipment.shipped"
    }
    for record in read(chaos, "truth"):
        if record["type"] != "order":
            continue
        capture_ns = int(captured[record["id"]]["startTimeUnixNano"])
        # The server span starts 1 ms after the request; the truth keeps milliseconds.
        assert iso_ns(record["stages"]["captured"]) == (capture_ns - 1_000_000) // 1_000_000 * 1_000_000
        if "shipped" in record["stages"]:
            assert shipped[record["keys"]["erp_order"][0]] == record["stages"]["shipped"]


def iso_ns(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


class Evidence:
    """What the records say happened, indexed so each injected fault can be looked up."""

    def __init__(self, out: Path) -> None:
        self.statuses = Counter(
            (a.get("erp.external_ref") or a.get("erp.sales_order"), a["http.response.status_code"])
            for _, _, a in spans(out)
        )
        events = read(out, "events")
        shipped = [e["data"]["shipment_id"] for e in events if e["type"] == "com.syncwatch.shipment.shipped"]
        self.notices = Counter(shipped)
        self.dead = {e["data"]["sales_order"] for e in events if e["type"] == "com.syncwatch.message.dead_lettered"}

    def shows(self, category: str, record: dict[str, Any]) -> bool:
        erp_order = (record["keys"].get("erp_order") or [""])[0]
        stages = record["stages"]
        if category == "validation":
            return self.statuses[(record["id"], "422")] >= 1
        if category in ("partner_unavailable", "timeout", "throttled"):
            status = {"partner_unavailable": "503", "timeout": "504", "throttled": "429"}[category]
            return self.statuses[(erp_order, status)] >= 1
        if category == "duplicate_notice":
            return self.notices[record["keys"]["shipment"][0]] == 2
        if category == "dead_lettered":
            return erp_order in self.dead
        return "confirmed" not in stages or iso_ns(stages["confirmed"]) - iso_ns(stages["shipped"]) > 2 * 3600 * 10**9


def test_injected_faults_show_in_the_records(chaos: Path) -> None:
    evidence = Evidence(chaos)
    seen = set()
    for record in read(chaos, "truth"):
        for fault in record["faults"] if record["type"] == "order" else ():
            seen.add(fault["category"])
            assert evidence.shows(fault["category"], record), (record["id"], fault)
    assert seen == {f.category for f in FAULTS.values()}
