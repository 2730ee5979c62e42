"""Background CPU load: other processes' CPU use measured from /proc/stat, and waiting for a quiet machine."""

from __future__ import annotations

import os

import pytest

import inferperf.measure.background as background
from inferperf.measure.background import BackgroundLoad, wait_for_quiet


def _write_stat(path, busy_ticks: int, idle_ticks: int) -> None:
    # user nice system idle iowait irq softirq steal
    path.write_text(f"cpu  {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\\ncpu0 0 0 0 0 0 0 0 0\\n")


def test_other_processes_cpu_is_what_the_machine_used_minus_ours(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    ticks = os.sysconf("SC_CLK_TCK")
    _write_stat(stat, 1000, 5000)
    clock = iter([10.0, 12.0])  # 2 s of wall time
    own = iter([1.0, 1.5])  # this process used 0.5 s of CPU
    monkeypatch.setattr(background.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(background.time, "process_time", lambda: next(own))
    meter = BackgroundLoad(str(stat)).start()
    _write_stat(stat, 1000 + 3 * ticks, 5000)  # the machine was busy 3 s in all
    assert meter.stop() == pytest.approx((3.0 - 0.5) / 2.0)


def test_unreadable_stat_gives_none(tmp_path):
    meter = BackgroundLoad(str(tmp_path / "missing")).start()
    assert meter.stop() is None
    assert wait_for_quiet(0.1, window_s=0.0, stat_path=str(tmp_path / "missing")) < 0.5  # returns at once


def test_the_real_proc_stat_reads_a_plausible_load():
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat on this OS")
    meter = BackgroundLoad().start()
    sum(i * i for i in range(200_000))  # our own work is not background
    load = meter.stop()
    assert load is not None and 0.0 <= load <= os.cpu_count() + 0.5


def test_wait_for_quiet_waits_while_busy_and_gives_up_at_the_timeout(monkeypatch):
    loads = iter([1.8, 1.2, 0.1])
    seen = []

    class Meter:
        def __init__(self, *a):
            pass

        def start(self):
            return self

        def stop(self):
            return next(loads)

    monkeypatch.setattr(background, "BackgroundLoad", Meter)
    assert wait_for_quiet(0.3, window_s=0.0, on_wait=seen.append) >= 0.0
    assert seen == [1.8, 1.2]

    monkeypatch.setattr(background, "BackgroundLoad", lambda *a: type("M", (), {
        "start": lambda self: self, "stop": lambda self: 2.0})())
    seen.clear()
    wait_for_quiet(0.3, window_s=0.001, timeout_s=0.0, on_wait=seen.append)
    assert seen == [2.0]  # gave up after the first busy window instead of waiting forever
