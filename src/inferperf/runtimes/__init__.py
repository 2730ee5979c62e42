"""Runtime registry: runtime name → Backend class, imported only when asked for.

The registry holds dotted paths, not classes, so importing :mod:`inferperf.runtimes` never imports torch or
onnxruntime (the CLI imports it at start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from inferperf.errors import ConfigError

if TYPE_CHECKING:
    from inferperf.runtimes.base import Backend

_REGISTRY: dict[str, str | type[Backend]] = {
    "onnxruntime": "inferperf.runtimes.onnxruntime:OrtBackend",
    "torch": "inferperf.runtimes.torch_backend:TorchBackend",
    "torch-compile": "inferperf.runtimes.torch_backend:TorchCompileBackend",
}


def register_backend(name: str, backend: str | type[Backend]) -> None:
    """Add or replace a runtime; ``backend`` is a class or a lazy ``"module:Class"`` path."""
    _REGISTRY[name] = backend


def backend_names() -> list[str]:
    return list(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown runtime {name!r}; known: {', '.join(_REGISTRY)}") from None
    if isinstance(entry, str):
        mod_name, _, cls_name = entry.partition(":")
        entry = getattr(importlib.import_module(mod_name), cls_name)
        _REGISTRY[name] = entry
    return entry


def get_backend(name: str) -> Backend:
    return backend_class(name)()


def available_runtimes() -> dict[str, list[str]]:
    """Runtime name → providers usable here; a runtime whose library is missing maps to []."""
    out: dict[str, list[str]] = {}
    for name in _REGISTRY:
        try:
            out[name] = backend_class(name).available_providers()
        except ImportError:
            out[name] = []
    return out


__all__ = ["available_runtimes", "backend_class", "backend_names", "get_backend", "register_backend"]
