"""OTLP/HTTP end to end: the real OpenTelemetry SDK and exporter against a running collector,
and JSON bodies (hex ids, int64 strings, enum names) posted with httpx."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from sqlalchemy import func, select

from syncwatch.store import Store
from syncwatch.store.schema import business_keys, observations

FIXTURES = Path(__file__).parent / "fixtures"


def stored(store: Store, **where: object) -> list:  # type: ignore[type-arg]
    query = select(observations).order_by(observations.c.id)
    for name, value in where.items():
        query = query.where(observations.c[name] == value)
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def keys_of(row) -> list:  # type: ignore[no-untyped-def,type-arg]
    """The stored keys column (named ``keys``, ``extracted_keys`` after the store's rename)."""
    mapping = row._mapping
    return mapping["extracted_keys"] if "extracted_keys" in mapping else mapping["keys"]


def key_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(business_keys)).scalar_one()


def test_the_sdk_exporter_stores_every_span_once_with_attributes_and_keys(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    provider = TracerProvider(resource=Resource.create({"service.name": "erp"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces")))
    tracer = provider.get_tracer("test")
    for n in range(300):
        with tracer.start_as_current_span("POST /sales-orders") as span:
            span.set_attribute("erp.sales_order", f"SO-{n}")
            span.set_attribute("erp.external_ref", f"113-{n:07d}-0000001")
            span.set_attribute("item.sku", "SKU-1")
            span.set_attribute("http.response.status_code", 422 if n % 10 == 0 else 201)
    provider.shutdown()

    rows = stored(collector.store, kind="span")
    assert len(rows) == 300
    assert len({r.natural_id for r in rows}) == 300
    first = rows[0]
    assert first.system == "erp"
    assert first.attributes["erp.sales_order"] == "SO-0"
    assert first.outcome == "error" and first.status_code == 422
    assert ["erp_order", "SO-0", True] in keys_of(first)
    assert ["marketplace_order", "113-0000000-0000001", True] in keys_of(first)
    assert ["sku", "SKU-1", False] in keys_of(first)
    assert key_count(collector.store) == 600  # two identity keys each; the SKU only describes
    assert all(r.duplicates == 0 for r in rows)


def test_re_exporting_the_same_spans_stores_them_once_and_counts_duplicates(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    body = (FIXTURES / "otlp_protobuf" / "otelproto_trace.protobuf-bin").read_bytes()
    headers = {"content-type": "application/x-protobuf"}
    for _ in range(3):
        assert httpx.post(f"{collector.url}/v1/traces", content=body, headers=headers).status_code == 200
    [row] = stored(collector.store)
    assert row.trace_id == "5b8efff798038103d269b633813fc60c" and row.duplicates == 2


def test_the_sdk_log_exporter_stores_every_record_once(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    provider = LoggerProvider(resource=Resource.create({"service.name": "wms"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector.url}/v1/logs")))
    logger = provider.get_logger("test")
    for n in range(200):
        logger.emit(body=f"pick order {n} released", attributes={"wms.order_ref": f"SO-{n}", "shipment.id": f"SH-{n}"})
    logger.emit(body="pick order 0 released", attributes={"wms.order_ref": "SO-0", "shipment.id": "SH-0"})
    provider.shutdown()

    rows = stored(collector.store, kind="log")
    assert len(rows) == 201  # the repeated record has its own timestamp, so it is a second record
    by_body = {r.attributes["log.body"]: r for r in rows}
    assert by_body["pick order 7 released"].system == "wms"
    assert ["erp_order", "SO-7", True] in keys_of(by_body["pick order 7 released"])
    assert ["shipment", "SH-7", True] in keys_of(by_body["pick order 7 released"])


def test_otlp_json_with_hex_ids_and_string_int64_is_stored_like_protobuf(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    body = (FIXTURES / "otlp" / "oteldesktopviewer_checkout_traces.json").read_bytes()
    response = httpx.post(f"{collector.url}/v1/traces", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json() == {}
    document = json.loads(body)
    spans = [s for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    rows = stored(collector.store)
    assert {r.natural_id for r in rows} == {f"{s['traceId'].lower()}:{s['spanId'].lower()}" for s in spans}
    assert all(len(r.trace_id) == 32 for r in rows)
    assert any(r.outcome == "error" for r in rows)


def test_json_logs_accept_enum_names_and_nested_values(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    for name in ("otelproto_examples_logs.json", "gcpops_logs_apache_error.json"):
        body = (FIXTURES / "otlp" / name).read_bytes()
        response = httpx.post(f"{collector.url}/v1/logs", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        assert "partialSuccess" not in response.json()
    assert len(stored(collector.store, kind="log")) == 1 + 9


def test_a_gzipped_protobuf_from_the_simple_processor_is_stored(run_collector) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.exporter.otlp.proto.http import Compression

    collector = run_collector()
    provider = TracerProvider(resource=Resource.create({"service.name": "3pl-fastship"}))
    exporter = OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces", compression=Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("POST /fulfillment-orders") as span:
        span.set_attribute("tpl.fulfillment_id", "FO-1")
    provider.shutdown()
    [row] = stored(collector.store)
    assert row.system == "3pl-fastship" and ["fulfillment_order", "FO-1", True] in keys_of(row)


def test_a_span_named_after_its_concrete_path_is_stored_under_the_route(run_collector) -> None:  # type: ignore[no-untyped-def]
    """Client instrumentation that names spans ``POST /orders/113-…/…`` must not make each order an
    endpoint: the path's template where one matches, else its ids as {id}."""
    collector = run_collector()
    provider = TracerProvider(resource=Resource.create({"service.name": "erp"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces")))
    tracer = provider.get_tracer("test")
    for path in (
        "/orders/113-0000001-0000001/shipment-confirmation",
        "/orders/113-0000002-0000001/shipment-confirmation",
    ):
        with tracer.start_as_current_span(f"POST {path}") as span:
            span.set_attributes({"http.request.method": "POST", "url.full": f"https://marketplace.example{path}?v=2"})
    with tracer.start_as_current_span("POST /reports/2026-11/print") as span:  # no template names this path
        span.set_attributes({"http.request.method": "POST", "url.path": "/reports/2026-11/print"})
    with tracer.start_as_current_span("GET") as span:  # the bare method, as the conventions name it
        span.set_attributes({"http.request.method": "GET", "url.path": "/healthz"})
    with tracer.start_as_current_span("confirm shipment") as span:  # a name of its own stays
        span.set_attributes({"http.request.method": "POST", "url.path": "/orders/113-0000003-0000001"})
    with tracer.start_as_current_span("HTTP POST") as span:  # the older conventions' client span
        span.set_attributes({"http.method": "POST", "http.url": "https://m.example/orders/113-0000004-0000001"})
    provider.shutdown()
    rows = stored(collector.store)
    assert [r.operation for r in rows] == [
        "POST /orders/{marketplace_order}/shipment-confirmation",
        "POST /orders/{marketplace_order}/shipment-confirmation",
        "POST /reports/{id}/print",
        "GET /healthz",
        "confirm shipment",
        "POST /orders/{marketplace_order}",
    ]
    assert ["marketplace_order", "113-0000002-0000001", True] in keys_of(rows[1])


def test_health_says_when_writes_wait_on_a_database_another_process_holds(run_collector, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A write lock held elsewhere left senders waiting 43 s while /healthz read 'ok' throughout."""
    import sqlite3
    import threading
    import time

    from collectors import server

    monkeypatch.setattr(server, "WRITE_STALLED_S", 0.5)
    collector = run_collector()
    body = (FIXTURES / "otlp" / "oteldesktopviewer_checkout_traces.json").read_bytes()
    holder = sqlite3.connect(collector.store.engine.url.database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    answers: list[int] = []

    def send() -> None:
        headers = {"content-type": "application/json"}
        answers.append(httpx.post(f"{collector.url}/v1/traces", content=body, headers=headers, timeout=60).status_code)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(1.5)
        held = httpx.get(f"{collector.url}/healthz", timeout=10).json()
        assert held["status"] == "degraded" and "write has waited" in held["reason"], held
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    sender.join(timeout=60)
    assert answers == [200] and httpx.get(f"{collector.url}/healthz").json()["status"] == "ok"


def test_health_says_when_correlation_falls_behind_and_when_the_database_fails(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    health = f"{collector.url}/healthz"
    assert httpx.get(health).json() == {
        "status": "ok",
        "database": "ok",
        "correlation_backlog": 0,
        "waiting_since": None,
    }
    body = (FIXTURES / "otlp" / "oteldesktopviewer_checkout_traces.json").read_bytes()
    httpx.post(f"{collector.url}/v1/traces", content=body, headers={"content-type": "application/json"})
    arrived = len(stored(collector.store))
    fresh = httpx.get(health).json()
    assert (fresh["status"], fresh["correlation_backlog"]) == ("ok", arrived), "a minute's lag is normal"
    with collector.store.writing() as conn:
        conn.execute(observations.update().values(received_at=datetime.now(UTC) - timedelta(minutes=10)))
    late = httpx.get(health)
    assert late.status_code == 200 and late.json()["status"] == "degraded"
    assert late.json()["reason"].endswith("are not correlated yet: is the correlator job running?")
    with collector.store.writing() as conn:
        conn.exec_driver_sql("DROP TABLE checkpoints")
    broken = httpx.get(health)
    assert broken.status_code == 503 and broken.json() == {"status": "unavailable", "database": "does not answer"}


def test_protobuf_attributes_keep_their_types_empty_strings_and_unset_values() -> None:
    """pb_attributes reads string_value first (most attributes are strings): an empty string, a
    zero, false and an unset value must still come out as what they are."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

    from collectors.otlp import pb_attributes

    attributes = [
        KeyValue(key="text", value=AnyValue(string_value="SO-1")),
        KeyValue(key="empty", value=AnyValue(string_value="")),
        KeyValue(key="zero", value=AnyValue(int_value=0)),
        KeyValue(key="no", value=AnyValue(bool_value=False)),
        KeyValue(key="ratio", value=AnyValue(double_value=0.5)),
        KeyValue(key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="a")]))),
        KeyValue(key="unset", value=AnyValue()),
    ]
    assert pb_attributes(attributes) == {
        "text": "SO-1",
        "empty": "",
        "zero": 0,
        "no": False,
        "ratio": 0.5,
        "list": ["a"],
        "unset": None,
    }
    assert type(pb_attributes(attributes)["no"]) is bool
