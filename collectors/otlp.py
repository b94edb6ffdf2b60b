"""OTLP traces and logs (protobuf here, JSON in ``otlp_json``) into observations, and the answers
the OTLP/HTTP specification asks for (partial success, google.rpc.Status).

Both encodings are walked directly into the same builders (``span``, ``log_record``) so the two
paths cannot drift apart; item problems become rejections, only an undecodable body raises.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from collectors import otlp_json
from collectors.base import ItemError, ParseContext, Parsed, Rejection
from collectors.errors import MalformedInput
from collectors.otlp_model import INVALID_ARGUMENT, LOGS, TRACES, log_record, span, system_of
from syncwatch.store.writes import Row


def pb_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "string_value":  # most attributes: skip the other checks
        return value.string_value
    if which is None:
        return None
    if which == "array_value":
        return [pb_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: pb_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def pb_attributes(attributes: Any) -> dict[str, Any]:
    """Attributes as a dict. A non-empty ``string_value`` can only be the value that is set (the
    oneof's others read as their defaults): most attributes are strings, and reading it first
    skips ``WhichOneof``; an empty one goes the long way, which tells "" from another type."""
    out = {}
    for kv in attributes:
        value = kv.value
        text = value.string_value
        out[kv.key] = text if text else pb_value(value)
    return out


_ZEROS = {16: bytes(16), 8: bytes(8)}


def pb_id(raw: bytes, size: int, what: str, *, optional: bool = False) -> str | None:
    if optional and not raw:
        return None
    if len(raw) != size or raw == _ZEROS[size]:
        raise ItemError(f"{what} must be {size} bytes and not all zero, got {len(raw)} bytes")
    return raw.hex()


def parse_traces_protobuf(body: bytes, ctx: ParseContext) -> Parsed:
    request = _decode(ExportTraceServiceRequest, body)
    parsed = Parsed()
    for r, resource_spans in enumerate(request.resource_spans):
        resource = pb_attributes(resource_spans.resource.attributes)
        system = system_of(resource)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, item in enumerate(scope_spans.spans):
                try:
                    parsed.rows.append(_pb_span(ctx, system, resource, item))
                except ItemError as err:
                    parsed.rejections.append(Rejection(str(err), item.SerializeToString(), f"span {r}.{s}.{i}"))
    return parsed


def _pb_span(ctx: ParseContext, system: str, resource: dict[str, Any], item: Any) -> Row:
    ids = (
        pb_id(item.trace_id, 16, "trace id"),
        pb_id(item.span_id, 8, "span id"),
        pb_id(item.parent_span_id, 8, "parent span id", optional=True),
    )
    attributes = pb_attributes(item.attributes)
    status = item.status
    message = status.message or (_pb_exception_message(item.events) if item.events else "")
    return span(
        ctx,
        system,
        resource,
        ids,  # type: ignore[arg-type]
        item.name,
        item.kind,
        (item.start_time_unix_nano, item.end_time_unix_nano),
        attributes,
        (status.code, message),
    )


def _pb_exception_message(events: Any) -> str:
    for event in events:
        if event.name == "exception":
            message = pb_attributes(event.attributes).get("exception.message")
            if isinstance(message, str):
                return message
    return ""


def parse_logs_protobuf(body: bytes, ctx: ParseContext) -> Parsed:
    request = _decode(ExportLogsServiceRequest, body)
    parsed = Parsed()
    occurrences: dict[str, int] = {}
    for r, resource_logs in enumerate(request.resource_logs):
        resource = pb_attributes(resource_logs.resource.attributes)
        system = system_of(resource)
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            for i, item in enumerate(scope_logs.log_records):
                try:
                    parsed.rows.append(_pb_log(ctx, system, resource, item, occurrences))
                except ItemError as err:
                    parsed.rejections.append(Rejection(str(err), item.SerializeToString(), f"log {r}.{s}.{i}"))
    return parsed


def _pb_log(ctx: ParseContext, system: str, resource: dict[str, Any], item: Any, occurrences: dict[str, int]) -> Row:
    ids = (
        pb_id(item.trace_id, 16, "trace id", optional=True),
        pb_id(item.span_id, 8, "span id", optional=True),
        item.event_name,
    )
    body = pb_value(item.body) if item.HasField("body") else None
    times = (item.time_unix_nano, item.observed_time_unix_nano)
    severity = (item.severity_number, item.severity_text)
    return log_record(ctx, system, resource, times, severity, body, pb_attributes(item.attributes), ids, occurrences)


def _decode(message_type: Any, body: bytes) -> Any:
    try:
        return message_type.FromString(body)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise MalformedInput(f"body is not a valid OTLP protobuf {message_type.__name__}: {err}") from None


def parse(signal: str, encoding: str, body: bytes, ctx: ParseContext) -> Parsed:
    """Parse one OTLP/HTTP request body; raises MalformedInput when the body is unusable."""
    parsers: dict[tuple[str, str], Callable[[bytes, ParseContext], Parsed]] = {
        (TRACES, "protobuf"): parse_traces_protobuf,
        (LOGS, "protobuf"): parse_logs_protobuf,
        (TRACES, "json"): otlp_json.parse_traces,
        (LOGS, "json"): otlp_json.parse_logs,
    }
    return parsers[(signal, encoding)](body, ctx)


def success_body(signal: str, encoding: str, rejected: int, message: str) -> bytes:
    """The Export*ServiceResponse, with partial_success only when something was rejected."""
    if encoding == "json":
        key = "rejectedSpans" if signal == TRACES else "rejectedLogRecords"
        partial = {"partialSuccess": {key: str(rejected), "errorMessage": message}} if rejected else {}
        return otlp_json.dumps(partial)
    if signal == TRACES:
        partial_trace = ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        return ExportTraceServiceResponse(partial_success=partial_trace if rejected else None).SerializeToString()
    partial_logs = ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
    return ExportLogsServiceResponse(partial_success=partial_logs if rejected else None).SerializeToString()


def status_body(encoding: str, message: str, code: int = INVALID_ARGUMENT) -> bytes:
    """A google.rpc.Status, the body OTLP/HTTP asks for on every 4xx and 5xx."""
    if encoding == "json":
        return otlp_json.dumps({"code": code, "message": message})
    return status_pb2.Status(code=code, message=message).SerializeToString()
