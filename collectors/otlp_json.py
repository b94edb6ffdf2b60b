"""OTLP JSON (the OTLP/HTTP JSON encoding and the Collector's file exporter) walked directly.

protobuf's ``json_format`` reads bytes fields as base64, but OTLP JSON carries ids as hex, so a
generic parser silently produces 24-byte trace ids; walking the documents by hand is also
faster. int64 fields may be numbers or decimal strings, enums numbers or names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collectors.base import ItemError, ParseContext, Parsed, Rejection, raw_json
from collectors.errors import MalformedInput
from collectors.otlp_model import log_record, span, system_of
from syncwatch.store.writes import Row

_HEX = re.compile(r"^[0-9a-fA-F]*$")
_INT = re.compile(r"^-?\d{1,20}$")  # an int64 in decimal; longer is no OTLP integer (nor cheap to convert)
# Python refuses to convert an integer of more digits (a guard against slow conversions): told, not a crash.
TOO_LONG = "it holds a number of more than 4,300 digits"
_STARTS = re.compile(rb"\n(?=[{\[])")
_SCALARS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "stringValue": (str, "a string"),
    "boolValue": (bool, "a boolean"),
}


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def load(body: bytes) -> Any:
    """The body as JSON, or MalformedInput naming what is wrong with it."""
    try:
        return json.loads(body)
    except UnicodeDecodeError as err:
        raise MalformedInput(f"body is not valid UTF-8 (byte {err.start}: {err.reason})") from None
    except json.JSONDecodeError as err:
        raise MalformedInput(f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise MalformedInput("body is not usable JSON: nested too deeply") from None
    except ValueError:
        raise MalformedInput(f"body is not usable JSON: {TOO_LONG}") from None


def integer(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT.match(value):
        return int(value)
    if value is None:
        return 0
    raise ItemError(f"{what} must be an integer or a decimal string, got {_show(value)}")


def enum(value: Any, names: Any, what: str) -> int:
    if isinstance(value, str) and not _INT.match(value):
        try:
            return int(names.Value(value))
        except ValueError:
            raise ItemError(f"{what} {_show(value)} is not a known enum name") from None
    return integer(value, what)


def hex_id(value: Any, size: int, what: str, *, optional: bool = False) -> str | None:
    if optional and (value is None or value == ""):
        return None
    if value is None:
        raise ItemError(f"{what} is missing ({size * 2} hex characters, not all zero)")
    if not isinstance(value, str) or len(value) != size * 2 or not _HEX.match(value) or not value.strip("0"):
        raise ItemError(f"{what} must be {size * 2} hex characters and not all zero, got {_show(value)}")
    return value.lower()


def text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ItemError(f"{what} must be a string, got {_show(value)}")
    return value


def any_value(value: Any) -> Any:
    if type(value) is dict and len(value) == 1:  # most attributes are one well-typed string
        inner = value.get("stringValue")
        if type(inner) is str:
            return inner
    if not isinstance(value, dict):
        raise ItemError(f"an attribute value must be an AnyValue object, got {_show(value)}")
    if not value:
        return None
    kind, inner = next(iter(value.items()))
    if kind in _SCALARS:
        expected, label = _SCALARS[kind]
        if not isinstance(inner, expected):
            raise ItemError(f"{kind} must be {label}, got {_show(inner)}")
        return inner
    return _complex_value(kind, inner)


def _complex_value(kind: str, inner: Any) -> Any:
    if kind == "intValue":
        return integer(inner, "intValue")
    if kind == "doubleValue":
        if isinstance(inner, bool) or not isinstance(inner, int | float | str):
            raise ItemError(f"doubleValue must be a number, got {_show(inner)}")
        try:
            return float(inner)
        except ValueError:
            raise ItemError(f"doubleValue must be a number, got {_show(inner)}") from None
    if kind == "bytesValue":
        return text(inner, "bytesValue")
    if kind == "arrayValue":
        return [any_value(v) for v in _list(_dict(inner, "arrayValue").get("values"), "arrayValue.values")]
    if kind == "kvlistValue":
        return attributes(_dict(inner, "kvlistValue").get("values"))
    raise ItemError(f"unknown AnyValue field {_show(kind)}")


def attributes(value: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kv in _list(value, "attributes"):
        kv = _dict(kv, "attribute")
        result[text(kv.get("key"), "attribute key")] = any_value(kv.get("value", {}))
    return result


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ItemError(f"{what} must be an object, got {_show(value)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ItemError(f"{what} must be an array, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _containers(document: Any, top: str, scope_key: str, items_key: str) -> Iterator[tuple[str, dict, list, str]]:
    """(system, resource attributes, items, position prefix) for each scope; bad containers raise."""
    if not isinstance(document, dict):
        raise MalformedInput(f"an OTLP JSON document must be an object, got {_show(document)}")
    try:
        for r, resource_block in enumerate(_list(document.get(top), top)):
            resource_block = _dict(resource_block, top)
            resource = attributes(_dict(resource_block.get("resource") or {}, "resource").get("attributes"))
            system = system_of(resource)
            for s, scope_block in enumerate(_list(resource_block.get(scope_key), scope_key)):
                yield system, resource, _list(_dict(scope_block, scope_key).get(items_key), items_key), f"{r}.{s}"
    except ItemError as err:
        raise MalformedInput(f"{top}: {err}") from None


_SIGNALS = {"resourceSpans": "traces", "resourceLogs": "logs", "resourceMetrics": "metrics"}


def _walk(document: Any, top: str, scope_key: str, items_key: str, build: Callable[..., Row], label: str) -> Parsed:
    if isinstance(document, dict) and document and top not in document:
        _wrong_document(document, top)
    parsed = Parsed()
    occurrences: dict[str, int] = {}
    for system, resource, items, where in _containers(document, top, scope_key, items_key):
        for i, item in enumerate(items):
            try:
                parsed.rows.append(build(system, resource, _dict(item, label), occurrences))
            except ItemError as err:
                parsed.rejections.append(Rejection(str(err), raw_json(item), f"{label} {where}.{i}"))
    return parsed


def _wrong_document(document: dict[str, Any], top: str) -> None:
    """Refuse a document without ``top`` that is not empty: another signal's export, sent to this
    endpoint, was answered 200 and vanished (an empty ``{}`` is a valid export of nothing)."""
    other = next((key for key in document if key in _SIGNALS), None)
    if other == "resourceMetrics":
        raise MalformedInput(
            "an OTLP metrics document (resourceMetrics): metrics are not collected, only traces and logs"
        )
    if other is not None:
        raise MalformedInput(f"an OTLP {_SIGNALS[other]} document ({other}): send it to /v1/{_SIGNALS[other]}")
    keys = ", ".join(sorted(map(str, document))[:5])
    raise MalformedInput(f"no {top} in the document (it holds {keys}): not an OTLP {_SIGNALS[top]} export")


def traces_document(document: Any, ctx: ParseContext) -> Parsed:
    def build(system: str, resource: dict[str, Any], item: dict[str, Any], _occ: dict[str, int]) -> Row:
        return _span(ctx, system, resource, item)

    return _walk(document, "resourceSpans", "scopeSpans", "spans", build, "span")


def _span(ctx: ParseContext, system: str, resource: dict[str, Any], item: dict[str, Any]) -> Row:
    ids = (
        hex_id(item.get("traceId"), 16, "traceId"),
        hex_id(item.get("spanId"), 8, "spanId"),
        hex_id(item.get("parentSpanId"), 8, "parentSpanId", optional=True),
    )
    status = _dict(item.get("status") or {}, "status")
    code = enum(status.get("code", 0), Status.StatusCode, "status.code")
    message = text(status.get("message"), "status.message") or _exception_message(item.get("events"))
    times = (
        integer(item.get("startTimeUnixNano"), "startTimeUnixNano"),
        integer(item.get("endTimeUnixNano"), "endTimeUnixNano"),
    )
    kind = enum(item.get("kind", 0), Span.SpanKind, "kind")
    name = text(item.get("name"), "name")
    return span(ctx, system, resource, ids, name, kind, times, attributes(item.get("attributes")), (code, message))  # type: ignore[arg-type]


def _exception_message(events: Any) -> str:
    for event in _list(events, "events"):
        if isinstance(event, dict) and event.get("name") == "exception":
            message = attributes(event.get("attributes")).get("exception.message")
            if isinstance(message, str):
                return message
    return ""


def logs_document(document: Any, ctx: ParseContext) -> Parsed:
    def build(system: str, resource: dict[str, Any], item: dict[str, Any], occ: dict[str, int]) -> Row:
        return _log(ctx, system, resource, item, occ)

    return _walk(document, "resourceLogs", "scopeLogs", "logRecords", build, "log")


def _log(
    ctx: ParseContext, system: str, resource: dict[str, Any], item: dict[str, Any], occurrences: dict[str, int]
) -> Row:
    ids = (
        hex_id(item.get("traceId"), 16, "traceId", optional=True),
        hex_id(item.get("spanId"), 8, "spanId", optional=True),
        text(item.get("eventName"), "eventName"),
    )
    times = (
        integer(item.get("timeUnixNano"), "timeUnixNano"),
        integer(item.get("observedTimeUnixNano"), "observedTimeUnixNano"),
    )
    severity = (
        enum(item.get("severityNumber", 0), SeverityNumber, "severityNumber"),
        text(item.get("severityText"), "severityText"),
    )
    body = any_value(item["body"]) if "body" in item else None
    attrs = attributes(item.get("attributes"))
    return log_record(ctx, system, resource, times, severity, body, attrs, ids, occurrences)


def parse_traces(body: bytes, ctx: ParseContext) -> Parsed:
    return traces_document(load(body), ctx)


def parse_logs(body: bytes, ctx: ParseContext) -> Parsed:
    return logs_document(load(body), ctx)


def parse_document(document: Any, ctx: ParseContext) -> Parsed:
    """A file's document: traces or logs, told apart by the top-level key."""
    if isinstance(document, dict) and "resourceSpans" in document:
        return traces_document(document, ctx)
    if isinstance(document, dict) and "resourceLogs" in document:
        return logs_document(document, ctx)
    if isinstance(document, dict) and "resourceMetrics" in document:
        raise MalformedInput("OTLP metrics are not collected (only traces and logs)")
    raise MalformedInput("not an OTLP JSON document: expected a resourceSpans or resourceLogs key")


