"""Energy of a measured region: hardware counters when readable, otherwise a labelled estimate.

Sources, in order of preference:

1. **RAPL** through the powercap sysfs tree (``/sys/class/powercap/intel-rapl:N/energy_uj``; AMD Zen
   exposes the same ``intel-rapl`` naming through the ``rapl`` driver, and ``amd-rapl:N`` is accepted
   too). Only the top-level *package* zones are summed — sub-zones (core, uncore, dram) are parts of a
   package and ``psys`` covers the whole platform, so adding them would count energy twice. The counters
   wrap at ``max_energy_range_uj`` (every ~15–60 min at server power); a wrap between two reads is undone
   with that range, and a background poll (``poll_interval_s``) keeps reads frequent enough that at most
   one wrap can happen between them. Since Linux 5.10 ``energy_uj`` is readable by root only; a
   permission error makes RAPL *not readable*, never zero.
2. **NVML** ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer) for each GPU
   this process can see. RAPL and NVML measure disjoint hardware (CPU packages, GPU boards), so when both
   are readable their energies add up and ``source`` is ``"rapl+nvml"``.
3. Otherwise an **estimate**: this process's CPU time × a per-core power from :data:`CPU_POWER_MODEL`
   (vendor TDP ÷ core count of a representative SKU), ``source="estimate"``. It is always labelled so.

For hardware counters the idle (background) power is measured once per process over ``idle_seconds``
and subtracted: ``joules`` is the *dynamic* energy of the region, ``detail["total_joules"]`` keeps the raw
counter energy. On a shared machine "idle" means "without our workload", which is what the subtraction
should remove.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferperf.device.cpu import CpuInfo, read_cpu_info

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")

#: Watts per busy core: vendor TDP ÷ cores of a representative SKU of each family (vendor spec sheets).
#: Keyed by (vendor, family, model range); TDP/cores is the average share of a fully loaded socket,
#: uncore included, so it is an estimate of the order of magnitude, not a measurement.
CPU_POWER_MODEL: tuple[tuple[str, int | None, range | None, float, str], ...] = (
    ("AMD", 0x17, None, 225 / 64, "AMD EPYC 7742 (Zen 2): 225 W TDP / 64 cores"),
    ("AMD", 0x19, range(0x00, 0x10), 280 / 64, "AMD EPYC 7763 (Zen 3): 280 W TDP / 64 cores"),
    ("AMD", 0x19, None, 360 / 96, "AMD EPYC 9654 (Zen 4): 360 W TDP / 96 cores"),
    ("AMD", 0x1A, None, 500 / 128, "AMD EPYC 9755 (Zen 5): 500 W TDP / 128 cores"),
    ("Intel", 6, range(0x55, 0x56), 205 / 28, "Intel Xeon Platinum 8280 (Cascade Lake): 205 W TDP / 28 cores"),
    ("Intel", 6, range(0x6A, 0x6B), 270 / 40, "Intel Xeon Platinum 8380 (Ice Lake-SP): 270 W TDP / 40 cores"),
    ("Intel", 6, range(0x8F, 0x90), 350 / 56, "Intel Xeon Platinum 8480+ (Sapphire Rapids): 350 W / 56 cores"),
    ("Intel", 6, range(0xCF, 0xD0), 350 / 64, "Intel Xeon Platinum 8592+ (Emerald Rapids): 350 W / 64 cores"),
    ("Intel", 6, range(0xAD, 0xAE), 500 / 128, "Intel Xeon 6980P (Granite Rapids): 500 W TDP / 128 cores"),
    ("ARM", None, range(0xD0C, 0xD0D), 210 / 80, "Ampere Altra Q80-30 (Neoverse N1): 210 W TDP / 80 cores"),
)

#: Used when no table row matches: a round figure for one server core at all-core turbo with its share of
#: the uncore (the TDP/core ratios above span 2.6–7.3 W; rounding up keeps an unknown part conservative).
DEFAULT_WATTS_PER_CORE = 10.0


def cpu_power_per_core(cpu: CpuInfo | None) -> tuple[float, str]:
    """(watts per busy core, where that number comes from) for the estimate."""
    if cpu is not None:
        for vendor, family, models, watts, source in CPU_POWER_MODEL:
            if cpu.vendor != vendor:
                continue
            if family is not None and cpu.family != family:
                continue
            if models is not None and (cpu.model is None or cpu.model not in models):
                continue
            return watts, f"{source} = {watts:.2f} W per busy core"
    return DEFAULT_WATTS_PER_CORE, f"default {DEFAULT_WATTS_PER_CORE:.0f} W per busy core (no table entry)"


def process_cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children, all threads included."""
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


