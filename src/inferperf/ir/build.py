"""ONNX model (after shape inference) → :class:`~inferperf.ir.graph.ModelGraph`.

The builder is the only place that walks ONNX protobufs; later stages see plain dataclasses. It records a
warning for every op whose cost has no formula and for every tensor whose shape stayed unknown, so a graph
with a silent zero cannot happen.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from inferperf.ir.flops import infer_output_shapes, node_cost
from inferperf.ir.fold import fold_weight_subgraphs
from inferperf.ir.graph import FLOAT_DTYPES, Edge, ModelGraph, Node, TensorInfo

if TYPE_CHECKING:
    import onnx

#: bumped whenever a rebuilt graph would differ; a cached graph of an older build is upgraded on load
#: (:func:`upgrade_graph`): 2 = tensors computed from weights alone are weights (:mod:`inferperf.ir.fold`)
BUILD_VERSION = 2


def build_graph(
    model: onnx.ModelProto,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    infer: bool = False,
) -> ModelGraph:
    """Build the graph IR. Pass ``infer=True`` when ``model`` has not been through shape inference yet."""
    from onnx import helper, numpy_helper

    if infer:
        from inferperf.ir.ingest import infer_shapes

        model = infer_shapes(model)
    t0 = time.perf_counter()
    g = model.graph
    tensor_types: dict[str, tuple[tuple[int, ...] | None, str]] = {}

    def _record(value: Any) -> None:
        ttype = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            tensor_types[value.name] = (None, "")
            return
        dtype = _dtype_name(helper, ttype.elem_type)
        if ttype.HasField("shape"):
            dims = []
            for d in ttype.shape.dim:
                if d.HasField("dim_value") and d.dim_value >= 0:
                    dims.append(int(d.dim_value))
                else:
                    dims = None
                    break
            shape = tuple(dims) if dims is not None else None
        else:
            shape = None
        tensor_types[value.name] = (shape, dtype)

    for value in list(g.input) + list(g.value_info) + list(g.output):
        _record(value)

    weights: dict[str, TensorInfo] = {}
    for init in g.initializer:
        dtype = _dtype_name(helper, init.data_type)
        weights[init.name] = TensorInfo(init.name, tuple(int(d) for d in init.dims), dtype, is_weight=True)
    # Constant nodes are weights too: their values are baked into the graph, not computed per inference.
    constant_outputs: set[str] = set()
    for node in g.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            constant_outputs.update(node.output)

    warnings: list[str] = []
    unknown_shapes: set[str] = set()

    def _info(tname: str) -> TensorInfo:
        if not tname:
            return TensorInfo("", None, "")
        if tname in weights:
            return weights[tname]
        shape, dtype = tensor_types.get(tname, (None, ""))
        if shape is None:
            unknown_shapes.add(tname)
        return TensorInfo(tname, shape, dtype or "float32", is_weight=tname in constant_outputs)

    producer: dict[str, int] = {}
    nodes: list[Node] = []
    counted_weights: set[str] = set()
    order = _topological_order(g)
    for new_index, proto in enumerate(order):
        attrs = {a.name: _attr_value(helper, numpy_helper, a) for a in proto.attribute}
        ins = [_info(t) for t in proto.input]
        missing = [t for t in proto.output if t and tensor_types.get(t, (None, ""))[0] is None]
        if missing:  # ORT's saved graphs carry no shapes for layout (NCHWc) tensors: propagate them
            shapes = infer_output_shapes(proto.op_type, proto.domain, attrs, ins)
            for tname, shape in zip(proto.output, shapes or [], strict=False):
                if tname and shape is not None and tname in missing:
                    tensor_types[tname] = (tuple(shape), ins[0].dtype if ins else "float32")
        outs = [_info(t) for t in proto.output]
        node = Node(
            index=new_index,
            name=proto.name or f"{proto.op_type}_{new_index}",
            op_type=proto.op_type,
            domain=proto.domain,
            attributes={k: _jsonable(v) for k, v in attrs.items() if not _is_bulky(v)},
            inputs=ins,
            outputs=outs,
            module=_module_scope(proto),
        )
        cost = node_cost(proto.op_type, proto.domain, attrs, ins, outs)
        if cost is None:
            node.has_formula = False
            warnings.append(f"no FLOPs formula for {node.qualified_type} (node {node.name}); counted as unknown")
        else:
            node.flops = int(cost.flops)
            node.macs = int(cost.macs)
        for t in ins:
            if t.is_weight and t.name:
                if t.name in counted_weights:
                    continue  # a shared weight (tied embeddings) is one parameter set
                counted_weights.add(t.name)
                node.weight_bytes += t.nbytes
                if t.dtype in FLOAT_DTYPES:
                    node.params += t.numel or 0
            elif t.name:
                node.activation_bytes_read += t.nbytes
        node.bytes_written = sum(t.nbytes for t in outs if t.name)
        for t in proto.output:
            if t:
                producer[t] = new_index
        nodes.append(node)

    edges: list[Edge] = []
    for node, proto in zip(nodes, order, strict=True):
        for tname in dict.fromkeys(t for t in proto.input if t):
            src = producer.get(tname)
            if src is not None and tname not in constant_outputs:
                edges.append(Edge(src, node.index, tname, _info(tname).nbytes))

    for tname in sorted(unknown_shapes):
        warnings.append(f"shape of tensor '{tname}' is unknown; its bytes are not counted")

    graph = ModelGraph(
        name=name or g.name or "model",
        nodes=nodes,
        edges=edges,
        inputs=[_info(v.name) for v in g.input if v.name not in weights],
        outputs=[_info(v.name) for v in g.output],
        opset=_default_opset(model),
        warnings=warnings,
        metadata=dict(metadata or {}),
    )
    fold_weight_subgraphs(graph)
    graph.peak_activation_bytes = peak_activation_bytes(graph)
    graph.metadata.setdefault("build_seconds", round(time.perf_counter() - t0, 4))
    return graph


def _topological_order(g: Any) -> list[Any]:
    """ONNX requires topological order but some producers violate it; re-sort (stable) to be safe."""
    available = {v.name for v in g.input} | {i.name for i in g.initializer} | {""}
    pending = list(g.node)
    ordered: list[Any] = []
    while pending:
        progressed = []
        rest = []
        for node in pending:
            if all(t in available for t in node.input):
                progressed.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if not progressed:  # inputs from outer scopes or cycles: keep the file order for the rest
            ordered.extend(rest)
            break
        ordered.extend(progressed)
        pending = rest
    return ordered


def upgrade_graph(graph: ModelGraph, build_version: int | None) -> ModelGraph:
    """Bring a graph built by an older builder (``build_version``; None = before versions) up to
    :data:`BUILD_VERSION`, in place — the zoo drops weights after measuring, so its graphs cannot be rebuilt."""
    if (build_version or 1) < 2 and fold_weight_subgraphs(graph):
        graph.peak_activation_bytes = peak_activation_bytes(graph)
    return graph


def peak_activation_bytes(graph: ModelGraph) -> int:
    """Peak bytes of simultaneously live activations when nodes run in topological order (weights, constants
    and folded weights are not activations)."""
    last_use: dict[str, int] = {}
    size: dict[str, int] = {}
    for n in graph.nodes:
        for t in n.inputs:
            if t.name and not t.is_weight:
                last_use[t.name] = n.index
                size[t.name] = t.nbytes
    outputs = {t.name for t in graph.outputs}
    for t in graph.outputs:
        last_use[t.name] = len(graph.nodes)
    live = sum(t.nbytes for t in graph.inputs)
    peak = live
    frees: dict[int, list[str]] = defaultdict(list)
    for t, idx in last_use.items():
        frees[idx].append(t)
    for t in graph.inputs:
        last_use.setdefault(t.name, 0)
    for n in graph.nodes:
        for t in n.outputs:
            if t.name and not t.is_weight and (t.name in last_use or t.name in outputs):
                live += t.nbytes
                size[t.name] = t.nbytes
        peak = max(peak, live)
        for t in frees.get(n.index, ()):
            live -= size.get(t, 0)
    return int(peak)


def _default_opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _dtype_name(helper: Any, elem_type: int) -> str:
    if not elem_type:
        return ""
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type).name)
    except Exception:
        return helper.tensor_dtype_to_string(elem_type).replace("TensorProto.", "").lower()


def _attr_value(helper: Any, numpy_helper: Any, attr: Any) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", "replace") for v in value]
    if hasattr(value, "dims") and hasattr(value, "data_type"):  # TensorProto
        return numpy_helper.to_array(value)
    if hasattr(value, "node"):  # GraphProto of If/Loop/Scan: keep only its size
        return {"subgraph_nodes": len(value.node)}
    return value


def _is_bulky(value: Any) -> bool:
    """Tensor-valued attributes are used for costing but not kept in the JSON-serialisable IR."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and getattr(value, "size", 0) > 16


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _module_scope(proto: Any) -> str:
    """The torch module that produced the node (dynamo exporter metadata), for per-layer breakdowns."""
    for prop in proto.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            text = prop.value.strip("[]")
            parts = [p.strip().strip("'\"") for p in text.split(",") if p.strip()]
            return parts[-1] if parts else ""
    return ""
