"""Live mode: the six services on free ports, real OpenTelemetry SDK spans, one order by HTTP."""

from __future__ import annotations

import asyncio
import random
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from syncwatch.config import load_config
from syncwatch.model import partner_hosts
from syncwatch.sim.driver import LiveOptions, run_live, running, wait_for_collectors
from syncwatch.sim.faults import build_profile
from syncwatch.sim.ids import Ids
from syncwatch.sim.ports import free_port_run

NGINX = re.compile(r'^\S+ - \S+ \[[^\]]+\] "[A-Z]+ \S+ HTTP/1\.1" \d{3} \d+ "[^"]*" "[^"]*" \d+\.\d{3}$')


class Exporters:
    """One in-memory exporter per system's provider (shutting a provider down stops its exporter)."""

    def __init__(self) -> None:
        self.made: list[InMemorySpanExporter] = []

    def __call__(self) -> InMemorySpanExporter:
        self.made.append(InMemorySpanExporter())
        return self.made[-1]

    def get_finished_spans(self) -> list[Any]:
        return [span for exporter in self.made for span in exporter.get_finished_spans()]


async def scenario(options: LiveOptions, exporter: Exporters, faults: list[str]) -> dict[str, Any]:
    async with running(options, build_profile(["none"], faults), exporter) as driver:
        result = await driver.order(0)
        erp = f"http://127.0.0.1:{options.base_port + 2}"
        async with httpx.AsyncClient(base_url=erp) as client:
            again = await client.post(
                "/sales-orders",
                json={"external_ref": result["order"], "customer": "x", "lines": []},
                headers={"Idempotency-Key": result["order"]},
            )
            listed = (await client.get("/sales-orders", params={"external_ref": result["order"]})).json()
            letters = (await client.get("/dead-letters")).json()["dead_letters"]
            redelivered = [(await client.post(f"/dead-letters/{d['id']}/redeliver")).status_code for d in letters]
            left = (await client.get("/dead-letters")).json()["dead_letters"]
            retried = await fix_master_data_and_retry(client, again.json(), result["order"])
        return {
            "result": result,
            "again": again.json(),
            "listed": listed,
            "letters": letters,
            "redelivered": redelivered,
            "left": left,
            "retried": retried,
            "events": driver.delivery.delivered,
        }


async def fix_master_data_and_retry(client: httpx.AsyncClient, rejection: dict[str, Any], ref: str) -> int | None:
    """What an agent does for a validation exception: add the SKU, then retry with a new key."""
    if "sku" not in rejection:
        return None
    assert (await client.post("/master-data/skus", json={"sku": rejection["sku"]})).status_code == 201
    body = {"external_ref": ref, "customer": "C-1", "lines": [{"sku": rejection["sku"], "qty": 1}]}
    return (await client.post("/sales-orders", json=body, headers={"Idempotency-Key": f"{ref}-retry"})).status_code


def test_one_order_flows_through_the_live_services(tmp_path: Path) -> None:
    exporter = Exporters()
    options = LiveOptions(base_port=free_port_run(6), access_log_dir=tmp_path)
    seen = asyncio.run(scenario(options, exporter, []))
    result = seen["result"]
    assert result["outcome"] == "ok"
    # Idempotency-Key: the same key returns the same sales order and creates nothing new.
    assert seen["again"]["sales_order"] == result["sales_order"] and seen["listed"]["count"] == 1
    names = {(span.resource.attributes["service.name"], span.name) for span in exporter.get_finished_spans()}
    assert ("erp", "POST /sales-orders") in names and ("erp", "POST /sales-orders/{erp_order}/allocate") in names
    assert ("erp", "POST /invoices") in names
    assert any(name == "POST /orders/{marketplace_order}/shipment-confirmation" for _, name in names)
    assert [e["type"] for e in seen["events"]] == ["com.syncwatch.shipment.shipped"]
    # Every live partner listens on 127.0.0.1: a call names whom it called as the history does, so a
    # 3PL that is down reads as the 3PL's failure, not as the ERP's that called it.
    hosts = partner_hosts(load_config(environ={}).file.partners)
    clients = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]
    called = {(span.name, hosts.get(span.attributes["server.address"])) for span in clients}
    assert ("POST /sales-orders", "erp") in called and ("POST /invoices", "erp") in called
    assert None not in {to for _, to in called}, called
    gateway = (tmp_path / "gateway.log").read_text(encoding="utf-8").splitlines()
    assert gateway and all(NGINX.match(line) for line in gateway)


def test_a_dead_lettered_notice_can_be_redelivered(tmp_path: Path) -> None:
    exporter = Exporters()
    options = LiveOptions(base_port=free_port_run(6), access_log_dir=tmp_path)
    seen = asyncio.run(scenario(options, exporter, ["dead_letter=1"]))
    assert seen["result"]["outcome"] == "dead_letter"
    assert len(seen["letters"]) == 1 and seen["redelivered"] == [200] and seen["left"] == []
    shipped = [e for e in seen["events"] if e["type"] == "com.syncwatch.shipment.shipped"]
    assert [e["data"]["sales_order"] for e in shipped] == [seen["result"]["sales_order"]]
    assert next(e["type"] for e in seen["events"]) == "com.syncwatch.message.dead_lettered"


def test_the_erp_rejects_unknown_skus_until_master_data_has_them(tmp_path: Path) -> None:
    exporter = Exporters()
    options = LiveOptions(base_port=free_port_run(6))
    seen = asyncio.run(scenario(options, exporter, ["unknown_sku=1"]))
    assert seen["result"]["outcome"] == "rejected" and seen["result"]["status"] == 422
    rejected = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "POST /sales-orders" and s.attributes.get("http.response.status_code") == 422
    ]
    assert any("item master" in (span.status.description or "") for span in rejected)
    assert seen["retried"] == 201


