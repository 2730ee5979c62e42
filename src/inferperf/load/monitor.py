"""Resource use during a load run: CPU %, RSS and GPU utilisation/memory, sampled on a thread.

CPU percent is per process and summed over the watched processes (100 = one core busy), read with psutil
from the kernel's per-process CPU times, so the sampler's own wake-ups are not attributed to the server.
GPU figures come from NVML (``nvidia-ml-py``), imported lazily and only for the GPUs this process may use
(``CUDA_VISIBLE_DEVICES`` resolved); without NVML or a GPU the ``gpu`` entry says why instead of
reporting zeros. The summary and a bounded timeline are stored with the run (``resources``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

#: timeline points kept (older points are thinned by half when full), so a long run stays small
MAX_TIMELINE = 600


class _Gpu:
    """NVML access for the visible GPUs, or the reason there is none."""

    def __init__(self, nvml: Any | None = None) -> None:
        self.reason: str | None = None
        self.handles: list[Any] = []
        self.nvml = nvml
        if nvml is None:
            from inferperf.device.gpu import load_nvml

            self.nvml, self.reason = load_nvml()
            if self.nvml is None:
                return
        try:
            self.nvml.nvmlInit()
            from inferperf.device.gpu import visible_gpu_indices

            indices = visible_gpu_indices(self.nvml)
            self.handles = [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
            if not self.handles:
                self.reason = "no visible GPU"
        except Exception as exc:  # NVML raises NVMLError_* (driver missing, no device)
            self.reason = f"NVML unavailable: {exc}"
            self.handles = []

    def sample(self) -> tuple[float, float] | None:
        """(mean utilisation %, total used memory MB) over the visible GPUs."""
        if not self.handles:
            return None
        util, mem = 0.0, 0.0
        for h in self.handles:
            util += float(self.nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            mem += float(self.nvml.nvmlDeviceGetMemoryInfo(h).used) / 2**20
        return util / len(self.handles), mem

    def close(self) -> None:
        if self.handles:
            with contextlib.suppress(Exception):  # a shutdown failure must not lose the measurement
                self.nvml.nvmlShutdown()


class ResourceMonitor:
    """``with ResourceMonitor([server_pid]) as mon: ...`` then ``mon.result`` (or ``summary = mon.stop()``)."""

    def __init__(self, pids: Iterable[int] | None = None, *, interval_s: float = 0.25, gpu: bool = True,
                 nvml: Any | None = None) -> None:
        import psutil

        self.pids = list(pids) if pids is not None else [os.getpid()]
        self.interval_s = interval_s
        self._procs = []
        for pid in self.pids:
            try:
                self._procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
        self._want_gpu = gpu
        self._nvml = nvml
        self._gpu: _Gpu | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.timeline: list[tuple[float, float, float, float | None, float | None]] = []
        self._t0 = 0.0
        self._cpu0: dict[int, float] = {}
        self._wall0 = 0.0
        self._cpu_total: float | None = None
        self.result: dict[str, Any] | None = None

    def _cpu_times(self) -> dict[int, float]:
        import psutil

        out = {}
        for p in self._procs:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
            except psutil.Error:
                continue
        return out

    def _rss_mb(self) -> float:
        import psutil

        total = 0.0
        for p in self._procs:
            try:
                total += p.memory_info().rss / 2**20
            except psutil.Error:
                continue
        return total

    def start(self) -> ResourceMonitor:
        if self._want_gpu:
            self._gpu = _Gpu(self._nvml)
        self._t0 = time.perf_counter()
        self._wall0 = self._t0
        self._cpu0 = self._cpu_times()
        self._thread = threading.Thread(target=self._loop, name="inferperf-monitor", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        last_t, last_cpu = self._t0, dict(self._cpu0)
        while not self._stop.wait(self.interval_s):
            now = time.perf_counter()
            cpu = self._cpu_times()
            dt = now - last_t
            busy = sum(cpu.get(pid, 0.0) - last_cpu.get(pid, 0.0) for pid in cpu)
            last_t, last_cpu = now, cpu
            gpu = self._gpu.sample() if self._gpu is not None else None
            point = (now - self._t0, 100.0 * busy / dt if dt > 0 else 0.0, self._rss_mb(),
                     gpu[0] if gpu else None, gpu[1] if gpu else None)
            self.timeline.append(point)
            if len(self.timeline) >= MAX_TIMELINE:
                self.timeline = self.timeline[::2]

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        wall = time.perf_counter() - self._wall0
        cpu = self._cpu_times()
        self._cpu_total = sum(cpu.get(pid, 0.0) - self._cpu0.get(pid, 0.0) for pid in cpu)
        if self._gpu is not None:
            self._gpu.close()
        self.result = self.summary(wall)
        return self.result

    def summary(self, wall_s: float | None = None) -> dict[str, Any]:
        rss = [p[2] for p in self.timeline]
        cpus = [p[1] for p in self.timeline]
        out: dict[str, Any] = {
            "pids": self.pids,
            "interval_s": self.interval_s,
            "samples": len(self.timeline),
            # whole-run average from total CPU time (exact), maximum over sampling intervals
            "cpu_percent_mean": (100.0 * self._cpu_total / wall_s) if wall_s and self._cpu_total is not None else None,
            "cpu_percent_max": max(cpus) if cpus else None,
            "peak_rss_mb": max(rss) if rss else self._rss_mb(),
            "rss_mb_mean": sum(rss) / len(rss) if rss else None,
            "timeline": [list(p) for p in self.timeline],
        }
        gpu_points = [p for p in self.timeline if p[3] is not None]
        if gpu_points:
            out["gpu"] = {"source": "nvml", "utilization_mean": sum(p[3] for p in gpu_points) / len(gpu_points),
                          "utilization_max": max(p[3] for p in gpu_points),
                          "memory_used_mb_max": max(p[4] for p in gpu_points)}
        else:
            reason = (self._gpu.reason if self._gpu is not None else "GPU sampling disabled") or "no GPU samples"
            out["gpu"] = {"source": None, "reason": reason}
        return out

    def __enter__(self) -> ResourceMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()
