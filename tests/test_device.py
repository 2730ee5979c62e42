"""Device descriptor: CPU parsing on fake sysfs trees, NVML through a fake module, fingerprints, ceilings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inferperf.device import (
    DEVICE_FEATURE_NAMES,
    DeviceDescriptor,
    DeviceError,
    cached_ceilings,
    describe_device,
    measure_ceilings,
    query_gpus,
    read_cpu_info,
)
from inferperf.device.ceilings import Ceilings
from inferperf.device.cpu import parse_cpu_list, parse_size
from inferperf.device.gpu import derived_bandwidth_gbs, format_cuda_version, mps_state
from inferperf.errors import ConfigError, InferperfError

# -- fake sysfs trees ---------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


INTEL_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep lm constant_tsc sse4_2 avx f16c fma avx2 avx512f avx512bw "
    "avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8 avx_vnni"
)


def make_intel_box(
    root: Path,
    *,
    l2: str = "2048K",
    mem_kb: int = 527_000_000,
    hypervisor: bool = False,
) -> Path:
    """2 sockets × 2 cores × 2 threads Sapphire Rapids (8 logical CPUs), with cpufreq and two NUMA nodes."""
    cpuinfo = []
    flags = INTEL_FLAGS + (" hypervisor" if hypervisor else "")
    for cpu in range(8):
        pkg, core = cpu // 4, (cpu % 4) // 2
        cpuinfo.append(
            f"processor\t: {cpu}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
            f"model name\t: Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz\nstepping\t: 8\n"
            f"cpu MHz\t\t: 2000.000\nphysical id\t: {pkg}\ncore id\t\t: {core}\nflags\t\t: {flags}\n"
        )
    _write(root / "proc/cpuinfo", "\n".join(cpuinfo))
    _write(root / "proc/meminfo", f"MemTotal:       {mem_kb} kB\nMemFree:        1000 kB\n")
    _write(root / "proc/sys/kernel/osrelease", "6.8.0-test")
    _write(root / "etc/os-release", 'NAME="Test"\nPRETTY_NAME="Test Linux 1"\n')
    sysroot = root / "sys/devices/system/cpu"
    _write(sysroot / "online", "0-7")
    for cpu in range(8):
        pkg, core = cpu // 4, (cpu % 4) // 2
        first = pkg * 4 + core * 2
        d = sysroot / f"cpu{cpu}"
        _write(d / "topology/physical_package_id", str(pkg))
        _write(d / "topology/core_id", str(core))
        _write(d / "topology/thread_siblings_list", f"{first}-{first + 1}")
        caches = [
            (1, "Data", "48K", f"{first}-{first + 1}"),
            (1, "Instruction", "32K", f"{first}-{first + 1}"),
            (2, "Unified", l2, f"{first}-{first + 1}"),
            (3, "Unified", "107520K", f"{pkg * 4}-{pkg * 4 + 3}"),
        ]
        for i, (level, ctype, size, shared) in enumerate(caches):
            idx = d / "cache" / f"index{i}"
            _write(idx / "level", str(level))
            _write(idx / "type", ctype)
            _write(idx / "size", size)
            _write(idx / "shared_cpu_list", shared)
        _write(d / "cpufreq/cpuinfo_max_freq", "3800000")
        _write(d / "cpufreq/base_frequency", "2000000")
        _write(d / "cpufreq/scaling_cur_freq", "2900000")
    _write(root / "sys/devices/system/node/node0/cpulist", "0-3")
    _write(root / "sys/devices/system/node/node1/cpulist", "4-7")
    return root


ARM_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


def make_arm_box(root: Path) -> Path:
    """4-core Neoverse-N1 (no SMT, no model name in cpuinfo, as on Graviton2/Altra)."""
    blocks = [
        f"processor\t: {cpu}\nBogoMIPS\t: 50.00\nFeatures\t: {ARM_FEATURES}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n"
        for cpu in range(4)
    ]
    _write(root / "proc/cpuinfo", "\n".join(blocks))
    _write(root / "proc/meminfo", "MemTotal:       16000000 kB\n")
    sysroot = root / "sys/devices/system/cpu"
    _write(sysroot / "online", "0-3")
    for cpu in range(4):
        d = sysroot / f"cpu{cpu}"
        _write(d / "topology/physical_package_id", "0")
        _write(d / "topology/core_cpus_list", str(cpu))
        for i, (level, ctype, size, shared) in enumerate(
            [(1, "Data", "64K", str(cpu)), (1, "Instruction", "64K", str(cpu)), (2, "Unified", "1024K", str(cpu)),
             (3, "Unified", "32768K", "0-3")]
        ):
            idx = d / "cache" / f"index{i}"
            _write(idx / "level", str(level))
            _write(idx / "type", ctype)
            _write(idx / "size", size)
            _write(idx / "shared_cpu_list", shared)
        _write(d / "cpufreq/cpuinfo_max_freq", "2500000")
    return root


# -- CPU ----------------------------------------------------------------------------------------------


def test_parsers() -> None:
    assert parse_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpu_list("5\n") == [5]
    assert parse_size("48K") == 48 * 1024
    assert parse_size("1024 KB") == 1024 * 1024
    assert parse_size("32M") == 32 * 1024**2
    assert parse_size("lots") is None


def test_intel_amx_box(tmp_path: Path) -> None:
    cpu = read_cpu_info(make_intel_box(tmp_path))
    assert cpu.vendor == "Intel"
    assert cpu.arch == "x86_64"
    assert (cpu.family, cpu.model, cpu.stepping) == (6, 143, 8)
    assert cpu.sockets == 2
    assert cpu.physical_cores == 4
    assert cpu.logical_cpus == 8
    assert cpu.max_freq_mhz == pytest.approx(3800.0)
    assert cpu.base_freq_mhz == pytest.approx(2000.0)
    assert cpu.current_freq_mhz == pytest.approx(2900.0)
    assert "cpufreq" in cpu.freq_source["max"]
    assert cpu.l1d_bytes == 48 * 1024 and cpu.l1i_bytes == 32 * 1024
    assert cpu.l2_bytes == 2048 * 1024
    assert cpu.l3_bytes == 107520 * 1024
    assert cpu.l3_total_bytes == 2 * 107520 * 1024  # one L3 per socket
    for flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"):
        assert cpu.has(flag), flag
    assert not cpu.has("neon") and not cpu.has("sve")
    assert cpu.memory_bytes == 527_000_000 * 1024
    assert cpu.numa_nodes == 2 and cpu.numa_cpus == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert cpu.kernel == "6.8.0-test" and cpu.os_name == "Test Linux 1"
    assert cpu.virtualized is False  # x86 without the CPUID hypervisor bit


def test_base_frequency_from_model_name_when_sysfs_lacks_it(tmp_path: Path) -> None:
    root = make_intel_box(tmp_path, hypervisor=True)
    for cpu in range(8):
        for name in ("base_frequency", "cpuinfo_max_freq", "scaling_cur_freq"):
            (root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/{name}").unlink()
    cpu = read_cpu_info(root)
    assert cpu.base_freq_mhz == pytest.approx(2000.0)
    assert cpu.freq_source["base"] == "model name"
    assert cpu.max_freq_mhz is None  # not readable → None, never invented
    assert cpu.current_freq_mhz == pytest.approx(2000.0)
    assert cpu.virtualized is True


def test_arm_neon_box(tmp_path: Path) -> None:
    cpu = read_cpu_info(make_arm_box(tmp_path))
    assert cpu.vendor == "ARM"
    assert cpu.arch == "aarch64"
    assert cpu.model_name == "ARM Neoverse-N1"
    assert cpu.model == 0xD0C
    assert cpu.physical_cores == 4 and cpu.logical_cpus == 4 and cpu.sockets == 1
    assert cpu.has("neon") and cpu.has("asimddp")
    assert not cpu.has("avx") and not cpu.has("sve")
    assert cpu.max_freq_mhz == pytest.approx(2500.0)
    assert cpu.base_freq_mhz is None
    assert cpu.l1d_bytes == 64 * 1024 and cpu.l3_total_bytes == 32 * 1024**2
    assert cpu.virtualized is None  # no CPUID hypervisor bit on ARM: unknown, not "no"


def test_empty_root_gives_none_not_invented_values(tmp_path: Path) -> None:
    cpu = read_cpu_info(tmp_path)
    assert cpu.physical_cores is None and cpu.memory_bytes is None
    assert cpu.l1d_bytes is None and cpu.max_freq_mhz is None
    assert cpu.isa == []


# -- fingerprint --------------------------------------------------------------------------------------


def _describe(root: Path, **kw: Any) -> DeviceDescriptor:
    return describe_device(measure_ceilings=False, nvml=FakeNvml([]), root=root, **kw)


def test_fingerprint_stable_across_threads_and_small_memory_drift(tmp_path: Path) -> None:
    a = _describe(make_intel_box(tmp_path / "a"), threads=1)
    b = _describe(make_intel_box(tmp_path / "b"), threads=4)
    # a kernel update moving MemTotal by a few MB is the same machine
    c = _describe(make_intel_box(tmp_path / "c", mem_kb=527_000_000 - 20_000), threads=2)
    assert a.fingerprint == b.fingerprint == c.fingerprint
    assert a.threads_used == 1 and b.threads_used == 4
    assert a.name == "cpu-intel-xeon-platinum-8480-4c"
    assert a.kind == "cpu"


def test_fingerprint_changes_with_hardware(tmp_path: Path) -> None:
    base = _describe(make_intel_box(tmp_path / "a")).fingerprint
    other_cache = _describe(make_intel_box(tmp_path / "b", l2="1024K")).fingerprint
    other_memory = _describe(make_intel_box(tmp_path / "c", mem_kb=263_000_000)).fingerprint
    arm = _describe(make_arm_box(tmp_path / "d")).fingerprint
    assert len({base, other_cache, other_memory, arm}) == 4


# -- fake NVML ----------------------------------------------------------------------------------------


class FakeNvmlError(Exception):
    pass


class FakeGpu:
    def __init__(self, name: str, uuid: str, cc: tuple[int, int], cores: int | None, sm_clock: int,
                 mem_clock: int, bus: int, memory: int, power_mw: int | None = 300_000,
                 mig: list[dict[str, Any]] | None = None) -> None:
        self.name, self.uuid, self.cc, self.cores = name, uuid, cc, cores
        self.sm_clock, self.mem_clock, self.bus, self.memory = sm_clock, mem_clock, bus, memory
        self.power_mw, self.mig = power_mw, mig
        self.energy_mj = 0


class FakeMig:
    def __init__(self, parent: FakeGpu, spec: dict[str, Any]) -> None:
        self.parent, self.spec = parent, spec


class FakeNvml:
    """Mimics the pynvml functions gpu.py calls; values are bytes where old pynvml returned bytes."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, gpus: list[FakeGpu], *, init_error: bool = False, has_num_cores: bool = True) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.initialised = 0
        if not has_num_cores:
            self.nvmlDeviceGetNumGpuCores = None  # an older binding without the function

    def nvmlInit(self) -> None:  # noqa: N802
        if self.init_error:
            raise FakeNvmlError("Driver Not Loaded")
        self.initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> bytes:  # noqa: N802
        return b"550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        return 12040

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:  # noqa: N802
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: Any) -> bytes:  # noqa: N802
        return (h.spec["name"] if isinstance(h, FakeMig) else h.name).encode()

    def nvmlDeviceGetUUID(self, h: Any) -> str:  # noqa: N802
        return h.spec["uuid"] if isinstance(h, FakeMig) else h.uuid

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeGpu) -> tuple[int, int]:  # noqa: N802
        return h.cc

    def nvmlDeviceGetNumGpuCores(self, h: FakeGpu) -> int:  # noqa: N802
        if h.cores is None:
            raise FakeNvmlError("Not Supported")
        return h.cores

    def nvmlDeviceGetMaxClockInfo(self, h: FakeGpu, clock: int) -> int:  # noqa: N802
        return h.sm_clock if clock == self.NVML_CLOCK_SM else h.mem_clock

    def nvmlDeviceGetMemoryBusWidth(self, h: FakeGpu) -> int:  # noqa: N802
        return h.bus

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> SimpleNamespace:  # noqa: N802
        if isinstance(h, FakeMig):
            return SimpleNamespace(total=h.spec["mem_mb"] * 2**20)
        return SimpleNamespace(total=h.memory, free=h.memory, used=0)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:  # noqa: N802
        if h.power_mw is None:
            raise FakeNvmlError("Not Supported")
        return h.power_mw

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> tuple[int, int]:  # noqa: N802
        if h.mig is None:
            raise FakeNvmlError("Not Supported")
        return (1, 1)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeGpu) -> int:  # noqa: N802
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeGpu, i: int) -> FakeMig:  # noqa: N802
        if h.mig is None or i >= len(h.mig):
            raise FakeNvmlError("Not Found")
        return FakeMig(h, h.mig[i])

    def nvmlDeviceGetAttributes(self, m: FakeMig) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(multiprocessorCount=m.spec["sms"], gpuInstanceSliceCount=m.spec["slices"],
                               memorySizeMB=m.spec["mem_mb"])

    def nvmlDeviceGetGpuInstanceId(self, m: FakeMig) -> int:  # noqa: N802
        return m.spec["gi"]

    def nvmlDeviceGetComputeInstanceId(self, m: FakeMig) -> int:  # noqa: N802
        return 0

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:  # noqa: N802
        return h.energy_mj


