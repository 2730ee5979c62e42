"""The one interface every inference runtime is measured through.

A :class:`Backend` turns a model plus a :class:`RunConfig` into a :class:`Session`. The protocol only ever
sees ``Session.bind(feeds)``: a zero-argument callable that performs exactly one inference on pre-built
inputs, so the timing loop measures the runtime and not Python argument handling.

Input feeds are generated here, once, from the model's input specification: exact shapes (the batch
dimension bound to ``batch_size``, other symbolic dimensions from ``RunConfig.dim_values``), seeded values,
float tensors from a standard normal, integer ids in a valid range, masks of ones.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from inferperf.errors import ConfigError, ModelLoadError, UnboundDimensionError
from inferperf.measure.config import SUPPORTED_PRECISIONS, RunConfig

#: default exclusive upper bound of integer id inputs when the model metadata gives no vocabulary size
DEFAULT_INT_HIGH = 100

_ONNX_TYPE_TO_NUMPY = {
    "float": "float32",
    "float16": "float16",
    "double": "float64",
    "bfloat16": "bfloat16",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "bool",
}

_TENSOR_TYPE = re.compile(r"^tensor\((\w+)\)$")


class RuntimeUnavailableError(ConfigError):
    """The requested runtime or provider is not installed or not usable on this machine."""


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, dimensions (ints, or a str/None for a symbolic dimension) and numpy dtype."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        shape = tuple(None if s is None or (isinstance(s, int) and s < 0) else s for s in d["shape"])
        return cls(name=str(d["name"]), shape=shape, dtype=str(d.get("dtype", "float32")))


def numpy_dtype_of_onnx_type(type_str: str) -> str:
    """``tensor(float)`` → ``float32``; raises ConfigError for sequences, maps and unknown element types."""
    m = _TENSOR_TYPE.match(type_str)
    if not m or m.group(1) not in _ONNX_TYPE_TO_NUMPY:
        raise ConfigError(f"cannot generate an input of type {type_str!r}: only plain tensors are supported")
    return _ONNX_TYPE_TO_NUMPY[m.group(1)]


def resolve_shapes(
    specs: list[InputSpec], batch_size: int, dim_values: Mapping[str, int] | None = None
) -> dict[str, tuple[int, ...]]:
    """Bind every dimension of every input to a concrete size.

    A symbolic dimension takes its value from ``dim_values`` by name; otherwise a symbolic first dimension
    is the batch. When every input has a fixed first dimension the model was exported for one batch size,
    and asking for another one is an error rather than a silently mislabelled measurement.
    """
    dim_values = dict(dim_values or {})
    out: dict[str, tuple[int, ...]] = {}
    any_dynamic_batch = False
    for spec in specs:
        dims: list[int] = []
        for i, d in enumerate(spec.shape):
            if isinstance(d, int) and d >= 0:
                dims.append(d)
            elif isinstance(d, str) and d in dim_values:
                dims.append(int(dim_values[d]))
            elif i == 0:
                dims.append(batch_size)
                any_dynamic_batch = True
            else:
                hint = (
                    f"set it with dim_values={{{d!r}: N}}"
                    if isinstance(d, str) and d
                    else "the dimension is unnamed; re-export the model with static shapes"
                )
                raise UnboundDimensionError(spec.name, str(d) if d else f"dim {i}", hint)
        out[spec.name] = tuple(dims)
    first = specs[0] if specs else None
    if first is not None and not any_dynamic_batch and first.shape and isinstance(first.shape[0], int):
        fixed = first.shape[0]
        if fixed != batch_size:
            raise ConfigError(
                f"the model's input {first.name!r} has a fixed batch dimension of {fixed}, but batch_size is "
                f"{batch_size}; re-export the model for batch {batch_size} or set batch_size={fixed}"
            )
    return out


def make_feeds(
    specs: list[InputSpec],
    shapes: Mapping[str, tuple[int, ...]],
    seed: int,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Seeded input arrays with exactly the measured shapes.

    Integer inputs are ids: uniform in ``[0, high)`` where ``high`` is ``metadata["input_ranges"][name]``
    (a ``[low, high)`` pair), else ``metadata["vocab_size"]``, else :data:`DEFAULT_INT_HIGH` — ids beyond
    the embedding table would make Gather fail or read garbage. Names containing "mask" are all ones
    (nothing masked: the full sequence is computed), ``token_type`` ids are zeros and ``position_ids``
    count up along the last axis, as a tokenizer would produce them.
    """
    metadata = metadata or {}
    ranges = metadata.get("input_ranges") or {}
    vocab = metadata.get("vocab_size")
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = shapes[spec.name]
        dtype = np.dtype(spec.dtype) if spec.dtype != "bfloat16" else None
        if dtype is None:
            raise ConfigError(f"input {spec.name!r} is bfloat16, which numpy feeds cannot represent")
        lname = spec.name.lower()
        if dtype.kind == "b" or "mask" in lname:
            arr = np.ones(shape, dtype=dtype)
        elif dtype.kind in "iu":
            if "token_type" in lname:
                arr = np.zeros(shape, dtype=dtype)
            elif "position_ids" in lname and shape:
                arr = np.broadcast_to(np.arange(shape[-1], dtype=dtype), shape).copy()
            else:
                if spec.name in ranges:
                    low, high = (int(v) for v in ranges[spec.name])
                else:
                    low, high = 0, int(vocab) if vocab else DEFAULT_INT_HIGH
                if high <= low:
                    raise ConfigError(f"empty id range [{low}, {high}) for input {spec.name!r}")
                arr = rng.integers(low, high, size=shape, dtype=dtype)
        elif dtype.kind == "f":
            arr = rng.standard_normal(size=shape, dtype=np.float32).astype(dtype, copy=False)
        else:
            raise ConfigError(f"cannot generate input {spec.name!r} of dtype {spec.dtype}")
        feeds[spec.name] = np.ascontiguousarray(arr)
    return feeds


