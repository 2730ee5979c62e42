"""Memory of a measurement: the model's heap footprint, and the process's peak resident memory.

The figure a user (and a predictor) wants is what the model costs: its weights, prepacked weight copies and
the runtime's activation buffers. RSS cannot give it in a long-lived worker: memory freed by the previous
model stays resident and is reused, so a new model's RSS delta reads 0 MB (measured: most collection runs of
the first reference collection). The C heap's bytes *in use* (glibc ``mallinfo2``: ``uordblks + hblkhd``,
summed over all malloc arenas, mmapped chunks included) do not depend on that history: the model's
footprint is the largest in-use figure at the phase boundaries (after loading, after the first inference,
after warm-up, after the timed phase) minus the figure before loading (``heap_delta_mb``). Both ONNX
Runtime and PyTorch allocate their CPU tensors through malloc. Where glibc is not there, ``heap_delta_mb``
is ``None`` and the RSS delta is the fallback.

For the peak RSS:

The preferred method costs nothing while timing: Linux keeps the process's RSS high-water mark
(``VmHWM`` in ``/proc/self/status``) and lets a process reset it by writing ``5`` to
``/proc/self/clear_refs``. Resetting it just before the session is created and reading it afterwards gives
the exact peak of the run. Where that is not possible (other OSes, a locked-down /proc) a background
thread samples the RSS with psutil every few milliseconds; because that thread competes with the timed
calls, it can be paused during the timed phase (the peak is reached while loading and on the first
inferences, where the runtime allocates its buffers), and ``ru_maxrss`` still catches a later peak if it
rises above everything seen before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
import threading
from dataclasses import dataclass

import psutil

_MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class MemoryReading:
    baseline_mb: float
    peak_mb: float
    method: str
    heap_delta_mb: float | None = None

    @property
    def delta_mb(self) -> float:
        """RSS growth over the run (0 when the process reused memory it already held)."""
        return max(0.0, self.peak_mb - self.baseline_mb)

    @property
    def model_mb(self) -> float:
        """The model's footprint: the heap figure where there is one, else the RSS growth."""
        return self.heap_delta_mb if self.heap_delta_mb is not None else self.delta_mb

    @property
    def model_method(self) -> str:
        return "heap" if self.heap_delta_mb is not None else f"rss-{self.method}"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _load_mallinfo2() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc < 2.33
        return None
    fn.restype = _Mallinfo2
    fn.argtypes = []
    return fn


_MALLINFO2 = _load_mallinfo2()


def heap_in_use_bytes() -> int | None:
    """Bytes malloc has handed out and not taken back (all arenas + mmapped chunks); None without glibc."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()  # type: ignore[operator]
    return int(info.uordblks + info.hblkhd)


def _read_hwm_kb() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter for this process; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _read_hwm_kb() is not None


def _ru_maxrss_mb() -> float:
    # Linux reports kilobytes, macOS bytes.
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / _MB if sys.platform == "darwin" else raw / 1024.0


class PeakMemoryTracker:
    """Track this process's peak RSS from :meth:`start` to :meth:`stop`."""

    def __init__(self, interval_s: float = 0.002, force_sampling: bool = False) -> None:
        self._interval = interval_s
        self._force_sampling = force_sampling
        self._proc = psutil.Process()
        self._baseline = 0
        self._peak = 0
        self._method = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = threading.Event()
        self._maxrss_before = 0.0
        self._heap_baseline: int | None = None
        self._heap_peak: int | None = None

    @property
    def method(self) -> str:
        return self._method

    def start(self) -> None:
        self._heap_baseline = self._heap_peak = heap_in_use_bytes()
        self._baseline = self._proc.memory_info().rss
        self._peak = self._baseline
        self._maxrss_before = _ru_maxrss_mb()
        if not self._force_sampling and _reset_hwm():
            self._method = "vmhwm"
            return
        self._method = "sampled"
        self._stop.clear()
        self._running.set()
        self._thread = threading.Thread(target=self._sample, name="inferperf-rss", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._running.wait()
            rss = self._proc.memory_info().rss
            if rss > self._peak:
                self._peak = rss
            self._stop.wait(self._interval)

    def mark(self) -> None:
        """Sample the heap's in-use bytes (call at phase boundaries: it walks malloc's arenas)."""
        if self._heap_peak is not None:
            now = heap_in_use_bytes()
            if now is not None and now > self._heap_peak:
                self._heap_peak = now

    def _heap_delta_mb(self) -> float | None:
        if self._heap_baseline is None or self._heap_peak is None:
            return None
        return max(0, self._heap_peak - self._heap_baseline) / _MB

    def pause(self) -> None:
        """Stop sampling (keeps the peak so far); a no-op for the high-water-mark method."""
        if self._thread is not None:
            self._sample_once()
            self._running.clear()

    def resume(self) -> None:
        if self._thread is not None:
            self._running.set()

    def _sample_once(self) -> None:
        rss = self._proc.memory_info().rss
        if rss > self._peak:
            self._peak = rss

    def stop(self) -> MemoryReading:
        baseline_mb = self._baseline / _MB
        if self._method == "vmhwm":
            hwm = _read_hwm_kb()
            peak_mb = hwm / 1024.0 if hwm is not None else self._proc.memory_info().rss / _MB
            return MemoryReading(baseline_mb, max(peak_mb, baseline_mb), "vmhwm", self._heap_delta_mb())
        if self._thread is None:
            raise RuntimeError("PeakMemoryTracker.stop() before start()")
        self._sample_once()
        self._stop.set()
        self._running.set()
        self._thread.join()
        self._thread = None
        peak_mb = self._peak / _MB
        maxrss = _ru_maxrss_mb()
        if maxrss > self._maxrss_before:
            # The lifetime peak rose during the run, so the run itself set it: it is the true peak.
            peak_mb = max(peak_mb, maxrss)
        return MemoryReading(baseline_mb, peak_mb, "sampled", self._heap_delta_mb())


def current_rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / _MB
