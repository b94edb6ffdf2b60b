"""Members built from stored rows, once per observation of a batch.

A whole backlog of members is held at once, so equal strings and nodes are shared, and
attribute text is kept only where something reads it: a failure's (error type, the host it
called) and the deadline and context attributes the processes name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from correlator.linking import TRACE, Node
from correlator.processes import Member, Process
from syncwatch.store import correlation as q


class MemberReader:
    def __init__(self, processes: Sequence[Process]) -> None:
        names = {s.deadline_attribute for p in processes for s in p.stages if s.deadline_attribute}
        names.update(a for p in processes for attributes in p.context.values() for a in attributes)
        # The names as JSON writes them; a match only keeps the text, so a false one costs memory, not results.
        self._read = re.compile("|".join(re.escape(json.dumps(name)) for name in sorted(names)) or "(?!)").search
        self._strings: dict[str, str] = {}
        self._nodes: dict[Node, Node] = {}

    def new(self, batches: Iterable[list[tuple[q.NewRow, list[Node]]]]) -> tuple[list[Member], int, int]:
        """Members of new observations (member columns and trace id, identity keys), how many
        observations were read, and the last one's id. An observation with neither an identity
        key nor a trace id shares no node with anything, so it is a member of nothing."""
        found: list[Member] = []
        count = last = 0
        for batch in batches:
            count, last = count + len(batch), batch[-1][0][0]
            self._new(batch, found)
        self._nodes.clear()  # the members hold their nodes; a backlog's index of them is large
        return found, count, last

    def _new(self, batch: list[tuple[q.NewRow, list[Node]]], found: list[Member]) -> None:
        strings, nodes, read, as_time = self._strings, self._nodes, self._read, q.as_time
        for row, keys in batch:
            oid, kind, system, operation, start, outcome, status_code, error_message, duplicates, text, trace = row
            if not keys and not trace:
                continue
            if len(keys) > 1:
                keys.sort()  # the engine returns them in any order; which link is refused must not depend on it
            own = [nodes.setdefault(k, k) for k in keys]
            if trace:
                node = (TRACE, trace)
                own.append(nodes.setdefault(node, node))
            found.append(
                Member(
                    oid,
                    strings.setdefault(kind, kind),
                    strings.setdefault(system, system),
                    strings.setdefault(operation, operation),
                    as_time(start),
                    strings.setdefault(outcome, outcome),
                    status_code,
                    error_message,
                    duplicates,
                    text if outcome == "error" or read(text) else None,
                    tuple(own),
                )
            )

    def stored(self, rows: Iterable[q.MemberRow], links: Iterable[tuple[int, Node]]) -> list[Member]:
        """Members of earlier observations, from their rows and (observation id, node) links."""
        nodes_of: dict[int, list[Node]] = {}
        for oid, node in links:
            nodes_of.setdefault(oid, []).append(node)
        found = []
        for row in rows:
            oid, kind, system, operation, start, outcome, status_code, error_message, duplicates, text = row
            nodes = tuple(sorted(nodes_of.get(oid, ()), key=lambda n: n[0] == TRACE))
            attributes = text if outcome == "error" or self._read(text) else None
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
                )
            )
        return found
