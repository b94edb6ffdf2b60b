"""What a file would give, with no database: observations, the identity keys found (and those no
process follows), the endpoints whose observations link to nothing, and what would be rejected and why.

For onboarding a partner (`syncwatch ingest --dry-run sample.log`): an observation with neither
an identity key nor a trace that carries one is a member of no transaction, so an endpoint listed
there needs a key rule before its traffic can tell anyone about an order.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors import webhook
from collectors.base import ParseContext, Parsed, Rejection, now_ns
from collectors.errors import CollectorError
from collectors.formats import FileSpec
from collectors.keys import KeyExtractor
from collectors.sink import collector_limits
from collectors.tailer import first_line_identity, parsed_chunks
from syncwatch.config import Config
from syncwatch.redact import clip, mask_emails, mask_phones
from syncwatch.store.writes import COLUMNS, IDENTITY, driver_form

_SYSTEM, _OPERATION, _TRACE = COLUMNS.index("system"), COLUMNS.index("operation"), COLUMNS.index("trace_id")
_KEYS = COLUMNS.index("extracted_keys")
REASON_CHARS = 200  # a reason may quote the input; a summary line gets its start


@dataclass
class Preview:
    format: str
    observations: int = 0
    repeated: int = 0  # natural ids met again inside the file: stored once
    keys: Counter[str] = field(default_factory=Counter)  # observations carrying each identity key type
    unfollowed: set[str] = field(default_factory=set)  # of those, types no process links transactions by
    off_shape: Counter[str] = field(default_factory=Counter)  # identity values not of their type's pattern
    off_shape_example: dict[str, str] = field(default_factory=dict)  # key type: its first such value
    linked: int = 0  # observations with an identity key, or in a trace where one has
    unlinked: Counter[str] = field(default_factory=Counter)  # "system operation" of the others
    rejected: Counter[str] = field(default_factory=Counter)  # reason: items
    first_at: dict[str, str] = field(default_factory=dict)  # reason: where it first occurred

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "observations": self.observations,
            "repeated": self.repeated,
            "identity_keys": dict(self.keys.most_common()),
            "unfollowed_keys": sorted(self.unfollowed),
            "off_shape_keys": {
                t: {"values": n, "example": self.off_shape_example[t]} for t, n in self.off_shape.items()
            },
            "linked": self.linked,
            "unlinked": dict(self.unlinked.most_common()),
            "rejected": [
                {"reason": reason, "items": n, "first_at": self.first_at[reason]}
                for reason, n in self.rejected.most_common()
            ],
        }


def context_for(config: Config) -> Callable[[str], ParseContext]:
    """Parse contexts as `serve` makes them, for a database that does not exist."""
    keys = KeyExtractor.from_config(config.file)
    max_skew_ns, max_attribute = collector_limits(config)
    form = driver_form("sqlite")
    return lambda source: ParseContext(source, keys, now_ns(), form, max_skew_ns, max_attribute)


def preview_file(spec: FileSpec, config: Config) -> Preview:
    """Parse all of ``spec``'s file as an import would, keeping counts instead of rows."""
    with open(spec.path, "rb") as handle:
        start = (0, f"{first_line_identity(handle) or ''}:0")
        return _counted(spec.format, parsed_chunks(handle, spec, context_for(config), start, True), config)


def preview_webhook(path: str, name: str, headers: Mapping[str, str], config: Config) -> Preview:
    """Parse a partner's sample body as ``POST /v1/webhooks/NAME`` with ``headers`` would."""
    ctx = context_for(config)(f"webhook/{name}")
    body = Path(path).read_bytes()
    try:
        parsed = webhook.parse(body, headers, config.file.webhooks[name], name, ctx)
    except CollectorError as err:
        parsed = Parsed(rejections=[Rejection(str(err), body, "the whole file")])
    return _counted(f"webhook {name}", [(parsed, len(body))], config)


def _counted(label: str, chunks: Iterable[tuple[Parsed, Any]], config: Config) -> Preview:
    preview, seen = Preview(label), set()
    followed = {key for process in config.file.processes.values() for key in (*process.starts_with, *process.keys)}
    shaped = {name for name, kt in config.file.key_types.items() if kt.identity and kt.pattern}
    keyed_traces: set[str] = set()
    keyless: list[tuple[str | None, str]] = []  # (trace, "system operation") of observations without a key
    for parsed, _end in chunks:
        for row in parsed.rows:
            if row[0] in seen:
                preview.repeated += 1
                continue
            seen.add(row[0])
            preview.observations += 1
            identity, trace = row[IDENTITY], row[_TRACE]
            found = {key_type for key_type, _ in identity}
            if shaped:
                _count_off_shape(preview, row[_KEYS], shaped)
            preview.keys.update(found)
            preview.unfollowed |= found - followed
            if found & followed:
                preview.linked += 1
                if trace:
                    keyed_traces.add(trace)
            else:
                keyless.append((trace, mask_emails(f"{row[_SYSTEM]} {row[_OPERATION]}")))
        for rejection in parsed.rejections:
            reason = clip(mask_phones(mask_emails(rejection.reason)), REASON_CHARS)
            preview.rejected[reason] += 1
            preview.first_at.setdefault(reason, rejection.position or "the whole file")
    for trace, endpoint in keyless:
        if trace in keyed_traces:
            preview.linked += 1
        else:
            preview.unlinked[endpoint] += 1
    return preview


def _count_off_shape(preview: Preview, keys_json: str, shaped: set[str]) -> None:
    """Values of identity key types with a pattern that the extractor kept as descriptive: not of that shape."""
    for key_type, value, identity in json.loads(keys_json):
        if key_type in shaped and not identity:
            preview.off_shape[key_type] += 1
            preview.off_shape_example.setdefault(key_type, clip(mask_phones(mask_emails(value)), REASON_CHARS))
