"""Latency of 2–3 models running at the same time on one device, each in its own process.

Co-located inference services slow each other down through shared cores, caches and memory bandwidth; the
slowdown of a model is its median latency while the others run, over its median latency alone under the
*same* thread count and core pinning (so the ratio isolates interference, not a change of threads).

Each model lives in a persistent worker process (:class:`~inferperf.jobs.workers.Worker`, kind ``call``)
pinned to its cores, with an ONNX Runtime session of its thread count. The protocol:

1. *prepare*: every worker loads its model and warms up (session creation is never timed);
2. *solo*: each worker runs alone for one window while the others idle;
3. *together*: all workers run the same window, whose start and end are absolute ``CLOCK_MONOTONIC``
   times (a system-wide clock on Linux, so the processes agree on it); a sample counts when its inference
   *started* inside the window, so every model is measured only while all of them load the device;
4. steps 2–3 repeat for ``rounds``; the slowdown is the median of the per-round ratios.

A window lasts ``duration_s``, stretched so that the slowest model completes at least ``min_samples``
inferences. Timing uses ``perf_counter_ns``; medians, not means, because the loaded window has a long tail.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inferperf.errors import ConfigError, InferperfError

_TARGET = "inferperf.colocate.measure"

#: sessions of this worker process, by key (module state lives in the worker, not in the parent)
_SESSIONS: dict[str, tuple[Any, dict[str, Any]]] = {}


class ColocationError(InferperfError):
    """A co-located measurement could not be run (a worker failed, timed out, or the input is wrong)."""


# ============================================================================================== worker side
def member_prepare(key: str, model_path: str, threads: int, warmup_s: float = 0.3, seed: int = 0) -> dict[str, Any]:
    """(in the worker) Create the session, build feeds, warm up; returns the warm-up median in ms."""
    import onnxruntime as ort

    from inferperf.measure.kernels import make_feeds

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    feeds = make_feeds(sess.get_inputs(), seed)
    _SESSIONS[key] = (sess, feeds)
    times = []
    end = time.monotonic() + warmup_s
    while True:
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        if time.monotonic() >= end and len(times) >= 3:
            break
    return {"warm_ms": statistics.median(times), "pid": os.getpid(),
            "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def member_window(key: str, start_at: float, end_at: float) -> dict[str, Any]:
    """(in the worker) Wait for ``start_at`` (monotonic s), run inferences until ``end_at``; latencies in ms."""
    sess, feeds = _SESSIONS[key]
    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    late_s = max(0.0, time.monotonic() - start_at)
    samples = []
    while time.monotonic() < end_at:
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return {"samples_ms": samples, "late_s": late_s}


def member_release(key: str) -> bool:
    """(in the worker) Drop the session."""
    return _SESSIONS.pop(key, None) is not None


# ============================================================================================== results
@dataclass
class MemberResult:
    """One co-located model: its setting, solo and co-located medians, and the slowdown."""

    model: str
    threads: int
    cores: list[int] | None
    solo_ms: float
    colocated_ms: float
    slowdown: float
    solo_n: int
    colocated_n: int
    solo_cv: float
    colocated_cv: float
    solo_mean_ms: float = math.nan
    colocated_mean_ms: float = math.nan

    @property
    def slowdown_mean(self) -> float:
        """Mean-based slowdown: unlike the median it counts the inferences a co-runner preempted, which on a
        shared core is most of the cost when one inference is shorter than a scheduler time slice."""
        return self.colocated_mean_ms / self.solo_mean_ms if self.solo_mean_ms > 0 else math.nan


@dataclass
class ColocationResult:
    members: list[MemberResult]
    window_s: float
    device_id: str | None = None
    created: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"members": [{**asdict(m), "slowdown_mean": m.slowdown_mean} for m in self.members],
                "window_s": self.window_s,
                "device_id": self.device_id, "created": self.created, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColocationResult:
        fields = set(MemberResult.__dataclass_fields__)
        return cls([MemberResult(**{k: v for k, v in m.items() if k in fields}) for m in d["members"]],
                   float(d["window_s"]), d.get("device_id"),
                   str(d.get("created", "")), list(d.get("notes", [])))


def _cv(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return math.nan
    m = statistics.fmean(xs)
    return statistics.pstdev(xs) / m if m > 0 else math.nan


# ============================================================================================== planning
def parse_split(text: str | None, n: int) -> list[int]:
    """``"1,1"`` → [1, 1]; None → one thread each."""
    if text is None or str(text).strip() == "":
        return [1] * n
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise ConfigError(f"--threads-split must be comma-separated integers like 1,1; got {text!r}") from None
    if len(values) != n:
        raise ConfigError(f"--threads-split gives {len(values)} thread counts for {n} models")
    if any(v < 1 for v in values):
        raise ConfigError(f"thread counts must be >= 1; got {values}")
    return values


def plan_cores(threads: Sequence[int], allowed: Sequence[int] | None = None) -> list[list[int]]:
    """Cores per model: consecutive runs of ``threads[i]`` cores, wrapping when the models need more cores
    than exist (the wrap is what makes them share a core)."""
    if allowed is None:
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(
            range(os.cpu_count() or 1))
    allowed = list(allowed)
    if not allowed:
        raise ConfigError("no CPU cores available to pin to")
    out, pos = [], 0
    for t in threads:
        out.append(sorted({allowed[(pos + k) % len(allowed)] for k in range(int(t))}))
        pos += int(t)
    return out


def parse_cores(text: str | None, n: int) -> list[list[int]] | None:
    """``"0;1"`` or ``"0,1;1"`` (one core list per model, ``;``-separated) → [[0], [1]]."""
    if text is None or str(text).strip() == "":
        return None
    groups = [g for g in str(text).split(";")]
    if len(groups) != n:
        raise ConfigError(f"--cores gives {len(groups)} core lists for {n} models (separate them with ';')")
    try:
        return [sorted({int(c) for c in g.split(",") if c.strip()}) for g in groups]
    except ValueError:
        raise ConfigError(f"--cores must look like 0;1 or 0,1;1; got {text!r}") from None


# ============================================================================================== driver
def measure_colocation(
    models: Sequence[str | os.PathLike[str]],
    *,
    threads: Sequence[int] | None = None,
    cores: Sequence[Sequence[int]] | None = None,
    pin: bool = True,
    duration_s: float = 2.0,
    warmup_s: float = 0.3,
    min_samples: int = 5,
    rounds: int = 1,
    names: Sequence[str] | None = None,
    timeout_s: float = 300.0,
    device_id: str | None = None,
) -> ColocationResult:
    """Measure every model alone and all together (see the module docstring); models are ONNX paths with
    concrete input shapes (bind symbolic dimensions first, e.g. with :func:`prepare_model`).

    With ``rounds`` > 1 the alone/together sequence repeats (solo order rotating) and the slowdown is the
    median of the per-round slowdowns; the latencies pool every round's samples."""
    from inferperf.jobs.workers import Worker

    paths = [str(Path(m)) for m in models]
    n = len(paths)
    if not 2 <= n <= 3:
        raise ConfigError(f"co-location measures 2 or 3 models, got {n}")
    for p in paths:
        if not Path(p).is_file():
            raise ConfigError(f"model file not found: {p}")
    threads = list(threads) if threads is not None else [1] * n
    if len(threads) != n:
        raise ConfigError(f"{len(threads)} thread counts for {n} models")
    if cores is None and pin:
        cores = plan_cores(threads)
    core_lists = [list(c) for c in cores] if cores is not None else [None] * n
    labels = list(names) if names is not None else [Path(p).stem for p in paths]
    workers = [Worker("call", cores=c) for c in core_lists]
    notes: list[str] = []
    try:
        def ask(i: int, fn: str, **kwargs: Any) -> None:
            workers[i].submit({"target": f"{_TARGET}:{fn}", "kwargs": kwargs})

        def answer(i: int, what: str) -> Any:
            out = workers[i].result(timeout_s)
            if out.status != "ok":
                raise ColocationError(f"{labels[i]}: {what} failed ({out.status}: {out.error})")
            return out.value

        for i in range(n):
            ask(i, "member_prepare", key=f"m{i}", model_path=paths[i], threads=threads[i], warmup_s=warmup_s)
        warm = [answer(i, "loading and warm-up") for i in range(n)]
        slowest = max(w["warm_ms"] for w in warm) / 1000.0
        window = max(duration_s, min_samples * slowest * 1.5)
        solo: list[list[float]] = [[] for _ in range(n)]
        together: list[list[float]] = [[] for _ in range(n)]
        ratios: list[list[float]] = [[] for _ in range(n)]
        for r in range(max(1, rounds)):
            # alone, then together, in every round: a burst of outside load disturbs one round, not the result
            round_solo = []
            for i in [(r + k) % n for k in range(n)]:
                start = time.monotonic() + 0.05
                ask(i, "member_window", key=f"m{i}", start_at=start, end_at=start + window)
                round_solo.append((i, answer(i, "solo window")["samples_ms"]))
            lead = 0.1 + 0.02 * n  # every worker must have received its request before the window opens
            start = time.monotonic() + lead
            for i in range(n):
                ask(i, "member_window", key=f"m{i}", start_at=start, end_at=start + window)
            round_together = [answer(i, "co-located window") for i in range(n)]
            for i, t in enumerate(round_together):
                if t["late_s"] > 0.05:
                    notes.append(f"round {r}: {labels[i]} started its co-located window {t['late_s'] * 1000:.0f} ms "
                                 "late")
            for i, s in round_solo:
                c = round_together[i]["samples_ms"]
                if not s or not c:
                    raise ColocationError(f"{labels[i]}: no inference completed in a {window:.1f} s window")
                solo[i].extend(s)
                together[i].extend(c)
                ratios[i].append(statistics.median(c) / statistics.median(s))
        members = []
        for i in range(n):
            s, c = solo[i], together[i]
            members.append(MemberResult(labels[i], int(threads[i]), core_lists[i], statistics.median(s),
                                        statistics.median(c), statistics.median(ratios[i]), len(s), len(c), _cv(s),
                                        _cv(c), statistics.fmean(s), statistics.fmean(c)))
        return ColocationResult(members, window, device_id, datetime.now(UTC).isoformat(timespec="seconds"), notes)
    finally:
        for w in workers:
            w.close()


def prepare_model(source: str | os.PathLike[str], batch_size: int = 1, name: str | None = None) -> tuple[str, Any]:
    """An ONNX path with concrete shapes (symbolic dimensions bound) and its ModelGraph."""
    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_onnx_file

    loaded = load_onnx_file(Path(source), batch_size=batch_size, name=name)
    graph = build_graph(loaded.model, loaded.name, loaded.metadata)
    return loaded.path, graph