def h100() -> FakeGpu:
    return FakeGpu("NVIDIA H100 80GB HBM3", "GPU-h100-0", (9, 0), 16896, 1980, 2619, 5120, 80 * 2**30, 700_000)


def a100_mig() -> FakeGpu:
    migs = [
        {"name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "uuid": "MIG-aaaa", "sms": 14, "slices": 1, "mem_mb": 4864,
         "gi": 7},
        {"name": "NVIDIA A100-SXM4-40GB MIG 3g.20gb", "uuid": "MIG-bbbb", "sms": 42, "slices": 3,
         "mem_mb": 19968, "gi": 2},
    ]
    return FakeGpu("NVIDIA A100-SXM4-40GB", "GPU-a100-1", (8, 0), None, 1410, 1215, 5120, 40 * 2**30, None, migs)


def test_nvml_gpu_parsing_and_derivations() -> None:
    nvml = FakeNvml([h100()])
    report = query_gpus(nvml, env={})
    assert nvml.initialised == 0  # init and shutdown balanced
    assert report.reason is None
    assert report.driver_version == "550.54.15"
    assert report.cuda_driver_version == "12.4"
    (gpu,) = report.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3" and gpu.uuid == "GPU-h100-0"
    assert gpu.compute_capability == "9.0"
    assert gpu.sm_count == 16896 // 128 and gpu.sm_count_source.startswith("nvml")
    assert gpu.cuda_cores == 16896
    assert gpu.mem_bandwidth_gbs == pytest.approx(2 * 2619e6 * 5120 / 8 / 1e9)
    assert gpu.peak_fp32_tflops == pytest.approx(16896 * 2 * 1980e6 / 1e12)
    assert gpu.power_limit_w == pytest.approx(700.0)
    assert gpu.mig_enabled is None and gpu.mig_devices == []


