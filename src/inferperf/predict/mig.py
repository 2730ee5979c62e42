"""Multi-Instance GPU profile from a predicted memory footprint (the DIPPM rule, with a safety margin).

DIPPM predicts memory on the full GPU (7g.40gb) and observed that a model uses no more memory on a smaller
slice, so the full-GPU prediction is a pessimistic bound: the answer is the smallest profile whose memory
holds it. We add a margin (10% by default) for the prediction error and allocator slack, and also consider
the memory-heavy 1g profiles (1g.10gb, 1g.20gb, …) that newer drivers expose.

Profile capacities are the nominal sizes in the profile names, taken as GiB (``memory_mb`` is MiB
throughout inferperf). The usable memory that ``nvidia-smi`` reports is a few percent smaller (a 1g.5gb
slice of an A100-40GB shows 4864 MiB, not 5120), which the margin covers.

"Smallest" means fewest compute slices first, then least memory: a profile with less compute is cheaper to
occupy even when, like 1g.10gb vs 2g.10gb, the memory is the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inferperf.errors import InferperfError

#: GPU → profiles (name, compute slices, memory GiB), as NVIDIA's MIG user guide lists them
MIG_PROFILES: dict[str, tuple[tuple[str, int, float], ...]] = {
    "A100-40GB": (
        ("1g.5gb", 1, 5),
        ("1g.10gb", 1, 10),
        ("2g.10gb", 2, 10),
        ("3g.20gb", 3, 20),
        ("4g.20gb", 4, 20),
        ("7g.40gb", 7, 40),
    ),
    "A100-80GB": (
        ("1g.10gb", 1, 10),
        ("1g.20gb", 1, 20),
        ("2g.20gb", 2, 20),
        ("3g.40gb", 3, 40),
        ("4g.40gb", 4, 40),
        ("7g.80gb", 7, 80),
    ),
    "H100-80GB": (
        ("1g.10gb", 1, 10),
        ("1g.20gb", 1, 20),
        ("2g.20gb", 2, 20),
        ("3g.40gb", 3, 40),
        ("4g.40gb", 4, 40),
        ("7g.80gb", 7, 80),
    ),
    "H200": (
        ("1g.18gb", 1, 18),
        ("1g.35gb", 1, 35),
        ("2g.35gb", 2, 35),
        ("3g.71gb", 3, 71),
        ("4g.71gb", 4, 71),
        ("7g.141gb", 7, 141),
    ),
}


class UnknownGpuError(InferperfError):
    """No MIG profile table for this GPU (it may not support MIG)."""


@dataclass(frozen=True)
class MigChoice:
    """The chosen profile (None when none fits) and why."""

    gpu: str
    profile: str | None
    memory_mb: float
    required_mb: float
    capacity_mb: float | None
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {
            "gpu": self.gpu,
            "profile": self.profile,
            "memory_mb": self.memory_mb,
            "required_mb": self.required_mb,
            "capacity_mb": self.capacity_mb,
            "reason": self.reason,
        }


def resolve_gpu(name: str) -> str:
    """Map a GPU name as NVML or a user writes it ("NVIDIA A100-SXM4-80GB", "a100", "H100 80GB HBM3") to
    a key of :data:`MIG_PROFILES`; raise :class:`UnknownGpuError` for a GPU without a table."""
    text = name.upper().replace("NVIDIA", " ")
    sizes = [int(x) for x in re.findall(r"(\d+)\s*GB", text)]
    if "H200" in text:
        return "H200"
    if "H100" in text:
        if sizes and sizes[0] != 80:
            raise UnknownGpuError(
                f"no MIG profile table for {name!r} (H100 with {sizes[0]} GB); known: "
                f"{', '.join(MIG_PROFILES)}"
            )
        return "H100-80GB"
    if "A100" in text:
        if not sizes or sizes[0] == 40:
            return "A100-40GB"
        if sizes[0] == 80:
            return "A100-80GB"
    key = name.strip().upper()
    for known in MIG_PROFILES:
        if key == known.upper():
            return known
    raise UnknownGpuError(f"no MIG profile table for GPU {name!r}; known: {', '.join(MIG_PROFILES)}")


def mig_choice(memory_mb: float, gpu: str = "A100-40GB", margin: float = 0.1) -> MigChoice:
    """The smallest profile of ``gpu`` holding ``memory_mb * (1 + margin)`` MiB, with the reason."""
    if margin < 0:
        raise InferperfError(f"MIG margin must be ≥ 0; got {margin}")
    if memory_mb is None or not memory_mb == memory_mb or memory_mb < 0:  # None / NaN / negative
        raise InferperfError(f"memory must be a non-negative number of MiB; got {memory_mb!r}")
    key = resolve_gpu(gpu)
    required = float(memory_mb) * (1.0 + margin)
    profiles = sorted(MIG_PROFILES[key], key=lambda p: (p[1], p[2]))
    for pname, _slices, gib in profiles:
        capacity = gib * 1024.0
        if required <= capacity:
            return MigChoice(
                key,
                pname,
                float(memory_mb),
                required,
                capacity,
                f"{memory_mb:.0f} MiB + {margin:.0%} margin = {required:.0f} MiB fits {pname} "
                f"({capacity:.0f} MiB)",
            )
    largest = max(p[2] for p in profiles) * 1024.0
    return MigChoice(
        key,
        None,
        float(memory_mb),
        required,
        None,
        f"none fits: {memory_mb:.0f} MiB + {margin:.0%} margin = {required:.0f} MiB exceeds the "
        f"largest {key} profile ({largest:.0f} MiB)",
    )


def mig_profile(memory_mb: float, gpu: str = "A100-40GB", margin: float = 0.1) -> str | None:
    """The smallest MIG profile that fits, or None when even the whole GPU is too small (see
    :func:`mig_choice` for the reason)."""
    return mig_choice(memory_mb, gpu, margin).profile
