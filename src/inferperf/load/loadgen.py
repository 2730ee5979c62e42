"""MLPerf LoadGen scenarios against an in-process system under test.

LoadGen (``mlcommons-loadgen``, imported as ``mlperf_loadgen``) owns the schedule and the clock: it calls
our ``issue_query`` with query samples (at Poisson arrival times for Server, one query at a time for
SingleStream, N samples per query for MultiStream, everything at once for Offline) and we answer through
``QuerySamplesComplete``. The SUT is a :class:`~inferperf.load.sut.QueueSUT`, so the in-process system
batches exactly like the HTTP server.

Raw latencies come from LoadGen's own trace (``mlperf_log_trace.json``): for every sample its latency
from the *scheduled* issue time (``complete_ns``) and how late LoadGen actually issued it
(``issue_start_ns``). Percentiles are computed from those raw samples (measurement rule 4); LoadGen's
summary (``mlperf_log_detail.txt``) is kept alongside as a cross-check, and its validity verdict
(minimum duration and query count, early stopping, latency constraint) becomes invalid reasons.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.errors import ConfigError
from inferperf.load.result import STAGES, LoadResult, stage_summary
from inferperf.load.validity import RunFacts, ValidityRules, check_validity
from inferperf.measure.result import now_iso
from inferperf.measure.stats import LatencyStats

LOADGEN_SCENARIOS = {"single-stream": "SingleStream", "multi-stream": "MultiStream", "server": "Server",
                     "offline": "Offline"}


@dataclass
class LoadGenSettings:
    """What LoadGen is asked for; durations in seconds, latencies in milliseconds.

    ``expected_latency_ms`` (Single/MultiStream) and ``expected_qps`` (Offline) only size the queries
    LoadGen pre-generates; they should be *optimistic* (a lower latency, a higher rate), or LoadGen runs
    out of queries before the minimum duration.
    """

    min_duration_s: float = 10.0
    max_duration_s: float = 60.0
    min_queries: int = 100
    max_queries: int = 0
    qps: float | None = None
    target_latency_ms: float | None = None
    target_percentile: float = 99.0
    samples_per_query: int = 8
    expected_latency_ms: float = 1.0
    expected_qps: float = 1000.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def loadgen_available() -> bool:
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        return False
    return True


def _test_settings(lg: Any, scenario: str, s: LoadGenSettings) -> Any:
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, LOADGEN_SCENARIOS[scenario])
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(s.min_duration_s * 1000)
    ts.max_duration_ms = int(s.max_duration_s * 1000)
    ts.min_query_count = int(s.min_queries)
    ts.max_query_count = int(s.max_queries)
    ts.qsl_rng_seed = s.seed
    ts.sample_index_rng_seed = s.seed
    ts.schedule_rng_seed = s.seed
    if scenario == "server":
        if not s.qps or s.qps <= 0:
            raise ConfigError("the server scenario needs a target rate (--qps)")
        ts.server_target_qps = float(s.qps)
        ts.server_target_latency_ns = int((s.target_latency_ms or 1e6) * 1e6)
        ts.server_target_latency_percentile = s.target_percentile / 100.0
    elif scenario == "offline":
        ts.offline_expected_qps = float(s.expected_qps)
    elif scenario == "single-stream":
        ts.single_stream_expected_latency_ns = max(int(s.expected_latency_ms * 1e6), 1000)
        ts.single_stream_target_latency_percentile = s.target_percentile / 100.0
    elif scenario == "multi-stream":
        ts.multi_stream_samples_per_query = int(s.samples_per_query)
        ts.multi_stream_expected_latency_ns = max(int(s.expected_latency_ms * 1e6), 1000)
        ts.multi_stream_target_latency_percentile = s.target_percentile / 100.0
    return ts


_TRACE_SAMPLE = re.compile(
    r'"ph":"b".*?"ts":([\d.]+),"args":\{"sample_seq":(\d+),"query_seq":(\d+),"sample_idx":\d+,'
    r'"issue_start_ns":(\d+),"complete_ns":(\d+)\}'
)
_DETAIL = re.compile(r"^:::MLLOG (\{.*\})\s*$")


def parse_trace(path: Path) -> np.ndarray:
    """Per sample: scheduled time (µs from the test start), query sequence, issue delay ns, latency ns."""
    rows: list[tuple[float, int, int, int]] = []
    with path.open() as fh:
        for line in fh:
            if '"name":"Sample"' not in line or '"ph":"b"' not in line:
                continue
            m = _TRACE_SAMPLE.search(line)
            if m:
                rows.append((float(m.group(1)), int(m.group(3)), int(m.group(4)), int(m.group(5))))
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def parse_detail(path: Path) -> dict[str, Any]:
    """``result_*`` and ``early_stopping_*`` entries of LoadGen's detail log."""
    out: dict[str, Any] = {}
    with path.open() as fh:
        for line in fh:
            m = _DETAIL.match(line)
            if not m:
                continue
            try:
                entry = json.loads(m.group(1))
            except ValueError:
                continue
            key = entry.get("key", "")
            if key.startswith(("result_", "early_stopping_")) or key in ("effective_scenario", "loadgen_version"):
                out[key] = entry.get("value")
    return out


