"""Raw per-query records of a load run and the result built from them.

The :class:`Recorder` keeps, per query, the time it was *scheduled*, the time it was actually *sent* and
the time it *completed* (nanoseconds on the generator's clock), plus optional per-stage durations.
Latency is always ``completed - scheduled``: a query the generator could only send late (because the
system under test or the generator itself stalled) carries that delay in its latency, so a stall cannot
hide itself by slowing the sender down (no coordinated omission). Lateness ``sent - scheduled`` is kept
separately, to judge the generator.

:class:`LoadResult` is what a run reports and stores: percentiles from the raw samples
(:class:`~inferperf.measure.stats.LatencyStats`), achieved rates, late-send share, per-stage summaries,
validity with reasons, and a ``to_run_dict`` in the ``Measurement.to_dict()`` shape that PerfDB stores.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferperf.load.validity import RunFacts, ValidityRules, check_validity
from inferperf.measure.stats import LatencyStats

#: pipeline stages in the order a request passes them (the InferBench pipeline tier); ``server_other`` is
#: the server's own request handling (decode, validate, encode) outside the batch queue and the model
STAGES = ("preprocess", "transmission", "queue", "inference", "server_other", "postprocess")

_UNSET = -1


class Recorder:
    """Fixed-capacity per-query arrays, written by index from any thread.

    Preallocated numpy arrays make a record a few array stores (no allocation on the hot path), which is
    what lets the generator keep thousands of queries per second in one Python thread.
    """

    def __init__(self, capacity: int, stages: tuple[str, ...] = STAGES) -> None:
        if capacity < 1:
            raise ValueError("a recorder needs room for at least one query")
        self.capacity = int(capacity)
        self.scheduled = np.full(capacity, _UNSET, dtype=np.int64)
        self.sent = np.full(capacity, _UNSET, dtype=np.int64)
        self.done = np.full(capacity, _UNSET, dtype=np.int64)
        self.failed = np.zeros(capacity, dtype=bool)
        self.status = np.zeros(capacity, dtype=np.int16)
        self.stage_ms = {s: np.full(capacity, np.nan) for s in stages}
        self.batch_size = np.zeros(capacity, dtype=np.int32)
        self.errors: dict[str, int] = {}
        self._count = 0
        self._lock = threading.Lock()

    def next_index(self) -> int | None:
        """Claim the next free slot (closed-loop generators); None when the recorder is full."""
        with self._lock:
            if self._count >= self.capacity:
                return None
            i = self._count
            self._count += 1
            return i

    def set_count(self, n: int) -> None:
        """Open-loop generators know their query count up front: slots 0..n-1 are used."""
        self._count = min(int(n), self.capacity)

    @property
    def count(self) -> int:
        return self._count

    def complete(self, i: int, t_ns: int, *, status: int = 200, stages: dict[str, float] | None = None,
                 batch_size: int = 0) -> None:
        self.done[i] = t_ns
        self.status[i] = status
        if batch_size:
            self.batch_size[i] = batch_size
        if stages:
            for name, ms in stages.items():
                arr = self.stage_ms.get(name)
                if arr is not None and ms is not None:
                    arr[i] = ms

    def fail(self, i: int, t_ns: int, reason: str, status: int = 0) -> None:
        self.done[i] = t_ns
        self.failed[i] = True
        self.status[i] = status
        with self._lock:
            self.errors[reason] = self.errors.get(reason, 0) + 1


def stage_summary(stage_ms: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, dict[str, float] | None]:
    """Mean / p50 / p99 per stage over the successful queries; None for a stage that was not measured."""
    out: dict[str, dict[str, float] | None] = {}
    for name, arr in stage_ms.items():
        vals = arr[: mask.size][mask]
        vals = vals[~np.isnan(vals)]
        if vals.size == 0:
            out[name] = None
            continue
        p50, p99 = np.percentile(vals, [50.0, 99.0])
        out[name] = {"mean_ms": float(vals.mean()), "p50_ms": float(p50), "p99_ms": float(p99), "n": int(vals.size)}
    return out


@dataclass
class LoadResult:
    """One load run: settings, measured numbers, validity."""

    scenario: str
    target: dict[str, Any]
    generator: str
    qps_target: float | None
    qps_achieved: float | None
    latency: LatencyStats | None
    samples_ms: list[float]
    duration_s: float
    completed: int
    errors: int
    error_kinds: dict[str, int]
    sent: int
    late: int | None
    late_ratio: float | None
    max_late_ms: float | None
    stages: dict[str, dict[str, float] | None]
    valid: bool
    invalid_reasons: list[str]
    rules: ValidityRules
    batch_sizes: dict[str, int] | None = None
    samples_per_query: int = 1
    cold_start_ms: float | None = None
    session_create_ms: float | None = None
    first_inference_ms: float | None = None
    client_cpu: float | None = None
    resources: dict[str, Any] | None = None
    network: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    concurrency: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""

    @property
    def p99_ms(self) -> float | None:
        return self.latency.p99 if self.latency else None

    def latency_ms(self) -> dict[str, float] | None:
        return self.latency.latency_dict() if self.latency else None

    def summary(self) -> dict[str, Any]:
        """The keys ``inferperf load --json`` promises, plus the counts behind them."""
        lat = self.latency_ms()
        return {
            "scenario": self.scenario,
            "qps_target": self.qps_target,
            "qps_achieved": self.qps_achieved,
            "latency_ms": {k: lat[k] for k in ("p50", "p90", "p95", "p99", "p999", "mean", "max")} if lat else None,
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
            "late_ratio": self.late_ratio,
            "stages": self.stages,
            "cold_start_ms": self.cold_start_ms,
            "completed": self.completed,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "sent": self.sent,
            "late_sends": self.late,
            "max_late_ms": self.max_late_ms,
            "duration_s": self.duration_s,
            "concurrency": self.concurrency,
            "samples_per_query": self.samples_per_query,
            "batch_sizes": self.batch_sizes,
            "client_cpu": self.client_cpu,
            "generator": self.generator,
            "target": self.target,
            "network": self.network,
            "resources": _resource_summary(self.resources),
            **self.extra,
        }

    def to_run_dict(self, config: dict[str, Any]) -> dict[str, Any]:
        """The ``Measurement.to_dict()`` shape (status, latency_ms, samples...) plus the load fields.

        ``config`` is the RunConfig dict of the system under test (runtime, batch, threads); the load
        settings go into ``config["protocol"]`` so the stored config says how the load was generated.
        """
        cfg = dict(config)
        cfg["protocol"] = {
            "kind": "load",
            "scenario": self.scenario,
            "generator": self.generator,
            "qps_target": self.qps_target,
            "concurrency": self.concurrency,
            "samples_per_query": self.samples_per_query,
            "schedule": self.schedule,
            "rules": self.rules.to_dict(),
        }
        lat = self.latency
        failed_outright = self.completed == 0
        record: dict[str, Any] = {
            "config": cfg,
            "status": "failed" if failed_outright else "ok",
            "valid": self.valid and not failed_outright,
            "invalid_reasons": list(self.invalid_reasons) or (["failed"] if failed_outright else []),
            "error": "; ".join(f"{k} ×{v}" for k, v in self.error_kinds.items()) or None,
            "latency_ms": lat.latency_dict() if lat else None,
            "cv": lat.cv if lat else None,
            "ci95_ms": list(lat.ci95) if lat else None,
            "n_samples": len(self.samples_ms),
            "samples_ms": list(self.samples_ms),
            "throughput": (self.qps_achieved * self.batch_rows) if self.qps_achieved is not None else None,
            "cold_start_ms": self.cold_start_ms,
            "session_create_ms": self.session_create_ms,
            "first_inference_ms": self.first_inference_ms,
            "peak_rss_mb": (self.resources or {}).get("peak_rss_mb"),
            "cpu_util": (self.resources or {}).get("cpu_percent_mean"),
            "provenance": {"target": self.target, "network": self.network, "generator": self.generator},
            "started_at": self.started_at,
            "duration_s": self.duration_s,
        }
        record.update({k: v for k, v in self.summary().items() if k not in record and k != "latency_ms"})
        record["p999"] = lat.p999 if lat else None
        record["resources"] = self.resources
        return record

    @property
    def batch_rows(self) -> int:
        """Inferences per query: the rows each sample carries times samples per query."""
        rows = int(self.target.get("rows_per_sample") or 1)
        return rows * self.samples_per_query


def _resource_summary(resources: dict[str, Any] | None) -> dict[str, Any] | None:
    if not resources:
        return None
    return {k: v for k, v in resources.items() if k != "timeline"}


def build_result(
    rec: Recorder,
    *,
    scenario: str,
    target: dict[str, Any],
    generator: str,
    rules: ValidityRules,
    start_ns: int,
    qps_target: float | None,
    open_loop: bool,
    client_cpu: float | None = None,
    schedule: dict[str, Any] | None = None,
    concurrency: int | None = None,
    samples_per_query: int = 1,
    started_at: str = "",
) -> LoadResult:
    """Summarise a recorder: latency from the scheduled time, late sends, achieved rate, validity."""
    n = rec.count
    sched, sent, done = rec.scheduled[:n], rec.sent[:n], rec.done[:n]
    finished = done != _UNSET
    ok = finished & ~rec.failed[:n]
    was_sent = sent != _UNSET
    lat_ms = (done[ok] - sched[ok]) / 1e6
    samples = lat_ms.tolist()
    latency = LatencyStats.from_samples(samples) if samples else None
    end_ns = int(done[finished].max()) if finished.any() else start_ns
    duration_s = max(end_ns - start_ns, 0) / 1e9
    completed = int(ok.sum())
    errors = int((finished & rec.failed[:n]).sum()) + int((~finished).sum())
    late = max_late_ms = late_ratio = None
    scheduled_span_s = send_span_s = None
    if open_loop and was_sent.any():
        delay_ms = (sent[was_sent] - sched[was_sent]) / 1e6
        late = int((delay_ms > rules.late_tolerance_ms).sum())
        late_ratio = late / int(was_sent.sum())
        max_late_ms = float(delay_ms.max())
        scheduled_span_s = (int(sched[was_sent].max()) - start_ns) / 1e9
        send_span_s = (int(sent[was_sent].max()) - start_ns) / 1e9
    q = rules.target_percentile
    at_target = float(np.percentile(lat_ms, q)) if lat_ms.size else None
    facts = RunFacts(
        duration_s=duration_s, completed=completed, errors=errors, sent=int(was_sent.sum()), late=late,
        scheduled_span_s=scheduled_span_s, send_span_s=send_span_s, client_cpu=client_cpu,
        latency_at_target_ms=at_target, open_loop=open_loop,
    )
    reasons = check_validity(facts, rules)
    if (~finished).any():
        reasons.append(f"{int((~finished).sum())} queries never completed before the run ended")
    qps_achieved = completed / duration_s if duration_s > 0 else None
    bs = rec.batch_size[:n][ok]
    batch_sizes = None
    if bs.any():
        values, counts = np.unique(bs[bs > 0], return_counts=True)
        batch_sizes = {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}
    error_kinds = dict(rec.errors)
    if (~finished).any():
        error_kinds["never completed"] = int((~finished).sum())
    return LoadResult(
        scenario=scenario, target=target, generator=generator, qps_target=qps_target,
        qps_achieved=qps_achieved, latency=latency, samples_ms=samples, duration_s=duration_s,
        completed=completed, errors=errors, error_kinds=error_kinds, sent=int(was_sent.sum()), late=late,
        late_ratio=late_ratio, max_late_ms=max_late_ms, stages=stage_summary(rec.stage_ms, ok),
        valid=not reasons, invalid_reasons=reasons, rules=rules, batch_sizes=batch_sizes,
        samples_per_query=samples_per_query, client_cpu=client_cpu, schedule=schedule,
        concurrency=concurrency, started_at=started_at,
    )
