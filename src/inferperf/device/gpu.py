"""NVIDIA GPUs through NVML: identity, SMs, clocks, memory system, power, MIG and MPS.

NVML (``pynvml``, from the ``nvidia-ml-py`` package, extra ``gpu``) is imported lazily and is *injectable*:
every query goes through the ``nvml`` object passed in, so the parsing and derivations here are tested with a
fake at exactly that boundary. With no pynvml or no driver the answer is an empty list plus a reason string
— never an exception and never an invented GPU.

NVML has no call for the SM count of a whole GPU (``nvmlDeviceGetAttributes`` answers for MIG devices
only), so it is derived from ``nvmlDeviceGetNumGpuCores`` divided by the cores per SM of the compute
capability, or else looked up by product name; ``sm_count_source`` says which. Memory bandwidth is derived
from the max memory clock and bus width: NVML reports the memory clock such that bytes/s =
2 × clock × bus_width / 8 for HBM2/HBM3 and GDDR6/6X alike (A100: 1215 MHz × 5120 bit → 1555 GB/s; T4:
5001 MHz × 256 bit → 320 GB/s; both match the data sheets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: FP32 CUDA cores per SM by compute capability (CUDA C Programming Guide, "Arithmetic Instructions").
CORES_PER_SM: dict[tuple[int, int], int] = {
    (3, 0): 192, (3, 5): 192, (3, 7): 192,
    (5, 0): 128, (5, 2): 128, (5, 3): 128,
    (6, 0): 64, (6, 1): 128, (6, 2): 128,
    (7, 0): 64, (7, 2): 64, (7, 5): 64,
    (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
    (9, 0): 128,
    (10, 0): 128, (10, 3): 128, (12, 0): 128, (12, 1): 128,
}  # fmt: skip

#: SM counts of common data-centre parts (NVIDIA data sheets / whitepapers), for drivers without
#: nvmlDeviceGetNumGpuCores. Matched as case-insensitive substrings of the NVML name, longest first.
SM_COUNT_BY_NAME: dict[str, int] = {
    "H100 PCIe": 114,
    "H100 NVL": 132,
    "H100": 132,
    "H200": 132,
    "H800": 132,
    "A100": 108,
    "A800": 108,
    "A30": 56,
    "A10G": 80,
    "A10": 72,
    "L40S": 142,
    "L40": 142,
    "L4": 58,
    "T4": 40,
    "V100": 80,
    "RTX 4090": 128,
    "RTX 3090": 82,
    "RTX A6000": 84,
}

DEFAULT_MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"

_NVML_CLOCK_SM = 1  # NVML_CLOCK_SM
_NVML_CLOCK_MEM = 2  # NVML_CLOCK_MEM


@dataclass
class MigDevice:
    """One MIG instance (a GPU instance + compute instance) of a MIG-enabled GPU."""

    index: int
    uuid: str | None
    name: str | None
    profile: str | None  # e.g. "1g.10gb"
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    sm_count: int | None = None
    memory_bytes: int | None = None
    visible: bool = True


@dataclass
class GpuInfo:
    """One physical GPU as NVML reports it, plus the figures derived from it."""

    index: int
    name: str
    uuid: str | None = None
    compute_capability: str | None = None
    sm_count: int | None = None
    sm_count_source: str | None = None
    cuda_cores: int | None = None
    max_sm_clock_mhz: int | None = None
    max_mem_clock_mhz: int | None = None
    memory_bus_width_bits: int | None = None
    memory_bytes: int | None = None
    #: derived: 2 × max memory clock × bus width / 8
    mem_bandwidth_gbs: float | None = None
    #: derived: CUDA cores × 2 flop (FMA) × max SM clock
    peak_fp32_tflops: float | None = None
    power_limit_w: float | None = None
    mig_enabled: bool | None = None
    mig_devices: list[MigDevice] = field(default_factory=list)
    pci_bus_id: str | None = None
    #: whether this process can use the GPU (CUDA_VISIBLE_DEVICES); NVML itself ignores that variable
    visible: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuInfo:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["mig_devices"] = [MigDevice(**m) for m in data.get("mig_devices", [])]
        return cls(**kwargs)

    def visible_mig_devices(self) -> list[MigDevice]:
        return [m for m in self.mig_devices if m.visible]


@dataclass
class MpsState:
    """CUDA MPS as this process sees it (NVML has no MPS query: environment and the control pipe)."""

    active: bool
    pipe_directory: str
    #: CUDA_MPS_ACTIVE_THREAD_PERCENTAGE / 100, the share of SMs a client may use; None when unlimited
    active_thread_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GpuReport:
    """All GPUs NVML lists, the driver versions, and — when the list is empty — why."""

    gpus: list[GpuInfo] = field(default_factory=list)
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    mps: MpsState | None = None
    reason: str | None = None

    def visible_gpus(self) -> list[GpuInfo]:
        return [g for g in self.gpus if g.visible]


# -- helpers ------------------------------------------------------------------------------------------


def load_nvml() -> tuple[Any | None, str | None]:
    """Import pynvml, or say why it cannot be used."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None, "pynvml is not installed (pip install nvidia-ml-py, extra 'gpu')"
    return pynvml, None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _try(fn: Callable[..., Any] | None, *args: Any) -> Any:
    """Call one NVML query; None when the function is absent from this pynvml or the device says no.

    NVML answers NOT_SUPPORTED for many queries on some parts (power on GeForce, clocks on MIG devices);
    one missing field must not lose the rest of the description.
    """
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:  # pynvml.NVMLError_* and AttributeError from older bindings
        return None


