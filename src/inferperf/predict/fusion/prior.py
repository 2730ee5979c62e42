"""A cost prior for one kernel: what the additive model's prices say its nodes cost.

Why: the GAT kernel regressor learns a kernel's latency from its nodes, and on a family it never saw it has
to extrapolate from kernels that only look alike. Held out of the MLP family, it predicted batch-1 GEMV
kernels 3× too slow (a Gemm of a 1×1024 row against a 1024×1024 weight is memory-bound on the weight; the
MatMuls of the training transformers, at 8–512 tokens, are compute-bound): 144% end-to-end MAPE on MLPs,
where the additive model — which prices weight bytes and MACs separately — is at 18%. The prices are
physically meaningful (ms per MMAC of each kind, per MB of each op category, per dispatched op) and fitted
on whole graphs, so they carry across families; the kernel model then learns the *residual* — what fusing
these nodes into one kernel, in this context, changes — and falls back to the prior where it has nothing to
say.

The prior of a kernel is ``Σ_nodes row(node) · prices`` (:func:`inferperf.predict.additive.node_latency_rows`,
without the per-call and reorder columns, which belong to the whole run), with prices from an
:class:`~inferperf.predict.additive.AdditivePredictor` fitted on the same training runs, per (device,
threads) as that model does. Its log enters the kernel model twice: as the offset of the regression target
(``log duration − log prior``) and as an input feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from inferperf.dataset.core import GraphDataset
from inferperf.ir.graph import ModelGraph

#: no kernel costs less than this by its prior (ms): a node the prices make free (a view op whose category
#: has price 0) still launches
PRIOR_FLOOR_MS = 1e-4


class KernelCostPrior:
    """Additive prices applied to a kernel's nodes; ``fit`` on runs (or ``fit_kernels`` on kernels),
    ``log_ms`` per kernel."""

    def __init__(self) -> None:
        self.prices_: dict[str, dict[str, list[float]]] | None = None
        self.group_runs_: dict[str, int] = {}
        #: "run": prices fitted on whole runs, no per-kernel constant; "kernel": fitted on the kernels
        #: themselves, the ``call`` column priced per kernel (a launch)
        self.level = "run"

    def _additive(self) -> Any:
        from inferperf.predict.additive import AdditivePredictor

        model = AdditivePredictor(family_folds=0, dev_fraction=0.0)
        if self.prices_ is not None:
            model.prices_ = self.prices_
            model.group_runs_ = self.group_runs_
        return model

    def fit(self, train: GraphDataset) -> KernelCostPrior:
        model = self._additive()
        # the prices alone: no conformal / OOD machinery of Predictor.fit, nothing held out
        model._fit(train, None)
        self.prices_ = {"latency_ms": model.prices_["latency_ms"]}
        self.group_runs_ = dict(model.group_runs_)
        return self

    def fit_kernels(self, examples: Sequence[Any], surcharge_penalty: float = 1.0, min_kernels: int = 50
                    ) -> KernelCostPrior:
        """Prices fitted on the kernels' own durations (``KernelExample``s), per (device, threads).

        Why: prices fitted on whole runs put the per-kernel launch cost into the per-operator prices of the
        training mix, so a prior summed over one kernel's nodes is off by a factor that depends on the family
        (with the family held out, the median kernel is 3.8× its run-level prior for BERT, 5× for the MLPs, 1.3×
        for ResNet) — and the kernel
        model then learns the look-alike families' factor. Fitted on kernels, with the ``call`` column as a
        price per kernel, the prior is a kernel's cost."""
        from inferperf.predict.additive import SURCHARGE_COLUMNS, _group, fit_prices

        self.level = "kernel"
        rows, labels, groups = [], [], []
        for ex in examples:
            rows.append(self._kernel_row(ex.graph, ex.nodes, ex.device))
            labels.append(float(ex.duration_ms))
            groups.append(_group(ex.config, ex.device))
        table: dict[str, list[float]] = {}
        self.group_runs_ = {}
        if rows:
            x, y = np.stack(rows), np.asarray(labels)
            keys = np.array([f"{g[0]}|{g[1]}" for g in groups])
            for key in sorted(set(keys.tolist())):
                idx = np.flatnonzero((keys == key) & (y > 0))
                self.group_runs_[key] = int(len(idx))
                if len(idx) >= min_kernels:
                    table[key] = fit_prices(x[idx], y[idx], SURCHARGE_COLUMNS, surcharge_penalty).tolist()
        self.prices_ = {"latency_ms": table}
        return self

    def _kernel_row(self, graph: ModelGraph, nodes: Sequence[int], device: dict[str, Any]) -> np.ndarray:
        from inferperf.predict.additive import nchwc_block, node_latency_rows, sgemm_tile

        # the rows the prices were fitted on (the additive model's defaults: weight GEMMs over whole tiles)
        block, tile = nchwc_block(device), sgemm_tile(device)
        row = graph.derived(("prior_rows", block, tile), lambda: node_latency_rows(graph, block, gemm_tile=tile)
                            )[list(nodes)].sum(axis=0)
        if self.level == "kernel":
            row[0] = 1.0  # one launch
        return row

    def log_ms(self, items: Sequence[tuple[ModelGraph, Sequence[int], dict[str, Any], dict[str, Any]]]) -> np.ndarray:
        """[len(items)] log prior latency (ms) of each (graph, kernel nodes, config, device)."""
        if self.prices_ is None:
            raise RuntimeError("KernelCostPrior used before fit/load")
        model = self._additive()
        out = np.empty(len(items))
        for i, (graph, nodes, config, device) in enumerate(items):
            prices = model._prices_for("latency_ms", config, device)
            cost = float(self._kernel_row(graph, nodes, device) @ prices) if prices is not None else 0.0
            out[i] = np.log(max(cost, PRIOR_FLOOR_MS))
        return out

    def state(self) -> dict[str, Any]:
        from inferperf.predict.additive import LATENCY_COLUMNS

        return {"prices": self.prices_, "group_runs": self.group_runs_, "level": self.level,
                "latency_columns": list(LATENCY_COLUMNS)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KernelCostPrior:
        from inferperf.predict.additive import LATENCY_COLUMNS
        from inferperf.predict.base import PredictorError

        lengths = {len(v) for table in state["prices"].values() for v in table.values()}
        if list(state.get("latency_columns") or LATENCY_COLUMNS) != list(LATENCY_COLUMNS) or lengths - {
                len(LATENCY_COLUMNS)}:
            raise PredictorError("this kernel model's cost prior prices other cost terms than this version "
                                 "computes; train it again (inferperf train --predictor fusion-kernel)")
        obj = cls()
        obj.prices_ = {t: {k: list(v) for k, v in table.items()} for t, table in state["prices"].items()}
        obj.group_runs_ = {k: int(v) for k, v in (state.get("group_runs") or {}).items()}
        obj.level = str(state.get("level", "run"))
        return obj
