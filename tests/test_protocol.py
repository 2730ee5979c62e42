"""The timing protocol, statistics and result shape, with an injected fake clock (no real timing)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest
from scipy.stats import binom

from inferperf.errors import ConfigError
from inferperf.measure.config import ProtocolConfig, RunConfig
from inferperf.measure.protocol import (
    block_length,
    choose_affinity,
    ci_rel_of_sorted,
    run_measurement,
    time_callable,
    warm_up,
)
from inferperf.measure.result import Measurement
from inferperf.measure.stats import LatencyStats, cv, median_ci, median_ci_ranks, robust_cv
from inferperf.runtimes.base import Backend, InputSpec, Session

MS = 1_000_000  # ns


class FakeTimer:
    """A clock that only moves when the fake model runs: each call advances it by the next duration."""

    def __init__(self, durations_ns: Iterable[int]) -> None:
        self.now = 0
        self.calls = 0
        self._durations: Iterator[int] = iter(durations_ns)

    def clock(self) -> int:
        return self.now

    def call(self) -> None:
        self.now += next(self._durations)
        self.calls += 1


def lognormal_ns(seed: int, sigma: float, median_ns: int = MS) -> Iterator[int]:
    rng = np.random.default_rng(seed)
    while True:
        for x in rng.lognormal(math.log(median_ns), sigma, size=1000):
            yield int(x)


def timed(durations: Iterable[int], p: ProtocolConfig) -> Any:
    timer = FakeTimer(durations)
    return time_callable(timer.call, p, timer.clock, est_ns=MS)


def proto(**kw: Any) -> ProtocolConfig:
    base = dict(min_repeats=10, min_time_s=0.05, max_time_s=5.0, block_size=10, block_min_s=0.0)
    base.update(kw)
    return ProtocolConfig(**base).validate()


# ---- stopping rule --------------------------------------------------------------------------------


def test_constant_latency_stops_at_min_count_and_duration() -> None:
    timer = FakeTimer(itertools.repeat(MS))
    p = proto(min_time_s=0.055)
    r = time_callable(timer.call, p, timer.clock, est_ns=MS)
    # zero spread: the CI is satisfied at once, so the minimum duration decides: 55 ms of 1 ms calls in
    # blocks of 10 → 60 samples
    assert r.stop_reason == "ci"
    assert r.status == "ok"
    assert len(r.samples_ns) == math.ceil(55 / 10) * 10
    assert set(r.samples_ns) == {MS}
    assert r.calls == timer.calls


def test_noisy_latency_stops_at_first_block_with_tight_ci() -> None:
    p = proto(target_ci_rel=0.01, cv_limit=1.0)
    timer = FakeTimer(lognormal_ns(seed=1, sigma=0.05))
    r = time_callable(timer.call, p, timer.clock, est_ns=MS)
    assert r.stop_reason == "ci"
    s = sorted(r.samples_ns)
    assert ci_rel_of_sorted(s, p.confidence) <= p.target_ci_rel
    # the rule is minimal: one block earlier the interval was still too wide (or too few samples/time)
    earlier = sorted(r.samples_ns[: -r.block_size])
    too_short = sum(earlier) < p.min_time_s * 1e9 or len(earlier) < p.min_repeats
    assert too_short or ci_rel_of_sorted(earlier, p.confidence) > p.target_ci_rel


def test_more_noise_needs_more_samples() -> None:
    p = proto(target_ci_rel=0.01, cv_limit=10.0, min_time_s=0.0)
    quiet = timed(lognormal_ns(2, 0.02), p)
    noisy = timed(lognormal_ns(2, 0.2), p)
    assert quiet.stop_reason == noisy.stop_reason == "ci"
    assert len(noisy.samples_ns) > 2 * len(quiet.samples_ns)


def test_time_cap_stops_an_unreachable_target() -> None:
    p = proto(target_ci_rel=0.0001, cv_limit=10.0, max_time_s=0.5, min_time_s=0.1)
    timer = FakeTimer(lognormal_ns(seed=3, sigma=0.3))
    r = time_callable(timer.call, p, timer.clock, est_ns=MS)
    assert r.stop_reason == "time_cap"
    assert r.status == "ok"
    assert r.elapsed_ns >= 0.5e9
    assert r.ci_rel is not None and r.ci_rel > p.target_ci_rel
    # overshoot is bounded by one block
    assert r.elapsed_ns - 0.5e9 <= max(r.samples_ns) * r.block_size


def test_persistently_noisy_blocks_flag_unstable() -> None:
    p = proto(cv_limit=0.05, max_block_retries=3)
    timer = FakeTimer(itertools.cycle([MS, 3 * MS]))  # bimodal in every block
    r = time_callable(timer.call, p, timer.clock, est_ns=2 * MS)
    assert r.status == "unstable"
    assert r.stop_reason == "unstable"
    assert r.retries == 3
    assert r.discarded_samples == 3 * r.block_size
    assert len(r.discarded_cvs) == 3 and all(c > p.cv_limit for c in r.discarded_cvs)
    assert len(r.invalid_reasons) == 1 and "cv_limit" in r.invalid_reasons[0]
    assert r.calls == 4 * r.block_size


def test_one_noisy_block_is_repeated_and_then_accepted() -> None:
    p = proto(cv_limit=0.05, max_block_retries=3, block_size=10)
    noisy_block = [MS, 3 * MS] * 5
    timer = FakeTimer(itertools.chain(noisy_block, itertools.repeat(MS)))
    r = time_callable(timer.call, p, timer.clock, est_ns=MS)
    assert r.status == "ok"
    assert r.retries == 1
    assert r.discarded_samples == 10
    assert 3 * MS not in r.samples_ns  # the discarded block's samples are not part of the result


def test_robust_block_cv_ignores_a_single_spike_but_std_cv_does_not() -> None:
    block = [MS] * 9 + [MS + 1000] * 90 + [100 * MS]
    assert robust_cv(block) < 0.05 < cv(block)
    r_robust = timed(itertools.cycle(block), proto(block_size=100, cv_method="robust"))
    r_std = timed(itertools.cycle(block), proto(block_size=100, cv_method="std"))
    assert r_robust.status == "ok" and r_robust.retries == 0
    assert r_std.status == "unstable"


def test_fixed_mode_runs_exactly_n_without_retries() -> None:
    p = proto(mode="fixed", fixed_runs=30)
    timer = FakeTimer(itertools.cycle([MS, 5 * MS]))
    r = time_callable(timer.call, p, timer.clock, est_ns=MS)
    assert len(r.samples_ns) == 30 == timer.calls
    assert r.stop_reason == "fixed" and r.status == "ok" and r.retries == 0


def test_block_length_grows_for_fast_models_and_is_capped_for_slow_ones() -> None:
    p = ProtocolConfig(block_size=10, block_min_s=0.1, max_time_s=10.0)
    assert block_length(p, 1_000) == 100_000  # 1 µs calls: 0.1 s blocks
    assert block_length(p, 50 * MS) == 10
    assert block_length(p, 2_000 * MS) == 3  # 2 s calls: a block may not exceed half the cap
    assert block_length(p, None) == 10


def test_warm_up_respects_count_duration_and_cap() -> None:
    timer = FakeTimer(itertools.repeat(MS))
    w = warm_up(timer.call, ProtocolConfig(warmup_runs=5, warmup_min_s=0.02), timer.clock, first_ns=MS)
    assert w.calls == 20 and w.est_ns == MS  # 20 ms of 1 ms calls, first inference included
    timer = FakeTimer(itertools.repeat(MS))
    w = warm_up(timer.call, ProtocolConfig(warmup_runs=1000, warmup_min_s=0, warmup_max_s=0.01), timer.clock)
    assert w.calls <= 11  # capped by warmup_max_s


# ---- statistics -----------------------------------------------------------------------------------


def test_percentiles_match_numpy_on_raw_samples() -> None:
    rng = np.random.default_rng(0)
    samples = list(rng.lognormal(0.0, 0.5, size=1001))
    st = LatencyStats.from_samples(samples)
    a = np.asarray(samples)
    for name, q in {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 99.9}.items():
        assert getattr(st, name) == pytest.approx(np.percentile(a, q), rel=1e-12)
    assert st.mean == pytest.approx(a.mean())
    assert st.std == pytest.approx(a.std(ddof=1))
    assert st.cv == pytest.approx(a.std(ddof=1) / a.mean())
    assert (st.min, st.max, st.n) == (a.min(), a.max(), 1001)
    assert st.ci95[0] <= st.p50 <= st.ci95[1]


@pytest.mark.parametrize("n", [6, 7, 10, 17, 30, 99, 100, 500, 1000])
def test_median_ci_ranks_are_the_tightest_with_95_percent_coverage(n: int) -> None:
    lo, hi = median_ci_ranks(n)  # type: ignore[misc]
    rank = lo + 1  # 1-based l
    assert hi == n - rank  # symmetric
    coverage = 1 - 2 * binom.cdf(rank - 1, n, 0.5)
    assert coverage >= 0.95
    assert 1 - 2 * binom.cdf(rank, n, 0.5) < 0.95  # one rank tighter would not cover


def test_median_ci_normal_approximation_for_large_n_is_close_to_exact() -> None:
    n = 20_000
    lo, _ = median_ci_ranks(n)  # type: ignore[misc]
    exact = int(binom.ppf(0.025, n, 0.5))  # largest l-1 with cdf <= 0.025 is exact-1 or so
    assert abs((lo + 1) - exact) <= 2
    assert 1 - 2 * binom.cdf(lo, n, 0.5) >= 0.949


def test_median_ci_with_too_few_samples_is_the_full_range() -> None:
    assert median_ci_ranks(5) is None
    assert median_ci([1.0, 2.0, 3.0]) == (1.0, 3.0)


# ---- configuration --------------------------------------------------------------------------------


def test_run_config_round_trip_and_key() -> None:
    c = RunConfig(batch_size=8, intra_op_threads=2, affinity=[0, 1], dim_values={"seq": 128})
    assert RunConfig.from_dict(c.to_dict()) == c
    assert c.key() == RunConfig.from_dict(c.to_dict()).key()
    assert c.key() != RunConfig(batch_size=4, intra_op_threads=2, affinity=[0, 1], dim_values={"seq": 128}).key()
    # an output path is not a setting
    assert RunConfig(optimized_model_path="/tmp/a.onnx").key() == RunConfig().key()
    assert len(c.key()) == 16


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"precision": "fp16"}, "not supported by onnxruntime on cpu"),
        ({"runtime": "torch", "provider": "tensorrt"}, "TensorRT"),
        ({"runtime": "tvm"}, "runtime must be one of"),
        ({"batch_size": 0}, "batch_size"),
        ({"opt_level": "max"}, "opt_level"),
        ({"runtime": "torch", "opt_level": "basic"}, "only applies to onnxruntime"),
        ({"affinity": [0, 0]}, "twice"),
    ],
)
def test_run_config_rejects_invalid_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RunConfig(**kwargs).validate()


def test_precision_allowed_where_the_provider_supports_it() -> None:
    RunConfig(provider="tensorrt", precision="int8").validate()
    RunConfig(runtime="torch", provider="cuda", precision="fp16").validate()


def test_protocol_config_validation() -> None:
    with pytest.raises(ConfigError):
        ProtocolConfig(max_time_s=0.5, min_time_s=1.0).validate()
    with pytest.raises(ConfigError):
        ProtocolConfig(target_ci_rel=0).validate()
    assert ProtocolConfig.from_dict(ProtocolConfig(cv_limit=0.1).to_dict()).cv_limit == 0.1


def test_automatic_affinity_pins_first_cores_only_when_threads_fewer_than_cores() -> None:
    assert choose_affinity(RunConfig(intra_op_threads=1), [2, 3, 5]) == [2]
    assert choose_affinity(RunConfig(intra_op_threads=3), [2, 3, 5]) is None
    assert choose_affinity(RunConfig(intra_op_threads=2, affinity=[5, 3]), [2, 3, 5]) == [3, 5]
    with pytest.raises(Exception, match="may not use"):
        choose_affinity(RunConfig(affinity=[9]), [0, 1])


# ---- the whole measurement with a fake backend ----------------------------------------------------


class FakeSession(Session):
    def __init__(self, timer: FakeTimer, fail_on_run: bool) -> None:
        self.timer = timer
        self.fail_on_run = fail_on_run
        self.input_specs = [InputSpec("x", ("batch", 4), "float32"), InputSpec("ids", ("batch", 3), "int64")]
        self.closed = False
        self.seen: dict[str, Any] = {}

    def prepare_feeds(self, feeds: Any) -> Any:
        self.seen = dict(feeds)
        return feeds

    def run(self, feeds: Any) -> Any:
        if self.fail_on_run:
            raise RuntimeError("kernel exploded")
        self.timer.call()

    def close(self) -> None:
        self.closed = True

    def provenance(self) -> dict[str, Any]:
        return {"fake": True}


class FakeBackend(Backend):
    name = "onnxruntime"
    library = "numpy"

    def __init__(self, timer: FakeTimer, load_ns: int, fail_on_load: bool = False, fail_on_run: bool = False):
        self.timer, self.load_ns = timer, load_ns
        self.fail_on_load, self.fail_on_run = fail_on_load, fail_on_run
        self.session: FakeSession | None = None

    @classmethod
    def available_providers(cls) -> list[str]:
        return ["cpu"]

    def load(self, model: Any, config: RunConfig) -> Session:
        self.timer.now += self.load_ns
        if self.fail_on_load:
            raise RuntimeError("cannot parse model")
        self.session = FakeSession(self.timer, self.fail_on_run)
        return self.session


SPEC_KEYS = {
    "config", "status", "valid", "invalid_reasons", "error", "latency_ms", "cv", "ci95_ms", "n_samples",
    "samples_ms", "throughput", "cold_start_ms", "session_create_ms", "first_inference_ms", "memory_mb",
    "peak_rss_mb", "arena_mb", "energy_j", "energy_source", "power_w", "cpu_util", "kernels", "fusion_edges",
    "provenance", "started_at", "duration_s",
}  # fmt: skip


def test_run_measurement_reports_cold_start_separately_and_the_spec_shape() -> None:
    first = 40 * MS
    timer = FakeTimer(itertools.chain([first], itertools.repeat(2 * MS)))
    backend = FakeBackend(timer, load_ns=300 * MS)
    cfg = RunConfig(batch_size=4, seed=7)
    m = run_measurement("unused", cfg, proto(warmup_runs=3, warmup_min_s=0), backend=backend, clock=timer.clock)
    assert m.status == "ok" and m.valid and m.error is None
    assert m.session_create_ms == 300.0
    assert m.first_inference_ms == 40.0
    assert m.cold_start_ms == 340.0
    assert set(m.samples_ms) == {2.0}  # neither cold start nor warm-up leaks into latency
    assert m.latency_ms is not None and m.latency_ms["p50"] == 2.0
    assert m.throughput == pytest.approx(4 / 0.002)
    assert backend.session is not None and backend.session.closed
    feeds = backend.session.seen
    assert feeds["x"].shape == (4, 4) and feeds["ids"].shape == (4, 3) and feeds["ids"].dtype == np.int64
    d = m.to_dict()
    assert set(d) == SPEC_KEYS
    assert set(d["latency_ms"]) == {"p50", "p90", "p95", "p99", "p999", "mean", "min", "max", "std"}
    assert d["config"]["batch_size"] == 4 and d["config"]["protocol"]["min_repeats"] == 10
    assert d["provenance"]["runtime"] == {"fake": True}
    assert d["provenance"]["seeds"]["seed"] == 7
    assert d["n_samples"] == len(d["samples_ms"])
    back = Measurement.from_dict(d)
    assert back.to_dict() == d


def test_load_failure_is_a_failed_measurement_with_the_message() -> None:
    timer = FakeTimer(itertools.repeat(MS))
    m = run_measurement("x", RunConfig(), proto(), backend=FakeBackend(timer, 0, fail_on_load=True), clock=timer.clock)
    assert m.status == "failed" and not m.valid
    assert "cannot parse model" in (m.error or "")
    assert m.latency_ms is None and m.throughput is None and m.samples_ms == []
    assert set(m.to_dict()) == SPEC_KEYS


def test_first_inference_failure_keeps_the_session_time() -> None:
    timer = FakeTimer(itertools.repeat(MS))
    backend = FakeBackend(timer, 5 * MS, fail_on_run=True)
    m = run_measurement("x", RunConfig(), proto(), backend=backend, clock=timer.clock)
    assert m.status == "failed" and "kernel exploded" in (m.error or "")
    assert m.session_create_ms == 5.0 and m.first_inference_ms is None
    assert backend.session is not None and backend.session.closed


def test_invalid_config_is_a_failed_measurement_not_an_exception() -> None:
    timer = FakeTimer(itertools.repeat(MS))
    m = run_measurement("x", RunConfig(precision="int8"), proto(), backend=FakeBackend(timer, 0), clock=timer.clock)
    assert m.status == "failed" and "int8" in (m.error or "")


def test_unstable_measurement_is_not_valid() -> None:
    timer = FakeTimer(itertools.cycle([MS, 3 * MS]))
    m = run_measurement("x", RunConfig(), proto(warmup_min_s=0), backend=FakeBackend(timer, 0), clock=timer.clock)
    assert m.status == "unstable" and not m.valid and m.invalid_reasons
    assert m.to_dict()["valid"] is False


# ---- energy and memory plumbing -------------------------------------------------------------------


class FakeReading:
    joules = 0.5
    source = "rapl"
    power_w = 12.0


class FakeMeter:
    fail_start = False

    def start(self) -> FakeMeter:
        if self.fail_start:
            raise PermissionError("energy_uj is readable by root only")
        return self

    def stop(self) -> FakeReading:
        return FakeReading()


def test_energy_is_per_inference_call_of_the_timed_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    import inferperf.measure.energy as energy

    monkeypatch.setattr(energy, "EnergyMeter", FakeMeter)
    timer = FakeTimer(itertools.repeat(MS))
    m = run_measurement("x", RunConfig(), proto(warmup_min_s=0), backend=FakeBackend(timer, 0), clock=timer.clock)
    calls = m.provenance["timing"]["calls"]
    assert m.energy_source == "rapl" and m.power_w == 12.0
    assert m.energy_j == pytest.approx(0.5 / calls)
    assert m.provenance["energy"]["total_j"] == 0.5 and m.provenance["energy"]["calls"] == calls


def test_unreadable_energy_counters_leave_energy_empty_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    import inferperf.measure.energy as energy

    monkeypatch.setattr(FakeMeter, "fail_start", True)
    monkeypatch.setattr(energy, "EnergyMeter", FakeMeter)
    timer = FakeTimer(itertools.repeat(MS))
    m = run_measurement("x", RunConfig(), proto(warmup_min_s=0), backend=FakeBackend(timer, 0), clock=timer.clock)
    assert m.status == "ok"
    assert m.energy_j is None and m.energy_source is None
    assert "root only" in m.provenance["energy_note"]


_PEAK_CHECK = """
import json, sys
import numpy as np
from inferperf.measure.memory import PeakMemoryTracker
tracker = PeakMemoryTracker(force_sampling=sys.argv[1] == "1")
tracker.start()
block = np.ones(200 * 1024 * 1024, dtype=np.uint8)  # 200 MB, every page touched
tracker.pause()  # the sampler takes one reading here; the high-water mark needs nothing
del block
r = tracker.stop()
print(json.dumps({"method": r.method, "delta_mb": r.delta_mb, "peak_mb": r.peak_mb, "baseline_mb": r.baseline_mb}))
"""


@pytest.mark.parametrize("force_sampling", [False, True])
def test_peak_memory_sees_a_transient_allocation(force_sampling: bool) -> None:
    # A fresh interpreter: in a long test session the allocator may hand back pages that are already
    # resident, and the RSS would then not move at all.
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PEAK_CHECK, "1" if force_sampling else "0"], capture_output=True,
                         text=True, check=True, timeout=120)
    reading = json.loads(out.stdout)
    assert reading["method"] == ("sampled" if force_sampling else "vmhwm")
    assert reading["delta_mb"] >= 150
    assert reading["peak_mb"] >= reading["baseline_mb"] + 150


def test_heap_footprint_does_not_depend_on_what_the_process_freed_before():
    """The model's memory is its heap footprint: the same in a fresh process and after a bigger model."""
    from inferperf.measure.memory import heap_in_use_bytes

    if heap_in_use_bytes() is None:
        pytest.skip("no glibc mallinfo2 here: the RSS fallback is used")
    import numpy as np

    from inferperf.measure.memory import PeakMemoryTracker

    def footprint(nbytes: int) -> float:
        tracker = PeakMemoryTracker()
        tracker.start()
        block = np.ones(nbytes // 8)
        tracker.mark()
        del block
        reading = tracker.stop()
        assert reading.model_method == "heap"
        return reading.model_mb

    first = footprint(64 << 20)
    big = np.ones((256 << 20) // 8)  # the process now holds (and then frees) more than the model needs
    del big
    again = footprint(64 << 20)
    assert first == pytest.approx(64, rel=0.05) and again == pytest.approx(64, rel=0.05)