def _call(nvml: Any, name: str, *args: Any) -> Any:
    return _try(getattr(nvml, name, None), *args)


def format_cuda_version(value: int | None) -> str | None:
    """NVML's integer CUDA version (12040) → ``"12.4"``."""
    if value is None:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def sm_count_from_name(name: str) -> int | None:
    lowered = name.lower()
    for key in sorted(SM_COUNT_BY_NAME, key=len, reverse=True):
        if key.lower() in lowered:
            return SM_COUNT_BY_NAME[key]
    return None


def derived_bandwidth_gbs(mem_clock_mhz: int | None, bus_width_bits: int | None) -> float | None:
    if not mem_clock_mhz or not bus_width_bits:
        return None
    return 2.0 * mem_clock_mhz * 1e6 * bus_width_bits / 8 / 1e9


_PROFILE_RE = re.compile(r"(\d+g\.\d+gb(?:\+me)?)", re.I)


def _mig_profile(name: str | None, attrs: Any) -> str | None:
    if name:
        m = _PROFILE_RE.search(name)
        if m:
            return m.group(1).lower()
    slices = getattr(attrs, "gpuInstanceSliceCount", None)
    mem_mb = getattr(attrs, "memorySizeMB", None)
    if slices and mem_mb:
        # NVML rounds the profile's memory up to whole GB (4864 MB → "5gb")
        return f"{slices}g.{-(-mem_mb // 1024)}gb"
    return None


def mps_state(env: Mapping[str, str] | None = None) -> MpsState:
    env = os.environ if env is None else env
    pipe = env.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_MPS_PIPE_DIRECTORY
    active = (Path(pipe) / "control").exists()
    share = None
    pct = env.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")
    if pct:
        try:
            share = min(max(float(pct), 0.0), 100.0) / 100.0
        except ValueError:
            share = None
    return MpsState(active=active, pipe_directory=pipe, active_thread_share=share)


