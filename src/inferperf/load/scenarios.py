"""Multi-run scenarios: the closed-loop concurrency sweep and the peak search.

Both take a function that performs *one* run (``run_at(qps)`` or ``run_at(concurrency)``), so the same
logic drives LoadGen, the in-process open-loop generator and HTTP runs, and is tested with fake runs.

Peak search: the highest Server-scenario rate whose tail latency meets the SLO, by bisection. A rate
*passes* when its run answered every query, kept its schedule (late sends within the rule) and its p99
was within the SLO; a run the generator could not keep up with is a failure at that rate — it does not
show that the server sustains it. Bisection assumes that passing is monotone in the rate (true for a
queueing system; noise near the boundary makes the answer accurate to about the noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from inferperf.errors import ConfigError
from inferperf.load.result import LoadResult

SCENARIOS = ("single-stream", "multi-stream", "server", "offline", "concurrency", "peak")


def passes_slo(result: LoadResult, slo_ms: float, max_late_ratio: float = 0.01) -> tuple[bool, str]:
    """Whether one Server run counts as sustaining its rate within the SLO, and why not."""
    if result.latency is None:
        return False, "no query completed"
    if result.errors:
        return False, f"{result.errors} queries failed"
    if result.late_ratio is not None and result.late_ratio > max_late_ratio:
        return False, f"{100 * result.late_ratio:.1f}% late sends: the generator could not keep the rate"
    p = result.latency.p99
    if p > slo_ms:
        return False, f"p99 {p:.3f} ms > SLO {slo_ms:g} ms"
    return True, f"p99 {p:.3f} ms <= SLO {slo_ms:g} ms"


@dataclass
class PeakSearch:
    """The outcome of a peak search: the highest passing rate and every run it took to find it."""

    slo_ms: float
    peak_qps: float | None
    best: LoadResult | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"slo_ms": self.slo_ms, "peak_qps": self.peak_qps, "steps": self.steps, "note": self.note}


def peak_search(
    run_at: Callable[[float], LoadResult],
    *,
    slo_ms: float,
    lo_qps: float,
    hi_qps: float,
    max_steps: int = 8,
    rel_tol: float = 0.05,
    max_late_ratio: float = 0.01,
) -> PeakSearch:
    """Bisect (geometrically) between ``lo_qps`` and ``hi_qps`` for the highest rate meeting the SLO.

    At most ``max_steps`` runs after the two bound checks; stops early once the bracket is within
    ``rel_tol`` of its upper end.
    """
    if not 0 < lo_qps < hi_qps:
        raise ConfigError(f"peak search needs 0 < low rate < high rate; got {lo_qps:g} and {hi_qps:g}")
    if slo_ms <= 0:
        raise ConfigError("the latency SLO must be positive (--target-p99-ms)")
    search = PeakSearch(slo_ms, None, None)

    def probe(qps: float) -> tuple[bool, LoadResult]:
        result = run_at(qps)
        ok, why = passes_slo(result, slo_ms, max_late_ratio)
        search.steps.append({"qps": qps, "passed": ok, "why": why, "qps_achieved": result.qps_achieved,
                             "p99_ms": result.p99_ms, "valid": result.valid})
        return ok, result

    ok, result = probe(lo_qps)
    if not ok:
        search.note = f"even {lo_qps:g} queries/s misses the SLO: {search.steps[-1]['why']}"
        return search
    search.peak_qps, search.best = lo_qps, result
    ok, result = probe(hi_qps)
    if ok:
        search.peak_qps, search.best = hi_qps, result
        search.note = f"the upper bound {hi_qps:g} queries/s meets the SLO; the peak may be higher (raise --qps)"
        return search
    lo, hi = lo_qps, hi_qps
    for _ in range(max_steps):
        if (hi - lo) / hi <= rel_tol:
            break
        mid = math.sqrt(lo * hi)
        ok, result = probe(mid)
        if ok:
            lo = mid
            search.peak_qps, search.best = mid, result
        else:
            hi = mid
    return search


def concurrency_sweep(run_at: Callable[[int], LoadResult], levels: Sequence[int]) -> list[LoadResult]:
    """One closed-loop run per concurrency level, in the order given."""
    if not levels or any(c < 1 for c in levels):
        raise ConfigError("concurrency levels must be positive integers")
    return [run_at(int(c)) for c in levels]


def best_throughput(results: Sequence[LoadResult]) -> LoadResult:
    """The sweep point with the highest achieved rate among the valid ones (any, if none is valid)."""
    pool = [r for r in results if r.valid and r.qps_achieved] or [r for r in results if r.qps_achieved] or list(results)
    return max(pool, key=lambda r: r.qps_achieved or 0.0)
