"""Named reads and writes of the alert outbox: raised in a correlator pass, delivered after it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from syncwatch.model import as_utc
from syncwatch.store.bulk import chunks
from syncwatch.store.schema import alerts, exceptions

a = alerts.c
# How long after a failed delivery the next is tried: a webhook down for a few minutes, or for the
# night, still gets every alert; after the last, the Admin page and /metrics say it was given up.
RETRY_WAITS = tuple(timedelta(minutes=m) for m in (0.5, 2, 5, 10, 15, 30, 60, 120, 240))
MAX_ATTEMPTS = len(RETRY_WAITS) + 1


def keys_raised_since(conn: Connection, keys: Iterable[str], since: datetime | None) -> set[str]:
    """Which of ``keys`` already have an alert (created at or after ``since``, when given)."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(keys))):
        condition = a.dedupe_key.in_(chunk)
        if since is not None:
            condition = and_(condition, a.created_at >= since)
        found.update(conn.execute(select(a.dedupe_key).where(condition)).scalars())
    return found


def enqueue(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(alerts.insert(), rows)


DUE_LIMIT = 5_000  # alerts read for one round of delivery


def due(conn: Connection, now: datetime, limit: int = 100) -> list[Any]:
    """Undelivered alerts whose next delivery is due by ``now``, oldest first: chosen by the database,
    so thousands waiting out a webhook's outage are not read at every round."""
    waited = [and_(a.attempts == n, a.last_attempt_at <= now - wait) for n, wait in enumerate(RETRY_WAITS, 1)]
    stmt = select(a.id, a.dedupe_key, a.kind, a.text, a.link, a.attempts, a.last_attempt_at, a.created_at).where(
        and_(a.sent_at.is_(None), a.attempts < MAX_ATTEMPTS, or_(a.attempts == 0, a.last_attempt_at.is_(None), *waited))
    )
    return list(conn.execute(stmt.order_by(a.id).limit(limit)))


def next_delivery(last_attempt_at: datetime | None, attempts: int) -> datetime:
    """When an undelivered alert's next delivery is due: at once before the first, then the wait
    for its number of failures after the last (``attempts`` below MAX_ATTEMPTS)."""
    if not attempts or last_attempt_at is None:
        return datetime.min.replace(tzinfo=UTC)
    return as_utc(last_attempt_at) + RETRY_WAITS[attempts - 1]


def record_attempt(conn: Connection, alert_id: int, at: datetime, sent: bool, error: str | None) -> None:
    values = {"attempts": a.attempts + 1, "last_attempt_at": at, "sent_at": at if sent else None, "last_error": error}
    conn.execute(update(alerts).where(a.id == alert_id).values(**values))


def given_up(conn: Connection) -> int:
    """Alerts the webhook never took, after every attempt."""
    stmt = select(func.count()).where(and_(a.sent_at.is_(None), a.attempts >= MAX_ATTEMPTS))
    return int(conn.execute(stmt).scalar_one())


def deliver_again(conn: Connection) -> int:
    """Give the alerts given up on a new round of deliveries (once the webhook works again)."""
    stmt = update(alerts).where(and_(a.sent_at.is_(None), a.attempts >= MAX_ATTEMPTS)).values(attempts=0)
    return int(conn.execute(stmt).rowcount)


def open_failures(
    conn: Connection, endpoints: list[tuple[str, str]], categories: Iterable[str], since: datetime
) -> dict[tuple[str, str], int]:
    """Open exceptions of ``categories`` seen since ``since``, per (system, endpoint) of ``endpoints``."""
    if not endpoints:
        return {}
    e = exceptions.c
    stmt = (
        select(e.system, e.endpoint, func.count())
        .where(
            e.status == "open",
            e.category.in_(list(categories)),
            e.last_seen_at >= since,
            e.system.in_(sorted({system for system, _ in endpoints})),
        )
        .group_by(e.system, e.endpoint)
    )
    return {(system, endpoint): n for system, endpoint, n in conn.execute(stmt)}
