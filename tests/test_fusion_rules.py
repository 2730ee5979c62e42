"""Hand-written ORT CPU fusion rules (the nn-Meter-style baseline) on hand-built graphs and against ORT."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from inferperf.ir.build import build_graph
from inferperf.predict.fusion.data import graph_labels, profiled_sample, static_nodes
from inferperf.predict.fusion.rules import RuleFusion, rule_kernel_type, rule_partition
from inferperf.predict.fusion.toy import toy_model
from inferperf.predict.synthetic import synthetic_dataset

os.environ.setdefault("TMPDIR", "/tmp")


class _B:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(0)

    def w(self, name: str, *shape: int) -> str:
        self.inits.append(nh.from_array(self.rng.standard_normal(shape).astype(np.float32), name))
        return name

    def c(self, name: str, value: object, dtype: object = np.int64) -> str:
        self.inits.append(nh.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def n(self, op: str, ins: list[str], out: str, **attrs: object) -> str:
        self.nodes.append(h.make_node(op, ins, [out], name=out, **attrs))
        return out

    def _proto(self, x_shape: list[int], out: str) -> onnx.ModelProto:
        g = h.make_graph(self.nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                         [h.make_tensor_value_info(out, TensorProto.FLOAT, None)], initializer=self.inits)
        return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])

    def model(self, x_shape: list[int], out: str) -> onnx.ModelProto:
        """The ONNX model with inferred shapes (what a profiled run takes)."""
        return onnx.shape_inference.infer_shapes(self._proto(x_shape, out))

    def graph(self, x_shape: list[int], out: str):  # noqa: ANN201
        return build_graph(self._proto(x_shape, out), "g", infer=True)


def _kernels_by_name(graph, part) -> list[tuple[set[str], str]]:  # noqa: ANN001
    return [({graph.nodes[i].name for i in k}, t) for k, t in zip(part.kernels, part.kernel_types, strict=True)]


def _kernel_of(graph, part, name: str) -> tuple[set[str], str]:  # noqa: ANN001
    hits = [kt for kt in _kernels_by_name(graph, part) if name in kt[0]]
    assert len(hits) == 1, f"{name}: {hits}"
    return hits[0]


def test_conv_bn_relu_and_residual_add_relu() -> None:
    b = _B()
    c1 = b.n("Conv", ["x", b.w("w1", 8, 3, 3, 3)], "conv1", pads=[1, 1, 1, 1])
    bn = b.n("BatchNormalization", [c1, b.w("s", 8), b.w("bb", 8), b.w("m", 8), b.c("v", np.ones(8), np.float32)],
             "bn")
    r1 = b.n("Relu", [bn], "relu1")
    c2 = b.n("Conv", [r1, b.w("w2", 8, 8, 3, 3)], "conv2", pads=[1, 1, 1, 1])
    add = b.n("Add", [c2, r1], "add")
    out = b.n("Relu", [add], "relu2")
    g = b.graph([1, 3, 8, 8], out)
    part = RuleFusion().partition(g)
    assert _kernel_of(g, part, "conv1") == ({"conv1", "bn", "relu1"}, "Conv+Relu")
    # the residual Add joins the conv (conv2), never the branch that already ends in an activation
    assert _kernel_of(g, part, "conv2") == ({"conv2", "add", "relu2"}, "Conv+Add+Relu")
    assert part.executed.all()


@pytest.mark.parametrize("main_first", [True, False])
def test_residual_add_of_two_convs_joins_its_first_operand_as_ort_does(main_first: bool) -> None:
    """Profiled on ORT: a bottleneck's residual Add reads two convs (main path and downsample); the NCHWc
    transformer gives the Add to the conv of the Add's *first* operand, whichever was produced last."""
    b = _B()
    c1 = b.n("Conv", ["x", b.w("w1", 16, 16, 3, 3)], "conv1", pads=[1, 1, 1, 1])
    r1 = b.n("Relu", [c1], "relu1")
    main = b.n("Conv", [r1, b.w("w2", 32, 16, 1, 1)], "main")
    down = b.n("Conv", ["x", b.w("wd", 32, 16, 1, 1)], "down")  # produced after the main path's conv
    add = b.n("Add", [main, down] if main_first else [down, main], "add")
    out = b.n("Relu", [add], "relu2")
    sample = profiled_sample(b.model([1, 16, 16, 16], out), "toy_residual_order", runs=3, warmup=1)
    labels = graph_labels(sample)
    g = sample.graph
    first = "main" if main_first else "down"
    measured = {frozenset(g.nodes[i].name for i in k.nodes) for k in labels.kernels}
    assert frozenset({first, "add", "relu2"}) in measured, measured  # what ORT ran
    part = RuleFusion().partition(g, sample.config)
    assert _kernel_of(g, part, first) == ({first, "add", "relu2"}, "Conv+Add+Relu")
    ok = np.isfinite(labels.edge_fused)
    assert (part.edge_fused[ok] == (labels.edge_fused[ok] > 0.5)).all()


