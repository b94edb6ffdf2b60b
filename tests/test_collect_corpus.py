"""The bad-input corpus: each malformed request gets its specified status and a specific message,
lands in quarantine with that reason, and the collector keeps serving without losing or
duplicating what it had already stored.

Far-future timestamps: up to ``[collectors] max_clock_skew`` (default 1 h) ahead of the receiver's
clock they are stored and flagged with the attribute ``syncwatch.clock_skew_s``; beyond, the item
is quarantined. Zero, negative and pre-2000 timestamps are quarantined.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from dataclasses import dataclass, field

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from sqlalchemy import func, select

from syncwatch.store.schema import observations, quarantine

TOKEN = "s3cret-token"
CONFIG = """
[settings]
max_request_bytes = 12000000

[sources.partner]
token_env = "PARTNER_TOKEN"
"""
NOW_NS = time.time_ns()
PB = "application/x-protobuf"
JS = "application/json"
CE = "application/cloudevents+json"


def pb_span(**changes: object) -> Span:
    fields: dict[str, object] = {
        "trace_id": bytes.fromhex("5b8efff798038103d269b633813fc60c"),
        "span_id": bytes.fromhex("eee19b7ec3c1b174"),
        "name": "POST /sales-orders",
        "start_time_unix_nano": NOW_NS - 10**9,
        "end_time_unix_nano": NOW_NS,
    }
    fields.update(changes)
    return Span(**fields)  # type: ignore[arg-type]


def pb_traces(*spans: Span) -> bytes:
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="erp")))
    return ExportTraceServiceRequest(resource_spans=[resource_spans]).SerializeToString()


def js_span(**changes: object) -> dict[str, object]:
    span: dict[str, object] = {
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "name": "POST /sales-orders",
        "kind": "SPAN_KIND_SERVER",
        "startTimeUnixNano": str(NOW_NS - 10**9),
        "endTimeUnixNano": str(NOW_NS),
    }
    span.update(changes)
    return span


def js_traces(*spans: object) -> bytes:
    document = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": list(spans)}]}]}
    return json.dumps(document).encode()


def js_logs(*records: object) -> bytes:
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": list(records)}]}]}).encode()


def cloud_event(**changes: object) -> bytes:
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "3pl-fastship",
        "type": "com.syncwatch.shipment.shipped",
        "time": "2026-11-25T10:00:00Z",
        "data": {"shipment_id": "SH-1"},
    }
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


@dataclass(frozen=True)
class Case:
    path: str
    body: bytes
    content_type: str | None
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    auth: str | None = f"Bearer {TOKEN}"


TRUNCATED = pb_traces(pb_span(), pb_span(span_id=b"\x01" * 8))[:-7]
INVALID_UTF8_NAME = pb_traces(pb_span(name="XXXXNAME")).replace(b"XXXXNAME", b"\xff\xfe\xfd\xfcNAME")
BOMB = gzip.compress(b"\0" * 40_000_000)
TEN_MB = pb_traces(pb_span(attributes=[KeyValue(key="blob", value=AnyValue(string_value="x" * 10_000_000))]))
DAY_NS = 86_400 * 10**9

CASES = {
    "truncated protobuf": Case("/v1/traces", TRUNCATED, PB, 400, "not a valid OTLP protobuf"),
    "random bytes as protobuf": Case("/v1/traces", b"\x0a\xff\xff\xff\xff\x0f", PB, 400, "not a valid OTLP protobuf"),
    "invalid UTF-8 in a protobuf string": Case("/v1/traces", INVALID_UTF8_NAME, PB, 400, "not a valid OTLP protobuf"),
    "trace id of 3 bytes": Case(
        "/v1/traces", pb_traces(pb_span(trace_id=b"abc")), PB, 200, "trace id must be 16 bytes"
    ),
    "all-zero span id": Case("/v1/traces", pb_traces(pb_span(span_id=b"\0" * 8)), PB, 200, "span id must be 8 bytes"),
    "zero timestamp": Case("/v1/traces", pb_traces(pb_span(start_time_unix_nano=0)), PB, 200, "zero or negative"),
    "timestamp before 2000": Case(
        "/v1/traces", pb_traces(pb_span(start_time_unix_nano=10**9)), PB, 200, "before 2000-01-01"
    ),
    "far-future timestamp": Case(
        "/v1/traces",
        pb_traces(pb_span(start_time_unix_nano=NOW_NS + 10 * DAY_NS, end_time_unix_nano=NOW_NS + 10 * DAY_NS)),
        PB,
        200,
        "h in the future, beyond the allowed clock skew",
    ),
    "end before start": Case(
        "/v1/traces", pb_traces(pb_span(end_time_unix_nano=NOW_NS - 5 * 10**9)), PB, 200, "end time is before"
    ),
    "a 10 MB attribute": Case("/v1/traces", TEN_MB, PB, 200, "attribute 'blob' is 10,000,000 bytes"),
    "negative JSON timestamp": Case(
        "/v1/traces", js_traces(js_span(startTimeUnixNano="-5")), JS, 200, "zero or negative"
    ),
    "invalid JSON": Case("/v1/traces", b'{"resourceSpans": [', JS, 400, "not valid JSON"),
    "logs sent to the traces endpoint": Case(
        "/v1/traces", b'{"resourceLogs": []}', JS, 400, "an OTLP logs document (resourceLogs): send it to /v1/logs"
    ),
    "a misspelt signal key": Case("/v1/logs", b'{"resourceLogz": []}', JS, 400, "no resourceLogs in the document"),
    "invalid UTF-8 in JSON": Case("/v1/traces", b'{"resourceSpans": ["\xff\xfe"]}', JS, 400, "not valid UTF-8"),
    "JSON array instead of object": Case("/v1/traces", b"[]", JS, 400, "must be an object"),
    "resourceSpans of the wrong type": Case(
        "/v1/traces", b'{"resourceSpans": {"a": 1}}', JS, 400, "resourceSpans must be an array"
    ),
    "base64 trace id in JSON": Case(
        "/v1/traces", js_traces(js_span(traceId="W47/95gDgQPSabYzgT/GDA==")), JS, 200, "traceId must be 32 hex"
    ),
    "float timestamp in JSON": Case(
        "/v1/traces", js_traces(js_span(startTimeUnixNano=1.5e18)), JS, 200, "startTimeUnixNano must be an integer"
    ),
    "unknown span kind name": Case(
        "/v1/traces", js_traces(js_span(kind="SPAN_KIND_SIDEWAYS")), JS, 200, "is not a known enum name"
    ),
    "stringValue holding a number": Case(
        "/v1/traces",
        js_traces(js_span(attributes=[{"key": "a", "value": {"stringValue": 5}}])),
        JS,
        200,
        "stringValue must be a string",
    ),
    "intValue that is not a number": Case(
        "/v1/traces",
        js_traces(js_span(attributes=[{"key": "a", "value": {"intValue": "ten"}}])),
        JS,
        200,
        "intValue must be an integer",
    ),
    "span that is not an object": Case("/v1/traces", js_traces("span"), JS, 200, "span must be an object"),
    "unknown content type": Case("/v1/traces", b"hello", "text/plain", 415, "'text/plain' is not supported"),
    "no content type": Case("/v1/traces", b"hello", None, 415, "'(none)' is not supported"),
    "unsupported content encoding": Case(
        "/v1/traces", b"xx", PB, 415, "content encoding 'br' is not supported", {"content-encoding": "br"}
    ),
    "body that is not gzip": Case("/v1/traces", b"plain", PB, 400, "not valid gzip", {"content-encoding": "gzip"}),
    "truncated gzip": Case(
        "/v1/traces",
        gzip.compress(pb_traces(pb_span()))[:-12],
        PB,
        400,
        "gzip body is truncated",
        {"content-encoding": "gzip"},
    ),
    "gzip bomb": Case("/v1/traces", BOMB, PB, 413, "once decompressed", {"content-encoding": "gzip"}),
    "body over the size limit": Case("/v1/traces", b"\0" * 12_000_001, PB, 413, "over the limit of 12,000,000"),
    "missing token": Case("/v1/traces", pb_traces(pb_span()), PB, 401, "missing bearer token", auth=None),
    "wrong token": Case("/v1/traces", pb_traces(pb_span()), PB, 401, "bearer token is not valid", auth="Bearer nope"),
    "token on an unknown content type": Case("/v1/logs", b"x", "text/csv", 401, "missing bearer token", auth=None),
    "truncated logs protobuf": Case(
        "/v1/logs", ExportLogsServiceRequest().SerializeToString() + b"\x0a\x05ab", PB, 400, "not a valid OTLP"
    ),
    "log record without any time": Case(
        "/v1/logs", js_logs({"body": {"stringValue": "x"}}), JS, 200, "neither timeUnixNano nor observedTimeUnixNano"
    ),
    "unknown severity name": Case(
        "/v1/logs",
        js_logs({"timeUnixNano": str(NOW_NS), "severityNumber": "SEVERITY_NUMBER_LOUD"}),
        JS,
        200,
        "severityNumber 'SEVERITY_NUMBER_LOUD' is not a known enum name",
    ),
    "CloudEvent missing required attributes": Case(
        "/v1/events", cloud_event(source=None, type=None), CE, 400, "missing required attribute(s) source, type"
    ),
    "CloudEvent of another specversion": Case(
        "/v1/events", cloud_event(specversion="0.3"), CE, 400, "specversion '0.3' is not supported"
    ),
    "CloudEvent time without an offset": Case(
        "/v1/events", cloud_event(time="2026-11-25 10:00"), CE, 400, "is not an RFC 3339 timestamp"
    ),
    "CloudEvent far in the future": Case(
        "/v1/events", cloud_event(time="2031-01-01T00:00:00Z"), CE, 400, "h in the future"
    ),
    "CloudEvent with bad data_base64": Case(
        "/v1/events", cloud_event(data=None, data_base64="%%%"), CE, 400, "data_base64 is not valid base64"
    ),
    "CloudEvents batch that is not an array": Case(
        "/v1/events", cloud_event(), "application/cloudevents-batch+json", 400, "batch body must be a JSON array"
    ),
    "binary-mode CloudEvent without ce-type": Case(
        "/v1/events",
        b'{"shipment_id": "SH-2"}',
        JS,
        400,
        "missing required attribute(s) type",
        {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "wms"},
    ),
    "events with an unknown content type": Case("/v1/events", b"a,b", "text/csv", 415, "not a CloudEvents mode"),
    "webhook without an id": Case(
        "/v1/webhooks/amazon-sp-api", b'{"NotificationType": "ORDER_CHANGE"}', JS, 400, "no id at"
    ),
    "webhook body that is not JSON": Case("/v1/webhooks/shopify", b"<xml/>", JS, 400, "not valid JSON"),
    "webhook body with a 5,000-digit number": Case(
        "/v1/webhooks/shopify", b'{"id": ' + b"9" * 5000 + b"}", JS, 400, "a number of more than 4,300 digits"
    ),
    "OTLP JSON with a 5,000-digit number": Case(
        "/v1/traces", b'{"resourceSpans": ' + b"9" * 5000 + b"}", JS, 400, "a number of more than 4,300 digits"
    ),
    "webhook body of another content type": Case(
        "/v1/webhooks/shopify", b"<xml/>", "application/xml", 415, "content type 'application/xml' is not supported"
    ),
}


def good_span(n: int) -> bytes:
    return pb_traces(pb_span(span_id=(1000 + n).to_bytes(8, "big")))


def stored_ids(store) -> list[str]:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return list(conn.execute(select(observations.c.natural_id)).scalars())


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_malformed_input_is_refused_quarantined_and_the_service_keeps_serving(run_collector, case: Case) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector(CONFIG, {"PARTNER_TOKEN": TOKEN})
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=collector.url, timeout=60) as client:
        _exercise(client, collector, case, auth)


def _exercise(client: httpx.Client, collector, case: Case, auth: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/v1/traces", content=good_span(1), headers={"content-type": PB, **auth}).status_code == 200
    before = stored_ids(collector.store)

    headers = {**case.headers, **({"content-type": case.content_type} if case.content_type else {})}
    if case.auth:
        headers["authorization"] = case.auth
    response = client.post(case.path, content=case.body, headers=headers)

    assert response.status_code == case.status
    assert case.message in response.content.decode("utf-8", "replace")
    with collector.store.engine.connect() as conn:
        reasons = list(conn.execute(select(quarantine.c.reason, quarantine.c.raw_size)))
    assert any(case.message in reason for reason, _size in reasons), reasons
    assert client.post("/v1/traces", content=good_span(2), headers={"content-type": PB, **auth}).status_code == 200
    after = stored_ids(collector.store)
    assert after == [*before, after[-1]] and len(set(after)) == len(after)


def test_the_corpus_is_at_least_thirty_inputs() -> None:
    assert len(CASES) >= 30


def test_a_timestamp_within_the_clock_skew_is_stored_and_flagged(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    # The clock is read here, not at import: a long suite run would otherwise eat into the skew.
    ahead = time.time_ns() + 600 * 10**9
    body = pb_traces(pb_span(start_time_unix_nano=ahead, end_time_unix_nano=ahead + 10**6))
    assert httpx.post(f"{collector.url}/v1/traces", content=body, headers={"content-type": PB}).status_code == 200
    with collector.store.engine.connect() as conn:
        [attributes] = conn.execute(select(observations.c.attributes)).scalars()
    assert 500 < attributes["syncwatch.clock_skew_s"] < 700


def test_partial_success_names_how_many_spans_were_rejected(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    body = js_traces(js_span(), js_span(spanId="00000000000000AA", startTimeUnixNano="0"))
    response = httpx.post(f"{collector.url}/v1/traces", content=body, headers={"content-type": JS})
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert len(stored_ids(collector.store)) == 1


def test_base64_in_quarantine_keeps_the_raw_bytes_bounded(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    httpx.post(f"{collector.url}/v1/traces", content=TEN_MB, headers={"content-type": PB}, timeout=60)
    with collector.store.engine.connect() as conn:
        [(raw, size)] = conn.execute(select(quarantine.c.raw, quarantine.c.raw_size))
    assert len(raw) == collector.store.raw_limit and size > 10_000_000
    assert base64.b64encode(raw[:3])  # the bytes are kept as bytes, not text


def test_a_body_over_the_limit_is_quarantined_with_its_whole_size_not_the_kept_start(run_collector) -> None:  # type: ignore[no-untyped-def]
    """Both read 65,536 bytes as their size, the kept start, against a column that says 'before cutting'."""
    collector = run_collector()
    over = b"\0" * 17_000_000  # the default limit is 16 MiB
    for body, headers in ((over, {}), (BOMB, {"content-encoding": "gzip"})):
        answer = httpx.post(f"{collector.url}/v1/traces", content=body, headers={"content-type": PB, **headers})
        assert answer.status_code == 413
    with collector.store.engine.connect() as conn:
        sizes = sorted(size for (size,) in conn.execute(select(quarantine.c.raw_size)))
    assert sizes == sorted([len(over), len(BOMB)])


def test_bodies_refused_while_decoding_keep_their_own_bytes_and_reasons(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    event = json.dumps({"specversion": "1.0", "id": "IMPORTANT-1", "source": "erp", "type": "x"}).encode()
    sent = [
        ("/v1/events", event, {"content-type": CE, "content-encoding": "gzip"}, 400),
        ("/v1/logs", b'{"resourceLogs": []}', {"content-type": JS, "content-encoding": "zstd"}, 415),
        ("/v1/traces", b"", {"content-type": "text/plain"}, 415),
        ("/v1/traces", b"", {"content-type": "text/csv"}, 415),
    ]
    for path, body, headers, status in sent:
        assert httpx.post(f"{collector.url}{path}", content=body, headers=headers).status_code == status
    with collector.store.engine.connect() as conn:
        rows = list(conn.execute(select(quarantine.c.raw, quarantine.c.reason, quarantine.c.deliveries)))
    assert len(rows) == 4 and all(deliveries == 1 for _raw, _reason, deliveries in rows)
    kept = {raw: reason for raw, reason, _ in rows if raw}
    assert "not valid gzip" in kept[event] and "'zstd' is not supported" in kept[b'{"resourceLogs": []}']


def test_which_webhooks_exist_is_told_only_to_a_sender_with_a_token(run_collector) -> None:  # type: ignore[no-untyped-def]
    """'no webhook named …' answered before the token was looked at: anyone could probe the names."""
    collector = run_collector(CONFIG, {"PARTNER_TOKEN": TOKEN})
    url = f"{collector.url}/v1/webhooks/nope"
    stranger = httpx.post(url, json={})
    assert stranger.status_code == 401 and "webhook" not in stranger.text
    partner = httpx.post(url, json={}, headers={"authorization": f"Bearer {TOKEN}"})
    assert partner.status_code == 404 and "no webhook named 'nope'" in partner.text


def test_a_body_refused_for_its_token_keeps_only_a_kilobyte_in_quarantine(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector(CONFIG, {"PARTNER_TOKEN": TOKEN})
    big = pb_traces(*(pb_span(span_id=(n + 1).to_bytes(8, "big"), name="x" * 100) for n in range(2_000)))
    refused = httpx.post(f"{collector.url}/v1/traces", content=big, headers={"content-type": PB}, timeout=60)
    assert refused.status_code == 401
    with collector.store.engine.connect() as conn:
        [(raw, size, reason)] = conn.execute(select(quarantine.c.raw, quarantine.c.raw_size, quarantine.c.reason))
    assert len(big) > 100_000 and size == 1024 and raw == big[:1024] and "missing bearer token" in reason


def test_refusals_for_the_token_are_kept_at_most_sixty_a_minute_and_the_rest_counted(run_collector) -> None:  # type: ignore[no-untyped-def]
    """Anyone who reaches the port can send requests without a token: kept each, they filled the database."""
    collector = run_collector(CONFIG, {"PARTNER_TOKEN": TOKEN})
    with httpx.Client() as client:
        for n in range(80):
            body = pb_traces(pb_span(span_id=(n + 1).to_bytes(8, "big")))
            assert (
                client.post(f"{collector.url}/v1/traces", content=body, headers={"content-type": PB}).status_code == 401
            )
        scrape = client.get(f"{collector.url}/metrics").text
        served = client.post(
            f"{collector.url}/v1/traces",
            content=pb_traces(pb_span()),
            headers={"content-type": PB, "authorization": f"Bearer {TOKEN}"},
        )
    with collector.store.engine.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()
    [unkept] = [
        float(line.split()[-1]) for line in scrape.splitlines() if line.startswith("syncwatch_inputs_refused_unkept")
    ]
    assert 60 <= kept < 80 and kept + unkept == 80
    assert served.status_code == 200


def test_the_allowance_refills_steadily() -> None:
    from collectors.server import Allowance

    now = [0.0]
    allowance = Allowance(60, clock=lambda: now[0])
    assert all(allowance.take() for _ in range(60))
    assert not allowance.take() and not allowance.take()
    now[0] = 1.0  # a second refills one
    assert allowance.take() and not allowance.take()
    now[0] = 1000.0  # never more than a minute's worth
    assert sum(allowance.take() for _ in range(100)) == 60


def test_a_wrong_path_or_method_is_told_what_the_server_takes(run_collector) -> None:  # type: ignore[no-untyped-def]
    """An exporter pointed at /v1/trace got a bare 'Not Found'."""
    collector = run_collector()
    wrong_path = httpx.post(f"{collector.url}/v1/trace", content=b"{}", headers={"content-type": JS})
    assert wrong_path.status_code == 404
    assert wrong_path.json()["error"].startswith("no endpoint for POST /v1/trace (wrong path); POST /v1/traces, ")
    wrong_method = httpx.get(f"{collector.url}/v1/traces")
    assert wrong_method.status_code == 405 and "(wrong method)" in wrong_method.json()["error"]
    assert "GET /healthz" in wrong_method.json()["error"]
    slashed = httpx.post(f"{collector.url}/v1/traces/", content=pb_traces(pb_span()), headers={"content-type": PB})
    assert slashed.status_code == 200, "stored, not redirected: an exporter may not follow a redirect with its body"