def test_live_orders_wait_until_the_collector_accepts_connections() -> None:
    port = free_port_run(1)
    opened: list[float] = []

    async def open_later() -> asyncio.Server:
        await asyncio.sleep(0.6)
        server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", port)
        opened.append(time.monotonic())
        return server

    async def main() -> tuple[bool, float]:
        later = asyncio.create_task(open_later())
        ready = await wait_for_collectors([f"http://127.0.0.1:{port}", None], timeout_s=10)
        returned = time.monotonic()
        (await later).close()
        return ready, returned

    ready, returned = asyncio.run(main())
    assert ready and opened and returned >= opened[0]


def test_a_collector_that_never_answers_is_named_once_and_the_network_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port_run(1)
    assert asyncio.run(wait_for_collectors([f"http://127.0.0.1:{port}/v1/events"], timeout_s=0.5)) is False
    waiting, gave_up = capsys.readouterr().err.splitlines()
    assert waiting == f"syncwatch sim: waiting for 127.0.0.1:{port} to accept connections before sending orders"
    assert f"127.0.0.1:{port}" in gave_up and "after 0.5 s; sending anyway" in gave_up


async def _otlp_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A collector that accepts every export (an empty ExportTraceServiceResponse) until the
    client hangs up, as the simulator's connection probe does at once."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            await reader.readexactly(int(length[1]) if length else 0)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def test_the_live_network_sends_no_order_before_its_collector_listens(tmp_path: Path) -> None:
    base = free_port_run(7)  # one run: the six services, then the collector, so none can take another's port
    collector = base + 6
    options = LiveOptions(
        base_port=base,
        otlp_endpoint=f"http://127.0.0.1:{collector}",
        access_log_dir=tmp_path,
        orders_per_minute=600,
        real_time=False,
    )
    log = tmp_path / "gateway.log"

    async def main() -> tuple[str, str]:
        live = asyncio.create_task(run_live(options, build_profile(["none"], [])))
        await asyncio.sleep(1.5)
        before = log.read_text() if log.exists() else ""
        server = await asyncio.start_server(_otlp_ok, "127.0.0.1", collector)
        await asyncio.sleep(1.5)
        after = log.read_text() if log.exists() else ""
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
        server.close()
        await server.wait_closed()
        return before, after

    before, after = asyncio.run(main())
    assert before == "", before
    assert "POST /sales-orders" in after, after


def test_a_live_network_numbers_its_documents_after_a_generated_history(tmp_path: Path) -> None:
    """The demo's live orders go on from its history: an id taken by a history order is never
    issued again, and two partners never issue the same id."""
    truth = tmp_path / "ground_truth.jsonl"
    truth.write_text('{"keys":{"erp_order":["SO-604000"],"po_number":["PO-880000"],"shipment":["SH-9900000"]}}\n')
    options = LiveOptions(base_port=free_port_run(6), continue_after=truth)
    seen = asyncio.run(created_without_ids(options))
    assert seen["sales_order"] == "SO-604001"
    fastship, parcelpro = seen["3pl-fastship"], seen["3pl-parcelpro"]
    assert re.fullmatch(r"FS[0-9A-F]{10}", fastship) and re.fullmatch(r"PP-\d{10}", parcelpro), seen
    assert seen["wms"].startswith("WMS-")
    ids = Ids(random.Random(1))
    with truth.open() as lines:
        ids.continue_after(lines)
    assert (ids.next("PO"), ids.next("SH")) == ("PO-880001", "SH-9900001")


async def created_without_ids(options: LiveOptions) -> dict[str, str]:
    """A sales order, and a document at each fulfilment partner posted without an id (as a retry does)."""
    async with running(options, build_profile(["none"]), Exporters()) as driver:
        await driver.order(0)
        seen = {}
        for index, system in enumerate(("erp", "wms", "3pl-fastship", "3pl-parcelpro"), start=2):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{options.base_port + index}") as client:
                if system == "erp":
                    listed = (await client.get("/sales-orders")).json()
                    seen["sales_order"] = min(o["sales_order"] for o in listed["sales_orders"])
                else:
                    path = "/pick-orders" if system == "wms" else "/fulfillment-orders"
                    seen[system] = (await client.post(path, json={"lines": []})).json()["id"]
        return seen


def test_live_orders_are_spaced_as_the_history_spaces_its_hops(tmp_path: Path) -> None:
    """A demo's live order ships hours after capture, as in the history: finished in a blink, it
    would pull today's cycle time down to seconds on the executive's KPI page."""
    waits: list[tuple[int, int]] = []

    async def recorded(low: int, high: int) -> None:
        waits.append((low, high))

    async def one_order() -> dict[str, Any]:
        options = LiveOptions(base_port=free_port_run(6))
        async with running(options, build_profile(["none"], []), Exporters()) as driver:
            driver.pace = recorded
            return await driver.order(0)

    assert asyncio.run(one_order())["outcome"] == "ok"
    minute, hour = 60, 3600
    assert waits[:3] == [(minute, 12 * minute), (minute, 20 * minute), (minute, 30 * minute)]
    assert waits[3][0] == 2 * hour and waits[3][1] in (18 * hour, 26 * hour), "shipped hours after release"
    assert waits[4:] == [(5 * minute, hour), (30 * minute, 8 * hour)], "confirmed, then invoiced"
