"""The rule-based baseline (nn-Meter style): hand-written ORT CPU fusion rules + per-type kernel regressors.

nn-Meter detects kernels with fusion rules a person writes for each backend, then predicts each kernel's
latency with a regressor per kernel type and sums. The rules here are, deliberately, the ones a person writes
from the ONNX Runtime graph-optimization documentation — nothing learned from our traces:

- basic: constant folding (a node whose outputs do not depend on a graph input runs in no kernel),
  Identity / Dropout elimination, Conv+BatchNorm, Conv+Add and Conv+Mul with constant operands;
- extended: Conv + activation (FusedConv: Relu, Clip, Sigmoid, Tanh, LeakyRelu, HardSigmoid),
  MatMul + constant bias Add → Gemm, Gemm + activation (FusedGemm), MatMul + scalar Mul/Div and
  Transpose + MatMul (FusedMatMul), the erf GELU pattern (→ Gelu), constant bias Add + Gelu (→ BiasGelu),
  the decomposed LayerNorm pattern (→ LayerNormalization), Add + LayerNorm (→ SkipLayerNormalization);
- layout (NCHWc): Conv + residual Add (+ activation): the later of the Add's producers absorbs it.

Patterns ORT applies but its documentation does not list (Sigmoid+Mul → QuickGelu, the tanh FastGelu,
Slice+Slice → Split, merged Transpose/Reshape chains) are left out of the baseline on purpose: they are what
the learned fusion predictor should find and a rule writer misses, as the LILOU paper found for nn-Meter.
``RuleFusion(runtime_patterns=True)`` adds the first two (read from ORT's ``QuickGeluFusion`` and
``FastGeluFusion`` transformers): the cost models that only need a good partition of a graph (the other-kernel
cost of :mod:`inferperf.predict.node_cost`, used by additive-gbm) take that one, since it agrees with the
profiled kernels on 95.0% of the reference data's edges against 92.5% for the documented rules.

Kernel types use the measurement's labels (``Conv+Relu``, ``Gemm``, ``MatMul+Scale``, ``SkipLayerNorm``,
``Elementwise:Add``, ``Data:Reshape`` …, see :func:`~inferperf.measure.fusion.kernel_type_label`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.ir.features import NODE_FEATURE_NAMES, op_category
from inferperf.ir.graph import ModelGraph, Node
from inferperf.measure.fusion import DATA_OPS, ELEMENTWISE_OPS
from inferperf.predict.fusion.data import KernelExample, device_resource_vector, static_nodes
from inferperf.predict.fusion.kernels import extract_kernels, fused_edges_of

CONV_ACTIVATIONS = frozenset({"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish"})
GEMM_ACTIVATIONS = frozenset({"Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Elu"})
ELIMINATED_OPS = frozenset({"Identity", "Dropout"})

_NORM_LABELS = {
    "LayerNormalization": "LayerNorm", "SkipLayerNormalization": "SkipLayerNorm",
    "SimplifiedLayerNormalization": "RMSNorm", "SkipSimplifiedLayerNormalization": "SkipRMSNorm",
    "BatchNormalization": "BatchNorm", "InstanceNormalization": "InstanceNorm",
    "GroupNormalization": "GroupNorm",
}

# chain stages of a conv / gemm kernel: epilogues must come in this order, an activation closes the chain
_STAGE_OPEN, _STAGE_RESIDUAL, _STAGE_CLOSED = 0, 1, 2


@dataclass
class RulePartition:
    """What the rules say about one graph: executed nodes, kernels (node sets) with types, edge labels."""

    executed: np.ndarray
    kernels: list[list[int]]
    kernel_types: list[str]
    edge_fused: np.ndarray


def _dropped(graph: ModelGraph) -> np.ndarray:
    """[N] bool: nodes that run in no kernel — constant-folded, or eliminated (Identity, Dropout)."""
    dropped = static_nodes(graph).copy()
    for node in graph.nodes:
        if node.op_type in ELIMINATED_OPS and node.domain in ("", "ai.onnx"):
            dropped[node.index] = True
    return dropped


class _View:
    """Producer/consumer look-ups over a ModelGraph."""

    def __init__(self, graph: ModelGraph, dropped: np.ndarray) -> None:
        self.graph = graph
        # plain lists: the rules index them per node and edge, where a NumPy scalar read costs ~5x a list's
        self.dropped: list[bool] = dropped.tolist()
        self.producer: dict[str, int] = graph.producers()
        self.consumers: dict[int, set[int]] = {}
        consumers = self.consumers
        for e in graph.edges:
            found = consumers.get(e.src)
            if found is None:
                consumers[e.src] = {e.dst}
            else:
                found.add(e.dst)
        self.outputs = {t.name for t in graph.outputs}
        self.static: list[bool] = static_nodes(graph).tolist()
        self.ops = [n.qualified_type for n in graph.nodes]
        # per node, in one pass: (tensor, producer) of its dynamic inputs, and its constant inputs (a weight or
        # the output of a static node); the rules ask every node at least once and many several times
        self.dynamic: list[tuple[tuple[str, int | None], ...]] = []
        self.const: list[tuple[Any, ...]] = []
        producer, static = self.producer, self.static
        for n in graph.nodes:
            dynamic, const = [], []
            for t in n.inputs:
                name = t.name
                if not name:
                    continue
                if t.is_weight:
                    const.append(t)
                    continue
                p = producer.get(name)
                if p is not None and static[p]:
                    const.append(t)
                else:
                    dynamic.append((name, p))
            self.dynamic.append(tuple(dynamic))
            self.const.append(tuple(const))
        self._single: dict[int, bool] = {}  # single_consumer, per node asked (the epilogue rules ask repeatedly)

    def node(self, i: int) -> Node:
        return self.graph.nodes[i]

    def op(self, i: int) -> str:
        return self.ops[i]

    def live_consumers(self, i: int) -> set[int]:
        return {c for c in self.consumers.get(i, ()) if not self.dropped[c]}

    def single_consumer(self, i: int) -> bool:
        """Exactly one consumer and not a graph output: fusing it away loses no tensor anyone reads."""
        single = self._single.get(i)
        if single is None:
            single = self._single[i] = len(self.live_consumers(i)) == 1 and not any(
                t.name in self.outputs for t in self.graph.nodes[i].outputs)
        return single

    def dynamic_inputs(self, i: int) -> tuple[tuple[str, int | None], ...]:
        """(tensor, producer node or None for a graph input) of the non-constant inputs."""
        return self.dynamic[i]

    def const_inputs(self, i: int) -> tuple[Any, ...]:
        return self.const[i]

    def scalar_const(self, i: int) -> bool:
        """A binary op with exactly one dynamic input and one constant scalar (or one-element) operand."""
        consts = self.const_inputs(i)
        return len(self.dynamic_inputs(i)) == 1 and len(consts) == 1 and (
            consts[0].shape is not None and math.prod(consts[0].shape or (1,)) == 1)

    def bias_const(self, i: int) -> bool:
        """An Add whose constant operand is a bias over the last dimension (1-D, or 1×…×1×C)."""
        consts = self.const_inputs(i)
        if len(self.dynamic_inputs(i)) != 1 or len(consts) != 1 or consts[0].shape is None:
            return False
        shape = consts[0].shape
        return len(shape) >= 1 and math.prod(shape[:-1]) == 1

    def out_rank(self, i: int) -> int | None:
        n = self.node(i)
        s = n.outputs[0].shape if n.outputs else None
        return len(s) if s is not None else None


class RuleFusion:
    """Hand-written ORT CPU fusion rules (see the module docstring); no training.

    ``runtime_patterns`` adds the element-wise fusions ORT's optimizer applies but its documentation does not
    list — x·σ(αx) → QuickGelu and the tanh GELU → FastGelu (``QuickGeluFusion`` / ``FastGeluFusion`` in
    ORT's graph transformers). Off for the nn-Meter baseline (a rule writer working from the documentation
    misses them, which is what the learned partition is measured against); on where the rules describe what
    the runtime launches for a cost model (:func:`~inferperf.predict.node_cost.other_kernels`): on the
    reference profiles they
    raise the rules' edge agreement from 92.5% to 95.0% (EfficientNet 80 → 96%, GPT-2 81 → 94%, ALBERT
    83 → 95%, GPT-Neo 84 → 100%)."""

    def __init__(self, runtime_patterns: bool = False) -> None:
        self.runtime_patterns = runtime_patterns

    def partition(self, graph: ModelGraph, config: dict[str, Any] | None = None) -> RulePartition:
        config = config or {}
        n = len(graph.nodes)
        ei = np.array([[e.src for e in graph.edges], [e.dst for e in graph.edges]], dtype=np.int64).reshape(2, -1)
        if str(config.get("opt_level", "all")) == "disable":
            executed = np.ones(n, dtype=bool)
            kernels = [[i] for i in range(n)]
            return RulePartition(executed, kernels, [rule_kernel_type(graph, k) for k in kernels],
                                 np.zeros(ei.shape[1], dtype=bool))
        v = graph.derived(("rule_view",), lambda: _View(graph, _dropped(graph)))  # shared by both rule sets
        dropped = np.array(v.dropped, dtype=bool)
        dropped_list = v.dropped
        joins: list[tuple[int, int]] = []
        chain: dict[int, tuple[str, int]] = {}  # node -> (kernel kind, stage) of the kernel it ends
        claimed: set[int] = set()

        def join(a: int, b: int) -> None:
            joins.append((a, b))
            claimed.add(a)
            claimed.add(b)

        self._patterns(v, join, claimed, _RUNTIME_PATTERN_STARTS if self.runtime_patterns else _PATTERN_STARTS)
        ops, dynamic = v.ops, v.dynamic
        for i in range(n):
            if dropped_list[i] or i in claimed and i not in chain:
                continue
            op = ops[i]
            preds = [p for _, p in dynamic[i] if p is not None and not dropped_list[p]]
            if op in ("Conv", "ConvTranspose"):
                chain[i] = ("conv", _STAGE_OPEN)
                continue
            if op in ("MatMul", "Gemm"):
                chain[i] = ("gemm" if op == "Gemm" else "matmul", _STAGE_OPEN)
                for p in preds:  # scale or transpose on an input (FusedMatMul)
                    if op == "MatMul" and p not in claimed and v.single_consumer(p) and (
                            (v.op(p) in ("Mul", "Div") and v.scalar_const(p)) or _swaps_last_two(v.node(p))):
                        join(p, i)
                continue
            if len(preds) == 1 or op == "Add":
                self._epilogue(v, i, op, preds, chain, join)
        executed = ~dropped
        kernels = extract_kernels(n, np.array(joins, dtype=np.int64).T if joins else np.zeros((2, 0)),
                                  np.ones(len(joins), dtype=bool), executed)
        return RulePartition(executed, kernels, [rule_kernel_type(graph, k) for k in kernels],
                             fused_edges_of(kernels, ei, n))

    # ---- epilogues of conv / matmul kernels, and norms -----------------------------------------------
    @staticmethod
    def _epilogue(v: _View, i: int, op: str, preds: list[int], chain: dict[int, tuple[str, int]],
                  join: Any) -> None:
        if op == "Add" and len(preds) == 2 and v.out_rank(i) == 4:
            # NCHWc residual: the Add's operands are tried in input order, and the first that comes from a
            # conv with no activation and no other consumer absorbs it (the other operand becomes the conv's
            # Sum input), as ORT's NchwcTransformer does. Taking the conv produced last instead (a guess of
            # earlier versions) agreed with the profiles on 89.8% of ResNet's and 93.8% of RegNet's edges;
            # the input order on 100%
            convs = [p for p in preds if chain.get(p, ("", _STAGE_CLOSED))[0] == "conv"
                     and chain[p][1] == _STAGE_OPEN and v.single_consumer(p)]
            if convs:
                join(convs[0], i)
                chain[i] = ("conv", _STAGE_RESIDUAL)
            return
        if len(preds) != 1:
            return
        p = preds[0]
        kind, stage = chain.get(p, ("", _STAGE_CLOSED))
        if not kind or stage == _STAGE_CLOSED or not v.single_consumer(p):
            if op == "LayerNormalization" and v.op(p) == "Add" and len(v.dynamic_inputs(p)) == 2 and not kind \
                    and v.single_consumer(p):
                join(p, i)  # SkipLayerNormalization
                chain[i] = ("norm", _STAGE_CLOSED)
            return
        if kind == "conv":
            folds = op == "BatchNormalization" or (op in ("Add", "Mul") and (v.scalar_const(i) or v.bias_const(i)))
            if folds and stage == _STAGE_OPEN:  # BN / constant Add / constant Mul fold into the conv
                join(p, i)
                chain[i] = (kind, stage)
            elif op in CONV_ACTIVATIONS:
                join(p, i)
                chain[i] = (kind, _STAGE_CLOSED)
        elif kind == "matmul":
            if op == "Add" and v.bias_const(i):
                join(p, i)
                chain[i] = ("gemm", _STAGE_RESIDUAL)
            elif op in ("Mul", "Div") and v.scalar_const(i):
                join(p, i)
                chain[i] = ("matmul", _STAGE_CLOSED)
        elif kind == "gemm" and op in GEMM_ACTIVATIONS and (v.out_rank(p) or 2) <= 2:
            # a MatMul+Add over rank > 2 becomes a Gemm between two Reshapes ORT inserts, so the activation
            # reads the Reshape, not the Gemm, and stays its own kernel (MobileBERT's FFN Relu)
            join(p, i)
            chain[i] = (kind, _STAGE_CLOSED)
        if op == "LayerNormalization" and v.op(p) == "Add" and len(v.dynamic_inputs(p)) == 2 and kind != "gemm":
            join(p, i)
            chain[i] = ("norm", _STAGE_CLOSED)

    # ---- multi-node patterns: erf GELU, decomposed LayerNorm, bias GELU --------------------------------
    @staticmethod
    def _patterns(v: _View, join: Any, claimed: set[int], starts: frozenset[str]) -> None:
        def only(nodes: set[int], op: str) -> int | None:
            hits = [c for c in nodes if v.op(c) == op]
            return hits[0] if len(hits) == 1 else None

        gelu_roots: dict[int, int] = {}  # the node that starts a GELU group -> its Div
        gelus: list[int] = []
        for i, op_i in enumerate(v.ops):  # one pass over the op names; only a few nodes start a pattern
            if op_i not in starts:
                if op_i == "Gelu" or op_i == "com.microsoft::Gelu":
                    gelus.append(i)
                continue
            if v.dropped[i]:
                continue
            if op_i == "Sigmoid":
                group = _quick_gelu(v, i, claimed)
                for a in group[1:]:
                    join(group[0], a)
                continue
            if op_i == "Tanh":
                group = _fast_gelu(v, i, claimed)
                for a in group[1:]:
                    join(group[0], a)
                continue
            if op_i == "Erf":  # x/√2 → Erf → +1 → ·x → ·0.5 (any order of the two Muls)
                prods = [p for _, p in v.dynamic_inputs(i) if p is not None]
                if len(prods) != 1 or v.op(prods[0]) != "Div" or not v.scalar_const(prods[0]):
                    continue
                div = prods[0]
                add = only(v.live_consumers(i), "Add")
                if add is None or not v.scalar_const(add):
                    continue
                group = [div, i, add]
                frontier = add
                for _ in range(2):
                    mul = only(v.live_consumers(frontier), "Mul")
                    if mul is None:
                        break
                    group.append(mul)
                    frontier = mul
                    for _, p in v.dynamic_inputs(mul):  # the x·0.5 branch
                        if p is not None and p not in group and v.op(p) == "Mul" and v.scalar_const(p):
                            group.append(p)
                if len(group) >= 4:
                    for a in group[1:]:
                        join(group[0], a)
                    gelu_roots[group[0]] = div
            else:  # ReduceMean: mean → sub → pow → mean → +eps → sqrt → div (→ ·γ → +β)
                sub = only(v.live_consumers(i), "Sub")
                if sub is None:
                    continue
                pw = only(v.live_consumers(sub), "Pow")
                dv = only(v.live_consumers(sub), "Div")
                if pw is None or dv is None:
                    continue
                rm2 = only(v.live_consumers(pw), "ReduceMean")
                add = only(v.live_consumers(rm2), "Add") if rm2 is not None else None
                sq = only(v.live_consumers(add), "Sqrt") if add is not None else None
                if sq is None or dv not in v.live_consumers(sq):
                    continue
                group = [i, sub, pw, rm2, add, sq, dv]
                tail = dv
                for op in ("Mul", "Add"):
                    nxt = only(v.live_consumers(tail), op)
                    if nxt is None or not v.const_inputs(nxt) or not v.single_consumer(tail):
                        break
                    group.append(nxt)
                    tail = nxt
                for a in group[1:]:
                    join(group[0], a)  # type: ignore[arg-type]
        for i in sorted({*gelu_roots, *gelus}):  # bias GELU: a constant bias Add right before a Gelu (op or pattern)
            target = gelu_roots.get(i, i)
            if v.dropped[i]:
                continue
            prods = [p for _, p in v.dynamic_inputs(target) if p is not None]
            if len(prods) == 1 and v.op(prods[0]) == "Add" and v.bias_const(prods[0]) and prods[0] not in claimed:
                p = prods[0]
                feeds_matmul = any(v.op(q) == "MatMul" for _, q in v.dynamic_inputs(p) if q is not None)
                if not feeds_matmul:  # MatMul+Add → Gemm takes precedence
                    join(p, i)


#: op names that start a multi-node pattern of :meth:`RuleFusion._patterns`: the documented ones, and with the
#: runtime's undocumented element-wise fusions
_PATTERN_STARTS = frozenset({"Erf", "ReduceMean"})
_RUNTIME_PATTERN_STARTS = _PATTERN_STARTS | {"Sigmoid", "Tanh"}
_RUNTIME_ONLY_STARTS = _RUNTIME_PATTERN_STARTS - _PATTERN_STARTS


def _quick_gelu(v: _View, i: int, claimed: set[int]) -> list[int]:
    """Nodes of ORT's QuickGelu fusion around Sigmoid ``i``: x·sigmoid(x) (SiLU / Swish) or x·sigmoid(α·x), as
    one element-wise kernel; [] when ``i`` is not in one.

    Why: EfficientNet, MobileViT and every SiLU network run it as one kernel (1,889 QuickGelu kernels in
    the EfficientNet profiles); priced as two kernels that each read the tensor, they cost ~2x."""
    sig_in = v.dynamic_inputs(i)
    if len(sig_in) != 1 or not v.single_consumer(i):
        return []
    x_name, x_prod = sig_in[0]
    scale = None
    if x_prod is not None and v.op(x_prod) == "Mul" and v.scalar_const(x_prod) and x_prod not in claimed \
            and v.single_consumer(x_prod):  # sigmoid(α·x): the product with α is in the kernel
        scale = x_prod
        x_name = v.dynamic_inputs(x_prod)[0][0]
    (mul,) = v.live_consumers(i)
    ins = [name for name, _ in v.dynamic_inputs(mul)]
    if v.op(mul) != "Mul" or mul in claimed or len(ins) != 2 or x_name not in ins:
        return []
    return [scale, i, mul] if scale is not None else [i, mul]


def _fast_gelu(v: _View, t: int, claimed: set[int]) -> list[int]:
    """Nodes of ORT's FastGelu fusion around Tanh ``t``: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (GPT-2's
    "new GELU") as one kernel; [] when ``t`` is not in one.

    Why: GPT-2 runs its MLP activation as one FastGelu kernel (185 in the reference profiles) where the graph
    has eight element-wise nodes, each reading the whole activation."""
    def only(nodes: set[int], op: str) -> int | None:
        hits = [c for c in nodes if v.op(c) == op]
        return hits[0] if len(hits) == 1 and len(nodes) == 1 else None

    prods = [p for _, p in v.dynamic_inputs(t) if p is not None]
    if len(prods) != 1 or v.op(prods[0]) != "Mul" or not v.scalar_const(prods[0]):
        return []
    scale = prods[0]  # √(2/π)·(…)
    inner = [p for _, p in v.dynamic_inputs(scale) if p is not None]
    if len(inner) != 1 or v.op(inner[0]) != "Add":
        return []
    add = inner[0]  # x + 0.044715·x³
    operands = v.dynamic_inputs(add)
    if len(operands) != 2:
        return []
    group = [add, scale, t]
    x_name = None
    for _name, p in operands:  # one operand is x, the other 0.044715·x³ (Pow(x, 3) or x·x·x)
        if p is not None and v.op(p) == "Mul" and v.scalar_const(p):
            cube = [q for _, q in v.dynamic_inputs(p) if q is not None]
            if len(cube) == 1 and v.op(cube[0]) == "Pow":
                group[:0] = [cube[0], p]
                x_name = v.dynamic_inputs(cube[0])[0][0] if v.dynamic_inputs(cube[0]) else None
    if x_name is None or x_name not in [name for name, _ in operands]:
        return []
    one = only(v.live_consumers(t), "Add")  # 1 + tanh(…)
    if one is None or not v.scalar_const(one):
        return []
    group.append(one)
    last = only(v.live_consumers(one), "Mul")  # ·(0.5·x) or ·x then ·0.5
    if last is None:
        return []
    group.append(last)
    for _name, p in v.dynamic_inputs(last):  # the 0.5·x branch
        if p is not None and p not in group and v.op(p) == "Mul" and v.scalar_const(p) and v.single_consumer(p):
            group.insert(0, p)
    half = only(v.live_consumers(last), "Mul")
    if half is not None and v.scalar_const(half) and len(v.dynamic_inputs(last)) == 2 and \
            x_name in [name for name, _ in v.dynamic_inputs(last)]:
        group.append(half)
    if any(g in claimed for g in group):
        return []
    return group


def _swaps_last_two(node: Node) -> bool:
    if node.op_type != "Transpose":
        return False
    perm = node.attributes.get("perm")
    if not perm:
        return False
    perm = list(perm)
    k = len(perm)
    return k >= 2 and perm[:-2] == list(range(k - 2)) and perm[-2:] == [k - 1, k - 2]


#: (op type, domain) -> the label of a one-node kernel, which depends on nothing else (but a Transpose's)
_SINGLE_NODE_TYPES: dict[tuple[str, str], str] = {}


def rule_kernel_type(graph: ModelGraph, nodes: Sequence[int]) -> str:
    """The kernel type a person's rules assign to a node set (the measurement's label scheme)."""
    if len(nodes) == 1:  # most kernels: looked up once per op type
        node = graph.nodes[nodes[0]]
        if node.op_type != "Transpose":
            key = (node.op_type, node.domain)
            label = _SINGLE_NODE_TYPES.get(key)
            if label is None:
                label = _SINGLE_NODE_TYPES[key] = _kernel_type(graph, nodes)
            return label
    return _kernel_type(graph, nodes)


def _kernel_type(graph: ModelGraph, nodes: Sequence[int]) -> str:
    ops = [graph.nodes[i].op_type for i in nodes]
    opset = set(ops)
    if "Conv" in opset:
        parts = ["Conv"]
        for i in nodes:  # a residual Add (two activations in) shows in the label; a bias Add does not
            nd = graph.nodes[i]
            if nd.op_type == "Add" and sum(1 for t in nd.inputs if t.name and not t.is_weight) == 2:
                parts.append("Add")
                break
        acts = [o for o in ops if o in CONV_ACTIVATIONS]
        if acts:
            parts.append(acts[-1])
        return "+".join(parts)
    if opset & {"MatMul", "Gemm"}:
        if "Gemm" in opset or ("Add" in opset and "MatMul" in opset):
            acts = [o for o in ops if o in GEMM_ACTIVATIONS]
            return f"Gemm+{acts[-1]}" if acts else "Gemm"
        return "MatMul+Scale" if opset & {"Mul", "Div"} else "MatMul"
    if "Erf" in opset or "Gelu" in opset:
        return "BiasGelu" if ops[0] == "Add" else "Gelu"
    if "LayerNormalization" in opset or {"ReduceMean", "Sqrt"} <= opset:
        return "SkipLayerNorm" if ops[0] == "Add" else "LayerNorm"
    if len(nodes) > 1:
        # the runtime's fused element-wise and data kernels are named for the pattern, not its last node
        if "Tanh" in opset and "Mul" in opset and ("Pow" in opset or len(nodes) >= 5):
            return "FastGelu"  # the tanh approximation of GELU
        if opset == {"Sigmoid", "Mul"}:
            return "QuickGelu"  # x·sigmoid(αx), SiLU included
        if opset <= {"Slice", "Gather"}:
            return "Data:Split"  # sibling slices / gathers of one tensor become one Split
        if opset == {"Transpose", "Reshape"} and ops.count("Transpose") >= 2 and ops.count("Reshape") >= 2:
            return "Data:Transpose"  # transpose-reshape twice (head split / merge): ORT keeps one transpose
    op = graph.nodes[nodes[0]].op_type if len(nodes) == 1 else ops[-1]
    node = graph.nodes[nodes[0]]
    if len(nodes) == 1 and op == "Transpose":
        reorder = _reorder_label(graph, nodes[0])
        if reorder is not None:
            return reorder
    if node.domain not in ("", "ai.onnx") and len(nodes) == 1:
        return op
    if op in _NORM_LABELS:
        return _NORM_LABELS[op]
    if op.startswith("Reduce") or op in ("ArgMax", "ArgMin"):
        return f"Reduce:{op}"
    if op in DATA_OPS:
        return f"Data:{op}"
    if op in ELEMENTWISE_OPS:
        return f"Elementwise:{op}"
    return op


# ============================================================================================== regressors
_MAIN_NODE_FEATURES = ("kernel_h", "kernel_w", "stride_h", "stride_w", "log_groups", "is_depthwise",
                       "log_out_dim0", "log_out_dim1", "log_out_dim2", "log_out_dim3", "out_rank")
_MAIN_IDX = [NODE_FEATURE_NAMES.index(n) for n in _MAIN_NODE_FEATURES]

KERNEL_FEATURE_NAMES: tuple[str, ...] = (
    "log_flops", "log_macs", "log_bytes_read", "log_bytes_written", "log_weight_bytes", "log_in_numel",
    "log_out_numel", "n_nodes", "log_intensity", *(f"main:{n}" for n in _MAIN_NODE_FEATURES),
)

_MAIN_PRIORITY = ("conv", "matmul", "recurrent", "pooling", "norm", "softmax", "reduce", "activation",
                  "elementwise", "data_movement", "quantize", "other")


def main_node(graph: ModelGraph, nodes: Sequence[int]) -> int:
    """The node that does a kernel's main work (a conv or matmul before its epilogues)."""
    def rank(i: int) -> tuple[int, int]:
        cat = op_category(graph.nodes[i].qualified_type)
        return (_MAIN_PRIORITY.index(cat) if cat in _MAIN_PRIORITY else len(_MAIN_PRIORITY), -graph.nodes[i].flops)
    return min(nodes, key=rank)


