"""The one graph representation every later stage consumes.

A :class:`ModelGraph` is built from an ONNX model after shape inference. It keeps no weights, only what the
measurement, dataset and predictor stages need: per-node shapes, cost (FLOPs / MACs / bytes), the real
data-flow edges, and graph-level static features. It serialises to plain JSON so datasets can ship it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

DEFAULT_DOMAINS = ("", "ai.onnx")

#: element types whose weights count as parameters (``Node.params``)
FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})

#: bytes per element of ONNX tensor element types, by name
DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "int64": 8,
    "uint64": 8,
    "bool": 1,
    "float8e4m3fn": 1,
    "float8e5m2": 1,
    "string": 0,
}


def qualified_op(domain: str, op_type: str) -> str:
    """Domain-qualified op type: plain for the default ONNX domain, ``domain::Op`` otherwise.

    ORT's contrib ops (``com.microsoft::FusedConv``) and standard ops (``Conv``) must never collide in a
    vocabulary, while the common standard ops stay readable.
    """
    if domain in DEFAULT_DOMAINS:
        return op_type
    return f"{domain}::{op_type}"


@dataclass
class TensorInfo:
    """A tensor's static description. ``shape`` is None when shape inference could not resolve it."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    is_weight: bool = False

    @cached_property
    def numel(self) -> int | None:
        """Elements (None when the shape is unknown); computed once: shapes are fixed when a graph is built and
        the cost terms ask for sizes hundreds of thousands of times per batch."""
        if self.shape is None:
            return None
        return math.prod(self.shape) if self.shape else 1

    @cached_property
    def nbytes(self) -> int:
        """Size in bytes; 0 when unknown (the caller records a warning for unknown shapes)."""
        n = self.numel
        if n is None:
            return 0
        return n * DTYPE_BYTES.get(self.dtype, 4)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape) if self.shape is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorInfo:
        shape = tuple(d["shape"]) if d.get("shape") is not None else None
        return cls(name=d["name"], shape=shape, dtype=d["dtype"], is_weight=d.get("is_weight", False))


