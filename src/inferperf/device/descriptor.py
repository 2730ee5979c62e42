"""The device descriptor stored with every result, its stable id, and its numeric features.

The **fingerprint** names the *hardware*, not the moment: it hashes the CPU identity (model, family/model/
stepping, sockets, cores, cache sizes, memory rounded to GiB, tracked ISA flags) and, for GPU devices, the
uuid-free identity of each visible GPU (name, compute capability, memory, SM count, visible MIG profiles).
Threads used, affinity, clock readings, load and the ceilings are left out, so the same machine gets the
same id on every run and after a reboot, and results measured with different thread counts still group
under one device. Clock limits are left out too: boost toggles and cpufreq drivers change them on the same
silicon.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferperf.device.ceilings import Ceilings, cached_ceilings
from inferperf.device.ceilings import measure_ceilings as measure_ceilings_now
from inferperf.device.cpu import CpuInfo, read_cpu_info
from inferperf.device.gpu import GpuInfo, GpuReport, MpsState, query_gpus
from inferperf.errors import ConfigError, InferperfError

KINDS = ("cpu", "gpu")


class DeviceError(InferperfError):
    """The requested device kind is not present on this machine."""


#: ISA flags exposed as 0/1 predictor features (x86 vector/matrix units, ARM NEON/SVE).
FEATURE_ISA = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
               "amx_int8", "neon", "sve")

#: Order of :meth:`DeviceDescriptor.feature_vector`. Sizes are log2 so a predictor sees ratios, not bytes.
DEVICE_FEATURE_NAMES: tuple[str, ...] = (
    "is_gpu",
    "cpu_physical_cores",
    "cpu_logical_cpus",
    "threads_used",
    "cpu_freq_mhz",
    "log2_l1d_kib",
    "log2_l2_kib",
    "log2_l3_kib",
    "log2_memory_gib",
    "peak_gflops",
    "mem_bandwidth_gbs",
    *(f"isa_{flag}" for flag in FEATURE_ISA),
    "gpu_count",
    "gpu_sm_count",
    "gpu_cuda_cores",
    "gpu_sm_clock_mhz",
    "log2_gpu_memory_gib",
    "gpu_mem_bandwidth_gbs",
    "gpu_peak_fp32_tflops",
    "gpu_compute_capability",
    "gpu_mig",
    "gpu_mps_share",
)


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", " ", text.lower())
    text = re.sub(r"@\s*[\d.]+\s*ghz", " ", text)
    text = re.sub(r"\b(cpu|processor|\d+-core)\b", " ", text)
    return "-".join(re.findall(r"[a-z0-9]+", text)) or "unknown"


def _gib(nbytes: int | None) -> int | None:
    return None if nbytes is None else round(nbytes / 2**30)


def cpu_identity(cpu: CpuInfo) -> dict[str, Any]:
    return {
        "arch": cpu.arch,
        "vendor": cpu.vendor,
        "model_name": cpu.model_name,
        "family": cpu.family,
        "model": cpu.model,
        "stepping": cpu.stepping,
        "sockets": cpu.sockets,
        "physical_cores": cpu.physical_cores,
        "logical_cpus": cpu.logical_cpus,
        "l1d": cpu.l1d_bytes,
        "l1i": cpu.l1i_bytes,
        "l2": cpu.l2_bytes,
        "l3": cpu.l3_bytes,
        "l3_total": cpu.l3_total_bytes,
        "memory_gib": _gib(cpu.memory_bytes),
        "isa": sorted(cpu.isa),
    }


def gpu_identity(gpu: GpuInfo) -> dict[str, Any]:
    return {
        "name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "memory_gib": _gib(gpu.memory_bytes),
        "sm_count": gpu.sm_count,
        "mig_profiles": (
            sorted(m.profile or "?" for m in gpu.visible_mig_devices()) if gpu.mig_enabled else None
        ),
    }


def device_identity(kind: str, cpu: CpuInfo, gpus: list[GpuInfo]) -> dict[str, Any]:
    """What the fingerprint hashes; a GPU device includes its host CPU (launch overheads depend on it)."""
    identity: dict[str, Any] = {"kind": kind, "cpu": cpu_identity(cpu)}
    if kind == "gpu":
        identity["gpus"] = [gpu_identity(g) for g in gpus if g.visible]
    return identity


def fingerprint(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def device_name(kind: str, cpu: CpuInfo, gpus: list[GpuInfo]) -> str:
    """Human label such as ``cpu-amd-epyc-2c`` or ``gpu-nvidia-a100-sxm4-40gb-1g-5gb``."""
    if kind == "cpu":
        cores = cpu.physical_cores or cpu.logical_cpus
        return f"cpu-{_slug(cpu.model_name)}" + (f"-{cores}c" if cores else "")
    visible = [g for g in gpus if g.visible]
    first = visible[0]
    label = f"gpu-{_slug(first.name)}"
    migs = first.visible_mig_devices() if first.mig_enabled else []
    if migs and migs[0].profile:
        label += f"-mig-{_slug(migs[0].profile)}"
    if len(visible) > 1:
        label += f"-x{len(visible)}"
    return label


@dataclass
class DeviceDescriptor:
    """Provenance of where a result was measured, and the device features a predictor sees."""

    kind: str
    name: str
    fingerprint: str
    cpu: CpuInfo
    threads_used: int
    affinity: list[int] = field(default_factory=list)
    gpus: list[GpuInfo] = field(default_factory=list)
    gpu_driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    #: why ``gpus`` is empty (no pynvml, no driver, hidden by CUDA_VISIBLE_DEVICES)
    gpu_reason: str | None = None
    mps: MpsState | None = None
    ceilings: Ceilings | None = None
    #: why ``ceilings`` is None
    ceilings_reason: str | None = None

    @property
    def device_id(self) -> str:
        return self.fingerprint

    def visible_gpus(self) -> list[GpuInfo]:
        return [g for g in self.gpus if g.visible]

    def identity(self) -> dict[str, Any]:
        return device_identity(self.kind, self.cpu, self.gpus)

    # -- serialisation ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "threads_used": self.threads_used,
            "affinity": list(self.affinity),
            "cpu": self.cpu.to_dict(),
            "gpus": [g.to_dict() for g in self.gpus],
            "gpu_driver_version": self.gpu_driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "nvml_version": self.nvml_version,
            "gpu_reason": self.gpu_reason,
            "mps": self.mps.to_dict() if self.mps else None,
            "ceilings": self.ceilings.to_dict() if self.ceilings else None,
            "ceilings_reason": self.ceilings_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceDescriptor:
        try:
            return cls(
                kind=data["kind"],
                name=data["name"],
                fingerprint=data["fingerprint"],
                threads_used=int(data["threads_used"]),
                affinity=list(data.get("affinity", [])),
                cpu=CpuInfo.from_dict(data["cpu"]),
                gpus=[GpuInfo.from_dict(g) for g in data.get("gpus", [])],
                gpu_driver_version=data.get("gpu_driver_version"),
                cuda_driver_version=data.get("cuda_driver_version"),
                nvml_version=data.get("nvml_version"),
                gpu_reason=data.get("gpu_reason"),
                mps=MpsState(**data["mps"]) if data.get("mps") else None,
                ceilings=Ceilings.from_dict(data["ceilings"]) if data.get("ceilings") else None,
                ceilings_reason=data.get("ceilings_reason"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InferperfError(f"not a device descriptor: {exc}") from exc

    # -- predictor features -----------------------------------------------------------------------------

    def features(self, missing: float = math.nan) -> dict[str, float]:
        """Named numeric features; ``missing`` stands for a value this machine does not expose.

        Unknown is NaN by default (never 0) so an imputer or a tree model can tell it from a real zero.
        GPU features of a CPU device are 0: that device really has no SMs.
        """

        def num(value: float | int | None) -> float:
            return missing if value is None else float(value)

        def log2_of(nbytes: int | None, unit: int) -> float:
            return missing if not nbytes else math.log2(nbytes / unit)

        cpu = self.cpu
        freq = cpu.max_freq_mhz or cpu.base_freq_mhz or cpu.current_freq_mhz
        out: dict[str, float] = {
            "is_gpu": 1.0 if self.kind == "gpu" else 0.0,
            "cpu_physical_cores": num(cpu.physical_cores),
            "cpu_logical_cpus": num(cpu.logical_cpus),
            "threads_used": float(self.threads_used),
            "cpu_freq_mhz": num(freq),
            "log2_l1d_kib": log2_of(cpu.l1d_bytes, 1024),
            "log2_l2_kib": log2_of(cpu.l2_bytes, 1024),
            "log2_l3_kib": log2_of(cpu.l3_bytes, 1024),
            "log2_memory_gib": log2_of(cpu.memory_bytes, 2**30),
            "peak_gflops": num(self.ceilings.peak_gflops if self.ceilings else None),
            "mem_bandwidth_gbs": num(self.ceilings.mem_bandwidth_gbs if self.ceilings else None),
        }
        for flag in FEATURE_ISA:
            out[f"isa_{flag}"] = 1.0 if cpu.has(flag) else 0.0
        out.update(self._gpu_features(num, log2_of))
        return out

    def _gpu_features(self, num: Any, log2_of: Any) -> dict[str, float]:
        names = [n for n in DEVICE_FEATURE_NAMES if n.startswith(("gpu_", "log2_gpu_"))]
        visible = self.visible_gpus()
        if self.kind != "gpu" or not visible:
            return dict.fromkeys(names, 0.0)
        gpu = visible[0]
        sms, cores, memory = gpu.sm_count, gpu.cuda_cores, gpu.memory_bytes
        bandwidth, peak = gpu.mem_bandwidth_gbs, gpu.peak_fp32_tflops
        migs = gpu.visible_mig_devices() if gpu.mig_enabled else []
        if migs:
            # a MIG slice owns a share of the SMs and of the memory controllers: scale the derived roofs
            mig = migs[0]
            sm_share = mig.sm_count / gpu.sm_count if mig.sm_count and gpu.sm_count else None
            mem_share = mig.memory_bytes / gpu.memory_bytes if mig.memory_bytes and gpu.memory_bytes else None
            sms, memory = mig.sm_count, mig.memory_bytes
            cores = cores * sm_share if cores and sm_share else None
            peak = peak * sm_share if peak and sm_share else None
            bandwidth = bandwidth * mem_share if bandwidth and mem_share else None
        share = self.mps.active_thread_share if self.mps and self.mps.active_thread_share is not None else 1.0
        cc = float(gpu.compute_capability) if gpu.compute_capability else None
        return {
            "gpu_count": float(len(visible)),
            "gpu_sm_count": num(sms),
            "gpu_cuda_cores": num(cores),
            "gpu_sm_clock_mhz": num(gpu.max_sm_clock_mhz),
            "log2_gpu_memory_gib": log2_of(memory, 2**30),
            "gpu_mem_bandwidth_gbs": num(bandwidth),
            "gpu_peak_fp32_tflops": num(peak),
            "gpu_compute_capability": num(cc),
            "gpu_mig": 1.0 if migs else 0.0,
            "gpu_mps_share": share,
        }

    def feature_vector(self, missing: float = math.nan) -> list[float]:
        """Features in :data:`DEVICE_FEATURE_NAMES` order."""
        feats = self.features(missing)
        return [feats[name] for name in DEVICE_FEATURE_NAMES]


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def describe_device(
    threads: int = 1,
    measure_ceilings: bool = True,
    refresh: bool = False,
    nvml: Any | None = None,
    kind: str | None = None,
    root: str | Path = "/",
) -> DeviceDescriptor:
    """Describe this machine as the device a measurement with ``threads`` intra-op threads runs on.

    ``kind`` None picks "gpu" when a visible GPU exists, else "cpu". Ceilings come from the on-disk cache
    unless ``refresh``; ``nvml`` injects an NVML module (tests, or a pre-initialised binding); ``root``
    re-roots the sysfs/proc reads (tests).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer; got {threads!r}")
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"device kind must be one of {', '.join(KINDS)}; got {kind!r}")
    cpu = read_cpu_info(root)
    report: GpuReport = query_gpus(nvml)
    if kind is None:
        kind = "gpu" if report.visible_gpus() else "cpu"
    elif kind == "gpu" and not report.visible_gpus():
        raise DeviceError(f"no GPU available: {report.reason or 'none visible'}")

    identity = device_identity(kind, cpu, report.gpus)
    fp = fingerprint(identity)
    ceilings = None
    reason = None
    if measure_ceilings:
        ceilings = cached_ceilings(
            fp,
            threads,
            refresh=refresh,
            identity=identity,
            measure=lambda t: measure_ceilings_now(
                t, l3_total_bytes=cpu.l3_total_bytes, memory_bytes=cpu.memory_bytes
            ),
        )
    else:
        reason = "not measured (measure_ceilings=False)"
    return DeviceDescriptor(
        kind=kind,
        name=device_name(kind, cpu, report.gpus),
        fingerprint=fp,
        cpu=cpu,
        threads_used=threads,
        affinity=_affinity(),
        gpus=report.gpus,
        gpu_driver_version=report.driver_version,
        cuda_driver_version=report.cuda_driver_version,
        nvml_version=report.nvml_version,
        gpu_reason=report.reason,
        mps=report.mps,
        ceilings=ceilings,
        ceilings_reason=reason,
    )
