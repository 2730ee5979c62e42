"""Peak resident memory of a measurement.

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

    @property
    def delta_mb(self) -> float:
        return max(0.0, self.peak_mb - self.baseline_mb)


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

    @property
    def method(self) -> str:
        return self._method

    def start(self) -> None:
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
            return MemoryReading(baseline_mb, max(peak_mb, baseline_mb), "vmhwm")
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
        return MemoryReading(baseline_mb, peak_mb, "sampled")


def current_rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / _MB
