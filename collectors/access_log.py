"""API access logs into observations: nginx/Apache combined (optionally with request time) and
JSON-lines gateway logs read through a field map (Kong, Envoy, Caddy, AWS API Gateway, or custom).

A line's natural id is its source, the file's identity, the line's offset and its content, so the
same line read twice dedupes while two identical lines at different offsets stay two lines. The id
sorts by file and offset (``line/FILE/OFFSET/CONTENT``): a file's new lines append to the unique
index, where hashed ids landed on random pages and made each commit rewrite most of the index.
Databases that stored lines under the earlier hashed ids (``line:HASH``) keep them (see
``ParseContext.ordered_line_ids``), so a file read again there still dedupes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from collectors.base import LOG, ItemError, ParseContext, Parsed, Rejection, check_time, row, skew_seconds, to_ns
from collectors.routes import generic_route
from syncwatch.model import as_utc
from syncwatch.store.writes import Row

COMBINED = "combined"
JSON_ACCESS = "json_access"
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # a quoted field, escapes allowed: runs of plain characters, not one at a time
_COMBINED = re.compile(
    r"^(?:(?P<vhost>\S+) (?=\S+ \S+ \S+ \[))?(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    rf"{_Q.replace('(', '(?P<request>', 1)} (?P<status>\d{{3}}) (?P<size>\d+|-)"
    rf"(?: {_Q.replace('(', '(?P<referer>', 1)} {_Q.replace('(', '(?P<agent>', 1)})?"
    r"(?: (?P<rt>\d+(?:\.\d+)?|-))?(?P<rest> .*)?$"
)
_NAMED_REQUEST_TIME = re.compile(r" (?:rt|request_time)=(\d+(?:\.\d+)?)(?: |$)")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: i + 1 for i, name in enumerate(_MONTH_NAMES)}
_UNITS = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Where a JSON gateway line keeps each field: dotted paths, first present wins. ``time_is``
    says whether the time is when the request began (Kong's started_at, Envoy's START_TIME, API
    Gateway's requestTime) or when it ended and was logged (Caddy's ts, nginx's $time_local)."""

    time: tuple[str, ...]
    method: tuple[str, ...]
    path: tuple[str, ...]
    status: tuple[str, ...]
    duration: tuple[str, ...] = ()
    duration_unit: str = "ms"
    time_is: str = "end"
    system: tuple[str, ...] = ()
    client: tuple[str, ...] = ()
    user_agent: tuple[str, ...] = ()
    request_id: tuple[str, ...] = ()


FIELD_MAPS = {
    "kong": FieldMap(
        time=("started_at",),
        method=("request.method",),
        path=("request.uri", "request.url"),
        status=("response.status",),
        duration=("latencies.request",),
        time_is="start",
        system=("service.name", "route.name"),
        client=("client_ip",),
        user_agent=("request.headers.user-agent",),
        request_id=("request.id", "request.headers.x-request-id"),
    ),
    "envoy": FieldMap(
        time=("start_time", "timestamp"),
        method=("method", "request_method"),
        path=("path", "x-envoy-original-path", "request_path"),
        status=("response_code", "status"),
        duration=("duration",),
        time_is="start",
        system=("upstream_cluster", "route_name"),
        client=("downstream_remote_address", "client_ip"),
        user_agent=("user_agent", "user-agent"),
        request_id=("request_id", "x-request-id"),
    ),
    "caddy": FieldMap(
        time=("ts",),
        method=("request.method",),
        path=("request.uri",),
        status=("status",),
        duration=("duration",),
        duration_unit="s",
        system=("request.host",),
        client=("request.client_ip", "request.remote_ip"),
        user_agent=("request.headers.User-Agent",),
    ),
    "aws_apigw": FieldMap(
        time=("requestTimeEpoch", "requestTime"),
        method=("httpMethod",),
        path=("path", "resourcePath"),
        status=("status",),
        duration=("responseLatency", "integrationLatency"),
        time_is="start",
        system=("apiId", "domainName"),
        client=("ip", "sourceIp"),
        user_agent=("userAgent",),
        request_id=("requestId",),
    ),
}


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How to read one file's lines: ``kind`` is combined or json_access."""

    kind: str = COMBINED
    system: str = "gateway"
    fields: FieldMap = FIELD_MAPS["kong"]
    request_time_unit: str = "s"
    system_from_host: bool = False
    time_is: str = "end"  # combined lines: nginx logs when a request ended, Apache when it arrived


