"""Latency statistics from raw samples.

Percentiles are always computed from the raw samples (never averaged across runs), with numpy's default
linear interpolation so they agree with what users compute themselves. The confidence interval of the
median is distribution-free: it comes from order statistics and the binomial distribution of how many
samples fall below the true median, so it holds for the skewed, long-tailed distributions latency has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

#: above this many samples the binomial tail is taken from the normal approximation (exact summation
#: over math.comb would cost O(n) big-integer terms on every stopping check)
_EXACT_BINOMIAL_MAX_N = 1000

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based indices (lo, hi) into the sorted samples bounding the median with ``confidence``.

    The count of samples below the true median is Binomial(n, 1/2); the interval [x_(l), x_(n+1-l)]
    (1-based) covers the median with probability 1 - 2·F(l-1), so l is the largest rank with
    F(l-1) <= alpha/2. Returns None when n is too small for any interval to reach the confidence
    (n < 6 at 95%).
    """
    if n < 1:
        return None
    half_alpha = (1.0 - confidence) / 2.0
    if n <= _EXACT_BINOMIAL_MAX_N:
        total = 1 << n
        cum = 0
        first_over = 0
        for k in range(n + 1):
            cum += math.comb(n, k)
            if cum / total > half_alpha:
                first_over = k
                break
        lo_rank = first_over  # 1-based l: F(l-1) <= alpha/2 < F(l)
    else:
        z = NormalDist().inv_cdf(1.0 - half_alpha)
        lo_rank = math.floor(n / 2.0 - z * math.sqrt(n) / 2.0)
    if lo_rank < 1:
        return None
    return lo_rank - 1, n - lo_rank


def median_ci(sorted_samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the median from already-sorted samples.

    With too few samples for the requested confidence the full range (min, max) is returned: it is the
    widest honest answer, and the stopping rule will simply not be satisfied by it.
    """
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("no samples")
    ranks = median_ci_ranks(n, confidence)
    if ranks is None:
        return float(sorted_samples[0]), float(sorted_samples[-1])
    return float(sorted_samples[ranks[0]]), float(sorted_samples[ranks[1]])


def cv(samples: Sequence[float]) -> float:
    """Coefficient of variation (sample std / mean); 0 for fewer than two samples."""
    if len(samples) < 2:
        return 0.0
    a = np.asarray(samples, dtype=np.float64)
    mean = float(a.mean())
    if mean == 0:
        return 0.0
    return float(a.std(ddof=1) / mean)


#: IQR of a normal distribution in standard deviations: IQR/1.349 estimates sigma without the tails
_IQR_TO_SIGMA = 1.349


def robust_cv(samples: Sequence[float]) -> float:
    """Dispersion that ignores rare spikes: (IQR / 1.349) / median.

    Equal to the CV for normally distributed samples, but a single preemption spike (a 4 ms stall among
    thousands of 7 µs calls gives a classical CV above 4) barely moves it, while a broad shift (frequency
    change, a co-tenant loading the core) does. The tail itself is reported by p99/p999.
    """
    if len(samples) < 2:
        return 0.0
    q1, med, q3 = np.percentile(np.asarray(samples, dtype=np.float64), [25.0, 50.0, 75.0])
    if med == 0:
        return 0.0
    return float((q3 - q1) / _IQR_TO_SIGMA / med)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one run's raw latency samples, in milliseconds. ``std`` uses ddof=1."""

    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    mean: float
    min: float
    max: float
    std: float
    cv: float
    n: int
    ci95: tuple[float, float]

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], confidence: float = 0.95) -> LatencyStats:
        if len(samples_ms) == 0:
            raise ValueError("LatencyStats needs at least one sample")
        a = np.sort(np.asarray(samples_ms, dtype=np.float64))
        pct = np.percentile(a, list(PERCENTILES.values()))
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
        return cls(
            **{k: float(v) for k, v in zip(PERCENTILES, pct, strict=True)},
            mean=mean,
            min=float(a[0]),
            max=float(a[-1]),
            std=std,
            cv=std / mean if mean else 0.0,
            n=int(a.size),
            ci95=median_ci(a, confidence),
        )

    def latency_dict(self) -> dict[str, float]:
        """The ``latency_ms`` object of a stored measurement."""
        d = asdict(self)
        return {k: d[k] for k in ("p50", "p90", "p95", "p99", "p999", "mean", "min", "max", "std")}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d
