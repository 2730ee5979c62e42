"""The measurement protocol, in one place.

Order of a measurement (:func:`run_measurement`):

1. pin the process to its cores (automatic unless the config names them), start the peak-RSS tracker;
2. cold start: create the session (``session_create_ms``) and time the first inference
   (``first_inference_ms``) — both reported separately, never mixed into latency;
3. warm up on exactly the measured inputs (at least ``warmup_runs`` calls and ``warmup_min_s``);
4. timed phase (:func:`time_callable`): ``perf_counter_ns`` around each call, in blocks, until the
   stopping rule holds or the time cap is hit; a block whose CV exceeds the limit is discarded and
   repeated, and the run is flagged unstable if it stays noisy; the energy meter, the process CPU time and
   the other processes' CPU use (``background_cpu``, see :mod:`inferperf.measure.background`) cover
   exactly this phase;
5. optional kernel trace in a separate profiled session (profiling slows every op, so it never touches
   the timed numbers);
6. close, restore affinity, build the :class:`Measurement`.

Every failure of the runtime becomes a ``failed`` Measurement with the runtime's message; only
``KeyboardInterrupt`` and ``SystemExit`` propagate. The clock is injectable so the stopping rule can be
tested deterministically with a fake clock.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inferperf.errors import InferperfError
from inferperf.measure.background import BackgroundLoad
from inferperf.measure.config import ProtocolConfig, RunConfig
from inferperf.measure.memory import PeakMemoryTracker
from inferperf.measure.result import Measurement, now_iso
from inferperf.measure.stats import LatencyStats, cv, median_ci, robust_cv

Clock = Callable[[], int]

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000.0
_VERSIONED_LIBS = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "psutil")
#: a meter start slower than this (an idle-power window) is followed by a short re-warm of _REWARM_S
_REWARM_AFTER_S = 0.01
_REWARM_S = 0.05
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_PROC_BIND", "KMP_AFFINITY")


# ---- timing ----------------------------------------------------------------------------------------


def timed_block(call: Callable[[], Any], n: int, clock: Clock) -> list[int]:
    """n timed calls. Kept minimal: a pre-sized list, local names, no branches or logging in the loop."""
    out = [0] * n
    for i in range(n):
        t0 = clock()
        call()
        out[i] = clock() - t0
    return out


def _median_sorted(s: list[int]) -> float:
    n = len(s)
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def ci_rel_of_sorted(sorted_ns: list[int], confidence: float) -> float:
    """Half-width of the median's confidence interval relative to the median (the larger side)."""
    med = _median_sorted(sorted_ns)
    lo, hi = median_ci(sorted_ns, confidence)
    if med <= 0:
        return 0.0 if hi == lo else math.inf
    return max(med - lo, hi - med) / med


@dataclass
class WarmupResult:
    calls: int
    elapsed_ns: int
    est_ns: float