def tensor_consumers(graph: ModelGraph) -> dict[str, set[int]]:
    """Tensor name → consumer node indices, memoised on the graph object (kernel features ask per kernel)."""
    def compute() -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for e in graph.edges:
            out.setdefault(e.tensor, set()).add(e.dst)
        return out

    return graph.derived(("consumers",), compute)


#: kernel type groups counted by :func:`rule_kernel_summary` (first match on the type label; the rest: other)
KERNEL_GROUPS: tuple[str, ...] = ("Conv", "Gemm", "MatMul", "Data:", "Elementwise:", "Norm", "Reduce:", "Gelu")
RULE_KERNEL_SUMMARY_NAMES: tuple[str, ...] = (
    "rule_kernels:log_n", "rule_kernels:per_node", "rule_kernels:log_nodes_run",
    *(f"rule_kernels:log_n_{g.rstrip(':').lower()}" for g in KERNEL_GROUPS), "rule_kernels:log_n_other",
)


#: kernel type label -> index of its group in KERNEL_GROUPS (len: other), filled as labels are met
_GROUP_OF: dict[str, int] = {}


def _in_group(kernel_type: str, group: str) -> bool:
    # Norm and Gelu name a kind anywhere in the label (SkipLayerNorm, BatchNorm; BiasGelu, QuickGelu)
    return group in kernel_type if group in ("Norm", "Gelu") else kernel_type.startswith(group)


