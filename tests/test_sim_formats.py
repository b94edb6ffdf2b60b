"""The simulator's files are valid in their real wire formats: OTLP JSON, nginx, Kong, CloudEvents."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from syncwatch.sim.clock import DEFAULT_START
from syncwatch.sim.faults import build_profile
from syncwatch.sim.generate import FILES, Plan, generate

HEX_ID = {"traceId": re.compile(r"^[0-9a-f]{32}$"), "spanId": re.compile(r"^[0-9a-f]{16}$")}
HEX_ID["parentSpanId"] = HEX_ID["spanId"]
# nginx "combined" plus $request_time, as the log_format in the nginx docs spells it.
COMBINED = re.compile(
    r"^(?P<remote_addr>\S+) - (?P<remote_user>\S+) "
    r"\[(?P<time_local>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r'"(?P<request>[A-Z]+ \S+ HTTP/\d\.\d)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+) '
    r'"(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)" (?P<request_time>\d+\.\d{3})$'
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sim")
    generate(Plan(2, 150, 11, DEFAULT_START, build_profile(["chaos"])), folder)
    return folder


def lines(out: Path, name: str) -> list[str]:
    text = (out / FILES[name]).read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text.splitlines()


def hex_to_base64(node: Any) -> Any:
    """OTLP JSON carries ids as hex; protobuf's JSON mapping wants bytes as base64."""
    if isinstance(node, list):
        return [hex_to_base64(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {}
    for key, value in node.items():
        if key in HEX_ID:
            assert HEX_ID[key].match(value), f"{key} {value!r} is not lowercase hex of the right length"
            value = base64.b64encode(bytes.fromhex(value)).decode()
        converted[key] = hex_to_base64(value)
    return converted


def test_every_trace_line_is_an_export_trace_service_request(out: Path) -> None:
    spans = 0
    for line in lines(out, "traces"):
        request = json_format.Parse(json.dumps(hex_to_base64(json.loads(line))), ExportTraceServiceRequest())
        for resource in request.resource_spans:
            names = [a.value.string_value for a in resource.resource.attributes if a.key == "service.name"]
            assert names and names[0]
            spans += sum(len(scope.spans) for scope in resource.scope_spans)
    assert spans > 1000


def test_span_times_and_ints_follow_the_json_encoding(out: Path) -> None:
    document = json.loads(lines(out, "traces")[0])
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert isinstance(span["startTimeUnixNano"], str) and isinstance(span["kind"], int)
    assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
    status = next(a for a in span["attributes"] if a["key"] == "http.response.status_code")
    assert isinstance(status["value"]["intValue"], str)


def test_every_log_line_is_an_export_logs_service_request(out: Path) -> None:
    records = 0
    for line in lines(out, "logs"):
        request = json_format.Parse(json.dumps(hex_to_base64(json.loads(line))), ExportLogsServiceRequest())
        records += sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
    assert records > 10


def test_every_gateway_line_matches_nginx_combined(out: Path) -> None:
    gateway = lines(out, "gateway")
    assert len(gateway) > 500
    for line in gateway:
        assert COMBINED.match(line), line


def test_edge_lines_have_the_kong_shape(out: Path) -> None:
    for line in lines(out, "edge"):
        entry = json.loads(line)
        assert isinstance(entry["started_at"], int)
        assert entry["request"]["method"] in {"POST", "PUT"} and entry["request"]["uri"].startswith("/")
        assert 100 <= entry["response"]["status"] < 600
        assert entry["latencies"]["request"] >= 1 and entry["service"]["name"]


def test_every_event_has_the_cloudevents_required_attributes(out: Path) -> None:
    events = [json.loads(line) for line in lines(out, "events")]
    assert len(events) > 100
    for event in events:
        assert event["specversion"] == "1.0"
        assert all(isinstance(event[name], str) and event[name] for name in ("id", "source", "type"))
        assert RFC3339.match(event["time"]) and event["datacontenttype"] == "application/json"
        assert isinstance(event["data"], dict)
        if "traceparent" in event:
            assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", event["traceparent"])


def test_files_are_in_time_order(out: Path) -> None:
    started = [json.loads(line)["started_at"] for line in lines(out, "edge")]
    assert started == sorted(started)
    times = [json.loads(line)["time"] for line in lines(out, "events")]
    assert times == sorted(times)
