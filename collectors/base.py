"""What every parser returns, and the checks they share (timestamps, sizes, natural ids).

A parser is pure: bytes in, ``Parsed`` out. It builds the store's rows directly (``row``), not
``Observation`` objects: this runs for every span and line, and a frozen dataclass plus its
datetimes cost as much as the rest of the parse. Items it cannot use become ``Rejection``s with a
reason and a position, which the driver hands to the store's quarantine with the source name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from collectors.keys import Key, KeyExtractor
from syncwatch.model import EPOCH, ObservationKind, Outcome, from_ns
from syncwatch.store import QuarantineItem
from syncwatch.store.writes import DriverForm, Row, json_text

# Earlier than this is a clock that was never set (or a value in the wrong unit), not an event.
MIN_TIME_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
DEFAULT_MAX_SKEW_NS = 3600 * 10**9
DEFAULT_MAX_ATTRIBUTE_BYTES = 256 * 1024
SPAN, LOG, EVENT = ObservationKind.SPAN.value, ObservationKind.LOG.value, ObservationKind.EVENT.value
_OK, _ERROR = Outcome.OK.value, Outcome.ERROR.value


@dataclass(frozen=True, slots=True)
class Rejection:
    """One item a parser could not turn into an observation."""

    reason: str
    raw: bytes
    position: str | None = None


@dataclass(slots=True)
class Parsed:
    """A parser's answer: the observations (as store rows), and what it rejected with reasons."""

    rows: list[Row] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def extend(self, other: Parsed) -> None:
        self.rows.extend(other.rows)
        self.rejections.extend(other.rejections)

    def quarantine_items(self, source: str, content_type: str | None = None) -> list[QuarantineItem]:
        return [QuarantineItem(source, r.reason, r.raw, r.position, content_type) for r in self.rejections]


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a parser needs besides the bytes: no clock reads and no config lookups inside."""

    source: str
    keys: KeyExtractor
    now_ns: int
    form: DriverForm
    max_skew_ns: int = DEFAULT_MAX_SKEW_NS
    max_attribute_bytes: int = DEFAULT_MAX_ATTRIBUTE_BYTES
    ordered_line_ids: bool = True  # False where the database already holds lines under hashed ids


class ItemError(ValueError):
    """Raised inside a parser for one item; caught there and turned into a Rejection."""


def media_type(content_type: str | None) -> str:
    """``application/json`` of ``Application/JSON; charset=utf-8``; empty when none was sent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def now_ns() -> int:
    return int(datetime.now(UTC).timestamp() * 10**9)


def row(
    ctx: ParseContext,
    natural_id: str,
    kind: str,
    system: str,
    operation: str,
    times: tuple[int, int],
    failed: bool,
    status: tuple[int | None, str | None],
    ids: tuple[str | None, str | None, str | None],
    keys: tuple[Key, ...],
    attributes: dict[str, Any],
    payload: bytes | None = None,
) -> Row:
    """One observation as the store's Row: ``times`` are (start, end) ns, end 0 when instantaneous;
    ``status`` is (HTTP status, error message), ``ids`` (trace, span, parent)."""
    time = ctx.form.ns
    return (
        natural_id,
        kind,
        system,
        operation,
        time(times[0]),
        time(times[1]) if times[1] else None,
        _ERROR if failed else _OK,
        status[0],
        status[1],
        ids[0],
        ids[1],
        ids[2],
        ctx.source,
        json_text(keys),
        json_text(attributes),
        payload,
        tuple([(key_type, value) for key_type, value, identity in keys if identity]),
    )


def to_ns(value: datetime) -> int:
    return int((value - EPOCH) / timedelta(microseconds=1)) * 1000


def check_time(ctx: ParseContext, ns: int, what: str) -> int:
    """The far-future rule: up to ``max_skew_ns`` ahead is clock skew (accepted, flagged by
    ``skew_seconds``); beyond it, and anything zero, negative or before 2000, is rejected."""
    if ns <= 0:
        raise ItemError(f"{what} is zero or negative ({ns})")
    if ns < MIN_TIME_NS:
        raise ItemError(f"{what} {from_ns(ns).isoformat()} is before 2000-01-01")
    if ns > ctx.now_ns + ctx.max_skew_ns:
        ahead_h = (ns - ctx.now_ns) / 3.6e12
        raise ItemError(
            f"{what} is {ahead_h:,.1f} h in the future, beyond the allowed clock skew of {ctx.max_skew_ns / 3.6e12:g} h"
        )
    return ns


def skew_seconds(ctx: ParseContext, ns: int) -> float | None:
    """Seconds ahead of the receiver's clock (within the allowed skew), else None."""
    return round((ns - ctx.now_ns) / 1e9, 3) if ns > ctx.now_ns else None


_SCALARS = (int, float, bool, type(None))


def check_attribute_sizes(ctx: ParseContext, attributes: dict[str, Any]) -> None:
    limit = ctx.max_attribute_bytes
    for name, value in attributes.items():
        kind = type(value)
        if kind is str or kind is bytes:  # exact types first: this runs for every attribute of every item
            if len(value) > limit:
                raise ItemError(f"attribute '{name}' is {len(value):,} bytes, over the limit of {limit:,}")
        elif kind in _SCALARS:
            continue
        elif isinstance(value, str | bytes) and len(value) > limit:
            raise ItemError(f"attribute '{name}' is {len(value):,} bytes, over the limit of {limit:,}")
        elif isinstance(value, list | dict) and len(compact_json(value)) > limit:
            raise ItemError(f"attribute '{name}' is over the limit of {limit:,} bytes")


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str, ensure_ascii=False)


def digest(*parts: Any) -> str:
    """A short stable hash of ``parts`` for natural ids of items that carry no id of their own."""
    return hashlib.blake2b(compact_json(parts).encode(), digest_size=16).hexdigest()


def raw_json(value: Any) -> bytes:
    """An item's bytes for quarantine when the parser only has the decoded value."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "replace")
    except (TypeError, ValueError):
        return repr(value).encode("utf-8", "replace")