def rule_partition(graph: ModelGraph, opt_level: str = "all", runtime_patterns: bool = False) -> RulePartition:
    """:meth:`RuleFusion.partition` memoised on the graph object per opt level and rule set (the kernel summary
    and the memory simulation read the documented one, the other-kernel cost the runtime one)."""
    if runtime_patterns and not any(n.qualified_type in _RUNTIME_ONLY_STARTS for n in graph.nodes):
        # no node can start a runtime-only pattern: the partitions are the same, compute it once
        runtime_patterns = False
    key = ("rule_partition", str(opt_level), *(("runtime",) if runtime_patterns else ()))
    return graph.derived(key, lambda: RuleFusion(runtime_patterns).partition(graph, {"opt_level": str(opt_level)}))


def rule_kernel_summary(graph: ModelGraph, config: dict[str, Any] | None = None) -> np.ndarray:
    """[len(RULE_KERNEL_SUMMARY_NAMES)] how many kernels the rules say ORT launches, and of which kinds.

    Why: a graph-level model counts nodes, but a runtime dispatches kernels — a BERT layer's 20-odd nodes
    run as ~12 kernels, an MLP's Gemm+activation as one — and at small sizes the per-kernel cost is much of
    the time. The counts come from the hand-written rules (no training), so they are the same for a family
    never seen. The documented rules, not ``runtime_patterns``: with those the counts moved additive-gbm's
    LOFO latency 10.58% -> 10.70% and memory 6.55% -> 6.71% (``benchmarks/correction_folds.py``, session 15).
    Memoised on the graph object per opt level."""
    opt = str((config or {}).get("opt_level", "all"))

    def compute() -> np.ndarray:
        part = rule_partition(graph, opt)
        counts = [0] * (len(KERNEL_GROUPS) + 1)
        for t in part.kernel_types:
            group = _GROUP_OF.get(t)
            if group is None:
                group = _GROUP_OF[t] = next((j for j, g in enumerate(KERNEL_GROUPS) if _in_group(t, g)),
                                            len(KERNEL_GROUPS))
            counts[group] += 1
        n, running = len(part.kernels), int(part.executed.sum())
        return np.concatenate([[math.log1p(n), n / max(running, 1), math.log1p(running)], np.log1p(counts)])

    return graph.derived(("rule_summary", opt), compute)


