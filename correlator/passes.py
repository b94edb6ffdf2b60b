"""The incremental correlator pass: read new observations, re-derive only what they touch.

A pass links the new observations' keys with the stored transactions holding the same keys,
then recomputes each touched transaction from all of its observations — so the result depends
on the set of observations, never on the order they arrived in. The checkpoint advances in the
same database transaction as the writes, so a crash repeats a batch instead of losing it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from correlator.alerts import endpoint_alerts, raise_alerts, transaction_alerts
from correlator.exceptions import Draft, derive
from correlator.linking import TRACE, Linker, Node
from correlator.processes import Member, Process, compile_processes
from correlator.sla import SlaResult, evaluate
from syncwatch.config import Config
from syncwatch.model import ExceptionStatus, as_utc, utcnow
from syncwatch.store import Checkpoint, Store
from syncwatch.store import correlation as q
from syncwatch.store.writes import read_checkpoint, save_checkpoint

log = logging.getLogger(__name__)
CHECKPOINT = "correlator"
BACKLOG = 2_000_000  # observations per database transaction: a whole backlog of 1M+ in one pass
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


@dataclass
class Component:
    """One transaction being recomputed: its process, nodes, and the stored ids it replaces."""

    process: Process
    nodes: set[Node]
    roots: dict[str, str]
    previous: set[str] = field(default_factory=set)
    members: dict[int, Member] = field(default_factory=dict)

    @property
    def link_key(self) -> str:
        """The identifier a person would search for: the root key, else the smallest key."""
        if self.roots:
            return sorted(self.roots.items())[0][1]
        return min(n for n in self.nodes if n[0] != TRACE)[1]

    @property
    def id(self) -> str:
        root = sorted(self.roots.items())[0] if self.roots else min(n for n in self.nodes if n[0] != TRACE)
        text = f"{self.process.name}:{root[1]}" if self.roots else f"{self.process.name}:~{root[0]}:{root[1]}"
        return text if len(text) <= 64 else f"{self.process.name}:{hashlib.sha1(text.encode()).hexdigest()[:24]}"


class Correlator:
    def __init__(self, store: Store, config: Config, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.processes = compile_processes(config)
        self._stage_cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.hosts = {host: name for name, p in config.file.partners.items() for host in [name, *p.hosts]}
        # What a healthy member's attributes are read for: deadlines and business context. A
        # failed member's are read whole (error type, the host it called).
        names = {s.deadline_attribute for p in self.processes for s in p.stages if s.deadline_attribute}
        names.update(a for p in self.processes for attributes in p.context.values() for a in attributes)
        self._read_attributes = tuple(json.dumps(name) for name in sorted(names))

    def run_pass(self, batch: int = BACKLOG) -> PassResult:
        """Correlate every observation stored since the last pass, ``batch`` at a time."""
        began, result = time.perf_counter(), PassResult()
        while True:
            with self.store.writing() as conn:
                if not q.claim_correlation(conn):
                    result.busy = True
                    break
                checkpoint = read_checkpoint(conn, CHECKPOINT) or Checkpoint(CHECKPOINT, 0)
                rows = q.new_observations(conn, checkpoint.position, batch)
                if not rows:
                    self._redelivered(conn, checkpoint, result)
                    break
                self._apply(conn, rows, result, fresh=(checkpoint.position, rows[-1][0]))
                save_checkpoint(conn, Checkpoint(CHECKPOINT, rows[-1][0], checkpoint.state))
            result.observations += len(rows)
        result.seconds = time.perf_counter() - began
        return result

    def _redelivered(self, conn: Connection, checkpoint: Checkpoint, result: PassResult) -> None:
        """Re-derive the transactions of observations delivered again since the last look."""
        now = utcnow()
        since = checkpoint.state.get("redelivered_after")
        rows = q.redelivered_since(conn, datetime.fromisoformat(since)) if since else []
        if rows:
            self._apply(conn, rows, result)
        state = {**checkpoint.state, "redelivered_after": now.isoformat()}
        save_checkpoint(conn, Checkpoint(CHECKPOINT, checkpoint.position, state))

    def reevaluate(self, limit: int = 10_000) -> int:
        """Re-derive transactions whose SLA state changes with time alone (now past their check time)."""
        with self.store.writing() as conn:
            if not q.claim_correlation(conn):
                return 0
            ids = q.due_for_sla_check(conn, self.clock(), limit)
            keys = q.keys_of_transactions(conn, ids)
            rows = [(0, (node,)) for nodes in keys.values() for node in sorted(nodes) if node[0] != TRACE]
            result = PassResult()
            self._apply(conn, rows, result)
        return len(ids)

    def _apply(
        self, conn: Connection, rows: Sequence[q.LinkRow], result: PassResult, fresh: tuple[int, int] | None = None
    ) -> None:
        """Link ``rows`` and re-derive what they touch; ``fresh`` is the id range of a batch of
        new observations, whose members are read by range instead of by key."""
        stored = q.transactions_holding(conn, {n for _, nodes in rows for n in nodes})
        components = [c for p in self.processes for c in self._link(p, rows, stored, result)]
        self._load_members(conn, components, rows, fresh)
        now = self.clock()
        self._write(conn, components, now, result)

    @staticmethod
    def _link(
        process: Process, rows: Sequence[q.LinkRow], stored: dict[str, set[Node]], result: PassResult
    ) -> list[Component]:
        """The process's components: stored transactions the rows touch first, then the rows in
        arrival order. A row with none of the process's keys adds nothing: its trace alone
        links no key of the process, and stored transactions holding that trace were read."""
        prefix = f"{process.name}:"
        mine = {tid: nodes for tid, nodes in stored.items() if tid.startswith(prefix)}
        linker = Linker(process.roots)
        for nodes in mine.values():
            linker.link(sorted(nodes))
        owned = process.keys
        for _, nodes in rows:
            own = [n for n in nodes if n[0] in owned]
            if own:
                if nodes[-1][0] == TRACE:
                    own.append(nodes[-1])
                linker.link(own)
        result.refused_links += len(linker.refused)
        return _components(process, linker, mine)

    def _load_members(
        self, conn: Connection, components: list[Component], rows: Sequence[q.LinkRow], fresh: tuple[int, int] | None
    ) -> None:
        """Give each component every observation that shares one of its nodes (one per process)."""
        owners: dict[Node, list[Component]] = defaultdict(list)
        for component in components:
            for node in component.nodes:
                owners[node].append(component)
        strings: dict[str, str] = {}
        if fresh is not None:
            links = iter(rows)
            oid, nodes = next(links)
            for row in q.member_rows(conn, *fresh):
                while oid < row[0]:
                    oid, nodes = next(links)
                if oid == row[0]:
                    self._assign(row, nodes, owners, strings)
        older = self._older_nodes(components, fresh)
        if older:
            old_rows, old_links = q.observations_of_nodes(conn, older, fresh[0] if fresh else None)
            nodes_of: dict[int, list[Node]] = defaultdict(list)
            for oid, node in old_links:
                nodes_of[oid].append(node)
            for row in old_rows:
                self._assign(row, sorted(nodes_of[row[0]], key=lambda n: n[0] == TRACE), owners, strings)

    def _assign(
        self, row: q.MemberRow, nodes: Sequence[Node], owners: dict[Node, list[Component]], strings: dict[str, str]
    ) -> None:
        """Make ``row`` a member of every component owning one of its ``nodes`` (trace last)."""
        member = None
        for node in nodes:
            for component in owners.get(node, ()):
                if member is None:
                    member = self._member(row, nodes, strings)
                component.members[member.id] = member

    def _member(self, row: q.MemberRow, nodes: Sequence[Node], strings: dict[str, str]) -> Member:
        """A member from its row; equal strings are shared, and attribute text nothing will read is dropped."""
        oid, kind, system, operation, start, outcome, status_code, error_message, duplicates, attributes = row
        if outcome != "error" and not any(name in attributes for name in self._read_attributes):
            attributes = None
        keys = nodes[:-1] if nodes and nodes[-1][0] == TRACE else nodes
        return Member(
            oid,
            strings.setdefault(kind, kind),
            strings.setdefault(system, system),
            strings.setdefault(operation, operation),
            q.as_time(start),
            strings.setdefault(outcome, outcome),
            status_code,
            error_message,
            duplicates,
            attributes,
            tuple(keys),
        )

    def _stages_of(self, process: Process, member: Member) -> tuple[str, ...]:
        """The stages a member reaches; cached, since a week has only a few hundred distinct shapes."""
        shape = (process.name, member.system, member.operation, member.kind, member.outcome)
        stages = self._stage_cache.get(shape)
        if stages is None:
            stages = self._stage_cache[shape] = tuple(s.name for s in process.stages if s.reached_by(member))
        return stages

    @staticmethod
    def _older_nodes(components: list[Component], fresh: tuple[int, int] | None) -> set[Node]:
        """Nodes whose earlier observations must be read: all of them outside a fresh batch; in a
        batch, those of stored transactions, and trace ids (a trace-only span may precede them)."""
        if fresh is None:
            return {n for c in components for n in c.nodes}
        if fresh[0] == 0:
            return set()
        return {n for c in components for n in c.nodes if c.previous or n[0] == TRACE}

    def _write(self, conn: Connection, components: list[Component], now: datetime, result: PassResult) -> None:
        txn_rows, key_rows, drafts, retired = [], [], [], set()
        for component in components:
            if not component.members:
                continue
            sla, row = self._transaction_row(component, now)
            txn_rows.append(row)
            key_rows.extend((row["id"], t, v) for t, v in component.nodes)
            keys = [n for n in component.nodes if n[0] != TRACE]
            drafts.extend(
                (row["id"], d)
                for d in derive(row["id"], list(component.members.values()), sla, keys, _context(row), self.hosts)
            )
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

    def _transaction_row(self, component: Component, now: datetime) -> tuple[SlaResult, dict[str, Any]]:
        process = component.process
        members = sorted(component.members.values(), key=lambda m: (m.start, m.id))
        reached: dict[str, Member] = {}
        for member in members:
            for name in self._stages_of(process, member):
                reached.setdefault(name, member)
        described = [m for m in members if m.attributes_json is not None]
        deadlines = _deadlines(process, described)
        sla = evaluate(process, {k: m.start for k, m in reached.items()}, deadlines, now, self.config.sla_at_risk_share)
        first = reached.get(process.stages[0].name)
        partner = reached.get(process.partner_stage) if process.partner_stage else None
        context = _attribute_context(process, described)
        return sla, {
            "id": component.id,
            "type": process.name,
            "status": "complete" if sla.complete else "open",
            "sla_state": sla.state.value,
            "current_stage": sla.current_stage,
            "stage_at_fault": sla.stage_at_fault,
            "due_at": sla.due_at,
            "channel": first.system if first else None,
            "partner": partner.system if partner else None,
            "customer": context.get("customer"),
            "order_value": context.get("order_value"),
            "promised_at": min(deadlines.values()) if deadlines else None,
            "stages": [s.as_json() for s in sla.stages],
            "started_at": members[0].start,
            "last_seen_at": members[-1].start,
            "observation_count": len(members),
            "sla_check_at": sla.check_at,
            "updated_at": now,
        }


def _components(process: Process, linker: Linker, stored: dict[str, set[Node]]) -> list[Component]:
    owner = {node: tid for tid, nodes in stored.items() for node in nodes}
    components = []
    for nodes in linker.components().values():
        if all(n[0] == TRACE for n in nodes):
            continue
        component = Component(process, set(nodes), dict(linker.root_values(nodes[0])))
        component.previous = {owner[n] for n in nodes if n in owner}
        components.append(component)
    return components


def _deadlines(process: Process, members: Sequence[Member]) -> dict[str, datetime]:
    found: dict[str, datetime] = {}
    for name in {s.deadline_attribute for s in process.stages if s.deadline_attribute}:
        value = next((m.attributes[name] for m in members if name in m.attributes), None)
        try:
            if value is not None:
                found[name] = as_utc(datetime.fromisoformat(str(value)))
        except ValueError:
            log.warning("ignoring %s=%r: not an ISO-8601 time", name, value)
    return found


def _attribute_context(process: Process, members: Sequence[Member]) -> dict[str, str]:
    context = {}
    for name, attributes in process.context.items():
        value = next((m.attributes[a] for m in members for a in attributes if a in m.attributes), None)
        if value is not None:
            context[name] = str(value)
    return context


def _context(row: dict[str, Any]) -> dict[str, Any]:
    promised = row["promised_at"]
    return {
        "channel": row["channel"],
        "partner": row["partner"],
        "customer": row["customer"],
        "order_value": row["order_value"],
        "promised_at": promised.isoformat() if promised else None,
    }


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
