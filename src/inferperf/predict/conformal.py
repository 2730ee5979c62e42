"""Split-conformal prediction intervals in log space.

On held-out calibration samples the absolute log-residual ``|log y - log ŷ|`` is computed; its conformal
quantile ``q`` (the ⌈(n+1)(1-α)⌉-th smallest of n residuals) gives the interval ``[ŷ·e^-q, ŷ·e^q]``, which
covers a new value with probability ≥ 1-α *when the new sample is exchangeable with the calibration
samples*. Working in log space makes the interval multiplicative (±x% rather than ±x ms), which is what a
latency spanning four orders of magnitude needs.

Residual size differs between families (a family the model fits badly has wide residuals), so a separate
quantile is kept per family when it has at least ``min_group`` calibration points; other known families use
the global quantile. A family never seen in training is *not* exchangeable with random calibration samples:
its errors are those of extrapolation. When the predictor was fitted with family cross-fitting
(:meth:`ConformalCalibrator.fit_unseen`: residuals of each training family predicted by a model that never
saw it), a family outside ``known`` gets the quantile of those out-of-family residuals instead — the
exchangeability the leave-family-out evaluation actually tests (``additive``: coverage of held-out
families 0.84 with the global quantile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def conformal_quantile(residuals: np.ndarray, alpha: float) -> float:
    """The finite-sample conformal quantile, or +inf when there are too few residuals (n < 1/α - 1)."""
    r = np.sort(np.asarray(residuals, dtype=np.float64))
    n = r.size
    if n == 0:
        return math.inf
    k = math.ceil((n + 1) * (1.0 - alpha))
    if k > n:
        return math.inf
    return float(r[k - 1])


class ConformalCalibrator:
    """Per-target (and per-family) multiplicative intervals fitted on calibration residuals."""

    def __init__(self, alpha: float = 0.1, min_group: int = 30) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {alpha}")
        self.alpha = alpha
        self.min_group = min_group
        #: target → {"global": q, "n": n, "groups": {family: q}, "group_n": {family: n}}
        self.quantiles: dict[str, dict[str, Any]] = {}
        #: target → (q, n) over out-of-family residuals; used for families outside ``known``
        self.unseen: dict[str, tuple[float, int]] = {}
        #: the training families (None: unknown, every family is treated as seen)
        self.known: set[str] | None = None

    def fit(
        self, targets: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, groups: Sequence[str]
    ) -> ConformalCalibrator:
        """``y_true`` / ``y_pred``: [n, len(targets)] natural units (NaN where missing)."""
        y_true = np.asarray(y_true, dtype=np.float64).reshape(len(groups), len(targets))
        y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(groups), len(targets))
        groups_a = np.asarray(list(groups), dtype=object)
        for j, target in enumerate(targets):
            t, p = y_true[:, j], y_pred[:, j]
            ok = np.isfinite(t) & (t > 0) & np.isfinite(p) & (p > 0)
            if not ok.any():
                continue
            res = np.abs(np.log(t[ok]) - np.log(p[ok]))
            g = groups_a[ok]
            entry: dict[str, Any] = {
                "global": conformal_quantile(res, self.alpha),
                "n": int(res.size),
                "groups": {},
                "group_n": {},
            }
            for fam in sorted(set(g.tolist())):
                rf = res[g == fam]
                entry["group_n"][fam] = int(rf.size)
                if rf.size >= self.min_group:
                    entry["groups"][fam] = conformal_quantile(rf, self.alpha)
            self.quantiles[target] = entry
        return self

    def fit_unseen(
        self, targets: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, known: Sequence[str]
    ) -> ConformalCalibrator:
        """Out-of-family residuals (each sample predicted by a model fitted without its family); ``known``:
        the families the final model was trained on."""
        y_true = np.asarray(y_true, dtype=np.float64).reshape(-1, len(targets))
        y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1, len(targets))
        self.known = {str(k) for k in known}
        for j, target in enumerate(targets):
            t, p = y_true[:, j], y_pred[:, j]
            ok = np.isfinite(t) & (t > 0) & np.isfinite(p) & (p > 0)
            if ok.any():
                res = np.abs(np.log(t[ok]) - np.log(p[ok]))
                self.unseen[target] = (conformal_quantile(res, self.alpha), int(res.size))
        return self

    def quantile(self, target: str, group: str | None = None) -> float:
        entry = self.quantiles.get(target)
        if entry is None:
            return math.inf
        if group is not None and group in entry["groups"]:
            return float(entry["groups"][group])
        if self.known is not None and group not in self.known and target in self.unseen:
            # never narrower than the in-distribution interval
            return max(float(self.unseen[target][0]), float(entry["global"]))
        return float(entry["global"])

    def intervals(
        self, target: str, y_pred: np.ndarray, groups: Sequence[str | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) arrays; NaN where the target is uncalibrated (too few calibration points)."""
        p = np.asarray(y_pred, dtype=np.float64)
        q = np.array([self.quantile(target, g) for g in groups], dtype=np.float64)
        ok = np.isfinite(q) & np.isfinite(p)
        lo = np.full(p.shape, np.nan)
        hi = np.full(p.shape, np.nan)
        lo[ok] = p[ok] * np.exp(-q[ok])
        hi[ok] = p[ok] * np.exp(q[ok])
        return lo, hi

    def state(self) -> dict[str, Any]:
        def enc(x: float) -> float | None:
            return None if not math.isfinite(x) else x

        return {
            "alpha": self.alpha,
            "min_group": self.min_group,
            "quantiles": {
                t: {
                    "global": enc(e["global"]),
                    "n": e["n"],
                    "groups": {g: enc(q) for g, q in e["groups"].items()},
                    "group_n": e["group_n"],
                }
                for t, e in self.quantiles.items()
            },
            "unseen": {t: {"q": enc(q), "n": n} for t, (q, n) in self.unseen.items()},
            "known": sorted(self.known) if self.known is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ConformalCalibrator:
        def dec(x: float | None) -> float:
            return math.inf if x is None else float(x)

        c = cls(alpha=float(state["alpha"]), min_group=int(state["min_group"]))
        c.quantiles = {
            t: {
                "global": dec(e["global"]),
                "n": int(e["n"]),
                "groups": {g: dec(q) for g, q in e["groups"].items()},
                "group_n": dict(e.get("group_n", {})),
            }
            for t, e in state.get("quantiles", {}).items()
        }
        c.unseen = {t: (dec(e["q"]), int(e["n"])) for t, e in (state.get("unseen") or {}).items()}
        known = state.get("known")
        c.known = {str(k) for k in known} if known is not None else None
        return c