def node_neighbours(graph: ModelGraph) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """(producers, consumers) of every node index, memoised on the graph object (kernel labels ask per kernel)."""
    def compute() -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        preds: dict[int, list[int]] = {}
        succs: dict[int, list[int]] = {}
        for e in graph.edges:
            preds.setdefault(e.dst, []).append(e.src)
            succs.setdefault(e.src, []).append(e.dst)
        return preds, succs

    return graph.derived(("neighbours",), compute)


def _reorder_label(graph: ModelGraph, i: int) -> str | None:
    """A lone 4-D transpose between a convolution and a channels-last op is where ORT's NCHWc transformer
    puts its layout change (ConvNeXt's permutes around LayerNorm): the kernel that runs is a
    ``ReorderOutput`` (out of the blocked layout to NHWC) or a ``ReorderInput`` (NHWC into it), not a
    ``Transpose`` (2,810 of the 2,833 such transposes in the reference profiles)."""
    perm = tuple(graph.nodes[i].attributes.get("perm") or ())
    preds, succs = node_neighbours(graph)
    def after_conv(j: int, hops: int = 3) -> bool:  # a conv, or a conv's fused activation
        op = graph.nodes[j].op_type
        if op == "Conv":
            return True
        return hops > 0 and op in CONV_ACTIVATIONS and any(after_conv(p, hops - 1) for p in preds.get(j, ()))

    if perm == (0, 2, 3, 1) and any(after_conv(p) for p in preds.get(i, ())):
        return "Data:ReorderOutput"
    if perm == (0, 3, 1, 2) and any(graph.nodes[c].op_type == "Conv" for c in succs.get(i, ())):
        return "Data:ReorderInput"
    return None


