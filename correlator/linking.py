"""Key linking: union-find over identity keys and trace ids, one process at a time.

A node is ``(key_type, value)``; trace ids are nodes of type ``trace``. Observations connect
their nodes. A union that would give one transaction two root keys (two marketplace orders, or a
marketplace order and a purchase order: a process starts with one of its root types) is refused:
that is how a batch trace spanning many orders, a bad reference, or two partners issuing the same
document id never merges two orders. Attribute keys (SKU, customer) never become nodes at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Node = tuple[str, str]
TRACE = "trace"
MAX_CONFLICTS = 20  # described per linker and pass; the rest are counted


@dataclass(frozen=True, slots=True)
class Conflict:
    """One observation named keys of two transactions that each have their own root key."""

    a: Node
    b: Node
    roots_a: dict[str, str]
    roots_b: dict[str, str]

    def describe(self) -> str:
        """'one observation named erp_order SO-2 (of po_number PO-7) and fulfillment_order 3PL-1
        (of marketplace_order 111-…): kept apart'."""
        return f"one observation named {_side(self.a, self.roots_a)} and {_side(self.b, self.roots_b)}: kept apart"


def _side(node: Node, roots: dict[str, str]) -> str:
    own = f"{node[0]} {node[1]}"
    if roots == {node[0]: node[1]}:
        return own
    return f"{own} (of {', '.join(f'{t} {v}' for t, v in sorted(roots.items()))})"


class Linker:
    """Connected components of nodes with at most one root key each. A component is known by its
    root node object: parents are compared by identity."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.root_types = frozenset(roots)
        self.parent: dict[Node, Node] = {}
        self.roots_of: dict[Node, dict[str, str]] = {}  # root values of each component that has any
        self.refused = 0
        # Refusals between two identity keys (not a batch trace spanning orders, which is expected):
        # (the two keys one observation carried, the root keys of each side), the first few kept.
        self.conflicts: list[Conflict] = []

    def add(self, node: Node) -> None:
        if node not in self.parent:
            self.parent[node] = node
            if node[0] in self.root_types:
                self.roots_of[node] = {node[0]: node[1]}

    def find(self, node: Node) -> Node:
        parent = self.parent
        root = node
        while parent[root] is not root:
            root = parent[root]
        while parent[node] is not root:
            parent[node], node = root, parent[node]
        return root

    def union(self, a: Node, b: Node) -> bool:
        find = self.find
        ra, rb = find(a), find(b)
        if ra is rb:
            return True
        roots_of = self.roots_of
        roots_a, roots_b = roots_of.get(ra), roots_of.get(rb)
        if roots_a and roots_b and roots_a != roots_b:
            self.refused += 1
            if a[0] != TRACE and b[0] != TRACE and len(self.conflicts) < MAX_CONFLICTS:
                self.conflicts.append(Conflict(a, b, dict(roots_a), dict(roots_b)))
            return False
        if len(roots_a or ()) < len(roots_b or ()):
            ra, rb, roots_a, roots_b = rb, ra, roots_b, roots_a
        self.parent[rb] = ra
        if roots_b:
            roots_a.update(roots_b)  # type: ignore[union-attr]
            del roots_of[rb]
        return True

    def link(self, nodes: list[Node]) -> None:
        """Connect the nodes one observation carries (strong keys first, traces last)."""
        for node in nodes:
            self.add(node)
        ordered = sorted(nodes, key=lambda n: n[0] == TRACE)
        for other in ordered[1:]:
            self.union(ordered[0], other)

    def link_row(self, keys: Sequence[Node], trace: Node | None) -> None:
        """``link(keys + [trace])`` for one observation whose keys and trace id are apart already:
        the same components, without sorting, for a pass's once-per-observation loop."""
        parent = self.parent
        for node in keys:
            if node not in parent:
                self.add(node)
        center = keys[0]
        for other in keys[1:]:
            self.union(center, other)
        if trace is None:
            return
        if trace in parent:
            self.union(center, trace)
        else:  # a trace seen first holds no root value: it joins the center's component as is
            parent[trace] = center

    def link_one(self, key: Node, trace: Node | None) -> None:
        """``link_row`` for an observation with one identity key."""
        parent = self.parent
        if key not in parent:
            self.add(key)
        if trace is None:
            return
        if trace in parent:
            self.union(key, trace)
        else:
            parent[trace] = key

    def components(self) -> dict[Node, list[Node]]:
        groups: dict[Node, list[Node]] = {}
        parent, find = self.parent, self.find
        for node, above in parent.items():
            # Most nodes hang right under their root (or are one): no call to find for them.
            root = above if parent[above] is above else find(node)
            groups.setdefault(root, []).append(node)
        return groups

    def root_values(self, node: Node) -> dict[str, str]:
        return self.roots_of.get(self.find(node), {})
