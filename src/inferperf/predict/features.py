"""Inputs every predictor shares: graph static features + run configuration + device features.

The graph encodings come from :mod:`inferperf.ir.features` (versioned there); this module adds the two
vectors that make one graph's latency differ between measurements — the run configuration (batch, threads,
runtime, …) and the device — and records their layout so an artifact can refuse inputs laid out
differently. ``threads_used`` of the device features is taken from the configuration's
``intra_op_threads``: the device descriptor's value is the thread count of the run that described the
device, which says nothing about the configuration being predicted.

:class:`NodeFeatureCache` memoises node feature rows by everything the row depends on: graphs of one zoo
repeat the same (op, shapes, cost) nodes many times, and computing a row in Python dominates the cost of
batched prediction.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferperf.device.descriptor import DEVICE_FEATURE_NAMES
from inferperf.errors import InferperfError
from inferperf.ir.features import (
    NODE_FEATURE_DIM,
    STATIC_FEATURE_NAMES,
    node_feature_vector,
    op_category,
    static_feature_vector,
)
from inferperf.ir.graph import ModelGraph, Node
from inferperf.measure.config import OPT_LEVELS, PRECISIONS, PROVIDERS, RUNTIMES

#: bump when the config/device layout or its scaling changes (the graph encoding has its own version)
LAYOUT_VERSION = 1

CONFIG_FEATURE_NAMES: tuple[str, ...] = (
    "log2_batch_size",
    "intra_op_threads",
    "log2_intra_op_threads",
    "inter_op_threads",
    "opt_level",  # index in OPT_LEVELS (disable=0 … all=3); NaN when unknown
    "parallel_execution",
    *(f"runtime={r}" for r in RUNTIMES),
    *(f"provider={p}" for p in PROVIDERS),
    *(f"precision={p}" for p in PRECISIONS),
)

TABULAR_FEATURE_NAMES: tuple[str, ...] = (
    *(f"static:{n}" for n in STATIC_FEATURE_NAMES),
    *(f"config:{n}" for n in CONFIG_FEATURE_NAMES),
    *(f"device:{n}" for n in DEVICE_FEATURE_NAMES),
)


class FeatureLayoutError(InferperfError):
    """An artifact was trained with a different configuration/device feature layout."""


def feature_layout() -> dict[str, Any]:
    """The config + device layout saved with each artifact, next to the graph encoding info."""
    return {
        "version": LAYOUT_VERSION,
        "config_feature_names": list(CONFIG_FEATURE_NAMES),
        "device_feature_names": list(DEVICE_FEATURE_NAMES),
    }


def check_layout(layout: dict[str, Any] | None) -> None:
    """Raise :class:`FeatureLayoutError` when an artifact's layout differs from this version's."""
    current = feature_layout()
    if not isinstance(layout, dict):
        raise FeatureLayoutError("the predictor artifact records no configuration/device feature layout")
    problems = []
    if layout.get("version") != current["version"]:
        problems.append(f"layout version {layout.get('version')!r} vs {current['version']!r} here")
    for key in ("config_feature_names", "device_feature_names"):
        if list(layout.get(key) or []) != current[key]:
            theirs = list(layout.get(key) or [])
            missing = [x for x in current[key] if x not in theirs]
            unknown = [x for x in theirs if x not in current[key]]
            problems.append(f"{key}: missing in artifact {missing[:5]}, unknown here {unknown[:5]}")
    if problems:
        raise FeatureLayoutError(
            "the predictor was trained with a different configuration/device feature layout — "
            + "; ".join(problems)
            + ". Retrain the predictor with this version."
        )


def _num(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def batch_size_of(config: dict[str, Any], graph: ModelGraph | None = None) -> int | None:
    b = config.get("batch_size")
    if b is None and graph is not None:
        b = graph.batch_size
    return int(b) if b is not None else None


def config_vector(config: dict[str, Any], graph: ModelGraph | None = None) -> np.ndarray:
    """Run configuration as floats (:data:`CONFIG_FEATURE_NAMES`); the batch falls back to the graph's."""
    v = np.zeros(len(CONFIG_FEATURE_NAMES), dtype=np.float64)
    batch = batch_size_of(config, graph)
    threads = _num(config.get("intra_op_threads", 1))
    inter = _num(config.get("inter_op_threads", 1))
    v[0] = math.log2(batch) if batch and batch > 0 else math.nan
    v[1] = threads
    v[2] = math.log2(threads) if threads and threads > 0 else math.nan
    v[3] = inter
    opt = config.get("opt_level", "all")
    v[4] = float(OPT_LEVELS.index(opt)) if opt in OPT_LEVELS else math.nan
    v[5] = 1.0 if config.get("execution_mode") == "parallel" else 0.0
    i = 6
    for options, key, default in (
        (RUNTIMES, "runtime", "onnxruntime"),
        (PROVIDERS, "provider", "cpu"),
        (PRECISIONS, "precision", "fp32"),
    ):
        value = config.get(key, default)
        for opt_value in options:
            v[i] = 1.0 if value == opt_value else 0.0
            i += 1
    return v


