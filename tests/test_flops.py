"""Cost formulas of inferperf.ir.flops, each checked against a count derived independently here (by hand,
from ONNX shape inference, from an equivalent unfused graph, or from onnx-tool)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferperf.ir.flops import (
    MS_DOMAIN,
    NCHWC_DOMAIN,
    Cost,
    conv_output_spatial,
    einsum_cost,
    has_formula,
    infer_output_shapes,
    nchwc_block_size,
    node_cost,
    supported_ops,
)
from inferperf.ir.graph import TensorInfo

ABSENT = TensorInfo(name="", shape=None, dtype="")


def act(shape: tuple[int, ...] | None, name: str = "x") -> TensorInfo:
    return TensorInfo(name=name, shape=shape, dtype="float32")


def weight(shape: tuple[int, ...], name: str = "w") -> TensorInfo:
    return TensorInfo(name=name, shape=shape, dtype="float32", is_weight=True)


def cost(op: str, inputs: list[TensorInfo], outputs: list[TensorInfo] | None = None, domain: str = "",
         **attrs: Any) -> Cost | None:
    return node_cost(op, domain, attrs, inputs, outputs if outputs is not None else [act(None, "y")])


# ---- a minimal ONNX → per-node TensorInfo walk (the real builder lives in ir/build.py) --------------------
_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.INT64: "int64", TensorProto.INT8: "int8",
           TensorProto.UINT8: "uint8", TensorProto.INT32: "int32"}


def costs_of(model: onnx.ModelProto) -> dict[str, tuple[str, Cost | None]]:
    """Shape-infer ``model`` and cost every node; keyed by node name."""
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = model.graph
    infos: dict[str, TensorInfo] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        tt = vi.type.tensor_type
        shape = tuple(d.dim_value for d in tt.shape.dim) if tt.HasField("shape") else None
        infos[vi.name] = TensorInfo(vi.name, shape, _DTYPES.get(tt.elem_type, "float32"))
    for init in g.initializer:
        infos[init.name] = TensorInfo(init.name, tuple(init.dims), _DTYPES.get(init.data_type, "float32"), True)
    out: dict[str, tuple[str, Cost | None]] = {}
    for n in g.node:
        attrs = {}
        for a in n.attribute:
            v = helper.get_attribute_value(a)
            attrs[a.name] = v.decode() if isinstance(v, bytes) else v
        ins = [infos.get(i, TensorInfo(i, None, "float32")) if i else ABSENT for i in n.input]
        outs = [infos.get(o, TensorInfo(o, None, "float32")) for o in n.output]
        out[n.name] = (n.op_type, node_cost(n.op_type, n.domain, attrs, ins, outs))
    return out


def _init(name: str, shape: tuple[int, ...], seed: int = 0) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def dense_model() -> onnx.ModelProto:
    """Grouped dilated strided Conv with bias, Gemm with transB and bias, batched MatMuls and an Einsum."""
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", group=2, dilations=[2, 1],
                         strides=[2, 1], pads=[1, 0, 1, 0]),
        helper.make_node("Conv", ["c", "dw"], ["d"], name="dwconv", group=12, pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["d"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["g"], name="gemm", transB=1),
        helper.make_node("MatMul", ["q", "k"], ["s"], name="bmm"),
        helper.make_node("MatMul", ["s", "v"], ["o"], name="mm_weight"),
        helper.make_node("Einsum", ["e1", "e2"], ["e"], name="einsum", equation="bij,bjk->bik"),
    ]
    inits = [_init("cw", (12, 4, 3, 3)), _init("cb", (12,)), _init("dw", (12, 1, 3, 3)),
             _init("gw", (10, 12 * 8 * 17)), _init("gb", (10,)), _init("v", (16, 24))]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 17, 19]),
        helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3, 4, 5]),
        helper.make_tensor_value_info("k", TensorProto.FLOAT, [2, 3, 5, 16]),
        helper.make_tensor_value_info("e1", TensorProto.FLOAT, [3, 4, 5]),
        helper.make_tensor_value_info("e2", TensorProto.FLOAT, [3, 5, 6]),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("g", "o", "e")]
    graph = helper.make_graph(nodes, "dense", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# ---- convolution ---------------------------------------------------------------------------------------
def test_grouped_dilated_strided_conv_by_hand() -> None:
    # x [2, 8, 17, 19], W [12, 4, 3, 3], group 2, dilation (2, 1), stride (2, 1), pads top/bottom 1.
    # effective kernel height (3-1)*2+1 = 5 -> out H = (17 + 2 - 5)//2 + 1 = 8; out W = 19 - 3 + 1 = 17.
    out_numel = 2 * 12 * 8 * 17
    macs = out_numel * (8 // 2) * 3 * 3
    attrs = dict(group=2, dilations=[2, 1], strides=[2, 1], pads=[1, 0, 1, 0])
    with_bias = cost("Conv", [act((2, 8, 17, 19)), weight((12, 4, 3, 3)), weight((12,), "b")],
                     [act((2, 12, 8, 17), "y")], **attrs)
    assert with_bias == Cost(flops=2 * macs + out_numel, macs=macs)
    no_bias = cost("Conv", [act((2, 8, 17, 19)), weight((12, 4, 3, 3))], [act((2, 12, 8, 17), "y")], **attrs)
    assert no_bias == Cost(flops=2 * macs, macs=macs)
    # the same from input shape and attributes alone (contrib / NCHWc outputs often lack shapes)
    derived = cost("Conv", [act((2, 8, 17, 19)), weight((12, 4, 3, 3)), weight((12,), "b")], **attrs)
    assert derived == with_bias


def test_conv_output_shape_agrees_with_onnx_shape_inference() -> None:
    costs = costs_of(dense_model())
    model = onnx.shape_inference.infer_shapes(dense_model())
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in model.graph.value_info}
    assert shapes["c"] == (2, 12, 8, 17)
    assert conv_output_spatial((17, 19), (3, 3), (2, 1), (1, 0, 1, 0), (2, 1)) == shapes["c"][2:]
    # depthwise: one input channel per group -> 9 MACs per output element
    assert costs["dwconv"][1] == Cost(flops=2 * math.prod(shapes["d"]) * 9, macs=math.prod(shapes["d"]) * 9)


def test_conv_same_autopad_and_1d() -> None:
    c = cost("Conv", [act((1, 4, 15, 15)), weight((8, 4, 5, 5))], auto_pad="SAME_UPPER", strides=[2, 2])
    assert c is not None and c.macs == 1 * 8 * 8 * 8 * 4 * 25  # ceil(15 / 2) = 8
    c1 = cost("Conv", [act((3, 2, 50)), weight((6, 2, 7))], [act((3, 6, 44), "y")])
    assert c1 is not None and c1.macs == 3 * 6 * 44 * 2 * 7


def test_conv_unknown_input_shape_is_unknown_not_zero() -> None:
    assert cost("Conv", [act(None), weight((8, 4, 3, 3))]) is None


def test_conv_transpose_scatter_count() -> None:
    # every input element multiplies (M / groups) * kH * kW weights: x [1, 4, 5, 5], W [4, 3, 3, 3], 2 groups
    x, w = (1, 4, 5, 5), (4, 3, 3, 3)
    out = (1, 6, 11, 11)
    c = cost("ConvTranspose", [act(x), weight(w), weight((6,), "b")], [act(out, "y")], group=2, strides=[2, 2])
    macs = math.prod(x) * 3 * 3 * 3
    assert c == Cost(flops=2 * macs + math.prod(out), macs=macs)


# ---- matrix products -----------------------------------------------------------------------------------
def test_gemm_transposes_alpha_beta() -> None:
    m, k, n = 5, 7, 3
    c = cost("Gemm", [act((k, m)), weight((n, k)), weight((n,), "c")], [act((m, n), "y")],
             transA=1, transB=1, alpha=0.5, beta=2.0)
    # alpha scaling (1), beta scaling (1) and the C add (1) per output element
    assert c == Cost(flops=2 * m * n * k + 3 * m * n, macs=m * n * k)
    plain = cost("Gemm", [act((m, k)), weight((k, n))], [act((m, n), "y")])
    assert plain == Cost(flops=2 * m * n * k, macs=m * n * k)


@pytest.mark.parametrize(
    ("a", "b", "out"),
    [
        ((2, 1, 4, 5), (3, 5, 6), (2, 3, 4, 6)),  # batch broadcast in both directions
        ((7, 4, 5), (5, 6), (7, 4, 6)),  # weight matrix shared by the batch
        ((5,), (5, 6), (6,)),  # 1-D left operand
        ((2, 4, 5), (5,), (2, 4)),  # 1-D right operand
        ((5,), (5,), ()),  # dot product
    ],
)
def test_matmul_broadcasting_and_vectors(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> None:
    # independent reference: numpy's own result shape times the contracted length
    assert np.matmul(np.zeros(a), np.zeros(b)).shape == out
    k = a[-1]
    c = cost("MatMul", [act(a), act(b, "b")])
    assert c == Cost(flops=2 * math.prod(out) * k, macs=math.prod(out) * k)


def test_matmul_incompatible_shapes_are_unknown() -> None:
    assert cost("MatMul", [act((2, 4, 5)), act((6, 7), "b")]) is None


def test_fused_matmul_transposes_match_plain_matmul() -> None:
    plain = cost("MatMul", [act((2, 3, 4, 5)), act((2, 3, 5, 6), "b")])
    fused = cost("FusedMatMul", [act((2, 3, 5, 4)), act((2, 3, 6, 5), "b")], domain=MS_DOMAIN,
                 transA=1, transB=1, alpha=0.125)
    assert plain is not None and fused is not None
    assert fused.macs == plain.macs
    assert fused.flops == plain.flops + 2 * 3 * 4 * 6  # the alpha scaling


def test_fused_gemm_is_gemm_plus_activation() -> None:
    ins = [act((8, 16)), weight((16, 4)), weight((4,), "c")]
    gemm = cost("Gemm", ins, [act((8, 4), "y")])
    fused = cost("FusedGemm", ins, [act((8, 4), "y")], domain=MS_DOMAIN, activation="Relu")
    assert gemm is not None and fused is not None
    assert fused == Cost(gemm.flops + 8 * 4, gemm.macs)


# ---- Einsum --------------------------------------------------------------------------------------------
def test_einsum_batched_matmul_equals_matmul() -> None:
    b, i, j, k = 3, 4, 5, 6
    e = cost("Einsum", [act((b, i, j)), act((b, j, k), "b")], equation="bij,bjk->bik")
    assert e == Cost(flops=2 * b * i * j * k, macs=b * i * j * k)
    assert e == cost("MatMul", [act((b, i, j)), act((b, j, k), "b")])


def test_einsum_forms() -> None:
    # implicit output and ellipsis broadcasting
    assert einsum_cost("...ij,jk", [(2, 3, 4, 5), (5, 6)]) == Cost(2 * 2 * 3 * 4 * 5 * 6, 2 * 3 * 4 * 5 * 6)
    # outer product: multiplies only, nothing accumulated
    assert einsum_cost("i,j->ij", [(4,), (5,)]) == Cost(20, 0)
    # single-operand reduction: one add per input element; a transpose is free
    assert einsum_cost("ij->i", [(4, 5)]) == Cost(20, 0)
    assert einsum_cost("ij->ji", [(4, 5)]) == Cost(0, 0)
    # three operands contracted left to right: (ij,jk -> ik) then (ik,kl -> il)
    i, j, k, ll = 2, 3, 4, 5
    assert einsum_cost("ij,jk,kl->il", [(i, j), (j, k), (k, ll)]).macs == i * j * k + i * k * ll
    # attention-style contraction with a broadcast (size-1) head dimension
    assert einsum_cost("bhqd,bhkd->bhqk", [(2, 4, 8, 16), (2, 1, 8, 16)]).macs == 2 * 4 * 8 * 8 * 16


def test_einsum_bad_equation_is_unknown() -> None:
    assert cost("Einsum", [act((3, 4)), act((4, 5), "b")], equation="ijk,kl->il") is None


# ---- recurrent -----------------------------------------------------------------------------------------
def test_lstm_bidirectional() -> None:
    seq, batch, inp, hidden, dirs = 7, 2, 10, 16, 2
    ins = [act((seq, batch, inp)), weight((dirs, 4 * hidden, inp)), weight((dirs, 4 * hidden, hidden), "r"),
           weight((dirs, 8 * hidden), "b")]
    c = cost("LSTM", ins, hidden_size=hidden, direction="bidirectional")
    # per direction, time step and batch row: four gate matrix-vector products with W (4H x I) and R (4H x H)
    macs = dirs * seq * batch * (4 * hidden * inp + 4 * hidden * hidden)
    assert c is not None and c.macs == macs
    # gate nonlinearities and cell updates add element-wise work on top of the products
    assert c.flops > 2 * macs
    # batch-first layout describes the same computation
    ins_bf = [act((batch, seq, inp)), *ins[1:]]
    assert cost("LSTM", ins_bf, hidden_size=hidden, direction="bidirectional", layout=1) == c


def test_gru_and_rnn_gate_counts() -> None:
    seq, batch, inp, hidden = 5, 3, 8, 12
    gru = cost("GRU", [act((seq, batch, inp)), weight((1, 3 * hidden, inp)), weight((1, 3 * hidden, hidden))])
    rnn = cost("RNN", [act((seq, batch, inp)), weight((1, hidden, inp)), weight((1, hidden, hidden))])
    assert gru is not None and gru.macs == seq * batch * 3 * hidden * (inp + hidden)
    assert rnn is not None and rnn.macs == seq * batch * hidden * (inp + hidden)


# ---- attention -----------------------------------------------------------------------------------------
def _unfused_attention_macs(b: int, s: int, d: int, heads: int, total: int) -> int:
    """MACs of the same attention written as plain MatMuls, costed by the MatMul formula."""
    h = d // heads
    proj = cost("MatMul", [act((b, s, d)), weight((d, 3 * d))])
    scores = cost("MatMul", [act((b, heads, s, h)), act((b, heads, h, total), "k")])
    context = cost("MatMul", [act((b, heads, s, total)), act((b, heads, total, h), "v")])
    assert proj is not None and scores is not None and context is not None
    return proj.macs + scores.macs + context.macs


def test_ms_attention_equals_unfused_matmuls() -> None:
    b, s, d, heads = 2, 16, 64, 4
    c = cost("Attention", [act((b, s, d)), weight((d, 3 * d)), weight((3 * d,), "bias")], domain=MS_DOMAIN,
             num_heads=heads)
    assert c is not None and c.macs == _unfused_attention_macs(b, s, d, heads, s)
    # a past of 10 steps lengthens the keys to 26
    past = act((2, b, heads, 10, d // heads), "past")
    c_past = cost("Attention", [act((b, s, d)), weight((d, 3 * d)), weight((3 * d,), "bias"), ABSENT, past],
                  domain=MS_DOMAIN, num_heads=heads)
    assert c_past is not None and c_past.macs == _unfused_attention_macs(b, s, d, heads, s + 10)


def test_multi_head_attention_cross() -> None:
    b, s, kv, d, dv, heads = 2, 16, 20, 64, 32, 4
    c = cost("MultiHeadAttention", [act((b, s, d)), act((b, kv, d), "k"), act((b, kv, dv), "v")],
             domain=MS_DOMAIN, num_heads=heads)
    assert c is not None
    assert c.macs == b * heads * s * kv * (d // heads) + b * heads * s * kv * (dv // heads)


def test_group_query_attention_uses_present_length() -> None:
    b, s, heads, kv_heads, h, total = 1, 4, 8, 2, 16, 36
    outs = [act((b, s, heads * h), "y"), act((b, kv_heads, total, h), "pk"), act((b, kv_heads, total, h), "pv")]
    c = cost("GroupQueryAttention",
             [act((b, s, heads * h)), act((b, s, kv_heads * h), "k"), act((b, s, kv_heads * h), "v")],
             outs, domain=MS_DOMAIN, num_heads=heads, kv_num_heads=kv_heads)
    assert c is not None and c.macs == 2 * b * heads * s * total * h


def test_onnx_attention_op_4d_and_3d() -> None:
    b, heads, s, kv, h, hv = 2, 4, 8, 12, 16, 8
    four = cost("Attention", [act((b, heads, s, h)), act((b, heads, kv, h), "k"), act((b, heads, kv, hv), "v")])
    assert four is not None and four.macs == b * heads * s * kv * (h + hv)
    three = cost("Attention", [act((b, s, heads * h)), act((b, kv, heads * h), "k"), act((b, kv, heads * hv), "v")],
                 q_num_heads=heads, kv_num_heads=heads)
    assert three == four


# ---- element-wise, activations ------------------------------------------------------------------------
def test_binary_broadcast_counts_output_elements() -> None:
    assert cost("Add", [act((2, 3, 4)), weight((4,))], [act((2, 3, 4), "y")]) == Cost(24, 0)
    # output shape unknown: broadcast of the inputs
    assert cost("Mul", [act((2, 1, 4)), act((3, 1), "b")]) == Cost(24, 0)
    assert cost("Add", [act(None), act((3,), "b")]) is None


def test_activation_costs_are_ordered_and_documented() -> None:
    n = 1000
    per = {}
    for op, attrs in [("Relu", {}), ("LeakyRelu", {}), ("Sigmoid", {}), ("Gelu", {}),
                      ("Gelu", {"approximate": "tanh"}), ("Mish", {}), ("Exp", {}), ("Add", {})]:
        c = cost(op, [act((n,))], [act((n,), "y")], **attrs)
        assert c is not None and c.macs == 0 and c.flops % n == 0
        per[(op, attrs.get("approximate", ""))] = c.flops // n
    assert per[("Relu", "")] == per[("Add", "")] == 1
    assert per[("Relu", "")] < per[("LeakyRelu", "")] < per[("Sigmoid", "")] < per[("Mish", "")]
    assert per[("Exp", "")] < per[("Gelu", "")] < per[("Gelu", "tanh")]
    assert per[("Gelu", "")] == 8  # the erf form: scale, erf (4), add, two multiplies


def test_variadic_ops() -> None:
    shapes = [act((4, 5)), act((4, 5), "b"), act((5,), "c")]
    assert cost("Sum", shapes) == Cost(2 * 20, 0)
    assert cost("Max", shapes[:1]) == Cost(0, 0)  # a single input is the identity
    assert cost("Mean", shapes) == Cost(3 * 20, 0)


def test_contrib_elementwise_compose() -> None:
    x, bias = act((2, 8, 32)), weight((32,), "b")
    n = 2 * 8 * 32
    gelu = cost("Gelu", [x], [act((2, 8, 32), "y")], domain=MS_DOMAIN)
    bias_gelu = cost("BiasGelu", [x, bias], [act((2, 8, 32), "y")], domain=MS_DOMAIN)
    add = cost("Add", [x, bias], [act((2, 8, 32), "y")])
    assert gelu is not None and bias_gelu is not None and add is not None
    assert bias_gelu.flops == gelu.flops + add.flops == gelu.flops + n
    fast = cost("FastGelu", [x], [act((2, 8, 32), "y")], domain=MS_DOMAIN)
    onnx_tanh_gelu = cost("Gelu", [x], [act((2, 8, 32), "y")], approximate="tanh")
    assert fast == onnx_tanh_gelu
    softmax = cost("Softmax", [act((2, 4, 8, 8))], [act((2, 4, 8, 8), "y")])
    bias_softmax = cost("BiasSoftmax", [act((2, 4, 8, 8)), act((2, 1, 8, 8), "m")], [act((2, 4, 8, 8), "y")],
                        domain=MS_DOMAIN)
    assert softmax is not None and bias_softmax is not None
    assert bias_softmax.flops == softmax.flops + 2 * 4 * 8 * 8


def test_fused_conv_is_conv_plus_activation_and_sum() -> None:
    ins = [act((1, 8, 10, 10)), weight((16, 8, 3, 3)), weight((16,), "b")]
    out = [act((1, 16, 8, 8), "y")]
    conv = cost("Conv", ins, out)
    relu = cost("Relu", out, out)
    fused = cost("FusedConv", ins, out, domain=MS_DOMAIN, activation="Relu")
    with_sum = cost("FusedConv", [*ins, act((1, 16, 8, 8), "z")], out, domain=MS_DOMAIN, activation="Relu")
    assert conv is not None and relu is not None and fused is not None and with_sum is not None
    assert fused == conv + relu
    assert with_sum.flops == fused.flops + 16 * 64
    # an activation we have no cost for is unknown rather than silently free
    assert cost("FusedConv", ins, out, domain=MS_DOMAIN, activation="SomethingNew") is None


def test_nhwc_conv_matches_nchw_conv() -> None:
    nchw = cost("Conv", [act((2, 8, 12, 12)), weight((16, 8, 3, 3))], [act((2, 16, 10, 10), "y")])
    nhwc = cost("NhwcConv", [act((2, 12, 12, 8)), weight((16, 8, 3, 3))], [act((2, 10, 10, 16), "y")],
                domain=MS_DOMAIN)
    nhwc_derived = cost("NhwcConv", [act((2, 12, 12, 8)), weight((16, 8, 3, 3))], domain=MS_DOMAIN)
    assert nchw == nhwc == nhwc_derived


# ---- normalisation, softmax, reductions ----------------------------------------------------------------
def test_norms_scale_with_elements_and_have_no_macs() -> None:
    small = cost("LayerNormalization", [act((2, 8, 16)), weight((16,)), weight((16,), "b")], axis=-1)
    big = cost("LayerNormalization", [act((4, 8, 16)), weight((16,)), weight((16,), "b")], axis=-1)
    assert small is not None and big is not None and small.macs == 0
    assert big.flops == 2 * small.flops
    skip = cost("SkipLayerNormalization", [act((2, 8, 16)), act((2, 8, 16), "s"), weight((16,)),
                                           weight((16,), "b")], domain=MS_DOMAIN)
    assert skip is not None and skip.flops == small.flops + 2 * 8 * 16  # plus the residual add
    rms = cost("SimplifiedLayerNormalization", [act((2, 8, 16)), weight((16,))], axis=-1)
    assert rms is not None and 0 < rms.flops < small.flops  # no centring, no bias
    for op, ins in [("BatchNormalization", [act((2, 8, 4, 4))] + [weight((8,), f"p{i}") for i in range(4)]),
                    ("InstanceNormalization", [act((2, 8, 4, 4)), weight((8,)), weight((8,), "b")]),
                    ("GroupNormalization", [act((2, 8, 4, 4)), weight((8,)), weight((8,), "b")])]:
        c = cost(op, ins, num_groups=2)
        assert c is not None and c.macs == 0 and c.flops >= 2 * 2 * 8 * 4 * 4, op


def test_reductions() -> None:
    x = act((4, 6, 10))
    assert cost("ReduceSum", [x]) == Cost(240, 0)  # output shape not needed
    assert cost("ReduceMean", [x]) is None  # the divide per output needs the output shape
    assert cost("ReduceMean", [x], [act((4, 6, 1), "y")]) == Cost(240 + 24, 0)
    assert cost("ArgMax", [x]) == Cost(240, 0)
    topk = cost("TopK", [x, act((1,), "k")], [act((4, 6, 4), "v"), act((4, 6, 4), "i")])
    assert topk == Cost(240 * 2, 0)  # log2(4) comparisons per element


# ---- pooling, resize -----------------------------------------------------------------------------------
def test_pooling() -> None:
    x = act((1, 3, 10, 10))
    # out 5x5 (kernel 3, stride 2, pad 1); every output reads 9 inputs
    assert cost("MaxPool", [x], [act((1, 3, 5, 5), "y")], kernel_shape=[3, 3], strides=[2, 2],
                pads=[1, 1, 1, 1]) == Cost(3 * 25 * 9, 0)
    avg = cost("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    assert avg == Cost(3 * 25 * 10, 0)  # plus the divide; output shape derived from attributes
    assert cost("GlobalAveragePool", [x]) == Cost(300 + 3, 0)
    assert cost("GlobalMaxPool", [x]) == Cost(300, 0)
    assert cost("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1) == Cost(3 * 25 * 4, 0)


def test_resize_by_mode() -> None:
    x, y = act((1, 3, 8, 8)), act((1, 3, 16, 16), "y")
    nearest = cost("Resize", [x, ABSENT, act((4,), "s")], [y], mode="nearest")
    linear = cost("Resize", [x, ABSENT, act((4,), "s")], [y], mode="linear")
    cubic = cost("Resize", [x, ABSENT, act((4,), "s")], [y], mode="cubic")
    assert nearest is not None and linear is not None and cubic is not None
    assert 0 < nearest.flops < linear.flops < cubic.flops
    assert linear.flops % (3 * 256) == 0
    assert cost("Resize", [x, ABSENT, act((4,), "s")], [act(None, "y")], mode="linear") is None


# ---- data movement, unknown ops ------------------------------------------------------------------------
def test_data_movement_is_free_even_without_shapes() -> None:
    for op in ("Reshape", "Transpose", "Concat", "Gather", "Cast", "Pad", "Identity", "Shape", "Expand"):
        assert cost(op, [act(None)]) == Cost(0, 0), op
    assert cost("ReorderInput", [act(None)], domain=NCHWC_DOMAIN) == Cost(0, 0)
    assert cost("Where", [act((3, 4), "c"), act((3, 4)), act((1,), "b")]) == Cost(12, 0)


def test_unknown_ops_have_no_formula() -> None:
    for op, domain in [("Loop", ""), ("If", ""), ("NonMaxSuppression", ""), ("MadeUpOp", MS_DOMAIN),
                       ("Conv", "com.example")]:
        assert not has_formula(op, domain)
        assert node_cost(op, domain, {}, [act((2, 3))], [act((2, 3), "y")]) is None
    assert has_formula("Conv", "ai.onnx") and has_formula("FusedConv", MS_DOMAIN)
    assert "com.microsoft.nchwc::Conv" in supported_ops()


# ---- quantised ops -------------------------------------------------------------------------------------
def test_quantized_dense_ops_have_float_macs() -> None:
    def i8(shape: tuple[int, ...], name: str = "q", w: bool = False) -> TensorInfo:
        return TensorInfo(name, shape, "int8", w)

    scalar = TensorInfo("s", (), "float32", True)
    conv = cost("Conv", [act((1, 8, 10, 10)), weight((16, 8, 3, 3))], [act((1, 16, 8, 8), "y")])
    qconv = cost("QLinearConv", [i8((1, 8, 10, 10)), scalar, scalar, i8((16, 8, 3, 3), "w", True), scalar,
                                 scalar, scalar, scalar], [i8((1, 16, 8, 8), "y")])
    iconv = cost("ConvInteger", [i8((1, 8, 10, 10)), i8((16, 8, 3, 3), "w", True)], [act((1, 16, 8, 8), "y")])
    assert conv is not None and qconv is not None and iconv is not None
    assert qconv.macs == iconv.macs == conv.macs
    assert qconv.flops > conv.flops  # requantisation of every output
    mm = cost("MatMul", [act((4, 32)), weight((32, 8))])
    qmm = cost("QLinearMatMul", [i8((4, 32)), scalar, scalar, i8((32, 8), "b", True), scalar, scalar, scalar,
                                 scalar], [i8((4, 8), "y")])
    imm = cost("MatMulInteger", [i8((4, 32)), i8((32, 8), "b", True)])
    assert mm is not None and qmm is not None and imm is not None
    assert qmm.macs == imm.macs == mm.macs
    dq = cost("DynamicQuantizeLinear", [act((4, 32))])
    assert dq is not None and dq.macs == 0 and dq.flops > 0


# ---- NCHWc (ORT's blocked CPU layout) ------------------------------------------------------------------
def test_nchwc_ops_on_padded_logical_shapes() -> None:
    # NCHWc tensors are [N, C padded to the block, H, W]; weights stay OIHW, padded the same way
    c = cost("Conv", [act((1, 16, 8, 8)), weight((16, 16, 3, 3)), weight((16,), "b")], domain=NCHWC_DOMAIN,
             pads=[1, 1, 1, 1], activation="Relu")
    macs = 1 * 16 * 8 * 8 * 16 * 9
    assert c == Cost(flops=2 * macs + 2 * 16 * 64, macs=macs)
    dw = cost("Conv", [act((1, 16, 8, 8)), weight((16, 1, 3, 3))], domain=NCHWC_DOMAIN, group=16,
              pads=[1, 1, 1, 1], strides=[2, 2])
    assert dw == Cost(flops=2 * 16 * 16 * 9, macs=16 * 16 * 9)
    pool = cost("MaxPool", [act((1, 16, 8, 8))], domain=NCHWC_DOMAIN, kernel_shape=[2, 2], strides=[2, 2])
    assert pool == Cost(16 * 16 * 4, 0)
    gap = cost("GlobalAveragePool", [act((1, 16, 8, 8))], domain=NCHWC_DOMAIN)
    assert gap == Cost(1024 + 16, 0)
    up = cost("Upsample", [act((1, 16, 8, 8))], domain=NCHWC_DOMAIN, scales=[1, 1, 2, 2], mode="nearest")
    assert up is not None and up.flops == 1024 * 4 * 2
    assert cost("ReorderOutput", [act(None)], domain=NCHWC_DOMAIN, channels=12) == Cost(0, 0)


def test_nchwc_output_shapes() -> None:
    assert infer_output_shapes("ReorderInput", NCHWC_DOMAIN, {}, [act((2, 20, 7, 7))], block_size=8) == [
        (2, 24, 7, 7)]
    assert infer_output_shapes("ReorderInput", NCHWC_DOMAIN, {"channels_last": 1}, [act((2, 7, 7, 20))],
                               block_size=16) == [(2, 32, 7, 7)]
    assert infer_output_shapes("ReorderOutput", NCHWC_DOMAIN, {"channels": 20}, [act((2, 24, 7, 7))]) == [
        (2, 20, 7, 7)]
    conv = infer_output_shapes("Conv", NCHWC_DOMAIN, {"strides": [2, 2], "pads": [1, 1, 1, 1]},
                               [act((1, 16, 15, 15)), weight((24, 16, 3, 3))])
    assert conv == [(1, 24, 8, 8)]
    assert infer_output_shapes("Conv", "", {}, [act((1, 16, 15, 15)), weight((24, 16, 3, 3))]) is None


def _cnn_for_nchwc() -> onnx.ModelProto:
    """16 input channels (so ORT reorders the input), 24 channels (padded when the block is 16), a residual
    sum, then 32 channels through pooling and a nearest 2x upsample: every NCHWc op kind."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=24),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="pw"),
        helper.make_node("MaxPool", ["c3"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p", "", "scales"], ["u"], name="up", mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("GlobalAveragePool", ["u"], ["y"], name="gap"),
    ]
    inits = [_init("w1", (24, 16, 3, 3)), _init("b1", (24,)), _init("w2", (24, 1, 3, 3)), _init("b2", (24,)),
             _init("w3", (32, 24, 1, 1)), _init("b3", (32,)),
             numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 20, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_nchwc_graph_from_onnxruntime_matches_runtime_shapes_and_macs(tmp_path: Path) -> None:
    """Optimize with ORT (NCHWc on AVX2+), propagate shapes with infer_output_shapes, and check them against
    the shapes ORT itself reports when running the graph; total MACs must be the original convolutions'
    work with every channel count padded to the block."""
    ort = pytest.importorskip("onnxruntime")
    src, opt = tmp_path / "m.onnx", tmp_path / "opt.onnx"
    onnx.save(_cnn_for_nchwc(), src)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(opt)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(opt))
    if not any(n.domain == NCHWC_DOMAIN for n in optimized.graph.node):
        pytest.skip("this CPU gets no NCHWc layout transform")

    # ground truth: the shapes ORT's kernels actually produce
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "prof")
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(opt), so, providers=["CPUExecutionProvider"])
    sess.run(None, {"x": np.zeros((1, 16, 20, 20), dtype=np.float32)})
    import json

    events = json.loads(Path(sess.end_profiling()).read_text())
    runtime = {e["name"][: -len("_kernel_time")]: tuple(next(iter(e["args"]["output_type_shape"][0].values())))
               for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")}

    shapes = {i.name: tuple(i.dims) for i in optimized.graph.initializer} | {"x": (1, 16, 20, 20)}
    total_macs = 0
    nchwc_kinds = set()
    for node in optimized.graph.node:
        attrs = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            attrs[a.name] = v.decode() if isinstance(v, bytes) else v
        ins = [TensorInfo(t, shapes.get(t), "float32", t in {i.name for i in optimized.graph.initializer})
               if t else ABSENT for t in node.input]
        if node.domain == NCHWC_DOMAIN:
            nchwc_kinds.add(node.op_type)
            inferred = infer_output_shapes(node.op_type, node.domain, attrs, ins)
            assert inferred is not None and inferred[0] == runtime[node.name], node.name
            shapes[node.output[0]] = inferred[0]
        else:
            shapes[node.output[0]] = runtime[node.name]
        c = node_cost(node.op_type, node.domain, attrs, ins, [act(shapes[node.output[0]], node.output[0])])
        assert c is not None, node.op_type
        total_macs += c.macs
    assert {"ReorderInput", "Conv", "ReorderOutput", "MaxPool", "Upsample", "GlobalAveragePool"} <= nchwc_kinds

    block = nchwc_block_size()

    def pad(channels: int) -> int:
        return -(-channels // block) * block

    hw = 20 * 20
    by_hand = hw * pad(24) * 16 * 9 + hw * pad(24) * 9 + hw * 32 * pad(24)  # conv1, depthwise, pointwise
    assert total_macs == by_hand
    if block == 8:  # nothing padded: the optimized graph does exactly the original work
        assert total_macs == sum(c.macs for _, c in costs_of(_cnn_for_nchwc()).values() if c is not None)


# ---- cross-check with onnx-tool ------------------------------------------------------------------------
def test_dense_macs_match_onnx_tool(tmp_path: Path) -> None:
    from tests.onnx_tool_ref import onnx_tool_macs

    model = dense_model()
    path = tmp_path / "dense.onnx"
    onnx.save(model, path)
    ours = {name: c.macs for name, (op, c) in costs_of(model).items() if op in ("Conv", "Gemm", "MatMul", "Einsum")
            and c is not None}
    ref = onnx_tool_macs(path)
    assert set(ours) == {"conv", "dwconv", "gemm", "bmm", "mm_weight", "einsum"}
    assert ours == {k: ref[k] for k in ours}


def test_every_dense_node_of_the_model_is_costed() -> None:
    for name, (_, c) in costs_of(dense_model()).items():
        assert c is not None, name


def test_flops_module_does_not_import_torch() -> None:
    code = "import sys, inferperf.ir.flops; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