def test_nvml_mig_and_missing_fields() -> None:
    report = query_gpus(FakeNvml([a100_mig()], has_num_cores=False), env={})
    (gpu,) = report.gpus
    # no core-count function in this binding: SM count from the name table, cores from SMs × 64 (cc 8.0)
    assert gpu.sm_count == 108 and gpu.sm_count_source == "name table"
    assert gpu.cuda_cores == 108 * 64
    assert gpu.power_limit_w is None  # NOT_SUPPORTED for one field loses only that field
    assert gpu.mem_bandwidth_gbs == pytest.approx(1555.2, rel=1e-3)  # A100 40GB data sheet: 1555 GB/s
    assert gpu.mig_enabled is True
    assert [m.profile for m in gpu.mig_devices] == ["1g.5gb", "3g.20gb"]
    assert [m.sm_count for m in gpu.mig_devices] == [14, 42]
    assert gpu.mig_devices[0].memory_bytes == 4864 * 2**20
    assert gpu.mig_devices[0].gpu_instance_id == 7


def test_cuda_visible_devices_selects_a_mig_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-aaaa")
    fake = FakeNvml([h100(), a100_mig()])
    d = describe_device(measure_ceilings=False, nvml=fake)
    assert d.kind == "gpu"
    assert [g.visible for g in d.gpus] == [False, True]
    assert [m.visible for m in d.gpus[1].mig_devices] == [True, False]
    assert d.name.startswith("gpu-nvidia-a100-sxm4-40gb-mig-1g-5gb")
    feats = d.features()
    assert feats["gpu_count"] == 1 and feats["gpu_mig"] == 1
    assert feats["gpu_sm_count"] == 14
    # the slice's share of the derived roofs: 14/108 of the SM peak, 4864 MB / 40 GiB of the bandwidth
    assert feats["gpu_peak_fp32_tflops"] == pytest.approx(d.gpus[1].peak_fp32_tflops * 14 / 108)
    other = describe_device(measure_ceilings=False, nvml=fake, kind="gpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-bbbb")
    bigger = describe_device(measure_ceilings=False, nvml=fake)
    assert other.fingerprint == d.fingerprint
    assert bigger.fingerprint != d.fingerprint  # another MIG profile is another device


