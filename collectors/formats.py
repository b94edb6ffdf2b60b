"""File formats by name: how to parse a chunk of a file, where a chunk may safely end, and how
to recognise a format from a file's first bytes (for `syncwatch ingest` without --format)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from collectors import access_log, events, otlp_json
from collectors.access_log import FIELD_MAPS, FieldMap, LineFormat
from collectors.base import ParseContext, Parsed
from syncwatch.config import ConfigError
from syncwatch.config.schema import ConfigFile, Tailer

OTLP_JSON = "otlp_json"
CLOUDEVENTS = "cloudevents"
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which some Windows tools put before the first line
FORMATS = (access_log.COMBINED, access_log.JSON_ACCESS, OTLP_JSON, CLOUDEVENTS)
# (chunk, context, offset of the chunk in the file, file identity) → parsed
ChunkParser = Callable[[bytes, ParseContext, int, str], Parsed]


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file to read: where, in which format, stored under which source name."""

    path: str
    format: str
    source: str
    line_format: LineFormat = field(default_factory=LineFormat)

    def parser(self) -> ChunkParser:
        if self.format in (access_log.COMBINED, access_log.JSON_ACCESS):
            fmt = self.line_format
            return lambda data, ctx, offset, identity: access_log.parse_lines(data, ctx, fmt, offset, identity)
        if self.format == OTLP_JSON:
            return lambda data, ctx, offset, _identity: otlp_json.parse_file(data, ctx, offset)
        return lambda data, ctx, offset, _identity: events.parse_file(data, ctx, offset)

    def parse(self, data: bytes, offset: int, identity: str, ctx: ParseContext) -> Parsed:
        """One chunk of the file, the context last, as a parse worker calls it."""
        return self.parser()(data, ctx, offset, identity)

    @property
    def documents(self) -> bool:
        """JSON document formats may span lines (pretty-printed); line formats never do."""
        return self.format in (OTLP_JSON, CLOUDEVENTS)


def field_map(name: str, file: ConfigFile) -> FieldMap:
    custom = file.field_maps.get(name)
    if custom is not None:
        return FieldMap(**{k: tuple(v) if isinstance(v, list) else v for k, v in custom.model_dump().items()})
    if name in FIELD_MAPS:
        return FIELD_MAPS[name]
    raise ConfigError(f"field map {name!r} is neither built in ({', '.join(FIELD_MAPS)}) nor in [field_maps]")


def spec_from_tailer(tailer: Tailer, file: ConfigFile) -> FileSpec:
    line_format = LineFormat(
        kind=tailer.format if tailer.format in (access_log.COMBINED, access_log.JSON_ACCESS) else access_log.COMBINED,
        system=tailer.system,
        fields=field_map(tailer.field_map, file) if tailer.format == access_log.JSON_ACCESS else FIELD_MAPS["kong"],
        request_time_unit=tailer.request_time_unit,
        system_from_host=tailer.system_from_host,
        time_is=tailer.time_is,
    )
    return FileSpec(tailer.path, tailer.format, tailer.source or tailer.path, line_format)


def safe_end(data: bytes, documents: bool, eof: bool) -> int:
    """How much of ``data`` forms complete items: whole lines, or whole documents for JSON files.
    A JSON line is complete with its newline; a pretty-printed document once a line at the margin
    closes it. Printed without indentation, its inner lines start at the margin too; it is complete
    once the next document begins (valid JSON never puts a line starting with ``{`` or ``[`` right
    after one ending with ``}`` or ``]`` inside a document, since elements are separated by commas),
    or once what follows the last such boundary parses whole."""
    if eof:
        return len(data)
    end = data.rfind(b"\n") + 1
    if not documents or end == 0:
        return end
    last_line_start = data.rfind(b"\n", 0, end - 1) + 1
    last_line = data[last_line_start : end - 1].rstrip(b" \t\r")
    if last_line[:1] in (b"{", b"[") and last_line[-1:] in (b"}", b"]"):
        return end  # a JSON line
    line_before = data.rfind(b"\n", 0, max(0, last_line_start - 1)) + 1
    if last_line in (b"}", b"]") and data[line_before : line_before + 1].isspace():
        return end  # the end of an indented document
    boundary = _last_boundary(data, end)
    if last_line in (b"}", b"]") and _parses(data[boundary:end]):
        return end  # the end of a document printed without indentation: the last in the file so far
    return boundary


def _last_boundary(data: bytes, end: int) -> int:
    """Where the last document that follows a complete one begins, or 0."""
    at = end
    while (at := max(data.rfind(b"\n{", 0, at), data.rfind(b"\n[", 0, at))) > 0:
        before = at - 1
        while before >= 0 and data[before] in b" \t\r":
            before -= 1
        if before >= 0 and data[before] in b"}]":
            return at + 1
    return 0


def _parses(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def detect(head: bytes) -> str:
    """The format of a file from its first bytes."""
    text = head.removeprefix(BOM).lstrip()
    if not text.startswith((b"{", b"[")):
        return access_log.COMBINED
    first_line = text.split(b"\n", 1)[0]
    if b'"resourceSpans"' in head or b'"resourceLogs"' in head:
        return OTLP_JSON
    if b'"specversion"' in head:
        return CLOUDEVENTS
    try:
        json.loads(first_line)
    except (ValueError, RecursionError):
        return OTLP_JSON
    return access_log.JSON_ACCESS
