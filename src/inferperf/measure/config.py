"""What one measurement is asked to do: the runtime settings (:class:`RunConfig`) and the timing protocol
(:class:`ProtocolConfig`).

Both are plain dataclasses that round-trip through JSON, because they cross a process boundary (the
isolated child gets them as JSON) and are stored with every result. ``RunConfig.key()`` is the identity a
store uses to resume a sweep or skip a configuration it already measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from inferperf.errors import ConfigError

RUNTIMES = ("onnxruntime", "torch", "torch-compile")
PROVIDERS = ("cpu", "cuda", "tensorrt")
OPT_LEVELS = ("disable", "basic", "extended", "all")
PRECISIONS = ("fp32", "fp16", "int8")
EXECUTION_MODES = ("sequential", "parallel")
PROTOCOL_MODES = ("adaptive", "fixed")
CV_METHODS = ("robust", "std")

#: Which (runtime, provider) pairs may use which precision. fp16/int8 are runtime-side conversions (ORT
#: float16 conversion on CUDA, TensorRT builder flags, ``module.half()`` on a CUDA device); CPU execution
#: providers here have no such switch, so a quantized or half model is measured as what it is, with
#: precision "fp32" meaning "no conversion".
SUPPORTED_PRECISIONS: dict[tuple[str, str], frozenset[str]] = {
    ("onnxruntime", "cpu"): frozenset({"fp32"}),
    ("onnxruntime", "cuda"): frozenset({"fp32", "fp16"}),
    ("onnxruntime", "tensorrt"): frozenset({"fp32", "fp16", "int8"}),
    ("torch", "cpu"): frozenset({"fp32"}),
    ("torch", "cuda"): frozenset({"fp32", "fp16"}),
    ("torch-compile", "cpu"): frozenset({"fp32"}),
    ("torch-compile", "cuda"): frozenset({"fp32", "fp16"}),
}

#: Fields that name an output location, not a setting: they never change what is measured, so they stay
#: out of the identity key.
_KEY_EXCLUDED = frozenset({"optimized_model_path"})


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


@dataclass
class RunConfig:
    """Runtime settings of one measurement.

    ``affinity`` None means automatic: when fewer threads than allowed cores are used, the measuring
    process is pinned to the first ``intra_op_threads`` cores, so the scheduler cannot migrate the work
    between cores mid-run. ``dim_values`` binds symbolic input dimensions other than the batch dimension
    (e.g. ``{"sequence": 128}``). ``session_config`` and ``provider_options`` pass straight through to ONNX
    Runtime (``SessionOptions.add_session_config_entry`` and the provider options dict).
    ``flush_denormal`` is on by default because denormal arithmetic can be 10-100x slower on x86 and makes
    latency depend on the random weights rather than the model.
    """

    runtime: str = "onnxruntime"
    batch_size: int = 1
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    opt_level: str = "all"
    provider: str = "cpu"
    precision: str = "fp32"
    affinity: list[int] | None = None
    profile: bool = False
    seed: int = 0
    execution_mode: str = "sequential"
    cpu_mem_arena: bool = True
    flush_denormal: bool = True
    dim_values: dict[str, int] = field(default_factory=dict)
    session_config: dict[str, str] = field(default_factory=dict)
    provider_options: dict[str, Any] = field(default_factory=dict)
    optimized_model_path: str | None = None
    #: rewrite the model with onnxscript's ORT fusions (Attention, SkipLayerNorm, BiasGelu) before loading;
    #: part of the runtime's optimization, so fusion labels still map to the original graph
    attention_fusion: bool = False

    def validate(self) -> RunConfig:
        """Raise :class:`ConfigError` for any value no backend could honour; returns self for chaining.

        Whether the requested provider is actually present is checked at load time by the backend (it
        needs the runtime imported); everything decidable from the values alone is checked here.
        """
        _choice("runtime", self.runtime, RUNTIMES)
        _choice("provider", self.provider, PROVIDERS)
        _choice("opt_level", self.opt_level, OPT_LEVELS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("execution_mode", self.execution_mode, EXECUTION_MODES)
        _positive_int("batch_size", self.batch_size)
        _positive_int("intra_op_threads", self.intra_op_threads)
        _positive_int("inter_op_threads", self.inter_op_threads)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer; got {self.seed!r}")
        if (self.runtime, self.provider) not in SUPPORTED_PRECISIONS:
            raise ConfigError(
                f"runtime {self.runtime!r} has no {self.provider!r} provider "
                f"(TensorRT is only reachable through onnxruntime)"
            )
        allowed = SUPPORTED_PRECISIONS[(self.runtime, self.provider)]
        if self.precision not in allowed:
            raise ConfigError(
                f"precision {self.precision!r} is not supported by {self.runtime} on {self.provider} "
                f"(supported: {', '.join(sorted(allowed))}); to measure a model that is already "
                f"half-precision or quantized, pass it as is with precision 'fp32'"
            )
        if self.runtime != "onnxruntime" and self.opt_level != "all":
            raise ConfigError(
                f"opt_level {self.opt_level!r} only applies to onnxruntime; {self.runtime} runs with its "
                f"own default optimizations (opt_level 'all')"
            )
        if self.attention_fusion and self.runtime != "onnxruntime":
            raise ConfigError("attention_fusion rewrites ONNX graphs: it only applies to onnxruntime")
        if self.affinity is not None:
            if not self.affinity or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in self.affinity):
                raise ConfigError(f"affinity must be a non-empty list of core ids; got {self.affinity!r}")
            if len(set(self.affinity)) != len(self.affinity):
                raise ConfigError(f"affinity lists a core twice: {self.affinity!r}")
        for name, value in self.dim_values.items():
            _positive_int(f"dim_values[{name!r}]", value)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["affinity"] = list(self.affinity) if self.affinity is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Build from a dict, ignoring keys that are not RunConfig fields (e.g. the nested protocol)."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if kwargs.get("affinity") is not None:
            kwargs["affinity"] = list(kwargs["affinity"])
        for k in ("dim_values", "session_config", "provider_options"):
            if kwargs.get(k) is not None:
                kwargs[k] = dict(kwargs[k])
        return cls(**kwargs)

    def key(self) -> str:
        """A stable 16-hex-digit identity of the settings (canonical JSON, sorted keys, SHA-256)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _KEY_EXCLUDED}
        return _digest(d)


