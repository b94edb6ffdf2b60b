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
    """How much of ``data`` forms complete items: whole lines, or whole documents for JSON files
    (a pretty-printed document is complete once a line starting with ``}`` or ``]`` ends it)."""
    if eof:
        return len(data)
    end = data.rfind(b"\n") + 1
    if not documents or end == 0:
        return end
    last_line_start = data.rfind(b"\n", 0, end - 1) + 1
    if data[last_line_start : last_line_start + 1] in (b"{", b"}", b"[", b"]"):
        return end
    return data.rfind(b"\n{", 0, end) + 1


def detect(head: bytes) -> str:
    """The format of a file from its first bytes."""
    text = head.lstrip()
    if not text.startswith((b"{", b"[")):
        return access_log.COMBINED
    first_line = text.split(b"\n", 1)[0]
    if b'"resourceSpans"' in head or b'"resourceLogs"' in head:
        return OTLP_JSON
    if b'"specversion"' in head:
        return CLOUDEVENTS
    try:
        json.loads(first_line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return OTLP_JSON
    return access_log.JSON_ACCESS