def test_matmul_bias_becomes_gemm_only_with_a_single_consumer() -> None:
    b = _B()
    m1 = b.n("MatMul", ["x", b.w("w1", 16, 16)], "mm1")
    a1 = b.n("Add", [m1, b.w("b1", 16)], "bias1")
    r = b.n("Relu", [a1], "relu")
    m2 = b.n("MatMul", [r, b.w("w2", 16, 16)], "mm2")  # read by the bias Add *and* the Sigmoid
    a2 = b.n("Add", [m2, b.w("b2", 16)], "bias2")
    s = b.n("Sigmoid", [m2], "sig")
    out = b.n("Mul", [a2, s], "out")
    g = b.graph([4, 16], out)
    part = RuleFusion().partition(g)
    assert _kernel_of(g, part, "mm1") == ({"mm1", "bias1", "relu"}, "Gemm+Relu")
    assert _kernel_of(g, part, "mm2") == ({"mm2"}, "MatMul")
    assert _kernel_of(g, part, "bias2")[0] == {"bias2"}


@pytest.mark.parametrize("rank", [2, 3])
def test_gemm_activation_fuses_only_where_the_gemm_needs_no_reshape(rank: int) -> None:
    """Profiled on ORT: MatMul + bias Add becomes a Gemm either way, but over a rank-3 input ORT wraps the Gemm
    in Reshapes, and the Relu after it stays a kernel of its own."""
    b = _B()
    m = b.n("MatMul", ["x", b.w("w1", 32, 32)], "mm")
    a = b.n("Add", [m, b.w("b1", 32)], "bias")
    r = b.n("Relu", [a], "relu")
    out = b.n("MatMul", [r, b.w("w2", 32, 32)], "mm2")
    sample = profiled_sample(b.model([8, 32] if rank == 2 else [1, 8, 32], out), f"toy_gemm_relu_{rank}", runs=3,
                             warmup=1)
    labels = graph_labels(sample)
    g = sample.graph
    measured = {frozenset(g.nodes[i].name for i in k.nodes) for k in labels.kernels}
    gemm = {"mm", "bias", "relu"} if rank == 2 else {"mm", "bias"}
    assert frozenset(gemm) in measured, measured  # what ORT ran
    part = RuleFusion().partition(g, sample.config)
    assert _kernel_of(g, part, "mm")[0] == gemm
    ok = np.isfinite(labels.edge_fused)
    assert (part.edge_fused[ok] == (labels.edge_fused[ok] > 0.5)).all()


def test_scale_transpose_matmul_gelu_and_skip_layernorm() -> None:
    b = _B()
    t = b.n("Transpose", ["x"], "kt", perm=[0, 2, 1])
    q = b.n("Mul", ["x", b.c("scale", np.float32(0.125), np.float32)], "q_scaled")
    s = b.n("MatMul", [q, t], "scores")
    d = b.n("Div", [s, b.c("sqrt2", np.float32(1.4142), np.float32)], "gdiv")
    e = b.n("Erf", [d], "erf")
    a = b.n("Add", [e, b.c("one", np.float32(1.0), np.float32)], "gadd")
    m = b.n("Mul", [s, a], "gmul")
    gel = b.n("Mul", [m, b.c("half", np.float32(0.5), np.float32)], "gmul2")
    res = b.n("Add", [gel, s], "residual")
    ln = b.n("LayerNormalization", [res, b.c("g", np.ones(6), np.float32), b.c("bt", np.zeros(6), np.float32)],
             "ln", axis=-1)
    g = b.graph([1, 6, 6], ln)
    part = RuleFusion().partition(g)
    assert _kernel_of(g, part, "scores") == ({"kt", "q_scaled", "scores"}, "MatMul+Scale")
    assert _kernel_of(g, part, "erf") == ({"gdiv", "erf", "gadd", "gmul", "gmul2"}, "Gelu")
    assert _kernel_of(g, part, "ln") == ({"residual", "ln"}, "SkipLayerNorm")


