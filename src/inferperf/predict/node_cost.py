"""A learned cost per compute node (convolution, MatMul / Gemm, recurrent cell), fitted on the durations of the
kernels ONNX Runtime profiled — the nn-Meter idea of a regressor per kernel, used inside a composing model.

Why: the additive model (:mod:`inferperf.predict.additive`) gives every MAC of a kind one price, but a
runtime's kernels run at very different efficiencies for different shapes: a 1×1 convolution to 1024
channels, a 7×7 one from 512 channels to 1, a MatMul 768 wide at sequence 8 and at sequence 256 are all
"dense MACs" at one price. The profiled kernels say, per shape, what each one took, and shapes recur across
families where architectures do not. A gradient-boosted regressor on a compute node's shape (output / input
channels, kernel size, stride, spatial size, M·N·K, whether ORT runs it in the NCHWc layout or through
im2col, the thread count) learns those efficiencies from every family at once; summed over a graph's compute
nodes it is a second opinion on the compute part of the latency that the additive-gbm correction can weigh
against the prices (leave-one-family-out on the reference data: 11.97% → 11.5% mean latency MAPE).

Examples are the kernels that hold exactly one compute node (its fused activation, bias or padding rides
along); a kernel holding two compute nodes, or none, says nothing about one node's cost and is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.dataset.core import Sample
from inferperf.ir.features import node_kinds
from inferperf.ir.graph import ModelGraph
from inferperf.predict.additive import _nchwc_conv, im2col_mb

#: MAC kinds of :func:`inferperf.ir.features.mac_kind`, in the order the ``kind`` feature codes them
NODE_KINDS: tuple[str, ...] = ("conv_dense", "conv_depthwise", "conv_grouped", "matmul_weights",
                               "matmul_activations", "recurrent")
#: the per-node features, in order (a change of layout changes :data:`NODE_COST_VERSION`)
NODE_COST_FEATURE_NAMES: tuple[str, ...] = (
    "kind", "log2_macs", "log2_bytes_read", "log2_bytes_written", "log2_out_numel",
    "log2_n_or_cout", "log2_k_or_cin_per_group", "kernel_h", "kernel_w", "stride", "log2_group",
    "log2_m_or_spatial", "nchwc", "log2_im2col_bytes", "n_or_cout_mod_block", "k_or_cin_mod_block",
    "log2_batch", "log2_threads",
)
NODE_COST_VERSION = 1


def _l2(x: float) -> float:
    return math.log2(max(float(x), 1.0))


def compute_nodes(graph: ModelGraph) -> list[tuple[int, str]]:
    """(node index, MAC kind) of the nodes that do the graph's multiply-accumulates at run time (constant
    nodes are folded at session start and cost nothing)."""
    out = []
    kinds = node_kinds(graph)
    for n in graph.running_nodes():
        if not n.macs:
            continue
        kind = kinds[n.index][1]
        if kind in NODE_KINDS:
            out.append((n.index, kind))
    return out


#: columns of a node row that are log2(max(x, 1)) of a raw amount (applied to the whole matrix at once)
_LOG2_COLUMNS = np.array([NODE_COST_FEATURE_NAMES.index(c) for c in NODE_COST_FEATURE_NAMES[:-1]
                          if c.startswith("log2_")])


def _node_row(node: Any, kind: str, block: int) -> list[float]:
    """The raw amounts of one compute node's row (the ``log2_`` columns not yet logged)."""
    shape = node.outputs[0].shape if node.outputs and node.outputs[0].shape is not None else ()
    numel = math.prod(shape) if shape else 1
    batch = shape[0] if shape else 1
    row = [float(NODE_KINDS.index(kind)), node.macs, node.bytes_read, node.bytes_written, numel]
    if kind.startswith("conv"):
        w = node.inputs[1].shape if len(node.inputs) > 1 and node.inputs[1].shape is not None else ()
        w = tuple(w) + (1,) * (4 - len(w)) if len(w) < 4 else tuple(w)
        group = int(node.attributes.get("group", 1) or 1)
        strides = node.attributes.get("strides") or [1]
        cout, cin_pg = int(w[0]), int(w[1])
        spatial = numel // max(cout, 1) // max(batch, 1)
        blocked = block > 0 and _nchwc_conv(node, block)
        row += [cout, cin_pg, float(w[2]), float(w[3]), float(strides[0]), group, spatial,
                float(blocked), im2col_mb(node, block) * 1e6, float(cout % max(block, 1)),
                float(cin_pg % max(block, 1))]
    else:  # MatMul / Gemm / recurrent: out [..., M, N], K from the MACs
        n_dim = int(shape[-1]) if shape else 1
        m_dim = max(numel // max(n_dim, 1), 1)
        k_dim = max(int(node.macs) // max(numel, 1), 1)
        row += [n_dim, k_dim, 0.0, 0.0, 0.0, 0.0, m_dim, 0.0, 0.0, float(n_dim % max(block, 1)),
                float(k_dim % max(block, 1))]
    row.append(batch)
    return row


def graph_node_features(graph: ModelGraph, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(node indices [k], features [k, F-1]) of the graph's compute nodes, without the thread count (a run
    setting); memoised on the graph (every fit and fold reuses the graphs)."""
    def compute() -> tuple[np.ndarray, np.ndarray]:
        nodes = compute_nodes(graph)
        idx = np.array([i for i, _ in nodes], dtype=np.int64)
        if not nodes:
            return idx, np.zeros((0, len(NODE_COST_FEATURE_NAMES) - 1))
        x = np.array([_node_row(graph.nodes[i], k, block) for i, k in nodes], dtype=np.float64)
        x[:, _LOG2_COLUMNS] = np.log2(np.maximum(x[:, _LOG2_COLUMNS], 1.0))
        return idx, x

    return graph.derived(("node_cost_features", block), compute)


def _threads(config: dict[str, Any]) -> int:
    return int(config.get("intra_op_threads") or 1)


def _with_threads(x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    return np.hstack([x, np.full((len(x), 1), _l2(_threads(config)))])


def node_cost_examples(samples: Iterable[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """(features [m, F], log duration in ms [m]) of every profiled kernel that holds exactly one compute node."""
    from inferperf.predict.additive import nchwc_block
    from inferperf.predict.fusion.data import graph_labels

    xs, ys = [], []
    for s in samples:
        if not s.kernels:
            continue
        idx, x = graph_node_features(s.graph, nchwc_block(s.device))
        if not len(idx):
            continue
        labels = graph_labels(s)
        if labels is None:
            continue
        row_of = {int(j): r for r, j in enumerate(idx)}
        y = np.full(len(idx), np.nan)
        for k in labels.kernels:
            rows = [row_of[j] for j in k.nodes if j in row_of]
            if len(rows) == 1 and k.duration_ms > 0:
                y[rows[0]] = math.log(k.duration_ms)
        ok = np.isfinite(y)
        if ok.any():
            xs.append(_with_threads(x[ok], s.config))
            ys.append(y[ok])
    if not xs:
        return np.zeros((0, len(NODE_COST_FEATURE_NAMES))), np.zeros(0)
    return np.vstack(xs), np.concatenate(ys)


class NodeCostModel:
    """LightGBM on :data:`NODE_COST_FEATURE_NAMES` → log kernel ms; :meth:`graph_ms` sums it over a graph.

    Huber loss in log space: a kernel the profiler timed during a disturbance does not pull the fit. With
    fewer than ``min_examples`` profiled kernels the model stays unfitted and :meth:`graph_ms` returns NaN
    (the correction then treats the feature as missing)."""

    def __init__(self, *, n_estimators: int = 300, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_examples: int = 200, seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_examples = min_examples
        self.seed = seed
        self.booster_: Any = None
        self.n_examples_ = 0

    def fit(self, samples: Iterable[Sample]) -> NodeCostModel:
        import lightgbm as lgb

        x, y = node_cost_examples(samples)
        self.n_examples_ = len(y)
        self.booster_ = None
        if len(y) >= self.min_examples:
            params = {"objective": "huber", "alpha": 0.3, "learning_rate": self.learning_rate,
                      "num_leaves": self.num_leaves, "min_child_samples": 20, "num_threads": 1,
                      "seed": self.seed, "verbosity": -1, "deterministic": True, "force_row_wise": True}
            self.booster_ = lgb.train(params, lgb.Dataset(x, y), num_boost_round=self.n_estimators)
        return self

    @property
    def fitted(self) -> bool:
        return self.booster_ is not None

    def graph_ms(self, graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]],
                 devices: Sequence[dict[str, Any]]) -> np.ndarray:
        """[n] the summed predicted duration of each graph's compute nodes (ms; 0 for a graph without any,
        NaN for all when the model is not fitted)."""
        from inferperf.predict.additive import nchwc_block

        out = np.full(len(graphs), np.nan)
        if not self.fitted or not len(graphs):
            return out
        parts, owner = [], []
        for i, (g, c, d) in enumerate(zip(graphs, configs, devices, strict=True)):
            _, x = graph_node_features(g, nchwc_block(d))
            parts.append(_with_threads(x, c))
            owner.append(np.full(len(x), i))
        x_all = np.vstack(parts)
        owner_all = np.concatenate(owner)
        if len(x_all):
            # a network repeats its layers: 500 synthetic graphs had 398 distinct compute-node rows among 15,963,
            # and the trees cost ~11 µs a row where the de-duplication costs ~0.2
            # (rows compared as raw bytes: 9x faster than np.unique(axis=0)'s column-wise sort)
            x_all = np.ascontiguousarray(x_all, dtype=np.float64)
            keys = x_all.view(np.dtype((np.void, x_all.shape[1] * 8))).ravel()
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            ms = np.exp(self.booster_.predict(x_all[first]))[inverse.reshape(-1)]
        else:
            ms = np.zeros(0)
        out[:] = np.bincount(owner_all, weights=ms, minlength=len(graphs)) if len(x_all) else 0.0
        return out

    def save(self, path: str | Path) -> None:
        if self.booster_ is not None:
            self.booster_.save_model(str(path))

    def state(self) -> dict[str, Any]:
        return {"version": NODE_COST_VERSION, "features": list(NODE_COST_FEATURE_NAMES),
                "n_examples": self.n_examples_, "fitted": self.fitted}

    @classmethod
    def load(cls, path: str | Path | None, state: dict[str, Any]) -> NodeCostModel:
        import lightgbm as lgb

        model = cls()
        model.n_examples_ = int(state.get("n_examples") or 0)
        if state.get("fitted") and path is not None:
            model.booster_ = lgb.Booster(model_file=str(path))
        return model
