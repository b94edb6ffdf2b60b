"""Components: the transactions a batch touches, linked from its observations' nodes and from the
stored transactions holding them, and the observations that belong to each.

These loops run once per observation of a backlog (1M+ from empty), so they work on shared node
tuples, skip observations that link nothing new, and call as little as they can per row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from correlator.linking import TRACE, Conflict, Linker, Node
from correlator.processes import Member, Process

# The nodes of an observation: its identity keys first, then its trace id.
Nodes = tuple[Node, ...]


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
            return min(self.roots.items())[1]
        return min(n for n in self.nodes if n[0] != TRACE)[1]

    @property
    def id(self) -> str:
        root = min(self.roots.items()) if self.roots else min(n for n in self.nodes if n[0] != TRACE)
        text = f"{self.process.name}:{root[1]}" if self.roots else f"{self.process.name}:~{root[0]}:{root[1]}"
        return text if len(text) <= 64 else f"{self.process.name}:{hashlib.sha1(text.encode()).hexdigest()[:24]}"


def link(
    processes: Sequence[Process], rows: Iterable[Nodes], stored: dict[str, set[Node]]
) -> tuple[list[Component], int, list[Conflict]]:
    """Every process's components, how many links were refused and the conflicts between
    identity keys among them (see ``Linker.conflicts``): first the stored transactions the rows
    touch, then the rows in arrival order. Each row links the keys of each process it carries
    with its trace; a row with the same nodes as an earlier one changes nothing and is skipped."""
    linkers = {p.name: Linker(p.roots) for p in processes}
    mine = {p.name: {tid: nodes for tid, nodes in stored.items() if tid.startswith(f"{p.name}:")} for p in processes}
    for name, transactions in mine.items():
        for nodes in transactions.values():
            linkers[name].link(sorted(nodes))
    owner = {key_type: linkers[p.name] for p in processes for key_type in p.keys}
    seen: set[Nodes] = set()
    for nodes in rows:
        before = len(seen)
        seen.add(nodes)  # and see whether it grew: one hash of the nodes, not two
        if len(seen) == before:
            continue
        trace = nodes[-1] if nodes and nodes[-1][0] == TRACE else None
        if len(nodes) - (trace is not None) == 1:  # one key (most rows): no slices, no loops
            linker = owner.get(nodes[0][0])
            if linker is not None:
                linker.link_one(nodes[0], trace)
            continue
        keys = nodes[:-1] if trace else nodes
        groups: dict[Linker, list[Node]] = {}
        for node in keys:
            linker = owner.get(node[0])
            if linker is not None:
                groups.setdefault(linker, []).append(node)
        for linker, own in groups.items():
            linker.link_row(own, trace)
    components = [c for p in processes for c in _components(p, linkers[p.name], mine[p.name])]
    conflicts = [c for linker in linkers.values() for c in linker.conflicts]
    return components, sum(linker.refused for linker in linkers.values()), conflicts


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


Owners = tuple[dict[Node, Component], dict[Node, list[Component]]]


def owners(components: Iterable[Component]) -> Owners:
    """The component holding each node, and apart, the nodes several hold: a trace id may be in one
    component of each process. A process's components share no node, so its map is made in C, a
    component at a time, and only the nodes two processes share are listed (a backlog has 1.6M)."""
    by_process: dict[str, dict[Node, Component]] = {}
    for component in components:
        by_process.setdefault(component.process.name, {}).update(dict.fromkeys(component.nodes, component))
    single: dict[Node, Component] = {}
    several: dict[Node, list[Component]] = {}
    for held in by_process.values():
        for node in single.keys() & held.keys():
            several.setdefault(node, [single[node]]).append(held[node])
        single.update(held)
    for node in several:
        del single[node]
    return single, several


def add_members(owned: Owners, members: Iterable[Member]) -> None:
    """Make each member a member of every component holding one of its nodes."""
    single, several = owned
    one, many = single.get, several.get
    for member in members:
        oid = member.id
        for node in member.nodes:
            component = one(node)
            if component is not None:
                component.members[oid] = member
            else:
                for component in many(node, ()):
                    component.members[oid] = member


def older_nodes(components: list[Component], fresh_after: int | None) -> set[Node]:
    """Nodes whose earlier observations must be read: all of them outside a batch of new
    observations; in one, those of stored transactions, and trace ids (a trace-only span may
    precede them). From empty there are no earlier observations."""
    if fresh_after is None:
        return {n for c in components for n in c.nodes}
    if fresh_after == 0:
        return set()
    return {n for c in components for n in c.nodes if c.previous or n[0] == TRACE}
