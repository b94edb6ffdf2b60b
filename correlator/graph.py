"""A batch's key graph in arrays: the connected components of its nodes, found in C.

Union-find in Python cost about 3 µs an observation of a backlog, and giving each observation to
its transaction as much again. Here each distinct node is numbered once (pandas' hash table), the
edges are numpy arrays, and scipy finds the components.

A vertex is a node within one process, ``code * P + process``: a key belongs to the process whose
keys include its type, and a trace id is a vertex in each process whose keys share a row with it,
as with one ``Linker`` per process. A component holding at most one root key can never have a
link refused, so it is final as the graph gives it; only the few holding two or more root keys are
linked again, row by row in arrival order, by ``correlator.components``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from correlator.linking import TRACE, Node
from correlator.processes import Process

NONE, SEVERAL = -1, -2  # a row held by no component, and by more than one


def owners_of_types(processes: Sequence[Process]) -> dict[str, int]:
    """The process (its index) whose keys a key type is: the last that names it."""
    return {key_type: index for index, p in enumerate(processes) for key_type in p.keys}


class KeyGraph:
    """The vertices and components of ``stored`` (per process: the node sets of its stored
    transactions) and ``rows`` (each an observation's nodes: identity keys, then its trace id)."""

    def __init__(self, processes: Sequence[Process], rows: Sequence[tuple[Node, ...]], stored: list[list[set[Node]]]):
        self.width = width = len(processes)
        owner = owners_of_types(processes)
        sets = [nodes for transactions in stored for nodes in transactions]
        flat = [node for nodes in sets for node in nodes]
        flat += [node for nodes in rows for node in nodes]
        codes, self.nodes = _numbered(flat)
        type_codes, types = pd.factorize(np.fromiter((node[0] for node in self.nodes), dtype=object))
        # Per node type: its process (-1 none, -2 a trace id) and whether it is a root in each process.
        type_process = np.array([-2 if t == TRACE else owner.get(t, -1) for t in types], dtype=np.int64)
        type_root = np.array([[t in p.roots for p in processes] for t in types], dtype=bool).reshape(-1, width)
        count = len(self.nodes) * width

        # Stored transactions: every node of one in its process, all connected.
        set_sizes = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        self.stored_process = [i for i, transactions in enumerate(stored) for _ in transactions]
        self.stored_offsets = np.cumsum([0, *map(len, stored)])[:-1].tolist()
        set_process = np.repeat(np.array(self.stored_process, dtype=np.int64), set_sizes)
        set_starts = np.cumsum(set_sizes) - set_sizes
        stored_codes = codes[: len(set_process)]
        stored_vertices = stored_codes * width + set_process
        first_vertex = np.repeat(stored_vertices[set_starts[set_sizes > 0]], set_sizes[set_sizes > 0])

        # Rows: the keys of one process in a row are connected, and with the row's trace id.
        row_codes = self.row_codes = codes[len(set_process) :]
        sizes = self.row_sizes = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        self.row_starts = np.cumsum(sizes) - sizes
        process = type_process[type_codes[row_codes]]
        keys = np.flatnonzero(process >= 0)
        group = np.repeat(np.arange(len(rows), dtype=np.int64), sizes)[keys] * width + process[keys]
        order = np.argsort(group, kind="stable")  # nearly sorted already: rows come in order
        keys, group = keys[order], group[order]
        key_vertices = row_codes[keys] * width + process[keys]
        same = group[1:] == group[:-1]
        leading = np.ones(len(group), dtype=bool)
        leading[1:] = ~same
        leads = np.flatnonzero(leading)
        lead_rows, lead_process = group[leads] // width, group[leads] % width
        self.group_rows, self.group_process, self.group_vertices = lead_rows, lead_process, key_vertices[leads]
        lasts = self.row_starts + sizes - 1
        traced = np.zeros(len(rows), dtype=bool)
        traced[sizes > 0] = process[lasts[sizes > 0]] == -2
        with_trace = traced[lead_rows]
        trace_vertices = row_codes[lasts[lead_rows[with_trace]]] * width + lead_process[with_trace]

        sources = np.concatenate([first_vertex, key_vertices[:-1][same], key_vertices[leads][with_trace]])
        targets = np.concatenate([stored_vertices, key_vertices[1:][same], trace_vertices])
        self.exists = np.zeros(count, dtype=bool)
        self.exists[sources] = True
        self.exists[targets] = True
        self.exists[key_vertices] = True
        edges = coo_matrix((np.ones(len(sources), dtype=np.int32), (sources, targets)), shape=(count, count))
        _, self.labels = connected_components(edges, directed=False)
        vertex_types = np.repeat(type_codes, width)
        self.is_root = self.exists & type_root[vertex_types, np.tile(np.arange(width), len(self.nodes))]
        self.is_key = self.exists & (type_process[vertex_types] != -2)
        roots = np.bincount(self.labels[self.is_root], minlength=count)
        self.constrained = roots >= 2  # per label: two root keys, so a link inside it may be refused
        # Per stored transaction, its component's label (all its nodes are connected); -1 if it has none.
        self.stored_labels = np.full(len(sets), -1, dtype=np.int64)
        self.stored_labels[set_sizes > 0] = self.labels[stored_vertices[set_starts[set_sizes > 0]]]

    def final(self) -> Iterator[tuple[int, list[Node], Node | None, int]]:
        """(process index, nodes, root node or None, label) of each component that needs no linking
        again and holds a key (one of trace ids alone is nobody's transaction)."""
        vertices = np.flatnonzero(self.exists & ~self.constrained[self.labels])
        if not len(vertices):
            return
        labels = self.labels[vertices]
        order = np.argsort(labels, kind="stable")
        vertices, labels = vertices[order], labels[order]
        cuts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        keyed = (np.add.reduceat(self.is_key[vertices].astype(np.int64), cuts) > 0).tolist()
        roots = np.flatnonzero(self.is_root[vertices])
        nodes = [self.nodes[code] for code in (vertices // self.width).tolist()]
        root_at = dict(zip((np.searchsorted(cuts, roots, side="right") - 1).tolist(), roots.tolist(), strict=True))
        bounds = [*cuts.tolist(), len(vertices)]
        processes = (vertices[cuts] % self.width).tolist()
        for group, (start, end) in enumerate(pairwise(bounds)):
            if keyed[group]:
                root = root_at.get(group)
                yield processes[group], nodes[start:end], None if root is None else nodes[root], int(labels[start])

    def relinked(self) -> tuple[list[list[int]], list[list[int]]]:
        """Per process, the stored transactions (their index in its list) and the rows (ascending)
        that lie in components holding two root keys or more: those are linked again row by row."""
        width = self.width
        rows: list[list[int]] = [[] for _ in range(width)]
        hit = self.constrained[self.labels[self.group_vertices]]
        for row, process in zip(self.group_rows[hit].tolist(), self.group_process[hit].tolist(), strict=True):
            rows[process].append(row)
        stored: list[list[int]] = [[] for _ in range(width)]
        hit_stored = (self.stored_labels >= 0) & self.constrained[np.maximum(self.stored_labels, 0)]
        for index in np.flatnonzero(hit_stored).tolist():
            stored[self.stored_process[index]].append(index - self.stored_offsets[self.stored_process[index]])
        return stored, rows

    def codes_of(self, nodes: set[Node]) -> dict[Node, int]:
        """The code of each of ``nodes`` (nodes of the components linked again: a handful)."""
        found = self.constrained[self.labels] & self.exists
        codes = {code for code in (np.flatnonzero(found) // self.width).tolist()}
        return {self.nodes[code]: code for code in codes if self.nodes[code] in nodes}

    def holders(self, vertex_component: np.ndarray) -> tuple[list[int], list[list[int]]]:
        """Per row, the component holding any of its nodes (``vertex_component`` gives each
        vertex's), NONE or SEVERAL; and for each row held by several, in row order, their list."""
        per_code = vertex_component.reshape(-1, self.width)
        held = (per_code >= 0).sum(axis=1)
        holder = np.where(held == 1, per_code.max(axis=1), np.where(held == 0, NONE, SEVERAL))
        entries = holder[self.row_codes]
        found = np.full(len(self.row_sizes), NONE, dtype=np.int64)
        filled = np.flatnonzero(self.row_sizes > 0)
        if len(filled):
            starts = self.row_starts[filled]
            low = np.minimum.reduceat(np.where(entries == NONE, _BEYOND, entries), starts)
            high = np.maximum.reduceat(entries, starts)
            found[filled] = np.where(low == _BEYOND, NONE, np.where((low == high) & (low >= 0), low, SEVERAL))
        several = []
        for row in np.flatnonzero(found == SEVERAL).tolist():
            start = int(self.row_starts[row])
            codes = self.row_codes[start : start + int(self.row_sizes[row])]
            several.append(sorted({c for c in per_code[codes].ravel().tolist() if c >= 0}))
        return found.tolist(), several


def _numbered(flat: list[Node]) -> tuple[np.ndarray, list[Node]]:
    """Each node's number, and the distinct nodes in that order. A reader shares one tuple among
    the rows holding a node, so the tuples are numbered by identity first (no hashing of them),
    and only the distinct tuples by value: equal nodes get one number however they were made."""
    by_identity, identities = pd.factorize(np.fromiter(map(id, flat), dtype=np.int64, count=len(flat)))
    one_of_each = np.empty(len(identities), dtype=np.int64)
    one_of_each[by_identity] = np.arange(len(flat))  # any occurrence: all of them are the same object
    distinct = [flat[i] for i in one_of_each.tolist()]
    by_value, nodes = pd.factorize(np.fromiter(distinct, dtype=object, count=len(distinct)))
    return by_value[by_identity], nodes.tolist()


_BEYOND = np.iinfo(np.int64).max
