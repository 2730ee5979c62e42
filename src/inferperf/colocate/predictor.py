"""Predict each co-located model's slowdown from the graphs of all the models that run together (CS230).

Features of one member (the *target*) of a group:

- the target's static graph features (:func:`~inferperf.ir.features.static_feature_vector`);
- the co-runners' load: log of their summed FLOPs, MACs, weight bytes, activation bytes and memory, and the
  mean of their static features;
- the resources: the target's threads, the co-runners' threads, threads per available core (over-
  subscription), how many co-runners share a core with the target, the number of co-runners.

Models (CS230): linear regression (the baseline) and an MLP whose depth — and, a deviation, L2 penalty —
is chosen by mean absolute error on held-out groups, both on log slowdown, standardised features. A
*constant* predictor (the training mean) is reported too — slowdowns cluster near 1, so a small MAPE means
little unless it beats the constant.
Learned weights are stored as plain arrays (no pickle), and the forward pass is numpy.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.colocate.dataset import ColoExample
from inferperf.errors import InferperfError
from inferperf.ir.features import STATIC_FEATURE_NAMES, static_feature_vector
from inferperf.ir.graph import ModelGraph

FORMAT = "inferperf-colocation-predictor"
FORMAT_VERSION = 1

FEATURE_NAMES: tuple[str, ...] = (
    *(f"target:{n}" for n in STATIC_FEATURE_NAMES),
    "others:log_flops", "others:log_macs", "others:log_weight_bytes", "others:log_activation_bytes",
    "others:log_memory_bytes",
    *(f"others_mean:{n}" for n in STATIC_FEATURE_NAMES),
    "threads", "others_threads", "threads_per_core", "shared_cores", "n_others",
)


def example_features(target: ModelGraph, others: Sequence[ModelGraph], threads: int, other_threads: Sequence[int],
                     shared_cores: int, n_cores: int) -> np.ndarray:
    """:data:`FEATURE_NAMES` of one group member."""
    mean_static = (np.mean([static_feature_vector(g) for g in others], axis=0) if others
                   else np.zeros(len(STATIC_FEATURE_NAMES)))
    total_threads = threads + sum(other_threads)
    return np.concatenate([
        static_feature_vector(target),
        [math.log1p(sum(g.flops for g in others)), math.log1p(sum(g.macs for g in others)),
         math.log1p(sum(g.weight_bytes for g in others)), math.log1p(sum(g.activation_bytes for g in others)),
         math.log1p(sum(g.memory_bytes for g in others))],
        mean_static,
        [float(threads), float(sum(other_threads)), total_threads / max(n_cores, 1), float(shared_cores),
         float(len(others))],
    ]).astype(np.float64)


def feature_matrix(examples: Sequence[ColoExample]) -> np.ndarray:
    if not examples:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack([example_features(e.target, e.others, e.threads, e.other_threads, e.shared_cores, e.n_cores)
                     for e in examples])


class _Scaler:
    def fit(self, x: np.ndarray) -> _Scaler:
        self.mean = x.mean(axis=0)
        self.scale = np.maximum(x.std(axis=0), 1e-6)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / self.scale, -8.0, 8.0)


class SlowdownPredictor:
    """Slowdown of each co-located model (see the module docstring); ``kind`` is ``mlp`` or ``linear``.

    The MLP's depth and L2 penalty are chosen by group-wise cross-validation on the training data (mean
    absolute log error over ``cv_folds`` folds of whole groups): a co-location dataset has tens of groups,
    and an unregularised MLP fits their measurement noise.
    """

    def __init__(self, kind: str = "mlp", hidden: int = 64, depths: Sequence[int] = (1, 2, 3),
                 alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0), cv_folds: int = 3, seed: int = 0) -> None:
        if kind not in ("mlp", "linear"):
            raise InferperfError(f"slowdown model must be 'mlp' or 'linear', got {kind!r}")
        self.kind = kind
        self.hidden = hidden
        self.depths = tuple(depths)
        self.alphas = tuple(alphas)
        self.cv_folds = cv_folds
        self.seed = seed

    def fit(self, examples: Sequence[ColoExample]) -> SlowdownPredictor:
        if len(examples) < 4:
            raise InferperfError(f"need at least 4 co-located measurements to train, got {len(examples)}")
        x = feature_matrix(examples)
        y = np.log([e.slowdown for e in examples])
        self.scaler_ = _Scaler().fit(x)
        xs = self.scaler_.transform(x)
        if self.kind == "linear":
            from sklearn.linear_model import Ridge

            model = Ridge(alpha=1.0).fit(xs, y)
            self.weights_ = [model.coef_.reshape(-1, 1)]
            self.biases_ = [np.array([model.intercept_])]
            self.depth_, self.alpha_ = 0, 1.0
            return self
        candidates = [(d, a) for d in self.depths for a in self.alphas]
        groups = np.array([e.group_key for e in examples])
        distinct = sorted(set(groups.tolist()))
        if len(candidates) > 1 and len(distinct) >= 2 * self.cv_folds:
            rng = np.random.default_rng(self.seed)
            fold_of = dict(zip(rng.permutation(distinct).tolist(), np.arange(len(distinct)) % self.cv_folds,
                               strict=True))
            folds = np.array([fold_of[g] for g in groups])
            scores = {}
            for d, a in candidates:
                errs = []
                for k in range(self.cv_folds):
                    tr, te = folds != k, folds == k
                    m = self._mlp(d, a).fit(xs[tr], y[tr])
                    errs.append(float(np.mean(np.abs(m.predict(xs[te]) - y[te]))))
                scores[(d, a)] = float(np.mean(errs))
            depth, alpha = min(scores, key=lambda k: scores[k])
            self.cv_scores_ = {f"depth={d},alpha={a}": v for (d, a), v in scores.items()}
        else:
            depth, alpha = candidates[0]
        model = self._mlp(depth, alpha).fit(xs, y)
        self.weights_ = [np.asarray(w) for w in model.coefs_]
        self.biases_ = [np.asarray(b) for b in model.intercepts_]
        self.depth_, self.alpha_ = depth, alpha
        return self

    def _mlp(self, depth: int, alpha: float) -> Any:
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(hidden_layer_sizes=(self.hidden,) * depth, alpha=alpha, max_iter=3000,
                            early_stopping=False, learning_rate_init=1e-3, random_state=self.seed)

    def _forward(self, xs: np.ndarray) -> np.ndarray:
        h = xs
        for k, (w, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            h = h @ w + b
            if k < len(self.weights_) - 1:
                h = np.maximum(h, 0.0)
        return h.reshape(-1)

    def predict(self, examples: Sequence[ColoExample]) -> np.ndarray:
        """Predicted slowdown (≥ 0) per example."""
        if not hasattr(self, "weights_"):
            raise InferperfError("the slowdown predictor is not trained")
        if not examples:
            return np.zeros(0)
        return np.exp(self._forward(self.scaler_.transform(feature_matrix(examples))))

    def predict_group(self, graphs: Sequence[ModelGraph], threads: Sequence[int],
                      cores: Sequence[Sequence[int]] | None, n_cores: int) -> np.ndarray:
        """Slowdown of every model of one group (graphs in order, thread split, cores per model)."""
        exs = []
        for i, g in enumerate(graphs):
            mine = set(cores[i]) if cores is not None else set()
            others = [j for j in range(len(graphs)) if j != i]
            shared = sum(1 for j in others if cores is not None and mine & set(cores[j]))
            exs.append(ColoExample(g, [graphs[j] for j in others], int(threads[i]), [int(threads[j]) for j in others],
                                   shared, n_cores, 1.0, "", g.name))
        return self.predict(exs)

    # ---- persistence ---------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {f"w{k}": w for k, w in enumerate(self.weights_)}
        arrays.update({f"b{k}": b for k, b in enumerate(self.biases_)})
        arrays.update({"scaler_mean": self.scaler_.mean, "scaler_scale": self.scaler_.scale})
        np.savez_compressed(path / "weights.npz", **arrays)
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind, "hidden": self.hidden,
               "depth": self.depth_, "alpha": self.alpha_, "layers": len(self.weights_),
               "feature_names": list(FEATURE_NAMES),
               "created": datetime.now(UTC).isoformat(timespec="seconds"), **(meta or {})}
        (path / "meta.json").write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SlowdownPredictor:
        path = Path(directory)
        try:
            doc = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InferperfError(f"{path} is not a co-location predictor ({exc})") from None
        if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
            raise InferperfError(f"{path} is not a co-location predictor of format {FORMAT} v{FORMAT_VERSION}")
        if doc.get("feature_names") != list(FEATURE_NAMES):
            raise InferperfError(f"{path} was trained with different features; retrain it with this inferperf")
        obj = cls(kind=doc["kind"], hidden=int(doc["hidden"]))
        with np.load(path / "weights.npz") as npz:
            obj.weights_ = [npz[f"w{k}"] for k in range(int(doc["layers"]))]
            obj.biases_ = [npz[f"b{k}"] for k in range(int(doc["layers"]))]
            obj.scaler_ = _Scaler()
            obj.scaler_.mean, obj.scaler_.scale = npz["scaler_mean"], npz["scaler_scale"]
        obj.depth_ = int(doc["depth"])
        obj.alpha_ = float(doc.get("alpha", 0.0))
        obj.meta_ = doc
        return obj


def evaluate_unseen_groups(examples: Sequence[ColoExample], *, seeds: Sequence[int] = (0, 1, 2),
                           test_fraction: float = 0.25, **mlp_params: Any) -> dict[str, Any]:
    """MAPE of the slowdown on groups (pairs/trios) never seen in training, per model kind, mean ± std
    over seeds; the constant (training mean) predictor is the reference. ``mlp_params`` go to the MLP."""
    from inferperf.predict.metrics import err_bound, mape

    groups = sorted({e.group_key for e in examples})
    if len(groups) < 5:
        raise InferperfError(f"need at least 5 distinct co-located groups to evaluate, got {len(groups)}")
    results: dict[str, dict[str, list[float]]] = {k: {"mape": [], "err10": []} for k in ("mlp", "linear", "constant")}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        test_groups = set(rng.choice(groups, size=max(1, round(len(groups) * test_fraction)), replace=False).tolist())
        train = [e for e in examples if e.group_key not in test_groups]
        test = [e for e in examples if e.group_key in test_groups]
        truth = np.array([e.slowdown for e in test])
        for kind in ("mlp", "linear"):
            params = mlp_params if kind == "mlp" else {}
            pred = SlowdownPredictor(kind=kind, seed=seed, **params).fit(train).predict(test)
            results[kind]["mape"].append(mape(truth, pred))
            results[kind]["err10"].append(err_bound(truth, pred, 0.1))
        const = np.full(len(test), float(np.exp(np.mean(np.log([e.slowdown for e in train])))))
        results["constant"]["mape"].append(mape(truth, const))
        results["constant"]["err10"].append(err_bound(truth, const, 0.1))
    return {
        "n_examples": len(examples), "n_groups": len(groups), "seeds": list(seeds), "test_fraction": test_fraction,
        "slowdown": {"mean": float(np.mean([e.slowdown for e in examples])),
                     "min": float(np.min([e.slowdown for e in examples])),
                     "max": float(np.max([e.slowdown for e in examples]))},
        "models": {k: {m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in r.items()}
                   for k, r in results.items()},
    }


def default_artifact_dir(device_id: str, home: Path | None = None) -> Path:
    """``$INFERPERF_HOME/colocate/<device>/slowdown-<UTC time>`` — outside ``predictors/``, whose artifacts
    are all :class:`~inferperf.predict.base.Predictor` s."""
    from inferperf.store.paths import inferperf_home

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (home or inferperf_home()) / "colocate" / device_id / f"slowdown-{stamp}"


def newest_artifact(device_id: str, home: Path | None = None) -> Path | None:
    """The most recently trained slowdown predictor of a device, or None."""
    from inferperf.store.paths import inferperf_home

    root = (home or inferperf_home()) / "colocate" / device_id
    found = sorted(root.glob("slowdown-*/meta.json")) if root.is_dir() else []
    return found[-1].parent if found else None
