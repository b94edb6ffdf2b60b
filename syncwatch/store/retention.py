"""Retention: what is older than the horizon goes, so a database does not grow without end.

Whole transactions go, never part of one: a transaction goes when nothing was seen of it since
the horizon, with its keys, exceptions and observations. Observations of no transaction (health
checks, keys no process starts with) go only before the start of the oldest transaction still
kept: re-deriving a kept transaction (a late observation, the SLA job) must still find every
member. Observations the correlator has not read yet never go. Quarantined inputs and alerts go
by their own age. The audit log and the actions it records are evidence and stay. Each batch is
its own short write transaction, so ingest waits for one batch at most.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, Table, and_, delete, func, select
from sqlalchemy.sql import ColumnElement

from syncwatch.store.bulk import IN_CHUNK, chunks
from syncwatch.store.correlation import CORRELATOR_LOCK, TRACE, trace_observation_ids
from syncwatch.store.database import Store
from syncwatch.store.locks import hold_until_commit
from syncwatch.store.schema import (
    alerts,
    business_keys,
    exceptions,
    observations,
    quarantine,
    transaction_keys,
    transactions,
)

# Each batch holds SQLite's write lock while it deletes: at about 100 µs an observation (its keys
# and index entries go with it), these keep a batch near half a second, so ingest barely waits.
ID_STEP = 5_000  # observation ids looked at per batch: the walk follows the primary key
TRANSACTIONS_PER_BATCH = 200  # with their observations, about 2,500 of them
# Stage times may be corrected for a system's clock; observations this close to the oldest kept
# transaction's start stay, whatever its members' raw start times say.
MARGIN = timedelta(days=1)


@dataclass
class Pruned:
    """What went (or would go, in a dry run) from before ``horizon``, and from when observations were kept."""

    horizon: datetime
    transactions: int = 0
    exceptions: int = 0
    observations: int = 0
    quarantine: int = 0
    alerts: int = 0
    observations_kept_from: datetime | None = None
    held_by: str | None = None  # the oldest transaction kept, when it keeps observations older than the horizon


def prune(store: Store, horizon: datetime, correlated_up_to: int, dry_run: bool = False) -> Pruned:
    """Drop transactions last seen before ``horizon`` with their observations, then the other
    observations (up to id ``correlated_up_to``) that no kept transaction can hold, then old
    quarantine and alerts."""
    pruned = Pruned(horizon)
    dropped = _drop_transactions(store, correlated_up_to, dry_run, pruned)
    cut = _observation_cut(store, horizon, dry_run, pruned)
    pruned.observations_kept_from = cut
    pruned.observations += _drop_observations(store, cut, correlated_up_to, dry_run, dropped)
    q = quarantine.c
    rejected_last = func.coalesce(q.last_received_at, q.received_at)
    pruned.quarantine = _drop(store, quarantine, rejected_last < horizon, dry_run)
    pruned.alerts = _drop(store, alerts, alerts.c.created_at < horizon, dry_run)
    return pruned


def _drop_transactions(store: Store, up_to: int, dry_run: bool, pruned: Pruned) -> set[int]:
    """Delete the transactions last seen before the horizon, a batch per write transaction, with
    their keys, exceptions and observations (those up to id ``up_to`` that no other transaction
    holds too); in a dry run, the ids of those observations. Each batch waits for the correlator's
    turn first, as transactions must not vanish under a pass, and checks their age again: one seen
    meanwhile stays."""
    t = transactions.c
    gone = t.last_seen_at < pruned.horizon
    with store.engine.connect() as conn:
        ids = list(conn.execute(select(t.id).where(gone)).scalars())
    dropped: set[int] = set()
    for chunk in chunks(ids, TRANSACTIONS_PER_BATCH):
        with store.engine.connect() if dry_run else store.writing() as conn:
            if not dry_run:
                hold_until_commit(conn, CORRELATOR_LOCK)
            still = list(conn.execute(select(t.id).where(t.id.in_(chunk), gone)).scalars())
            members = _members(conn, still, up_to) - dropped  # a member of two (a refused link) counts once
            members -= _held(conn, members, pruned.horizon)
            pruned.exceptions += _count(conn, select(exceptions.c.id).where(exceptions.c.transaction_id.in_(still)))
            if not dry_run:
                conn.execute(delete(transactions).where(t.id.in_(still)))
                for part in chunks(sorted(members), IN_CHUNK):
                    conn.execute(delete(observations).where(observations.c.id.in_(part)))
        pruned.transactions += len(still)
        pruned.observations += len(members)
        if dry_run:
            dropped |= members
    return dropped


def _members(conn: Connection, ids: Sequence[str], up_to: int) -> set[int]:
    """The observations (up to id ``up_to``) carrying an identity key or trace of these transactions."""
    k, b = transaction_keys.c, business_keys.c
    of_these = k.transaction_id.in_(ids)
    by_key = select(b.observation_id).join(transaction_keys, and_(k.value == b.value, k.key_type == b.key_type))
    found = set(conn.execute(by_key.where(of_these, k.key_type != TRACE)).scalars())
    traces = list(conn.execute(select(k.value).where(of_these, k.key_type == TRACE)).scalars())
    found.update(trace_observation_ids(conn, traces))
    return {oid for oid in found if oid <= up_to}


def _held(conn: Connection, candidates: set[int], horizon: datetime) -> set[int]:
    """Those of ``candidates`` that a transaction kept (seen since ``horizon``) holds too, through
    a link the correlator refused. Asked key by key: every lookup follows an index."""
    k, b, o, t = transaction_keys.c, business_keys.c, observations.c, transactions.c
    nodes: dict[tuple[str, str], set[int]] = defaultdict(set)
    for part in chunks(sorted(candidates), IN_CHUNK):
        for oid, key_type, value in conn.execute(
            select(b.observation_id, b.key_type, b.value).where(b.observation_id.in_(part))
        ):
            nodes[(key_type, value)].add(oid)
        for oid, trace in conn.execute(select(o.id, o.trace_id).where(o.id.in_(part), o.trace_id.is_not(None))):
            nodes[(TRACE, trace)].add(oid)
    owners: dict[str, set[int]] = defaultdict(set)
    for part in chunks(sorted({value for _, value in nodes}), IN_CHUNK):
        for tid, key_type, value in conn.execute(
            select(k.transaction_id, k.key_type, k.value).where(k.value.in_(part))
        ):
            owners[tid] |= nodes.get((key_type, value), set())
    held: set[int] = set()
    for part in chunks(sorted(owners), IN_CHUNK):
        for tid in conn.execute(select(t.id).where(t.id.in_(part), t.last_seen_at >= horizon)).scalars():
            held |= owners[tid]
    return held


def _observation_cut(store: Store, horizon: datetime, dry_run: bool, pruned: Pruned) -> datetime:
    """Observations starting before this go: the horizon, or the start of the oldest transaction
    kept (less the margin), whichever is earlier; that transaction is named in ``pruned``. In a
    dry run the transactions to go are still there."""
    t = transactions.c
    kept = select(t.id, t.started_at).order_by(t.started_at, t.id).limit(1)
    if dry_run:
        kept = kept.where(t.last_seen_at >= horizon)
    with store.engine.connect() as conn:
        oldest = conn.execute(kept).first()
    if oldest is None or oldest.started_at - MARGIN >= horizon:
        return horizon
    pruned.held_by = oldest.id
    return oldest.started_at - MARGIN


def _drop(store: Store, table: Table, condition: ColumnElement[bool], dry_run: bool) -> int:
    """Delete the rows of ``table`` meeting ``condition``, ``IN_CHUNK`` per write transaction; how many
    went. The ids are read once, and each delete checks the condition again."""
    with store.engine.connect() as conn:
        ids = list(conn.execute(select(table.c.id).where(condition)).scalars())
    if dry_run:
        return len(ids)
    done = 0
    for chunk in chunks(ids, IN_CHUNK):
        with store.writing() as conn:
            done += conn.execute(delete(table).where(table.c.id.in_(chunk), condition)).rowcount
    return done


def _drop_observations(store: Store, cut: datetime, up_to: int, dry_run: bool, dropped: set[int]) -> int:
    """Walk the observation ids up to ``up_to`` in steps, deleting those that started before
    ``cut`` (their business keys go with them): arrival order is only roughly time order, so
    every step is looked at. A dry run does not count again the ``dropped`` ones of transactions."""
    o = observations.c
    done = 0
    for low, high in _id_steps(store, up_to):
        old = and_(o.id >= low, o.id <= high, o.start_time < cut)
        if dry_run:
            with store.engine.connect() as conn:
                done += sum(1 for oid in conn.execute(select(o.id).where(old)).scalars() if oid not in dropped)
            continue
        with store.writing() as conn:
            hold_until_commit(conn, CORRELATOR_LOCK)
            done += conn.execute(delete(observations).where(old)).rowcount
    return done


def _id_steps(store: Store, up_to: int) -> Iterator[tuple[int, int]]:
    with store.engine.connect() as conn:
        first = conn.execute(select(func.min(observations.c.id))).scalar()
    if first is None:
        return
    for low in range(first, up_to + 1, ID_STEP):
        yield low, min(low + ID_STEP - 1, up_to)


def _count(conn: Connection, ids: Select[Any]) -> int:
    return int(conn.execute(select(func.count()).select_from(ids.subquery())).scalar_one())
