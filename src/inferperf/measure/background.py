"""How much CPU other processes used while we measured.

A latency measured while something else runs on the machine is not the latency of the model: on the 2-core
reference machine a memory-bound job on the *other* core inflates ResNet-50's median by 7–9% (shared cache
and memory bandwidth), even though the measured core is pinned. Pinning cannot prevent that, so every timed
phase records the other processes' CPU use (``provenance["background_cpu"]``, in cores), and a collection can
wait for a quiet machine before measuring and measure again when the machine was not quiet.

The figure is the machine's busy CPU time from ``/proc/stat`` minus this process's own CPU time (all its
threads, so the runtime's intra-op pool is excluded) over the window, divided by the wall time. ``/proc/stat``
ticks at 10 ms, so over a 1 s window the figure is good to about ±0.02 cores. Elsewhere than Linux it is
``None``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

_PROC_STAT = "/proc/stat"


def _busy_seconds(path: str = _PROC_STAT) -> float | None:
    """CPU seconds all CPUs spent busy since boot (user, nice, system, irq, softirq, steal)."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]
    values += [0] * (8 - len(values))
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (user + nice + system + irq + softirq + steal) / float(ticks)


class BackgroundLoad:
    """Other processes' CPU use, in cores, between :meth:`start` and :meth:`stop`."""

    def __init__(self, stat_path: str = _PROC_STAT) -> None:
        self._path = stat_path
        self._busy0: float | None = None
        self._own0 = 0.0
        self._wall0 = 0.0

    def start(self) -> BackgroundLoad:
        self._busy0 = _busy_seconds(self._path)
        self._own0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def stop(self) -> float | None:
        """Cores' worth of CPU used by everything but this process; ``None`` where unknown."""
        busy1 = _busy_seconds(self._path)
        wall = time.perf_counter() - self._wall0
        own = time.process_time() - self._own0
        if self._busy0 is None or busy1 is None or wall <= 0:
            return None
        return max(0.0, (busy1 - self._busy0 - own) / wall)


def wait_for_quiet(
    max_cores: float,
    window_s: float = 1.0,
    timeout_s: float | None = None,
    on_wait: Callable[[float], None] | None = None,
    stat_path: str = _PROC_STAT,
) -> float:
    """Block until other processes use at most ``max_cores`` over one ``window_s`` window.

    Returns the seconds spent waiting beyond the first window. ``on_wait`` is called with the load seen
    each time the machine is found busy, so a progress bar can say why nothing happens. With
    ``timeout_s`` it gives up (and returns) after that long, so a machine that is never quiet slows a
    collection down instead of stopping it; where the load cannot be read it returns at once.
    """
    started = time.perf_counter()
    while True:
        meter = BackgroundLoad(stat_path).start()
        time.sleep(window_s)
        load = meter.stop()
        waited = time.perf_counter() - started - window_s
        if load is None or load <= max_cores:
            return max(0.0, waited)
        if on_wait is not None:
            on_wait(load)
        if timeout_s is not None and waited >= timeout_s:
            return waited
