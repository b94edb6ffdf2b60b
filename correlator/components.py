"""Components: the transactions a batch touches, linked from its observations' nodes and from the
stored transactions holding them, and the observations that belong to each.

A backlog holds 1M+ observations from empty, so the key graph's components are found in arrays
(``correlator.graph``) and only the rare component holding two root keys is linked row by row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from correlator.graph import NONE, SEVERAL, Index, KeyGraph, owners_of_types
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


@dataclass
class Linked:
    """What linking a batch found: its components, the links refused and the conflicts between
    identity keys among them (see ``Linker.conflicts``), and which components hold each row."""

    components: list[Component]
    refused: int
    conflicts: list[Conflict]
    holders: np.ndarray  # per row: the index of the component holding its nodes, NONE or SEVERAL
    several: list[list[int]]  # for each row held by several components, in row order: their indexes

    def add_members(self, members: Iterable[Member]) -> None:
        """Make each of ``members`` (one per row linked, in that order) a member of every
        component holding one of its nodes: ``add_members`` without a lookup per node."""
        components, several = self.components, iter(self.several)
        for member, index in zip(members, self.holders.tolist(), strict=True):
            if index >= 0:
                components[index].members[member.id] = member
            elif index == SEVERAL:
                for each in next(several):
                    components[each].members[member.id] = member


def link(processes: Sequence[Process], rows: Sequence[Nodes], stored: dict[str, set[Node]]) -> Linked:
    """Every process's components of the stored transactions the rows touch and of the rows (in
    arrival order). Each row links the keys of each process it carries with its trace. The key
    graph's components are final where they hold at most one root key; the others are linked
    again here by a ``Linker``, the stored transactions first, then row by row, so a refused link
    depends on arrival order exactly as it would with every row linked so."""
    if not processes:  # a config without processes: nothing makes a transaction
        return Linked([], 0, [], np.full(len(rows), NONE, dtype=Index), [])
    mine = [{tid: nodes for tid, nodes in stored.items() if tid.startswith(f"{p.name}:")} for p in processes]
    graph = KeyGraph(processes, rows, [list(transactions.values()) for transactions in mine])
    components: list[Component] = []
    vertex_component = np.full(len(graph.exists), NONE, dtype=Index)
    labels: list[int] = []
    for index, nodes, root, label in graph.final():
        components.append(Component(processes[index], set(nodes), {} if root is None else {root[0]: root[1]}))
        labels.append(label)
    final = np.full(len(graph.labels), NONE, dtype=Index)
    final[labels] = range(len(components))
    vertex_component[graph.settled] = final[graph.labels[graph.settled]]
    again, refused, conflicts = _linked_again(processes, rows, mine, graph, owners_of_types(processes))
    codes = graph.codes_of({node for _, component in again for node in component.nodes})
    for index, (process, component) in enumerate(again, start=len(components)):
        for node in component.nodes:
            vertex_component[codes[node] * graph.width + process] = index
    components.extend(component for _, component in again)
    # Each component replaces every stored transaction holding one of its nodes.
    holding = [tid for transactions in mine for tid, nodes in transactions.items() for _ in nodes]
    for tid, index in zip(holding, vertex_component[graph.stored_vertices].tolist(), strict=True):
        if index >= 0:
            components[index].previous.add(tid)
    holders, several = graph.holders(vertex_component)
    return Linked(components, refused, conflicts, holders, several)


def _linked_again(
    processes: Sequence[Process],
    rows: Sequence[Nodes],
    mine: list[dict[str, set[Node]]],
    graph: KeyGraph,
    owner: dict[str, int],
) -> tuple[list[tuple[int, Component]], int, list[Conflict]]:
    """The components holding two root keys or more, with their process's index, linked by a
    ``Linker`` per process: first the stored transactions they hold, then their rows in arrival
    order; a row with the same nodes as an earlier one changes nothing and is skipped."""
    stored, relinked = graph.relinked()
    components: list[tuple[int, Component]] = []
    refused, conflicts = 0, []
    for index, (process, transactions) in enumerate(zip(processes, mine, strict=True)):
        indexes, row_indexes = stored[index], relinked[index]
        if not indexes and not row_indexes:
            continue
        linker = Linker(process.roots)
        held = list(transactions.values())
        for i in indexes:
            linker.link(sorted(held[i]))
        seen: set[Nodes] = set()
        for row in row_indexes:
            nodes = rows[row]
            if nodes in seen:
                continue
            seen.add(nodes)
            trace = nodes[-1] if nodes[-1][0] == TRACE else None
            keys = nodes[:-1] if trace else nodes
            linker.link_row([node for node in keys if owner.get(node[0]) == index], trace)
        components.extend((index, component) for component in _components(process, linker))
        refused += linker.refused
        conflicts.extend(linker.conflicts)
    return components, refused, conflicts


def _components(process: Process, linker: Linker) -> list[Component]:
    components = []
    for nodes in linker.components().values():
        if all(n[0] == TRACE for n in nodes):
            continue
        components.append(Component(process, set(nodes), dict(linker.root_values(nodes[0]))))
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
