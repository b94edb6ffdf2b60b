"""Reads of the audit log that the dashboard's local sign-in consults: the guesses that failed.

Only a wrong password counts as a guess. A refusal because the name was already locked is written
to the audit log too, but does not count again: else whoever kept trying would keep the name
locked for good, and the lock would outlast the guessing it was there to slow down.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from syncwatch.store.schema import audit_log

SIGN_IN = "sign_in"  # the audit action of a dashboard sign-in, allowed or refused
PREFIX = "local sign-in: "  # how the audit log's summary of a local sign-in begins
MISMATCH = "user name and password do not match"  # why a wrong password was refused


def failed_guesses(conn: Connection, actor: str, since: datetime) -> list[str]:
    """The client of each wrong password given for ``actor`` since ``since`` ("" where none was recorded)."""
    log = audit_log.c
    stmt = select(log.detail).where(
        log.action == SIGN_IN,
        log.actor == actor,
        log.result == "refused",
        log.request_summary == PREFIX + MISMATCH,
        log.at >= since,
    )
    return [str((detail or {}).get("client", "")) for (detail,) in conn.execute(stmt)]