def documents(data: bytes) -> Iterator[tuple[int, bytes, list[Any] | MalformedInput]]:
    """(byte offset, bytes, its documents or what is wrong with them) of each stretch of a file:
    JSON lines, pretty-printed documents one after another, several written back to back. A
    stretch starts at a line beginning with ``{`` or ``[``, so a broken line costs only itself, not
    the rest of the file. A document printed without indentation, whose inner lines start so too,
    is read across them; when it is broken, it is refused whole, not line by line."""
    starts = [0, *(match.start() + 1 for match in _STARTS.finditer(data))]
    stretches = list(zip(starts, [start - 1 for start in starts[1:]] + [len(data)], strict=True))
    text, index = _Text(data), 0
    while index < len(stretches):
        begin, end = stretches[index]
        index += 1
        if not data[begin:end].strip():
            continue
        found = _decoded(data[begin:end])
        if isinstance(found, MalformedInput) and end < len(data) and _unclosed(data[begin:end]):
            stop, across = text.document_at(begin)
            if isinstance(across, list):
                found, end = across, stop
                while index < len(stretches) and stretches[index][0] < stop:
                    index += 1
                rest = stretches[index][0] - 1 if index < len(stretches) else len(data)
                if data[stop:rest].strip():  # the next document begins on the line this one ends: }{
                    stretches.insert(index, (stop, rest))
            else:  # a broken document: its fragments up to where reading it failed, while none is whole
                while index < len(stretches) and stretches[index][0] < stop:
                    if isinstance(_decoded(data[slice(*stretches[index])]), list):
                        break
                    found, end = across, stretches[index][1]
                    index += 1
        yield begin, data[begin:end], found


