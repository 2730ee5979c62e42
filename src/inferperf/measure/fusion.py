"""Map the kernels ONNX Runtime executed back onto the nodes of the original ONNX graph.

ORT rewrites the graph before running it (fusions, layout changes, constant folding), and its profile names
the nodes of that *optimized* graph. Predictors need labels on the *original* graph: which original nodes
ran inside which kernel (per-kernel latency targets) and which original edges were fused away.

Node names are unreliable for this (``X/MatMulAddFusion`` is named after the MatMul but computes the Add's
output; NCHWc nodes are named after a tensor), so the mapping works through tensors:

1. **Equivalent tensors.** Every tensor of the optimized graph that also exists in the original graph is
   the same value. Tensors ORT invents get an original equivalent when it can be derived: layout-only
   nodes (inserted ``Reshape`` around a ``Gemm``, ``ReorderInput``/``ReorderOutput``) pass the
   equivalence through (``channels_last`` reorders through the neighbouring ``Transpose``); an NCHWc node
   named ``<T>_nchwc`` produces ``T``, extended through the ``Add`` (its 4th, "Sum", input) and the
   activation it fused; a node that kept an original node's name and op type produces that node's outputs.
2. **Regions.** A kernel covers the original nodes on the paths that lead to its output equivalents,
   walking backwards and stopping at its input equivalents, at any tensor another kernel materializes,
   at graph inputs, and at static tensors (initializers, constants, shape arithmetic on static shapes).
   Kernels joined by tensors with no equivalent form one *island*: its region is computed once and shared
   out among its kernels by name anchors, op families and data-flow order (a fused op runs in the earliest
   kernel that already has its inputs).
3. **Leftovers.** An original node no kernel covers is ``constant-folded`` (all its outputs static),
   ``eliminated`` (a no-op such as Identity, Dropout, a same-type Cast or a same-shape Reshape, or dead
   code), or ``unexplained``; walking through a no-op marks it eliminated rather than covered.

Only the top-level graph is mapped; nodes inside control-flow subgraphs count as part of their parent.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx
from onnx import helper

from inferperf.ir.graph import qualified_op
from inferperf.measure.ort_trace import NodeEvent, TraceRun

REASON_CONSTANT_FOLDED = "constant-folded"
REASON_ELIMINATED = "eliminated"
REASON_UNEXPLAINED = "unexplained"

NCHWC_DOMAIN = "com.microsoft.nchwc"

#: ops whose output is a pure re-arrangement of one input (no arithmetic)
LAYOUT_OPS = frozenset(
    {
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Identity",
        "ReorderInput",
        "ReorderOutput",
        "Expand",
        "Dropout",
    }
)
#: optimized-graph ops that pass a tensor's original equivalent straight through (see module docstring)
_PASS_THROUGH_OPS = frozenset(
    {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "ReorderInput", "ReorderOutput"}
)

ELEMENTWISE_OPS = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Erf",
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish",
        "Tanh", "Softplus", "Softsign", "Mish", "Clip", "Max", "Min", "Mean", "Sum", "Where", "Equal",
        "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Not", "IsNaN", "IsInf",
        "Cast", "CastLike", "Floor", "Ceil", "Round", "Sign", "Mod", "Sin", "Cos", "Tan", "BitShift",
        "BiasAdd", "QuickGelu", "Trilu",
    }
)  # fmt: skip
DATA_OPS = frozenset(
    {
        "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather",
        "GatherND", "GatherElements", "Expand", "Tile", "Pad", "Identity", "ReorderInput", "ReorderOutput",
        "DepthToSpace", "SpaceToDepth", "Shape", "Size", "ScatterND", "ScatterElements", "Range",
        "ConstantOfShape", "NonZero", "Compress", "OneHot", "Dropout",
    }
)  # fmt: skip
_NORM_LABELS = {
    "LayerNormalization": "LayerNorm",
    "SkipLayerNormalization": "SkipLayerNorm",
    "SimplifiedLayerNormalization": "RMSNorm",
    "SkipSimplifiedLayerNormalization": "SkipRMSNorm",
    "EmbedLayerNormalization": "EmbedLayerNorm",
    "BatchNormalization": "BatchNorm",
    "InstanceNormalization": "InstanceNorm",
    "GroupNormalization": "GroupNorm",
    "GroupNorm": "GroupNorm",
}
#: op families: an original op of a family may only be absorbed by a kernel of the same family (or by a
#: composite kernel such as Attention, which is in no family); ops in no family are light epilogues
_FAMILIES: dict[str, str] = {}
for _fam, _ops in {
    "conv": ("Conv", "ConvTranspose", "FusedConv", "ConvInteger", "QLinearConv", "NhwcConv"),
    "matmul": ("MatMul", "Gemm", "FusedMatMul", "FusedGemm", "MatMulNBits", "MatMulInteger", "QLinearMatMul"),
    "pool": ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"),
    "softmax": ("Softmax", "LogSoftmax"),
}.items():
    for _op in _ops:
        _FAMILIES[_op] = _fam


# ------------------------------------------------------------------------------------------- data classes


@dataclass
class KernelRecord:
    """One executed node of the optimized graph.

    ``kernel_type`` is the label predictors use (see :func:`kernel_type_label`); ``op_type`` keeps the
    exact, domain-qualified op. ``duration_ms`` is the mean over the profiled (post-warm-up) runs of the
    time the node took in each run, ``duration_ms_median`` the median (robust to a run preempted on a
    shared machine); ``covered_nodes`` are original node names in original graph order.
    """

    name: str
    op_type: str
    kernel_type: str
    provider: str
    duration_ms: float
    duration_ms_runs: list[float]
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    covered_nodes: list[str] = field(default_factory=list)
    duration_ms_median: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelRecord:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class KernelProfile:
    """Per-kernel profile of one model, with fusion labels on the original graph.

    ``fusion_edges`` has one entry per original data-flow edge between two original nodes
    (``src``, ``dst``, ``tensor``, ``fused``, plus the kernels of both ends); ``fused`` is True when both
    ends ran inside the same executed kernel. ``coverage`` is the share of original nodes that are covered
    by a kernel or explained (constant-folded / eliminated). ``run_latency_ms`` is the mean ``model_run``
    span of the profiled runs, so ``kernel_sum_ratio`` shows how much of a run the kernels account for;
    ``kernel_sum_ratio_median`` is the median of that ratio taken run by run, which a single preempted run
    (common on a shared 2-core machine) cannot move.
    """

    kernels: list[KernelRecord]
    fusion_edges: list[dict[str, Any]]
    uncovered: dict[str, str]
    coverage: float
    kernel_sum_ms: float
    run_latency_ms: float
    run_latency_ms_runs: list[float] = field(default_factory=list)
    kernel_sum_ms_runs: list[float] = field(default_factory=list)
    n_original_nodes: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def kernel_sum_ratio(self) -> float:
        """Sum of kernel means over mean run latency (NaN when there is no run latency)."""
        return self.kernel_sum_ms / self.run_latency_ms if self.run_latency_ms > 0 else float("nan")

    @property
    def kernel_sum_ratio_median(self) -> float:
        """Median over profiled runs of (sum of that run's kernel times) / (that run's latency)."""
        ratios = [k / r for k, r in zip(self.kernel_sum_ms_runs, self.run_latency_ms_runs, strict=False) if r > 0]
        return _median(ratios) if ratios else float("nan")

    def kernel_of(self) -> dict[str, str]:
        """Original node name -> name of the kernel that executed it (covered nodes only)."""
        return {n: k.name for k in self.kernels for n in k.covered_nodes}

    def unexplained(self) -> list[str]:
        return [n for n, r in self.uncovered.items() if r == REASON_UNEXPLAINED]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernels": [k.to_dict() for k in self.kernels],
            "fusion_edges": [dict(e) for e in self.fusion_edges],
            "uncovered": dict(self.uncovered),
            "coverage": self.coverage,
            "kernel_sum_ms": self.kernel_sum_ms,
            "run_latency_ms": self.run_latency_ms,
            "kernel_sum_ratio": self.kernel_sum_ratio,
            "kernel_sum_ratio_median": self.kernel_sum_ratio_median,
            "run_latency_ms_runs": list(self.run_latency_ms_runs),
            "kernel_sum_ms_runs": list(self.kernel_sum_ms_runs),
            "n_original_nodes": self.n_original_nodes,
            "settings": dict(self.settings),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelProfile:
        return cls(
            kernels=[KernelRecord.from_dict(k) for k in d["kernels"]],
            fusion_edges=[dict(e) for e in d["fusion_edges"]],
            uncovered=dict(d["uncovered"]),
            coverage=float(d["coverage"]),
            kernel_sum_ms=float(d["kernel_sum_ms"]),
            run_latency_ms=float(d["run_latency_ms"]),
            run_latency_ms_runs=list(d.get("run_latency_ms_runs", [])),
            kernel_sum_ms_runs=list(d.get("kernel_sum_ms_runs", [])),
            n_original_nodes=int(d.get("n_original_nodes", 0)),
            settings=dict(d.get("settings", {})),
            warnings=list(d.get("warnings", [])),
        )


# ----------------------------------------------------------------------------------------- kernel labels


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def kernel_type_label(node: onnx.NodeProto) -> str:
    """A normalized kernel label for predictors, independent of ORT's domains and layouts.

    Scheme: the main computation, then ``+``-joined epilogues that the kernel fused, in execution order.

    - convolutions: ``Conv``, ``Conv+Relu``, ``Conv+Add+Relu`` (the Add is the residual "Sum" input of an
      NCHWc conv or the ``Z`` input of FusedConv), ``Conv+Clip``; layout (NCHWc or not) is not part of it;
    - dense: ``Gemm``, ``Gemm+Relu`` (FusedGemm), ``MatMul``, ``MatMul+Scale`` (FusedMatMul with alpha != 1);
    - norms: ``LayerNorm``, ``SkipLayerNorm``, ``RMSNorm``, ``SkipRMSNorm``, ``BatchNorm``, ...;
    - attention and other composite contrib ops keep their op name (``Attention``, ``MultiHeadAttention``,
      ``Gelu``, ``FastGelu``, ``BiasGelu``);
    - ``Elementwise:<Op>`` for element-wise arithmetic/logic, ``Reduce:<Op>`` for reductions,
      ``Data:<Op>`` for data movement and layout (Reshape, Transpose, Gather, ReorderInput, ...);
    - anything else: the bare op type.
    """
    op = node.op_type
    present = [i for i in node.input]
    if op in ("Conv", "FusedConv", "NhwcConv"):
        parts = ["Conv"]
        has_sum = (node.domain == NCHWC_DOMAIN and len(present) >= 4 and bool(present[3])) or (
            op == "FusedConv" and len(present) >= 4 and bool(present[3])
        )
        if has_sum:
            parts.append("Add")
        act = _attr(node, "activation")
        if act:
            parts.append(str(act))
        return "+".join(parts)
    if op == "FusedGemm":
        act = _attr(node, "activation")
        return f"Gemm+{act}" if act else "Gemm"
    if op == "FusedMatMul":
        alpha = float(_attr(node, "alpha", 1.0))
        return "MatMul+Scale" if abs(alpha - 1.0) > 1e-12 else "MatMul"
    if op in _NORM_LABELS:
        return _NORM_LABELS[op]
    if op.startswith("Reduce") or op in ("ArgMax", "ArgMin"):
        return f"Reduce:{op}"
    if op in DATA_OPS:
        return f"Data:{op}"
    if op in ELEMENTWISE_OPS and node.domain in ("", "ai.onnx"):
        return f"Elementwise:{op}"
    return op


# ---------------------------------------------------------------------------------------------- graphs


def unique_node_names(nodes: list[onnx.NodeProto]) -> list[str]:
    """Node names with blanks and duplicates replaced deterministically (``<name or op>__<index>``).

    The kernel events of ORT are keyed by node name, so the original graph handed to ORT must have unique
    names; :func:`ensure_unique_node_names` applies exactly these names before a session is created.
    """
    counts = Counter(n.name for n in nodes)
    out: list[str] = []
    taken = set(counts)
    for i, n in enumerate(nodes):
        if n.name and counts[n.name] == 1:
            out.append(n.name)
            continue
        candidate = f"{n.name or n.op_type}__{i}"
        while candidate in taken:
            candidate += "_"
        taken.add(candidate)
        out.append(candidate)
    return out


def ensure_unique_node_names(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    """The model with unique non-empty node names (a renamed copy, or the same object when already so)."""
    names = unique_node_names(list(model.graph.node))
    if all(n.name == new for n, new in zip(model.graph.node, names, strict=True)):
        return model, False
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for n, new in zip(copy.graph.node, names, strict=True):
        n.name = new
    return copy, True


def _topo_order(nodes: list[onnx.NodeProto], producer: dict[str, int]) -> list[int]:
    """Kahn order, stable on the file order (ONNX files are usually sorted already; some are not)."""
    indeg = [0] * len(nodes)
    succ: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        preds = {producer[t] for t in n.input if t in producer and producer[t] != i}
        indeg[i] = len(preds)
        for p in preds:
            succ[p].append(i)
    heap = [i for i in range(len(nodes)) if indeg[i] == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for s in succ[i]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(heap, s)
    if len(order) < len(nodes):  # a cycle cannot be valid ONNX; keep the rest in file order
        seen = set(order)
        order.extend(i for i in range(len(nodes)) if i not in seen)
    return order


def _light_model(model: onnx.ModelProto, max_bytes: int = 4096) -> onnx.ModelProto:
    """A weight-free copy for shape inference: small initializers kept (shape tensors), big ones as inputs.

    Shape inference needs the values of small int tensors (Reshape targets) but not of weights; copying a
    multi-hundred-MB model (or one whose weights live in external files not loaded) would be wasteful.
    """
    g = model.graph
    small: list[onnx.TensorProto] = []
    as_inputs: list[onnx.ValueInfoProto] = []
    for t in g.initializer:
        external = t.data_location == onnx.TensorProto.EXTERNAL
        if not external and t.ByteSize() <= max_bytes:
            small.append(t)
        else:
            as_inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    init_names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names] + as_inputs
    graph = helper.make_graph(list(g.node), g.name or "g", inputs, list(g.output), small, value_info=list(g.value_info))
    light = helper.make_model(graph, opset_imports=list(model.opset_import))
    light.ir_version = model.ir_version
    light.functions.extend(model.functions)
    return light


class _Graph:
    """Indexing of one ONNX graph: producers, consumers, types/shapes, static tensors."""

    def __init__(self, model: onnx.ModelProto, *, infer_shapes: bool) -> None:
        g = model.graph
        self.nodes: list[onnx.NodeProto] = list(g.node)
        self.names = unique_node_names(self.nodes)
        self.index_of_name = {name: i for i, name in enumerate(self.names)}
        self.initializers = {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer}
        self.graph_inputs = {i.name for i in g.input if i.name not in self.initializers}
        self.graph_outputs = [o.name for o in g.output]
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.nodes):
            for t in n.output:
                if t:
                    self.producer[t] = i
            for t in dict.fromkeys(n.input):
                if t:
                    self.consumers[t].append(i)
        self.order = _topo_order(self.nodes, self.producer)
        self.pos = {n: k for k, n in enumerate(self.order)}
        self.types: dict[str, tuple[int, tuple[int, ...] | None]] = {}
        if infer_shapes:
            self._collect_types(model)
        self.static = self._static_tensors()

    # -- types -------------------------------------------------------------------------------------
    def _collect_types(self, model: onnx.ModelProto) -> None:
        light = _light_model(model)
        try:
            inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False)
        except Exception:  # inference is best effort; the exporter's value_info still helps
            inferred = light
        g = inferred.graph
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                continue
            shape: tuple[int, ...] | None = None
            if tt.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
                shape = tuple(dims) if all(d >= 0 for d in dims) else None
            self.types[vi.name] = (tt.elem_type, shape)
        for t in model.graph.initializer:
            self.types[t.name] = (t.data_type, tuple(t.dims))

    def shape(self, t: str) -> tuple[int, ...] | None:
        info = self.types.get(t)
        return info[1] if info else None

    def elem_type(self, t: str) -> int | None:
        info = self.types.get(t)
        return info[0] if info else None

    # -- static values -----------------------------------------------------------------------------
    def _static_tensors(self) -> set[str]:
        """Tensors whose value is fixed at session creation, which ORT's constant folding can remove.

        Initializers, Constant outputs, Shape/Size of tensors with a fully known shape, and outputs of
        deterministic nodes all of whose inputs are static.
        """
        static = set(self.initializers)
        for i in self.order:
            n = self.nodes[i]
            if n.op_type.startswith("Random") or n.op_type in ("Multinomial", "Bernoulli"):
                continue
            ins = [t for t in n.input if t]
            if n.op_type == "Constant" and not ins:
                ok = True
            elif n.op_type in ("Shape", "Size") and ins:
                ok = ins[0] in static or self.shape(ins[0]) is not None
            else:
                ok = bool(ins) and all(t in static for t in ins) and n.domain in ("", "ai.onnx")
            if ok:
                static.update(t for t in n.output if t)
        return static

    def is_noop(self, i: int) -> bool:
        """True for nodes whose output equals their (first) input, which ORT removes instead of running."""
        n = self.nodes[i]
        op = n.op_type
        if op in ("Identity", "Dropout"):
            return True
        ins = [t for t in n.input if t]
        if not ins or not n.output:
            return False
        out = n.output[0]
        if op == "Cast":
            return self.elem_type(ins[0]) is not None and self.elem_type(ins[0]) == int(_attr(n, "to", -1))
        if op == "Transpose":
            perm = _attr(n, "perm")
            return perm is not None and list(perm) == sorted(perm)
        if op in ("Concat", "Sum", "Mean", "Max", "Min") and len(ins) == 1:
            return True
        if op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Slice", "Pad", "Tile", "Resize"):
            s_in, s_out = self.shape(ins[0]), self.shape(out)
            return s_in is not None and s_in == s_out and self.elem_type(ins[0]) == self.elem_type(out)
        return False

    def live_nodes(self) -> set[int]:
        """Nodes from which a graph output can be reached (ORT deletes the others)."""
        live: set[int] = set()
        stack = [self.producer[t] for t in self.graph_outputs if t in self.producer]
        while stack:
            i = stack.pop()
            if i in live:
                continue
            live.add(i)
            stack.extend(self.producer[t] for t in self.nodes[i].input if t in self.producer)
        return live


# --------------------------------------------------------------------------------- tensor equivalence

_TOKEN_SUFFIX = re.compile(r"_token_\d+$")


def _strip_token(name: str) -> str:
    return _TOKEN_SUFFIX.sub("", name)


def _name_candidates(name: str) -> list[str]:
    """Original-node names an ORT node name may be derived from, most specific first.

    ORT appends ``_token_<n>`` to make generated names unique and ``/<FusionName>`` (sometimes with a
    trailing slash) to the name of the node a fusion started from; original names may contain ``/``
    themselves (legacy exporter), so every prefix is tried.
    """
    out = [name]
    base = _strip_token(name)
    if base != name:
        out.append(base)
    trimmed = base.rstrip("/")
    while "/" in trimmed:
        trimmed = trimmed.rsplit("/", 1)[0]
        if trimmed:
            out.append(trimmed)
    return out


def _derive_equivalents(orig: _Graph, opt: _Graph) -> dict[str, str]:
    """Optimized tensor name -> original tensor it equals (up to layout)."""
    orig_values = set(orig.producer) | orig.graph_inputs
    eq: dict[str, str] = {}
    for t in opt.graph_inputs:
        if t in orig_values:
            eq[t] = t
    for n in opt.nodes:
        for t in n.output:
            if t and t in orig_values:
                eq[t] = t

    for n in opt.nodes:
        outs = [t for t in n.output if t and t not in eq]
        if not outs:
            continue
        if n.domain == NCHWC_DOMAIN and n.op_type not in ("ReorderInput", "ReorderOutput"):
            anchor = _strip_token(n.name)
            if anchor.endswith("_nchwc") and anchor[: -len("_nchwc")] in orig.producer and n.output[0] in outs:
                eq[n.output[0]] = _extend_nchwc(orig, n, anchor[: -len("_nchwc")])
            continue
        # A node that kept an original node's name and op computes that node's outputs, possibly in another
        # layout (the transpose optimizer renames outputs it pushes transposes through).
        idx = orig.index_of_name.get(n.name)
        if idx is not None and orig.nodes[idx].op_type == n.op_type:
            for j, t in enumerate(n.output):
                if t and t not in eq and j < len(orig.nodes[idx].output) and orig.nodes[idx].output[j]:
                    eq[t] = orig.nodes[idx].output[j]

    changed = True
    while changed:
        changed = False
        for n in opt.nodes:
            if n.op_type not in _PASS_THROUGH_OPS or not n.input or not n.output:
                continue
            src, dst = n.input[0], n.output[0]
            channels_last = bool(_attr(n, "channels_last", 0))
            if dst not in eq and src in eq:
                eq[dst] = (
                    _through_transpose_forward(orig, eq[src])
                    if n.op_type == "ReorderInput" and channels_last
                    else eq[src]
                )
                changed = True
            elif src not in eq and dst in eq and src in opt.producer:
                eq[src] = (
                    _through_transpose_backward(orig, eq[dst])
                    if n.op_type == "ReorderOutput" and channels_last
                    else eq[dst]
                )
                changed = True
    return eq


def _extend_nchwc(orig: _Graph, node: onnx.NodeProto, tensor: str) -> str:
    """The original tensor an NCHWc node named after ``tensor`` really outputs.

    ORT names an NCHWc node after the output of the op it replaced, then fuses into it the residual Add
    (4th "Sum" input) and the activation that follow; both are visible on the node, so the equivalent is
    followed forward through them. An activation fused earlier (FusedConv) already ends at ``tensor``.
    """
    t = tensor
    if node.op_type != "Conv":
        return t
    if len(node.input) >= 4 and node.input[3]:
        adds = [c for c in orig.consumers.get(t, []) if orig.nodes[c].op_type in ("Add", "Sum")]
        if len(adds) == 1 and orig.nodes[adds[0]].output:
            t = orig.nodes[adds[0]].output[0]
    act = _attr(node, "activation")
    if act:
        p = orig.producer.get(t)
        if p is None or orig.nodes[p].op_type != act:
            acts = [c for c in orig.consumers.get(t, []) if orig.nodes[c].op_type == act]
            if len(acts) == 1 and orig.nodes[acts[0]].output:
                t = orig.nodes[acts[0]].output[0]
    return t


def _through_transpose_forward(orig: _Graph, t: str) -> str:
    ts = [c for c in orig.consumers.get(t, []) if orig.nodes[c].op_type == "Transpose"]
    return orig.nodes[ts[0]].output[0] if len(ts) == 1 else t


def _through_transpose_backward(orig: _Graph, t: str) -> str:
    p = orig.producer.get(t)
    if p is not None and orig.nodes[p].op_type == "Transpose" and orig.nodes[p].input:
        return orig.nodes[p].input[0]
    return t


# -------------------------------------------------------------------------------------------- regions


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _family(op_type: str) -> str | None:
    return _FAMILIES.get(op_type)


def _is_layout_kernel(node: onnx.NodeProto) -> bool:
    return node.op_type in LAYOUT_OPS


def _compatible(kernel: onnx.NodeProto, orig_node: onnx.NodeProto) -> bool:
    """Whether an original node can plausibly have run inside ``kernel`` (used only inside islands)."""
    if _is_layout_kernel(kernel):
        return orig_node.op_type in LAYOUT_OPS
    fam = _family(orig_node.op_type)
    if fam is None:
        return True
    kfam = _family(kernel.op_type)
    return kfam is None or kfam == fam


@dataclass
class _Mapping:
    kernel_of: dict[int, int]  # original node index -> optimized node index
    eliminated: set[int]
    stats: dict[str, int]


def _map_nodes(orig: _Graph, opt: _Graph, exec_order: list[int]) -> _Mapping:
    eq = _derive_equivalents(orig, opt)
    materialized = {eq[t] for n in opt.nodes for t in n.output if t in eq} | orig.graph_inputs

    # Islands: kernels joined by tensors without an original equivalent.
    uf = _UnionFind(len(opt.nodes))
    for t, consumers in opt.consumers.items():
        if t in eq or t not in opt.producer:
            continue
        for c in consumers:
            uf.union(opt.producer[t], c)
    rank = {k: r for r, k in enumerate(exec_order)}
    groups: dict[int, list[int]] = defaultdict(list)
    for k in sorted(range(len(opt.nodes)), key=lambda k: (rank.get(k, len(rank)), opt.pos[k])):
        groups[uf.find(k)].append(k)
    islands = sorted(groups.values(), key=lambda ks: (rank.get(ks[0], len(rank)), opt.pos[ks[0]]))

    kernel_of: dict[int, int] = {}
    eliminated: set[int] = set()
    multi = 0
    for island in islands:
        in_eq = {eq[t] for k in island for t in opt.nodes[k].input if t in eq}
        starts: list[str] = []
        for k in island:
            for t in opt.nodes[k].output:
                if t in eq and eq[t] not in in_eq and eq[t] in orig.producer:
                    starts.append(eq[t])
        stops = in_eq | materialized | orig.static | orig.graph_inputs
        region, passed = _walk(orig, starts, stops, kernel_of)
        eliminated.update(passed)
        if not region:
            continue
        if len(island) == 1:
            for n in region:
                kernel_of[n] = island[0]
        else:
            multi += 1
            for n, k in _distribute(orig, opt, island, region, rank).items():
                kernel_of[n] = k
    stats = {
        "islands": len(islands),
        # regions shared out by the anchor/family/data-flow heuristic rather than by tensor boundaries
        "multi_kernel_islands": multi,
        # tensors ORT invented whose original equivalent was derived (layout pass-through, NCHWc names, ...)
        "derived_equivalents": sum(1 for t, o in eq.items() if t != o),
    }
    return _Mapping(kernel_of=kernel_of, eliminated=eliminated - set(kernel_of), stats=stats)


def _walk(orig: _Graph, starts: list[str], stops: set[str], claimed: dict[int, int]) -> tuple[list[int], set[int]]:
    """Original nodes between ``starts`` (walked backwards) and ``stops``; no-ops passed are returned apart.

    A start tensor's producer is always part of the region (a kernel ORT kept for a no-op still did the
    work); nodes already claimed by an earlier kernel end the walk, since the value they produce was
    computed there.
    """
    first = [orig.producer[t] for t in dict.fromkeys(starts) if t in orig.producer]
    region: list[int] = []
    passed: set[int] = set()
    seen: set[int] = set()
    stack = [i for i in first if i not in claimed]
    first_set = set(first)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        if i not in first_set and orig.is_noop(i):
            passed.add(i)
        else:
            region.append(i)
        for t in orig.nodes[i].input:
            if not t or t in stops or t not in orig.producer:
                continue
            p = orig.producer[t]
            if p not in claimed and p not in seen:
                stack.append(p)
    region.sort(key=lambda i: orig.pos[i])
    return region, passed


def _anchors(orig: _Graph, node: onnx.NodeProto) -> list[int]:
    out: list[int] = []
    for cand in _name_candidates(node.name):
        if cand in orig.index_of_name:
            out.append(orig.index_of_name[cand])
    base = _strip_token(node.name)
    if base.endswith("_nchwc"):
        p = orig.producer.get(base[: -len("_nchwc")])
        if p is not None:
            out.append(p)
    return out


def _distribute(
    orig: _Graph, opt: _Graph, island: list[int], region: list[int], rank: dict[int, int]
) -> dict[int, int]:
    """Share an island's region out among its kernels.

    Name anchors first, then one node of the matching op family per still-empty compute kernel, then
    data-flow order: a node with assigned predecessors goes to the earliest compatible kernel that runs
    after all of them (ORT fuses epilogues into the producer), a node with only assigned successors to the
    latest compatible kernel that runs before them (prologues fuse into the consumer).
    """
    in_island = set(island)
    order = {k: i for i, k in enumerate(island)}
    ancestors: dict[int, set[int]] = {}
    for k in sorted(island, key=lambda k: opt.pos[k]):
        anc = {k}
        for t in opt.nodes[k].input:
            p = opt.producer.get(t)
            if p is not None and p in in_island:
                anc |= ancestors.get(p, {p})
        ancestors[k] = anc
    region_set = set(region)
    assign: dict[int, int] = {}
    for k in island:
        for a in _anchors(orig, opt.nodes[k]):
            if a in region_set and a not in assign and _compatible(opt.nodes[k], orig.nodes[a]):
                assign[a] = k
    assigned_kernels = set(assign.values())
    for k in island:
        node = opt.nodes[k]
        if k in assigned_kernels or _is_layout_kernel(node):
            continue
        kfam = _family(node.op_type)
        for n in region:
            if n in assign:
                continue
            ofam = _family(orig.nodes[n].op_type)
            if (kfam is not None and ofam == kfam) or (kfam is None and orig.nodes[n].op_type == node.op_type):
                assign[n] = k
                break

    preds = {n: [orig.producer[t] for t in orig.nodes[n].input if t in orig.producer] for n in region}
    succs = {n: [c for t in orig.nodes[n].output if t for c in orig.consumers.get(t, [])] for n in region}
    progress = True
    while progress:
        progress = False
        for n in region:
            if n in assign:
                continue
            pk = {assign[p] for p in preds[n] if p in region_set and p in assign}
            sk = {assign[s] for s in succs[n] if s in region_set and s in assign}
            if not pk and not sk:
                continue
            fits = [k for k in island if all(p in ancestors[k] for p in pk) and all(k in ancestors[s] for s in sk)]
            cands = (
                [k for k in fits if _compatible(opt.nodes[k], orig.nodes[n])]
                or [k for k in island if _compatible(opt.nodes[k], orig.nodes[n])]
                or fits
                or list(island)
            )
            assign[n] = min(cands, key=order.__getitem__) if pk else max(cands, key=order.__getitem__)
            progress = True
    compute = [k for k in island if not _is_layout_kernel(opt.nodes[k])] or list(island)
    for n in region:
        if n not in assign:
            cands = [k for k in compute if _compatible(opt.nodes[k], orig.nodes[n])] or compute
            assign[n] = cands[0]
    return assign


# ------------------------------------------------------------------------------------------ map_fusion


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _median(xs: list[float]) -> float:
    if not xs:
        return 0.0
    ys = sorted(xs)
    mid = len(ys) // 2
    return ys[mid] if len(ys) % 2 else (ys[mid - 1] + ys[mid]) / 2


def map_fusion(
    original: onnx.ModelProto,
    optimized: onnx.ModelProto,
    runs: list[TraceRun],
    *,
    warmup: int = 0,
) -> KernelProfile:
    """Per-kernel durations of ``runs`` (after dropping ``warmup`` of them) mapped onto ``original``.

    ``optimized`` is the graph ORT saved (``optimized_model_filepath``) for the session that produced the
    trace; weights are not needed (load it with ``load_external_data=False``). Original node names must
    be unique (see :func:`ensure_unique_node_names`); blank or duplicate names are replaced the same way.
    """
    from inferperf.errors import InferperfError

    if warmup < 0:
        raise InferperfError("warmup must be >= 0")
    measured = runs[warmup:]
    if not measured:
        raise InferperfError(f"the trace holds {len(runs)} runs, none left after {warmup} warm-up runs")
    orig = _Graph(original, infer_shapes=True)
    opt = _Graph(optimized, infer_shapes=False)
    warnings: list[str] = []
    dup = [n for n, c in Counter(n.name for n in opt.nodes).items() if c > 1 or not n]
    if dup:
        warnings.append(f"optimized graph has {len(dup)} blank/duplicate node names; their events are merged")
    opt_index = {n.name: i for i, n in enumerate(opt.nodes)}

    # Per-run, per-node durations; the first measured run fixes execution order and shapes.
    per_node: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(measured))
    first_event: dict[str, NodeEvent] = {}
    exec_names: list[str] = []
    for r, run in enumerate(measured):
        for e in run.events:
            per_node[e.name][r] += e.dur_us / 1000.0
            if e.name not in first_event:
                first_event[e.name] = e
                exec_names.append(e.name)
    unknown = [n for n in exec_names if n not in opt_index]
    if unknown:
        warnings.append(
            f"{len(unknown)} executed node(s) are not in the optimized top-level graph (subgraph nodes?): "
            + ", ".join(unknown[:5])
        )
    not_run = [n.name for n in opt.nodes if n.name not in first_event]
    if not_run:
        warnings.append(f"{len(not_run)} optimized node(s) never ran in the profile: " + ", ".join(not_run[:5]))
    exec_order = [opt_index[n] for n in exec_names if n in opt_index]

    mapping = _map_nodes(orig, opt, exec_order)

    covered_by: dict[int, list[int]] = defaultdict(list)
    for n, k in mapping.kernel_of.items():
        covered_by[k].append(n)
    kernels: list[KernelRecord] = []
    executed: set[int] = set()
    for name in exec_names:
        e = first_event[name]
        k = opt_index.get(name)
        node = opt.nodes[k] if k is not None else None
        if k is not None:
            executed.add(k)
        runs_ms = per_node[name]
        kernels.append(
            KernelRecord(
                name=name,
                op_type=qualified_op(node.domain, node.op_type) if node is not None else e.op_name,
                kernel_type=kernel_type_label(node) if node is not None else e.op_name,
                provider=e.provider,
                duration_ms=_mean(runs_ms),
                duration_ms_median=_median(runs_ms),
                duration_ms_runs=list(runs_ms),
                input_shapes=e.input_shapes,
                output_shapes=e.output_shapes,
                covered_nodes=[orig.names[i] for i in sorted(covered_by.get(k, []), key=orig.pos.__getitem__)]
                if k is not None
                else [],
            )
        )
    # Original nodes attributed to optimized nodes that never ran are not covered by an executed kernel.
    kernel_of = {n: k for n, k in mapping.kernel_of.items() if k in executed}
    live = orig.live_nodes()
    uncovered: dict[str, str] = {}
    for i in orig.order:
        if i in kernel_of:
            continue
        outs = [t for t in orig.nodes[i].output if t]
        if outs and all(t in orig.static for t in outs):
            reason = REASON_CONSTANT_FOLDED
        elif i in mapping.eliminated or orig.is_noop(i) or i not in live:
            reason = REASON_ELIMINATED
        else:
            reason = REASON_UNEXPLAINED
        uncovered[orig.names[i]] = reason

    edges: list[dict[str, Any]] = []
    for i in orig.order:
        seen_edges: set[tuple[int, str]] = set()
        for t in orig.nodes[i].input:
            p = orig.producer.get(t)
            if p is None or (p, t) in seen_edges:
                continue
            seen_edges.add((p, t))
            kp, kd = kernel_of.get(p), kernel_of.get(i)
            edges.append(
                {
                    "src": orig.names[p],
                    "dst": orig.names[i],
                    "tensor": t,
                    "fused": kp is not None and kp == kd,
                    "src_kernel": opt.nodes[kp].name if kp is not None else None,
                    "dst_kernel": opt.nodes[kd].name if kd is not None else None,
                }
            )
    n_orig = len(orig.nodes)
    explained = sum(1 for r in uncovered.values() if r != REASON_UNEXPLAINED)
    coverage = (len(kernel_of) + explained) / n_orig if n_orig else 1.0
    run_ms = [r.dur_us / 1000.0 for r in measured]
    return KernelProfile(
        kernels=kernels,
        fusion_edges=edges,
        uncovered=uncovered,
        coverage=coverage,
        kernel_sum_ms=sum(k.duration_ms for k in kernels),
        run_latency_ms=_mean(run_ms),
        run_latency_ms_runs=run_ms,
        kernel_sum_ms_runs=[r.kernel_sum_us / 1000.0 for r in measured],
        n_original_nodes=n_orig,
        settings={"profiled_runs": len(measured), "warmup_runs_dropped": warmup, "mapping": mapping.stats},
        warnings=warnings,
    )
