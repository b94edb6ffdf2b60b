"""Named reads and writes of the alert outbox: raised in a correlator pass, delivered after it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, update

from syncwatch.store.bulk import chunks
from syncwatch.store.schema import alerts

a = alerts.c
MAX_ATTEMPTS = 5  # deliveries tried before an alert is given up on (the Admin page and /metrics say so)


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


def pending(conn: Connection, max_attempts: int, limit: int = 100) -> list[Any]:
    stmt = (
        select(a.id, a.text, a.link)
        .where(and_(a.sent_at.is_(None), a.attempts < max_attempts))
        .order_by(a.id)
        .limit(limit)
    )
    return list(conn.execute(stmt))


def record_attempt(conn: Connection, alert_id: int, sent_at: datetime | None, error: str | None) -> None:
    stmt = update(alerts).where(a.id == alert_id).values(attempts=a.attempts + 1, sent_at=sent_at, last_error=error)
    conn.execute(stmt)
