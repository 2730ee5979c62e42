"""The result of one measurement, in the one JSON shape the store and the CLI read.

Numbers that were not measured are None, never 0: a crashed run has no latency, no throughput and no
memory figure, and a reader must not be able to mistake it for a very fast one.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from inferperf.measure.config import ProtocolConfig, RunConfig

STATUSES = ("ok", "unstable", "failed", "timeout", "crashed")

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p999", "mean", "min", "max", "std")


_OOM_MARKERS = (
    "out of memory",
    "memoryerror",
    "bad_alloc",
    "bad allocation",
    "failed to allocate",
    "cannot allocate memory",
)


def looks_like_oom(message: str) -> bool:
    """Whether a runtime's error text says it ran out of memory (ORT, PyTorch, Python and libc wordings)."""
    low = message.lower()
    return any(m in low for m in _OOM_MARKERS)


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


@dataclass
class Measurement:
    """One measured (or failed) configuration.

    ``latency_ms`` holds the percentiles of ``samples_ms``; ``throughput`` is inferences·batch per second
    of the timed calls (batch / mean latency, single stream); ``energy_j`` is joules per inference call
    (one batch), with the meter's total and window in ``provenance["energy"]``; ``memory_mb`` is the peak
    RSS growth over the RSS before the session was created; ``cpu_util`` is the process's CPU time over
    the timed phase's wall time in percent (100 = one core busy; all threads counted, so it exceeds 100
    with several intra-op threads). ``valid`` is True only for status "ok".
    """

    config: RunConfig
    protocol: ProtocolConfig
    status: str = "ok"
    invalid_reasons: list[str] = field(default_factory=list)
    error: str | None = None
    latency_ms: dict[str, float] | None = None
    cv: float | None = None
    ci95_ms: list[float] | None = None
    n_samples: int = 0
    samples_ms: list[float] = field(default_factory=list)
    throughput: float | None = None
    cold_start_ms: float | None = None
    session_create_ms: float | None = None
    first_inference_ms: float | None = None
    memory_mb: float | None = None
    peak_rss_mb: float | None = None
    arena_mb: float | None = None
    energy_j: float | None = None
    energy_source: str | None = None
    power_w: float | None = None
    cpu_util: float | None = None
    kernels: list[dict[str, Any]] | None = None
    fusion_edges: list[dict[str, Any]] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=now_iso)
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown measurement status {self.status!r}")

    @property
    def valid(self) -> bool:
        return self.status == "ok" and not self.invalid_reasons

    @classmethod
    def failure(
        cls,
        config: RunConfig,
        protocol: ProtocolConfig,
        status: str,
        error: str,
        *,
        provenance: dict[str, Any] | None = None,
        started_at: str | None = None,
        duration_s: float = 0.0,
    ) -> Measurement:
        """A run that produced no timing: failed (the runtime refused), timeout, or crashed."""
        if status not in ("failed", "timeout", "crashed"):
            raise ValueError(f"not a failure status: {status!r}")
        reasons = [status]
        if looks_like_oom(error):
            reasons.append("out of memory")
        return cls(
            config=config,
            protocol=protocol,
            status=status,
            invalid_reasons=reasons,
            error=error,
            provenance=dict(provenance or {}),
            started_at=started_at or now_iso(),
            duration_s=duration_s,
        )

    def to_dict(self) -> dict[str, Any]:
        config = self.config.to_dict()
        config["protocol"] = self.protocol.to_dict()
        return {
            "config": config,
            "status": self.status,
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
            "error": self.error,
            "latency_ms": dict(self.latency_ms) if self.latency_ms is not None else None,
            "cv": self.cv,
            "ci95_ms": list(self.ci95_ms) if self.ci95_ms is not None else None,
            "n_samples": self.n_samples,
            "samples_ms": list(self.samples_ms),
            "throughput": self.throughput,
            "cold_start_ms": self.cold_start_ms,
            "session_create_ms": self.session_create_ms,
            "first_inference_ms": self.first_inference_ms,
            "memory_mb": self.memory_mb,
            "peak_rss_mb": self.peak_rss_mb,
            "arena_mb": self.arena_mb,
            "energy_j": self.energy_j,
            "energy_source": self.energy_source,
            "power_w": self.power_w,
            "cpu_util": self.cpu_util,
            "kernels": self.kernels,
            "fusion_edges": self.fusion_edges,
            "provenance": self.provenance,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        cfg = dict(d["config"])
        protocol = ProtocolConfig.from_dict(cfg.pop("protocol", {}) or {})
        return cls(
            config=RunConfig.from_dict(cfg),
            protocol=protocol,
            status=d["status"],
            invalid_reasons=list(d.get("invalid_reasons", [])),
            error=d.get("error"),
            latency_ms=dict(d["latency_ms"]) if d.get("latency_ms") is not None else None,
            cv=d.get("cv"),
            ci95_ms=list(d["ci95_ms"]) if d.get("ci95_ms") is not None else None,
            n_samples=int(d.get("n_samples", 0)),
            samples_ms=list(d.get("samples_ms", [])),
            throughput=d.get("throughput"),
            cold_start_ms=d.get("cold_start_ms"),
            session_create_ms=d.get("session_create_ms"),
            first_inference_ms=d.get("first_inference_ms"),
            memory_mb=d.get("memory_mb"),
            peak_rss_mb=d.get("peak_rss_mb"),
            arena_mb=d.get("arena_mb"),
            energy_j=d.get("energy_j"),
            energy_source=d.get("energy_source"),
            power_w=d.get("power_w"),
            cpu_util=d.get("cpu_util"),
            kernels=d.get("kernels"),
            fusion_edges=d.get("fusion_edges"),
            provenance=dict(d.get("provenance", {})),
            started_at=d.get("started_at", ""),
            duration_s=float(d.get("duration_s", 0.0)),
        )