def kernel_features(graph: ModelGraph, nodes: Sequence[int]) -> np.ndarray:
    """Tabular features of one kernel (:data:`KERNEL_FEATURE_NAMES`): summed cost, boundary sizes and the
    main node's window attributes — the inputs of nn-Meter's per-kernel regressors."""
    from inferperf.predict.features import NODE_FEATURES

    inside = set(nodes)
    ns = [graph.nodes[i] for i in nodes]
    produced = {t.name for nd in ns for t in nd.outputs}
    consumers = tensor_consumers(graph)
    in_numel = sum(t.numel or 0 for nd in ns for t in nd.inputs if t.name and not t.is_weight
                   and t.name not in produced)
    # outputs the kernel materialises: read outside it, or read by nobody (graph outputs)
    out_numel = sum(t.numel or 0 for nd in ns for t in nd.outputs
                    if t.name and (not consumers.get(t.name) or consumers[t.name] - inside))
    flops = sum(nd.flops for nd in ns)
    moved = sum(nd.bytes_read + nd.bytes_written for nd in ns)
    main = NODE_FEATURES.row(graph.nodes[main_node(graph, nodes)])
    return np.array([
        math.log1p(flops), math.log1p(sum(nd.macs for nd in ns)), math.log1p(sum(nd.bytes_read for nd in ns)),
        math.log1p(sum(nd.bytes_written for nd in ns)), math.log1p(sum(nd.weight_bytes for nd in ns)),
        math.log1p(in_numel), math.log1p(out_numel), float(len(ns)), math.log1p(flops / moved) if moved else 0.0,
        *main[_MAIN_IDX].tolist(),
    ], dtype=np.float64)


