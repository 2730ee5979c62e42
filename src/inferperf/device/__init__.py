"""The device a result was measured on: CPU (sysfs/proc), GPUs (NVML), measured ceilings, a stable id.

Importing this package is cheap (no numpy, no pynvml until a function needs them), so the CLI can use it
at start-up.
"""

from inferperf.device.ceilings import Ceilings, cached_ceilings, inferperf_home, measure_ceilings
from inferperf.device.cpu import CacheLevel, CpuInfo, read_cpu_info
from inferperf.device.descriptor import (
    DEVICE_FEATURE_NAMES,
    DeviceDescriptor,
    DeviceError,
    describe_device,
    device_identity,
    fingerprint,
)
from inferperf.device.gpu import GpuInfo, GpuReport, MigDevice, MpsState, query_gpus

__all__ = [
    "DEVICE_FEATURE_NAMES",
    "CacheLevel",
    "Ceilings",
    "CpuInfo",
    "DeviceDescriptor",
    "DeviceError",
    "GpuInfo",
    "GpuReport",
    "MigDevice",
    "MpsState",
    "cached_ceilings",
    "describe_device",
    "device_identity",
    "fingerprint",
    "inferperf_home",
    "measure_ceilings",
    "query_gpus",
    "read_cpu_info",
]
