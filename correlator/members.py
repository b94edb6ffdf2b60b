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

    def new(self, rows: Iterable[tuple[q.NewRow, list[Node]]]) -> list[Member]:
        """Members of new observations (member columns and trace id, identity keys)."""
        strings, nodes, read, as_time = self._strings, self._nodes, self._read, q.as_time
        found = []
        for row, keys in rows:
            oid, kind, system, operation, start, outcome, status_code, error_message, duplicates, text, trace = row
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
        return found

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
