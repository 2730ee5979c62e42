"""Clocks the load generators read and sleep on.

Every generator takes a :class:`Clock` instead of calling ``time`` directly, so scheduling, lateness and
validity logic can be tested with :class:`FakeClock` — deterministic, instantaneous, no wall-clock
thresholds — while real runs use :class:`MonotonicClock` (``time.perf_counter_ns``, measurement rule 2).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Nanosecond monotonic time plus a way to wait for a point in it."""

    def now_ns(self) -> int: ...

    def sleep_until(self, t_ns: int) -> None: ...


#: below this much remaining time the real clock stops sleeping and yields instead: ``time.sleep`` on
#: Linux overshoots by 50-100 µs, which would make every send of a fast schedule late by that much
_SPIN_NS = 150_000


class MonotonicClock:
    """``time.perf_counter_ns`` with a sleep that wakes close to the target.

    It sleeps while more than :data:`_SPIN_NS` remain, then yields the CPU with ``sleep(0)`` until the
    target: precise to a few microseconds without burning a core between arrivals.
    """

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def sleep_until(self, t_ns: int) -> None:
        while True:
            remaining = t_ns - time.perf_counter_ns()
            if remaining <= 0:
                return
            if remaining > _SPIN_NS:
                time.sleep((remaining - _SPIN_NS) / 1e9)
            else:
                time.sleep(0)


class FakeClock:
    """A clock that only moves when told to: ``sleep_until`` jumps to the target, ``advance`` adds time.

    A fake system under test calls :meth:`advance` to "take" time (a stall, an inference), so a test can
    build any timeline exactly. Thread-safe, so a fake SUT may advance it from a worker thread.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._t = int(start_ns)
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._t

    def sleep_until(self, t_ns: int) -> None:
        with self._lock:
            if t_ns > self._t:
                self._t = int(t_ns)

    def advance(self, dt_ns: int) -> None:
        if dt_ns < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._t += int(dt_ns)
