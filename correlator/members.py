"""Members built from stored rows, once per observation of a batch.

A whole backlog of members is held at once, so equal strings and nodes are shared, and
attribute text is kept only where something reads it: a failure's (error type, the host it
called) and the deadline, context and line attributes the processes name. A payload is kept
only where it may ship lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from correlator.linking import TRACE, Node
from correlator.processes import Member, Process
from syncwatch.store import correlation as q


class MemberReader:
    def __init__(self, processes: Sequence[Process]) -> None:
        names = set().union(*(p.attribute_names for p in processes))
        # The names as JSON writes them; a match only keeps the text, so a false one costs memory, not results.
        self._read = re.compile("|".join(re.escape(json.dumps(name)) for name in sorted(names)) or "(?!)").search
        self._shipping = [s for p in processes if (s := p.lines_stage)]
        self._ships: dict[tuple[str, str, str, str], bool] = {}
        self._strings: dict[str, str] = {}
        # One tuple per distinct node of a batch's reads: ``q.new_observations`` takes it, so that
        # equal nodes of every list read and received are one object (see correlator.graph). The
        # pass clears it once the batch is read: the members hold their nodes, and it is large.
        self.nodes: dict[Node, Node] = {}

    def _ships_lines(self, kind: str, system: str, operation: str, outcome: str, payload: bytes | None) -> bool:
        """Whether an observation's payload may say which lines shipped (cached by its shape)."""
        if payload is None or not self._shipping:
            return False
        shape = (kind, system, operation, outcome)
        ships = self._ships.get(shape)
        if ships is None:
            probe = Member(0, kind, system, operation, _EPOCH, outcome, None, None, 0)
            ships = self._ships[shape] = any(stage.reached_by(probe) for stage in self._shipping)
        return ships

    def new(
        self,
        batches: Iterable[list[tuple[q.NewRow, list[Node]]]],
        read_to: Callable[[int], None] | None = None,
        received: Iterable[Packed] = (),
    ) -> tuple[list[Member], int, int]:
        """Members of new observations (member columns and trace id, identity keys), then of the
        ``received`` ones (``packed`` by a helper that read the observations after these), how
        many observations were read, and the last one's id; ``read_to`` hears the last id of each
        list read. An observation with neither an identity key nor a trace id shares no node with
        anything, so it is a member of nothing."""
        found: list[Member] = []
        count = last = 0
        for batch in batches:
            count, last = count + len(batch), batch[-1][0][0]
            self._new(batch, found.append, Member, q.as_time)
            if read_to is not None:
                read_to(last)
        for read, read_last, packed in received:
            count, last = count + read, read_last
            self._unpack(packed, found)
            if read_to is not None:
                read_to(last)
        return found, count, last

    def packed(self, batches: Iterable[list[tuple[q.NewRow, list[Node]]]]) -> Iterator[Packed]:
        """``new``'s work in a helper process, a list at a time: how many observations it read, the
        last one's id, and its members as plain tuples with the stored time as read. Taking a
        member sent so costs the pass a third of reading it (2 µs against 6)."""
        for batch in batches:
            packed: list[tuple[Any, ...]] = []
            self._new(batch, packed.append, _as_tuple, _as_read)
            yield len(batch), batch[-1][0][0], packed

    def _unpack(self, packed: list[tuple[Any, ...]], found: list[Member]) -> None:
        as_time, add, string, shared = q.as_time, found.append, self._strings.setdefault, self.nodes.setdefault
        for oid, kind, system, operation, start, outcome, status, error, duplicates, text, nodes, payload in packed:
            add(
                Member(
                    oid,
                    string(kind, kind),
                    string(system, system),
                    string(operation, operation),
                    as_time(start),
                    string(outcome, outcome),
                    status,
                    error,
                    duplicates,
                    text,
                    tuple([shared(node, node) for node in nodes]),
                    payload,
                )
            )

    def _new(
        self,
        batch: list[tuple[q.NewRow, list[Node]]],
        add: Callable[[Any], None],
        make: Callable[..., Any],
        as_time: Callable[[Any], Any],
    ) -> None:
        read, ships = self._read, self._ships_lines
        string, shared = self._strings.setdefault, self.nodes.setdefault  # bound once: this runs per observation
        for row, keys in batch:
            oid, kind, system, operation, start, outcome, status, error, duplicates, text, payload, trace = row
            if not keys and not trace:
                continue
            if len(keys) > 1:
                keys.sort()  # the engine returns them in any order; which link is refused must not depend on it
            own = keys  # shared already (``q.new_observations``, given ``self.nodes``)
            if trace:
                node = (TRACE, trace)
                own.append(shared(node, node))
            add(
                make(
                    oid,
                    string(kind, kind),
                    string(system, system),
                    string(operation, operation),
                    as_time(start),
                    string(outcome, outcome),
                    status,
                    error,
                    duplicates,
                    text if outcome == "error" or read(text) else None,
                    tuple(own),
                    payload if payload is not None and ships(kind, system, operation, outcome, payload) else None,
                )
            )

    def stored(self, rows: Iterable[q.MemberRow], links: Iterable[tuple[int, Node]]) -> list[Member]:
        """Members of earlier observations, from their rows and (observation id, node) links."""
        nodes_of: dict[int, list[Node]] = {}
        for oid, node in links:
            nodes_of.setdefault(oid, []).append(node)
        found = []
        for row in rows:
            oid, kind, system, operation, start, outcome, status_code, error_message, duplicates, text, payload = row
            nodes = tuple(sorted(nodes_of.get(oid, ()), key=lambda n: n[0] == TRACE))
            attributes = text if outcome == "error" or self._read(text) else None
            shipped = payload if self._ships_lines(kind, system, operation, outcome, payload) else None
            found.append(
                Member(
                    oid,
                    kind,
                    system,
                    operation,
                    q.as_time(start),
                    outcome,
                    status_code,
                    error_message,
                    duplicates,
                    attributes,
                    nodes,
                    shipped,
                )
            )
        return found


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Packed = tuple[int, int, list[tuple[Any, ...]]]  # observations read, the last one's id, their members' values


def _as_tuple(*values: Any) -> tuple[Any, ...]:
    return values


def _as_read(value: Any) -> Any:
    return value