def loadgen_reasons(detail: dict[str, Any]) -> list[str]:
    """LoadGen's own verdict, one reason per failed check."""
    if detail.get("result_validity") == "VALID":
        return []
    reasons = []
    checks = {"result_min_duration_met": "LoadGen: the minimum duration was not met",
              "result_min_queries_met": "LoadGen: the minimum query count was not met",
              "result_perf_constraints_met": "LoadGen: the latency constraint was not met",
              "early_stopping_met": "LoadGen: too few queries for early stopping to bound the tail percentile"}
    for key, text in checks.items():
        if detail.get(key) is False:
            reasons.append(text)
    hint = str(detail.get("result_invalid_reason") or "").strip()
    if hint:
        reasons.append(f"LoadGen: {hint}")
    if not reasons:
        reasons.append(f"LoadGen: result {detail.get('result_validity', 'missing')}")
    return reasons


class _StageLog:
    """Stage times and batch sizes of completed samples, appended from the SUT's worker threads."""

    def __init__(self) -> None:
        self.stages: dict[str, list[float]] = {s: [] for s in STAGES}
        self.batches: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, stages: dict[str, float], batch: int, error: str | None) -> None:
        with self._lock:
            if error is not None:
                self.errors[error] = self.errors.get(error, 0) + 1
                return
            for name, value in stages.items():
                if name in self.stages:
                    self.stages[name].append(value)
            self.batches[batch] = self.batches.get(batch, 0) + 1

    def summary(self) -> dict[str, dict[str, float] | None]:
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in self.stages.items()}
        n = max((a.size for a in arrays.values()), default=0)
        padded = {k: np.concatenate([a, np.full(n - a.size, np.nan)]) for k, a in arrays.items()}
        return stage_summary(padded, np.ones(n, dtype=bool))


def run_loadgen(
    scenario: str,
    sut: Any,
    *,
    sample_count: int,
    settings: LoadGenSettings,
    rules: ValidityRules | None = None,
    target: dict[str, Any] | None = None,
    log_dir: str | Path | None = None,
) -> LoadResult:
    """Run one LoadGen scenario against ``sut`` (a QueueSUT-like object with ``issue_many``)."""
    try:
        import mlperf_loadgen as lg
    except ImportError as exc:
        raise ConfigError("MLPerf LoadGen is not installed (pip install mlcommons-loadgen)") from exc
    if scenario not in LOADGEN_SCENARIOS:
        raise ConfigError(f"LoadGen scenario must be one of {', '.join(LOADGEN_SCENARIOS)}; got {scenario!r}")
    rules = rules or ValidityRules()
    log = _StageLog()

    def on_done(qid: int, t_done: int, stages: dict[str, float], batch: int, error: str | None) -> None:
        log.add(stages, batch, error)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, 0, 0)])

    def issue_query(query_samples: Iterable[Any]) -> None:
        sut.issue_many([(q.id, q.index) for q in query_samples], on_done)

    def flush_queries() -> None:
        return None

    qsl = lg.ConstructQSL(sample_count, sample_count, lambda idx: None, lambda idx: None)
    lg_sut = lg.ConstructSUT(issue_query, flush_queries)
    tmp = None
    if log_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="inferperf-loadgen-")
        out = Path(tmp.name)
    else:
        out = Path(log_dir)
        out.mkdir(parents=True, exist_ok=True)
    started_at = now_iso()
    try:
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(out)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = True
        from inferperf.load.openloop import gil_switch_interval

        sut.start()
        t0 = time.perf_counter()
        try:
            with gil_switch_interval():
                lg.StartTestWithLogSettings(lg_sut, qsl, _test_settings(lg, scenario, settings), log_settings)
        finally:
            sut.stop()
        wall_s = time.perf_counter() - t0
        trace = parse_trace(out / "mlperf_log_trace.json")
        detail = parse_detail(out / "mlperf_log_detail.txt")
    finally:
        lg.DestroySUT(lg_sut)
        lg.DestroyQSL(qsl)
        if tmp is not None:
            tmp.cleanup()
    return _result(scenario, trace, detail, log, settings, rules, target or {}, wall_s, started_at)


