"""inferperf.store: the performance database (PerfDB) and the content-addressed model file store.

Attributes are imported lazily so that ``import inferperf.store.paths`` (used by the CLI at start-up) does
not pull in SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inferperf.store.db import PerfDB
    from inferperf.store.paths import inferperf_home, model_file_path, put_model_file
    from inferperf.store.records import config_key

__all__ = ["PerfDB", "config_key", "inferperf_home", "model_file_path", "put_model_file"]

_LAZY = {
    "PerfDB": "inferperf.store.db",
    "config_key": "inferperf.store.records",
    "inferperf_home": "inferperf.store.paths",
    "model_file_path": "inferperf.store.paths",
    "put_model_file": "inferperf.store.paths",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'inferperf.store' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(module), name)
