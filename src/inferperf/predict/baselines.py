"""Baseline predictors the GNN must beat to be worth its cost.

- ``lr-flops``: ordinary (ridge-stabilised) linear regression of the log target on log FLOPs, log params,
  log threads and the device features. It is a *log-log* model (latency ∝ FLOPs^a · params^b), named for
  what it sees; in linear space it would be dominated by the largest models.
- ``mlp-flat``: the CS230 design — the node attribute list (op category one-hot, log FLOPs, log params,
  output size, bytes written) and the adjacency matrix, flattened into one vector and fed to a fully
  connected network whose number of hidden layers is chosen on the dev set. Graphs are padded to
  ``max_nodes``; a larger graph is *truncated* to its first ``max_nodes`` nodes in topological order (a
  warning says how many were), which makes this baseline blind to the rest of big models — by design, this
  is the limitation graph networks remove. The configuration/device features are appended.
- ``lgbm``: gradient-boosted trees (LightGBM) on the static graph features + configuration + device
  features, one model per target, early-stopped on the dev set. Trees handle the NaN of an unknown device
  feature natively.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.dataset.core import TARGETS, GraphDataset
from inferperf.ir.features import NODE_FEATURE_NAMES, OP_CATEGORIES
from inferperf.ir.graph import ModelGraph
from inferperf.predict.base import Predictor, PredictorError, log_labels, register
from inferperf.predict.features import (
    DEVICE_FEATURE_NAMES,
    NODE_FEATURES,
    Standardizer,
    device_vector,
    tabular_matrix,
)


def _rows(dataset: GraphDataset) -> tuple[list[ModelGraph], list[dict[str, Any]], list[dict[str, Any]]]:
    return [s.graph for s in dataset], [s.config for s in dataset], [s.device for s in dataset]


# ======== lr-flops
@register("lr-flops")
class LinearFlopsPredictor(Predictor):
    """Log-log linear regression on FLOPs, params, threads and device features."""

    name = "lr-flops"
    default_family_folds = 5  # cheap to refit: intervals for unseen families from out-of-family residuals

    def __init__(self, *, ridge: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ridge = ridge

    @staticmethod
    def _design(
        graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]], devices: Sequence[dict[str, Any]]
    ) -> np.ndarray:
        rows = []
        for g, c, d in zip(graphs, configs, devices, strict=True):
            threads = float(c.get("intra_op_threads", 1) or 1)
            rows.append(
                [
                    math.log1p(g.flops),
                    math.log1p(g.params),
                    math.log2(max(threads, 1.0)),
                    *device_vector(d, c),
                ]
            )
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), 3 + len(DEVICE_FEATURE_NAMES))

    def _fit(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        x = self._design(*_rows(train))
        self.scaler_ = Standardizer(floor=1e-3).fit(x)
        z = self.scaler_.transform(x).astype(np.float64)
        y = log_labels(train)
        self.coef_ = np.full((len(TARGETS), z.shape[1]), np.nan)
        self.intercept_ = np.full(len(TARGETS), np.nan)
        for j in range(len(TARGETS)):
            ok = np.isfinite(y[:, j])
            if not ok.any():
                continue
            zj, yj = z[ok], y[ok, j]
            mean = float(yj.mean())
            a = zj.T @ zj + self.ridge * len(yj) * np.eye(zj.shape[1])
            self.coef_[j] = np.linalg.solve(a, zj.T @ (yj - mean))
            self.intercept_[j] = mean

    def _predict_log(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
    ) -> np.ndarray:
        z = self.scaler_.transform(self._design(graphs, configs, devices)).astype(np.float64)
        return z @ self.coef_.T + self.intercept_

    def _save_state(self, directory: Path) -> dict[str, Any]:
        return {
            "scaler": self.scaler_.state(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
        }

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        self.scaler_ = Standardizer.from_state(state["scaler"])
        self.coef_ = np.array(
            [[np.nan if v is None else v for v in row] for row in state["coef"]], dtype=np.float64
        )
        self.intercept_ = np.array([np.nan if v is None else v for v in state["intercept"]], dtype=np.float64)


# ======== mlp-flat
_CATEGORY_COLS = [NODE_FEATURE_NAMES.index(f"category={c}") for c in OP_CATEGORIES]
_NUMERIC_COLS = [
    NODE_FEATURE_NAMES.index(n) for n in ("log_flops", "log_params", "log_out_numel", "log_bytes_written")
]
#: per node slot: category one-hot, four numeric attributes, a "slot holds a node" flag
_SLOT_DIM = len(_CATEGORY_COLS) + len(_NUMERIC_COLS) + 1


class _FlatGraph:
    """Compact form of one graph for the flat MLP: node attributes [k, SLOT] and adjacency slots."""

    __slots__ = ("attrs", "adj", "truncated")

    def __init__(self, attrs: np.ndarray, adj: np.ndarray, truncated: bool) -> None:
        self.attrs, self.adj, self.truncated = attrs, adj, truncated


@register("mlp-flat")
class FlatMLPPredictor(Predictor):
    """MLP on the flattened node attribute list + adjacency (CS230); hidden layer count chosen on dev."""

    name = "mlp-flat"

    def __init__(
        self,
        *,
        max_nodes: int = 128,
        hidden: int = 100,
        depth_grid: Sequence[int] = (1, 2, 4, 8),
        epochs: int = 150,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 15,
        threads: int | None = None,
        predict_threads: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_nodes = max_nodes
        self.hidden = hidden
        self.depth_grid = tuple(depth_grid)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.threads = threads
        self.predict_threads = predict_threads

    # ---- encoding ------------------------------------------------------------------------------------
    def _flat_graph(self, g: ModelGraph) -> _FlatGraph:
        k = min(len(g.nodes), self.max_nodes)
        nf = NODE_FEATURES.matrix(g)[:k] if k else np.zeros((0, len(NODE_FEATURE_NAMES)), np.float32)
        attrs = np.zeros((k, _SLOT_DIM), dtype=np.float32)
        attrs[:, : len(_CATEGORY_COLS)] = nf[:, _CATEGORY_COLS]
        attrs[:, len(_CATEGORY_COLS) : -1] = nf[:, _NUMERIC_COLS]
        attrs[:, -1] = 1.0
        m = self.max_nodes
        pairs = {
            (min(e.src, e.dst), max(e.src, e.dst))
            for e in g.edges
            if e.src < m and e.dst < m and e.src != e.dst
        }
        # index of (i, j), i < j, in the row-major strict upper triangle of an m x m matrix
        adj = np.array(sorted(i * m - i * (i + 1) // 2 + (j - i - 1) for i, j in pairs), dtype=np.int64)
        return _FlatGraph(attrs, adj, len(g.nodes) > m)

    def _encode(self, graphs: Sequence[ModelGraph]) -> list[_FlatGraph]:
        cache: dict[int, _FlatGraph] = {}
        out = []
        for g in graphs:
            fg = cache.get(id(g))
            if fg is None:
                fg = cache[id(g)] = self._flat_graph(g)
            out.append(fg)
        n_trunc = sum(1 for fg in cache.values() if fg.truncated)
        if n_trunc:
            warnings.warn(
                f"mlp-flat: {n_trunc} of {len(cache)} graphs have more than max_nodes={self.max_nodes} "
                "nodes and were truncated to their first nodes",
                stacklevel=3,
            )
        return out

    @property
    def _graph_dim(self) -> int:
        m = self.max_nodes
        return m * _SLOT_DIM + m * (m - 1) // 2

    def _matrix(self, flats: Sequence[_FlatGraph], tab: np.ndarray) -> np.ndarray:
        m = self.max_nodes
        n_attr = m * _SLOT_DIM
        out = np.zeros((len(flats), self._graph_dim + tab.shape[1]), dtype=np.float32)
        num = slice(len(_CATEGORY_COLS), len(_CATEGORY_COLS) + len(_NUMERIC_COLS))
        for i, fg in enumerate(flats):
            a = fg.attrs.copy()
            a[:, num] = (a[:, num] - self.node_mean_) / self.node_scale_
            out[i, : a.size] = a.ravel()
            out[i, n_attr + fg.adj] = 1.0
        out[:, self._graph_dim :] = tab
        return out

    # ---- model ---------------------------------------------------------------------------------------
    def _build(self, in_dim: int, depth: int) -> Any:
        import torch
        from torch import nn

        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, self.hidden), nn.ReLU()]
            d = self.hidden
        layers.append(nn.Linear(d, len(TARGETS)))
        torch.manual_seed(self.seed)
        return nn.Sequential(*layers)

    def _fit(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        from inferperf.predict.training import torch_threads

        with torch_threads(self.threads):
            self._fit_torch(train, dev)

    def _fit_torch(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        import torch

        from inferperf.predict.training import (
            TargetScaler,
            mean_abs_log_error,
            minibatches,
            train_loop,
        )

        if not self.depth_grid or any(int(d) < 1 for d in self.depth_grid):
            raise PredictorError(
                f"mlp-flat: depth_grid must list positive layer counts; got {self.depth_grid}"
            )
        graphs, configs, devices = _rows(train)
        flats = self._encode(graphs)
        num_rows = np.concatenate(
            [fg.attrs[:, len(_CATEGORY_COLS) : -1] for fg in flats] or [np.zeros((0, 4))]
        )
        self.node_mean_ = num_rows.mean(axis=0) if len(num_rows) else np.zeros(len(_NUMERIC_COLS))
        self.node_scale_ = (
            np.maximum(num_rows.std(axis=0), 0.1) if len(num_rows) else np.ones(len(_NUMERIC_COLS))
        )
        tab = tabular_matrix(graphs, configs, devices)
        self.tab_scaler_ = Standardizer().fit(tab)
        x = torch.from_numpy(self._matrix(flats, self.tab_scaler_.transform(tab)))
        y_log = log_labels(train)
        self.target_scaler_ = TargetScaler().fit(y_log)
        y, mask = (torch.from_numpy(a) for a in self.target_scaler_.transform(y_log))

        dev_x = dev_y = None
        if dev is not None and len(dev):
            dg, dc, dd = _rows(dev)
            dev_x = torch.from_numpy(
                self._matrix(self._encode(dg), self.tab_scaler_.transform(tabular_matrix(dg, dc, dd)))
            )
            dev_y = log_labels(dev)

        def batches(rng: np.random.Generator):  # noqa: ANN202
            for idx in minibatches(len(x), self.batch_size, rng):
                t = torch.from_numpy(idx)
                yield x[t], y[t], mask[t]

        def dev_eval(model: Any) -> float:
            pred = self.target_scaler_.inverse(model(dev_x).numpy())
            return mean_abs_log_error(pred, dev_y)

        best = None
        self.selection_ = {}
        grid = self.depth_grid if dev_x is not None else self.depth_grid[len(self.depth_grid) // 2 :][:1]
        for depth in grid:
            model = self._build(x.shape[1], int(depth))
            hist = train_loop(
                model,
                batches,
                lambda m, inp: m(inp),
                dev_eval if dev_x is not None else None,
                epochs=self.epochs,
                lr=self.lr,
                weight_decay=self.weight_decay,
                patience=self.patience,
                seed=self.seed,
            )
            score = hist["best_dev"] if hist["best_dev"] is not None else math.inf
            self.selection_[int(depth)] = {
                "dev_mean_abs_log_error": hist["best_dev"],
                "epochs": hist["epochs_run"],
            }
            if best is None or score < best[0]:
                best = (score, int(depth), model)
        assert best is not None
        self.depth_ = best[1]
        self.model_ = best[2]

    def _predict_log(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
    ) -> np.ndarray:
        import torch

        from inferperf.predict.training import torch_threads

        flats = self._encode(graphs)
        x = self._matrix(flats, self.tab_scaler_.transform(tabular_matrix(graphs, configs, devices)))
        with torch.no_grad(), torch_threads(self.predict_threads):
            out = self.model_(torch.from_numpy(x)).numpy()
        return self.target_scaler_.inverse(out)

    def _save_state(self, directory: Path) -> dict[str, Any]:
        import torch

        torch.save(self.model_.state_dict(), directory / "model.pt")
        return {
            "depth": self.depth_,
            "selection": self.selection_,
            "node_mean": self.node_mean_.tolist(),
            "node_scale": self.node_scale_.tolist(),
            "tab_scaler": self.tab_scaler_.state(),
            "target_scaler": self.target_scaler_.state(),
            "weights": "model.pt",
        }

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        import torch

        self.depth_ = int(state["depth"])
        self.selection_ = state.get("selection", {})
        self.node_mean_ = np.asarray(state["node_mean"])
        self.node_scale_ = np.asarray(state["node_scale"])
        self.tab_scaler_ = Standardizer.from_state(state["tab_scaler"])
        self.target_scaler_ = _target_scaler(state["target_scaler"])
        model = self._build(self._graph_dim + len(self.tab_scaler_.mean), self.depth_)
        model.load_state_dict(torch.load(directory / state["weights"], weights_only=True))
        self.model_ = model.eval()


def _target_scaler(state: dict[str, Any]) -> Any:
    from inferperf.predict.training import TargetScaler

    return TargetScaler.from_state(state)


# ======== lgbm
@register("lgbm")
class LightGBMPredictor(Predictor):
    """Gradient-boosted trees on static graph features + configuration + device features."""

    name = "lgbm"
    default_family_folds = 5  # cheap to refit: intervals for unseen families from out-of-family residuals

    def __init__(
        self,
        *,
        n_estimators: int = 2000,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 10,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        early_stopping_rounds: int = 100,
        threads: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.early_stopping_rounds = early_stopping_rounds
        self.threads = threads

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1,
            "feature_fraction": self.colsample_bytree,
            "num_threads": self.threads,
            "seed": self.seed,
            "verbosity": -1,
            "deterministic": True,
            "force_row_wise": True,
        }

    def _fit(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        import lightgbm as lgb

        x = tabular_matrix(*_rows(train))
        y = log_labels(train)
        dx = tabular_matrix(*_rows(dev)) if dev is not None and len(dev) else None
        dy = log_labels(dev) if dx is not None else None
        self.boosters_: dict[str, Any] = {}
        self.best_iterations_: dict[str, int] = {}
        for j, target in enumerate(TARGETS):
            ok = np.isfinite(y[:, j])
            if not ok.any():
                continue
            data = lgb.Dataset(x[ok], y[ok, j], free_raw_data=True)
            valid, callbacks = [], []
            if dx is not None and np.isfinite(dy[:, j]).any():
                dok = np.isfinite(dy[:, j])
                valid = [lgb.Dataset(dx[dok], dy[dok, j], reference=data)]
                callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
                rounds = self.n_estimators
            else:  # no dev: a fixed, conservative number of rounds
                rounds = min(self.n_estimators, 300)
            booster = lgb.train(
                self._params(), data, num_boost_round=rounds, valid_sets=valid, callbacks=callbacks
            )
            self.boosters_[target] = booster
            self.best_iterations_[target] = int(booster.best_iteration or booster.current_iteration())

    def _predict_log(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
    ) -> np.ndarray:
        x = tabular_matrix(graphs, configs, devices)
        out = np.full((len(graphs), len(TARGETS)), np.nan)
        for j, target in enumerate(TARGETS):
            booster = self.boosters_.get(target)
            if booster is not None:
                out[:, j] = booster.predict(x, num_iteration=self.best_iterations_[target])
        return out

    def _save_state(self, directory: Path) -> dict[str, Any]:
        files = {}
        for target, booster in self.boosters_.items():
            name = f"lgbm-{target}.txt"
            booster.save_model(str(directory / name), num_iteration=self.best_iterations_[target])
            files[target] = name
        return {"files": files, "best_iterations": self.best_iterations_}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        import lightgbm as lgb

        self.boosters_ = {t: lgb.Booster(model_file=str(directory / f)) for t, f in state["files"].items()}
        self.best_iterations_ = {t: int(v) for t, v in state["best_iterations"].items()}