class KernelRegressors:
    """nn-Meter's kernel predictors: one LightGBM regressor of log latency per kernel type.

    A type with fewer than ``min_samples`` training kernels is served by a pooled regressor trained on every
    kernel with the type as a categorical feature, so a rare type still gets a model; a type never seen is
    served by the pooled model with an unknown category.
    """

    def __init__(self, min_samples: int = 40, n_estimators: int = 300, learning_rate: float = 0.05,
                 num_leaves: int = 31, seed: int = 0) -> None:
        self.min_samples = min_samples
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.seed = seed
        self.types_: list[str] = []
        self.models_: dict[str, Any] = {}
        self.pooled_: Any = None

    def _params(self, n: int) -> dict[str, Any]:
        return {"n_estimators": self.n_estimators, "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_child_samples": max(3, min(20, n // 20)),
                "subsample": 0.9, "subsample_freq": 1, "colsample_bytree": 0.9, "random_state": self.seed,
                "verbose": -1, "n_jobs": 1}

    def fit(self, x: np.ndarray, types: Sequence[str], y_log: np.ndarray) -> KernelRegressors:
        import lightgbm as lgb

        types_a = np.asarray(list(types), dtype=object)
        self.types_ = sorted(set(types_a.tolist()))
        codes = np.array([self.types_.index(t) for t in types_a], dtype=np.float64)
        self.pooled_ = lgb.LGBMRegressor(**self._params(len(y_log)))
        self.pooled_.fit(np.column_stack([x, codes]), y_log, categorical_feature=[x.shape[1]])
        self.models_ = {}
        for t in self.types_:
            rows = types_a == t
            if rows.sum() >= self.min_samples and np.ptp(y_log[rows]) > 0:
                m = lgb.LGBMRegressor(**self._params(int(rows.sum())))
                m.fit(x[rows], y_log[rows])
                self.models_[t] = m
        return self

    def predict(self, x: np.ndarray, types: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(x))
        if not len(x):
            return out
        types_a = np.asarray(list(types), dtype=object)
        codes = np.array([self.types_.index(t) if t in self.types_ else -1 for t in types_a], dtype=np.float64)
        pooled = self.pooled_.predict(np.column_stack([x, np.where(codes >= 0, codes, np.nan)]))
        out[:] = pooled
        for t, m in self.models_.items():
            rows = types_a == t
            if rows.any():
                out[rows] = m.predict(x[rows])
        return out

    def save(self, directory: Path, prefix: str = "rule_kernel") -> dict[str, Any]:
        files = {}
        self.pooled_.booster_.save_model(str(directory / f"{prefix}_pooled.txt"))
        for k, (t, m) in enumerate(sorted(self.models_.items())):
            name = f"{prefix}_{k}.txt"
            m.booster_.save_model(str(directory / name))
            files[t] = name
        return {"types": self.types_, "pooled": f"{prefix}_pooled.txt", "per_type": files,
                "min_samples": self.min_samples}

    @classmethod
    def load(cls, directory: Path, state: dict[str, Any]) -> KernelRegressors:
        obj = cls(min_samples=int(state.get("min_samples", 40)))
        obj.types_ = list(state["types"])
        obj.pooled_ = _BoosterModel(directory / state["pooled"])
        obj.models_ = {t: _BoosterModel(directory / f) for t, f in state["per_type"].items()}
        return obj


class _BoosterModel:
    """A loaded LightGBM booster with the ``predict`` of the sklearn wrapper."""

    def __init__(self, path: Path) -> None:
        import lightgbm as lgb

        self.booster_ = lgb.Booster(model_file=str(path))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster_.predict(x), dtype=np.float64)


def rule_kernel_rows(examples: Sequence[KernelExample]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(features incl. device/resources, rule types, log durations) of measured kernels for the regressors.

    The type is the one the *rules* give the measured node set, so training and prediction group kernels the
    same way whatever ORT named them.
    """
    rows, types, y = [], [], []
    for ex in examples:
        rows.append(np.concatenate([kernel_features(ex.graph, ex.nodes), device_resource_vector(ex.config, ex.device)]))
        types.append(rule_kernel_type(ex.graph, ex.nodes))
        y.append(math.log(ex.duration_ms))
    width = len(KERNEL_FEATURE_NAMES) + len(device_resource_vector({}, {"features": {}}))
    return (np.array(rows, dtype=np.float64).reshape(len(rows), width), types, np.array(y, dtype=np.float64))
