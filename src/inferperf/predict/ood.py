"""Out-of-distribution score: how far a graph's static features lie from everything seen in training.

The score is the distance to the k-th nearest training graph in standardised static-feature space (log
FLOPs, params, op-category counts, depth, …), divided by the 99th percentile of the same distance among the
training graphs themselves (each measured leave-one-out). A score above 1 means the graph is further from
the training set than 99% of training graphs are from each other: the ``ood`` flag. It needs no labels and
is independent of the predictor, so it also flags inputs where a confident-looking interval is unreliable
(conformal guarantees assume the new graph resembles the calibration graphs).

A kNN distance rather than a Mahalanobis distance: training sets mix families whose features form separate
clusters, which a single Gaussian describes badly (a point between two clusters would look typical).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferperf.predict.features import Standardizer


class OODDetector:
    """kNN-distance novelty score on standardised static features."""

    def __init__(self, k: int = 5, quantile: float = 0.99, max_points: int = 20_000, seed: int = 0) -> None:
        self.k = k
        self.quantile = quantile
        self.max_points = max_points
        self.seed = seed
        self.scaler: Standardizer | None = None
        self.points: np.ndarray | None = None
        self.threshold: float = math.nan
        self._tree: Any = None

    @property
    def fitted(self) -> bool:
        return self.points is not None and len(self.points) >= 2 and math.isfinite(self.threshold)

    def fit(self, static: np.ndarray, groups: Sequence[str] | None = None) -> OODDetector:
        """``static``: one row per training graph. ``groups`` (e.g. the architecture of each graph): the
        leave-one-out distance of a training graph skips graphs of its own group, so that the threshold
        reflects the distance of a *new* architecture, not of the same one at another batch size."""
        x = np.asarray(static, dtype=np.float64)
        self.scaler = Standardizer(floor=0.1).fit(x)
        z = self.scaler.transform(x).astype(np.float64)
        g = np.asarray(list(groups) if groups is not None else range(len(z)), dtype=object)
        if len(z) > self.max_points:
            idx = np.sort(np.random.default_rng(self.seed).choice(len(z), self.max_points, replace=False))
            z, g = z[idx], g[idx]
        self.points = z
        self._tree = None
        if len(z) < 2:
            self.threshold = math.nan
            return self
        k = min(self.k, len(z) - 1)
        largest_group = max(Counter(g.tolist()).values())
        m = min(len(z), k + largest_group)
        dist, nbr = self._get_tree().query(z, k=m)
        dist, nbr = np.asarray(dist).reshape(len(z), m), np.asarray(nbr).reshape(len(z), m)
        kth = np.empty(len(z))
        for i in range(len(z)):
            other = dist[i][g[nbr[i]] != g[i]]
            kth[i] = other[k - 1] if other.size >= k else (other[-1] if other.size else dist[i, -1])
        self.threshold = max(float(np.quantile(kth, self.quantile)), 1e-6)
        return self

    def _get_tree(self) -> Any:
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.points)
        return self._tree

    def score(self, static: np.ndarray) -> np.ndarray:
        """Distance ratio per row (> 1 ⇒ out of distribution); NaN when the detector could not be fitted."""
        x = np.atleast_2d(np.asarray(static, dtype=np.float64))
        if not self.fitted or self.scaler is None:
            return np.full(len(x), np.nan)
        k = min(self.k, len(self.points))
        z = self.scaler.transform(x).astype(np.float64)
        dist, _ = self._get_tree().query(z, k=k, workers=-1 if len(z) >= 256 else 1)
        dist = np.asarray(dist).reshape(len(x), k)
        return dist[:, k - 1] / self.threshold

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able parameters, arrays for an .npz)."""
        params = {
            "k": self.k,
            "quantile": self.quantile,
            "max_points": self.max_points,
            "seed": self.seed,
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            "scaler": self.scaler.state() if self.scaler else None,
        }
        arrays = {"points": self.points if self.points is not None else np.zeros((0, 0))}
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> OODDetector:
        d = cls(
            k=int(params["k"]),
            quantile=float(params["quantile"]),
            max_points=int(params["max_points"]),
            seed=int(params["seed"]),
        )
        d.threshold = math.nan if params.get("threshold") is None else float(params["threshold"])
        d.scaler = Standardizer.from_state(params["scaler"]) if params.get("scaler") else None
        pts = arrays.get("points")
        d.points = pts if pts is not None and pts.size else None
        return d
