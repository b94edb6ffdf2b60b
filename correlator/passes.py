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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection

from correlator.alerts import Alert, endpoint_alerts, raise_alerts, transaction_alerts
from correlator.components import Component, Linked, Nodes, add_members, link, older_nodes, owners
from correlator.exceptions import Draft, derive
from correlator.linking import MAX_CONFLICTS, TRACE
from correlator.members import MemberReader, Packed
from correlator.parallel import derived_in_order, made_aside, processes_for
from correlator.processes import Member, compile_processes, in_time_order
from correlator.transactions import Stager, business_context, transaction_row
from syncwatch.config import Config
from syncwatch.model import ExceptionCategory, ExceptionStatus, as_utc, partner_hosts, partners_of_kind, utcnow
from syncwatch.store import Checkpoint, Store
from syncwatch.store import correlation as q
from syncwatch.store.writes import read_checkpoint, save_checkpoint

CHECKPOINT = q.CORRELATOR_CHECKPOINT
BACKLOG = 2_000_000  # observations per database transaction: 1.8M members take about 1 GB
WRITE_EVERY = 5_000  # transactions handed to the writer thread (and derived by one process) at a time
PARALLEL_FROM = 20_000  # transactions from which helper processes derive a share (see correlator.parallel)
READ_APART_FROM = 200_000  # new observations from which a helper process reads a share of them
# The share of those this process reads itself, by engine. It also takes every member the helper
# sends, at about a third of the cost of reading one, so on SQLite an even split kept it busy well
# after the helper was done: at 0.35 the 100k-order pass read in 7.2 s against 7.7 s (four runs
# each, alternated). On PostgreSQL, whose server works on the same cores, 0.35 read 0.7 s slower.
READ_HERE = {"sqlite": 0.35, "postgresql": 0.5}
LET_GO_AT_ONCE = 100  # transactions freed between two chances for the pass to take the GIL (about 1 ms)
LARGE_PASS = 100_000  # observations after which the database's planner statistics are refreshed
HUMAN_STATES = {ExceptionStatus.IGNORED.value, ExceptionStatus.RETRYING.value}
READING, LINKING, DERIVING, SAVING = "reading", "linking", "deriving", "saving"
Progress = Callable[[str, int, int], None]
"""(step, done, of): how far a pass has come, as ``syncwatch correlate`` shows it on a terminal.
Each step is told as it starts; then reading counts observation ids, deriving transactions
written. A pass of several batches tells the steps of each."""


def _untold(_step: str, _done: int, _of: int) -> None:
    """A pass nobody watches (``serve``'s, the re-evaluations')."""


@dataclass
class PassResult:
    observations: int = 0
    transactions: int = 0
    exceptions: int = 0
    refused_links: int = 0
    conflicts: list[str] = field(default_factory=list)  # refusals between identity keys, described (the first few)
    alerts: int = 0
    busy: bool = False  # another instance held the correlator lock; nothing was done
    helpers_private_mib: int = 0  # memory the largest helper process held for itself (see correlator.parallel)
    seconds: float = 0.0


