"""The canonical model: what every collector produces and every later stage reads.

Plain frozen dataclasses with UTC-aware datetimes, so the types carry no storage or UI concerns.
Transactions, exceptions and actions are derived rows, not types: their contract is the schema
(``syncwatch.store.schema``, documented in the README), which the correlator writes in bulk and
the dashboard and actions read as rows.
``as_utc`` is the one converter every boundary uses; naive datetimes are taken as UTC, and
``from_ns`` reads the nanoseconds since the epoch that wire formats carry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are read as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# On the client spans of syncwatch's own actions (a retry, a lookup): the partner the call went to.
PARTNER_CALLED = "syncwatch.partner"


def partner_hosts(partners: Mapping[str, Any]) -> dict[str, str]:
    """Host name → partner, from the config's ``[partners.NAME]``: the name itself, its ``hosts``, and
    the address of its ``base_url``, which a call to it shows in ``url.full`` whatever name its
    ``server.address`` gives (a config pointing at the simulator's ports names no ``hosts``). An
    address several partners share (one gateway, told apart by path) names none of them."""
    addresses = [(address_of(partner.base_url), name) for name, partner in partners.items()]
    shared = Counter(address for address, _ in addresses)
    hosts = {address: name for address, name in addresses if address and shared[address] == 1}
    return hosts | {host: name for name, partner in partners.items() for host in [name, *partner.hosts]}


def partners_of_kind(partners: Mapping[str, Any], *kinds: str) -> list[str]:
    """The names of the configured partners of ``kinds``, sorted: channels are the marketplaces,
    an order's partners the warehouses and 3PLs."""
    return sorted(name for name, partner in partners.items() if partner.kind in kinds)


def address_of(url: str) -> str | None:
    """``host:port`` where a URL names its port, else its host; None when it names no host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return f"{parts.hostname}:{port}" if port else parts.hostname


def called_system(attributes: Mapping[str, Any], hosts: Mapping[str, str]) -> str | None:
    """The system a client span called: the partner syncwatch's own calls name, else the one whose
    host it addressed (``server.address``, else ``url.full``'s address or host); None when it names none."""
    if partner := attributes.get(PARTNER_CALLED):
        return str(partner)
    url = str(attributes.get("url.full", ""))
    for host in (attributes.get("server.address"), address_of(url), urlsplit(url).hostname):
        if host and (system := hosts.get(str(host))):
            return system
    return None


def from_ns(ns: int) -> datetime:
    """Nanoseconds since the epoch as an aware UTC datetime (to the microsecond)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def stage_label(name: str | None) -> str:
    """A stage as people say it, on a page or in an alert: 'accepted by ERP', not accepted_by_erp."""
    if not name:
        return ""
    words = name.replace("_", " ")
    return " ".join(w.upper() if w in ("erp", "wms", "3pl") else w for w in words.split(" "))


def count(number: int, noun: str) -> str:
    """``1 duplicate``, ``2 duplicates``: a figure with its noun agreeing, in a summary line or on a page."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class ObservationKind(StrEnum):
    SPAN = "span"
    LOG = "log"
    EVENT = "event"


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"


class SlaState(StrEnum):
    MET = "met"
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BREACHED = "breached"


class ExceptionStatus(StrEnum):
    OPEN = "open"
    RETRYING = "retrying"
    RESOLVED = "resolved"
    IGNORED = "ignored"


class ExceptionCategory(StrEnum):
    VALIDATION = "validation"
    PARTNER_UNAVAILABLE = "partner_unavailable"
    THROTTLED = "throttled"
    TIMEOUT = "timeout"
    STUCK = "stuck"
    DUPLICATE_NOTICE = "duplicate_notice"
    DEAD_LETTERED = "dead_lettered"


class ActionKind(StrEnum):
    RETRY = "retry"
    REROUTE = "reroute"
    REPLAY = "replay"
    RESOLVE = "resolve"
    IGNORE = "ignore"
    ASSIGN = "assign"


@dataclass(frozen=True, slots=True)
class BusinessKey:
    """A typed identifier. Identity keys name one order (and link observations);
    attribute keys such as a SKU only describe and never link."""

    type: str
    value: str
    identity: bool = True


@dataclass(frozen=True, slots=True)
class Observation:
    """One thing a system reported: a span, an access-log line or a business event.

    ``natural_id`` is what deduplication keys on: trace id + span id for a span, source + id for
    an event, source + content hash for a log line.
    """

    natural_id: str
    kind: ObservationKind
    system: str
    operation: str
    start: datetime
    end: datetime | None = None
    outcome: Outcome = Outcome.OK
    status_code: int | None = None
    error_message: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_id: str | None = None
    source: str = ""
    keys: tuple[BusinessKey, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    payload: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        if self.end is not None:
            object.__setattr__(self, "end", as_utc(self.end))

    @property
    def duration(self) -> timedelta | None:
        return None if self.end is None else self.end - self.start
