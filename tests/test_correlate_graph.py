"""Linking through the key graph gives what linking every row by a Linker gives: the same
components, refusals, conflicts (in order) and members, whatever the rows."""

from __future__ import annotations

import random
from dataclasses import replace
from types import SimpleNamespace

import pytest

from correlator.components import link
from correlator.graph import _numbered
from correlator.linking import TRACE, Linker, Node
from correlator.processes import Process, compile_processes
from syncwatch.config import load_config

Rows = list[tuple[Node, ...]]
POOLS = {
    "marketplace_order": 4,
    "po_number": 3,
    "erp_order": 6,
    "shipment": 6,
    "adjustment": 3,
    "rma": 3,
    "customer_ref": 3,  # an identity key no process names: it links nothing
}


def _processes(shared_type: bool) -> list[Process]:
    processes = list(compile_processes(load_config()))
    if shared_type:  # two processes name one key type: the later one's it is
        processes[-1] = replace(processes[-1], keys=processes[-1].keys | {"shipment"})
    return processes


def _rows(rng: random.Random, count: int) -> Rows:
    rows: Rows = []
    for _ in range(count):
        if rows and rng.random() < 0.1:
            rows.append(rng.choice(rows))  # delivered twice
            continue
        types = rng.sample(sorted(POOLS), rng.randint(0, 3))
        keys = sorted({(t, f"{t[:2]}{rng.randrange(POOLS[t])}") for t in types})
        trace = [(TRACE, f"t{rng.randrange(8)}")] if rng.random() < 0.6 else []
        rows.append((*keys, *trace))
    return rows


def _stored(rng: random.Random) -> dict[str, set[Node]]:
    """Transactions as passes store them: a process's share no node, and each has one root key."""
    stored: dict[str, set[Node]] = {}
    traces = rng.sample(range(8), 4)
    for n in rng.sample(range(4), rng.randint(0, 3)):
        nodes = {("marketplace_order", f"ma{n}"), ("erp_order", f"er{n}")}
        if rng.random() < 0.5:
            nodes.add((TRACE, f"t{traces[n]}"))
        stored[f"order:stored-{n}"] = nodes
    if rng.random() < 0.3:
        stored["inventory_sync:stored"] = {("adjustment", f"ad{rng.randrange(3)}"), (TRACE, f"t{rng.randrange(8)}")}
    orders = sorted(tid for tid in stored if tid.startswith("order:"))
    if orders and rng.random() < 0.4:  # stale data holding all of another's nodes: both are replaced
        extra = rng.choice([("shipment", f"sh{rng.randrange(6)}"), ("po_number", f"po{rng.randrange(3)}")])
        stored["order:overlapping"] = stored[rng.choice(orders)] | {extra}
    return stored


def _linked_row_by_row(processes: list[Process], rows: Rows, stored: dict[str, set[Node]]) -> tuple:
    """Every row through a Linker per process, as passes linked before the key graph."""
    linkers = {p.name: Linker(p.roots) for p in processes}
    mine = {p.name: {t: n for t, n in stored.items() if t.startswith(f"{p.name}:")} for p in processes}
    for name, transactions in mine.items():
        for nodes in transactions.values():
            linkers[name].link(sorted(nodes))
    owner = {key_type: linkers[p.name] for p in processes for key_type in p.keys}
    seen: set[tuple[Node, ...]] = set()
    for nodes in rows:
        if nodes in seen:
            continue
        seen.add(nodes)
        trace = nodes[-1] if nodes and nodes[-1][0] == TRACE else None
        groups: dict[Linker, list[Node]] = {}
        for node in nodes[:-1] if trace else nodes:
            if node[0] in owner:
                groups.setdefault(owner[node[0]], []).append(node)
        for linker, own in groups.items():
            linker.link_row(own, trace)
    components = set()
    for p in processes:
        linker = linkers[p.name]
        for nodes in linker.components().values():
            if all(n[0] == TRACE for n in nodes):
                continue
            previous = frozenset(t for t, held in mine[p.name].items() if held & set(nodes))
            roots = tuple(sorted(linker.root_values(nodes[0]).items()))
            components.add((p.name, frozenset(nodes), roots, previous))
    conflicts = [c.describe() for linker in linkers.values() for c in linker.conflicts]
    refused = sum(linker.refused for linker in linkers.values())
    members = [{c for c in components if c[1] & set(row)} for row in rows]
    return components, refused, conflicts, members


def _linked_by_graph(processes: list[Process], rows: Rows, stored: dict[str, set[Node]]) -> tuple:
    linked = link(processes, rows, stored)
    described = {}
    for c in linked.components:
        described[id(c)] = (c.process.name, frozenset(c.nodes), tuple(sorted(c.roots.items())), frozenset(c.previous))
    linked.add_members([SimpleNamespace(id=i, nodes=row) for i, row in enumerate(rows)])
    members: list[set] = [set() for _ in rows]
    for c in linked.components:
        for i in c.members:
            members[i].add(described[id(c)])
    conflicts = [c.describe() for c in linked.conflicts]
    return set(described.values()), linked.refused, conflicts, members


@pytest.mark.parametrize("shared_type", [False, True])
def test_the_key_graph_links_as_every_row_through_a_linker_would(shared_type: bool) -> None:
    processes = _processes(shared_type)
    rng = random.Random(5)
    refusing = several = 0
    for _ in range(300):
        rows, stored = _rows(rng, rng.randint(0, 40)), _stored(rng)
        expected = _linked_row_by_row(processes, rows, stored)
        assert _linked_by_graph(processes, rows, stored) == expected
        refusing += expected[1] > 0
        several += any(len(held) > 1 for held in expected[3])
    # The cases that take the graph's slow paths came up often: links refused, rows held twice.
    assert refusing > 100 and several > 100


def test_without_processes_nothing_links() -> None:
    rows: Rows = [(("erp_order", "er1"), (TRACE, "t1")), ((TRACE, "t1"),)]
    linked = link([], rows, {})
    assert (linked.components, linked.refused, linked.conflicts) == ([], 0, [])
    linked.add_members([SimpleNamespace(id=i, nodes=row) for i, row in enumerate(rows)])


def test_rows_that_link_nothing_make_no_component() -> None:
    processes = _processes(False)
    rows: Rows = [(), ((TRACE, "t1"),), (("customer_ref", "cu1"), (TRACE, "t1"))]
    linked = link(processes, rows, {})
    assert linked.components == [] and linked.refused == 0
    linked.add_members([SimpleNamespace(id=i, nodes=row) for i, row in enumerate(rows)])


def test_equal_nodes_get_one_number_whether_or_not_they_are_one_object() -> None:
    def made(value: str) -> Node:  # a new tuple each call, as rows read apart make them
        return ("erp_order", "".join(value))

    shared = made("SO-1")
    apart_codes, apart_nodes = _numbered([], [(made("SO-1"),), (made("SO-1"), made("SO-2"))])
    one_codes, one_nodes = _numbered([], [(shared,), (shared, made("SO-2"))])
    assert apart_codes.tolist() == one_codes.tolist() == [0, 0, 1]
    assert apart_nodes.tolist() == one_nodes.tolist() == [("erp_order", "SO-1"), ("erp_order", "SO-2")]