def test_gpu_fingerprint_ignores_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    first = h100()
    second = h100()
    second.uuid = "GPU-another-board"
    a = describe_device(measure_ceilings=False, nvml=FakeNvml([first]))
    b = describe_device(measure_ceilings=False, nvml=FakeNvml([second]))
    cpu_only = describe_device(measure_ceilings=False, nvml=FakeNvml([first]), kind="cpu")
    assert a.fingerprint == b.fingerprint
    assert cpu_only.fingerprint != a.fingerprint
    assert cpu_only.features()["gpu_sm_count"] == 0.0
    assert a.features()["gpu_sm_count"] == 132


def test_nvml_unavailable_gives_reason_not_error() -> None:
    report = query_gpus(FakeNvml([], init_error=True), env={})
    assert report.gpus == [] and "Driver Not Loaded" in (report.reason or "")
    with pytest.raises(DeviceError, match="no GPU"):
        describe_device(measure_ceilings=False, nvml=FakeNvml([], init_error=True), kind="gpu")


def test_mps_state(tmp_path: Path) -> None:
    (tmp_path / "control").write_text("")
    state = mps_state({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path), "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25"})
    assert state.active and state.active_thread_share == pytest.approx(0.25)
    assert not mps_state({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "none")}).active


def test_small_gpu_helpers() -> None:
    assert format_cuda_version(11080) == "11.8"
    assert derived_bandwidth_gbs(5001, 256) == pytest.approx(320.0, rel=1e-3)  # T4 data sheet: 320 GB/s
    assert derived_bandwidth_gbs(None, 256) is None


