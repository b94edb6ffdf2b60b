"""Claims, outcomes and the audit trail: every action is claimed in the database before anything
is sent, under an idempotency key derived from the exception, so a double click, a second agent
or a restart after a crash finds the claim and never sends a second create."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from actions.errors import InProgress
from syncwatch.store import actions as q


@dataclass(frozen=True)
class Claim:
    """The claimed action: its row id and the idempotency key the partner sees."""

    action_id: str
    key: str
    attempts: int
    earlier: dict[str, Any] | None = None


@dataclass
class Entry:
    """An audit entry in the making; written once, never changed."""

    actor: str
    role: str
    action: str
    target: str | None
    request_summary: str
    result: str = "allowed"
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self, at: datetime) -> dict[str, Any]:
        return {
            "at": at,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "request_summary": self.request_summary,
            "result": self.result,
            "detail": self.detail,
        }


def idempotency_key(exception_id: str, kind: str, generation: int) -> str:
    """Stable per exception and try: the same try always sends the same key."""
    return f"{exception_id}.{kind}.{generation}"


def claim(
    conn: Connection,
    exception: dict[str, Any],
    kind: str,
    actor: str,
    request: dict[str, Any],
    now: datetime,
    lease: timedelta,
    job_id: str | None = None,
) -> Claim | dict[str, Any]:
    """Claim the action, or return the earlier action that makes this one unnecessary.

    A running claim within its lease means someone else is at it (InProgress); a failed try whose
    outcome is unknown (a timeout, a crash) is taken over with the same key; a definite failure
    lets a new try start with a new key; a success stands unless a new failure came after it.
    """
    history = q.actions_of(conn, exception["id"], kind)
    latest = history[0] if history else None
    values = {"status": "running", "actor": actor, "lease_until": now + lease, "request": request, "job_id": job_id}
    if latest is not None:
        reused = _reuse(conn, latest, exception, now, values)
        if reused is not None:
            return reused
    action_id = f"act-{uuid.uuid4().hex[:20]}"
    key = idempotency_key(exception["id"], kind, len(history))
    row = {
        **values,
        "id": action_id,
        "exception_id": exception["id"],
        "kind": kind,
        "idempotency_key": key,
        "attempts": 1,
        "outcome": {},
        "requested_at": now,
    }
    if not q.insert_action(conn, row):
        raise InProgress(f"another {kind} of this exception started just now; it runs once")
    return Claim(action_id, key, 1, latest)


def _reuse(
    conn: Connection, latest: dict[str, Any], exception: dict[str, Any], now: datetime, values: dict[str, Any]
) -> Claim | dict[str, Any] | None:
    status, outcome = latest["status"], latest["outcome"] or {}
    if status == "running":
        if latest["lease_until"] is not None and latest["lease_until"] > now:
            raise InProgress(
                f"a {latest['kind']} by {latest['actor']} is running since {latest['requested_at']:%H:%M:%S} UTC"
            )
        return _take_over(conn, latest, "running", now, values)
    if status == "failed" and not outcome.get("definitive", True):
        return _take_over(conn, latest, "failed", now, values)
    if status == "succeeded" and latest["finished_at"] and exception["last_seen_at"] <= latest["finished_at"]:
        return latest
    return None


def _take_over(conn: Connection, latest: dict[str, Any], status: str, now: datetime, values: dict[str, Any]) -> Claim:
    if not q.take_over_action(conn, latest["id"], status, now, values):
        raise InProgress(f"another {latest['kind']} of this exception took it over just now; it runs once")
    return Claim(latest["id"], latest["idempotency_key"], latest["attempts"] + 1, latest)


def finish(conn: Connection, claim: Claim, succeeded: bool, outcome: dict[str, Any], now: datetime) -> None:
    status = "succeeded" if succeeded else "failed"
    q.update_action(
        conn, claim.action_id, {"status": status, "outcome": outcome, "finished_at": now, "lease_until": None}
    )


def record_done(
    conn: Connection,
    exception_id: str,
    kind: str,
    actor: str,
    request: dict[str, Any],
    outcome: dict[str, Any],
    now: datetime,
) -> str:
    """An action with no partner call (resolve, ignore, assign): recorded done in one step."""
    generation = len(q.actions_of(conn, exception_id, kind))
    action_id = f"act-{uuid.uuid4().hex[:20]}"
    row = {
        "id": action_id,
        "exception_id": exception_id,
        "kind": kind,
        "actor": actor,
        "status": "succeeded",
        "idempotency_key": idempotency_key(exception_id, kind, generation),
        "attempts": 1,
        "request": request,
        "outcome": outcome,
        "requested_at": now,
        "finished_at": now,
    }
    if not q.insert_action(conn, row):
        raise InProgress(f"another {kind} of this exception was recorded just now")
    return action_id


def audit(conn: Connection, entry: Entry, now: datetime) -> int:
    return q.append_audit(conn, entry.row(now))
