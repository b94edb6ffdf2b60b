"""The incremental correlator pass: read new observations, re-derive only what they touch.

A pass links the new observations' keys with the stored transactions holding the same keys,
then recomputes each touched transaction from all of its observations — so the result depends
on the set of observations, never on the order they arrived in. The checkpoint advances in the
same database transaction as the writes, so a crash repeats a batch instead of losing it.

A batch is the whole backlog (up to ``BACKLOG``): files arrive system by system, so smaller
batches of a large backlog each touch nearly every transaction and reload all its members.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from correlator.alerts import endpoint_alerts, raise_alerts, transaction_alerts
from correlator.components import Component, Nodes, add_members, link, older_nodes, owners
from correlator.exceptions import Draft, derive
from correlator.linking import TRACE
from correlator.members import MemberReader
from correlator.processes import Member, compile_processes
from correlator.transactions import Stager, business_context, transaction_row
from syncwatch.config import Config
from syncwatch.model import ExceptionStatus, as_utc, utcnow
from syncwatch.store import Checkpoint, Store
from syncwatch.store import correlation as q
from syncwatch.store.writes import read_checkpoint, save_checkpoint

log = logging.getLogger(__name__)
CHECKPOINT = "correlator"
BACKLOG = 2_000_000  # observations per database transaction: 1.8M members take about 1 GB
HUMAN_STATES = {ExceptionStatus.IGNORED.value, ExceptionStatus.RETRYING.value}


@dataclass
class PassResult:
    observations: int = 0
    transactions: int = 0
    exceptions: int = 0
    refused_links: int = 0
    alerts: int = 0
    busy: bool = False  # another instance held the correlator lock; nothing was done
    seconds: float = 0.0


class Correlator:
    def __init__(self, store: Store, config: Config, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.processes = compile_processes(config)
        self.stager = Stager()
        self.hosts = {host: name for name, p in config.file.partners.items() for host in [name, *p.hosts]}

    def run_pass(self, batch: int = BACKLOG) -> PassResult:
        """Correlate every observation stored since the last pass, ``batch`` at a time."""
        began, result = time.perf_counter(), PassResult()
        while True:
            with self.store.writing() as conn, _without_cycle_collection():
                if not q.claim_correlation(conn):
                    result.busy = True
                    break
                checkpoint = read_checkpoint(conn, CHECKPOINT) or Checkpoint(CHECKPOINT, 0)
                reader = MemberReader(self.processes)
                members = reader.new(q.new_observations(conn, checkpoint.position, batch))
                if not members:
                    self._redelivered(conn, checkpoint, reader, result)
                    break
                self._apply(conn, [m.nodes for m in members], reader, result, members, checkpoint.position)
                save_checkpoint(conn, Checkpoint(CHECKPOINT, members[-1].id, checkpoint.state))
            result.observations += len(members)
        result.seconds = time.perf_counter() - began
        return result

    def _redelivered(self, conn: Connection, checkpoint: Checkpoint, reader: MemberReader, result: PassResult) -> None:
        """Re-derive the transactions of observations delivered again since the last look."""
        now = utcnow()
        since = checkpoint.state.get("redelivered_after")
        found = q.redelivered_since(conn, datetime.fromisoformat(since)) if since else []
        rows = [(*keys, *([(TRACE, trace)] if trace else [])) for _, keys, trace in found]
        if rows:
            self._apply(conn, rows, reader, result)
        state = {**checkpoint.state, "redelivered_after": now.isoformat()}
        save_checkpoint(conn, Checkpoint(CHECKPOINT, checkpoint.position, state))

    def reevaluate(self, limit: int = 10_000) -> int:
        """Re-derive transactions whose SLA state changes with time alone (now past their check time)."""
        with self.store.writing() as conn:
            if not q.claim_correlation(conn):
                return 0
            ids = q.due_for_sla_check(conn, self.clock(), limit)
            keys = q.keys_of_transactions(conn, ids)
            rows = [(node,) for nodes in keys.values() for node in sorted(nodes) if node[0] != TRACE]
            self._apply(conn, rows, MemberReader(self.processes), PassResult())
        return len(ids)

    def _apply(
        self,
        conn: Connection,
        rows: Sequence[Nodes],
        reader: MemberReader,
        result: PassResult,
        members: Sequence[Member] = (),
        fresh_after: int | None = None,
    ) -> None:
        """Link ``rows`` (each an observation's nodes) and re-derive what they touch. A batch of new
        observations comes with their ``members`` and the checkpoint they follow, ``fresh_after``:
        only observations up to it are read."""
        stored = q.transactions_holding(conn, rows)
        components, refused = link(self.processes, rows, stored)
        result.refused_links += refused
        owned = owners(components)
        add_members(owned, members)
        older = older_nodes(components, fresh_after)
        if older:
            add_members(owned, reader.stored(*q.observations_of_nodes(conn, older, fresh_after)))
        self._write(conn, components, self.clock(), result)

    def _write(self, conn: Connection, components: list[Component], now: datetime, result: PassResult) -> None:
        txn_rows, key_rows, drafts, retired = [], [], [], set()
        share = self.config.sla_at_risk_share
        for component in components:
            if not component.members:
                continue
            members = sorted(component.members.values(), key=_start)
            sla, row = transaction_row(component, members, self.stager, now, share)
            tid = row["id"]
            txn_rows.append(row)
            key_rows.extend((tid, t, v) for t, v in component.nodes)
            keys = [n for n in component.nodes if n[0] != TRACE]
            drafts.extend((tid, d) for d in derive(tid, members, sla, keys, business_context(row), self.hosts))
            retired |= component.previous
        # Read the stored lifecycle, and move exceptions to their new transaction, before retiring
        # merged transactions: retiring cascades whatever still points at them.
        exception_rows = _exception_rows(conn, drafts, now)
        before = q.sla_states(conn, [r["id"] for r in txn_rows])
        link_keys = {c.id: c.link_key for c in components}
        found = transaction_alerts(before, txn_rows, link_keys, self.config, now)
        result.alerts += raise_alerts(conn, found + endpoint_alerts(exception_rows, self.config, now), self.config, now)
        q.drop_exceptions(conn, _stale(conn, [r["id"] for r in txn_rows], {r["id"] for r in exception_rows}))
        q.replace_transactions(conn, txn_rows, key_rows)
        q.upsert_exceptions(conn, exception_rows)
        q.retire_transactions(conn, retired - {r["id"] for r in txn_rows})
        result.transactions += len(txn_rows)
        result.exceptions += len(exception_rows)


def _start(member: Member) -> tuple[datetime, int]:
    return member.start, member.id


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """A backlog allocates millions of acyclic objects, which the cycle collector would otherwise
    scan again and again (a fifth of a pass); reference counting still frees them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stale(conn: Connection, transaction_ids: list[str], derived: set[str]) -> list[str]:
    """Exceptions no longer derived (a stage seen overdue before its observation arrived), unless a
    person has taken them up or acted on them."""
    return [
        row.id
        for row in q.exceptions_of(conn, transaction_ids)
        if row.id not in derived and row.assignee is None and row.status not in HUMAN_STATES and not row.acted_on
    ]


def _exception_rows(conn: Connection, drafts: list[tuple[str, Draft]], now: datetime) -> list[dict[str, Any]]:
    stored = q.stored_exceptions(conn, [d.id for _, d in drafts])
    return [_exception_row(tid, draft, stored.get(draft.id), now) for tid, draft in drafts]


def _exception_row(transaction_id: str, draft: Draft, stored: Any, now: datetime) -> dict[str, Any]:
    status = draft.status.value
    resolved_at = draft.resolved_by.start if draft.resolved_by else None
    new_failure = stored is None or as_utc(stored.last_seen_at) < draft.last_seen_at
    if (
        stored is not None
        and status == "open"
        and not new_failure
        and (
            stored.status in HUMAN_STATES or (stored.status == "resolved" and stored.resolved_by_observation_id is None)
        )
    ):
        status, resolved_at = stored.status, stored.resolved_at
    return {
        "id": draft.id,
        "transaction_id": transaction_id,
        "category": draft.category.value,
        "status": status,
        "system": draft.system,
        "endpoint": draft.endpoint,
        "stage": draft.stage,
        "summary": draft.summary,
        "suggested_action": draft.suggested_action.value if draft.suggested_action else None,
        "assignee": stored.assignee if stored is not None else None,
        "context": draft.context,
        "observation_id": draft.observation_id,
        "resolved_by_observation_id": draft.resolved_by.id if draft.resolved_by else None,
        "attempts": draft.attempts,
        "opened_at": draft.opened_at,
        "last_seen_at": draft.last_seen_at,
        "updated_at": now,
        "resolved_at": resolved_at,
    }