def device_vector(device: dict[str, Any], config: dict[str, Any] | None = None) -> np.ndarray:
    """Device features (:data:`DEVICE_FEATURE_NAMES`); missing ones are NaN, never 0."""
    feats = device.get("features") or {}
    v = np.array(
        [_num(feats.get(n)) if feats.get(n) is not None else math.nan for n in DEVICE_FEATURE_NAMES],
        dtype=np.float64,
    )
    if config is not None and "threads_used" in DEVICE_FEATURE_NAMES:
        t = _num(config.get("intra_op_threads"))
        if not math.isnan(t):
            v[DEVICE_FEATURE_NAMES.index("threads_used")] = t
    return v


def _static_vector(graph: ModelGraph) -> np.ndarray:
    """Memoised on the graph: one prediction reads a graph's static features twice (the tabular inputs and
    the OOD score)."""
    return graph.derived(("static",), lambda: np.asarray(static_feature_vector(graph), dtype=np.float64))


def static_matrix(graphs: Sequence[ModelGraph]) -> np.ndarray:
    if not graphs:
        return np.zeros((0, len(STATIC_FEATURE_NAMES)))
    return np.stack([_static_vector(g) for g in graphs]).astype(np.float64)


def tabular_matrix(
    graphs: Sequence[ModelGraph],
    configs: Sequence[dict[str, Any]],
    devices: Sequence[dict[str, Any]],
    static: np.ndarray | None = None,
) -> np.ndarray:
    """[n, len(TABULAR_FEATURE_NAMES)] float64 with NaN for unknown values."""
    if not (len(graphs) == len(configs) == len(devices)):
        raise InferperfError(
            f"{len(graphs)} graphs, {len(configs)} configs and {len(devices)} devices: "
            "one of each per prediction"
        )
    if static is None:
        static = static_matrix(graphs)
    if not graphs:
        return np.zeros((0, len(TABULAR_FEATURE_NAMES)))
    cfg = np.stack([config_vector(c, g) for c, g in zip(configs, graphs, strict=True)])
    dev = np.stack([device_vector(d, c) for d, c in zip(devices, configs, strict=True)])
    return np.concatenate([static, cfg, dev], axis=1)


class Standardizer:
    """Column scaling fitted on training rows: (x - mean) / scale, NaN → 0 (the mean) afterwards.

    Columns that only hold 0/1 in training (one-hots, flags) are left as they are, and scales have a floor,
    so that a column constant in training still yields a large value for an unusual input instead of a
    division by zero.
    """

    def __init__(self, floor: float = 0.1) -> None:
        self.floor = floor
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            finite = np.where(np.isfinite(x), x, np.nan)
            mean = np.nanmean(finite, axis=0) if len(x) else np.zeros(x.shape[1])
            std = np.nanstd(finite, axis=0) if len(x) else np.ones(x.shape[1])
        mean = np.nan_to_num(mean, nan=0.0)
        std = np.nan_to_num(std, nan=0.0)
        binary = (
            np.all(np.isnan(finite) | (finite == 0) | (finite == 1), axis=0)
            if len(x)
            else np.zeros(x.shape[1], dtype=bool)
        )
        self.mean = np.where(binary, 0.0, mean)
        self.scale = np.where(binary, 1.0, np.maximum(std, self.floor))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None or self.scale is None:
            raise InferperfError("Standardizer used before fit")
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def state(self) -> dict[str, list[float]]:
        return {
            "mean": list(map(float, self.mean)),
            "scale": list(map(float, self.scale)),
            "floor": self.floor,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Standardizer:
        s = cls(floor=float(state.get("floor", 0.1)))
        s.mean = np.asarray(state["mean"], dtype=np.float64)
        s.scale = np.asarray(state["scale"], dtype=np.float64)
        return s


# ---- node features with memoisation ----------------------------------------------------------------------
def _node_key(node: Node) -> tuple:
    """Everything :func:`node_feature_vector` reads from a node (the name and index are not read)."""
    qt = node.qualified_type
    window = op_category(qt) in ("conv", "pooling")
    return (
        qt,
        tuple((bool(t.name), t.shape, t.is_weight) for t in node.inputs),
        tuple((bool(t.name), t.shape) for t in node.outputs),
        node.flops,
        node.macs,
        node.params,
        node.weight_bytes,
        node.activation_bytes_read,
        node.bytes_written,
        node.has_formula,
        repr(sorted(node.attributes.items())) if window else None,
    )


class NodeFeatureCache:
    """Memoised :func:`~inferperf.ir.features.node_feature_matrix` (LRU over distinct nodes)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._rows: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def row(self, node: Node) -> np.ndarray:
        key = _node_key(node)
        row = self._rows.get(key)
        if row is not None:
            self.hits += 1
            self._rows.move_to_end(key)
            return row
        self.misses += 1
        row = node_feature_vector(node)
        self._rows[key] = row
        if len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
        return row

    def matrix(self, graph: ModelGraph) -> np.ndarray:
        if not graph.nodes:
            return np.zeros((0, NODE_FEATURE_DIM), dtype=np.float32)
        return np.stack([self.row(n) for n in graph.nodes])


#: process-wide cache shared by the graph predictors
NODE_FEATURES = NodeFeatureCache()