@dataclass
class EnergyReading:
    """Energy of one measured region; ``source`` says how it was obtained ("estimate" when no counter)."""

    joules: float | None
    source: str
    power_w: float | None
    idle_power_w: float | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def is_estimate(self) -> bool:
        return self.source == "estimate"

    def to_dict(self) -> dict[str, Any]:
        return {
            "joules": self.joules,
            "source": self.source,
            "power_w": self.power_w,
            "idle_power_w": self.idle_power_w,
            "detail": self.detail,
        }


# -- counters -----------------------------------------------------------------------------------------


class _Counter:
    """One monotonically increasing energy counter in µJ, accumulated across wrap-arounds."""

    def __init__(self, key: str, source: str, read_uj: Callable[[], int], max_range_uj: int | None) -> None:
        self.key = key
        self.source = source
        self.read_uj = read_uj
        self.max_range_uj = max_range_uj
        self.last: int | None = None
        self.accumulated = 0
        self.wraps = 0
        self.resets = 0

    def begin(self) -> None:
        self.last = self.read_uj()
        self.accumulated = 0
        self.wraps = 0
        self.resets = 0

    def update(self) -> None:
        raw = self.read_uj()
        assert self.last is not None, "begin() first"
        delta = raw - self.last
        if delta < 0:
            if self.max_range_uj:
                delta += self.max_range_uj
                self.wraps += 1
            else:  # a counter without a range went backwards: the driver was reloaded
                delta = raw
                self.resets += 1
        self.accumulated += delta
        self.last = raw


def _read_int_file(path: Path) -> int:
    return int(path.read_text().strip())


_RAPL_ZONE = re.compile(r"(intel|amd)-rapl:\d+")


def find_rapl_counters(root: Path | str = DEFAULT_POWERCAP_ROOT) -> tuple[list[_Counter], list[str]]:
    """Readable RAPL package counters under ``root``, and why others were left out."""
    root = Path(root)
    counters: list[_Counter] = []
    problems: list[str] = []
    try:
        zones = sorted(p for p in root.iterdir() if _RAPL_ZONE.fullmatch(p.name))
    except OSError:
        return [], [f"no powercap tree at {root}"]
    if not zones:
        problems.append(f"no RAPL zones under {root}")
    for zone in zones:
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            name = zone.name
        if name.startswith("psys"):
            continue  # platform-wide; would double count the packages
        energy = zone / "energy_uj"
        try:
            _read_int_file(energy)
        except PermissionError:
            problems.append(f"{energy}: permission denied (root only since Linux 5.10)")
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"{energy}: unreadable ({exc})")
            continue
        try:
            max_range: int | None = _read_int_file(zone / "max_energy_range_uj")
        except (OSError, ValueError):
            max_range = None
        counters.append(
            _Counter(f"rapl:{zone}:{name}", "rapl", lambda p=energy: _read_int_file(p), max_range)
        )
    return counters, problems


def find_nvml_counters(nvml: Any, env: dict[str, str] | None = None) -> tuple[list[_Counter], list[str]]:
    """Energy counters of the GPUs this process can see; ``nvml`` must be initialised."""
    from inferperf.device.gpu import visible_gpu_indices

    counters: list[_Counter] = []
    problems: list[str] = []
    try:
        indices = visible_gpu_indices(nvml, env)
    except Exception as exc:
        return [], [f"NVML cannot list GPUs: {exc}"]
    for index in indices:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as exc:  # NVMLError_NotSupported before Volta
            problems.append(f"GPU {index}: no energy counter ({exc})")
            continue

        def read(h: Any = handle) -> int:
            return int(nvml.nvmlDeviceGetTotalEnergyConsumption(h)) * 1000  # mJ → µJ

        uuid = None
        with contextlib.suppress(Exception):
            uuid = nvml.nvmlDeviceGetUUID(handle)
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        counters.append(_Counter(f"nvml:{uuid or index}", "nvml", read, None))
    return counters, problems