@dataclass(slots=True)
class _Request:
    """One request as read from a line, before it becomes an observation."""

    end_ns: int
    method: str
    target: str
    status: int
    duration_ns: int | None
    system: str
    attributes: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=4096)
def clf_time_ns(value: str) -> int:
    """``25/Oct/2016:14:49:33 +0200`` without strptime (which costs more than the rest of a line);
    cached because a busy log repeats each second on many lines (errors are raised, never cached)."""
    try:
        day, month, rest = value.split("/", 2)
        year, hh, mm, ss_zone = rest.split(":", 3)
        ss, zone = ss_zone.split(" ")
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
        fields = int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss)
    except (ValueError, KeyError, IndexError):
        raise ItemError(f"time {value!r} is not in the dd/Mon/yyyy:HH:MM:SS +zzzz form") from None
    if abs(offset) >= timedelta(hours=24):
        raise ItemError(f"time {value!r} is no real time: zone {zone} is 24 hours or more from UTC")
    try:
        moment = datetime(*fields, tzinfo=timezone(offset))
    except ValueError as err:  # 31/Feb, 25:00: the form is right, the time is not
        raise ItemError(f"time {value!r} is no real time: {err}") from None
    return to_ns(moment)


def line_ids(ctx: ParseContext, identity: str) -> Callable[[int, bytes], str]:
    """The natural id of each line (offset, bytes) of one file, the file part hashed once."""
    source = ctx.source
    if not ctx.ordered_line_ids:

        def hashed(offset: int, line: bytes) -> str:
            head = f"{source}\0{identity}\0{offset}\0".encode()
            return "line:" + hashlib.blake2b(head + line, digest_size=16).hexdigest()

        return hashed
    file = "line/" + hashlib.blake2b(f"{source}\0{identity}".encode(), digest_size=8).hexdigest()
    return lambda offset, line: f"{file}/{offset:012x}/{hashlib.blake2b(line, digest_size=8).hexdigest()}"


def parse_combined(text: str, fmt: LineFormat) -> _Request:
    match = _COMBINED.match(text)
    if match is None:
        raise ItemError("line is not in the combined log format")
    parts = match["request"].split(" ")
    if len(parts) < 2:
        raise ItemError(f"request {match['request']!r} is not 'METHOD TARGET PROTOCOL'")
    rt = match["rt"]
    if rt is None and match["rest"]:  # nginx's timed formats put it after the agent as rt=0.250
        named = _NAMED_REQUEST_TIME.search(match["rest"])
        rt = named[1] if named else None
    duration = int(float(rt) * _UNITS[fmt.request_time_unit]) if rt and rt != "-" else None
    vhost = match["vhost"]
    attributes = {"client.address": match["client"], "user_agent.original": match["agent"]}
    if match["size"] != "-":
        attributes["http.response.body.size"] = int(match["size"])
    if match["referer"] not in (None, "-"):
        attributes["http.request.header.referer"] = match["referer"]
    if vhost:
        attributes["server.address"] = vhost
    system = vhost if fmt.system_from_host and vhost else fmt.system
    end_ns = clf_time_ns(match["time"])
    if fmt.time_is == "start" and duration:
        end_ns += duration
    return _Request(end_ns, parts[0], parts[1], int(match["status"]), duration, system, attributes)


def _lookup(document: dict[str, Any], paths: tuple[str, ...]) -> Any:
    for path in paths:
        node: Any = document
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and node != "":
            return node[0] if isinstance(node, list) and node else node
    return None


