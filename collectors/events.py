"""CloudEvents 1.0 into observations: structured, batch and binary HTTP content modes, and JSONL
files of structured events.

An event's natural id is its source plus its id, as the CloudEvents spec defines uniqueness, so a
partner re-sending a notice stores once and is counted as a duplicate.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from collectors.base import (
    EVENT,
    ItemError,
    ParseContext,
    Parsed,
    Rejection,
    check_attribute_sizes,
    check_time,
    digest,
    media_type,
    raw_json,
    row,
    skew_seconds,
    to_ns,
)
from collectors.errors import MalformedInput, UnsupportedContentType
from collectors.otlp_json import documents, load
from syncwatch.store.writes import Row

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
REQUIRED = ("id", "source", "specversion", "type")
CONTEXT = {"id", "source", "specversion", "type", "time", "subject", "datacontenttype", "dataschema"}
FAILED_TYPES = ("failed", "rejected", "error", "dead_lettered", "deadlettered")
MAX_NATURAL_ID = 255
REASON_FIELDS = ("reason", "error", "error_message", "errorMessage", "message", "failure_reason", "description")
MAX_REASON = 1_000
HEX = "0123456789abcdef"
ZERO_TRACE = "0" * 32


def system_of(source: str) -> str:
    """The system an event came from: a bare name as is, else the URI's host or first segment."""
    parts = urlsplit(source)
    if parts.netloc:
        return parts.hostname or parts.netloc
    segment = next((s for s in parts.path.split("/") if s), "")
    return segment if parts.scheme == "" and segment else source


def event_time_ns(value: Any, ctx: ParseContext) -> int:
    """RFC 3339 ``time``; absent means now (the spec makes it optional)."""
    return ctx.now_ns if value is None else rfc3339_ns(value)


