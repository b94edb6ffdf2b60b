"""Named reads and writes of the alert outbox: raised in a correlator pass, delivered after it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, select, update

from syncwatch.store.bulk import chunks
from syncwatch.store.schema import alerts

a = alerts.c
# When each delivery is due, after the alert was raised: a webhook down for a few minutes, or for
# the night, still gets every alert; after the last, the Admin page and /metrics say it was given up.
DELIVERY_AFTER = tuple(timedelta(minutes=m) for m in (0, 0.5, 2, 5, 15, 30, 60, 120, 240, 480))
MAX_ATTEMPTS = len(DELIVERY_AFTER)


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


def due(conn: Connection, now: datetime, limit: int = 100) -> list[Any]:
    """Undelivered alerts whose next delivery is due by ``now``, oldest first."""
    stmt = select(a.id, a.kind, a.text, a.link, a.attempts, a.created_at).where(
        and_(a.sent_at.is_(None), a.attempts < MAX_ATTEMPTS)
    )
    rows = [row for row in conn.execute(stmt.order_by(a.id)) if next_delivery(row.created_at, row.attempts) <= now]
    return rows[:limit]


def next_delivery(created_at: datetime, attempts: int) -> datetime:
    """When an undelivered alert's next delivery is due (``attempts`` below MAX_ATTEMPTS)."""
    created = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    return created + DELIVERY_AFTER[attempts]


def record_attempt(conn: Connection, alert_id: int, sent_at: datetime | None, error: str | None) -> None:
    stmt = update(alerts).where(a.id == alert_id).values(attempts=a.attempts + 1, sent_at=sent_at, last_error=error)
    conn.execute(stmt)
