"""A batch's key graph in arrays: the connected components of its nodes, found in C.

Union-find in Python cost about 3 µs an observation of a backlog, and giving each observation to
its transaction as much again. Here each distinct node is numbered once (pandas' hash table), the
edges are numpy arrays, and scipy finds the components.

A vertex is a node within one process, ``code * P + process``: a key belongs to the process whose
keys include its type, and a trace id is a vertex in each process whose keys share a row with it,
as with one ``Linker`` per process. A component holding at most one root key can never have a
link refused, so it is final as the graph gives it; only the few holding two or more root keys are
linked again, row by row in arrival order, by ``correlator.components``.

The arrays of a backlog are large beside its members (tens of MB each), so they are made in
functions that let the intermediate ones go, and hold 32-bit numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from correlator.linking import TRACE, Node
from correlator.processes import Process

NONE, SEVERAL = -1, -2  # a row held by no component, and by more than one
KEYLESS, TRACE_ID = -1, -2  # the process of a node no process keys, and of a trace id
Index = np.int32  # codes and vertices: a batch holds far fewer than 2**31 / P distinct nodes


def owners_of_types(processes: Sequence[Process]) -> dict[str, int]:
    """The process (its index) whose keys a key type is: the last that names it."""
    return {key_type: index for index, p in enumerate(processes) for key_type in p.keys}


@dataclass
class _Rows:
    """The rows' nodes as codes, one after another, and what each row's groups are: a group is the
    keys one process has in a row, known by its first key's vertex."""

    codes: np.ndarray
    sizes: np.ndarray
    starts: np.ndarray
    group_rows: np.ndarray
    group_process: np.ndarray
    group_vertices: np.ndarray