def resolve_callable(path: str, what: str = "model factory") -> Callable[..., Any]:
    """Import ``"package.module:attr"`` (attr may be dotted) and return the attribute.

    Functions cross process boundaries by this name, since the spawned measuring process cannot receive
    a function object.
    """
    if ":" not in path:
        raise ConfigError(f"expected 'package.module:function', got {path!r}")
    mod_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ModelLoadError(f"cannot import {mod_name!r} for {what} {path!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"{mod_name!r} has no attribute {attr!r} ({what} {path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelLoadError(f"{what} {path!r} is not callable")
    return obj


class Session(ABC):
    """A loaded model ready to run, bound to one RunConfig."""

    input_specs: list[InputSpec]

    @abstractmethod
    def prepare_feeds(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """Convert numpy feeds into whatever :meth:`run` consumes (tensors, device buffers)."""

    @abstractmethod
    def run(self, feeds: Any) -> Any:
        """One inference on prepared feeds; returns the outputs (synchronised for GPU backends)."""

    def bind(self, feeds: Any) -> Callable[[], Any]:
        """A zero-argument callable doing one inference on ``feeds`` with the least Python overhead."""
        run = self.run

        def call() -> Any:
            return run(feeds)

        return call

    @abstractmethod
    def close(self) -> None:
        """Release the session; idempotent."""

    def provenance(self) -> dict[str, Any]:
        """Settings the runtime actually applied (providers, threads, flags), for the result's provenance."""
        return {}

    def arena_mb(self) -> float | None:
        """Bytes the runtime's own allocator holds, where the runtime exposes it; None otherwise."""
        return None


class Backend(ABC):
    """Factory of sessions for one runtime."""

    name: ClassVar[str]
    #: the library whose version identifies this backend in provenance (an importlib.metadata name)
    library: ClassVar[str]

    @classmethod
    @abstractmethod
    def available_providers(cls) -> list[str]:
        """Providers (cpu / cuda / tensorrt) usable on this machine right now."""

    @classmethod
    def import_runtime(cls) -> None:
        """Import the runtime library, so a later ``load`` times session creation, not the import."""
        importlib.import_module(cls.library)

    @classmethod
    def supported_precisions(cls, provider: str) -> frozenset[str]:
        return SUPPORTED_PRECISIONS.get((cls.name, provider), frozenset())

    @abstractmethod
    def load(self, model: Any, config: RunConfig) -> Session:
        """Create a session; the time this takes is the cold-start session-creation time."""

    def check_provider(self, config: RunConfig) -> None:
        """Raise a clear error when the configured provider is not present on this machine."""
        available = self.available_providers()
        if config.provider not in available:
            raise RuntimeUnavailableError(
                f"provider {config.provider!r} is not available for {self.name} on this machine "
                f"(available: {', '.join(available) or 'none'})"
            )
