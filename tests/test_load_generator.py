"""Load generation without a server: schedules, coordinated omission, validity, peak search, shaping, probes.

Timing logic runs on a FakeClock (exact, instantaneous); the few real-clock runs assert counts and
structure, never durations.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferperf.errors import ConfigError
from inferperf.load.clock import FakeClock
from inferperf.load.network import AppShaper, NetemLink, NetworkProfile, TokenBucket, get_profile, netem_status
from inferperf.load.openloop import run_closed_loop, run_open_loop
from inferperf.load.probes import (
    WhitespaceTokenizer,
    build_workload,
    decode_image,
    decode_png,
    encode_png,
    resize_bilinear,
    softmax_topk,
    synthetic_images,
)
from inferperf.load.result import LoadResult, Recorder, build_result
from inferperf.load.scenarios import concurrency_sweep, passes_slo, peak_search
from inferperf.load.schedule import arrival_schedule
from inferperf.load.sut import InlineSUT, NoopRunner, QueueSUT, RunTiming
from inferperf.load.validity import RunFacts, ValidityRules, check_validity
from inferperf.measure.stats import LatencyStats
from inferperf.serve.model import TensorSpec

# ------------------------------------------------------------------------------------------ schedule


def test_schedule_is_a_function_of_its_seed() -> None:
    a = arrival_schedule(500, 2.0, seed=7)
    b = arrival_schedule(500, 2.0, seed=7)
    c = arrival_schedule(500, 2.0, seed=8)
    assert np.array_equal(a.offsets_ns, b.offsets_ns)
    assert not np.array_equal(a.offsets_ns[:50], c.offsets_ns[:50])
    assert np.all(np.diff(a.offsets_ns) >= 0)
    assert a.offsets_ns[-1] < 2e9  # within the duration
    # a Poisson process at 500/s over 2 s: 1000 arrivals expected, sd ~32
    assert 850 < len(a) < 1150
    gaps = np.diff(a.offsets_ns) / 1e9
    assert gaps.mean() == pytest.approx(1 / 500, rel=0.1)
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.15)  # exponential: sd == mean


def test_uniform_schedule_is_evenly_spaced() -> None:
    s = arrival_schedule(100, 1.0, process="uniform")
    assert len(s) == 100
    assert set(np.diff(s.offsets_ns).tolist()) == {10_000_000}


@pytest.mark.parametrize("kwargs", [{"qps": 0, "duration_s": 1}, {"qps": 10, "duration_s": 0},
                                    {"qps": 10, "duration_s": 1, "process": "bursty"},
                                    {"qps": 1e9, "duration_s": 100}])
def test_schedule_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        arrival_schedule(**kwargs)


# ------------------------------------------------------------------------------------------ validity


def _facts(**kw: Any) -> RunFacts:
    base = {"duration_s": 10.0, "completed": 1000, "errors": 0, "sent": 1000, "late": 0,
            "scheduled_span_s": 10.0, "send_span_s": 10.0, "client_cpu": 0.2, "latency_at_target_ms": 5.0}
    base.update(kw)
    return RunFacts(**base)


def test_a_clean_run_is_valid() -> None:
    assert check_validity(_facts(), ValidityRules(target_p99_ms=10)) == []


@pytest.mark.parametrize(("change", "needle"), [
    ({"duration_s": 0.5}, "minimum duration"),
    ({"completed": 10, "sent": 10}, "minimum 100"),
    ({"errors": 3}, "failed"),
    ({"late": 50}, "late"),
    ({"send_span_s": 12.0}, "client bottleneck"),
    ({"client_cpu": 0.97}, "bottleneck"),
    ({"latency_at_target_ms": 25.0}, "exceeds the target"),
])
def test_each_broken_rule_gives_its_reason(change: dict[str, Any], needle: str) -> None:
    reasons = check_validity(_facts(**change), ValidityRules(target_p99_ms=10))
    assert len(reasons) == 1
    assert needle in reasons[0]


def test_lateness_rules_do_not_apply_to_closed_loop_runs() -> None:
    facts = _facts(late=900, send_span_s=30.0, open_loop=False)
    assert check_validity(facts, ValidityRules()) == []


# ------------------------------------------------------------------------------------------ coordinated omission


class _StallingSUT:
    """Answers at once, except that query ``stall_at`` blocks the caller for ``stall_ns``."""

    def __init__(self, clock: FakeClock, stall_at: int, stall_ns: int) -> None:
        self.clock, self.stall_at, self.stall_ns = clock, stall_at, stall_ns

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wait_idle(self, timeout_s: float) -> bool:
        return True

    def issue(self, qid: int, sample: int, on_done: Any) -> None:
        if qid == self.stall_at:
            self.clock.advance(self.stall_ns)
        on_done(qid, self.clock.now_ns(), {"inference": 0.0}, 1, None)


def test_a_stall_shows_in_the_latency_of_every_query_scheduled_during_it() -> None:
    clock = FakeClock()
    schedule = arrival_schedule(1000, 0.2, process="uniform")  # one query per ms
    sut = _StallingSUT(clock, stall_at=10, stall_ns=100_000_000)  # query 10 blocks for 100 ms
    result = run_open_loop(sut, schedule, sample_count=4, clock=clock, rules=ValidityRules(min_duration_s=0))
    lat = np.array(result.samples_ms)
    assert len(lat) == 200
    assert np.all(lat[:10] == 0.0)
    assert lat[10] == pytest.approx(100.0)
    # query 10 + k was due k ms after query 10 but could only go out when the stall ended: latency 100 - k
    for k in (1, 2, 50, 99):
        assert lat[10 + k] == pytest.approx(100.0 - k)
    assert np.all(lat[110:] == 0.0)
    # measured from the send time instead, the stall would have vanished from all but one query
    # queries 11..109 went out late; query 109 by exactly 1 ms, which is within the 1 ms tolerance
    assert result.late == 98
    assert result.latency is not None and result.latency.p99 >= 90.0
    assert any("late" in r for r in result.invalid_reasons)


def test_a_prompt_sut_gives_zero_lateness_on_the_fake_clock() -> None:
    clock = FakeClock()
    result = run_open_loop(_StallingSUT(clock, -1, 0), arrival_schedule(1000, 0.2, seed=3), sample_count=4,
                           clock=clock, rules=ValidityRules(min_duration_s=0, min_queries=1))
    assert result.late == 0 and result.max_late_ms == 0.0
    assert result.valid, result.invalid_reasons
    assert result.completed == len(arrival_schedule(1000, 0.2, seed=3))


def test_recorder_counts_failures_and_queries_that_never_finished() -> None:
    rec = Recorder(4)
    rec.set_count(4)
    rec.scheduled[:] = [0, 10, 20, 30]
    rec.sent[:] = [0, 10, 20, 30]
    rec.complete(0, 1_000_000)
    rec.fail(1, 2_000_000, "HTTP 503", 503)
    rec.complete(2, 3_000_000)
    result = build_result(rec, scenario="server", target={}, generator="test", start_ns=0, qps_target=100.0,
                          open_loop=True, rules=ValidityRules(min_duration_s=0, min_queries=1))
    assert result.completed == 2 and result.errors == 2
    assert result.error_kinds == {"HTTP 503": 1, "never completed": 1}
    assert any("never completed" in r for r in result.invalid_reasons)
    assert result.samples_ms == [1.0, pytest.approx(2.99998)]


# ------------------------------------------------------------------------------------------ real-clock generators


def test_open_loop_against_a_noop_system_completes_every_query() -> None:
    schedule = arrival_schedule(2000, 0.25, seed=1)
    result = run_open_loop(QueueSUT(NoopRunner()), schedule, sample_count=16,
                           rules=ValidityRules(min_duration_s=0, min_queries=1))
    assert result.completed == len(schedule) and result.errors == 0
    assert result.late is not None and result.client_cpu is not None
    assert result.stages["queue"] is not None and result.stages["inference"] is None  # a no-op has no inference


class _BatchRecorder:
    sample_count = 8
    rows_per_sample = 1

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()

    def run(self, samples: list[int]) -> RunTiming:
        self.gate.wait(5)
        self.sizes.append(len(samples))
        return RunTiming(inference_ms=0.01)


def test_queue_sut_batches_queries_that_wait_together() -> None:
    runner = _BatchRecorder()
    sut = QueueSUT(runner, max_batch=4)
    done: list[tuple[int, int]] = []
    sut.start()
    try:
        sut.issue_many([(i, i) for i in range(9)], lambda qid, t, st, b, err: done.append((qid, b)))
        runner.gate.set()
        assert sut.wait_idle(10)
    finally:
        sut.stop()
    assert sorted(q for q, _ in done) == list(range(9))
    assert max(runner.sizes) == 4 and sum(runner.sizes) == 9


def test_closed_loop_keeps_its_concurrency() -> None:
    result = run_closed_loop(QueueSUT(NoopRunner(), max_batch=4), concurrency=3, duration_s=0.2, sample_count=8,
                             rules=ValidityRules(min_duration_s=0, min_queries=1))
    assert result.completed > 3 and result.errors == 0
    assert result.concurrency == 3 and result.late is None


def test_inline_sut_reports_a_failing_system_as_failed_queries() -> None:
    class Broken(NoopRunner):
        def run(self, samples: list[int]) -> RunTiming:
            raise RuntimeError("boom")

    result = run_open_loop(InlineSUT(Broken()), arrival_schedule(1000, 0.05, process="uniform"), sample_count=2,
                           rules=ValidityRules(min_duration_s=0, min_queries=1))
    assert result.completed == 0 and result.errors == 50
    assert "RuntimeError: boom" in result.error_kinds
    assert result.to_run_dict({"runtime": "onnxruntime"})["status"] == "failed"


# ------------------------------------------------------------------------------------------ LoadGen


def _lg() -> Any:
    return pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen (mlcommons-loadgen) is not installed")


def test_loadgen_server_scenario_percentiles_come_from_its_raw_trace() -> None:
    _lg()
    from inferperf.load.loadgen import LoadGenSettings, run_loadgen

    settings = LoadGenSettings(min_duration_s=0.4, max_duration_s=2, min_queries=50, qps=500, seed=3)
    result = run_loadgen("server", QueueSUT(NoopRunner(), max_batch=4), sample_count=32, settings=settings,
                         rules=ValidityRules(min_duration_s=0, min_queries=1))
    summary = result.extra["loadgen"]["summary"]
    assert result.generator == "mlperf-loadgen"
    assert len(result.samples_ms) == summary["result_query_count"]
    assert result.latency is not None
    assert result.latency.min * 1e6 == pytest.approx(summary["result_min_latency_ns"], abs=1)
    assert result.latency.max * 1e6 == pytest.approx(summary["result_max_latency_ns"], abs=1)
    assert result.stages["queue"] is not None


def test_loadgen_multistream_latency_is_per_query() -> None:
    _lg()
    from inferperf.load.loadgen import LoadGenSettings, run_loadgen

    settings = LoadGenSettings(min_duration_s=0.2, max_duration_s=1, min_queries=20, samples_per_query=4,
                               expected_latency_ms=0.05)
    result = run_loadgen("multi-stream", QueueSUT(NoopRunner(), max_batch=4), sample_count=32, settings=settings)
    assert result.extra["loadgen"]["samples"] == 4 * len(result.samples_ms)
    assert result.samples_per_query == 4


def test_loadgen_logs_are_parsed(tmp_path: Path) -> None:
    from inferperf.load.loadgen import loadgen_reasons, parse_detail, parse_trace

    trace = tmp_path / "trace.json"
    trace.write_text(
        '{"traceEvents":[\n'
        '{"name":"Sample","cat":"default","ph":"b","pid":1,"id":0,"ts":10.5,"args":{"sample_seq":0,"query_seq":0,'
        '"sample_idx":3,"issue_start_ns":200,"complete_ns":5000}},\n'
        '{"name":"Sample","cat":"default","ph":"e", "pid":1,"id":0,"ts":15.5},\n'
        '{"name":"Sample","cat":"default","ph":"b","pid":1,"id":1,"ts":20.0,"args":{"sample_seq":1,"query_seq":1,'
        '"sample_idx":4,"issue_start_ns":2000000,"complete_ns":7000}},\n'
        "]}\n")
    rows = parse_trace(trace)
    assert rows.tolist() == [[10.5, 0, 200, 5000], [20.0, 1, 2000000, 7000]]
    detail = tmp_path / "detail.txt"
    detail.write_text(':::MLLOG {"key": "result_validity", "value": "INVALID", "time_ms": 1}\n'
                      ':::MLLOG {"key": "result_min_duration_met", "value": false, "time_ms": 1}\n'
                      ':::MLLOG {"key": "loadgen_git_log_message", "value": "x", "time_ms": 1}\n')
    parsed = parse_detail(detail)
    assert parsed == {"result_validity": "INVALID", "result_min_duration_met": False}
    assert loadgen_reasons(parsed) == ["LoadGen: the minimum duration was not met"]
    assert loadgen_reasons({"result_validity": "VALID"}) == []


# ------------------------------------------------------------------------------------------ peak search / sweep


def _fake_result(qps: float, p99_ms: float, late_ratio: float = 0.0, errors: int = 0) -> LoadResult:
    samples = [p99_ms * 0.5] * 98 + [p99_ms] * 2
    return LoadResult(scenario="server", target={}, generator="fake", qps_target=qps, qps_achieved=qps,
                      latency=LatencyStats.from_samples(samples), samples_ms=samples, duration_s=1.0,
                      completed=100, errors=errors, error_kinds={}, sent=100, late=int(late_ratio * 100),
                      late_ratio=late_ratio, max_late_ms=0.0, stages={}, valid=True, invalid_reasons=[],
                      rules=ValidityRules())


def test_peak_search_brackets_the_rate_where_the_slo_breaks() -> None:
    capacity = 1000.0  # an M/M/1-like queue: the tail latency explodes near capacity

    def run_at(qps: float) -> LoadResult:
        p99 = 1.0 / (capacity - qps) * 1e3 * 4.6 if qps < capacity else 1e6
        return _fake_result(qps, p99)

    # p99 <= 50 ms  <=>  qps <= capacity - 92
    search = peak_search(run_at, slo_ms=50.0, lo_qps=10, hi_qps=2000, max_steps=12, rel_tol=0.01)
    truth = capacity - 4.6e3 / 50
    assert search.peak_qps is not None and search.peak_qps <= truth
    assert search.peak_qps == pytest.approx(truth, rel=0.02)
    passed = [s["qps"] for s in search.steps if s["passed"]]
    failed = [s["qps"] for s in search.steps if not s["passed"]]
    assert max(passed) < min(failed)
    assert len(search.steps) <= 14
    assert search.best is not None and search.best.qps_target == search.peak_qps


def test_peak_search_reports_an_unreachable_slo_and_an_open_upper_bound() -> None:
    none = peak_search(lambda q: _fake_result(q, 100.0), slo_ms=10, lo_qps=1, hi_qps=100)
    assert none.peak_qps is None and "misses the SLO" in (none.note or "")
    assert len(none.steps) == 1
    top = peak_search(lambda q: _fake_result(q, 1.0), slo_ms=10, lo_qps=1, hi_qps=100)
    assert top.peak_qps == 100 and "raise --qps" in (top.note or "")


def test_a_rate_the_generator_could_not_keep_does_not_pass() -> None:
    ok, why = passes_slo(_fake_result(10, 1.0, late_ratio=0.2), slo_ms=10)
    assert not ok and "late" in why
    ok, why = passes_slo(_fake_result(10, 1.0, errors=2), slo_ms=10)
    assert not ok and "failed" in why


def test_concurrency_sweep_runs_each_level_in_order() -> None:
    seen: list[int] = []
    out = concurrency_sweep(lambda c: seen.append(c) or _fake_result(c * 10.0, 1.0), [1, 4, 2])
    assert seen == [1, 4, 2] and [r.qps_achieved for r in out] == [10.0, 40.0, 20.0]
    with pytest.raises(ConfigError):
        concurrency_sweep(lambda c: _fake_result(1, 1), [0])


# ------------------------------------------------------------------------------------------ network


def test_token_bucket_queues_bytes_at_the_link_rate() -> None:
    bucket = TokenBucket(8000.0, burst_bytes=0)  # 1000 bytes/s
    assert bucket.delay_for(500, 0.0) == pytest.approx(0.5)
    assert bucket.delay_for(500, 0.0) == pytest.approx(1.0)  # behind the first transfer
    assert bucket.delay_for(500, 3.0) == pytest.approx(0.5)  # the link drained meanwhile
    burst = TokenBucket(8000.0, burst_bytes=1000)
    assert burst.delay_for(800, 0.0) == 0.0


def test_app_shaper_adds_delay_and_serialisation() -> None:
    profile = NetworkProfile("test", delay_ms=10.0, jitter_ms=0.0, down_mbit=8.0, up_mbit=0.8)
    clock = [0.0]
    shaper = AppShaper(profile, now=lambda: clock[0])
    shaper.up.burst = shaper.up.tokens = 0.0
    # 100 kB over 0.8 Mbit/s = 1 s, plus 10 ms one-way delay
    assert shaper.plan(shaper.up, 100_000) == pytest.approx(1.010)
    assert get_profile("4G").name == "4g"
    with pytest.raises(ConfigError):
        get_profile("dialup")


class _FakeRun:
    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, cmd: Any) -> Any:
        import subprocess

        self.calls.append(list(cmd))
        bad = self.fail_on is not None and self.fail_on in cmd
        err = "Error: Specified qdisc kind is unknown." if bad else ""
        return subprocess.CompletedProcess(cmd, 2 if bad else 0, "", err)


def test_netem_link_builds_its_namespace_and_cleans_up() -> None:
    run = _FakeRun()
    with NetemLink(get_profile("wifi"), run=run, index=7) as link:
        assert link.server_ip.startswith("169.254.") and link.exec_prefix[:3] == ["ip", "netns", "exec"]
    flat = [" ".join(c) for c in run.calls]
    assert any("netem delay 5.0ms 2.0ms distribution normal rate 20.0mbit" in c for c in flat)  # uplink
    assert any("netem delay 5.0ms 2.0ms distribution normal rate 50.0mbit" in c for c in flat)  # downlink
    assert flat[-2].startswith("ip netns del")


def test_netem_failure_is_reported_and_cleaned_up() -> None:
    run = _FakeRun(fail_on="netem")
    with pytest.raises(ConfigError, match="netem setup failed"):
        NetemLink(get_profile("4g"), run=run, index=3).__enter__()
    assert run.calls[-2][:3] == ["ip", "netns", "del"]
    if __import__("os").geteuid() == 0 and __import__("shutil").which("tc"):
        ok, why = netem_status(_FakeRun(fail_on="netem"))
        assert not ok and "netem" in why
    ok, why = netem_status()  # the real machine: whichever it is, it says why
    assert isinstance(ok, bool) and why


# ------------------------------------------------------------------------------------------ monitor


class _FakeNvml:
    class _Util:
        gpu = 37.0

    class _Mem:
        used = 512 * 2**20

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return self._Util()

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return self._Mem()


def test_resource_monitor_samples_cpu_rss_and_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from inferperf.load.monitor import ResourceMonitor

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    mon = ResourceMonitor(interval_s=0.01, nvml=_FakeNvml()).start()
    deadline = time.monotonic() + 10
    while len(mon.timeline) < 3 and time.monotonic() < deadline:
        sum(i * i for i in range(20_000))
    summary = mon.stop()
    assert summary["samples"] >= 3
    assert summary["peak_rss_mb"] > 1 and summary["cpu_percent_mean"] is not None
    assert summary["gpu"] == {"source": "nvml", "utilization_mean": 37.0, "utilization_max": 37.0,
                              "memory_used_mb_max": 1024.0}


def test_resource_monitor_says_why_there_is_no_gpu() -> None:
    from inferperf.load.monitor import ResourceMonitor

    class NoGpu(_FakeNvml):
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    with ResourceMonitor(interval_s=0.01, nvml=NoGpu()) as mon:
        pass
    assert mon.result is not None
    assert mon.result["gpu"]["source"] is None and "NVML" in mon.result["gpu"]["reason"]


# ------------------------------------------------------------------------------------------ probes


def _png_with_filters(img: np.ndarray) -> bytes:
    """Encode with a different PNG filter on each row (0-4), as real encoders do."""
    import struct
    import zlib

    from inferperf.load.probes import _png_chunk

    h, w, c = img.shape
    rows, prev = [], np.zeros(w * c, np.int32)
    for y in range(h):
        f = y % 5
        line = img[y].reshape(-1).astype(np.int32)
        left = np.concatenate([np.zeros(c, np.int32), line[:-c]])
        upleft = np.concatenate([np.zeros(c, np.int32), prev[:-c]])
        if f == 0:
            r = line
        elif f == 1:
            r = line - left
        elif f == 2:
            r = line - prev
        elif f == 3:
            r = line - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            r = line - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        rows.append(bytes([f]) + bytes((r % 256).astype(np.uint8)))
        prev = line
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"".join(rows))) + _png_chunk(b"IEND", b""))


def test_png_round_trips_through_every_filter() -> None:
    img = np.random.default_rng(0).integers(0, 256, (11, 9, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(img)), img)
    assert np.array_equal(decode_png(_png_with_filters(img)), img)
    grey = img[:, :, 0]
    assert np.array_equal(decode_image(encode_png(grey))[:, :, 1], grey)  # grey becomes three equal channels
    with pytest.raises(ConfigError):
        decode_png(b"GIF89a....")


def test_resize_and_synthetic_images() -> None:
    imgs = synthetic_images(2, 40, 30, seed=1)
    assert imgs == synthetic_images(2, 40, 30, seed=1)
    arr = decode_image(imgs[0])
    assert arr.shape == (40, 30, 3)
    out = resize_bilinear(arr, 20, 15)
    assert out.shape == (20, 15, 3) and out.dtype == np.float32
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert np.allclose(resize_bilinear(flat, 5, 3), 77.0)


def test_tokenizer_is_stable_and_pads_with_a_mask() -> None:
    tok = WhitespaceTokenizer(vocab_size=100, seq_len=8)
    ids, mask = tok.encode("Hello, world hello")
    assert ids[0] == 2 and mask.tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert ids[1] == ids[4]  # the same word, the same id
    assert ids[5] == 3 and ids[6] == 0  # [SEP], then padding
    assert np.all((ids[1:5] >= 4) & (ids[1:5] < 100))
    long_ids, long_mask = tok.encode(" ".join(["word"] * 50))
    assert long_mask.sum() == 8 and long_ids[-1] == 3


def test_softmax_topk_matches_a_sort() -> None:
    logits = np.random.default_rng(2).standard_normal((3, 50)).astype(np.float32)
    probs, idx = softmax_topk(logits, 5)
    assert np.array_equal(idx, np.argsort(-logits, axis=1)[:, :5])
    full = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(probs, np.take_along_axis(full, idx, axis=1), rtol=1e-5)


def test_workloads_follow_the_model_inputs(tmp_path: Path) -> None:
    image = build_workload([TensorSpec("pixel_values", "float32", (3, 16, 16))], count=3, seed=1)
    assert image.kind == "image" and image.sample_count == 3
    feeds = image.sample_feeds(0)
    assert feeds["pixel_values"].shape == (1, 3, 16, 16) and feeds["pixel_values"].dtype == np.float32
    text_specs = [TensorSpec("input_ids", "int64", (12,)), TensorSpec("attention_mask", "int64", (12,))]
    text = build_workload(text_specs, count=4, metadata={"vocab_size": 50})
    feeds = text.sample_feeds(1)
    assert text.kind == "text" and feeds["input_ids"].shape == (1, 12)
    assert feeds["input_ids"].max() < 50 and set(np.unique(feeds["attention_mask"]).tolist()) <= {0, 1}

    def make(rows: int, seed: int) -> dict[str, np.ndarray]:
        return {"x": np.full((rows, 4), seed, np.float32)}

    tensor = build_workload([TensorSpec("x", "float32", (4,))], count=5, example_feeds=make)
    assert tensor.kind == "tensor" and tensor.raw is None and tensor.postprocess is None
    assert [f["x"][0, 0] for f in tensor.feeds] == [0, 1, 2, 3, 4]

    (tmp_path / "imgs").mkdir()
    for i, data in enumerate(synthetic_images(2, 20, 20)):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(data)
    user = build_workload([TensorSpec("img", "float32", (8, 8, 3))], source=str(tmp_path / "imgs"))
    assert user.kind == "image" and user.sample_count == 2
    assert user.sample_feeds(1)["img"].shape == (1, 8, 8, 3)
    lines = tmp_path / "lines.txt"
    lines.write_text("first line\n\nsecond line\n")
    assert build_workload(text_specs, source=str(lines)).sample_count == 2
    with pytest.raises(ConfigError):
        build_workload([TensorSpec("x", "float32", (4,))], kind="image")

