"""``additive-gbm``: the additive cost model, corrected by gradient-boosted trees on its log residual.

Why: the additive model (:mod:`inferperf.predict.additive`) composes — an unseen architecture built from
known operators costs the sum of known prices — but one price per kind of work cannot say that a work item
runs at a different efficiency in a different context: a 768-wide MatMul at sequence 128 runs nearer peak
than a 64-wide one at sequence 8; attention at batch 1 is dispatch-bound where a CNN at batch 8 is not. Its
residuals are not noise (the label test–retest spread is ~4%, ``benchmarks/results/label_retest.json``)
but structured, and they recur across families: BERT, DistilBERT, RoBERTa, MPNet and ELECTRA all sat 15–18%
off in the same direction. Trees on graph-level features alone cannot compose (``lgbm`` 31.6% LOFO), but
trees that only *correct* a composing model by a factor, from features that say what the graph's time is
made of, keep the composition and learn the context.

Prediction: ``log latency = log(row · prices) + f(x)`` where ``f`` is a LightGBM regressor (Huber loss in
log space: a run measured on a disturbed machine does not pull the fit) trained on the additive model's
residuals over the training runs, and ``x`` is

- the tabular features every predictor shares (static graph features, configuration, device);
- the share of the additive prediction each cost term takes (``row · prices / Σ``): what the time is made
  of — dispatch-bound, MatMul-bound, bandwidth-bound — comparable across model sizes;
- the log of each cost term's raw amount (MACs, MB, operator counts);
- how many kernels ORT's fusion rules say the graph launches, in total, per running node and per kind
  (:func:`~inferperf.predict.fusion.rules.rule_kernel_summary`): a runtime dispatches kernels, not nodes
  (leave-family-out 12.5% → 12.0%; GPT-2, OPT, GPT-Neo 4–5 points better).
- the shapes the dense-convolution MACs come in (:func:`conv_shape_features`, latency and energy only);
- the learned kernel costs (latency and energy only): the summed cost of the compute nodes
  (:class:`~inferperf.predict.node_cost.NodeCostModel`, session 8: 12.0% → 11.5%) and of the kernels the
  fusion rules say run without one — element-wise, normalisation, softmax, layout
  (:class:`~inferperf.predict.node_cost.OtherKernelCostModel`) — their total, and the other kernels' share
  (session 15: 11.09% → 10.58% on the point models of the evaluator's folds); since session 17 the
  compute-node trees learn the ratio to a fitted linear prior, so kernels larger than any in training are not
  capped at the trees' largest leaf (10.56% → 10.21%; plain CNNs, canonical ResNets, MLPs 2–3 points better).

The residuals are in-sample residuals of the additive fit: with ~45 prices per (device, threads) group and
thousands of runs, in- and out-of-sample residuals agree, and cross-fitting would cost five fits. Memory is
corrected the same way from the same features (the memory terms alone miss the runtime's arena rounding).

On the reference data (1 thread, 2,981 trusted runs, 36 families): leave-one-family-out latency MAPE 15.7%
→ 12.5%, random split 14.7% → 10.3%, memory 13.2% → 9.9% (``benchmarks/results/evaluate_*_additive_gbm.json``,
``docs/predictors.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.dataset import GraphDataset
from inferperf.ir.graph import ModelGraph
from inferperf.predict.additive import LATENCY_COLUMNS, AdditivePredictor, nchwc_block
from inferperf.predict.base import TARGETS, PredictorError, log_labels, register
from inferperf.predict.features import TABULAR_FEATURE_NAMES, static_matrix, tabular_matrix
from inferperf.predict.fusion.rules import RULE_KERNEL_SUMMARY_NAMES, rule_kernel_summary
from inferperf.predict.node_cost import (
    NODE_COST_FEATURE_NAMES,
    NODE_COST_VERSION,
    OTHER_KERNEL_COST_VERSION,
    NodeCostModel,
    OtherKernelCostModel,
    graph_node_features,
    other_kernels,
)
from inferperf.predict.ort_memory import ort_memory

#: inputs the memory correction does not read: a compute node's duration says nothing of the heap (with them
#: memory LOFO went 9.79% -> 10.00%); latency and energy (time × power) read them
TIME_ONLY_FEATURES: tuple[str, ...] = ("log_node_cost_ms", "log_node_cost_over_additive", "log_kernel_cost_ms",
                                       "log_kernel_cost_over_additive", "log_other_kernel_ms", "other_kernel_share")
#: inputs only the memory correction reads: the simulated ONNX Runtime footprint
#: (:func:`~inferperf.predict.ort_memory.ort_memory`) — where the arena sits between two of its doubling steps
#: is what the priced sum cannot say
MEMORY_ONLY_FEATURES: tuple[str, ...] = ("log_sim_held_weight_mb", "log_sim_prepacked_mb", "log_sim_arena_mb",
                                         "log_sim_pattern_mb", "log_sim_first_run_peak_mb",
                                         "sim_pattern_over_arena", "sim_arena_regions")
#: the shapes a graph's dense-convolution MACs come in (MAC-weighted means of log2; missing without one)
CONV_SHAPE_FEATURE_NAMES: tuple[str, ...] = ("conv_shape:log2_out_spatial", "conv_shape:log2_reduction",
                                             "conv_shape:log2_out_channels")
#: the correction's input columns, in order (recorded in the artifact: a different layout is refused)
CORRECTION_FEATURE_NAMES: tuple[str, ...] = (
    *TABULAR_FEATURE_NAMES,
    *(f"share:{c}" for c in LATENCY_COLUMNS),
    *(f"log_amount:{c}" for c in LATENCY_COLUMNS),
    *RULE_KERNEL_SUMMARY_NAMES,
    *CONV_SHAPE_FEATURE_NAMES,
    *TIME_ONLY_FEATURES,
    *MEMORY_ONLY_FEATURES,
)
_MIN_RESIDUALS = 50  # fewer labelled runs than this for a target: no correction, the additive model alone


def _columns(target: str) -> np.ndarray:
    """Indices of :data:`CORRECTION_FEATURE_NAMES` the correction of ``target`` reads."""
    # the convolutions' shapes say how fast their MACs run, nothing of the heap
    skip = (*TIME_ONLY_FEATURES, *CONV_SHAPE_FEATURE_NAMES) if target == "memory_mb" else MEMORY_ONLY_FEATURES
    return np.array([i for i, name in enumerate(CORRECTION_FEATURE_NAMES) if name not in skip])


def conv_shape_features(graph: ModelGraph) -> np.ndarray:
    """[len(CONV_SHAPE_FEATURE_NAMES)] MAC-weighted means of log2 output H·W, log2 Cin·kh·kw (per group) and
    log2 Cout over the graph's dense convolutions; NaN without one. Memoised on the graph.

    Why: one price per dense MAC cannot say that a convolution with a 7×7 output and a reduction of 9,216 runs
    at a fraction of the speed of one with a 56×56 output (the plain CNNs' worst misses, session 10); the share
    and amount columns say how many MACs there are, these say what shape they come in (leave-family-out with
    a fold cache of the correction's inputs: 11.44 → 11.20%, 11.32 → 11.18% with another seed)."""
    def compute() -> np.ndarray:
        macs, sizes = [], []
        for n in graph.running_nodes():
            if n.op_type != "Conv" or not n.macs or int(n.attributes.get("group", 1) or 1) != 1 or len(n.inputs) < 2:
                continue
            w, out = n.inputs[1].shape, n.outputs[0].shape if n.outputs else None
            if w is None or out is None or len(w) != 4 or len(out) != 4:
                continue
            macs.append(n.macs)
            sizes.append((out[2] * out[3], w[1] * w[2] * w[3], w[0]))
        if not macs:
            return np.full(3, np.nan)
        # one log2 call for the graph; the MAC-weighted sums in node order, in Python floats
        total, acc = 0.0, [0.0, 0.0, 0.0]
        for m, (hw, red, cout) in zip(macs, np.log2(np.maximum(sizes, 1)).tolist(), strict=True):
            total += m
            acc[0] += m * hw
            acc[1] += m * red
            acc[2] += m * cout
        return np.array(acc) / total

    return graph.derived(("conv_shape",), compute)


def simulated_memory_features(graphs: Sequence[ModelGraph], devices: Sequence[dict[str, Any]],
                              simulate: bool = True) -> np.ndarray:
    """[n, len(MEMORY_ONLY_FEATURES)] the simulated ONNX Runtime footprint of each graph on its device (missing,
    NaN, with ``simulate`` False: the fast mode, ~1 ms less per graph)."""
    from inferperf.predict.ort_memory import ort_memory

    if not simulate:
        return np.full((len(graphs), len(MEMORY_ONLY_FEATURES)), np.nan)
    out = np.zeros((len(graphs), len(MEMORY_ONLY_FEATURES)))
    for i, (g, d) in enumerate(zip(graphs, devices, strict=True)):
        e = ort_memory(g, nchwc_block(d))
        out[i] = [np.log1p(e.weights_mb), np.log1p(e.prepacked_mb), np.log1p(e.arena_mb), np.log1p(e.pattern_mb),
                  np.log1p(e.first_run_peak_mb), e.pattern_mb / e.arena_mb if e.arena_mb else 0.0, e.arena_regions]
    return out


@register("additive-gbm")
class AdditiveGBMPredictor(AdditivePredictor):
    """Additive cost model × a gradient-boosted correction factor; see the module docstring."""

    name = "additive-gbm"
    default_family_folds = 5

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        huber_delta: float = 0.1,
        correction: float = 1.0,
        node_cost: bool = True,
        node_cost_prior: bool = True,
        other_cost_prior: bool = False,
        node_cost_kind_shrinkage: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        #: where the correction's Huber loss turns from squared to absolute (log-ratio units). 0.1 rather than
        #: 0.2: nearer an absolute loss the trees fit the median log ratio, which a relative-error metric
        #: rewards, and a run measured on a disturbed machine pulls less (leave-family-out 11.21 -> 11.09%,
        #: lower with each of three tree seeds; memory 6.60 -> 6.55%); 0.05 was worse (11.46%)
        self.huber_delta = huber_delta
        #: multiplies the learned log correction (0 = the additive model; kept for ablation)
        self.correction = correction
        #: fit :class:`~inferperf.predict.node_cost.NodeCostModel` on the profiled kernels and give the
        #: correction its sum (False: the feature is missing; ablation, or data without kernel profiles)
        self.node_cost = node_cost
        #: the compute-node cost trees learn the log ratio to a fitted linear prior instead of the log duration
        #: (:class:`~inferperf.predict.node_cost.NodeCostModel`: trees cannot extrapolate; leave-family-out
        #: 10.56 -> 10.21%). The same for the other kernels (a prior on bytes and FLOPs) was worse: 10.65%
        #: alone, 10.33% with both (``benchmarks/results/correction_folds_session17.json``)
        self.node_cost_prior = node_cost_prior
        self.other_cost_prior = other_cost_prior
        #: ridge strength on the compute-node prior's per-kind MAC surcharges (0: free per-kind prices above the
        #: cheapest kind's; large: one common price). Leave-family-out (point models): 0.03 10.15%, 0.1 10.08%,
        #: 0.3 10.11%, one price (session 17) 10.21% (``benchmarks/results/correction_folds_session18.json``)
        self.node_cost_kind_shrinkage = node_cost_kind_shrinkage

    def _derived_keys(self) -> tuple[str, ...]:
        return (*super()._derived_keys(), "static", "rule_summary", "conv_shape",
                *(("ort_memory",) if self.arena else ()),
                *(("node_cost_features", "other_kernels") if self.node_cost else ()))

    def _derive(self, graph: ModelGraph, config: dict[str, Any], device: dict[str, Any]) -> None:
        super()._derive(graph, config, device)
        static_matrix([graph])
        rule_kernel_summary(graph, config)
        conv_shape_features(graph)
        if self.arena:
            ort_memory(graph, nchwc_block(device))
        if self.node_cost:
            graph_node_features(graph, nchwc_block(device))
            other_kernels(graph, str(config.get("opt_level", "all")))

    def _correction_matrix(
        self, graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]], devices: Sequence[dict[str, Any]]
    ) -> np.ndarray:
        """[n, len(CORRECTION_FEATURE_NAMES)] the correction's inputs (needs fitted prices)."""
        lat = self._latency_rows(graphs, devices)
        shares = np.zeros_like(lat)
        additive_ms = np.full(len(graphs), np.nan)
        for i, (c, d) in enumerate(zip(configs, devices, strict=True)):
            prices = self._prices_for("latency_ms", c, d)
            if prices is not None:
                terms = lat[i] * prices
                additive_ms[i] = max(float(terms.sum()), 1e-12)
                shares[i] = terms / additive_ms[i]
        kernels = (np.stack([rule_kernel_summary(g, c) for g, c in zip(graphs, configs, strict=True)]) if graphs
                   else np.zeros((0, len(RULE_KERNEL_SUMMARY_NAMES))))
        model = getattr(self, "node_cost_", None)
        node_ms = model.graph_ms(graphs, configs, devices) if model is not None else np.full(len(graphs), np.nan)
        other = getattr(self, "other_kernel_cost_", None)
        other_ms = other.graph_ms(graphs, configs) if other is not None else np.full(len(graphs), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_node = np.where(node_ms > 0, np.log(np.maximum(node_ms, 1e-12)), np.nan)
            # the kernel sum, compute and other kernels together: the correction needs the total (its trees
            # cannot add two logs), and the other kernels' own size and share
            kernel_ms = node_ms + other_ms
            log_kernel = np.where(kernel_ms > 0, np.log(np.maximum(kernel_ms, 1e-12)), np.nan)
            log_other = np.where(other_ms > 0, np.log(np.maximum(other_ms, 1e-12)), np.nan)
            node = (np.column_stack([log_node, log_node - np.log(additive_ms), log_kernel,
                                     log_kernel - np.log(additive_ms), log_other, other_ms / kernel_ms])
                    if graphs else np.zeros((0, len(TIME_ONLY_FEATURES))))
        return np.concatenate(
            [tabular_matrix(graphs, configs, devices), shares, np.log(np.maximum(lat, 1e-9)), kernels,
             np.stack([conv_shape_features(g) for g in graphs]) if graphs
             else np.zeros((0, len(CONV_SHAPE_FEATURE_NAMES))), node,
             simulated_memory_features(graphs, devices, self.arena)], axis=1
        )

    def _fit(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        import lightgbm as lgb

        self._memo = None
        super()._fit(train, dev)  # the prices
        samples = list(train)
        self.node_cost_: NodeCostModel | None = self._fit_node_cost(samples) if self.node_cost else None
        self.other_kernel_cost_: OtherKernelCostModel | None = (self._fit_other_kernel_cost(samples) if self.node_cost
                                                                 else None)
        graphs, configs, devices = [s.graph for s in samples], [s.config for s in samples], [s.device for s in samples]
        residual = log_labels(train) - AdditivePredictor._predict_log(self, graphs, configs, devices)
        x = self._correction_matrix(graphs, configs, devices)
        self.boosters_: dict[str, Any] = {}
        for j, target in enumerate(TARGETS):
            ok = np.isfinite(residual[:, j])
            if ok.sum() < _MIN_RESIDUALS:
                continue
            params = {
                "objective": "huber", "alpha": self.huber_delta, "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_child_samples": self.min_child_samples,
                "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8, "lambda_l2": 1.0,
                "num_threads": 1, "seed": self.seed, "verbosity": -1, "deterministic": True,
                "force_row_wise": True,
            }
            # a fixed number of rounds, not early stopping on dev: dev is drawn from the training families, and
            # rounds chosen there fit them, not the families a user brings
            self.boosters_[target] = lgb.train(params, lgb.Dataset(x[ok][:, _columns(target)], residual[ok, j]),
                                               num_boost_round=self.n_estimators)

    def _fit_node_cost(self, samples: list[Any]) -> NodeCostModel:
        """The per-compute-node cost model, fitted on ``samples``' profiled kernels (its own method so an
        experiment that varies only the correction can fit it once per training set:
        ``benchmarks/correction_folds.py``)."""
        return NodeCostModel(seed=self.seed, prior=self.node_cost_prior,
                             kind_shrinkage=self.node_cost_kind_shrinkage).fit(samples)

    def _fit_other_kernel_cost(self, samples: list[Any]) -> OtherKernelCostModel:
        """The non-compute kernels' cost model (its own method for the same reason as :meth:`_fit_node_cost`)."""
        return OtherKernelCostModel(seed=self.seed, prior=self.other_cost_prior).fit(samples)

    def _corrections(
        self, graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]], devices: Sequence[dict[str, Any]]
    ) -> np.ndarray:
        """[n, len(TARGETS)] the learned log correction (0 where a target has none). The last batch is
        remembered (the same graph objects under equal configs and devices): ``predict`` asks for it twice —
        the prediction, then the breakdown's factor — and the correction's inputs are most of its time."""
        memo = getattr(self, "_memo", None)
        if memo is not None and len(memo[0]) == len(graphs) and all(
                a is b and c == d and e == f for a, b, c, d, e, f in zip(memo[0], graphs, memo[1], configs, memo[2],
                                                                          devices, strict=True)):
            return memo[3]
        out = np.zeros((len(graphs), len(TARGETS)))
        if not graphs or not self.boosters_:
            return out
        x = self._correction_matrix(graphs, configs, devices)
        for j, target in enumerate(TARGETS):
            booster = self.boosters_.get(target)
            if booster is not None:
                out[:, j] = self.correction * booster.predict(x[:, _columns(target)])
        self._memo = (list(graphs), [dict(c) for c in configs], [dict(d) for d in devices], out)
        return out

    def _predict_log(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
    ) -> np.ndarray:
        return super()._predict_log(graphs, configs, devices) + self._corrections(graphs, configs, devices)

    def _breakdowns(
        self, graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]], device: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The additive terms scaled by the correction factor (so they still sum to ``latency_ms``), and the
        factor itself: how far the context moved this graph from the plain sum of prices."""
        factors = np.exp(self._corrections(graphs, configs, [device] * len(graphs))[:, TARGETS.index("latency_ms")])
        out = []
        for g, c, factor in zip(graphs, configs, factors, strict=True):
            b = super()._breakdown(g, c, device)
            if b:
                b["by_term"] = {k: v * float(factor) for k, v in b["by_term"].items()}
                b["correction_factor"] = float(factor)
            out.append(b)
        return out

    def _breakdown(self, graph: ModelGraph, config: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
        return self._breakdowns([graph], [config], device)[0]

    def _save_state(self, directory: Path) -> dict[str, Any]:
        state = super()._save_state(directory)
        files = {}
        for target, booster in self.boosters_.items():
            name = f"correction-{target}.txt"
            booster.save_model(str(directory / name))
            files[target] = name
        node_cost = other_cost = None
        if self.node_cost_ is not None:
            self.node_cost_.save(directory / "node-cost.txt")
            node_cost = {**self.node_cost_.state(), "file": "node-cost.txt"}
        if getattr(self, "other_kernel_cost_", None) is not None:
            self.other_kernel_cost_.save(directory / "other-kernel-cost.txt")
            other_cost = {**self.other_kernel_cost_.state(), "file": "other-kernel-cost.txt"}
        return {**state, "correction_files": files, "correction_features": list(CORRECTION_FEATURE_NAMES),
                "node_cost": node_cost, "other_kernel_cost": other_cost}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        import lightgbm as lgb

        super()._load_state(directory, state)
        if list(state.get("correction_features") or []) != list(CORRECTION_FEATURE_NAMES):
            raise PredictorError(
                f"{directory}: this additive-gbm artifact corrects from other features than this version computes; "
                "train it again (inferperf train --predictor additive-gbm)"
            )
        self.boosters_ = {t: lgb.Booster(model_file=str(directory / f))
                          for t, f in (state.get("correction_files") or {}).items()}
        node_cost = state.get("node_cost")
        self.node_cost_ = None
        if node_cost:
            if int(node_cost.get("version") or 0) != NODE_COST_VERSION or list(node_cost.get("features") or []) != list(
                    NODE_COST_FEATURE_NAMES):
                raise PredictorError(
                    f"{directory}: this additive-gbm artifact's node-cost model reads other features than this "
                    "version computes; train it again (inferperf train --predictor additive-gbm)"
                )
            self.node_cost_ = NodeCostModel.load(directory / node_cost["file"] if node_cost.get("fitted") else None,
                                                 node_cost)
        other = state.get("other_kernel_cost")
        self.other_kernel_cost_ = None
        if other:
            if int(other.get("version") or 0) != OTHER_KERNEL_COST_VERSION:
                raise PredictorError(
                    f"{directory}: this additive-gbm artifact's other-kernel cost model is of another version; "
                    "train it again (inferperf train --predictor additive-gbm)"
                )
            self.other_kernel_cost_ = OtherKernelCostModel.load(
                directory / other["file"] if other.get("fitted") else None, other)