class Correlator:
    def __init__(self, store: Store, config: Config, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.processes = compile_processes(config)
        self.stager = Stager()
        self.hosts = partner_hosts(config.file.partners)
        self.fulfilers = set(partners_of_kind(config.file.partners, "wms", "3pl"))  # an order's partners
        self.owners = {p.name: {s.name: s.systems for s in p.stages if s.systems} for p in self.processes}

    def run_pass(self, batch: int = BACKLOG, progress: Progress | None = None) -> PassResult:
        """Correlate every observation stored since the last pass, ``batch`` at a time."""
        began, result = time.perf_counter(), PassResult()
        # The cycle collector stays off until each batch's transactions are let go (see _LetGo):
        # turned on while they live, it would first scan every one of them (2 s from empty).
        with _without_cycle_collection():
            while self._next_batch(batch, result, progress or _untold):
                pass
        if result.observations >= LARGE_PASS:
            with self.store.writing() as conn:
                q.refresh_statistics(conn)
        result.seconds = time.perf_counter() - began
        return result

    def _next_batch(self, batch: int, result: PassResult, tell: Progress) -> bool:
        """Correlate the next ``batch`` observations in a write transaction of their own: whether
        another batch may follow."""
        letting_go = _LetGo()
        try:
            with self.store.writing() as conn, letting_go, q.roomy_cache(conn):
                if not q.claim_correlation(conn):
                    result.busy = True
                    return False
                checkpoint = read_checkpoint(conn, CHECKPOINT) or Checkpoint(CHECKPOINT, 0)
                count, last = self._new(conn, checkpoint.position, batch, result, tell, letting_go.garbage)
                if not count:
                    self._redelivered(conn, checkpoint, result)
                    return False
                save_checkpoint(conn, Checkpoint(CHECKPOINT, last, checkpoint.state))
        finally:
            letting_go.wait()
        result.observations += count
        return True

    def _new(
        self, conn: Connection, after: int, batch: int, result: PassResult, tell: Progress, garbage: list[Any]
    ) -> tuple[int, int]:
        """Correlate the next ``batch`` observations after id ``after``: how many there were, and
        the last one's id; their transactions go to ``garbage`` (see ``_LetGo``). Only observations
        up to ``after`` are read besides them."""
        end = q.batch_end(conn, after, batch)
        if end is None:
            return 0, after
        reader = MemberReader(self.processes)
        tell(READING, 0, end - after)
        members, count, last = self._read(
            conn, reader, after, end, result, lambda read_to: tell(READING, read_to - after, end - after)
        )
        reader.nodes.clear()
        if not count:
            return count, last
        tell(LINKING, 0, count)
        linked = self._link(conn, [m.nodes for m in members], result)
        linked.add_members(members)
        components = linked.components
        self._gather(conn, components, reader, after)
        del members  # the components hold them now, and let each go once it is written
        self._write(conn, components, self.clock(), result, tell)
        garbage.extend(components)
        return count, last

    def _read(
        self,
        conn: Connection,
        reader: MemberReader,
        after: int,
        end: int,
        result: PassResult,
        read_to: Callable[[int], None],
    ) -> tuple[list[Member], int, int]:
        """The members of observations ``after < id <= end``, how many were read and the last id.
        A large backlog's later part is read by a helper process on a connection of its own, as
        of the moment it was forked, while this one reads the rest: reading is a third of a pass
        from empty, and the other core sat idle through it. ``correlate_processes`` = 1 forks none."""
        apart = end - after >= READ_APART_FROM and processes_for(self.config.correlate_processes) > 1
        snapshot = q.shared_snapshot(conn) if apart else None
        if snapshot is None:
            return reader.new(q.new_observations(conn, after, end, reader.nodes), read_to)
        mid = after + int((end - after) * READ_HERE[conn.dialect.name])
        with made_aside("read", partial(self._read_aside, reader, snapshot, mid, end)) as theirs:
            if theirs is None:
                return reader.new(q.new_observations(conn, after, end, reader.nodes), read_to)
            members, count, last = reader.new(q.new_observations(conn, after, mid, reader.nodes), read_to, theirs)
            result.helpers_private_mib = max(result.helpers_private_mib, theirs.helper_private_mib)
        if last < end:  # the helper failed (logged): what it did not send is read here
            rest, more, _ = reader.new(q.new_observations(conn, max(last, mid), end, reader.nodes), read_to)
            members.extend(rest)
            count, last = count + more, end
        return members, count, last

    def _read_aside(self, reader: MemberReader, snapshot: str, after: int, end: int) -> Iterator[Packed]:
        """The read helper's work, on a connection of its own: the pass's is the pass's alone."""
        store = self.store.reopened()
        try:
            with store.engine.connect() as conn:
                q.read_snapshot(conn, snapshot)
                yield from reader.packed(q.new_observations(conn, after, end, reader.nodes))
        finally:
            store.close()

    def _redelivered(self, conn: Connection, checkpoint: Checkpoint, result: PassResult) -> None:
        """Re-derive the transactions of observations delivered again since the last look."""
        now = utcnow()
        since = checkpoint.state.get("redelivered_after")
        found = q.redelivered_since(conn, datetime.fromisoformat(since)) if since else []
        rows = [(*keys, *([(TRACE, trace)] if trace else [])) for _, keys, trace in found]
        if rows:
            self._apply(conn, rows, result)
        state = {**checkpoint.state, "redelivered_after": now.isoformat()}
        save_checkpoint(conn, Checkpoint(CHECKPOINT, checkpoint.position, state))

    def reevaluate(self, limit: int = 10_000, result: PassResult | None = None) -> int:
        """Re-derive transactions whose SLA state changes with time alone (now past their check time);
        ``result`` adds up what that derived (exceptions, alerts)."""
        with self.store.writing() as conn:
            if not q.claim_correlation(conn):
                return 0
            ids = q.due_for_sla_check(conn, self.clock(), limit)
            keys = q.keys_of_transactions(conn, ids)
            rows = [(node,) for nodes in keys.values() for node in sorted(nodes) if node[0] != TRACE]
            self._apply(conn, rows, result if result is not None else PassResult())
        return len(ids)

    def _apply(self, conn: Connection, rows: Sequence[Nodes], result: PassResult) -> None:
        """Re-derive the transactions holding any of the nodes of ``rows``, from all their observations."""
        components = self._link(conn, rows, result).components
        self._gather(conn, components, MemberReader(self.processes), None)
        self._write(conn, components, self.clock(), result)

    def _link(self, conn: Connection, rows: Sequence[Nodes], result: PassResult) -> Linked:
        """The components of ``rows`` (each an observation's nodes) and of the stored transactions they touch."""
        linked = link(self.processes, rows, q.transactions_holding(conn, rows))
        result.refused_links += linked.refused
        room = MAX_CONFLICTS - len(result.conflicts)
        result.conflicts.extend(conflict.describe() for conflict in linked.conflicts[: max(0, room)])
        return linked

    @staticmethod
    def _gather(conn: Connection, components: list[Component], reader: MemberReader, fresh_after: int | None) -> None:
        """Give each component its members of earlier observations (those of a batch it has)."""
        older = older_nodes(components, fresh_after)
        if older:
            add_members(owners(components), reader.stored(*q.observations_of_nodes(conn, older, fresh_after)))

    def _write(
        self, conn: Connection, components: list[Component], now: datetime, result: PassResult, tell: Progress = _untold
    ) -> None:
        # In id order, the writes append to the tables' b-trees; what is stored is read before the
        # writer thread takes the connection.
        live = sorted(((c.id, c) for c in components if c.members), key=lambda pair: pair[0])
        ids = [tid for tid, _ in live]
        stored_ids = q.stored_transactions(conn, ids)
        stored = q.exceptions_of(conn, ids)
        drafts: list[tuple[str, Draft]] = []
        retired: set[str] = set()
        found: list[Alert] = []
        chunks = [live[start : start + WRITE_EVERY] for start in range(0, len(live), WRITE_EVERY)]
        processes = processes_for(self.config.correlate_processes) if len(live) >= PARALLEL_FROM else 1
        derived = partial(self._derived, now=now)
        tell(DERIVING, 0, len(live))
        writer = q.transaction_writer(conn, stored_ids, sum(len(c.nodes) for _, c in live))
        with derived_in_order(chunks, derived, processes) as parts, writer as write:
            written = 0
            for part in parts:
                drafts.extend(part.drafts)
                retired |= part.retired
                found.extend(part.alerts)
                write(part.ready)
                written += len(part.ready[0])
                tell(DERIVING, written, len(live))
        result.helpers_private_mib = max(result.helpers_private_mib, parts.helpers_private_mib)
        tell(SAVING, 0, len(drafts))
        # Read the stored lifecycle, and move exceptions to their new transaction, before retiring
        # merged transactions: retiring cascades whatever still points at them.
        exception_rows = _exception_rows(conn, drafts, now)
        q.drop_exceptions(conn, _stale(stored, {r["id"] for r in exception_rows}))
        q.upsert_exceptions(conn, exception_rows)
        # After the upsert: an endpoint's alert counts every order failing there, not this pass's few.
        found += endpoint_alerts(conn, exception_rows, self.config, now)
        result.alerts += raise_alerts(conn, found, self.config, now)
        q.retire_transactions(conn, retired - set(ids))
        result.transactions += len(live)
        result.exceptions += len(exception_rows)

    def _derived(self, chunk: list[tuple[str, Component]], now: datetime) -> Derived:
        """The rows and keys ready to write, exception drafts, alerts and replaced ids of a chunk of
        transactions."""
        share, part = self.config.sla_at_risk_share, Derived()
        rows: list[dict[str, Any]] = []
        keys: list[q.KeyRow] = []
        drafts = part.drafts
        for tid, component in chunk:
            members = in_time_order(component.members.values())
            # A backlog's members go as their transactions are derived. Those of a helper's chunks stay
            # in this process until the pass ends: letting them go would touch, and so copy, every page
            # the helper still shares (measured: the gain of the helper gone).
            component.members.clear()
            sla, row = transaction_row(component, members, self.stager, now, share)
            rows.append(row)
            own = []
            for node in component.nodes:  # a loop, not comprehensions: this runs per transaction
                keys.append((tid, *node))
                if node[0] != TRACE:
                    own.append(node)
            context, handed_over = business_context(row), component.process.partner_stage
            owners = self.owners[component.process.name]
            derived = derive(tid, members, sla, own, context, self.hosts, handed_over, owners)
            if row["partner"] is None:
                derived = _charged_to_fulfiler(row, derived, self.fulfilers)
            drafts.extend((tid, d) for d in derived)
            part.retired |= component.previous
        part.alerts = transaction_alerts(rows, {tid: c.link_key for tid, c in chunk}, self.config, now)
        part.ready = q.ready_to_write(self.store.dialect, rows, keys)
        return part


@dataclass
class Derived:
    """What deriving a chunk of transactions gives the writer (picklable: a helper process sends it)."""

    ready: q.ReadyToWrite = field(default_factory=lambda: ([], []))
    drafts: list[tuple[str, Draft]] = field(default_factory=list)
    retired: set[str] = field(default_factory=set)
    alerts: list[Alert] = field(default_factory=list)


class _LetGo:
    """Lets go of a batch's transactions on a thread while the commit runs: freeing a backlog's
    members took 0.8 s of 1.8M observations, on one core, and the commit is SQLite's work, which
    runs without the GIL. Entered just inside the write transaction, so that the thread starts as
    the block ends and the commit begins; ``wait`` after the transaction. A few at a time: freeing
    is C work that keeps the GIL until it returns, so one ``clear`` would hold up the commit."""

    def __init__(self) -> None:
        self.garbage: list[Any] = []
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _LetGo:
        return self

    def __exit__(self, failed: type[BaseException] | None, *_: object) -> None:
        if failed is None and self.garbage:
            thread = threading.Thread(target=self._let_go, name="correlator-let-go", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (a container's limit): let go here, as before
                self.garbage.clear()
                return
            self._thread = thread

    def _let_go(self) -> None:
        while self.garbage:
            del self.garbage[-LET_GO_AT_ONCE:]

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()


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


CALL_FAILURES = {
    ExceptionCategory.PARTNER_UNAVAILABLE,
    ExceptionCategory.TIMEOUT,
    ExceptionCategory.THROTTLED,
    ExceptionCategory.VALIDATION,
}


def _charged_to_fulfiler(row: dict[str, Any], drafts: list[Draft], fulfilers: set[str]) -> list[Draft]:
    """An order whose hand-over to a warehouse or 3PL failed is that partner's: it has no partner
    yet (none took it), so it counted as 'not released yet' and the partner that was down read as
    never late. The latest failed call to one names it, on the row and in its exceptions' context."""
    tried = [d for d in drafts if d.system in fulfilers and d.category in CALL_FAILURES]
    if not tried:
        return drafts
    partner = max(tried, key=lambda d: d.last_seen_at).system
    row["partner"] = partner
    return [replace(d, context={**d.context, "partner": partner}) for d in drafts]


def _stale(stored: list[Any], derived: set[str]) -> list[str]:
    """Stored exceptions no longer derived (a stage seen overdue before its observation arrived),
    unless a person has taken them up or acted on them."""
    return [
        row.id
        for row in stored
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
