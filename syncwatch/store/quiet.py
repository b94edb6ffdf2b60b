"""Systems that went quiet: a partner that stops sending anything breaks no rule the correlator
can see, since nothing arrives to fail, so silence itself is the signal.

A system is quiet when it has sent nothing since its last observation, while in the same stretch
of time a day earlier it sent something in at least ``EXPECTED`` different minutes (and the silence
has lasted a quarter of an hour). Minutes, not observations: one order makes a burst of spans and
events in the same minute, so ten observations may be two orders, while ten busy minutes are about
ten independent arrivals. Comparing with the same hours of the day before keeps the night's lull
from looking like an outage. A system silent for more than a week is taken as retired and no
longer called quiet. Each system costs a few probes of the (system, start_time) index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select

from syncwatch.store.schema import observations

DAY = timedelta(hours=24)
EXPECTED = 12
AT_LEAST = timedelta(minutes=15)
RETIRED = timedelta(days=7)

o = observations.c


@dataclass(frozen=True, slots=True)
class QuietSystem:
    system: str
    last_seen: datetime
    expected: int  # minutes it sent something in, in the same stretch of time a day earlier

    def silent_for(self, now: datetime) -> timedelta:
        return now - self.last_seen


def last_seen(conn: Connection, now: datetime) -> dict[str, datetime]:
    """Each system's latest observation up to ``now``. Times after ``now`` (a replay, a clock
    ahead) are left out, so a past ``now`` reads the history as it was then."""
    seen = {}
    for system in distinct_systems(conn):
        last = conn.execute(
            select(func.max(o.start_time)).where(and_(o.system == system, o.start_time <= now))
        ).scalar()
        if last is not None:
            seen[system] = last
    return seen


def quiet_systems(conn: Connection, now: datetime, seen: dict[str, datetime] | None = None) -> list[QuietSystem]:
    """The systems quiet at ``now``, longest silent first (``seen``: ``last_seen`` if already read)."""
    found = []
    for system, last in (last_seen(conn, now) if seen is None else seen).items():
        if not AT_LEAST <= now - last <= RETIRED:
            continue
        yesterday = and_(o.system == system, o.start_time > last - DAY, o.start_time <= now - DAY)
        minutes = select(_minute(conn, o.start_time).label("minute")).where(yesterday).distinct().subquery()
        expected = conn.execute(select(func.count()).select_from(minutes)).scalar_one()
        if expected >= EXPECTED:
            found.append(QuietSystem(system, last, expected))
    return sorted(found, key=lambda q: q.last_seen)


def _minute(conn: Connection, column: Any) -> Any:
    if conn.dialect.name == "sqlite":
        return func.substr(column, 1, 16)
    return func.date_trunc("minute", column)


def distinct_systems(conn: Connection) -> list[str]:
    """Distinct systems by skipping along the (system, start_time) index: a few seeks, no scan."""
    found: list[str] = []
    current = conn.execute(select(func.min(o.system))).scalar()
    while current is not None:
        found.append(current)
        current = conn.execute(select(func.min(o.system)).where(o.system > current)).scalar()
    return found