class KeyGraph:
    """The vertices and components of ``stored`` (per process: the node sets of its stored
    transactions) and ``rows`` (each an observation's nodes: identity keys, then its trace id)."""

    def __init__(self, processes: Sequence[Process], rows: Sequence[tuple[Node, ...]], stored: list[list[set[Node]]]):
        self.width = width = len(processes)
        sets = [nodes for transactions in stored for nodes in transactions]
        codes, self.nodes = _numbered(sets, rows)
        node_process, node_roots = _kinds(processes, self.nodes)
        set_sizes = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        self.stored_process = [i for i, transactions in enumerate(stored) for _ in transactions]
        self.stored_offsets = np.cumsum([0, *map(len, stored)])[:-1].tolist()
        stored_sources, stored_targets = _stored_edges(codes[: set_sizes.sum()], set_sizes, self.stored_process, width)
        self.stored_vertices = stored_targets  # each stored node's vertex, set after set
        self.rows, sources, targets = _rows(codes[set_sizes.sum() :], rows, node_process, width)
        count = len(self.nodes) * width
        if count >= np.iinfo(Index).max:
            raise ValueError(f"{len(self.nodes):,} nodes in {width} processes are too many vertices for one batch")
        self.exists = np.zeros(count, dtype=bool)
        for vertices in (stored_targets, self.rows.group_vertices, targets):
            self.exists[vertices] = True
        sources, targets = np.concatenate([stored_sources, sources]), np.concatenate([stored_targets, targets])
        # Boolean weights: an edge given many times (every span of a trace) is one edge, not a sum that overflows.
        edges = coo_matrix((np.ones(len(sources), dtype=bool), (sources, targets)), shape=(count, count))
        del sources, targets
        self.labels = connected_components(edges, directed=False)[1].astype(Index, copy=False)
        del edges
        self.is_root = self.exists & node_roots.ravel()
        self.is_key = self.exists & np.repeat(node_process != TRACE_ID, width)
        # Per label: two root keys or more, so a link inside it may be refused.
        self.constrained = np.bincount(self.labels[self.is_root], minlength=count) >= 2
        self.settled = self.exists & ~self.constrained[self.labels]  # the vertices of final components
        # Per stored transaction, its component's label (all its nodes are connected); -1 if it has none.
        self.stored_labels = np.full(len(sets), -1, dtype=np.int64)
        filled = set_sizes > 0
        self.stored_labels[filled] = self.labels[stored_targets[(np.cumsum(set_sizes) - set_sizes)[filled]]]

    def final(self) -> Iterator[tuple[int, list[Node], Node | None, int]]:
        """(process index, nodes, root node or None, label) of each component that needs no linking
        again and holds a key (one of trace ids alone is nobody's transaction)."""
        vertices = np.flatnonzero(self.settled)
        if not len(vertices):
            return
        labels = self.labels[vertices]
        order = np.argsort(labels, kind="stable")
        vertices, labels = vertices[order], labels[order]
        cuts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        keyed = (np.add.reduceat(self.is_key[vertices].astype(np.int64), cuts) > 0).tolist()
        roots = np.flatnonzero(self.is_root[vertices])
        nodes = self.nodes[vertices // self.width].tolist()
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
        hit = self.constrained[self.labels[self.rows.group_vertices]]
        for row, process in zip(self.rows.group_rows[hit].tolist(), self.rows.group_process[hit].tolist(), strict=True):
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
        return {node: code for code in codes if (node := self.nodes[code]) in nodes}

    def holders(self, vertex_component: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
        """Per row, the component holding any of its nodes (``vertex_component`` gives each
        vertex's), NONE or SEVERAL; and for each row held by several, in row order, their list."""
        per_code = vertex_component.reshape(-1, self.width)
        held = (per_code >= 0).sum(axis=1)
        holder = np.where(held == 1, per_code.max(axis=1), np.where(held == 0, NONE, SEVERAL)).astype(Index)
        entries = holder[self.rows.codes]
        found = np.full(len(self.rows.sizes), NONE, dtype=Index)
        filled = np.flatnonzero(self.rows.sizes > 0)
        if len(filled):
            starts = self.rows.starts[filled]
            low = np.minimum.reduceat(np.where(entries == NONE, _BEYOND, entries), starts)
            high = np.maximum.reduceat(entries, starts)
            found[filled] = np.where(low == _BEYOND, NONE, np.where((low == high) & (low >= 0), low, SEVERAL))
        several = []
        for row in np.flatnonzero(found == SEVERAL).tolist():
            start = int(self.rows.starts[row])
            codes = self.rows.codes[start : start + int(self.rows.sizes[row])]
            several.append(sorted({c for c in per_code[codes].ravel().tolist() if c >= 0}))
        return found, several


_BEYOND = np.iinfo(Index).max


def _numbered(sets: list[set[Node]], rows: Sequence[tuple[Node, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Each node's number (the stored sets' nodes, then the rows'), and the distinct nodes in that
    order (an array: it hands out many at once in C). A reader shares one tuple among the rows
    holding a node, so the tuples are numbered by identity first (no hashing of them), and only
    the distinct tuples by value: equal nodes get one number however they were made. Without
    stored sets (read apart, their nodes equal some of the rows'), a batch read through one
    ``MemberReader`` has no two equal tuples: a set of them checks that at half the cost of
    numbering them by value or less, and the identity numbers stand."""
    flat = [node for nodes in sets for node in nodes]
    flat += [node for nodes in rows for node in nodes]
    by_identity, identities = pd.factorize(np.fromiter(map(id, flat), dtype=np.int64, count=len(flat)))
    one_of_each = np.empty(len(identities), dtype=np.int64)
    one_of_each[by_identity] = np.arange(len(flat))  # any occurrence: all of them are the same object
    distinct = [flat[i] for i in one_of_each.tolist()]
    del flat, identities, one_of_each
    nodes = np.fromiter(distinct, dtype=object, count=len(distinct))
    if not sets and len(set(distinct)) == len(distinct):
        return by_identity.astype(Index), nodes
    by_value, nodes = pd.factorize(nodes)
    return by_value.astype(Index)[by_identity], nodes


def _kinds(processes: Sequence[Process], nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per node: its process (KEYLESS, TRACE_ID), and whether it is a root key in each process."""
    owner = owners_of_types(processes)
    type_codes, types = pd.factorize(np.fromiter((node[0] for node in nodes), dtype=object, count=len(nodes)))
    type_process = np.array([TRACE_ID if t == TRACE else owner.get(t, KEYLESS) for t in types], dtype=Index)
    type_roots = np.array([[t in p.roots for p in processes] for t in types], dtype=bool).reshape(-1, len(processes))
    return type_process[type_codes], type_roots[type_codes]


def _stored_edges(codes: np.ndarray, sizes: np.ndarray, processes: list[int], width: int) -> tuple[np.ndarray, ...]:
    """Stored transactions: every node of one in its process, each connected to its first."""
    vertices = codes * Index(width) + np.repeat(np.array(processes, dtype=Index), sizes)
    starts = np.cumsum(sizes) - sizes
    filled = sizes > 0
    return np.repeat(vertices[starts[filled]], sizes[filled]), vertices


def _rows(
    codes: np.ndarray, rows: Sequence[tuple[Node, ...]], node_process: np.ndarray, width: int
) -> tuple[_Rows, np.ndarray, np.ndarray]:
    """The rows' codes and groups (in row order), and their edges: each key of a row to the first
    key its process has there, and that one to the row's trace id."""
    sizes = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    starts = np.cumsum(sizes) - sizes
    process = node_process[codes]
    keys = np.flatnonzero(process >= 0)
    group = np.repeat(np.arange(len(rows), dtype=np.int64), sizes)[keys] * width + process[keys]
    order = np.argsort(group, kind="stable")  # nearly sorted already: rows come in order
    keys, group = keys[order], group[order]
    del order
    targets = codes[keys] * Index(width) + process[keys]
    leading = np.ones(len(group), dtype=bool)
    leading[1:] = group[1:] != group[:-1]
    lead_group = group[leading]
    sources = targets[leading][np.cumsum(leading) - 1]
    found = _Rows(codes, sizes, starts, lead_group // width, lead_group % width, targets[leading])
    del keys, group, leading, lead_group
    lasts = starts + sizes - 1
    traced = np.zeros(len(rows), dtype=bool)
    traced[sizes > 0] = process[lasts[sizes > 0]] == TRACE_ID
    with_trace = traced[found.group_rows]
    trace_targets = codes[lasts[found.group_rows[with_trace]]] * Index(width) + found.group_process[with_trace]
    sources = np.concatenate([sources, found.group_vertices[with_trace]])
    return found, sources, np.concatenate([targets, trace_targets.astype(Index)])