@dataclass
class ProtocolConfig:
    """How long and how often to time.

    Adaptive mode times calls in blocks and stops once ``min_repeats`` calls and ``min_time_s`` of timed
    wall time are reached *and* the 95% confidence interval of the median lies within ±``target_ci_rel``
    of the median, or when ``max_time_s`` of timed wall time is spent. A block's size is at least
    ``block_size`` calls and long enough to last ``block_min_s``, so fast models do not pay the stopping
    test every few microseconds. ``max_time_s`` wins over ``min_repeats`` and ``min_time_s``: a model too
    slow for ten calls within the cap stops with fewer (``stop_reason`` "time_cap" in the result's
    provenance, with the CI it reached). A block whose CV exceeds ``cv_limit`` is discarded and repeated, up to
    ``max_block_retries`` times; if it stays noisy the result is flagged unstable. The block CV is by
    default the robust one (IQR/1.349 over the median, see :func:`inferperf.measure.stats.robust_cv`):
    with the classical std/mean a single scheduler stall in a block of thousands of microsecond calls
    flags every fast model as unstable, although the stall is genuine tail latency, not an unstable
    machine. ``cv_method="std"`` restores the classical rule. Fixed mode times
    exactly ``fixed_runs`` calls with no stopping rule and no retries (the comparison baseline).
    Warm-up runs at least ``warmup_runs`` calls and at least ``warmup_min_s`` seconds, but never longer
    than ``warmup_max_s``.
    """

    mode: str = "adaptive"
    min_repeats: int = 10
    min_time_s: float = 1.0
    max_time_s: float = 10.0
    target_ci_rel: float = 0.01
    confidence: float = 0.95
    block_size: int = 10
    block_min_s: float = 0.1
    cv_limit: float = 0.05
    cv_method: str = "robust"
    max_block_retries: int = 3
    warmup_runs: int = 5
    warmup_min_s: float = 0.2
    warmup_max_s: float = 10.0
    fixed_runs: int = 30

    def validate(self) -> ProtocolConfig:
        _choice("mode", self.mode, PROTOCOL_MODES)
        _choice("cv_method", self.cv_method, CV_METHODS)
        _positive_int("min_repeats", self.min_repeats)
        _positive_int("block_size", self.block_size)
        _positive_int("fixed_runs", self.fixed_runs)
        if isinstance(self.max_block_retries, bool) or self.max_block_retries < 0:
            raise ConfigError(f"max_block_retries must be >= 0; got {self.max_block_retries!r}")
        if isinstance(self.warmup_runs, bool) or self.warmup_runs < 1:
            raise ConfigError(f"warmup_runs must be >= 1 (the first inference is always run); got {self.warmup_runs!r}")
        for name in ("min_time_s", "block_min_s", "warmup_min_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        if self.max_time_s <= 0 or self.max_time_s < self.min_time_s:
            raise ConfigError(
                f"max_time_s must be positive and >= min_time_s; got {self.max_time_s} < {self.min_time_s}"
            )
        if self.warmup_max_s < self.warmup_min_s:
            raise ConfigError("warmup_max_s must be >= warmup_min_s")
        if not 0 < self.target_ci_rel < 1:
            raise ConfigError(f"target_ci_rel must be in (0, 1); got {self.target_ci_rel!r}")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"confidence must be in [0.5, 1); got {self.confidence!r}")
        if self.cv_limit <= 0:
            raise ConfigError(f"cv_limit must be positive; got {self.cv_limit!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProtocolConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def key(self) -> str:
        return _digest(self.to_dict())


def _digest(d: dict[str, Any]) -> str:
    canonical = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
