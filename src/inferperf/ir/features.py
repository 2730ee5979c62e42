"""Fixed-length encodings of a :class:`~inferperf.ir.graph.ModelGraph` for the predictors.

Every trained predictor depends on the exact layout of these vectors (which slot holds which op, which
feature), so the layout is versioned: :func:`encoding_info` is saved with each artifact and
:func:`check_encoding` refuses to load an artifact built with a different layout, instead of silently
feeding features into the wrong slots. Bump :data:`ENCODING_VERSION` whenever a vocabulary entry, a feature
or a scaling changes.

Magnitudes (element counts, FLOPs, bytes) span ten orders of magnitude across models, so they are encoded
as ``log1p``; small integers with a fixed meaning (kernel size, stride, padding, counts of inputs) are kept
raw. A slot that does not apply to a node (a kernel size for an Add) is 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from inferperf.errors import InferperfError
from inferperf.ir.flops import (
    DATA_MOVEMENT_OPS,
    ELEMENTWISE_FLOPS,
    MS_DOMAIN,
    MS_ELEMENTWISE_FLOPS,
    NCHWC_DOMAIN,
)
from inferperf.ir.graph import ModelGraph, Node

if TYPE_CHECKING:
    from torch_geometric.data import Data

ENCODING_VERSION = 3  # 2: static cost breakdown (MACs per conv/matmul kind, bytes per memory-bound category);
# 3: weights folded from weights (transposed shared weights) are weights, their producers cost nothing


class EncodingMismatchError(InferperfError):
    """A trained artifact was built with a different feature encoding than this version of inferperf."""


def _ms(*ops: str) -> tuple[str, ...]:
    return tuple(f"{MS_DOMAIN}::{op}" for op in ops)


def _nchwc(*ops: str) -> tuple[str, ...]:
    return tuple(f"{NCHWC_DOMAIN}::{op}" for op in ops)


# ---- op categories -------------------------------------------------------------------------------------
#: op categories, used both as a second one-hot block of the node features (so an op that falls in the
#: "other" vocabulary bucket still says what kind of op it is) and for the graph-level op counts.
OP_CATEGORIES: tuple[str, ...] = (
    "conv", "matmul", "recurrent", "activation", "norm", "softmax", "pooling", "reduce", "elementwise",
    "data_movement", "quantize", "other",
)

_CATEGORY_OPS: dict[str, tuple[str, ...]] = {
    "conv": (
        "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "DeformConv",
        *_ms("FusedConv", "NhwcConv", "NhwcFusedConv", "QLinearConv"), *_nchwc("Conv"),
    ),
    "matmul": (
        "MatMul", "Gemm", "Einsum", "MatMulInteger", "QLinearMatMul", "Attention",
        *_ms("FusedMatMul", "TransposeMatMul", "FusedGemm", "Attention", "MultiHeadAttention",
             "GroupQueryAttention", "QAttention", "MatMulNBits", "QGemm", "DynamicQuantizeMatMul",
             "MatMulIntegerToFloat"),
    ),
    "recurrent": ("LSTM", "GRU", "RNN"),
    "activation": (
        "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu",
        "Softplus", "Elu", "Selu", "Celu", "Mish", "ThresholdedRelu", "Softsign", "Swish", "Shrink", "SwiGLU",
        *_ms("Gelu", "FastGelu", "BiasGelu", "QuickGelu", "QLinearSigmoid", "QLinearLeakyRelu"),
    ),
    "norm": (
        "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
        "SimplifiedLayerNormalization", "RMSNormalization", "LpNormalization", "LRN",
        "MeanVarianceNormalization",
        *_ms("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
             "EmbedLayerNormalization", "LayerNormalization", "GroupNorm"),
    ),
    "softmax": ("Softmax", "LogSoftmax", "Hardmax", *_ms("BiasSoftmax")),
    "pooling": (
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool",
        "RoiAlign", "MaxRoiPool",
        *_ms("NhwcMaxPool", "QLinearAveragePool", "QLinearGlobalAveragePool"),
        *_nchwc("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"),
    ),
    "reduce": (
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin", "TopK", "CumSum",
        "CumProd",
    ),
    "quantize": (
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
        *_ms("QuantizeLinear", "DequantizeLinear"),
    ),
    "data_movement": (
        *DATA_MOVEMENT_OPS, "NonZero", "Resize", "Upsample",
        *_ms("Range", "ExpandDims"), *_nchwc("ReorderInput", "ReorderOutput", "Upsample"),
    ),
}
_elementwise_ops = (set(ELEMENTWISE_FLOPS) | {"Sum", "Min", "Max", "Mean", "Trilu", "RotaryEmbedding"}
                    | {f"{MS_DOMAIN}::{op}" for op in MS_ELEMENTWISE_FLOPS}
                    | set(_ms("QLinearAdd", "QLinearMul", "BiasDropout")))
_CATEGORY_OPS["elementwise"] = tuple(sorted(
    _elementwise_ops - {op for cat, ops in _CATEGORY_OPS.items() for op in ops if cat != "elementwise"}
))

_OP_TO_CATEGORY: dict[str, str] = {op: cat for cat, ops in _CATEGORY_OPS.items() for op in ops}


def op_category(qualified_type: str) -> str:
    """The category (one of :data:`OP_CATEGORIES`) of a domain-qualified op type; "other" if unknown."""
    return _OP_TO_CATEGORY.get(qualified_type, "other")


# ---- op vocabulary -------------------------------------------------------------------------------------
#: qualified op types with their own one-hot slot; anything else lands in the final "other" slot.
OP_VOCAB: tuple[str, ...] = (
    # dense compute
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "LSTM", "GRU", "RNN", "Attention",
    # normalisation and softmax
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "SimplifiedLayerNormalization", "RMSNormalization", "LpNormalization", "LRN", "Softmax", "LogSoftmax",
    # activations
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "Softplus",
    "Elu", "Selu", "Mish", "Erf",
    # element-wise arithmetic, comparison, logic
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Min", "Max",
    "Mean", "Sum", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Where",
    "Floor", "Ceil", "Round", "Sin", "Cos", "Mod", "Sign",
    # reductions
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare",
    "ReduceLogSumExp", "ArgMax", "ArgMin", "TopK", "CumSum",
    # pooling and resampling
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "Resize", "Upsample",
    # data movement and shape computation
    "Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Squeeze",
    "Unsqueeze", "Flatten", "Expand", "Pad", "Identity", "Cast", "Shape", "Constant", "ConstantOfShape",
    "Tile", "ScatterND", "ScatterElements", "Range", "Trilu", "DepthToSpace", "SpaceToDepth", "Dropout",
    "NonZero", "OneHot", "Size",
    # quantisation
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearConv",
    "QLinearMatMul", "ConvInteger",
    # ONNX Runtime contrib (fused) ops
    *_ms("FusedConv", "FusedGemm", "FusedMatMul", "NhwcConv", "NhwcFusedConv", "Attention",
         "MultiHeadAttention", "GroupQueryAttention", "SkipLayerNormalization",
         "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "EmbedLayerNormalization",
         "BiasGelu", "FastGelu", "Gelu", "QuickGelu", "BiasAdd", "BiasSoftmax", "BiasDropout",
         "RotaryEmbedding", "GroupNorm", "MatMulNBits", "QGemm", "DynamicQuantizeMatMul",
         "MatMulIntegerToFloat", "QAttention", "QLinearConv", "QLinearAdd", "QLinearMul",
         "QLinearGlobalAveragePool", "QuantizeLinear", "DequantizeLinear"),
    # ONNX Runtime NCHWc blocked-layout ops (CPU)
    *_nchwc("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReorderInput",
            "ReorderOutput", "Upsample"),
    "other",
)
_VOCAB_INDEX: dict[str, int] = {op: i for i, op in enumerate(OP_VOCAB)}
OTHER_INDEX = len(OP_VOCAB) - 1


def op_index(qualified_type: str) -> int:
    """Slot of an op in :data:`OP_VOCAB`; the final "other" slot for ops outside the vocabulary."""
    return _VOCAB_INDEX.get(qualified_type, OTHER_INDEX)


# ---- node features -------------------------------------------------------------------------------------
#: how many leading output dimensions are encoded; higher-rank outputs fold the rest into the last slot
MAX_DIMS = 6

NODE_FEATURE_NAMES: tuple[str, ...] = (
    *(f"op={op}" for op in OP_VOCAB),  # one-hot op type
    *(f"category={cat}" for cat in OP_CATEGORIES),  # one-hot op category
    "out_shape_known",  # 1 if the first output's shape is known (else the shape slots are 0)
    "out_rank",  # rank of the first output (raw)
    *(f"log_out_dim{i}" for i in range(MAX_DIMS)),  # log1p of the first output's leading dims
    "log_in_numel",  # log1p of the elements of all non-weight inputs
    "log_out_numel",  # log1p of the elements of all outputs
    "log_flops",
    "log_macs",
    "log_bytes_read",  # activations read + weights
    "log_bytes_written",
    "log_weight_bytes",
    "log_params",
    "log_arithmetic_intensity",  # log1p(FLOPs / bytes moved)
    "kernel_h",  # conv / pooling window, last two spatial dims (1-D: kernel_w = 1); 0 for other ops
    "kernel_w",
    "stride_h",
    "stride_w",
    "pad_top",
    "pad_left",
    "pad_bottom",
    "pad_right",
    "dilation_h",
    "dilation_w",
    "log_groups",  # log1p(group) of convolutions
    "is_depthwise",  # grouped conv with one input channel per group
    "n_inputs",  # present (non-empty) inputs, weights included
    "n_outputs",
    "has_formula",
)
NODE_FEATURE_DIM = len(NODE_FEATURE_NAMES)
_NODE_IDX: dict[str, int] = {n: i for i, n in enumerate(NODE_FEATURE_NAMES)}
_CAT_OFFSET = _NODE_IDX[f"category={OP_CATEGORIES[0]}"]

_WINDOW_CATEGORIES = ("conv", "pooling")
#: conv-like ops whose weight is not input 1
_CONV_WEIGHT_INDEX = {"QLinearConv": 3, f"{MS_DOMAIN}::QLinearConv": 3}


def _log(x: float) -> float:
    return math.log1p(max(float(x), 0.0))


def _attr(node: Node, name: str, default: Any = None) -> Any:
    v = node.attributes.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def _last_two(values: Sequence[int], fill: int) -> tuple[int, int]:
    """(h, w) from the last two spatial entries; a 1-D window is (k, fill)."""
    vals = [int(v) for v in values]
    if not vals:
        return fill, fill
    if len(vals) == 1:
        return vals[0], fill
    return vals[-2], vals[-1]


def _window_attributes(node: Node) -> dict[str, float]:
    """Kernel / stride / padding / dilation / group slots of conv and pooling nodes."""
    qt = node.qualified_type
    w_idx = _CONV_WEIGHT_INDEX.get(qt, 1)
    weight = node.inputs[w_idx] if op_category(qt) == "conv" and len(node.inputs) > w_idx else None
    kernel = _attr(node, "kernel_shape")
    if not kernel and weight is not None and weight.shape is not None and len(weight.shape) >= 3:
        kernel = list(weight.shape[2:])
    if not kernel:
        if qt.endswith("GlobalAveragePool") or qt.endswith("GlobalMaxPool"):
            x = node.inputs[0].shape if node.inputs else None
            kernel = list(x[2:4]) if x is not None and len(x) >= 4 else []
        if not kernel:
            return {}
    k = len(kernel)
    strides = _attr(node, "strides") or [1] * k
    dilations = _attr(node, "dilations") or [1] * k
    pads = _attr(node, "pads") or [0] * (2 * k)
    auto_pad = _attr(node, "auto_pad", "NOTSET")
    x = node.inputs[0].shape if node.inputs else None
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and x is not None and len(x) >= 2 + k:
        pads = [0] * (2 * k)
        for i in range(k):
            n_in = x[2 + i]
            total = max((-(-n_in // strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - n_in, 0)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + k] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    kh, kw = _last_two(kernel, 1)
    sh, sw = _last_two(strides, 1)
    dh, dw = _last_two(dilations, 1)
    begin, end = pads[:k], pads[k:2 * k]
    pt, pl = _last_two(begin, 0)
    pb, pr = _last_two(end, 0)
    feats = {
        "kernel_h": kh, "kernel_w": kw, "stride_h": sh, "stride_w": sw, "pad_top": pt, "pad_left": pl,
        "pad_bottom": pb, "pad_right": pr, "dilation_h": dh, "dilation_w": dw,
    }
    group = int(_attr(node, "group", 1) or 1)
    if op_category(qt) == "conv":
        feats["log_groups"] = _log(group)
        w_shape = weight.shape if weight is not None else None
        if group > 1 and w_shape is not None and len(w_shape) >= 2 and w_shape[1] == 1:
            feats["is_depthwise"] = 1.0
    return feats


def node_feature_vector(node: Node) -> np.ndarray:
    """The float32 feature vector of one node, laid out as :data:`NODE_FEATURE_NAMES`."""
    v = np.zeros(NODE_FEATURE_DIM, dtype=np.float32)
    qt = node.qualified_type
    v[op_index(qt)] = 1.0
    v[_CAT_OFFSET + OP_CATEGORIES.index(op_category(qt))] = 1.0

    def put(name: str, value: float) -> None:
        v[_NODE_IDX[name]] = value

    out_shape = node.outputs[0].shape if node.outputs else None
    if out_shape is not None:
        put("out_shape_known", 1.0)
        put("out_rank", len(out_shape))
        dims = list(out_shape)
        if len(dims) > MAX_DIMS:
            dims = dims[:MAX_DIMS - 1] + [math.prod(dims[MAX_DIMS - 1:])]
        for i, d in enumerate(dims):
            put(f"log_out_dim{i}", _log(d))
    put("log_in_numel", _log(sum(t.numel or 0 for t in node.inputs if t.name and not t.is_weight)))
    put("log_out_numel", _log(sum(t.numel or 0 for t in node.outputs if t.name)))
    put("log_flops", _log(node.flops))
    put("log_macs", _log(node.macs))
    put("log_bytes_read", _log(node.bytes_read))
    put("log_bytes_written", _log(node.bytes_written))
    put("log_weight_bytes", _log(node.weight_bytes))
    put("log_params", _log(node.params))
    put("log_arithmetic_intensity", _log(node.arithmetic_intensity))
    if op_category(qt) in _WINDOW_CATEGORIES:
        for name, value in _window_attributes(node).items():
            put(name, value)
    put("n_inputs", sum(1 for t in node.inputs if t.name))
    put("n_outputs", sum(1 for t in node.outputs if t.name))
    put("has_formula", 1.0 if node.has_formula else 0.0)
    return v


def node_feature_matrix(graph: ModelGraph) -> np.ndarray:
    """[N, NODE_FEATURE_DIM] float32, one row per node in ``graph.nodes`` order."""
    if not graph.nodes:
        return np.zeros((0, NODE_FEATURE_DIM), dtype=np.float32)
    return np.stack([node_feature_vector(n) for n in graph.nodes])


# ---- graph-level (static) features ---------------------------------------------------------------------
STATIC_FEATURE_NAMES: tuple[str, ...] = (
    "log_macs",
    "log_flops",
    "log_params",
    "log_weight_bytes",
    "log_activation_bytes",
    "log_peak_activation_bytes",
    "log_memory_bytes",
    "batch_size",  # raw; 0 when unknown
    "log_batch_size",
    "log_input_numel",  # all graph inputs together
    "log_input_bytes",
    "log_image_size",  # metadata "image_size" (side length; geometric mean of h, w); 0 when not an image model
    "log_seq_len",  # metadata "seq_len"; 0 when not a sequence model
    "log_nodes",
    "log_edges",
    "log_depth",
    *(f"log_n_{cat}" for cat in OP_CATEGORIES),  # op counts per category (as DIPPM)
    "share_macs_conv",  # fraction of MACs in convolutions
    "share_macs_matmul",  # ... in matmul / gemm / attention
    "share_macs_recurrent",
    "log_arithmetic_intensity",  # log1p(FLOPs / (weights + activations + inputs bytes))
    "share_nodes_without_formula",
    # Cost breakdown: kinds of MACs run at very different speeds (a depthwise conv MAC costs ~10x a dense
    # one on CPU; attention's activation x activation matmuls are not weight GEMMs) and memory-bound ops
    # cost their bytes, so a predictor sees where the work is, not just how much there is.
    *(f"log_macs_{kind}" for kind in ("conv_dense", "conv_depthwise", "conv_grouped", "matmul_weights",
                                      "matmul_activations", "recurrent")),
    *(f"log_bytes_{cat}" for cat in ("elementwise", "activation", "norm", "softmax", "pooling", "reduce",
                                     "data_movement")),
    "log_n_tiny",  # nodes whose output has < 4096 elements: their time is per-op overhead, not work
    "log_roofline_us",  # nominal roofline sum: Σ max(FLOPs / 50 GFLOP/s, bytes / 20 GB/s) + 1 µs per node
)
STATIC_FEATURE_DIM = len(STATIC_FEATURE_NAMES)


def _metadata_size(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, list | tuple):
        vals = [float(v) for v in value if v]
        return math.prod(vals) ** (1.0 / len(vals)) if vals else 0.0
    return float(value)


def static_feature_vector(graph: ModelGraph) -> np.ndarray:
    """Graph-level float32 features, laid out as :data:`STATIC_FEATURE_NAMES`."""
    feats: dict[str, float] = {}
    macs = graph.macs
    feats["log_macs"] = _log(macs)
    feats["log_flops"] = _log(graph.flops)
    feats["log_params"] = _log(graph.params)
    feats["log_weight_bytes"] = _log(graph.weight_bytes)
    feats["log_activation_bytes"] = _log(graph.activation_bytes)
    feats["log_peak_activation_bytes"] = _log(graph.peak_activation_bytes)
    feats["log_memory_bytes"] = _log(graph.memory_bytes)
    batch = graph.batch_size or 0
    feats["batch_size"] = float(batch)
    feats["log_batch_size"] = _log(batch)
    feats["log_input_numel"] = _log(sum(t.numel or 0 for t in graph.inputs))
    input_bytes = sum(t.nbytes for t in graph.inputs)
    feats["log_input_bytes"] = _log(input_bytes)
    feats["log_image_size"] = _log(_metadata_size(graph.metadata.get("image_size")))
    feats["log_seq_len"] = _log(_metadata_size(graph.metadata.get("seq_len", graph.metadata.get("sequence_length"))))
    feats["log_nodes"] = _log(len(graph.nodes))
    feats["log_edges"] = _log(len(graph.edges))
    feats["log_depth"] = _log(graph.depth)
    counts = dict.fromkeys(OP_CATEGORIES, 0)
    cat_macs = dict.fromkeys(OP_CATEGORIES, 0)
    for n, (cat, _) in zip(graph.nodes, node_kinds(graph), strict=True):
        counts[cat] += 1
        cat_macs[cat] += n.macs
    for cat in OP_CATEGORIES:
        feats[f"log_n_{cat}"] = _log(counts[cat])
    for cat in ("conv", "matmul", "recurrent"):
        feats[f"share_macs_{cat}"] = cat_macs[cat] / macs if macs else 0.0
    moved = graph.weight_bytes + graph.activation_bytes + input_bytes
    feats["log_arithmetic_intensity"] = _log(graph.flops / moved) if moved else 0.0
    n_nodes = len(graph.nodes)
    feats["share_nodes_without_formula"] = (
        sum(1 for n in graph.nodes if not n.has_formula) / n_nodes if n_nodes else 0.0
    )
    feats.update(_cost_breakdown(graph))
    return np.array([feats[name] for name in STATIC_FEATURE_NAMES], dtype=np.float32)


_BYTES_CATEGORIES = ("elementwise", "activation", "norm", "softmax", "pooling", "reduce", "data_movement")
_NOMINAL_FLOPS_PER_US = 50e3  # 50 GFLOP/s
_NOMINAL_BYTES_PER_US = 20e3  # 20 GB/s
_TINY_NUMEL = 4096


def mac_kind(node: Any, category: str) -> str | None:
    if category == "recurrent":
        return "recurrent"
    if category == "matmul":
        # the operand, not the node's weight bytes: a weight shared by several MatMuls is counted once
        return "matmul_weights" if any(t.is_weight for t in node.inputs[:2]) else "matmul_activations"
    if category != "conv":
        return None
    group = int(node.attributes.get("group", 1) or 1)
    if group <= 1:
        return "conv_dense"
    shape = node.inputs[0].shape if node.inputs else None
    channels = shape[1] if shape is not None and len(shape) > 1 else None
    return "conv_depthwise" if channels is not None and group >= channels else "conv_grouped"


def node_kinds(graph: ModelGraph) -> list[tuple[str, str | None]]:
    """Per node, in node order: (:func:`op_category`, :func:`mac_kind`), memoised on the graph object — the
    static features, the additive cost rows and the node-cost model all classify every node."""
    def compute() -> list[tuple[str, str | None]]:
        out = []
        for n in graph.nodes:
            cat = _OP_TO_CATEGORY.get(n.qualified_type, "other")
            out.append((cat, mac_kind(n, cat)))
        return out

    return graph.derived(("node_kinds",), compute)


def _cost_breakdown(graph: ModelGraph) -> dict[str, float]:
    macs: dict[str, int] = dict.fromkeys(("conv_dense", "conv_depthwise", "conv_grouped", "matmul_weights",
                                          "matmul_activations", "recurrent"), 0)
    moved: dict[str, int] = dict.fromkeys(_BYTES_CATEGORIES, 0)
    tiny = 0
    roofline_us = 0.0
    kinds = node_kinds(graph)
    for n in graph.running_nodes():  # the others are folded at session start
        cat, kind = kinds[n.index]
        if kind is not None:
            macs[kind] += n.macs
        nbytes = n.bytes_read + n.bytes_written
        if cat in moved:
            moved[cat] += nbytes
        out_numel = 0
        for t in n.outputs:
            out_numel += t.numel or 0
        tiny += out_numel < _TINY_NUMEL
        roofline_us += max(n.flops / _NOMINAL_FLOPS_PER_US, nbytes / _NOMINAL_BYTES_PER_US) + 1.0
    out = {f"log_macs_{k}": _log(v) for k, v in macs.items()}
    out.update({f"log_bytes_{k}": _log(v) for k, v in moved.items()})
    out["log_n_tiny"] = _log(tiny)
    out["log_roofline_us"] = _log(roofline_us)
    return out


# ---- structure -----------------------------------------------------------------------------------------
def edge_index(graph: ModelGraph) -> np.ndarray:
    """[2, E] int64 producer → consumer node indices, one column per edge of ``graph.edges`` (a node pair
    linked by several tensors keeps several columns)."""
    if not graph.edges:
        return np.zeros((2, 0), dtype=np.int64)
    return np.array([[e.src for e in graph.edges], [e.dst for e in graph.edges]], dtype=np.int64)


def adjacency(graph: ModelGraph) -> sp.csr_matrix:
    """[N, N] binary directed adjacency (row = producer, column = consumer) as float32 CSR."""
    n = len(graph.nodes)
    ei = edge_index(graph)
    a = sp.coo_matrix((np.ones(ei.shape[1], dtype=np.float32), (ei[0], ei[1])), shape=(n, n)).tocsr()
    a.sum_duplicates()
    a.data[:] = 1.0
    return a


def edge_feature_matrix(graph: ModelGraph) -> np.ndarray:
    """[E, 1] float32: log1p of the bytes each edge's tensor carries."""
    return np.array([[_log(e.nbytes)] for e in graph.edges], dtype=np.float32).reshape(len(graph.edges), 1)


