"""The shared half of OTLP: spans and log records become observation rows the same way, whichever
encoding (protobuf or JSON) carried them, so the two walkers cannot drift apart."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from collectors.base import (
    LOG,
    SPAN,
    ItemError,
    ParseContext,
    check_attribute_sizes,
    check_time,
    digest,
    row,
    skew_seconds,
)
from collectors.routes import generic_route
from syncwatch.store.writes import Row

TRACES = "traces"
LOGS = "logs"
UNKNOWN_SERVICE = "unknown_service"
STATUS_ERROR = 2
SEVERITY_ERROR = 17  # SEVERITY_NUMBER_ERROR and above count as failures
SPAN_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
INVALID_ARGUMENT = 3  # google.rpc.Code
MAX_MESSAGE = 2000


def system_of(resource: dict[str, Any]) -> str:
    name = resource.get("service.name")
    return name if isinstance(name, str) and name else UNKNOWN_SERVICE


def http_status(attributes: dict[str, Any]) -> int | None:
    value = attributes.get("http.response.status_code", attributes.get("http.status_code"))
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def url_path(attributes: dict[str, Any]) -> str | None:
    path = attributes.get("url.path") or attributes.get("http.target")
    if isinstance(path, str):
        return path
    full = attributes.get("url.full") or attributes.get("http.url")
    return urlsplit(full).path if isinstance(full, str) else None


def span(
    ctx: ParseContext,
    system: str,
    resource: dict[str, Any],
    ids: tuple[str, str, str | None],
    name: str,
    kind: int,
    times: tuple[int, int],
    attributes: dict[str, Any],
    status: tuple[int, str],
) -> Row:
    """One span as an observation row; ``ids`` are (trace, span, parent) hex, ``times`` (start, end) ns."""
    trace_id, span_id, _parent = ids
    start_ns = check_time(ctx, times[0], "span start time")
    end_ns = check_time(ctx, times[1], "span end time") if times[1] else 0
    if end_ns and end_ns < start_ns:
        raise ItemError("span end time is before its start time")
    check_attribute_sizes(ctx, attributes)
    attrs = {**resource, **attributes}
    if kind in SPAN_KINDS:
        attrs["span.kind"] = SPAN_KINDS[kind]
    skew = skew_seconds(ctx, end_ns or start_ns)
    if skew is not None:
        attrs["syncwatch.clock_skew_s"] = skew
    path = url_path(attrs)
    keys, route = ctx.keys.extract(system, attrs, path)
    code = http_status(attrs)
    failed = status[0] == STATUS_ERROR or (code is not None and code >= 400)
    return row(
        ctx,
        f"{trace_id}:{span_id}",
        SPAN,
        system,
        _operation(name, attrs, route, path),
        (start_ns, end_ns),
        failed,
        (code, (status[1] or _error_text(attrs))[:MAX_MESSAGE] if failed else None),
        ids,
        keys,
        attrs,
    )


def _operation(name: str, attrs: dict[str, Any], route: str | None, path: str | None) -> str:
    """The span name, unless it is the bare HTTP method (``POST``, or ``HTTP POST`` as the older
    semantic conventions named client spans) or the method with the span's own path: then the method
    and the template the path matched, else the path with its ids as ``{id}``.
    Instrumentation that names client spans ``POST /orders/113-…`` would otherwise make every
    order an endpoint of its own."""
    method = attrs.get("http.request.method") or attrs.get("http.method")
    if method and path:
        path = path.split("?", 1)[0]
        if name in (method, f"HTTP {method}", f"{method} {path}"):
            return f"{method} {route or generic_route(path)}"
    return name or "(unnamed span)"


def _error_text(attrs: dict[str, Any]) -> str:
    text = attrs.get("exception.message") or attrs.get("error.type") or ""
    return text if isinstance(text, str) else str(text)


def log_record(
    ctx: ParseContext,
    system: str,
    resource: dict[str, Any],
    times: tuple[int, int],
    severity: tuple[int, str],
    body: Any,
    attributes: dict[str, Any],
    ids: tuple[str | None, str | None, str],
    occurrences: dict[str, int],
) -> Row:
    """One log record; ``ids`` are (trace, span, event name); ``occurrences`` counts identical
    records within one request, so a re-delivered request dedupes but two equal lines do not."""
    time_ns = times[0] or times[1]
    if not time_ns:
        raise ItemError("log record has neither timeUnixNano nor observedTimeUnixNano")
    check_time(ctx, time_ns, "log record time")
    check_attribute_sizes(ctx, {**attributes, "body": body})
    attrs = {**resource, **attributes, "log.severity_number": severity[0], "log.severity_text": severity[1]}
    if body is not None:
        attrs["log.body"] = body
    skew = skew_seconds(ctx, time_ns)
    if skew is not None:
        attrs["syncwatch.clock_skew_s"] = skew
    trace_id, span_id, event_name = ids
    content = digest(system, times, severity, body, attributes, trace_id, span_id, event_name)
    seen = occurrences[content] = occurrences.get(content, -1) + 1
    failed = severity[0] >= SEVERITY_ERROR
    keys, _route = ctx.keys.extract(system, attrs, url_path(attrs), body if isinstance(body, dict) else None)
    return row(
        ctx,
        f"log:{content}" + (f"#{seen}" if seen else ""),
        LOG,
        system,
        event_name or str(attributes.get("event.name") or "log"),
        (time_ns, 0),
        failed,
        (http_status(attrs), str(body)[:MAX_MESSAGE] if failed and body is not None else None),
        (trace_id, span_id, None),
        keys,
        attrs,
    )