#: idle (background) power per counter key, measured once per process
_IDLE_POWER_W: dict[str, float] = {}
_IDLE_LOCK = threading.Lock()


def clear_idle_cache() -> None:
    with _IDLE_LOCK:
        _IDLE_POWER_W.clear()


# -- the meter ----------------------------------------------------------------------------------------


class EnergyMeter:
    """Measures the energy between :meth:`start` and :meth:`stop` (also usable as a context manager).

    Everything touching the machine is injectable: ``powercap_root`` (a fake sysfs tree), ``nvml`` (a fake
    NVML module; None loads pynvml when installed, False disables NVML), the clock, the CPU-time source
    and ``sleep`` (used for the idle window).
    """

    def __init__(
        self,
        powercap_root: Path | str = DEFAULT_POWERCAP_ROOT,
        nvml: Any | None = None,
        use_rapl: bool = True,
        use_nvml: bool = True,
        idle_power_w: float | None = None,
        measure_idle: bool = True,
        idle_seconds: float = 0.5,
        cpu_info: CpuInfo | None = None,
        watts_per_core: float | None = None,
        poll_interval_s: float | None = 30.0,
        clock: Callable[[], int] = time.perf_counter_ns,
        cpu_time: Callable[[], float] = process_cpu_seconds,
        sleep: Callable[[float], None] = time.sleep,
        env: dict[str, str] | None = None,
    ) -> None:
        self.powercap_root = Path(powercap_root)
        self._nvml_arg = nvml
        self.use_rapl = use_rapl
        self.use_nvml = use_nvml and nvml is not False
        self.idle_power_override = idle_power_w
        self.measure_idle = measure_idle
        self.idle_seconds = idle_seconds
        self._cpu_info = cpu_info
        self.watts_per_core = watts_per_core
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.cpu_time = cpu_time
        self.sleep = sleep
        self.env = env
        self.counters: list[_Counter] = []
        self.problems: list[str] = []
        self.reading: EnergyReading | None = None
        self._nvml: Any | None = None
        self._lock = threading.Lock()
        self._stop_poll = threading.Event()
        self._poller: threading.Thread | None = None
        self._idle: dict[str, float] = {}
        self._t0 = 0
        self._cpu0 = 0.0
        self._started = False

    # -- discovery ----------------------------------------------------------------------------------

    def _discover(self) -> None:
        self.counters, self.problems = [], []
        if self.use_rapl:
            found, problems = find_rapl_counters(self.powercap_root)
            self.counters += found
            self.problems += problems
        if self.use_nvml:
            nvml = self._nvml_arg
            if nvml is None:
                from inferperf.device.gpu import load_nvml

                nvml, reason = load_nvml()
                if nvml is None:
                    self.problems.append(f"NVML: {reason}")
            if nvml is not None:
                try:
                    nvml.nvmlInit()
                except Exception as exc:
                    self.problems.append(f"NVML could not start: {exc}")
                else:
                    self._nvml = nvml
                    found, problems = find_nvml_counters(nvml, self.env)
                    self.counters += found
                    self.problems += problems

    def _idle_powers(self) -> dict[str, float]:
        """Idle watts per counter, measured over one quiet window the first time a key is seen."""
        with _IDLE_LOCK:
            missing = [c for c in self.counters if c.key not in _IDLE_POWER_W]
            if missing and self.measure_idle:
                for c in missing:
                    c.begin()
                t0 = self.clock()
                self.sleep(self.idle_seconds)
                for c in missing:
                    c.update()
                seconds = (self.clock() - t0) / 1e9
                if seconds > 0:
                    for c in missing:
                        _IDLE_POWER_W[c.key] = c.accumulated / 1e6 / seconds
            return {c.key: _IDLE_POWER_W[c.key] for c in self.counters if c.key in _IDLE_POWER_W}

    # -- measurement --------------------------------------------------------------------------------

    def start(self) -> EnergyMeter:
        if self._started:
            raise RuntimeError("EnergyMeter already started")
        self._discover()
        self._idle = (
            {} if self.idle_power_override is not None or not self.counters else self._idle_powers()
        )
        for c in self.counters:
            c.begin()
        self._cpu0 = self.cpu_time()
        self._t0 = self.clock()
        self._started = True
        if self.poll_interval_s and any(c.max_range_uj for c in self.counters):
            self._stop_poll.clear()
            self._poller = threading.Thread(target=self._poll, name="energy-poll", daemon=True)
            self._poller.start()
        return self

    def _poll(self) -> None:
        assert self.poll_interval_s
        while not self._stop_poll.wait(self.poll_interval_s):
            self.sample()

    def sample(self) -> None:
        """Read every counter now, so long regions see at most one wrap between reads."""
        with self._lock:
            for c in self.counters:
                c.update()

    def stop(self) -> EnergyReading:
        if not self._started:
            raise RuntimeError("EnergyMeter.stop() without start()")
        try:
            if self._poller is not None:
                self._stop_poll.set()
                self._poller.join()
                self._poller = None
            self.sample()
            elapsed = (self.clock() - self._t0) / 1e9
            cpu_seconds = self.cpu_time() - self._cpu0
        finally:
            self._started = False
            if self._nvml is not None:
                with contextlib.suppress(Exception):  # best effort; the reading is already taken
                    self._nvml.nvmlShutdown()
                self._nvml = None
        self.reading = self._reading(elapsed, cpu_seconds)
        return self.reading

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.stop()

    def _estimate(self, cpu_seconds: float) -> tuple[float, float, str]:
        if self.watts_per_core is not None:
            watts, model = self.watts_per_core, f"{self.watts_per_core} W per busy core (given by caller)"
        else:
            if self._cpu_info is None:
                self._cpu_info = read_cpu_info()
            watts, model = cpu_power_per_core(self._cpu_info)
        return cpu_seconds * watts, watts, model

    def _reading(self, elapsed: float, cpu_seconds: float) -> EnergyReading:
        est_j, watts, model = self._estimate(cpu_seconds)
        detail: dict[str, Any] = {
            "elapsed_s": elapsed,
            "cpu_seconds": cpu_seconds,
            "cpu_estimate_joules": est_j,
            "power_model": model,
        }
        if self.problems:
            detail["unavailable"] = list(self.problems)
        if not self.counters:
            return EnergyReading(
                joules=est_j,
                source="estimate",
                power_w=est_j / elapsed if elapsed > 0 else None,
                idle_power_w=None,
                detail={**detail, "watts_per_core": watts},
            )

        per_counter: dict[str, dict[str, Any]] = {}
        total_j = 0.0
        for c in self.counters:
            joules = c.accumulated / 1e6
            total_j += joules
            per_counter[c.key] = {"joules": joules, "wraps": c.wraps, "resets": c.resets,
                                  "idle_power_w": self._idle.get(c.key)}
        if self.idle_power_override is not None:
            idle_w: float | None = float(self.idle_power_override)
            idle_origin = "given by caller"
        elif self._idle and len(self._idle) == len(self.counters):
            idle_w = sum(self._idle.values())
            idle_origin = f"measured over {self.idle_seconds} s, cached for this process"
        else:
            idle_w, idle_origin = None, "not measured"
        sources = sorted({c.source for c in self.counters}, key=["rapl", "nvml"].index)
        detail["counters"] = per_counter
        detail["total_joules"] = total_j
        detail["total_power_w"] = total_j / elapsed if elapsed > 0 else None
        detail["idle_origin"] = idle_origin
        if idle_w is None:
            joules = total_j
            detail["energy_kind"] = "total (idle not subtracted)"
        else:
            dynamic = total_j - idle_w * elapsed
            detail["dynamic_joules_unclamped"] = dynamic
            detail["energy_kind"] = "dynamic (idle subtracted)"
            if dynamic < 0:
                # below the idle baseline: noise or a quieter machine than during the idle window
                detail["below_idle"] = True
            joules = max(dynamic, 0.0)
        return EnergyReading(
            joules=joules,
            source="+".join(sources),
            power_w=joules / elapsed if elapsed > 0 else None,
            idle_power_w=idle_w,
            detail=detail,
        )