@dataclass
class Node:
    """One operator of the graph with its static cost.

    ``flops`` counts every arithmetic operation (a multiply-add is 2); ``macs`` counts multiply-accumulates
    of the dense linear-algebra ops only (conv, matmul, gemm, attention, recurrent cells), which is the
    quantity papers quote as "GMACs". ``has_formula`` is False when no cost formula exists for the op: its
    flops are then 0 *and* the graph lists it in ``warnings``.
    """

    index: int
    name: str
    op_type: str
    domain: str
    attributes: dict[str, Any]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    flops: int = 0
    macs: int = 0
    params: int = 0
    weight_bytes: int = 0
    activation_bytes_read: int = 0
    bytes_written: int = 0
    has_formula: bool = True
    module: str = ""

    @property
    def qualified_type(self) -> str:
        return qualified_op(self.domain, self.op_type)

    @property
    def bytes_read(self) -> int:
        return self.activation_bytes_read + self.weight_bytes

    @property
    def is_constant(self) -> bool:
        """Whether the node only produces weights (a Constant, or a node over weights alone that the runtime
        folds at session start): it does no work per inference."""
        named = False
        for t in self.outputs:  # a loop, not two comprehensions: the predictors ask this of every node often
            if t.name:
                if not t.is_weight:
                    return False
                named = True
        return named

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved; the x-axis of a roofline plot."""
        moved = self.bytes_read + self.bytes_written
        return self.flops / moved if moved else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "op_type": self.op_type,
            "domain": self.domain,
            "attributes": self.attributes,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "flops": self.flops,
            "macs": self.macs,
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "activation_bytes_read": self.activation_bytes_read,
            "bytes_written": self.bytes_written,
            "has_formula": self.has_formula,
            "module": self.module,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        return cls(
            index=d["index"],
            name=d["name"],
            op_type=d["op_type"],
            domain=d["domain"],
            attributes=d["attributes"],
            inputs=[TensorInfo.from_dict(t) for t in d["inputs"]],
            outputs=[TensorInfo.from_dict(t) for t in d["outputs"]],
            flops=d["flops"],
            macs=d["macs"],
            params=d["params"],
            weight_bytes=d["weight_bytes"],
            activation_bytes_read=d["activation_bytes_read"],
            bytes_written=d["bytes_written"],
            has_formula=d["has_formula"],
            module=d.get("module", ""),
        )


@dataclass
class Edge:
    """A producer → consumer data-flow edge carrying one tensor."""

    src: int
    dst: int
    tensor: str
    nbytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelGraph:
    """A model as a DAG of costed operators, without weights.

    ``metadata`` carries what the caller knows beyond the ONNX file: family, architecture name, batch size,
    sequence length / image size, source. ``warnings`` lists every op whose cost could not be computed and
    every tensor whose shape stayed unknown — never silently zero.
    """

    name: str
    nodes: list[Node]
    edges: list[Edge]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    opset: int
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    peak_activation_bytes: int = 0

    # ---- totals -------------------------------------------------------------------------------------
    @property
    def macs(self) -> int:
        return self.derived(("total", "macs"), lambda: sum(n.macs for n in self.nodes))

    @property
    def flops(self) -> int:
        return self.derived(("total", "flops"), lambda: sum(n.flops for n in self.nodes))

    @property
    def params(self) -> int:
        return self.derived(("total", "params"), lambda: sum(n.params for n in self.nodes))

    @property
    def weight_bytes(self) -> int:
        return self.derived(("total", "weight_bytes"), lambda: sum(n.weight_bytes for n in self.nodes))

    @property
    def activation_bytes(self) -> int:
        """Bytes of every intermediate and output tensor written once (the traffic of a naive runtime)."""
        return self.derived(("total", "activation_bytes"), lambda: sum(n.bytes_written for n in self.nodes))

    @property
    def memory_bytes(self) -> int:
        """Static memory estimate: weights plus the peak of simultaneously live activations."""
        return self.weight_bytes + self.peak_activation_bytes

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(Counter(n.qualified_type for n in self.nodes).most_common())

    @property
    def depth(self) -> int:
        """Number of nodes on the longest path (nodes are stored in topological order)."""
        return self.derived(("total", "depth"), self._depth)

    def _depth(self) -> int:
        if not self.nodes:
            return 0
        longest = [1] * len(self.nodes)
        preds: dict[int, list[int]] = {}
        for e in self.edges:
            preds.setdefault(e.dst, []).append(e.src)
        for n in self.nodes:
            for p in preds.get(n.index, ()):
                longest[n.index] = max(longest[n.index], longest[p] + 1)
        return max(longest)

    @property
    def batch_size(self) -> int | None:
        b = self.metadata.get("batch_size")
        if b is not None:
            return int(b)
        for t in self.inputs:
            if t.shape:
                return int(t.shape[0])
        return None

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary printed by ``inferperf graph --json``."""
        return {
            "name": self.name,
            "nodes": len(self.nodes),
            "edges": len(self.edges),
            "macs": self.macs,
            "flops": self.flops,
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "memory_bytes": self.memory_bytes,
            "depth": self.depth,
            "opset": self.opset,
            "op_counts": self.op_counts,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "metadata": self.metadata,
            "warnings": list(self.warnings),
        }

    # ---- derived quantities -------------------------------------------------------------------------
    def derived(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """``compute()``, once per graph object and ``key``: what the predictors derive from a graph (fusion
        rules' partition, cost rows, simulated memory, static features) is asked for by several stages and by
        every fit of a cross-validation, and a graph is not changed after it is built. The memo lives and dies
        with the graph (no global table to outgrow, no id that can be reused); :meth:`forget_derived` empties
        it, :meth:`derived_items` / :meth:`adopt_derived` move entries between processes."""
        memo = self.__dict__.setdefault("_derived", {})
        try:
            return memo[key]
        except KeyError:
            value = memo[key] = compute()
            return value

    def running_nodes(self) -> list[Node]:
        """The nodes that work at every inference (:attr:`Node.is_constant` false: the others are folded at
        session start), memoised: most cost terms walk them."""
        return self.derived(("running_nodes",), lambda: [n for n in self.nodes if not n.is_constant])

    def producers(self) -> dict[str, int]:
        """Tensor name → index of the node writing it, memoised: the fusion rules, the constant folding, the
        NCHWc layout and the memory simulation all look producers up, per node input."""
        return self.derived(("producers",), lambda: {t.name: n.index for n in self.nodes for t in n.outputs if t.name})

    def forget_derived(self) -> None:
        """Drop every memoised derived quantity (a speed benchmark's cold start)."""
        self.__dict__.pop("_derived", None)

    def derived_items(self, names: Collection[str]) -> dict[tuple[Any, ...], Any]:
        """The memo entries whose key starts with one of ``names`` (what a worker process hands back)."""
        memo = self.__dict__.get("_derived", {})
        return {k: v for k, v in memo.items() if k and k[0] in names}

    def adopt_derived(self, items: dict[tuple[Any, ...], Any]) -> None:
        """Add memo entries computed elsewhere for an identical graph (a worker's copy of this one)."""
        self.__dict__.setdefault("_derived", {}).update(items)

    # ---- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "opset": self.opset,
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [e.to_dict() for e in self.edges],
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "warnings": list(self.warnings),
            "metadata": self.metadata,
            "peak_activation_bytes": self.peak_activation_bytes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelGraph:
        return cls(
            name=d["name"],
            nodes=[Node.from_dict(n) for n in d["nodes"]],
            edges=[Edge(**e) for e in d["edges"]],
            inputs=[TensorInfo.from_dict(t) for t in d["inputs"]],
            outputs=[TensorInfo.from_dict(t) for t in d["outputs"]],
            opset=d["opset"],
            warnings=list(d.get("warnings", [])),
            metadata=dict(d.get("metadata", {})),
            peak_activation_bytes=d.get("peak_activation_bytes", 0),
        )