EDGE_FEATURE_NAMES: tuple[str, ...] = ("log_tensor_bytes",)


def to_pyg(graph: ModelGraph, y: dict[str, float] | None = None) -> Data:
    """A PyTorch Geometric ``Data`` for the graph predictors.

    Attributes: ``x`` [N, F], ``edge_index`` [2, E] (long), ``edge_attr`` [E, 1], ``static`` [1, S] (so
    batching stacks one row per graph), and, when targets are given, ``y`` [1, T] in the order of ``y``'s
    keys, ``target_names`` and one ``y_<name>`` [1] per target.
    """
    import torch
    from torch_geometric.data import Data

    data = Data(
        x=torch.from_numpy(node_feature_matrix(graph)),
        edge_index=torch.from_numpy(edge_index(graph)),
        edge_attr=torch.from_numpy(edge_feature_matrix(graph)),
        num_nodes=len(graph.nodes),
    )
    data.static = torch.from_numpy(static_feature_vector(graph)).unsqueeze(0)
    if y:
        names = list(y)
        for name in names:
            if not name.isidentifier():
                raise InferperfError(f"target name '{name}' must be a Python identifier")
        values = [float(y[k]) for k in names]
        data.y = torch.tensor([values], dtype=torch.float32)
        data.target_names = names
        for name, value in zip(names, values, strict=True):
            setattr(data, f"y_{name}", torch.tensor([value], dtype=torch.float32))
    return data


