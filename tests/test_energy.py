"""Energy meter: fake powercap trees (packages, sub-zones, psys, wrap-around, permissions), fake NVML energy,
idle subtraction, and the labelled CPU-time estimate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from inferperf.device.cpu import CpuInfo
from inferperf.measure import energy
from inferperf.measure.energy import (
    DEFAULT_WATTS_PER_CORE,
    EnergyMeter,
    clear_idle_cache,
    cpu_power_per_core,
    find_rapl_counters,
)
from tests.test_device import FakeNvml, h100

MAX_RANGE = 262_143_328_850  # a real Intel package max_energy_range_uj


@pytest.fixture(autouse=True)
def _fresh_idle_cache() -> Any:
    clear_idle_cache()
    yield
    clear_idle_cache()


def _zone(path: Path, name: str, energy_uj: int, max_range: int = MAX_RANGE) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


def make_powercap(root: Path, prefix: str = "intel-rapl") -> dict[str, Path]:
    """Two packages (one with core + dram sub-zones) and a psys zone, as on a 2-socket Intel server."""
    (root / prefix).mkdir(parents=True)  # the control-type directory, not a zone
    zones = {
        "pkg0": _zone(root / f"{prefix}:0", "package-0", 1_000_000),
        "pkg1": _zone(root / f"{prefix}:1", "package-1", 5_000_000),
        "core0": _zone(root / f"{prefix}:0:0", "core", 100),
        "dram0": _zone(root / f"{prefix}:0:1", "dram", 100),
        "psys": _zone(root / f"{prefix}:2", "psys", 100),
    }
    return zones


def _set(zone: Path, value: int) -> None:
    (zone / "energy_uj").write_text(f"{value}\n")


def _add(zone: Path, delta_uj: int) -> None:
    _set(zone, int((zone / "energy_uj").read_text()) + delta_uj)


class FakeClock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


def _meter(root: Path, clock: FakeClock, **kw: Any) -> EnergyMeter:
    kw.setdefault("nvml", False)
    kw.setdefault("poll_interval_s", None)
    kw.setdefault("cpu_time", lambda: 0.0)
    kw.setdefault("cpu_info", CpuInfo(model_name="test", vendor="test", arch="x86_64"))
    return EnergyMeter(powercap_root=root, clock=clock, **kw)


def test_only_package_zones_are_counted(tmp_path: Path) -> None:
    zones = make_powercap(tmp_path)
    counters, problems = find_rapl_counters(tmp_path)
    assert sorted(c.key.rsplit(":", 1)[1] for c in counters) == ["package-0", "package-1"]
    assert problems == []
    clock = FakeClock()
    meter = _meter(tmp_path, clock, idle_power_w=0.0)
    meter.start()
    _add(zones["pkg0"], 3_000_000)
    _add(zones["pkg1"], 2_000_000)
    _add(zones["core0"], 1_000_000)  # part of package-0: must not be added again
    _add(zones["psys"], 9_000_000)  # whole platform: must not be added
    clock.advance(2.0)
    reading = meter.stop()
    assert reading.source == "rapl"
    assert reading.joules == pytest.approx(5.0)
    assert reading.power_w == pytest.approx(2.5)
    assert reading.detail["total_joules"] == pytest.approx(5.0)
    assert not reading.is_estimate


def test_amd_rapl_naming(tmp_path: Path) -> None:
    zones = make_powercap(tmp_path, prefix="amd-rapl")
    clock = FakeClock()
    meter = _meter(tmp_path, clock, idle_power_w=0.0)
    meter.start()
    _add(zones["pkg1"], 7_000_000)
    clock.advance(1.0)
    assert meter.stop().joules == pytest.approx(7.0)


def test_wrap_around(tmp_path: Path) -> None:
    zones = make_powercap(tmp_path)
    _set(zones["pkg0"], MAX_RANGE - 1_000_000)  # 1 J before the wrap
    clock = FakeClock()
    meter = _meter(tmp_path, clock, idle_power_w=0.0)
    meter.start()
    _set(zones["pkg0"], 4_000_000)  # wrapped, then 4 J more
    clock.advance(1.0)
    meter.sample()
    # two more wraps, each seen by a sample (the background poll does this on long runs)
    _set(zones["pkg0"], MAX_RANGE - 500_000)
    meter.sample()
    _set(zones["pkg0"], 500_000)
    clock.advance(1.0)
    reading = meter.stop()
    expected_uj = 5_000_000 + (MAX_RANGE - 500_000 - 4_000_000) + 1_000_000
    assert reading.joules == pytest.approx(expected_uj / 1e6)
    (pkg0,) = [v for k, v in reading.detail["counters"].items() if "package-0" in k]
    assert pkg0["wraps"] == 2


def test_idle_power_subtracted_and_cached(tmp_path: Path) -> None:
    zones = make_powercap(tmp_path)
    clock = FakeClock()
    idle_windows: list[float] = []

    def idle_sleep(seconds: float) -> None:
        # the machine draws 10 W on package-0 and 4 W on package-1 while we sleep
        idle_windows.append(seconds)
        clock.advance(seconds)
        _add(zones["pkg0"], int(10 * seconds * 1e6))
        _add(zones["pkg1"], int(4 * seconds * 1e6))

    meter = _meter(tmp_path, clock, sleep=idle_sleep, idle_seconds=0.5)
    meter.start()
    clock.advance(2.0)
    _add(zones["pkg0"], 50_000_000)  # 25 W for 2 s
    _add(zones["pkg1"], 8_000_000)  # 4 W for 2 s: idle only
    reading = meter.stop()
    assert reading.idle_power_w == pytest.approx(14.0)
    assert reading.detail["total_joules"] == pytest.approx(58.0)
    assert reading.joules == pytest.approx(58.0 - 14.0 * 2.0)
    assert reading.detail["energy_kind"].startswith("dynamic")

    # a second meter reuses the idle figure: no second idle window
    again = _meter(tmp_path, clock, sleep=idle_sleep)
    again.start()
    clock.advance(1.0)
    _add(zones["pkg0"], 10_000_000)
    reading2 = again.stop()
    assert idle_windows == [0.5]
    assert reading2.idle_power_w == pytest.approx(14.0)
    # below the idle baseline: clamped at zero, flagged, and the signed value kept
    assert reading2.joules == 0.0 and reading2.detail["below_idle"] is True
    assert reading2.detail["dynamic_joules_unclamped"] == pytest.approx(10.0 - 14.0)


def test_unreadable_rapl_falls_back_to_labelled_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_powercap(tmp_path)
    real_read = energy._read_int_file

    def guarded(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(energy, "_read_int_file", guarded)
    cpu_seconds = iter([10.0, 12.0])
    clock = FakeClock()
    amd_zen4 = CpuInfo(model_name="AMD EPYC 9654", vendor="AMD", arch="x86_64", family=0x19, model=0x11)
    meter = _meter(tmp_path, clock, cpu_time=lambda: next(cpu_seconds), cpu_info=amd_zen4)
    meter.start()
    clock.advance(4.0)
    reading = meter.stop()
    assert reading.source == "estimate" and reading.is_estimate
    assert reading.joules == pytest.approx(2.0 * 360 / 96)
    assert reading.power_w == pytest.approx(2.0 * 360 / 96 / 4.0)
    assert reading.idle_power_w is None
    assert "EPYC 9654" in reading.detail["power_model"]
    assert any("permission denied" in p for p in reading.detail["unavailable"])


def test_power_model_table_and_default() -> None:
    watts, source = cpu_power_per_core(CpuInfo(model_name="x", vendor="Intel", arch="x86_64", family=6,
                                               model=0x8F))
    assert watts == pytest.approx(350 / 56) and "Sapphire Rapids" in source
    watts, source = cpu_power_per_core(CpuInfo(model_name="x", vendor="AMD", arch="x86_64", family=0x19,
                                               model=0x01))
    assert watts == pytest.approx(280 / 64)
    watts, source = cpu_power_per_core(CpuInfo(model_name="x", vendor="Hygon", arch="x86_64"))
    assert watts == DEFAULT_WATTS_PER_CORE and "default" in source


def test_nvml_energy_of_visible_gpus_adds_to_rapl(tmp_path: Path) -> None:
    zones = make_powercap(tmp_path)
    gpus = [h100(), h100()]
    gpus[1].uuid = "GPU-h100-1"
    gpus[0].energy_mj, gpus[1].energy_mj = 1_000, 2_000
    nvml = FakeNvml(gpus)
    clock = FakeClock()
    meter = _meter(tmp_path, clock, nvml=nvml, idle_power_w=0.0, env={"CUDA_VISIBLE_DEVICES": "1"})
    meter.start()
    gpus[0].energy_mj += 999_000  # not visible to this process
    gpus[1].energy_mj += 300_000  # 300 J
    _add(zones["pkg0"], 20_000_000)
    clock.advance(1.0)
    reading = meter.stop()
    assert reading.source == "rapl+nvml"
    assert reading.joules == pytest.approx(320.0)
    assert reading.detail["counters"]["nvml:GPU-h100-1"]["joules"] == pytest.approx(300.0)
    assert nvml.initialised == 0


def test_nvml_only(tmp_path: Path) -> None:
    gpu = h100()
    nvml = FakeNvml([gpu])
    clock = FakeClock()
    meter = _meter(tmp_path / "none", clock, nvml=nvml, idle_power_w=50.0, env={})
    meter.start()
    gpu.energy_mj += 250_000
    clock.advance(2.0)
    reading = meter.stop()
    assert reading.source == "nvml"
    assert reading.joules == pytest.approx(250.0 - 100.0)
    assert reading.idle_power_w == 50.0
    assert "cpu_estimate_joules" in reading.detail  # the host CPU side, for reference only


def test_context_manager_on_this_machine() -> None:
    with EnergyMeter(idle_seconds=0.1, poll_interval_s=None) as meter:
        sum(i * i for i in range(200_000))
    reading = meter.reading
    assert reading is not None
    assert reading.source in {"rapl", "nvml", "rapl+nvml", "estimate"}
    assert reading.joules is not None and reading.joules >= 0
    if reading.source == "estimate":
        assert reading.is_estimate and reading.joules > 0  # CPU time was spent: never a silent zero
        assert reading.detail["power_model"]


def test_stop_without_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        _meter(tmp_path, FakeClock()).stop()


def test_background_poll_runs_and_stops(tmp_path: Path) -> None:
    zones = make_powercap(tmp_path)
    clock = FakeClock()
    meter = _meter(tmp_path, clock, idle_power_w=0.0, poll_interval_s=0.001)
    meter.start()
    assert meter._poller is not None and meter._poller.is_alive()
    _add(zones["pkg0"], 2_000_000)
    deadline = time.monotonic() + 5.0
    # the poller has consumed the increment once package-0's accumulated energy shows it
    while time.monotonic() < deadline and not any(c.accumulated for c in meter.counters):
        time.sleep(0.002)
    assert any(c.accumulated == 2_000_000 for c in meter.counters)
    clock.advance(1.0)
    reading = meter.stop()
    assert meter._poller is None
    assert reading.joules == pytest.approx(2.0)  # polled reads are not double counted
