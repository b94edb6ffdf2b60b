"""Virtual time: integer microseconds since the epoch, and its text forms."""

from __future__ import annotations

import time
from datetime import UTC, datetime

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
"""A Monday: a fixed start keeps output identical for a given seed whatever the wall clock."""


def to_us(moment: datetime) -> int:
    return int(moment.timestamp()) * SECOND + moment.microsecond


def iso(us: int) -> str:
    """RFC 3339 in UTC with milliseconds, as the events and ground truth write time."""
    seconds, rest = divmod(us, SECOND)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{rest // 1000:03d}Z"