def json_time_ns(value: Any) -> int:
    """Epoch numbers in s, ms, µs or ns (told apart by size), ISO 8601 text, or CLF text. ISO text
    without an offset is UTC, as an epoch number is: never the time zone of the machine reading it."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        for limit, unit in ((1e11, 1e9), (1e14, 1e6), (1e17, 1e3)):
            if abs(value) < limit:
                return int(value * unit)
        return int(value)
    if isinstance(value, str):
        if value.replace(".", "", 1).isdigit():
            return json_time_ns(float(value))
        try:
            return to_ns(as_utc(datetime.fromisoformat(value.replace("Z", "+00:00"))))
        except ValueError:
            pass
        try:
            return clf_time_ns(value)
        except ItemError:
            pass
    raise ItemError(
        f"time {value!r} is neither an epoch number, an ISO 8601 date nor a dd/Mon/yyyy:HH:MM:SS +zzzz time"
    )


def parse_json_access(text: str, fmt: LineFormat) -> _Request:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ItemError(f"line is not valid JSON: {err.msg} at column {err.colno}") from None
    except (ValueError, RecursionError):
        raise ItemError("line is not usable JSON: nested too deeply, or a number of more than 4,300 digits") from None
    if not isinstance(document, dict):
        raise ItemError("line is not a JSON object")
    fields = fmt.fields
    values = {name: _lookup(document, getattr(fields, name)) for name in ("time", "method", "path", "status")}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        looked = " or ".join(getattr(fields, missing[0]))
        raise ItemError(f"line has no {', '.join(missing)} (the field map looks for {missing[0]} in {looked})")
    status = str(values["status"])
    if not status.isdigit():
        raise ItemError(f"status {values['status']!r} is not a number")
    duration = _lookup(document, fields.duration)
    duration_ns = _duration_ns(duration, fields.duration_unit)
    system = _lookup(document, fields.system)
    attributes = {
        "client.address": _lookup(document, fields.client),
        "user_agent.original": _lookup(document, fields.user_agent),
        "http.request.id": _lookup(document, fields.request_id),
    }
    attributes = {k: v for k, v in attributes.items() if v is not None}
    system_name = str(system) if system else fmt.system
    end_ns = json_time_ns(values["time"])
    if fields.time_is == "start" and duration_ns:
        end_ns += duration_ns
    method, path = str(values["method"]), str(values["path"])
    return _Request(end_ns, method, path, int(status), duration_ns, system_name, attributes)


def _duration_ns(value: Any, unit: str) -> int | None:
    try:
        return None if value is None else int(float(value) * _UNITS[unit])
    except (TypeError, ValueError):
        raise ItemError(f"duration {value!r} is not a number") from None


_READERS: dict[str, Callable[[str, LineFormat], _Request]] = {COMBINED: parse_combined, JSON_ACCESS: parse_json_access}


def split_lines(data: bytes, base_offset: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line without its newline) for each complete line of ``data``."""
    offset = base_offset
    for line in data.splitlines(keepends=True):
        yield offset, line.rstrip(b"\r\n")
        offset += len(line)


def parse_lines(data: bytes, ctx: ParseContext, fmt: LineFormat, base_offset: int = 0, identity: str = "") -> Parsed:
    """Every complete line of ``data`` (which starts at ``base_offset`` in the file)."""
    parsed = Parsed()
    reader = _READERS[fmt.kind]
    natural_id = line_ids(ctx, identity)
    for offset, line in split_lines(data, base_offset):
        if not line.strip():
            continue
        try:
            request = _checked(reader(_decode_line(line), fmt))
            parsed.rows.append(_row(ctx, request, natural_id(offset, line)))
        except ItemError as err:
            parsed.rejections.append(Rejection(str(err), line, f"offset {offset}"))
    return parsed


def _decode_line(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ItemError(f"line is not valid UTF-8 (byte {err.start}: {err.reason})") from None


def _checked(request: _Request) -> _Request:
    """The rules OTLP spans obey too: a real HTTP status, and no end before the start."""
    if not 100 <= request.status <= 599:
        raise ItemError(f"status {request.status} is not an HTTP status (100-599)")
    if request.duration_ns is not None and request.duration_ns < 0:
        raise ItemError(f"duration is negative ({request.duration_ns / 1e9:g} s)")
    return request


def _row(ctx: ParseContext, request: _Request, natural_id: str) -> Row:
    end_ns = check_time(ctx, request.end_ns, "request time")
    start_ns = end_ns - request.duration_ns if request.duration_ns else end_ns
    path = request.target.split("?", 1)[0]
    attrs = {
        **request.attributes,
        "http.request.method": request.method,
        "url.path": path,
        "http.response.status_code": request.status,
    }
    if request.target != path:
        attrs["url.query"] = request.target.split("?", 1)[1]
    skew = skew_seconds(ctx, end_ns)
    if skew is not None:
        attrs["syncwatch.clock_skew_s"] = skew
    keys, route = ctx.keys.extract(request.system, attrs, path)
    failed = request.status >= 400
    return row(
        ctx,
        natural_id,
        LOG,
        request.system,
        f"{request.method} {route or generic_route(path)}",
        (start_ns, end_ns),
        failed,
        (request.status, f"HTTP {request.status}" if failed else None),
        (None, None, None),
        keys,
        attrs,
    )