def test_static_shape_chain_and_identity_run_in_no_kernel() -> None:
    b = _B()
    shp = b.n("Shape", ["x"], "shape")
    first = b.n("Gather", [shp, b.c("zero", 0)], "batch", axis=0)
    unsq = b.n("Unsqueeze", [first, b.c("ax", [0])], "unsq")
    new = b.n("Concat", [unsq, b.c("minus1", [-1])], "newshape", axis=0)
    r = b.n("Reshape", ["x", new], "flat")
    i = b.n("Identity", [r], "ident")
    out = b.n("Relu", [i], "relu")
    g = b.graph([2, 3, 4], out)
    assert static_nodes(g).tolist() == [True, True, True, True, False, False, False]
    part = RuleFusion().partition(g)
    dropped = {g.nodes[k].name for k in np.flatnonzero(~part.executed)}
    assert dropped == {"shape", "batch", "unsq", "newshape", "ident"}
    assert {frozenset(k) for k, _ in _kernels_by_name(g, part)} == {frozenset({"flat"}), frozenset({"relu"})}
    assert not part.edge_fused.any()


def test_opt_level_disable_fuses_nothing() -> None:
    b = _B()
    out = b.n("Relu", [b.n("Conv", ["x", b.w("w", 4, 3, 1, 1)], "conv")], "relu")
    g = b.graph([1, 3, 4, 4], out)
    part = RuleFusion().partition(g, {"opt_level": "disable"})
    assert len(part.kernels) == 2 and part.executed.all() and not part.edge_fused.any()


@pytest.mark.parametrize("family", ["toy_cnn", "toy_resnet", "toy_mlp"])
def test_rules_reproduce_ort_on_documented_patterns(family: str) -> None:
    """Conv+BN+Relu, residual NCHWc, MatMul+Add(+Relu), shape folding: the rules must match ORT exactly."""
    model, meta = toy_model(family, 1)
    sample = profiled_sample(model, family, metadata=meta, runs=3, warmup=1)
    labels = graph_labels(sample)
    part = RuleFusion().partition(sample.graph, sample.config)
    known = np.isfinite(labels.edge_fused)
    assert known.all()
    assert (part.edge_fused == (labels.edge_fused > 0.5)).all()
    assert (part.executed == labels.executed).all()
    measured = sorted(sorted(k.nodes) for k in labels.kernels)
    assert sorted(part.kernels) == measured
    for k in labels.kernels:  # the rules type measured kernels the way ORT labels them
        assert rule_kernel_type(sample.graph, k.nodes) == k.kernel_type


def test_rules_miss_the_undocumented_swish_fusion() -> None:
    """ORT fuses x·σ(x) (QuickGelu); the documented rules do not — the gap a learned model should close."""
    model, meta = toy_model("toy_swish", 0)
    sample = profiled_sample(model, "toy_swish", metadata=meta, runs=3, warmup=1)
    labels = graph_labels(sample)
    part = RuleFusion().partition(sample.graph, sample.config)
    g = sample.graph
    swish = [j for j, e in enumerate(g.edges)
             if (g.nodes[e.src].op_type, g.nodes[e.dst].op_type) == ("Sigmoid", "Mul")]
    assert swish and all(labels.edge_fused[j] == 1.0 for j in swish)
    assert not any(part.edge_fused[j] for j in swish)


def test_the_rules_verdict_is_an_edge_feature_of_the_learned_classifier():
    from inferperf.predict.fusion.data import EDGE_FEATURE_NAMES, edge_features

    graph = build_graph(toy_model("toy_cnn", 1)[0])
    col = EDGE_FEATURE_NAMES.index("rule_fused")
    rules = RuleFusion().partition(graph).edge_fused
    assert rules.any(), "the toy CNN has edges the rules fuse (conv → relu)"
    np.testing.assert_array_equal(edge_features(graph)[:, col], rules.astype(np.float32))
    # with optimisation off nothing fuses, and the feature says so
    assert not edge_features(graph, {"opt_level": "disable"})[:, col].any()


