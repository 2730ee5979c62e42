"""Kernels as disjoint node sets: union-find over fusible edges (LILOU, Algorithm 1).

A kernel is a set of original graph nodes that one executed kernel computes. Two nodes can only run in the
same kernel when a chain of fusible edges joins them, so the kernels are exactly the connected components
of the graph restricted to fusible edges — which union-find finds in near-linear time.

ONNX Runtime also executes *no* kernel for some nodes: constant-folded shape arithmetic, Identity/Dropout,
dead code. Those nodes are passed as not ``executed``; they belong to no kernel, and an edge touching one
is never used for a union (a folded ``Shape`` node must not glue two real kernels together).

The order of the returned kernels is the order of their first node in the graph (graph nodes are stored in
topological order), which is also a valid execution order whenever the kernel DAG is acyclic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path compression and union by size.

    Union by size keeps trees shallow, so ``find`` stays O(α(n)) even for the adversarial chains a long
    sequence of fused element-wise ops produces (the paper's version without it degrades to O(n) per find).
    """

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"a union-find needs n >= 0 elements, got {n}")
        self.parent = list(range(n))
        self.size = [1] * n

    def __len__(self) -> int:
        return len(self.parent)

    def find(self, v: int) -> int:
        root = v
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[v] != root:  # path compression, iterative (no recursion limit on deep chains)
            self.parent[v], v = root, self.parent[v]
        return root

    def union(self, a: int, b: int) -> bool:
        """Merge the sets of ``a`` and ``b``; False when they were already one set."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True

    def groups(self, members: Iterable[int] | None = None) -> list[list[int]]:
        """The sets (each sorted), ordered by their smallest member; ``members`` restricts the elements."""
        out: dict[int, list[int]] = {}
        for v in range(len(self.parent)) if members is None else members:
            out.setdefault(self.find(v), []).append(v)
        groups = [sorted(g) for g in out.values()]
        groups.sort(key=lambda g: g[0])
        return groups


def extract_kernels(
    n_nodes: int,
    edges: np.ndarray | Sequence[tuple[int, int]],
    fused: np.ndarray | Sequence[bool],
    executed: np.ndarray | Sequence[bool] | None = None,
) -> list[list[int]]:
    """Disjoint node sets (kernels) from per-edge fusion decisions.

    ``edges`` is ``[2, E]`` (or a list of ``(src, dst)`` pairs) and ``fused`` one bool per edge. Nodes with
    ``executed`` False are in no kernel and their edges are ignored. Every executed node is in exactly one
    returned kernel (a node with no fused edge is a kernel of its own).
    """
    ei = np.asarray(edges, dtype=np.int64)
    if ei.size == 0:
        ei = np.zeros((2, 0), dtype=np.int64)
    elif ei.ndim == 2 and ei.shape[0] != 2 and ei.shape[1] == 2:
        ei = ei.T
    fused_a = np.asarray(fused, dtype=bool).reshape(-1)
    if ei.shape[1] != fused_a.size:
        raise ValueError(f"{ei.shape[1]} edges but {fused_a.size} fusion decisions")
    run = np.ones(n_nodes, dtype=bool) if executed is None else np.asarray(executed, dtype=bool).reshape(-1)
    if run.size != n_nodes:
        raise ValueError(f"{n_nodes} nodes but {run.size} executed flags")
    if ei.size and (ei.min() < 0 or ei.max() >= n_nodes):
        raise ValueError(f"edge endpoint out of range 0..{n_nodes - 1}")
    uf = UnionFind(n_nodes)
    # plain lists: a NumPy element read costs several times a list's, and this runs for every graph the fusion
    # rules see
    src, dst, live = ei[0].tolist(), ei[1].tolist(), run.tolist()
    for k in np.flatnonzero(fused_a).tolist():
        a, b = src[k], dst[k]
        if live[a] and live[b]:
            uf.union(a, b)
    return uf.groups(v for v in range(n_nodes) if live[v])


def kernel_assignment(n_nodes: int, kernels: Sequence[Sequence[int]]) -> np.ndarray:
    """``[n_nodes]`` kernel index per node, -1 for nodes in no kernel; raises on overlapping kernels."""
    out = [-1] * n_nodes  # a list while it fills: a NumPy element write costs several times a list's
    for k, nodes in enumerate(kernels):
        for v in nodes:
            if out[v] != -1:
                raise ValueError(f"node {v} is in kernels {out[v]} and {k}: kernels must be disjoint")
            out[v] = k
    return np.array(out, dtype=np.int64).reshape(n_nodes)


def fused_edges_of(kernels: Sequence[Sequence[int]], edges: np.ndarray, n_nodes: int) -> np.ndarray:
    """Per edge: True when both ends lie in the same kernel (the edge labels a partition implies)."""
    assign = kernel_assignment(n_nodes, kernels)
    ei = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    a, b = assign[ei[0]], assign[ei[1]]
    return (a >= 0) & (a == b)


def kernel_dag_cycles(kernels: Sequence[Sequence[int]], edges: np.ndarray, n_nodes: int) -> int:
    """How many kernels sit on a cycle of the kernel DAG (0 for a partition a runtime could execute).

    Union-find does not check convexity: fusing A→B while A→C→B stays unfused puts {A, B} both before and
    after C. Runtimes never do that, so a non-zero count flags an implausible predicted partition.
    """
    assign = kernel_assignment(n_nodes, kernels)
    ei = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    succ: dict[int, set[int]] = {}
    for a, b in zip(assign[ei[0]], assign[ei[1]], strict=True):
        if a >= 0 and b >= 0 and a != b:
            succ.setdefault(int(a), set()).add(int(b))
    # Tarjan's strongly connected components, iterative
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    counter = 0
    in_cycle = 0
    for root in range(len(kernels)):
        if root in index:
            continue
        work: list[tuple[int, Any]] = [(root, iter(sorted(succ.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(succ.get(nxt, ())))))
                elif nxt in on_stack:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                size = 0
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    size += 1
                    if w == v:
                        break
                if size > 1:
                    in_cycle += size
    return in_cycle


@dataclass
class PredictedKernel:
    """One kernel of a predicted fused graph: its original nodes, predicted type and latency."""

    nodes: list[int]
    node_names: list[str]
    kernel_type: str
    latency_ms: float
    #: the likeliest types with the classifier's probability (None for a type only the rules name)
    type_top: list[tuple[str, float | None]] = field(default_factory=list)
    #: the kernel model's own duration, before the aggregator adds per-kernel runtime overhead
    raw_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.node_names,
            "kernel_type": self.kernel_type,
            "latency_ms": self.latency_ms,
            "raw_ms": self.raw_ms,
            "type_top": [[t, p] for t, p in self.type_top],
        }


@dataclass
class FusedGraph:
    """The aggregator's output: the graph re-assembled into kernels (LILOU's "optimized graph").

    ``latency_ms = fixed_ms + Σ kernel.latency_ms`` holds exactly: each kernel's latency already includes
    its share of per-kernel runtime overhead, and ``fixed_ms`` is the per-run constant. ``dropped`` are the
    nodes predicted to run in no kernel (constant-folded or eliminated).
    """

    graph_name: str
    kernels: list[PredictedKernel]
    dropped: list[str]
    fixed_ms: float
    fused_edges: int
    n_edges: int
    #: set when the run's compute share lay outside the training shares: predicted at the nearest trained
    #: share, then scaled (``{"share", "predicted_at", "exponent", "factor"}``)
    share_extrapolation: dict[str, float] | None = None

    def scale(self, factor: float, info: dict[str, float]) -> None:
        """Multiply every kernel and the fixed overhead by ``factor`` (the sum identity keeps holding)."""
        for k in self.kernels:
            k.latency_ms *= factor
        self.fixed_ms *= factor
        self.share_extrapolation = {**info, "factor": factor}

    @property
    def latency_ms(self) -> float:
        return self.fixed_ms + sum(k.latency_ms for k in self.kernels)

    @property
    def raw_kernel_sum_ms(self) -> float:
        """Σ of the kernel model's durations: comparable with a profile's (median) kernel sum."""
        return sum(k.raw_ms if k.raw_ms is not None else k.latency_ms for k in self.kernels)

    def by_type(self) -> dict[str, float]:
        """Share of the predicted latency per kernel type (plus ``"(fixed overhead)"``), summing to 1."""
        total = self.latency_ms
        if total <= 0:
            return {}
        shares: dict[str, float] = {}
        for k in self.kernels:
            shares[k.kernel_type] = shares.get(k.kernel_type, 0.0) + k.latency_ms / total
        if self.fixed_ms > 0:
            shares["(fixed overhead)"] = self.fixed_ms / total
        return dict(sorted(shares.items(), key=lambda kv: -kv[1]))

    def breakdown(self, top: int = 10) -> dict[str, Any]:
        """What ``Prediction.breakdown`` carries: top kernels by time and the share per kernel type."""
        total = self.latency_ms
        ranked = sorted(self.kernels, key=lambda k: -k.latency_ms)
        return {
            "latency_ms": total,
            "kernel_sum_ms": total - self.fixed_ms,
            "fixed_ms": self.fixed_ms,
            "n_kernels": len(self.kernels),
            "n_dropped_nodes": len(self.dropped),
            "fused_edges": self.fused_edges,
            "n_edges": self.n_edges,
            "top_kernels": [
                {**k.to_dict(), "share": (k.latency_ms / total) if total > 0 else None} for k in ranked[:top]
            ],
            "by_type": self.by_type(),
            **({"share_extrapolation": self.share_extrapolation} if self.share_extrapolation else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph_name,
            "latency_ms": self.latency_ms,
            "fixed_ms": self.fixed_ms,
            "kernels": [k.to_dict() for k in self.kernels],
            "dropped": list(self.dropped),
            "fused_edges": self.fused_edges,
            "n_edges": self.n_edges,
        }