def rfc3339_ns(value: Any) -> int:
    """An RFC 3339 time in ns since the epoch; ItemError saying what is wrong with it otherwise."""
    if not isinstance(value, str):
        raise ItemError(f"time must be an RFC 3339 string, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ItemError(f"time {value!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None or "T" not in value.upper() or value.count(":") < 2:
        raise ItemError(f"time {value!r} is not an RFC 3339 timestamp (needs seconds and an offset)")
    return to_ns(moment.astimezone(UTC))


def check_required(event: Mapping[str, Any]) -> None:
    missing = [name for name in REQUIRED if event.get(name) in (None, "")]
    if missing:
        raise ItemError(f"CloudEvent is missing required attribute(s) {', '.join(missing)} (non-empty strings)")
    not_text = [f"{name} ({json.dumps(event[name])})" for name in REQUIRED if not isinstance(event[name], str)]
    if not_text:
        raise ItemError(f"CloudEvent attribute(s) {', '.join(not_text)} must be strings")
    if "data" in event and "data_base64" in event:
        raise ItemError("CloudEvent carries both data and data_base64; the spec allows one of them")
    if event["specversion"] != "1.0":
        raise ItemError(f"specversion {event['specversion']!r} is not supported (only '1.0')")


def _data(event: Mapping[str, Any]) -> tuple[Any, bytes | None]:
    """(data as a value for key pointers, data as bytes for the payload)."""
    if "data_base64" in event:
        try:
            raw = base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ItemError("data_base64 is not valid base64") from None
        return _json_or_none(raw, event.get("datacontenttype")), raw
    if "data" not in event:
        return None, None
    data = event["data"]
    return data, data.encode() if isinstance(data, str) else json.dumps(data, separators=(",", ":")).encode()


def _json_or_none(raw: bytes, content_type: Any) -> Any:
    if not isinstance(content_type, str) or "json" not in content_type:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or a number too long to convert
        return None


def observation(event: Mapping[str, Any], ctx: ParseContext) -> Row:
    """One structured event (a JSON object) as an observation row."""
    check_required(event)
    time_ns = check_time(ctx, event_time_ns(event.get("time"), ctx), "event time")
    data, payload = _data(event)
    attrs = {f"cloudevents.{k}": v for k, v in event.items() if k not in ("data", "data_base64")}
    check_attribute_sizes(ctx, attrs)
    skew = skew_seconds(ctx, time_ns)
    if skew is not None:
        attrs["syncwatch.clock_skew_s"] = skew
    source, event_type = event["source"], event["type"]
    system = system_of(source)
    plain = {k: v for k, v in event.items() if k not in CONTEXT and k not in ("data", "data_base64")}
    keys, _route = ctx.keys.extract(system, {**plain, "subject": event.get("subject")}, None, data, event_type)
    failed = event_type.rsplit(".", 1)[-1].lower() in FAILED_TYPES
    return row(
        ctx,
        event_natural_id(source, event["id"]),
        EVENT,
        system,
        event_type,
        (time_ns, 0),
        failed,
        (None, _failure_reason(data, event_type) if failed else None),
        (_trace_id(event.get("traceparent")), None, None),
        keys,
        attrs,
        payload,
    )


def event_natural_id(source: str, event_id: str) -> str:
    """CloudEvents are unique by (source, id). ``event:SOURCE:ID`` splits at its last colon, so it
    names one pair while the id has no colon; an id with one (``1:2`` from ``urn:erp`` against ``2``
    from ``urn:erp:1``) gets a form that says where the source ends, which no other form can take."""
    natural_id = f"event:{source}:{event_id}" if ":" not in event_id else f"event~{len(source)}:{source}:{event_id}"
    return natural_id if len(natural_id) <= MAX_NATURAL_ID else f"event:{digest(source, event_id)}"


def _failure_reason(data: Any, event_type: str) -> str:
    """What a failure event says went wrong, where its data says it (a dead letter's reason),
    else its type: the exception's title quotes it."""
    if isinstance(data, dict):
        for name in REASON_FIELDS:
            if isinstance(data.get(name), str) and data[name].strip():
                return str(data[name])[:MAX_REASON]
    return event_type


def _trace_id(traceparent: Any) -> str | None:
    """The trace id of a W3C ``traceparent`` (the CloudEvents distributed-tracing extension); a
    malformed one links nothing (the event is kept, its attributes still show it)."""
    if isinstance(traceparent, str) and len(traceparent) >= 55 and traceparent[2] == "-":
        trace = traceparent[3:35].lower()
        if trace.strip(HEX) == "" and trace != ZERO_TRACE:
            return trace
    return None


def parse_events(events: list[Any], ctx: ParseContext, position: str = "event") -> Parsed:
    parsed = Parsed()
    for i, event in enumerate(events):
        try:
            if not isinstance(event, dict):
                raise ItemError(f"a CloudEvent must be a JSON object, got {type(event).__name__}")
            parsed.rows.append(observation(event, ctx))
        except ItemError as err:
            parsed.rejections.append(Rejection(str(err), raw_json(event), f"{position} {i}"))
    return parsed


def parse_structured(body: bytes, ctx: ParseContext) -> Parsed:
    document = load(body)
    if not isinstance(document, dict):
        raise MalformedInput("a structured CloudEvent body must be one JSON object")
    return parse_events([document], ctx)


def parse_batch(body: bytes, ctx: ParseContext) -> Parsed:
    document = load(body)
    if not isinstance(document, list):
        raise MalformedInput("a CloudEvents batch body must be a JSON array")
    return parse_events(document, ctx)


def parse_binary(body: bytes, headers: Mapping[str, str], content_type: str | None, ctx: ParseContext) -> Parsed:
    """Binary mode: attributes in ``ce-*`` headers (percent-encoded), the body is the data."""
    event: dict[str, Any] = {k[3:]: unquote(v) for k, v in headers.items() if k.lower().startswith("ce-")}
    if content_type:
        event["datacontenttype"] = content_type
    if body:
        event["data_base64"] = base64.b64encode(body).decode()
    parsed = Parsed()
    try:
        parsed.rows.append(observation(event, ctx))
    except ItemError as err:
        parsed.rejections.append(Rejection(str(err), body, "event 0"))
    return parsed


def parse_http(body: bytes, headers: Mapping[str, str], ctx: ParseContext) -> Parsed:
    """Pick the content mode from the request: ce-specversion header, or the media type."""
    content_type = media_type(headers.get("content-type"))
    if "ce-specversion" in headers:
        return parse_binary(body, headers, content_type or None, ctx)
    if content_type in (STRUCTURED, "application/json"):
        return parse_structured(body, ctx)
    if content_type == BATCH:
        return parse_batch(body, ctx)
    raise UnsupportedContentType(
        f"content type {content_type or '(none)'!r} is not a CloudEvents mode; send {STRUCTURED}, {BATCH}, "
        "or binary mode with ce-* headers"
    )


def parse_file(data: bytes, ctx: ParseContext, base_offset: int = 0) -> Parsed:
    """JSON lines of structured events (or one batch array per line)."""
    parsed = Parsed()
    for offset, chunk, found in documents(data):
        position = f"offset {base_offset + offset}"
        if isinstance(found, MalformedInput):
            parsed.rejections.append(Rejection(str(found), chunk, position))
            continue
        items = [e for document in found for e in (document if isinstance(document, list) else [document])]
        parsed.extend(parse_events(items, ctx, f"{position} event"))
    return parsed
