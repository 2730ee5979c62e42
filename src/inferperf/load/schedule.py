"""Seeded arrival schedules for open-loop load (measurement rule 5).

A schedule is fixed before the run starts: an array of send times in nanoseconds from the start, a
function of (process, rate, duration, seed) only. The generator then tries to keep it; how well it did
is measured (late sends), never hidden by re-timing the schedule to what the system under test allowed
(that would be coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inferperf.errors import ConfigError

ARRIVAL_PROCESSES = ("poisson", "uniform")

#: hard cap on the number of arrivals one schedule may hold (bounded loops, bounded memory)
MAX_ARRIVALS = 5_000_000


@dataclass(frozen=True)
class Schedule:
    """Send times (ns from the run's start) and how they were drawn."""

    offsets_ns: np.ndarray
    process: str
    qps: float
    seed: int
    duration_s: float

    def __len__(self) -> int:
        return int(self.offsets_ns.size)

    def to_dict(self) -> dict[str, object]:
        return {"process": self.process, "qps": self.qps, "seed": self.seed, "duration_s": self.duration_s,
                "arrivals": len(self)}


def arrival_schedule(
    qps: float,
    duration_s: float,
    *,
    process: str = "poisson",
    seed: int = 0,
    min_count: int = 0,
    max_count: int = MAX_ARRIVALS,
) -> Schedule:
    """Arrivals at an average ``qps`` for ``duration_s`` seconds (at least ``min_count`` of them).

    Poisson arrivals have exponential gaps (the Server scenario of MLPerf and the paper's workload
    generator); uniform arrivals are evenly spaced (a constant-rate probe). The first arrival is at 0 for
    uniform and after one random gap for Poisson, exactly as a Poisson process started at 0 would be.
    """
    if process not in ARRIVAL_PROCESSES:
        raise ConfigError(f"arrival process must be one of {', '.join(ARRIVAL_PROCESSES)}; got {process!r}")
    if not qps > 0:
        raise ConfigError(f"the target rate must be positive; got {qps!r} queries/s")
    if not duration_s > 0:
        raise ConfigError(f"the duration must be positive; got {duration_s!r} s")
    expected = qps * duration_s
    n = int(min(max(np.ceil(expected), min_count, 1), max_count))
    if expected > max_count:
        raise ConfigError(f"{qps:g} queries/s for {duration_s:g} s is {expected:.0f} arrivals, more than the "
                          f"{max_count} one run may schedule; shorten the run")
    if process == "uniform":
        gaps_ns = np.full(n, 1e9 / qps)
        offsets = np.concatenate([[0.0], np.cumsum(gaps_ns[:-1])])
    else:
        rng = np.random.default_rng(seed)
        offsets = np.cumsum(rng.exponential(1e9 / qps, size=n))
        # a Poisson process over the duration may hold more arrivals than its mean: keep drawing until
        # the schedule covers the whole duration (bounded by max_count)
        horizon = duration_s * 1e9
        while offsets[-1] < horizon and offsets.size < max_count:
            extra = np.cumsum(rng.exponential(1e9 / qps, size=max(16, n // 10))) + offsets[-1]
            offsets = np.concatenate([offsets, extra])[:max_count]
        keep = max(int(np.searchsorted(offsets, horizon, side="left")), min(min_count, offsets.size), 1)
        offsets = offsets[:keep]
    return Schedule(offsets.astype(np.int64), process, float(qps), int(seed), float(duration_s))
