"""What the CPU of this machine is, read from sysfs and /proc.

Every field comes from a file the kernel exposes (``/proc/cpuinfo``, ``/sys/devices/system/cpu``,
``/proc/meminfo``, ``/sys/devices/system/node``); a value the kernel does not expose is ``None``, never a
guess, because the descriptor is stored as provenance with every result and feeds the predictors. All
paths are taken relative to an injectable ``root`` so tests can build fake Intel/ARM trees in a tmp dir.

py-cpuinfo is deliberately not used: it spawns a subprocess (over a second here) and reports cache sizes
summed over cores under names that suggest per-core values.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: ISA extensions that change which kernels a runtime can pick (and so latency). Names follow the
#: kernel's /proc/cpuinfo spelling; ``neon`` is normalised from aarch64's ``asimd``.
TRACKED_ISA = (
    # x86
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    # ARM
    "neon",
    "asimddp",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
)

_X86_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}

#: ARM "CPU implementer" codes (Arm ARM, MIDR_EL1.Implementer), for machines whose cpuinfo has no model name.
_ARM_IMPLEMENTERS = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x43: "Cavium",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x51: "Qualcomm",
    0x61: "Apple",
    0xC0: "Ampere",
}

#: Arm Ltd. part numbers (MIDR_EL1.PartNum) of the server cores inference commonly runs on.
_ARM_PARTS = {
    0xD0C: "Neoverse-N1",
    0xD40: "Neoverse-V1",
    0xD49: "Neoverse-N2",
    0xD4F: "Neoverse-V2",
    0xD08: "Cortex-A72",
    0xD0B: "Cortex-A76",
}


@dataclass
class CacheLevel:
    """One cache as seen from cpu0: size of one instance and how many logical CPUs share it."""

    level: int
    type: str  # "Data", "Instruction" or "Unified"
    size_bytes: int
    shared_cpus: int


@dataclass
class CpuInfo:
    """Static description of the host CPU and memory; only ``current_freq_mhz`` depends on load."""

    model_name: str
    vendor: str
    arch: str
    family: int | None = None
    model: int | None = None
    stepping: int | None = None
    sockets: int | None = None
    physical_cores: int | None = None
    logical_cpus: int | None = None
    base_freq_mhz: float | None = None
    max_freq_mhz: float | None = None
    #: the kernel's "cpu MHz" (or scaling_cur_freq): a momentary reading, or the TSC rate in a VM
    current_freq_mhz: float | None = None
    #: where each frequency came from, so a reader can judge it
    freq_source: dict[str, str] = field(default_factory=dict)
    l1d_bytes: int | None = None
    l1i_bytes: int | None = None
    l2_bytes: int | None = None
    l3_bytes: int | None = None
    #: all distinct L3 instances summed (several CCXs / sockets)
    l3_total_bytes: int | None = None
    caches: list[CacheLevel] = field(default_factory=list)
    isa: list[str] = field(default_factory=list)
    memory_bytes: int | None = None
    #: cgroup memory limit of this process when one is set below the physical memory
    memory_limit_bytes: int | None = None
    numa_nodes: int | None = None
    numa_cpus: list[list[int]] = field(default_factory=list)
    os_name: str | None = None
    kernel: str | None = None
    virtualized: bool | None = None
    hypervisor: str | None = None
    #: container runtime detected ("docker", "podman", "kubernetes", "lxc"); None when none detected
    container: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CpuInfo:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["caches"] = [CacheLevel(**c) for c in data.get("caches", [])]
        kwargs["freq_source"] = dict(data.get("freq_source", {}))
        return cls(**kwargs)

    def has(self, flag: str) -> bool:
        return flag in self.isa


# -- small parsers ------------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_cpu_list(text: str) -> list[int]:
    """Expand a kernel cpu list such as ``0-3,8,10-11``."""
    cpus: list[int] = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
               "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}


def parse_size(text: str) -> int | None:
    """``48K`` / ``1024 KB`` / ``32M`` → bytes (binary units, as sysfs and cpuinfo mean them)."""
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if not m:
        return None
    unit = _SIZE_UNITS.get(m.group(2).upper())
    return None if unit is None else int(m.group(1)) * unit


def parse_cpuinfo(text: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Split /proc/cpuinfo into per-processor blocks and the lines outside them (aarch64 puts some there)."""
    blocks: list[dict[str, str]] = []
    other: dict[str, str] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            _flush(current, blocks, other)
            current = {}
            continue
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    _flush(current, blocks, other)
    return blocks, other


def _flush(current: dict[str, str], blocks: list[dict[str, str]], other: dict[str, str]) -> None:
    if "processor" in current:
        blocks.append(current)
    else:
        other.update(current)


def _to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None


def _to_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


# -- the reader ---------------------------------------------------------------------------------------


def _isa_flags(flag_text: str) -> list[str]:
    present = set(flag_text.split())
    if "asimd" in present:
        present.add("neon")
    return [f for f in TRACKED_ISA if f in present]


