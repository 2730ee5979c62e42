"""Reference MAC counts from onnx-tool, an independent implementation, for cross-checking our formulas.

Conventions differ in two places, handled here so callers compare like with like:

* onnx-tool adds one "MAC" per output element for a Conv / Gemm bias; ours counts that add as a FLOP.
  ``bias_as_flop=True`` (the default) removes it from onnx-tool's number.
* onnx-tool counts element-wise ops as MACs too (an Add is 1 MAC per element, an Exp 32); only the dense
  ops in :data:`DENSE_OPS` are comparable.

onnx-tool's ConvTranspose count (output volume × W[1:]) is not the transposed convolution's work (it
overcounts by stride²), so ConvTranspose is not in :data:`DENSE_OPS`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import onnx

DENSE_OPS = frozenset({"Conv", "Gemm", "MatMul", "Einsum"})


@dataclass(frozen=True)
class RefNode:
    name: str  # ONNX node name (onnx-tool's generated "<op>_<n>" when the node had none)
    op_type: str
    output: str  # first output tensor name: a stable key when node names are missing
    macs: int  # dense-op MACs in our convention (see bias_as_flop)
    raw_macs: int  # onnx-tool's number as reported


def onnx_tool_profile(
    model: str | Path | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    bias_as_flop: bool = True,
) -> list[RefNode]:
    """Run onnx-tool's shape inference and profiler; one :class:`RefNode` per profiled node.

    ``input_shapes`` binds dynamic inputs (onnx-tool refuses symbolic dimensions).
    """
    import numpy as np
    import onnx_tool

    proto = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
    with contextlib.redirect_stdout(io.StringIO()):
        m = onnx_tool.Model(proto)
        inputs = None
        if input_shapes:
            inputs = {k: np.zeros(v, dtype=np.float32) for k, v in input_shapes.items()}
        m.graph.shape_infer(inputs)
        m.graph.profile()
    refs: list[RefNode] = []
    for name, node in m.graph.nodemap.items():
        raw = int(round(node.macs[0]))
        macs = raw
        if bias_as_flop and node.op_type in ("Conv", "Gemm") and len(node.input) >= 3 and node.input[2]:
            out_numel = int(np.prod(node.outshape)) if len(node.outshape) else 0
            macs -= out_numel
        refs.append(RefNode(name=name, op_type=node.op_type, output=node.output[0], macs=macs, raw_macs=raw))
    return refs


def onnx_tool_macs(
    model: str | Path | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    ops: frozenset[str] = DENSE_OPS,
    key: str = "name",
) -> dict[str, int]:
    """Per-node MACs of the dense ops, keyed by node name (``key="name"``) or first output tensor
    (``key="output"``), in our convention (bias adds excluded)."""
    refs = onnx_tool_profile(model, input_shapes)
    return {(r.name if key == "name" else r.output): r.macs for r in refs if r.op_type in ops}