def _visible_spec(env: Mapping[str, str]) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list of tokens; None when unset (everything visible)."""
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    return [t.strip() for t in raw.split(",") if t.strip()]


def _apply_visibility(gpus: list[GpuInfo], spec: list[str] | None) -> None:
    if spec is None:
        return
    for gpu in gpus:
        gpu.visible = False
        for mig in gpu.mig_devices:
            mig.visible = False
    for token in spec:
        if token.startswith("MIG-"):
            for gpu in gpus:
                for mig in gpu.mig_devices:
                    if mig.uuid == token:
                        mig.visible = gpu.visible = True
        elif token.startswith("GPU-"):
            for gpu in gpus:
                if gpu.uuid == token or (gpu.uuid and gpu.uuid.startswith(token)):
                    gpu.visible = True
                    for mig in gpu.mig_devices:
                        mig.visible = True
        elif token.lstrip("-").isdigit():
            idx = int(token)
            if idx < 0:
                break  # CUDA stops at the first invalid ordinal
            if idx < len(gpus):
                gpus[idx].visible = True
                for mig in gpus[idx].mig_devices:
                    mig.visible = True


def visible_gpu_indices(nvml: Any, env: Mapping[str, str] | None = None) -> list[int]:
    """NVML indices of the physical GPUs this process can use (MIG UUIDs resolve to their parent GPU).

    NVML ignores CUDA_VISIBLE_DEVICES, so a meter that should count only this process's GPUs resolves it
    here. ``nvml`` must already be initialised.
    """
    env = os.environ if env is None else env
    count = int(nvml.nvmlDeviceGetCount())
    spec = _visible_spec(env)
    if spec is None:
        return list(range(count))
    gpus: list[GpuInfo] = []
    for index in range(count):
        handle = _call(nvml, "nvmlDeviceGetHandleByIndex", index)
        mig_mode = _call(nvml, "nvmlDeviceGetMigMode", handle) if handle is not None else None
        gpus.append(
            GpuInfo(
                index=index,
                name="",
                uuid=_text(_call(nvml, "nvmlDeviceGetUUID", handle)) if handle is not None else None,
                mig_devices=_describe_mig(nvml, handle) if mig_mode and mig_mode[0] else [],
            )
        )
    _apply_visibility(gpus, spec)
    return [g.index for g in gpus if g.visible]


# -- the query ----------------------------------------------------------------------------------------


def _describe_mig(nvml: Any, handle: Any) -> list[MigDevice]:
    count = _call(nvml, "nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    devices: list[MigDevice] = []
    for slot in range(int(count)):
        mig = _call(nvml, "nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
        if mig is None:
            continue  # an empty slot raises NVMLError_NotFound
        name = _text(_call(nvml, "nvmlDeviceGetName", mig))
        attrs = _call(nvml, "nvmlDeviceGetAttributes", mig)
        mem = _call(nvml, "nvmlDeviceGetMemoryInfo", mig)
        mem_bytes = getattr(mem, "total", None)
        if mem_bytes is None and getattr(attrs, "memorySizeMB", None):
            mem_bytes = int(attrs.memorySizeMB) * 2**20
        devices.append(
            MigDevice(
                index=slot,
                uuid=_text(_call(nvml, "nvmlDeviceGetUUID", mig)),
                name=name,
                profile=_mig_profile(name, attrs),
                gpu_instance_id=_call(nvml, "nvmlDeviceGetGpuInstanceId", mig),
                compute_instance_id=_call(nvml, "nvmlDeviceGetComputeInstanceId", mig),
                sm_count=getattr(attrs, "multiprocessorCount", None),
                memory_bytes=mem_bytes,
            )
        )
    return devices


def _describe_gpu(nvml: Any, index: int, handle: Any) -> GpuInfo:
    name = _text(_call(nvml, "nvmlDeviceGetName", handle)) or f"GPU {index}"
    cc = _call(nvml, "nvmlDeviceGetCudaComputeCapability", handle)
    cc_tuple = (int(cc[0]), int(cc[1])) if cc else None

    cores = _call(nvml, "nvmlDeviceGetNumGpuCores", handle)
    sm_count = None
    sm_source = None
    if cores and cc_tuple in CORES_PER_SM:
        sm_count, sm_source = int(cores) // CORES_PER_SM[cc_tuple], "nvml cores / cores-per-SM"
    if sm_count is None:
        sm_count = sm_count_from_name(name)
        sm_source = "name table" if sm_count is not None else None
    if not cores and sm_count is not None and cc_tuple in CORES_PER_SM:
        cores = sm_count * CORES_PER_SM[cc_tuple]

    clock_sm = getattr(nvml, "NVML_CLOCK_SM", _NVML_CLOCK_SM)
    clock_mem = getattr(nvml, "NVML_CLOCK_MEM", _NVML_CLOCK_MEM)
    sm_clock = _call(nvml, "nvmlDeviceGetMaxClockInfo", handle, clock_sm)
    mem_clock = _call(nvml, "nvmlDeviceGetMaxClockInfo", handle, clock_mem)
    bus = _call(nvml, "nvmlDeviceGetMemoryBusWidth", handle)
    mem = _call(nvml, "nvmlDeviceGetMemoryInfo", handle)
    limit_mw = _call(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    if limit_mw is None:
        limit_mw = _call(nvml, "nvmlDeviceGetPowerManagementLimit", handle)
    mig_mode = _call(nvml, "nvmlDeviceGetMigMode", handle)
    mig_enabled = None if mig_mode is None else bool(mig_mode[0])
    pci = _call(nvml, "nvmlDeviceGetPciInfo", handle)

    peak = None
    if cores and sm_clock:
        peak = int(cores) * 2.0 * int(sm_clock) * 1e6 / 1e12
    return GpuInfo(
        index=index,
        name=name,
        uuid=_text(_call(nvml, "nvmlDeviceGetUUID", handle)),
        compute_capability=f"{cc_tuple[0]}.{cc_tuple[1]}" if cc_tuple else None,
        sm_count=sm_count,
        sm_count_source=sm_source,
        cuda_cores=int(cores) if cores else None,
        max_sm_clock_mhz=int(sm_clock) if sm_clock else None,
        max_mem_clock_mhz=int(mem_clock) if mem_clock else None,
        memory_bus_width_bits=int(bus) if bus else None,
        memory_bytes=getattr(mem, "total", None),
        mem_bandwidth_gbs=derived_bandwidth_gbs(mem_clock, bus),
        peak_fp32_tflops=peak,
        power_limit_w=limit_mw / 1000.0 if limit_mw else None,
        mig_enabled=mig_enabled,
        mig_devices=_describe_mig(nvml, handle) if mig_enabled else [],
        pci_bus_id=_text(getattr(pci, "busId", None)) if pci is not None else None,
    )


def query_gpus(nvml: Any | None = None, env: Mapping[str, str] | None = None) -> GpuReport:
    """Describe every GPU NVML lists; ``nvml`` defaults to the real pynvml when it is installed."""
    env = os.environ if env is None else env
    mps = mps_state(env)
    if nvml is None:
        nvml, reason = load_nvml()
        if nvml is None:
            return GpuReport(mps=mps, reason=reason)
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded on machines without a GPU
        return GpuReport(mps=mps, reason=f"NVML could not start: {exc}")
    try:
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            return GpuReport(mps=mps, reason=f"NVML could not count GPUs: {exc}")
        gpus: list[GpuInfo] = []
        problems: list[str] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except Exception as exc:  # e.g. NVMLError_NoPermission, GPU fallen off the bus
                problems.append(f"GPU {index} unreadable: {exc}")
                continue
            gpus.append(_describe_gpu(nvml, index, handle))
        _apply_visibility(gpus, _visible_spec(env))
        report = GpuReport(
            gpus=gpus,
            driver_version=_text(_call(nvml, "nvmlSystemGetDriverVersion")),
            cuda_driver_version=format_cuda_version(_call(nvml, "nvmlSystemGetCudaDriverVersion")),
            nvml_version=_text(_call(nvml, "nvmlSystemGetNVMLVersion")),
            mps=mps,
        )
        if not gpus:
            problems.insert(0, "NVML lists no usable GPU")
        elif not report.visible_gpus():
            problems.insert(0, "CUDA_VISIBLE_DEVICES hides every GPU")
        report.reason = "; ".join(problems) or None
        return report
    finally:
        _try(getattr(nvml, "nvmlShutdown", None))