def _online_cpus(sysroot: Path) -> list[int]:
    text = _read(sysroot / "online")
    if text:
        try:
            return parse_cpu_list(text)
        except ValueError:
            pass
    found = sorted(int(p.name[3:]) for p in sysroot.glob("cpu[0-9]*") if p.name[3:].isdigit())
    return found


def _topology(sysroot: Path, cpus: list[int]) -> tuple[int | None, int | None]:
    """(sockets, physical cores): a physical core is one distinct set of hardware-thread siblings."""
    packages: set[str] = set()
    cores: set[str] = set()
    for cpu in cpus:
        topo = sysroot / f"cpu{cpu}" / "topology"
        pkg = _read(topo / "physical_package_id")
        sib = _read(topo / "core_cpus_list") or _read(topo / "thread_siblings_list")
        if pkg is not None:
            packages.add(pkg)
        if sib is not None:
            cores.add(sib)
    return (len(packages) or None, len(cores) or None)


def _caches(sysroot: Path, cpus: list[int]) -> tuple[list[CacheLevel], int | None]:
    caches: list[CacheLevel] = []
    first = cpus[0] if cpus else 0
    for idx in sorted((sysroot / f"cpu{first}" / "cache").glob("index*")):
        level = _read_int(idx / "level")
        size = parse_size(_read(idx / "size") or "")
        ctype = _read(idx / "type") or "Unified"
        shared = _read(idx / "shared_cpu_list")
        if level is None or size is None:
            continue
        n_shared = len(parse_cpu_list(shared)) if shared else 1
        caches.append(CacheLevel(level=level, type=ctype, size_bytes=size, shared_cpus=n_shared))
    # L3 total: distinct instances across every online CPU (one per CCX on EPYC, one per socket on Xeon)
    instances: dict[str, int] = {}
    for cpu in cpus:
        for idx in (sysroot / f"cpu{cpu}" / "cache").glob("index*"):
            if _read_int(idx / "level") != 3:
                continue
            size = parse_size(_read(idx / "size") or "")
            key = _read(idx / "shared_cpu_list") or f"cpu{cpu}"
            if size is not None:
                instances[key] = size
    return caches, (sum(instances.values()) if instances else None)


def _pick_cache(caches: list[CacheLevel], level: int, types: tuple[str, ...]) -> int | None:
    for c in caches:
        if c.level == level and c.type in types:
            return c.size_bytes
    return None


def _frequencies(sysroot: Path, cpu: int, model_name: str, block: dict[str, str]) -> tuple[
    float | None, float | None, float | None, dict[str, str]
]:
    src: dict[str, str] = {}
    cpufreq = sysroot / f"cpu{cpu}" / "cpufreq"
    base = max_ = cur = None
    khz = _read_int(cpufreq / "base_frequency")
    if khz:
        base, src["base"] = khz / 1000.0, "sysfs cpufreq/base_frequency"
    if base is None:
        mhz = _read_int(sysroot / f"cpu{cpu}" / "acpi_cppc" / "nominal_freq")
        if mhz:
            base, src["base"] = float(mhz), "sysfs acpi_cppc/nominal_freq"
    if base is None:
        m = re.search(r"@\s*([\d.]+)\s*GHz", model_name)
        if m:
            base, src["base"] = float(m.group(1)) * 1000.0, "model name"
    khz = _read_int(cpufreq / "cpuinfo_max_freq")
    if khz:
        max_, src["max"] = khz / 1000.0, "sysfs cpufreq/cpuinfo_max_freq"
    khz = _read_int(cpufreq / "scaling_cur_freq")
    if khz:
        cur, src["current"] = khz / 1000.0, "sysfs cpufreq/scaling_cur_freq"
    else:
        cur = _to_float(block.get("cpu MHz"))
        if cur is not None:
            src["current"] = "/proc/cpuinfo cpu MHz"
    return base, max_, cur, src