def _result(scenario: str, trace: np.ndarray, detail: dict[str, Any], log: _StageLog, settings: LoadGenSettings,
            rules: ValidityRules, target: dict[str, Any], wall_s: float, started_at: str) -> LoadResult:
    sched_us, query_seq, issue_ns, complete_ns = trace.T if trace.size else (np.empty(0),) * 4
    if scenario in ("multi-stream", "offline"):
        # one latency per query: its last sample's completion, from the query's scheduled time
        order = np.argsort(query_seq, kind="stable")
        qs, first = np.unique(query_seq[order], return_index=True)
        lat_ns = np.maximum.reduceat(complete_ns[order], first) if qs.size else np.empty(0)
        q_issue = np.maximum.reduceat(issue_ns[order], first) if qs.size else np.empty(0)
    else:
        lat_ns, q_issue = complete_ns, issue_ns
    samples_ms = (lat_ns / 1e6).tolist()
    latency = LatencyStats.from_samples(samples_ms) if samples_ms else None
    n_queries = len(samples_ms)
    n_samples = int(trace.shape[0])
    errors = sum(log.errors.values())
    if trace.size:
        end_us = float(np.max(sched_us + complete_ns / 1e3))
        duration_s = (end_us - float(np.min(sched_us))) / 1e6
    else:
        duration_s = 0.0
    late = int((q_issue / 1e6 > rules.late_tolerance_ms).sum()) if n_queries else None
    open_loop = scenario == "server"
    at_target = float(np.percentile(np.asarray(samples_ms), rules.target_percentile)) if samples_ms else None
    # Offline is one query of many samples: its minimum count is about samples, not queries
    counted = n_samples if scenario == "offline" else n_queries
    facts = RunFacts(duration_s=duration_s, completed=counted - min(errors, counted), errors=errors,
                     sent=counted, late=late if open_loop else None, latency_at_target_ms=at_target,
                     open_loop=open_loop)
    reasons = check_validity(facts, rules) + loadgen_reasons(detail)
    if scenario == "offline":
        qps_achieved = n_samples / duration_s if duration_s > 0 else None
    else:
        qps_achieved = n_queries / duration_s if duration_s > 0 else None
    spq = settings.samples_per_query if scenario == "multi-stream" else 1
    result = LoadResult(
        scenario=scenario, target=target, generator="mlperf-loadgen", qps_target=settings.qps if open_loop else None,
        qps_achieved=qps_achieved, latency=latency, samples_ms=samples_ms, duration_s=duration_s,
        completed=facts.completed, errors=errors, error_kinds=dict(log.errors), sent=n_queries,
        late=late, late_ratio=(late / n_queries) if late is not None and n_queries else None,
        max_late_ms=float(q_issue.max() / 1e6) if n_queries else None, stages=log.summary(),
        valid=not reasons, invalid_reasons=reasons, rules=rules,
        batch_sizes={str(k): v for k, v in sorted(log.batches.items())} or None, samples_per_query=spq,
        started_at=started_at,
    )
    result.extra["loadgen"] = {"settings": settings.to_dict(), "summary": detail, "samples": n_samples,
                               "wall_s": wall_s}
    if scenario == "offline":
        result.extra["samples_per_second"] = qps_achieved
    return result
