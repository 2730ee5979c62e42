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
    """Additive prices applied to a kernel's nodes; ``fit`` on runs, ``log_ms`` per kernel."""

    def __init__(self) -> None:
        self.prices_: dict[str, dict[str, list[float]]] | None = None
        self.group_runs_: dict[str, int] = {}

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

    def log_ms(self, items: Sequence[tuple[ModelGraph, Sequence[int], dict[str, Any], dict[str, Any]]]) -> np.ndarray:
        """[len(items)] log prior latency (ms) of each (graph, kernel nodes, config, device)."""
        from inferperf.predict.additive import nchwc_block, node_latency_rows

        if self.prices_ is None:
            raise RuntimeError("KernelCostPrior used before fit/load")
        model = self._additive()
        out = np.empty(len(items))
        for i, (graph, nodes, config, device) in enumerate(items):
            block = nchwc_block(device)
            cache = graph.__dict__.setdefault("_fusion_cache", {})
            key = ("prior_rows", block)
            if key not in cache:
                cache[key] = node_latency_rows(graph, block)
            prices = model._prices_for("latency_ms", config, device)
            cost = float(cache[key][list(nodes)].sum(axis=0) @ prices) if prices is not None else 0.0
            out[i] = np.log(max(cost, PRIOR_FLOOR_MS))
        return out

    def state(self) -> dict[str, Any]:
        return {"prices": self.prices_, "group_runs": self.group_runs_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KernelCostPrior:
        obj = cls()
        obj.prices_ = {t: {k: list(v) for k, v in table.items()} for t, table in state["prices"].items()}
        obj.group_runs_ = {k: int(v) for k, v in (state.get("group_runs") or {}).items()}
        return obj