def test_gelu_core_nearness_marks_the_neighbourhood_of_erf_and_tanh_only() -> None:
    """The Mul → Add of a tanh GELU is fused, the Mul → Add of a layer scale is not: the feature that tells
    them apart decays with hops from the Erf / Tanh and is 0 beyond three."""
    from inferperf.ir.graph import Edge, ModelGraph, Node, TensorInfo
    from inferperf.predict.fusion.data import EDGE_FEATURE_NAMES, edge_features, gelu_core_nearness

    ops = ["Mul", "Add", "Mul", "Tanh", "Add", "Mul", "Relu", "Relu", "Mul", "Add"]
    shape = (1, 8)
    nodes = [Node(i, f"n{i}", op, "", {}, [TensorInfo(f"t{i - 1}" if i else "x", shape, "float32")],
                  [TensorInfo(f"t{i}", shape, "float32")]) for i, op in enumerate(ops)]
    edges = [Edge(i - 1, i, f"t{i - 1}", 32) for i in range(1, len(ops))]
    graph = ModelGraph("chain", nodes, edges, [TensorInfo("x", shape, "float32")],
                       [TensorInfo(f"t{len(ops) - 1}", shape, "float32")], 17)
    near = gelu_core_nearness(graph)
    assert near[3] == 1.0 and near[2] == near[4] == 0.5 and near[0] == near[6] == 0.25
    assert near[8] == near[9] == 0.0  # the Mul → Add at the end is four or more hops away
    col = edge_features(graph)[:, EDGE_FEATURE_NAMES.index("near_gelu_core")]
    assert col[0] == pytest.approx(1 / 3) and col[-1] == 0.0
    plain = ModelGraph("plain", nodes[:2], edges[:1], graph.inputs, [TensorInfo("t1", shape, "float32")], 17)
    assert not gelu_core_nearness(plain).any()


def test_rule_types_name_fused_patterns_and_layout_changes_as_ort_does() -> None:
    """Profiled on ORT: x·σ(x) runs as QuickGelu, Conv+HardSwish as one kernel, the permutes around a
    channels-last LayerNorm as NCHWc reorders, transpose–reshape twice as one Transpose; the rules must name
    every measured kernel the way the profile does."""
    b = _B()
    c1 = b.n("Conv", ["x", b.w("w1", 16, 16, 3, 3)], "conv1", pads=[1, 1, 1, 1])
    hs = b.n("HardSwish", [c1], "hswish")
    to_last = b.n("Transpose", [hs], "to_last", perm=[0, 2, 3, 1])
    ln = b.n("LayerNormalization", [to_last, b.w("lns", 16), b.w("lnb", 16)], "ln", axis=-1)
    to_first = b.n("Transpose", [ln], "to_first", perm=[0, 3, 1, 2])
    c2 = b.n("Conv", [to_first, b.w("w2", 16, 16, 1, 1)], "conv2")
    sig = b.n("Sigmoid", [c2], "sig")
    swish = b.n("Mul", [c2, sig], "swish")
    # head split and merge: [1, 16, 8, 8] -> [1, 2, 8, 64] -> [1, 8, 2, 64] -> [1, 16, 64] -> [1, 64, 16]
    r1 = b.n("Reshape", [swish, b.c("s1", [1, 2, 8, 64])], "r1")
    t1 = b.n("Transpose", [r1], "t1", perm=[0, 2, 1, 3])
    r2 = b.n("Reshape", [t1, b.c("s2", [1, 16, 64])], "r2")
    out = b.n("Transpose", [r2], "t2", perm=[0, 2, 1])
    model = b.model([1, 16, 8, 8], out)
    sample = profiled_sample(model, "toy_layout", runs=3, warmup=1)
    labels = graph_labels(sample)
    types = {labels.kernels[i].kernel_type for i in range(len(labels.kernels))}
    assert {"Conv+HardSwish", "Data:ReorderOutput", "Data:ReorderInput", "QuickGelu"} <= types, types
    for k in labels.kernels:
        assert rule_kernel_type(sample.graph, k.nodes) == k.kernel_type, [sample.graph.nodes[i].name for i in k.nodes]


def test_rule_kernel_summary_counts_the_kernels_ort_launches() -> None:
    from inferperf.predict.fusion.rules import RULE_KERNEL_SUMMARY_NAMES, rule_kernel_summary

    b = _B()
    c1 = b.n("Conv", ["x", b.w("w1", 8, 3, 3, 3)], "conv1", pads=[1, 1, 1, 1])
    r1 = b.n("Relu", [c1], "relu1")
    c2 = b.n("Conv", [r1, b.w("w2", 8, 8, 3, 3)], "conv2", pads=[1, 1, 1, 1])
    add = b.n("Add", [c2, r1], "add")
    out = b.n("Relu", [add], "relu2")
    g = b.graph([1, 3, 8, 8], out)
    summary = dict(zip(RULE_KERNEL_SUMMARY_NAMES, rule_kernel_summary(g, {"opt_level": "all"}), strict=True))
    assert summary["rule_kernels:log_n"] == pytest.approx(np.log1p(2))  # Conv+Relu, Conv+Add+Relu
    assert summary["rule_kernels:per_node"] == pytest.approx(2 / 5)
    assert summary["rule_kernels:log_n_conv"] == pytest.approx(np.log1p(2))
    assert summary["rule_kernels:log_n_other"] == summary["rule_kernels:log_n_gemm"] == 0.0
    unfused = dict(zip(RULE_KERNEL_SUMMARY_NAMES, rule_kernel_summary(g, {"opt_level": "disable"}), strict=True))
    assert unfused["rule_kernels:log_n"] == pytest.approx(np.log1p(5))  # nothing fused: one kernel per node
    assert unfused["rule_kernels:log_n_elementwise"] == pytest.approx(np.log1p(3))