# ---- versioning ----------------------------------------------------------------------------------------
def encoding_info() -> dict[str, Any]:
    """Everything that fixes the feature layout; saved with each trained artifact."""
    return {
        "version": ENCODING_VERSION,
        "op_vocab": list(OP_VOCAB),
        "op_categories": list(OP_CATEGORIES),
        "node_feature_names": list(NODE_FEATURE_NAMES),
        "static_feature_names": list(STATIC_FEATURE_NAMES),
        "edge_feature_names": list(EDGE_FEATURE_NAMES),
        "node_feature_dim": NODE_FEATURE_DIM,
        "static_feature_dim": STATIC_FEATURE_DIM,
    }


def check_encoding(info: dict[str, Any]) -> None:
    """Raise :class:`EncodingMismatchError` when ``info`` (from an artifact) differs from this encoding."""
    current = encoding_info()
    if not isinstance(info, dict):
        raise EncodingMismatchError("the predictor artifact carries no feature-encoding information")
    problems: list[str] = []
    if info.get("version") != current["version"]:
        problems.append(f"encoding version {info.get('version')!r} vs {current['version']!r} here")
    for key in ("op_vocab", "op_categories", "node_feature_names", "static_feature_names",
                "edge_feature_names"):
        theirs, ours = list(info.get(key) or []), current[key]
        if theirs != ours:
            added = [x for x in ours if x not in theirs]
            removed = [x for x in theirs if x not in ours]
            detail = f"{key}: {len(theirs)} entries vs {len(ours)} here"
            if added or removed:
                detail += f" (missing in artifact: {added[:5]}; unknown here: {removed[:5]})"
            else:
                detail += " (same entries, different order)"
            problems.append(detail)
    if problems:
        raise EncodingMismatchError(
            "the predictor was trained with a different feature encoding than this inferperf uses — "
            + "; ".join(problems)
            + ". Retrain the predictor with this version."
        )
