"""Union-find kernel extraction and the fused-graph aggregate (no torch, no ORT)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from inferperf.predict.fusion.kernels import (
    FusedGraph,
    PredictedKernel,
    UnionFind,
    extract_kernels,
    fused_edges_of,
    kernel_assignment,
    kernel_dag_cycles,
)


def _components_by_search(n: int, edges: list[tuple[int, int]], keep: np.ndarray, run: np.ndarray) -> set:
    """Reference: connected components by depth-first search over kept edges between running nodes."""
    adj: dict[int, set[int]] = {v: set() for v in range(n)}
    for (a, b), k in zip(edges, keep, strict=True):
        if k and run[a] and run[b]:
            adj[a].add(b)
            adj[b].add(a)
    seen, comps = set(), set()
    for v in range(n):
        if v in seen or not run[v]:
            continue
        stack, comp = [v], set()
        while stack:
            u = stack.pop()
            if u in comp:
                continue
            comp.add(u)
            stack.extend(adj[u] - comp)
        seen |= comp
        comps.add(frozenset(comp))
    return comps


@pytest.mark.parametrize("seed", range(8))
def test_extract_kernels_matches_graph_search_on_random_dags(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    edges = [(a, b) for b in range(n) for a in range(b) if rng.random() < 3 / max(n, 1)]
    keep = np.array([rng.random() < 0.5 for _ in edges], dtype=bool)
    run = np.array([rng.random() < 0.85 for _ in range(n)], dtype=bool)
    ei = np.array(edges, dtype=np.int64).T if edges else np.zeros((2, 0), dtype=np.int64)
    kernels = extract_kernels(n, ei, keep, run)
    assert {frozenset(k) for k in kernels} == _components_by_search(n, edges, keep, run)
    covered = [v for k in kernels for v in k]
    assert sorted(covered) == sorted(np.flatnonzero(run).tolist())  # every running node exactly once
    assert [k[0] for k in kernels] == sorted(k[0] for k in kernels)  # ordered by first node
    assert all(k == sorted(k) for k in kernels)


def test_dropped_node_does_not_glue_kernels() -> None:
    # 0 -> 1 -> 2 with both edges fused, but node 1 never runs (constant-folded)
    kernels = extract_kernels(3, [(0, 1), (1, 2)], [True, True], [True, False, True])
    assert kernels == [[0], [2]]


def test_union_find_long_chain_stays_shallow() -> None:
    uf = UnionFind(20_000)
    for v in range(1, 20_000):
        uf.union(v - 1, v)
    assert uf.find(19_999) == uf.find(0)
    assert len(uf.groups()) == 1
    assert not uf.union(5, 17)  # already joined


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="fusion decisions"):
        extract_kernels(3, [(0, 1), (1, 2)], [True])
    with pytest.raises(ValueError, match="out of range"):
        extract_kernels(2, [(0, 5)], [True])
    with pytest.raises(ValueError, match="disjoint"):
        kernel_assignment(3, [[0, 1], [1, 2]])


def test_fused_edges_follow_the_partition() -> None:
    ei = np.array([[0, 1, 2, 0], [1, 2, 3, 3]])
    kernels = [[0, 1], [2, 3]]
    assert fused_edges_of(kernels, ei, 4).tolist() == [True, False, True, False]
    assert fused_edges_of([[0, 1]], ei, 4).tolist() == [True, False, False, False]  # 2, 3 run in no kernel


def test_kernel_dag_cycles_flags_non_convex_fusion() -> None:
    # A -> C -> B and A -> B: fusing {A, B} without C puts C both after and before that kernel
    ei = np.array([[0, 2, 0], [2, 1, 1]])
    assert kernel_dag_cycles([[0, 1], [2]], ei, 3) == 2
    assert kernel_dag_cycles([[0], [1], [2]], ei, 3) == 0
    assert kernel_dag_cycles([[0, 1, 2]], ei, 3) == 0


def test_breakdown_sums_to_the_total() -> None:
    kernels = [PredictedKernel([0, 1], ["conv", "relu"], "Conv+Relu", 2.0),
               PredictedKernel([2], ["add"], "Elementwise:Add", 0.5),
               PredictedKernel([3], ["conv2"], "Conv+Relu", 1.0)]
    fused = FusedGraph("g", kernels, dropped=["shape"], fixed_ms=0.25, fused_edges=1, n_edges=4)
    b = fused.breakdown(top=2)
    assert b["latency_ms"] == pytest.approx(3.75)
    assert b["kernel_sum_ms"] + b["fixed_ms"] == pytest.approx(b["latency_ms"])
    assert sum(b["by_type"].values()) == pytest.approx(1.0)
    assert b["by_type"]["Conv+Relu"] == pytest.approx(3.0 / 3.75)
    assert [k["kernel_type"] for k in b["top_kernels"]] == ["Conv+Relu", "Conv+Relu"]
    assert b["top_kernels"][0]["latency_ms"] == 2.0
    assert b["n_dropped_nodes"] == 1