def _memory(root: Path) -> tuple[int | None, int | None]:
    total = None
    text = _read(root / "proc" / "meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    if m:
        total = int(m.group(1)) * 1024
    limit = None
    v2 = _read(root / "sys" / "fs" / "cgroup" / "memory.max")
    v1 = _read(root / "sys" / "fs" / "cgroup" / "memory" / "memory.limit_in_bytes")
    for text in (v2, v1):
        value = _to_int(text) if text and text != "max" else None
        if value is not None and (total is None or value < total):
            limit = value
            break
    return total, limit


def _numa(root: Path) -> list[list[int]]:
    nodes = []
    for node in sorted((root / "sys" / "devices" / "system" / "node").glob("node[0-9]*"),
                       key=lambda p: int(p.name[4:])):
        text = _read(node / "cpulist")
        nodes.append(parse_cpu_list(text) if text else [])
    return nodes


_DMI_HYPERVISORS = (
    ("kvm", "KVM"),
    ("qemu", "QEMU"),
    ("vmware", "VMware"),
    ("virtualbox", "VirtualBox"),
    ("amazon ec2", "AWS Nitro"),
    ("google compute engine", "Google"),
    ("virtual machine", "Hyper-V"),
    ("xen", "Xen"),
    ("firecracker", "Firecracker"),
)


def _virtualisation(root: Path, flags: set[str], is_x86: bool) -> tuple[bool | None, str | None, str | None]:
    hypervisor = _read(root / "sys" / "hypervisor" / "type")
    if not hypervisor:
        dmi_dir = root / "sys" / "class" / "dmi" / "id"
        dmi = " ".join(filter(None, (_read(dmi_dir / n) for n in ("sys_vendor", "product_name")))).lower()
        hypervisor = next((name for key, name in _DMI_HYPERVISORS if key in dmi), None)
    if hypervisor or "hypervisor" in flags:
        virtualized: bool | None = True
    else:
        # the CPUID hypervisor bit is reliable on x86; elsewhere absence of evidence is not evidence
        virtualized = False if is_x86 else None

    container = None
    if (root / ".dockerenv").exists():
        container = "docker"
    elif (root / "run" / ".containerenv").exists():
        container = "podman"
    elif root == Path("/") and os.environ.get("KUBERNETES_SERVICE_HOST"):
        container = "kubernetes"
    else:
        cgroup = (_read(root / "proc" / "1" / "cgroup") or "").lower()
        for key, name in (("kubepods", "kubernetes"), ("docker", "docker"), ("containerd", "containerd"),
                          ("lxc", "lxc")):
            if key in cgroup:
                container = name
                break
    return virtualized, hypervisor, container


def _os_name(root: Path) -> str | None:
    text = _read(root / "etc" / "os-release") or ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return m.group(1) if m else None


def read_cpu_info(root: Path | str = "/") -> CpuInfo:
    """Describe the CPU from the kernel's files under ``root`` (``/`` on a real machine)."""
    root = Path(root)
    sysroot = root / "sys" / "devices" / "system" / "cpu"
    blocks, other = parse_cpuinfo(_read(root / "proc" / "cpuinfo") or "")
    block = blocks[0] if blocks else {}
    merged = {**other, **block}

    flags_text = merged.get("flags") or merged.get("Features") or ""
    flags = set(flags_text.split())
    is_x86 = "vendor_id" in merged
    implementer = _to_int(merged.get("CPU implementer"))
    part = _to_int(merged.get("CPU part"))

    if is_x86:
        vendor = _X86_VENDORS.get(merged["vendor_id"], merged["vendor_id"])
        family = _to_int(merged.get("cpu family"))
        model = _to_int(merged.get("model"))
        stepping = _to_int(merged.get("stepping"))
        arch = "x86_64" if "lm" in flags else "x86"
    elif implementer is not None:
        vendor = _ARM_IMPLEMENTERS.get(implementer, f"ARM implementer {implementer:#x}")
        family, model, stepping = None, part, _to_int(merged.get("CPU revision"))
        arch = "aarch64" if "asimd" in flags or merged.get("CPU architecture") == "8" else "arm"
    else:
        vendor, family, model, stepping = "unknown", None, None, None
        arch = platform.machine() or "unknown"

    model_name = merged.get("model name") or ""
    if not model_name and implementer is not None:
        core = _ARM_PARTS.get(part or -1) if implementer == 0x41 else None
        part_text = f"part {part:#x}" if part is not None else ""
        model_name = f"{vendor} {core or part_text}".strip()
    if not model_name:
        model_name = platform.processor() or "unknown CPU"

    cpus = _online_cpus(sysroot)
    logical = len(cpus) or (len(blocks) or None)
    sockets, cores = _topology(sysroot, cpus)
    if cores is None and blocks:
        # /proc/cpuinfo fallback (x86): distinct (physical id, core id) pairs
        pairs = {(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}
        cores = len(pairs) or None
        sockets = sockets or (len({b.get("physical id") for b in blocks if "physical id" in b}) or None)
    caches, l3_total = _caches(sysroot, cpus)
    base, max_, cur, src = _frequencies(sysroot, cpus[0] if cpus else 0, model_name, block)
    memory, limit = _memory(root)
    numa = _numa(root)
    virtualized, hypervisor, container = _virtualisation(root, flags, is_x86)
    kernel = _read(root / "proc" / "sys" / "kernel" / "osrelease")
    if kernel is None and root == Path("/"):
        kernel = platform.release()

    return CpuInfo(
        model_name=model_name,
        vendor=vendor,
        arch=arch,
        family=family,
        model=model,
        stepping=stepping,
        sockets=sockets,
        physical_cores=cores,
        logical_cpus=logical,
        base_freq_mhz=base,
        max_freq_mhz=max_,
        current_freq_mhz=cur,
        freq_source=src,
        l1d_bytes=_pick_cache(caches, 1, ("Data",)),
        l1i_bytes=_pick_cache(caches, 1, ("Instruction",)),
        l2_bytes=_pick_cache(caches, 2, ("Unified", "Data")),
        l3_bytes=_pick_cache(caches, 3, ("Unified", "Data")),
        l3_total_bytes=l3_total,
        caches=caches,
        isa=_isa_flags(flags_text),
        memory_bytes=memory,
        memory_limit_bytes=limit,
        numa_nodes=len(numa) or None,
        numa_cpus=numa,
        os_name=_os_name(root),
        kernel=kernel,
        virtualized=virtualized,
        hypervisor=hypervisor,
        container=container,
    )
