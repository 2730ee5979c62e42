"""Accuracy metrics of predictors, as the latency-prediction literature reports them.

All errors are relative to the measured value (``(pred - true) / true``), so a model with 1 ms and one with
1 s latency weigh the same. Pairs whose true value is missing, non-positive or non-finite are dropped
before any metric (a missing label is not a zero); every function returns NaN on an empty input rather
than a misleading 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _pairs(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    keep = np.isfinite(t) & (t > 0) & np.isfinite(p)
    return t[keep], p[keep]


def relative_errors(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    t, p = _pairs(y_true, y_pred)
    return (p - t) / t


def mape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute percentage error, in percent."""
    r = relative_errors(y_true, y_pred)
    return float(np.mean(np.abs(r)) * 100) if r.size else math.nan


def rmspe(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared percentage error, in percent (punishes a few large misses more than MAPE)."""
    r = relative_errors(y_true, y_pred)
    return float(np.sqrt(np.mean(r**2)) * 100) if r.size else math.nan


def err_bound(y_true: ArrayLike, y_pred: ArrayLike, bound: float = 0.1) -> float:
    """Share (0–1) of predictions within ±``bound`` relative error: ErrBound(0.1) is the "±10% accuracy"."""
    r = relative_errors(y_true, y_pred)
    return float(np.mean(np.abs(r) <= bound + 1e-12)) if r.size else math.nan


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation (ties get average ranks): does the predictor order models correctly?"""
    t, p = _pairs(y_true, y_pred)
    if t.size < 2:
        return math.nan
    from scipy.stats import rankdata

    rt, rp = rankdata(t), rankdata(p)
    if np.std(rt) == 0 or np.std(rp) == 0:
        return math.nan
    return float(np.corrcoef(rt, rp)[0, 1])


def interval_coverage(y_true: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Share (0–1) of true values inside [lo, hi]; rows without an interval (NaN bound) are skipped."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    lo_a = np.asarray(lo, dtype=np.float64).ravel()
    hi_a = np.asarray(hi, dtype=np.float64).ravel()
    keep = np.isfinite(t) & (t > 0) & ~np.isnan(lo_a) & ~np.isnan(hi_a)
    if not keep.any():
        return math.nan
    t, lo_a, hi_a = t[keep], lo_a[keep], hi_a[keep]
    return float(np.mean((t >= lo_a) & (t <= hi_a)))


def interval_relative_width(y_pred: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Mean of (hi - lo) / prediction: 0.4 means the 90% interval spans 40% of the predicted value."""
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    lo_a = np.asarray(lo, dtype=np.float64).ravel()
    hi_a = np.asarray(hi, dtype=np.float64).ravel()
    keep = np.isfinite(p) & (p > 0) & np.isfinite(lo_a) & np.isfinite(hi_a)
    if not keep.any():
        return math.nan
    return float(np.mean((hi_a[keep] - lo_a[keep]) / p[keep]))


METRIC_NAMES: tuple[str, ...] = (
    "mape",
    "rmspe",
    "err5",
    "err10",
    "err15",
    "spearman",
    "coverage",
    "width",
    "n",
)


def regression_report(
    y_true: ArrayLike, y_pred: ArrayLike, lo: ArrayLike | None = None, hi: ArrayLike | None = None
) -> dict[str, Any]:
    """Every metric of :data:`METRIC_NAMES` for one target (coverage/width NaN without intervals)."""
    t, p = _pairs(y_true, y_pred)
    out: dict[str, Any] = {
        "mape": mape(y_true, y_pred),
        "rmspe": rmspe(y_true, y_pred),
        "err5": err_bound(y_true, y_pred, 0.05),
        "err10": err_bound(y_true, y_pred, 0.10),
        "err15": err_bound(y_true, y_pred, 0.15),
        "spearman": spearman(y_true, y_pred),
        "coverage": math.nan,
        "width": math.nan,
        "n": int(t.size),
    }
    if lo is not None and hi is not None:
        out["coverage"] = interval_coverage(y_true, lo, hi)
        out["width"] = interval_relative_width(y_pred, lo, hi)
    return out
