"""Measured compute and memory ceilings of the CPU at a given thread count (the roofline's two roofs).

Vendor peak numbers overstate what a BLAS library reaches inside a VM or under a cgroup quota, so the
roofs are measured: the best of a few fp32 GEMMs (numpy → its BLAS, threads capped with threadpoolctl),
and the best of a few large array copies (bytes read + bytes written, split across the threads). Both take
well under a second at the default sizes and are cached on disk per device fingerprint and thread count,
so only the first ``describe_device`` on a machine pays for them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inferperf.errors import ConfigError
from inferperf.store.paths import inferperf_home


@dataclass
class Ceilings:
    """Best observed fp32 GEMM rate and copy bandwidth at ``threads`` threads."""

    peak_gflops: float
    mem_bandwidth_gbs: float
    threads: int
    backend: str
    gemm_n: int
    copy_bytes: int
    repeats: int
    measured_at: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ceilings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _blas_name() -> str:
    try:
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    except Exception:  # threadpoolctl missing or unable to inspect: the name is only informative
        return "numpy"
    if not blas:
        return "numpy"
    info = blas[0]
    arch = info.get("architecture")
    return f"numpy/{info.get('internal_api', 'blas')}" + (f"-{arch}" if arch else "")


def measure_gemm_gflops(threads: int = 1, n: int = 1024, repeats: int = 3) -> float:
    """Best fp32 GEMM rate in GFLOP/s (2·n³ per product) with the BLAS pool capped at ``threads``."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults on ``out``
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter_ns() - t0)
    return 2.0 * n**3 / best  # flop per ns == GFLOP/s


def measure_copy_bandwidth(threads: int = 1, nbytes: int = 128 * 2**20, repeats: int = 4) -> float:
    """Best copy bandwidth in GB/s counting bytes read plus bytes written, one chunk per thread.

    numpy releases the GIL inside a contiguous copy, so a thread pool really copies in parallel.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    count = max(nbytes // 8, threads)
    src = np.ones(count, dtype=np.float64)
    dst = np.empty_like(src)
    src_parts = np.array_split(src, threads)
    dst_parts = np.array_split(dst, threads)
    best = float("inf")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(np.copyto, dst_parts, src_parts))  # warm-up: first touch of ``dst``
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            list(pool.map(np.copyto, dst_parts, src_parts))
            best = min(best, time.perf_counter_ns() - t0)
    return 2.0 * src.nbytes / best  # bytes per ns == GB/s


def default_gemm_n(threads: int) -> int:
    """A GEMM big enough to keep ``threads`` cores busy yet short on one core (~0.1 s at 100 GFLOP/s)."""
    if threads <= 2:
        return 1024
    return 1536 if threads <= 8 else 2048


def default_copy_bytes(l3_total_bytes: int | None = None, memory_bytes: int | None = None) -> int:
    """Four times the last-level cache (so the copy streams from DRAM), at least 128 MiB, at most 1 GiB.

    Large-L3 parts (EPYC with 3D V-Cache: over 1 GiB of L3) cannot be beaten within the time budget; the
    cap keeps the measurement short and the result is then an upper bound, which ``copy_bytes`` records.
    """
    size = max(128 * 2**20, 4 * (l3_total_bytes or 0))
    size = min(size, 2**30)
    if memory_bytes:
        size = min(size, memory_bytes // 8)
    return size


def measure_ceilings(
    threads: int = 1,
    gemm_n: int | None = None,
    copy_bytes: int | None = None,
    repeats: int = 3,
    l3_total_bytes: int | None = None,
    memory_bytes: int | None = None,
) -> Ceilings:
    """Measure both roofs now (about 0.3 s on one core here, plus first-touch of the copy buffers)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer; got {threads!r}")
    gemm_n = default_gemm_n(threads) if gemm_n is None else gemm_n
    copy_bytes = default_copy_bytes(l3_total_bytes, memory_bytes) if copy_bytes is None else copy_bytes
    if gemm_n < 16 or copy_bytes < 2**16 or repeats < 1:
        raise ConfigError("ceiling sizes must be gemm_n >= 16, copy_bytes >= 64 KiB, repeats >= 1")
    t0 = time.perf_counter()
    gflops = measure_gemm_gflops(threads, gemm_n, repeats)
    bandwidth = measure_copy_bandwidth(threads, copy_bytes, repeats + 1)
    return Ceilings(
        peak_gflops=gflops,
        mem_bandwidth_gbs=bandwidth,
        threads=threads,
        backend=_blas_name(),
        gemm_n=gemm_n,
        copy_bytes=copy_bytes,
        repeats=repeats,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=time.perf_counter() - t0,
    )


def cache_path(fingerprint: str) -> Path:
    return inferperf_home() / "device" / f"{fingerprint}.json"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    """Atomic replace, so concurrent workers never read a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_ceilings(
    fingerprint: str,
    threads: int = 1,
    refresh: bool = False,
    measure: Callable[[int], Ceilings] = measure_ceilings,
    identity: dict[str, Any] | None = None,
) -> Ceilings:
    """Ceilings for this device at ``threads`` threads, from ``$INFERPERF_HOME/device/<fingerprint>.json``.

    The file holds one entry per thread count; ``refresh`` re-measures and overwrites that entry.
    ``identity`` (the hardware description the fingerprint was made from) is stored alongside so a
    person can tell which machine a cache file belongs to.
    """
    path = cache_path(fingerprint)
    data = _load(path)
    entries = data.get("ceilings") if isinstance(data.get("ceilings"), dict) else {}
    entry = entries.get(str(threads))
    if not refresh and isinstance(entry, dict):
        try:
            return Ceilings.from_dict(entry)
        except TypeError:
            pass  # an older/corrupt entry: measure again
    result = measure(threads)
    entries[str(threads)] = result.to_dict()
    new_data: dict[str, Any] = {"fingerprint": fingerprint, "ceilings": entries}
    if identity is not None or "identity" in data:
        new_data["identity"] = identity if identity is not None else data["identity"]
    _save(path, new_data)
    return result