def _decoded(chunk: bytes) -> list[Any] | MalformedInput:
    try:
        return _decode_chunk(chunk)
    except MalformedInput as err:
        return err


def _decode_chunk(chunk: bytes) -> list[Any]:
    """The documents in one chunk (usually one; several when written back to back on one line)."""
    try:
        return [load(chunk)]
    except MalformedInput:
        text_data = chunk.decode("utf-8", "strict") if _is_utf8(chunk) else None
        if text_data is None:
            raise
    found, pos, decoder = [], 0, json.JSONDecoder()
    while pos < len(text_data):
        try:
            document, pos = decoder.raw_decode(text_data, pos)
        except json.JSONDecodeError as err:
            raise MalformedInput(f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
        except ValueError:
            raise MalformedInput(f"not usable JSON: {TOO_LONG}") from None
        found.append(document)
        while pos < len(text_data) and text_data[pos].isspace():
            pos += 1
    return found


def _is_utf8(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unclosed(chunk: bytes) -> bool:
    """Whether a stretch opens more objects and arrays than it closes: a document's first lines."""
    return chunk.count(b"{") + chunk.count(b"[") > chunk.count(b"}") + chunk.count(b"]")


class _Text:
    """A file's text, decoded once and only when a document must be read across line starts."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._text: str | None = None
        self._mark = (0, 0)  # a (byte, character) offset pair; documents are looked up in file order

    def document_at(self, begin: int) -> tuple[int, list[Any] | MalformedInput]:
        """The one JSON document starting at byte ``begin``, and the byte offset just past it; or
        what is wrong with it, and the offset where reading it failed."""
        if self._text is None:
            self._text = self._data.decode("utf-8", "surrogateescape")
        text = self._text
        byte, char = self._mark if begin >= self._mark[0] else (0, 0)
        char += len(self._data[byte:begin].decode("utf-8", "surrogateescape"))
        self._mark = (begin, char)
        try:
            document, end = json.JSONDecoder().raw_decode(text, char)
        except json.JSONDecodeError as err:
            line = text.count("\n", char, err.pos) + 1
            column = err.pos - max(text.rfind("\n", char, err.pos), char - 1)
            failed = MalformedInput(f"not valid JSON: {err.msg} at line {line} column {column}")
            return begin + len(text[char : err.pos].encode("utf-8", "surrogateescape")), failed
        except RecursionError:
            return begin + 1, MalformedInput("not usable JSON: nested too deeply")
        except ValueError:
            return begin + 1, MalformedInput(f"not usable JSON: {TOO_LONG}")
        stop = begin + len(text[char:end].encode("utf-8", "surrogateescape"))
        if not _is_utf8(self._data[begin:stop]):
            return stop, MalformedInput("not valid UTF-8")
        return stop, [document]


def parse_file(data: bytes, ctx: ParseContext, base_offset: int = 0) -> Parsed:
    """Every document of an OTLP JSON file; bad documents and items become rejections."""
    parsed = Parsed()
    for offset, chunk, found in documents(data):
        position = f"offset {base_offset + offset}"
        if isinstance(found, MalformedInput):
            parsed.rejections.append(Rejection(str(found), chunk, position))
            continue
        for document in found:
            try:
                parsed.extend(_positioned(parse_document(document, ctx), position))
            except MalformedInput as err:
                parsed.rejections.append(Rejection(str(err), chunk, position))
    return parsed


def _positioned(parsed: Parsed, position: str) -> Parsed:
    parsed.rejections = [Rejection(r.reason, r.raw, f"{position} {r.position}") for r in parsed.rejections]
    return parsed