def test_runtime_patterns_fuse_silu_and_the_tanh_gelu_as_ort_does() -> None:
    """Profiled on ORT: x·σ(x), x·σ(α·x) and GPT-2's tanh GELU each run as one kernel. The documented rules
    (the nn-Meter baseline) leave them apart; with ``runtime_patterns`` the partition matches the profile."""
    b = _B()
    f32 = np.float32
    m1 = b.n("MatMul", ["x", b.w("w1", 32, 32)], "mm1")
    half = b.n("Mul", [m1, b.c("c_half", 0.5, f32)], "half")
    cube = b.n("Pow", [m1, b.c("c_three", 3.0, f32)], "cube")
    scaled = b.n("Mul", [cube, b.c("c_k", 0.044715, f32)], "scaled")
    inner = b.n("Add", [m1, scaled], "inner")
    pre = b.n("Mul", [inner, b.c("c_s2pi", 0.7978845608, f32)], "pre")
    tanh = b.n("Tanh", [pre], "tanh")
    one = b.n("Add", [tanh, b.c("c_one", 1.0, f32)], "one")
    gelu = b.n("Mul", [half, one], "gelu")
    m2 = b.n("MatMul", [gelu, b.w("w2", 32, 32)], "mm2")
    sig = b.n("Sigmoid", [m2], "sig")
    silu = b.n("Mul", [m2, sig], "silu")
    m3 = b.n("MatMul", [silu, b.w("w3", 32, 32)], "mm3")
    ax = b.n("Mul", [m3, b.c("c_alpha", 1.702, f32)], "ax")
    sig2 = b.n("Sigmoid", [ax], "sig2")
    out = b.n("Mul", [m3, sig2], "qgelu")
    model = b.model([1, 8, 32], out)
    sample = profiled_sample(model, "toy_runtime_patterns", runs=3, warmup=1)
    labels = graph_labels(sample)
    g = sample.graph
    measured = {frozenset(g.nodes[i].name for i in k.nodes): k.kernel_type for k in labels.kernels}
    expected = {frozenset({"half", "cube", "scaled", "inner", "pre", "tanh", "one", "gelu"}): "FastGelu",
                frozenset({"sig", "silu"}): "QuickGelu", frozenset({"ax", "sig2", "qgelu"}): "QuickGelu"}
    for nodes, kind in expected.items():
        assert measured.get(nodes) == kind, measured  # what ORT ran
    runtime = RuleFusion(runtime_patterns=True).partition(g, sample.config)
    documented = RuleFusion().partition(g, sample.config)
    ran = dict(zip((frozenset(g.nodes[i].name for i in k) for k in runtime.kernels), runtime.kernel_types,
                   strict=True))
    for nodes, kind in expected.items():
        assert ran.get(nodes) == kind, ran
    ok = np.isfinite(labels.edge_fused)
    assert (runtime.edge_fused[ok] == (labels.edge_fused[ok] > 0.5)).all()
    assert not (documented.edge_fused[ok] == (labels.edge_fused[ok] > 0.5)).all()


def test_runtime_partition_is_the_documented_one_where_no_runtime_pattern_can_start() -> None:
    """A graph without Sigmoid or Tanh gets one partition for both rule sets (computed once); with a SiLU the
    two differ."""
    plain = synthetic_dataset(per_family=3, batches=(1,), seed=4)
    without = next(s.graph for s in plain if not {"Sigmoid", "Tanh"} & {n.op_type for n in s.graph.nodes})
    assert rule_partition(without, "all", runtime_patterns=True) is rule_partition(without, "all")
    b = _B()
    m = b.n("MatMul", ["x", b.w("w1", 16, 16)], "mm")
    sig = b.n("Sigmoid", [m], "sig")
    out = b.n("Mul", [m, sig], "silu")
    g = b.graph([1, 4, 16], out)
    runtime, documented = rule_partition(g, "all", runtime_patterns=True), rule_partition(g, "all")
    assert runtime is not documented and len(runtime.kernels) < len(documented.kernels)