def warm_up(
    call: Callable[[], Any], protocol: ProtocolConfig, clock: Clock = time.perf_counter_ns, first_ns: int = 0
) -> WarmupResult:
    """Run warm-up calls (the first inference, already made by the caller, counts as one).

    Returns an estimate of the steady-state call time — the median of the last few warm-up calls — which
    sizes the timing blocks.
    """
    calls = 1
    elapsed = first_ns
    recent: list[int] = []
    min_ns = protocol.warmup_min_s * _NS_PER_S
    max_ns = protocol.warmup_max_s * _NS_PER_S
    while (calls < protocol.warmup_runs or elapsed < min_ns) and elapsed < max_ns:
        t0 = clock()
        call()
        dt = clock() - t0
        elapsed += dt
        calls += 1
        recent.append(dt)
        if len(recent) > 5:
            recent.pop(0)
    est = float(sorted(recent)[len(recent) // 2]) if recent else float(first_ns)
    return WarmupResult(calls=calls, elapsed_ns=elapsed, est_ns=est)


def block_length(protocol: ProtocolConfig, est_ns: float | None) -> int:
    """Calls per block: at least ``block_size``, long enough to last ``block_min_s``, and short enough
    that one block takes at most half the time cap (so the cap is overshot by at most that) — except that
    a block always has at least 3 calls, so the CV guard has something to judge."""
    n = protocol.block_size
    if not est_ns or est_ns <= 0:
        return n
    n = max(n, math.ceil(protocol.block_min_s * _NS_PER_S / est_ns))
    half_cap = protocol.max_time_s * _NS_PER_S / 2.0
    if est_ns * n > half_cap:
        n = max(3, int(half_cap // est_ns))
    return n


@dataclass
class TimingResult:
    """Raw outcome of the timed phase. ``samples_ns`` are the kept samples in call order."""

    samples_ns: list[int]
    status: str
    invalid_reasons: list[str]
    stop_reason: str
    mode: str
    block_size: int
    blocks: int
    retries: int
    discarded_samples: int
    discarded_cvs: list[float]
    cv_method: str
    calls: int
    elapsed_ns: int
    ci_rel: float | None

    def summary(self) -> dict[str, Any]:
        """Everything but the samples, for provenance."""
        d = asdict(self)
        del d["samples_ns"], d["status"], d["invalid_reasons"]
        return d


def time_callable(
    call: Callable[[], Any],
    protocol: ProtocolConfig,
    clock: Clock = time.perf_counter_ns,
    est_ns: float | None = None,
) -> TimingResult:
    """The timed phase: fixed N calls, or adaptive blocks under the stopping rule and the CV guard."""
    if protocol.mode == "fixed":
        start = clock()
        samples = timed_block(call, protocol.fixed_runs, clock)
        elapsed = clock() - start
        return TimingResult(
            samples_ns=samples,
            status="ok",
            invalid_reasons=[],
            stop_reason="fixed",
            mode="fixed",
            block_size=protocol.fixed_runs,
            blocks=1,
            retries=0,
            discarded_samples=0,
            discarded_cvs=[],
            cv_method=protocol.cv_method,
            calls=protocol.fixed_runs,
            elapsed_ns=elapsed,
            ci_rel=ci_rel_of_sorted(sorted(samples), protocol.confidence),
        )

    block_cv_of = robust_cv if protocol.cv_method == "robust" else cv
    n_block = block_length(protocol, est_ns)
    min_ns = protocol.min_time_s * _NS_PER_S
    cap_ns = protocol.max_time_s * _NS_PER_S
    kept: list[int] = []
    kept_sorted: list[int] = []
    discarded_cvs: list[float] = []
    reasons: list[str] = []
    calls = blocks = retries = discarded = 0
    ci_rel: float | None = None
    status, stop_reason = "ok", ""
    start = clock()
    while not stop_reason:
        attempt = 0
        while True:
            block = timed_block(call, n_block, clock)
            calls += n_block
            block_cv = block_cv_of(block)
            if block_cv <= protocol.cv_limit:
                break
            out_of_time = clock() - start >= cap_ns
            if attempt >= protocol.max_block_retries or out_of_time:
                status, stop_reason = "unstable", "unstable"
                why = "time cap reached" if out_of_time else f"{attempt} retries"
                reasons.append(
                    f"block {blocks + 1} {protocol.cv_method} CV {block_cv:.3f} > cv_limit "
                    f"{protocol.cv_limit} after {why}"
                )
                break
            attempt += 1
            retries += 1
            discarded += n_block
            discarded_cvs.append(block_cv)
        blocks += 1
        kept.extend(block)
        kept_sorted.extend(block)
        kept_sorted.sort()  # timsort merges the sorted prefix with the new run: ~linear
        ci_rel = ci_rel_of_sorted(kept_sorted, protocol.confidence)
        if stop_reason:
            break
        elapsed = clock() - start
        if len(kept) >= protocol.min_repeats and elapsed >= min_ns and ci_rel <= protocol.target_ci_rel:
            stop_reason = "ci"
        elif elapsed >= cap_ns:
            stop_reason = "time_cap"
    return TimingResult(
        samples_ns=kept,
        status=status,
        invalid_reasons=reasons,
        stop_reason=stop_reason,
        mode="adaptive",
        block_size=n_block,
        blocks=blocks,
        retries=retries,
        discarded_samples=discarded,
        discarded_cvs=discarded_cvs,
        cv_method=protocol.cv_method,
        calls=calls,
        elapsed_ns=clock() - start,
        ci_rel=ci_rel,
    )


# ---- environment: affinity, provenance, optional meters ------------------------------------------


def _thread_ids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def choose_affinity(config: RunConfig, allowed: list[int]) -> list[int] | None:
    """The cores to pin to: the configured ones, or the first N allowed cores when N threads < cores."""
    if config.affinity is not None:
        missing = sorted(set(config.affinity) - set(allowed))
        if missing:
            raise InferperfError(f"affinity names cores {missing} this process may not use (allowed: {allowed})")
        return sorted(config.affinity)
    threads = config.intra_op_threads
    if config.runtime == "onnxruntime" and config.execution_mode == "parallel":
        threads *= config.inter_op_threads
    if threads < len(allowed):
        return allowed[:threads]
    return None


@contextmanager
def pinned(config: RunConfig) -> Iterator[dict[str, Any]]:
    """Pin every thread of this process (threads created later inherit it) and restore on exit.

    Yields a provenance dict: the allowed cores and the cores actually used.
    """
    info: dict[str, Any] = {"requested": config.affinity}
    if not hasattr(os, "sched_setaffinity"):
        info["applied"] = None
        info["note"] = "sched_setaffinity unavailable on this OS"
        yield info
        return
    allowed = sorted(os.sched_getaffinity(0))
    info["allowed"] = allowed
    target = choose_affinity(config, allowed)
    saved: dict[int, set[int]] = {}
    if target is not None:
        for tid in _thread_ids():
            try:
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, target)
            except OSError:
                continue
    info["applied"] = target
    try:
        yield info
    finally:
        for tid, mask in saved.items():
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:
                continue


def library_versions() -> dict[str, str]:
    """Installed versions, read from package metadata so nothing heavy gets imported."""
    out: dict[str, str] = {}
    for lib in _VERSIONED_LIBS:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    from inferperf import __version__

    out["inferperf"] = __version__
    return out


def device_provenance(threads: int) -> dict[str, Any]:
    """The device descriptor (without measuring compute ceilings, which takes seconds), or why not."""
    try:
        from inferperf.device import describe_device

        return describe_device(threads=threads, measure_ceilings=False).to_dict()
    except Exception as exc:  # a descriptor failure must not lose the measurement
        return {"error": f"{type(exc).__name__}: {exc}"}


def base_provenance(config: RunConfig) -> dict[str, Any]:
    return {
        "device": device_provenance(config.intra_op_threads),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "libraries": library_versions(),
        "env": {k: os.environ[k] for k in _THREAD_ENV if k in os.environ},
        "threads": {"intra_op": config.intra_op_threads, "inter_op": config.inter_op_threads},
        "seeds": {"seed": config.seed, "feeds": "numpy.random.default_rng(seed)"},
        "denormals_flushed": config.flush_denormal,
        "clock": "time.perf_counter_ns",
    }


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _start_energy_meter(notes: dict[str, Any]) -> Any:
    """An EnergyMeter already started, or None (with the reason in ``notes``) when none can run."""
    try:
        from inferperf.measure.energy import EnergyMeter
    except ImportError as exc:
        notes["energy_note"] = f"no energy meter: {exc}"
        return None
    try:
        meter = EnergyMeter()
        meter.start()
    except Exception as exc:  # a meter that cannot read its counters must not fail the latency run
        notes["energy_note"] = f"energy meter failed to start: {type(exc).__name__}: {exc}"
        return None
    return meter


def _stop_energy_meter(meter: Any, notes: dict[str, Any]) -> Any:
    """The meter's reading, or None (with the reason in ``notes``) when it cannot produce one."""
    try:
        return meter.stop()
    except Exception as exc:  # like a failed start: no energy figure, the latency stands
        notes["energy_note"] = f"energy meter failed to stop: {type(exc).__name__}: {exc}"
        return None


def _collect_kernels(
    model: Any, config: RunConfig, feeds: Mapping[str, Any], notes: dict[str, Any]
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """Per-kernel trace and fusion edges from a separate profiled ONNX Runtime session."""
    if config.runtime != "onnxruntime" or config.provider != "cpu" or not isinstance(model, (str, os.PathLike)):
        notes["kernels_note"] = "kernel profiling needs an ONNX model file on onnxruntime's CPU provider"
        return None, None
    try:
        from inferperf.measure.kernels import profile_onnx
    except ImportError as exc:
        notes["kernels_note"] = f"kernel profiler not available: {exc}"
        return None, None
    prof = profile_onnx(
        str(model),
        intra_op_threads=config.intra_op_threads,
        inter_op_threads=config.inter_op_threads,
        opt_level=config.opt_level,
        feeds=dict(feeds),
        seed=config.seed,
        attention_fusion=config.attention_fusion,
    )
    d = prof.to_dict()
    kernels, edges = d.pop("kernels"), d.pop("fusion_edges")
    notes["kernels_note"] = "collected in a separate profiled session after timing"
    notes["kernel_profile"] = d  # coverage, kernel-sum ratio, uncovered nodes, warnings
    return kernels, edges


# ---- the measurement -------------------------------------------------------------------------------


@dataclass
class _Phase:
    """What is known so far, so a failure mid-way still reports the parts that were measured."""

    session_create_ms: float | None = None
    first_inference_ms: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def run_measurement(
    model: Any,
    config: RunConfig,
    protocol: ProtocolConfig,
    *,
    backend: Any = None,
    metadata: Mapping[str, Any] | None = None,
    clock: Clock = time.perf_counter_ns,
) -> Measurement:
    """Measure one model under one configuration in this process; never raises for a runtime failure.

    ``model`` is whatever the backend's ``load`` takes (an .onnx path for onnxruntime, a
    :class:`~inferperf.runtimes.torch_backend.TorchModelSpec` for torch). ``metadata`` may carry
    ``vocab_size`` / ``input_ranges`` for id inputs. ``backend`` overrides the registry (tests use fakes).
    """
    started_at = now_iso()
    t_start = time.perf_counter()
    provenance = base_provenance(config)
    if isinstance(model, (str, os.PathLike)) and Path(model).is_file():
        provenance["model_path"] = str(model)
        provenance["model_sha256"] = file_sha256(model)
    elif isinstance(model, Mapping) or hasattr(model, "to_dict"):
        provenance["model_spec"] = dict(model) if isinstance(model, Mapping) else model.to_dict()
    if metadata:
        provenance["model_metadata"] = dict(metadata)
    phase = _Phase()

    def failed(status: str, error: str) -> Measurement:
        provenance.update(phase.notes)
        m = Measurement.failure(
            config,
            protocol,
            status,
            error,
            provenance=provenance,
            started_at=started_at,
            duration_s=time.perf_counter() - t_start,
        )
        m.session_create_ms = phase.session_create_ms
        m.first_inference_ms = phase.first_inference_ms
        return m

    try:
        config.validate()
        protocol.validate()
        with pinned(config) as affinity:
            provenance["affinity"] = affinity
            return _measure(model, config, protocol, backend, metadata, clock, provenance, phase, started_at, t_start)
    except InferperfError as exc:
        return failed("failed", str(exc))
    except MemoryError as exc:
        return failed("failed", f"out of memory: {exc}")
    except Exception as exc:  # the runtime's own exception types; message kept verbatim
        return failed("failed", f"{type(exc).__name__}: {exc}")


def _measure(
    model: Any,
    config: RunConfig,
    protocol: ProtocolConfig,
    backend: Any,
    metadata: Mapping[str, Any] | None,
    clock: Clock,
    provenance: dict[str, Any],
    phase: _Phase,
    started_at: str,
    t_start: float,
) -> Measurement:
    from inferperf.runtimes.base import make_feeds, resolve_shapes

    if backend is None:
        from inferperf.runtimes import get_backend

        backend = get_backend(config.runtime)
    # Import the runtime library before the cold-start clock and the memory baseline: a 2 s torch import
    # is neither session creation nor the model's memory.
    backend.import_runtime()
    tracker = PeakMemoryTracker()
    tracker.start()
    session = meter = reading = None
    try:
        t0 = clock()
        session = backend.load(model, config)
        phase.session_create_ms = (clock() - t0) / _NS_PER_MS
        tracker.mark()
        shapes = resolve_shapes(session.input_specs, config.batch_size, config.dim_values)
        provenance["input_shapes"] = {k: list(v) for k, v in shapes.items()}
        np_feeds = make_feeds(session.input_specs, shapes, config.seed, metadata)
        call = session.bind(session.prepare_feeds(np_feeds))

        t0 = clock()
        call()
        first_ns = clock() - t0
        phase.first_inference_ms = first_ns / _NS_PER_MS
        tracker.mark()
        warm = warm_up(call, protocol, clock, first_ns)
        tracker.mark()
        tracker.pause()

        t_meter = time.perf_counter()
        meter = _start_energy_meter(phase.notes)
        rewarm = 0
        if time.perf_counter() - t_meter > _REWARM_AFTER_S:
            # The meter paused to measure idle power: caches and clocks cooled, so warm up again. These
            # calls are inside the energy window and counted in its call count.
            rewarm = max(1, math.ceil(_REWARM_S * _NS_PER_S / warm.est_ns)) if warm.est_ns > 0 else 1
            for _ in range(rewarm):
                call()
        # CLOCK_PROCESS_CPUTIME_ID (all threads, ns resolution): psutil's cpu_times tick at 10 ms and read
        # 0 for a short timed phase
        background = BackgroundLoad().start()
        cpu0 = time.process_time_ns()
        wall0 = time.perf_counter_ns()
        timing = time_callable(call, protocol, clock, est_ns=warm.est_ns)
        wall = (time.perf_counter_ns() - wall0) / _NS_PER_S
        cpu_s = (time.process_time_ns() - cpu0) / _NS_PER_S
        background_cpu = background.stop()
        tracker.mark()
        if meter is not None:
            reading = _stop_energy_meter(meter, phase.notes)
            meter = None

        runtime_prov = session.provenance()
        arena = session.arena_mb()
    finally:
        if meter is not None:  # the timed phase raised: stop the meter's poller, discard its reading
            _stop_energy_meter(meter, {})
        if session is not None:
            session.close()
        memory = tracker.stop()

    kernels = fusion_edges = None
    if config.profile:
        try:
            kernels, fusion_edges = _collect_kernels(model, config, np_feeds, phase.notes)
        except Exception as exc:  # the latency above is still valid; the trace is an extra
            phase.notes["kernels_error"] = f"{type(exc).__name__}: {exc}"

    samples_ms = [s / _NS_PER_MS for s in timing.samples_ns]
    stats = LatencyStats.from_samples(samples_ms, protocol.confidence)
    timed_s = sum(samples_ms) / 1000.0

    energy_j = power_w = energy_source = None
    if reading is not None:
        energy_source = getattr(reading, "source", None)
        power_w = getattr(reading, "power_w", None)
        total_j = getattr(reading, "joules", None)
        energy_calls = timing.calls + rewarm
        if total_j is not None and energy_calls:
            energy_j = float(total_j) / energy_calls
        phase.notes["energy"] = {
            "total_j": total_j,
            "calls": energy_calls,
            "timed_s": wall,
            "per": "inference call (one batch)",
        }

    provenance.update(phase.notes)
    provenance["runtime"] = runtime_prov
    provenance["memory_method"] = memory.model_method
    provenance["rss_method"] = memory.method
    provenance["rss_delta_mb"] = memory.delta_mb
    provenance["warmup"] = {"calls": warm.calls, "ms": warm.elapsed_ns / _NS_PER_MS}
    provenance["timing"] = timing.summary()
    provenance["background_cpu"] = background_cpu
    return Measurement(
        config=config,
        protocol=protocol,
        status=timing.status,
        invalid_reasons=list(timing.invalid_reasons),
        error=None,
        latency_ms=stats.latency_dict(),
        cv=stats.cv,
        ci95_ms=list(stats.ci95),
        n_samples=stats.n,
        samples_ms=samples_ms,
        throughput=config.batch_size * stats.n / timed_s if timed_s > 0 else None,
        cold_start_ms=phase.session_create_ms + phase.first_inference_ms,
        session_create_ms=phase.session_create_ms,
        first_inference_ms=phase.first_inference_ms,
        memory_mb=memory.model_mb,
        peak_rss_mb=memory.peak_mb,
        arena_mb=arena,
        energy_j=energy_j,
        energy_source=energy_source,
        power_w=power_w,
        cpu_util=100.0 * cpu_s / wall if wall > 0 else None,
        kernels=kernels,
        fusion_edges=fusion_edges,
        provenance=provenance,
        started_at=started_at,
        duration_s=time.perf_counter() - t_start,
    )


def measure_to_dict(
    model: Any, config: dict[str, Any], protocol: dict[str, Any], metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """JSON-in, JSON-out entry point for the isolated child process."""
    return run_measurement(
        model, RunConfig.from_dict(config), ProtocolConfig.from_dict(protocol), metadata=metadata
    ).to_dict()
