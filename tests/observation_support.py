"""A span as a system would report it, for tests that write observations straight to the store."""

from __future__ import annotations

from datetime import datetime, timedelta

from syncwatch.model import BusinessKey, Observation, ObservationKind, Outcome


def span(n: int, operation: str, system: str, at: datetime, status: int = 201, **keys: str) -> Observation:
    """The ``n``-th span (its natural id), lasting 80 ms, failing when ``status`` is 4xx/5xx."""
    return Observation(
        natural_id=f"span-{n}",
        kind=ObservationKind.SPAN,
        system=system,
        operation=operation,
        start=at,
        end=at + timedelta(milliseconds=80),
        outcome=Outcome.OK if status < 400 else Outcome.ERROR,
        status_code=status,
        error_message=None if status < 400 else "upstream unavailable",
        source="test",
        keys=tuple(BusinessKey(t, v) for t, v in keys.items()),
    )
