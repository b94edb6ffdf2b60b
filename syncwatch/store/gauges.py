"""The figures `serve`'s /metrics reads from the database at each scrape: what waits for
correlation, open exceptions and transactions by their state, alerts the webhook has not taken,
when each system was last heard from (and whether it went quiet), and which partners' circuits
hold the automatic retries.

Each is one grouped count over an indexed column, so a scrape every few seconds costs the database
little even with a long history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from syncwatch.store.actions import circuits_open
from syncwatch.store.alerts import MAX_ATTEMPTS
from syncwatch.store.correlation import Backlog, correlation_backlog
from syncwatch.store.filters import ACTIVE_EXCEPTION
from syncwatch.store.quiet import last_seen, quiet_systems
from syncwatch.store.schema import alerts, exceptions, transactions


@dataclass(frozen=True, slots=True)
class ServiceGauges:
    backlog: Backlog
    exceptions: dict[tuple[str, str], int]  # (category, status) → unfinished exceptions
    transactions: dict[tuple[str, str], int]  # (type, SLA state) → open transactions
    alerts_waiting: int  # not accepted by the webhook yet, still being tried
    alerts_given_up: int  # tried the most times allowed
    last_seen: dict[str, datetime]  # system → its latest observation
    quiet: frozenset[str]  # systems that stopped sending (see ``quiet``)
    circuits: dict[str, tuple[bool, datetime]]  # partner → its circuit is open, and since when it is as it is


def service_gauges(conn: Connection, now: datetime) -> ServiceGauges:
    e, t, a = exceptions.c, transactions.c, alerts.c
    unfinished = conn.execute(
        select(e.category, e.status, func.count()).where(e.status.in_(ACTIVE_EXCEPTION)).group_by(e.category, e.status)
    ).all()
    open_transactions = conn.execute(
        select(t.type, t.sla_state, func.count()).where(t.status == "open").group_by(t.type, t.sla_state)
    ).all()
    given_up = a.attempts >= MAX_ATTEMPTS
    undelivered = conn.execute(
        select(func.count().filter(~given_up), func.count().filter(given_up)).where(a.sent_at.is_(None))
    ).one()
    seen = last_seen(conn, now)
    return ServiceGauges(
        correlation_backlog(conn),
        {(category, status): n for category, status, n in unfinished},
        {(kind, state): n for kind, state, n in open_transactions},
        int(undelivered[0] or 0),
        int(undelivered[1] or 0),
        seen,
        frozenset(q.system for q in quiet_systems(conn, now, seen)),
        circuits_open(conn, now),
    )
