"""PyTorch backends: eager and ``torch.compile``.

A model reaches a (possibly separate) measuring process as a :class:`TorchModelSpec`: a factory named by a
dotted path ``"package.module:function"`` plus JSON keyword arguments, and the input specification. The
factory returns either the ``torch.nn.Module`` or a pair ``(module, inputs)`` where ``inputs`` is a list
of :class:`InputSpec` or ``{"name", "shape", "dtype"}`` dicts; the spec's own ``inputs`` win when both are
given. A symbolic first dimension (a string or None) is the batch. The module is called with keyword
arguments named after the inputs, which works for Hugging Face models and for any ``forward(x)`` whose
parameter names match.

The spec can also be written as a JSON file (``{"factory": ..., "kwargs": ..., "inputs": [...]}``), and a
bare ``"module:function"`` string is a spec without kwargs; :func:`TorchModelSpec.parse` accepts all three.

The model is put in eval mode and run under ``torch.inference_mode()``, entered once when the session is
created and left on close, so the timed call pays for neither. On CUDA the call ends with
``torch.cuda.synchronize()`` so the timer sees the finished work. ``torch.compile`` compiles lazily, on the
first inference: its compile time is part of ``first_inference_ms`` (cold start), never of latency, and a
compile failure is a failed run with the compiler's message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.errors import ConfigError, ModelLoadError
from inferperf.measure.config import RunConfig
from inferperf.runtimes.base import Backend, InputSpec, RuntimeUnavailableError, Session, resolve_callable

_MB = 1024.0 * 1024.0


def _input_specs(raw: Any) -> list[InputSpec]:
    specs = [s if isinstance(s, InputSpec) else InputSpec.from_dict(s) for s in raw]
    if not specs:
        raise ConfigError("a torch model needs at least one input spec")
    return specs


@dataclass
class TorchModelSpec:
    """A picklable, JSON-able description of how to build a torch model in any process."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputSpec] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "factory": self.factory,
            "kwargs": dict(self.kwargs),
            "inputs": [s.to_dict() for s in self.inputs] if self.inputs is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TorchModelSpec:
        inputs = d.get("inputs")
        return cls(
            factory=str(d["factory"]),
            kwargs=dict(d.get("kwargs") or {}),
            inputs=_input_specs(inputs) if inputs is not None else None,
        )

    @classmethod
    def parse(cls, model: str | Mapping[str, Any] | TorchModelSpec) -> TorchModelSpec:
        """Accept a spec, its dict, a path to its JSON file, or a bare ``"module:function"`` string."""
        if isinstance(model, TorchModelSpec):
            return model
        if isinstance(model, Mapping):
            return cls.from_dict(model)
        if model.endswith(".json"):
            path = Path(model)
            if not path.is_file():
                raise ModelLoadError(f"torch model spec file not found: {model}")
            return cls.from_dict(json.loads(path.read_text()))
        return cls(factory=model)

    def build(self) -> tuple[Any, list[InputSpec]]:
        """Call the factory; return (module, input specs)."""
        made = resolve_callable(self.factory)(**self.kwargs)
        module, inputs = made if isinstance(made, tuple) else (made, None)
        if self.inputs is not None:
            inputs = self.inputs
        if inputs is None:
            raise ConfigError(
                f"model factory {self.factory!r} returned no input specification: give the spec 'inputs' "
                f"or return (module, inputs)"
            )
        return module, _input_specs(inputs)


def _configure_threads(torch: Any, config: RunConfig) -> None:
    torch.set_num_threads(config.intra_op_threads)
    if torch.get_num_interop_threads() != config.inter_op_threads:
        try:
            torch.set_num_interop_threads(config.inter_op_threads)
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot set {config.inter_op_threads} inter-op threads: this process already started "
                f"torch's inter-op pool with {torch.get_num_interop_threads()} ({exc}); measure in an "
                f"isolated process"
            ) from exc


class TorchSession(Session):
    def __init__(self, module: Any, inputs: list[InputSpec], config: RunConfig, compiled: bool) -> None:
        import torch

        self._torch = torch
        self._module = module
        self._config = config
        self._compiled = compiled
        self._device = torch.device("cuda" if config.provider == "cuda" else "cpu")
        self.input_specs = inputs
        self._mode = torch.inference_mode()
        self._mode.__enter__()
        self._closed = False

    def prepare_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        torch = self._torch
        out: dict[str, Any] = {}
        for name, arr in feeds.items():
            t = torch.from_numpy(np.ascontiguousarray(arr)).to(self._device)
            if self._config.precision == "fp16" and t.is_floating_point():
                t = t.half()
            out[name] = t
        return out

    def run(self, feeds: Any) -> Any:
        out = self._module(**feeds)
        if self._device.type == "cuda":
            self._torch.cuda.synchronize()
        return out

    def bind(self, feeds: Any) -> Callable[[], Any]:
        module = self._module
        if self._device.type == "cuda":
            sync = self._torch.cuda.synchronize

            def call_sync() -> Any:
                out = module(**feeds)
                sync()
                return out

            return call_sync

        def call() -> Any:
            return module(**feeds)

        return call

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._mode.__exit__(None, None, None)
        if self._config.flush_denormal:
            self._torch.set_flush_denormal(False)
        self._module = None

    def arena_mb(self) -> float | None:
        if self._device.type == "cuda":
            return float(self._torch.cuda.max_memory_reserved()) / _MB
        return None

    def provenance(self) -> dict[str, Any]:
        torch = self._torch
        d: dict[str, Any] = {
            "torch": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "flush_denormal": self._config.flush_denormal,
            "inference_mode": True,
            "compiled": self._compiled,
            "device": str(self._device),
        }
        if self._compiled:
            d["compile_backend"] = "inductor"
        if self._device.type == "cuda":
            d["cuda_device"] = torch.cuda.get_device_name(self._device)
        return d


class TorchBackend(Backend):
    name = "torch"
    library = "torch"
    compile = False

    @classmethod
    def available_providers(cls) -> list[str]:
        import torch

        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    def load(self, model: Any, config: RunConfig) -> TorchSession:
        """``model``: a TorchModelSpec (or anything :meth:`TorchModelSpec.parse` takes), a
        ``torch.nn.Module`` together with inputs as ``(module, inputs)``, or a bare module that has an
        ``input_specs`` attribute."""
        config.validate()
        if config.runtime != self.name:
            raise ConfigError(f"{type(self).__name__} cannot run a {config.runtime!r} config")
        import torch

        self.check_provider(config)
        _configure_threads(torch, config)
        if config.flush_denormal and not torch.set_flush_denormal(True):
            raise RuntimeUnavailableError("this CPU does not support flushing denormals (no SSE3)")
        torch.manual_seed(config.seed)
        if isinstance(model, torch.nn.Module):
            specs = getattr(model, "input_specs", None)
            if specs is None:
                raise ConfigError("pass a bare torch module as (module, inputs) or give it input_specs")
            module, inputs = model, _input_specs(specs)
        elif isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], torch.nn.Module):
            module, inputs = model[0], _input_specs(model[1])
        else:
            module, inputs = TorchModelSpec.parse(model).build()
        if not isinstance(module, torch.nn.Module):
            raise ModelLoadError(f"the model factory returned {type(module).__name__}, not a torch.nn.Module")
        module.eval()
        if config.provider == "cuda":
            module = module.to("cuda")
        if config.precision == "fp16":
            module = module.half()
        if self.compile:
            module = torch.compile(module)
        return TorchSession(module, inputs, config, compiled=self.compile)


class TorchCompileBackend(TorchBackend):
    name = "torch-compile"
    compile = True