def test_real_nvml() -> None:
    pynvml = pytest.importorskip("pynvml", reason="pynvml (nvidia-ml-py) is not installed: no real NVML here")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception as exc:
        pytest.skip(f"NVML present but no usable driver/GPU: {exc}")
    report = query_gpus()
    assert report.gpus, report.reason
    for gpu in report.gpus:
        assert gpu.name and gpu.memory_bytes and gpu.memory_bytes > 0
        assert gpu.compute_capability is not None
    assert report.driver_version


# -- real machine, descriptor round trip, features ----------------------------------------------------


def test_real_machine_smoke() -> None:
    d = describe_device(measure_ceilings=False)
    cpu = d.cpu
    assert cpu.model_name and cpu.vendor and cpu.arch
    assert cpu.logical_cpus and cpu.logical_cpus >= 1
    assert cpu.memory_bytes and cpu.memory_bytes > 2**28
    assert d.affinity and set(d.affinity) <= set(range(4096))
    assert len(d.fingerprint) == 16
    assert d.name.startswith(d.kind + "-")
    assert d.ceilings is None and d.ceilings_reason
    if d.kind == "cpu":
        assert d.gpu_reason  # why no GPU is always said
    again = describe_device(measure_ceilings=False, threads=2)
    assert again.fingerprint == d.fingerprint
    blob = json.dumps(d.to_dict())
    assert DeviceDescriptor.from_dict(json.loads(blob)) == d


