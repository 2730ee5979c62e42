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
from collections import Counter
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
    "log2_block_macs", "log2_batch", "log2_threads",
)
NODE_COST_VERSION = 3  # 2: the trees learn the log ratio to a fitted linear prior; 3: the prior prices MACs per kind,
#                        the MACs as the NCHWc kernel runs them (``log2_block_macs``)
#: the smallest prior a row is given (ms), so its log is finite
_PRIOR_FLOOR_MS = 1e-4


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
        # ORT pads a blocked convolution's output channels to whole blocks: a 1,024 -> 1 channel 7x7 layer runs
        # 8 output channels' MACs (on the reference CPU 0.2 ms per MMAC, 20x a full block's rate); input channels
        # beyond one block that miss a whole block are counted padded too (the reference's 145 sub-MMAC layers
        # with 12–60 input channels, 4 short of a block, took 2.2x the time per MAC of those with whole blocks)
        padded = -(-cout // block) * block if blocked else cout
        padded_in = -(-cin_pg // block) * block if blocked and group == 1 and cin_pg > block else cin_pg
        row += [cout, cin_pg, float(w[2]), float(w[3]), float(strides[0]), group, spatial,
                float(blocked), im2col_mb(node, block) * 1e6, float(cout % max(block, 1)),
                float(cin_pg % max(block, 1)), node.macs * padded / max(cout, 1) * padded_in / max(cin_pg, 1)]
    else:  # MatMul / Gemm / recurrent: out [..., M, N], K from the MACs
        n_dim = int(shape[-1]) if shape else 1
        m_dim = max(numel // max(n_dim, 1), 1)
        k_dim = max(int(node.macs) // max(numel, 1), 1)
        row += [n_dim, k_dim, 0.0, 0.0, 0.0, 0.0, m_dim, 0.0, 0.0, float(n_dim % max(block, 1)),
                float(k_dim % max(block, 1)), node.macs]
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


class _SummedKernelCost:
    """What the two kernel cost models share: a LightGBM regressor of log kernel ms, fitted only with at least
    ``min_examples`` profiled kernels (else :meth:`graph_ms` is NaN and the correction treats the input as
    missing), summed per graph, saved as the booster's text file.

    Huber loss in log space: a kernel the profiler timed during a disturbance does not pull the fit."""

    def __init__(self, *, n_estimators: int = 300, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_examples: int = 200, seed: int = 0, prior: bool = True) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_examples = min_examples
        self.seed = seed
        #: learn the log ratio to a linear prior (:meth:`_prior_design`) instead of the log duration
        self.prior = prior
        self.booster_: Any = None
        self.prior_prices_: np.ndarray | None = None
        self.n_examples_ = 0

    @property
    def fitted(self) -> bool:
        return self.booster_ is not None

    def _prior_design(self, x: np.ndarray) -> np.ndarray | None:
        """[m, p] non-negative cost amounts of each row that a linear price prior multiplies (None: no prior,
        the trees predict the log duration itself)."""
        return None

    def _log_prior(self, x: np.ndarray) -> np.ndarray:
        """[m] log of the fitted linear prior's ms (0 without a prior)."""
        if self.prior_prices_ is None:  # checked first: building the design is wasted on every prediction
            return np.zeros(len(x))
        return np.log(np.maximum(self._prior_design(x) @ self.prior_prices_, _PRIOR_FLOOR_MS))

    def _fit_prior(self, x: np.ndarray, y: np.ndarray) -> None:
        """Non-negative prices of :meth:`_prior_design`'s amounts, fitted on the relative error (each row
        weighted by 1 / its duration: a 5 µs kernel counts as much as a 50 ms one)."""
        from scipy.optimize import nnls

        self.prior_prices_ = None
        design = self._prior_design(x) if self.prior else None
        if design is None or not len(y):
            return
        w = np.exp(-y)
        a, b = design * w[:, None], np.exp(y) * w
        shrunk = self._prior_shrunk_columns()
        if shrunk:  # ridge rows pull each surcharge to 0, scaled to the weighted size of its base column
            base, columns, strength = shrunk
            penalty = np.zeros((len(columns), design.shape[1]))
            penalty[np.arange(len(columns)), columns] = strength * float(np.sqrt((a[:, base] ** 2).sum()))
            a, b = np.vstack([a, penalty]), np.concatenate([b, np.zeros(len(columns))])
        prices, _ = nnls(a, b)
        self.prior_prices_ = prices if np.any(prices > 0) else None

    def _prior_shrunk_columns(self) -> tuple[int, list[int], float] | None:
        """(base column, surcharge columns, strength) of :meth:`_prior_design`: surcharges on a base amount
        that a ridge penalty shrinks toward 0, so a kind seen in few families falls back on the common price
        (None: plain NNLS)."""
        return None

    def _train(self, x: np.ndarray, y: np.ndarray, categorical: Sequence[int] = ()) -> None:
        import lightgbm as lgb

        self.n_examples_ = len(y)
        self.booster_ = None
        self.prior_prices_ = None
        if len(y) >= self.min_examples:
            self._fit_prior(x, y)
            params = {"objective": "huber", "alpha": 0.3, "learning_rate": self.learning_rate,
                      "num_leaves": self.num_leaves, "min_child_samples": 20, "num_threads": 1,
                      "seed": self.seed, "verbosity": -1, "deterministic": True, "force_row_wise": True}
            self.booster_ = lgb.train(params, lgb.Dataset(x, y - self._log_prior(x),
                                                          categorical_feature=list(categorical) or "auto"),
                                      num_boost_round=self.n_estimators)

    def _summed(self, parts: list[np.ndarray], n_graphs: int) -> np.ndarray:
        """[n_graphs] the predicted ms of each graph's rows (``parts[i]``: graph i's rows), summed."""
        x_all = np.vstack(parts) if parts else np.zeros((0, 0))
        if not len(x_all):
            return np.zeros(n_graphs)
        # a network repeats its layers: 500 synthetic graphs had 398 distinct compute-node rows among 15,963,
        # and the trees cost ~11 µs a row where the de-duplication costs ~0.2
        # (rows compared as raw bytes: 9x faster than np.unique(axis=0)'s column-wise sort)
        x_all = np.ascontiguousarray(x_all, dtype=np.float64)
        keys = x_all.view(np.dtype((np.void, x_all.shape[1] * 8))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        unique = x_all[first]
        ms = np.exp(self.booster_.predict(unique) + self._log_prior(unique))[inverse.reshape(-1)]
        owner = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        return np.bincount(owner, weights=ms, minlength=n_graphs)

    def save(self, path: str | Path) -> None:
        if self.booster_ is not None:
            self.booster_.save_model(str(path))

    def _fitted_state(self) -> dict[str, Any]:
        """What every subclass's ``state()`` carries of the fit; :meth:`_load_booster` reads it back."""
        return {"n_examples": self.n_examples_, "fitted": self.fitted,
                "prior_prices": None if self.prior_prices_ is None else self.prior_prices_.tolist()}

    def _load_booster(self, path: str | Path | None, state: dict[str, Any]) -> None:
        import lightgbm as lgb

        self.n_examples_ = int(state.get("n_examples") or 0)
        prices = state.get("prior_prices")
        self.prior_prices_ = np.asarray(prices, dtype=np.float64) if prices is not None else None
        if state.get("fitted") and path is not None:
            self.booster_ = lgb.Booster(model_file=str(path))


class NodeCostModel(_SummedKernelCost):
    """LightGBM on :data:`NODE_COST_FEATURE_NAMES` → log kernel ms, as a ratio to a linear prior (a per-call
    cost, a price per MAC, per MB of im2col buffer, per MB read and written); :meth:`graph_ms` sums it over a
    graph.

    Why the prior: trees cannot extrapolate. Fitted on log ms directly, no prediction exceeded the slowest
    kernel of the training families (4.6 ms held out of the plain CNNs, whose 0.5–2 GMAC convolutions and
    GB-sized im2col buffers take 20–136 ms): the plain CNNs' compute kernels came out at 36% of their measured
    time. As a ratio to the prior the trees learn an efficiency, which carries over to larger kernels: 61%
    (leave-one-family-out, 1-thread reference kernels; median per-kernel error 0.41 -> 0.35 on the plain
    CNNs, 0.179 -> 0.165 on random DAGs, 0.124 -> 0.103 on ResNets).

    Why a MAC surcharge per kind, shrunk: one price per MAC for every kind made the prior over-price
    SqueezeBERT's grouped 1×1 convolutions (a family that alone has them; held out 12.7 -> 17.5%); a free price
    per kind left a held-out kind without a price (a recurrent family held out: its kind's price fell to 0).
    A common price plus non-negative per-kind surcharges under a ridge penalty (``kind_shrinkage``, relative
    to the common column's weighted norm) keeps both: ``additive-gbm`` leave-family-out 10.21 -> 10.08%
    (SqueezeBERT 17.5 -> 12.8%). A last column prices the MACs ORT computes for the output channels it pads to a
    whole NCHWc block (``log2_block_macs`` - ``log2_macs``): the plain CNNs' 512–1,024 -> 1–4 channel 5×7
    layers ran 0.05–0.2 ms per MMAC, 5–20× a full block's rate, and were most of those models' time
    (10.08 -> 10.05%, plain CNNs 20.3 -> 18.6%; ``benchmarks/results/correction_folds_session18.json``; with
    the input channels padded too 10.007%).
    """

    def __init__(self, *, kind_shrinkage: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: ridge strength on the per-kind MAC surcharges of the prior (larger: closer to one common price)
        self.kind_shrinkage = kind_shrinkage

    def _prior_design(self, x: np.ndarray) -> np.ndarray:
        def amount(name: str) -> np.ndarray:  # the raw amount back from its log2(max(., 1)) column
            v = x[:, NODE_COST_FEATURE_NAMES.index(name)]
            return np.where(v > 0, np.exp2(v), 0.0)

        macs = amount("log2_macs") / 1e6
        padding = np.maximum(amount("log2_block_macs") / 1e6 - macs, 0.0)
        kind = x[:, NODE_COST_FEATURE_NAMES.index("kind")]
        per_kind = [np.where(kind == k, macs, 0.0) for k in range(len(NODE_KINDS))]
        return np.column_stack([np.ones(len(x)), macs, *per_kind, amount("log2_im2col_bytes") / 1e6,
                                (amount("log2_bytes_read") + amount("log2_bytes_written")) / 1e6, padding])

    def _prior_shrunk_columns(self) -> tuple[int, list[int], float] | None:
        return 1, list(range(2, 2 + len(NODE_KINDS))), self.kind_shrinkage

    def fit(self, samples: Iterable[Sample]) -> NodeCostModel:
        self._train(*node_cost_examples(samples))
        return self

    def graph_ms(self, graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]],
                 devices: Sequence[dict[str, Any]]) -> np.ndarray:
        """[n] the summed predicted duration of each graph's compute nodes (ms; 0 for a graph without any,
        NaN for all when the model is not fitted)."""
        from inferperf.predict.additive import nchwc_block

        if not self.fitted or not len(graphs):
            return np.full(len(graphs), np.nan)
        return self._summed([_with_threads(graph_node_features(g, nchwc_block(d))[1], c)
                             for g, c, d in zip(graphs, configs, devices, strict=True)], len(graphs))

    def state(self) -> dict[str, Any]:
        return {"version": NODE_COST_VERSION, "features": list(NODE_COST_FEATURE_NAMES), **self._fitted_state()}

    @classmethod
    def load(cls, path: str | Path | None, state: dict[str, Any]) -> NodeCostModel:
        model = cls()
        model._load_booster(path, state)
        return model


# ============================================================================================== other kernels
#: what :class:`OtherKernelCostModel` reads per kernel after the kernel features of the nn-Meter regressors
#: (``KERNEL_FEATURE_NAMES``): the thread count and the rule type (a categorical code)
OTHER_KERNEL_FEATURE_NAMES: tuple[str, ...] = ("log2_threads", "kernel_type")
OTHER_KERNEL_COST_VERSION = 2  # 2: the state may carry a linear prior (bytes moved, FLOPs; off by default)


def other_kernels(graph: ModelGraph, opt_level: str = "all") -> tuple[list[str], np.ndarray]:
    """(rule types [k], kernel features [k, len(KERNEL_FEATURE_NAMES)]) of the kernels the fusion rules (with
    the runtime's element-wise fusions) say run without a compute node — element-wise, normalisation,
    softmax, reduction and data-movement kernels. Memoised on the graph per opt level."""
    from inferperf.predict.fusion.rules import KERNEL_FEATURE_NAMES, kernel_features, rule_partition

    def compute() -> tuple[list[str], np.ndarray]:
        compute_idx = {i for i, _ in compute_nodes(graph)}
        part = rule_partition(graph, opt_level, runtime_patterns=True)
        kept = [(t, k) for k, t in zip(part.kernels, part.kernel_types, strict=True) if compute_idx.isdisjoint(k)]
        x = np.array([kernel_features(graph, k) for _, k in kept], dtype=np.float64).reshape(
            len(kept), len(KERNEL_FEATURE_NAMES))
        return [t for t, _ in kept], x

    return graph.derived(("other_kernels", str(opt_level)), compute)


def other_kernel_examples(samples: Iterable[Sample]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(kernel features + thread count [m, F], rule types [m], log duration in ms [m]) of every profiled kernel
    that holds no compute node."""
    from inferperf.predict.fusion.data import graph_labels
    from inferperf.predict.fusion.rules import KERNEL_FEATURE_NAMES, kernel_features, rule_kernel_type

    width = len(KERNEL_FEATURE_NAMES) + 1

    def of_run(s: Sample) -> tuple[np.ndarray, list[str], np.ndarray]:
        rows: list[np.ndarray] = []
        types: list[str] = []
        ys: list[float] = []
        labels = graph_labels(s)
        if labels is not None:
            compute_idx = {i for i, _ in compute_nodes(s.graph)}
            for k in labels.kernels:
                if k.nodes and k.duration_ms > 0 and compute_idx.isdisjoint(k.nodes):
                    rows.append(kernel_features(s.graph, k.nodes))
                    types.append(rule_kernel_type(s.graph, k.nodes))
                    ys.append(math.log(k.duration_ms))
        x = np.array(rows, dtype=np.float64).reshape(len(rows), width - 1)
        return _with_threads(x, s.config), types, np.array(ys)

    xs, types, ys = [], [], []
    for s in samples:
        if not s.kernels:
            continue
        # memoised on the graph per run: every fold and cross-fit of an evaluation reuses the samples
        x, t, y = s.graph.derived(("other_kernel_examples", s.run_id), lambda s=s: of_run(s))
        xs.append(x)
        types += t
        ys.append(y)
    if not xs:
        return np.zeros((0, width)), [], np.zeros(0)
    return np.vstack(xs), types, np.concatenate(ys)


def _kernel_class(kernel_type: str) -> str:
    """The class of a rule kernel type: ``Reduce`` of ``Reduce:ReduceL2``, ``Elementwise`` of
    ``Elementwise:Sub``; a type without a class (``LayerNorm``, ``Gelu``) is its own."""
    return kernel_type.split(":", 1)[0]


class OtherKernelCostModel(_SummedKernelCost):
    """LightGBM on the kernel features of non-compute kernels (type as a category) → log kernel ms;
    :meth:`graph_ms` sums it over the kernels the rules predict for a graph.

    Why: the compute nodes' cost (:class:`NodeCostModel`) is half of what a kernel sum needs; a graph's
    element-wise, normalisation, reduction and layout kernels are 15–50% of the time of transformers and
    SiLU / squeeze-excitation CNNs, and their costs recur across families where the architectures do not.
    Given the *true* profiled kernel sum of a run, the additive-gbm correction is 5.8% off leave-family-out
    (11.1% without); given the true compute and the true other-kernel sums as two separate inputs, 10.3%:
    what the correction needs is the total, so this model's sum is added to the compute nodes' before it is
    handed over (:meth:`AdditiveGBMPredictor._correction_matrix`). A kernel type never seen in training is a
    missing category (the trees' default side), unless its class (``Reduce`` of ``Reduce:ReduceL2``) was seen:
    then it is costed as that class's most frequent type."""

    def __init__(self, **kwargs: Any) -> None:
        # no prior by default: with one, additive-gbm's leave-family-out error rose (10.21 -> 10.33%)
        super().__init__(**{"prior": False, **kwargs})
        self.types_: list[str] = []
        #: kernel class → the type an unseen type of that class is costed as
        self.class_types_: dict[str, str] = {}

    def _prior_design(self, x: np.ndarray) -> np.ndarray:
        from inferperf.predict.fusion.rules import KERNEL_FEATURE_NAMES

        def amount(name: str) -> np.ndarray:  # the raw amount back from its log1p column
            return np.expm1(x[:, KERNEL_FEATURE_NAMES.index(name)])

        return np.column_stack([np.ones(len(x)), (amount("log_bytes_read") + amount("log_bytes_written")) / 1e6,
                                amount("log_flops") / 1e6])

    def _codes(self, types: Sequence[str]) -> np.ndarray:
        index = {t: float(i) for i, t in enumerate(self.types_)}
        return np.array([index.get(t, index.get(self.class_types_.get(_kernel_class(t), ""), np.nan))
                         for t in types], dtype=np.float64)

    def fit(self, samples: Iterable[Sample]) -> OtherKernelCostModel:
        x, types, y = other_kernel_examples(samples)
        self.types_ = sorted(set(types))
        counts = Counter(types)
        self.class_types_ = {}
        for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):  # most frequent first
            if ":" in t:
                self.class_types_.setdefault(_kernel_class(t), t)
        self._train(np.column_stack([x, self._codes(types)]), y, categorical=[x.shape[1]])
        return self

    def graph_ms(self, graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]]) -> np.ndarray:
        """[n] the summed predicted duration of each graph's non-compute kernels (ms; 0 for a graph without
        any, NaN for all when the model is not fitted)."""
        if not self.fitted or not len(graphs):
            return np.full(len(graphs), np.nan)
        parts = []
        for g, c in zip(graphs, configs, strict=True):
            types, x = other_kernels(g, str(c.get("opt_level", "all")))
            parts.append(np.column_stack([_with_threads(x, c), self._codes(types)]))
        return self._summed(parts, len(graphs))

    def state(self) -> dict[str, Any]:
        from inferperf.predict.fusion.rules import KERNEL_FEATURE_NAMES

        return {"version": OTHER_KERNEL_COST_VERSION, "features": [*KERNEL_FEATURE_NAMES, *OTHER_KERNEL_FEATURE_NAMES],
                "types": list(self.types_), "class_types": dict(self.class_types_), **self._fitted_state()}

    @classmethod
    def load(cls, path: str | Path | None, state: dict[str, Any]) -> OtherKernelCostModel:
        model = cls()
        model._load_booster(path, state)
        model.types_ = list(state.get("types") or [])
        model.class_types_ = dict(state.get("class_types") or {})
        return model
