"""Writes that collectors make: observations (deduplicated), quarantine and checkpoints.

Bulk writes are executemany (``conn.execute(insert(t), rows)``), never one giant VALUES list.
Deduplication is the database's job: ``ON CONFLICT (natural_id) DO NOTHING`` holds across
processes, and re-deliveries bump the ``duplicates`` counter instead of storing twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Insert, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from syncwatch.model import Observation, utcnow
from syncwatch.store.bulk import chunks, db_json, db_time, insert_many
from syncwatch.store.schema import business_keys, checkpoints, observations, quarantine


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one batch did: how many were new and how many were re-deliveries."""

    stored: int = 0
    duplicates: int = 0

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(self.stored + other.stored, self.duplicates + other.duplicates)


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    """Rejected input: its source, where in the source, why, and the raw bytes."""

    source: str
    reason: str
    raw: bytes
    position: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    source: str
    position: int
    state: dict[str, Any] = field(default_factory=dict)


def upsert_insert(conn: Connection, table: Table) -> Insert:
    """The dialect's INSERT that supports ON CONFLICT (both engines we run on do)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def write_observations(conn: Connection, batch: Sequence[Observation]) -> WriteResult:
    """Store each observation once; count the ones already stored (or repeated in the batch)."""
    first_by_id: dict[str, Observation] = {}
    repeats: Counter[str] = Counter()
    for obs in batch:
        if obs.natural_id in first_by_id:
            repeats[obs.natural_id] += 1
        else:
            first_by_id[obs.natural_id] = obs
    for natural_id in _stored_ids(conn, list(first_by_id)):
        repeats[natural_id] += 1
        del first_by_id[natural_id]
    if first_by_id:
        received_at = utcnow()
        rows = [_observation_row(conn.dialect, obs, received_at) for obs in first_by_id.values()]
        # On SQLite the write lock is held, so nothing can conflict; on PostgreSQL a concurrent
        # writer may have stored the same observation since the check above.
        insert_many(conn, observations, rows, ignore_conflicts_on=("natural_id",))
        _write_identity_keys(conn, first_by_id)
    _count_duplicates(conn, repeats)
    return WriteResult(stored=len(first_by_id), duplicates=sum(repeats.values()))


def _stored_ids(conn: Connection, natural_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(natural_ids):
        found.update(
            conn.execute(select(observations.c.natural_id).where(observations.c.natural_id.in_(chunk))).scalars()
        )
    return found


def _row_ids(conn: Connection, natural_ids: list[str]) -> dict[str, int]:
    stmt = select(observations.c.natural_id, observations.c.id)
    ids: dict[str, int] = {}
    for chunk in chunks(natural_ids):
        ids.update((nid, row_id) for nid, row_id in conn.execute(stmt.where(observations.c.natural_id.in_(chunk))))
    return ids


def _observation_row(dialect: Dialect, obs: Observation, received_at: datetime) -> dict[str, Any]:
    return {
        "natural_id": obs.natural_id,
        "kind": obs.kind.value,
        "system": obs.system,
        "operation": obs.operation,
        "start_time": db_time(dialect, obs.start),
        "end_time": db_time(dialect, obs.end),
        "outcome": obs.outcome.value,
        "status_code": obs.status_code,
        "error_message": obs.error_message,
        "trace_id": obs.trace_id,
        "span_id": obs.span_id,
        "parent_id": obs.parent_id,
        "source": obs.source,
        "extracted_keys": db_json(dialect, [[k.type, k.value, k.identity] for k in obs.keys]),
        "attributes": db_json(dialect, obs.attributes),
        "payload": obs.payload,
        "received_at": db_time(dialect, received_at),
    }


def _write_identity_keys(conn: Connection, new: dict[str, Observation]) -> None:
    with_keys = [nid for nid, obs in new.items() if any(k.identity for k in obs.keys)]
    ids = _row_ids(conn, with_keys)
    rows = [
        {"value": value, "key_type": key_type, "observation_id": ids[nid]}
        for nid in with_keys
        for key_type, value in {(k.type, k.value) for k in new[nid].keys if k.identity}
    ]
    insert_many(conn, business_keys, rows, ignore_conflicts_on=("value", "key_type", "observation_id"))


def _count_duplicates(conn: Connection, repeats: Counter[str]) -> None:
    if not repeats:
        return
    stmt = (
        update(observations)
        .where(observations.c.natural_id == bindparam("nid"))
        .values(duplicates=observations.c.duplicates + bindparam("n"))
    )
    conn.execute(stmt, [{"nid": nid, "n": n} for nid, n in repeats.items()])


def write_quarantine(conn: Connection, items: Iterable[QuarantineItem], raw_limit: int) -> int:
    now = utcnow()
    rows = [
        {
            "received_at": now,
            "source": item.source,
            "position": item.position,
            "reason": item.reason,
            "content_type": item.content_type,
            "raw": item.raw[:raw_limit],
            "raw_size": len(item.raw),
        }
        for item in items
    ]
    if rows:
        conn.execute(quarantine.insert(), rows)
    return len(rows)


def read_checkpoint(conn: Connection, source: str) -> Checkpoint | None:
    row = conn.execute(
        select(checkpoints.c.position, checkpoints.c.state).where(checkpoints.c.source == source)
    ).first()
    return None if row is None else Checkpoint(source, row.position, row.state or {})


def save_checkpoint(conn: Connection, checkpoint: Checkpoint) -> None:
    values = {"position": checkpoint.position, "state": checkpoint.state, "updated_at": utcnow()}
    stmt = upsert_insert(conn, checkpoints).values(source=checkpoint.source, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["source"], set_=values))