def test_feature_vector_marks_unknown_as_nan(tmp_path: Path) -> None:
    d = _describe(make_arm_box(tmp_path), threads=3)
    vec = d.feature_vector()
    assert len(vec) == len(DEVICE_FEATURE_NAMES)
    feats = dict(zip(DEVICE_FEATURE_NAMES, vec, strict=True))
    assert feats["threads_used"] == 3 and feats["cpu_physical_cores"] == 4
    assert feats["isa_neon"] == 1 and feats["isa_avx2"] == 0
    assert feats["log2_l2_kib"] == pytest.approx(10.0)
    assert math.isnan(feats["peak_gflops"])  # ceilings not measured: unknown, not zero
    assert d.feature_vector(missing=-1.0)[DEVICE_FEATURE_NAMES.index("peak_gflops")] == -1.0
    with_ceilings = DeviceDescriptor.from_dict(
        {**d.to_dict(), "ceilings": Ceilings(50.0, 20.0, 3, "test", 64, 2**20, 1, "now", 0.1).to_dict()}
    )
    assert with_ceilings.features()["peak_gflops"] == 50.0


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError):
        describe_device(threads=0, measure_ceilings=False)
    with pytest.raises(ConfigError):
        describe_device(kind="tpu", measure_ceilings=False)
    with pytest.raises(InferperfError):
        DeviceDescriptor.from_dict({"kind": "cpu"})


# -- ceilings -----------------------------------------------------------------------------------------


def test_measure_ceilings_positive() -> None:
    c = measure_ceilings(threads=1, gemm_n=128, copy_bytes=2**20, repeats=1)
    assert c.peak_gflops > 0 and math.isfinite(c.peak_gflops)
    assert c.mem_bandwidth_gbs > 0 and math.isfinite(c.mem_bandwidth_gbs)
    assert c.threads == 1 and c.backend.startswith("numpy")
    two = measure_ceilings(threads=2, gemm_n=128, copy_bytes=2**20, repeats=1)
    assert two.threads == 2 and two.peak_gflops > 0


def test_ceilings_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path))
    calls: list[int] = []

    def fake_measure(threads: int) -> Ceilings:
        calls.append(threads)
        return Ceilings(10.0 * len(calls), 5.0, threads, "fake", 64, 2**20, 1, "now", 0.0)

    first = cached_ceilings("abc", 1, measure=fake_measure, identity={"cpu": "x"})
    again = cached_ceilings("abc", 1, measure=fake_measure)
    assert calls == [1] and again == first
    cached_ceilings("abc", 2, measure=fake_measure)
    refreshed = cached_ceilings("abc", 1, refresh=True, measure=fake_measure)
    assert calls == [1, 2, 1] and refreshed.peak_gflops != first.peak_gflops
    data = json.loads((tmp_path / "device" / "abc.json").read_text())
    assert set(data["ceilings"]) == {"1", "2"} and data["identity"] == {"cpu": "x"}
    (tmp_path / "device" / "abc.json").write_text("{not json")
    cached_ceilings("abc", 1, measure=fake_measure)
    assert len(calls) == 4  # a corrupt cache is re-measured, not an error


def test_describe_device_uses_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path))
    root = make_arm_box(tmp_path / "box")
    d = describe_device(threads=1, nvml=FakeNvml([]), root=root)
    assert d.ceilings is not None and d.ceilings.peak_gflops > 0
    assert (tmp_path / "device" / f"{d.fingerprint}.json").exists()
    again = describe_device(threads=1, nvml=FakeNvml([]), root=root)
    assert again.ceilings == d.ceilings  # from disk: identical, including the timestamp
