"""Feature encodings of inferperf.ir.features: layout, per-slot meaning, structure, versioning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inferperf.errors import InferperfError
from inferperf.ir.features import (
    ENCODING_VERSION,
    NODE_FEATURE_DIM,
    NODE_FEATURE_NAMES,
    OP_CATEGORIES,
    OP_VOCAB,
    STATIC_FEATURE_DIM,
    STATIC_FEATURE_NAMES,
    EncodingMismatchError,
    adjacency,
    check_encoding,
    edge_index,
    encoding_info,
    node_feature_matrix,
    node_feature_vector,
    op_category,
    static_feature_vector,
    to_pyg,
)
from inferperf.ir.flops import MS_DOMAIN, NCHWC_DOMAIN, node_cost, supported_ops
from inferperf.ir.graph import Edge, ModelGraph, Node, TensorInfo

NODE = {name: i for i, name in enumerate(NODE_FEATURE_NAMES)}
STATIC = {name: i for i, name in enumerate(STATIC_FEATURE_NAMES)}


def t(name: str, shape: tuple[int, ...] | None, weight: bool = False) -> TensorInfo:
    return TensorInfo(name, shape, "float32", weight)


def make_node(index: int, op: str, inputs: list[TensorInfo], outputs: list[TensorInfo], domain: str = "",
              **attrs: object) -> Node:
    """A node costed the way the builder does it (so features see realistic numbers)."""
    node = Node(index=index, name=f"n{index}", op_type=op, domain=domain, attributes=dict(attrs), inputs=inputs,
                outputs=outputs)
    c = node_cost(op, domain, dict(attrs), inputs, outputs)
    node.has_formula = c is not None
    if c is not None:
        node.flops, node.macs = c.flops, c.macs
    for x in inputs:
        if x.is_weight:
            node.weight_bytes += x.nbytes
            node.params += x.numel or 0
        elif x.name:
            node.activation_bytes_read += x.nbytes
    node.bytes_written = sum(o.nbytes for o in outputs)
    return node


def small_cnn() -> ModelGraph:
    """conv → relu → depthwise conv → add(residual) → global pool → matmul, and an unknown op."""
    x = t("x", (2, 8, 16, 16))
    nodes = [
        make_node(0, "Conv", [x, t("w0", (16, 8, 3, 3), True), t("b0", (16,), True)], [t("c0", (2, 16, 8, 8))],
                  kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        make_node(1, "Relu", [t("c0", (2, 16, 8, 8))], [t("r0", (2, 16, 8, 8))]),
        make_node(2, "Conv", [t("r0", (2, 16, 8, 8)), t("w1", (16, 1, 5, 5), True)], [t("c1", (2, 16, 8, 8))],
                  kernel_shape=[5, 5], group=16, pads=[2, 1, 2, 3], dilations=[1, 1]),
        make_node(3, "Add", [t("c1", (2, 16, 8, 8)), t("r0", (2, 16, 8, 8))], [t("a", (2, 16, 8, 8))]),
        make_node(4, "GlobalAveragePool", [t("a", (2, 16, 8, 8))], [t("g", (2, 16, 1, 1))]),
        make_node(5, "Reshape", [t("g", (2, 16, 1, 1)), t("s", (2,), True)], [t("f", (2, 16))]),
        make_node(6, "MatMul", [t("f", (2, 16)), t("wm", (16, 10), True)], [t("y", (2, 10))]),
        make_node(7, "MadeUpOp", [t("y", (2, 10))], [t("z", (2, 10))], domain="com.example"),
    ]
    tensors = {"c0": (0, 1), "r0": (1, 2), "c1": (2, 3), "a": (3, 4), "g": (4, 5), "f": (5, 6), "y": (6, 7)}
    edges = [Edge(s, d, name, 0) for name, (s, d) in tensors.items()] + [Edge(1, 3, "r0", 0)]
    for e in edges:
        e.nbytes = next(o.nbytes for o in nodes[e.src].outputs if o.name == e.tensor)
    return ModelGraph(name="cnn", nodes=nodes, edges=edges, inputs=[x], outputs=[t("z", (2, 10))], opset=17,
                      metadata={"batch_size": 2, "image_size": 16}, peak_activation_bytes=12345)


# ---- layout --------------------------------------------------------------------------------------------
def test_vocab_and_names_are_consistent() -> None:
    assert OP_VOCAB[-1] == "other" and len(set(OP_VOCAB)) == len(OP_VOCAB)
    assert len(set(NODE_FEATURE_NAMES)) == len(NODE_FEATURE_NAMES) == NODE_FEATURE_DIM
    assert len(set(STATIC_FEATURE_NAMES)) == len(STATIC_FEATURE_NAMES) == STATIC_FEATURE_DIM
    # the fused ops ORT produces on CPU have their own slot
    for op in ("com.microsoft::FusedConv", "com.microsoft::FusedMatMul", "com.microsoft::Attention",
               "com.microsoft::SkipLayerNormalization", "com.microsoft.nchwc::Conv", "Conv", "LSTM", "Einsum"):
        assert op in OP_VOCAB, op
    # every vocabulary op except the catch-all has a cost formula, and a category
    costed = set(supported_ops())
    assert [op for op in OP_VOCAB[:-1] if op not in costed] == []
    assert [op for op in OP_VOCAB[:-1] if op_category(op) == "other"] == []
    # and every op with a formula has a category, so graph-level op counts miss nothing
    assert [op for op in costed if op_category(op) == "other"] == []


def test_categories() -> None:
    assert op_category("Conv") == op_category(f"{NCHWC_DOMAIN}::Conv") == op_category(f"{MS_DOMAIN}::FusedConv")
    assert op_category(f"{MS_DOMAIN}::Attention") == op_category("Gemm") == "matmul"
    assert op_category("Relu") == "activation" and op_category("Add") == "elementwise"
    assert op_category("Transpose") == "data_movement" and op_category("Softmax") == "softmax"
    assert op_category(f"{MS_DOMAIN}::SkipLayerNormalization") == "norm"
    assert op_category("Nonexistent") == "other"


# ---- node features -------------------------------------------------------------------------------------
def test_conv_node_slots() -> None:
    g = small_cnn()
    v = node_feature_vector(g.nodes[0])
    assert v.dtype == np.float32 and v.shape == (NODE_FEATURE_DIM,)
    assert v[NODE["op=Conv"]] == 1.0 and v[NODE["category=conv"]] == 1.0
    assert v[: len(OP_VOCAB)].sum() == 1.0 and v[len(OP_VOCAB): len(OP_VOCAB) + len(OP_CATEGORIES)].sum() == 1.0
    assert (v[NODE["kernel_h"]], v[NODE["kernel_w"]], v[NODE["stride_h"]], v[NODE["stride_w"]]) == (3, 3, 2, 2)
    assert v[NODE["out_rank"]] == 4 and v[NODE["out_shape_known"]] == 1.0
    assert v[NODE["log_out_dim1"]] == pytest.approx(math.log1p(16))
    assert v[NODE["log_macs"]] == pytest.approx(math.log1p(2 * 16 * 8 * 8 * 8 * 9))
    assert v[NODE["log_flops"]] == pytest.approx(math.log1p(g.nodes[0].flops))
    assert v[NODE["log_params"]] == pytest.approx(math.log1p(16 * 8 * 9 + 16))
    assert v[NODE["log_in_numel"]] == pytest.approx(math.log1p(2 * 8 * 16 * 16))  # weights excluded
    assert v[NODE["n_inputs"]] == 3 and v[NODE["n_outputs"]] == 1 and v[NODE["has_formula"]] == 1.0
    assert v[NODE["is_depthwise"]] == 0.0 and v[NODE["log_groups"]] == pytest.approx(math.log1p(1))


def test_depthwise_conv_and_asymmetric_pads() -> None:
    v = node_feature_vector(small_cnn().nodes[2])
    assert v[NODE["is_depthwise"]] == 1.0
    assert v[NODE["log_groups"]] == pytest.approx(math.log1p(16))
    # ONNX pads are [top, left, bottom, right] for 2-D
    assert [v[NODE[k]] for k in ("pad_top", "pad_left", "pad_bottom", "pad_right")] == [2, 1, 2, 3]
    assert (v[NODE["kernel_h"]], v[NODE["kernel_w"]]) == (5, 5)


def test_same_autopad_is_resolved_to_pads() -> None:
    # input 15, stride 2, kernel 4: output 8, total padding (8-1)*2 + 4 - 15 = 3 → SAME_UPPER puts 2 at the end
    n = make_node(0, "Conv", [t("x", (1, 3, 15, 15)), t("w", (4, 3, 4, 4), True)], [t("y", (1, 4, 8, 8))],
                  auto_pad="SAME_UPPER", strides=[2, 2])
    v = node_feature_vector(n)
    assert [v[NODE[k]] for k in ("pad_top", "pad_left", "pad_bottom", "pad_right")] == [1, 1, 2, 2]


def test_non_window_ops_leave_window_slots_empty() -> None:
    g = small_cnn()
    add = node_feature_vector(g.nodes[3])
    for k in ("kernel_h", "stride_h", "pad_top", "dilation_h", "log_groups", "is_depthwise"):
        assert add[NODE[k]] == 0.0
    assert add[NODE["op=Add"]] == 1.0 and add[NODE["log_macs"]] == 0.0 and add[NODE["log_flops"]] > 0
    gap = node_feature_vector(g.nodes[4])  # the global window covers the input's spatial size
    assert (gap[NODE["kernel_h"]], gap[NODE["kernel_w"]]) == (8, 8)


def test_unknown_op_goes_to_other_and_is_flagged() -> None:
    v = node_feature_vector(small_cnn().nodes[7])
    assert v[NODE["op=other"]] == 1.0 and v[NODE["category=other"]] == 1.0
    assert v[NODE["has_formula"]] == 0.0


def test_unknown_and_high_rank_shapes() -> None:
    unknown = make_node(0, "Relu", [t("x", None)], [t("y", None)])
    v = node_feature_vector(unknown)
    assert v[NODE["out_shape_known"]] == 0.0 and v[NODE["out_rank"]] == 0.0 and v[NODE["has_formula"]] == 0.0
    rank7 = make_node(0, "Relu", [t("x", (2, 3, 4, 5, 6, 7, 8))], [t("y", (2, 3, 4, 5, 6, 7, 8))])
    v7 = node_feature_vector(rank7)
    assert v7[NODE["out_rank"]] == 7
    assert v7[NODE["log_out_dim5"]] == pytest.approx(math.log1p(7 * 8))  # trailing dims folded into the last slot


def test_feature_matrix_rows_follow_node_order() -> None:
    g = small_cnn()
    x = node_feature_matrix(g)
    assert x.shape == (len(g.nodes), NODE_FEATURE_DIM)
    assert np.array_equal(x[3], node_feature_vector(g.nodes[3]))
    assert np.isfinite(x).all()


# ---- static features -----------------------------------------------------------------------------------
def test_static_features() -> None:
    g = small_cnn()
    s = static_feature_vector(g)
    assert s.dtype == np.float32 and s.shape == (STATIC_FEATURE_DIM,)
    assert s[STATIC["log_macs"]] == pytest.approx(math.log1p(sum(n.macs for n in g.nodes)))
    assert s[STATIC["log_peak_activation_bytes"]] == pytest.approx(math.log1p(12345))
    assert s[STATIC["batch_size"]] == 2
    assert s[STATIC["log_image_size"]] == pytest.approx(math.log1p(16)) and s[STATIC["log_seq_len"]] == 0
    assert s[STATIC["log_input_numel"]] == pytest.approx(math.log1p(2 * 8 * 16 * 16))
    assert s[STATIC["log_nodes"]] == pytest.approx(math.log1p(8))
    assert s[STATIC["log_edges"]] == pytest.approx(math.log1p(8))
    assert s[STATIC["log_depth"]] == pytest.approx(math.log1p(8))
    assert s[STATIC["log_n_conv"]] == pytest.approx(math.log1p(2))
    assert s[STATIC["log_n_matmul"]] == pytest.approx(math.log1p(1))
    assert s[STATIC["log_n_pooling"]] == pytest.approx(math.log1p(1))
    assert s[STATIC["log_n_other"]] == pytest.approx(math.log1p(1))
    conv_macs = g.nodes[0].macs + g.nodes[2].macs
    assert s[STATIC["share_macs_conv"]] == pytest.approx(conv_macs / g.macs)
    assert s[STATIC["share_macs_conv"]] + s[STATIC["share_macs_matmul"]] == pytest.approx(1.0)
    assert s[STATIC["share_nodes_without_formula"]] == pytest.approx(1 / 8)


def test_static_features_of_an_empty_graph_are_finite() -> None:
    g = ModelGraph(name="empty", nodes=[], edges=[], inputs=[], outputs=[], opset=17)
    s = static_feature_vector(g)
    assert np.isfinite(s).all() and s[STATIC["log_nodes"]] == 0


# ---- structure -----------------------------------------------------------------------------------------
def test_edge_index_and_adjacency() -> None:
    g = small_cnn()
    ei = edge_index(g)
    assert ei.dtype == np.int64 and ei.shape == (2, len(g.edges))
    assert (ei[0] < ei[1]).all()  # producer before consumer in topological order
    a = adjacency(g)
    assert a.shape == (8, 8) and a.nnz == len({(e.src, e.dst) for e in g.edges})
    assert a[1, 3] == 1.0 and a[3, 1] == 0.0  # directed: producer row, consumer column
    g.edges.append(Edge(1, 3, "r0_again", 10))  # a second tensor between the same pair
    assert adjacency(g)[1, 3] == 1.0 and edge_index(g).shape[1] == len(g.edges)


def test_to_pyg() -> None:
    pytest.importorskip("torch_geometric")
    import torch

    g = small_cnn()
    data = to_pyg(g, y={"latency_ms": 1.5, "memory_mb": 20.0})
    assert data.num_nodes == 8
    assert data.x.shape == (8, NODE_FEATURE_DIM) and data.x.dtype == torch.float32
    assert data.edge_index.dtype == torch.long and data.edge_index.shape == (2, len(g.edges))
    assert data.edge_attr.shape == (len(g.edges), 1)
    assert float(data.edge_attr[0, 0]) == pytest.approx(math.log1p(g.edges[0].nbytes))
    assert data.static.shape == (1, STATIC_FEATURE_DIM)
    assert data.y.tolist() == [[1.5, 20.0]] and data.target_names == ["latency_ms", "memory_mb"]
    assert float(data.y_memory_mb) == 20.0
    # graphs batch into one disjoint graph with one static row and one target row each
    from torch_geometric.data import Batch

    batch = Batch.from_data_list([data, to_pyg(g, y={"latency_ms": 2.0, "memory_mb": 1.0})])
    assert batch.static.shape == (2, STATIC_FEATURE_DIM) and batch.y.shape == (2, 2)
    assert batch.x.shape[0] == 16 and int(batch.edge_index.max()) == 15
    with pytest.raises(InferperfError):
        to_pyg(g, y={"bad name": 1.0})


def test_features_from_a_built_onnx_graph() -> None:
    """End to end through the real builder: an ONNX conv net shape-inferred and built."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from inferperf.ir.build import build_graph

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    built = build_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), infer=True)
    assert isinstance(built, ModelGraph) and onnx is not None
    x = node_feature_matrix(built)
    assert x.shape == (2, NODE_FEATURE_DIM)
    assert x[0, NODE["op=Conv"]] == 1.0 and x[1, NODE["op=Relu"]] == 1.0
    assert x[0, NODE["log_macs"]] == pytest.approx(math.log1p(4 * 8 * 8 * 27))
    assert edge_index(built).tolist() == [[0], [1]]


# ---- versioning ----------------------------------------------------------------------------------------
def test_encoding_info_round_trips_and_detects_changes() -> None:
    info = json.loads(json.dumps(encoding_info()))  # as saved next to an artifact
    assert info["version"] == ENCODING_VERSION and info["node_feature_dim"] == NODE_FEATURE_DIM
    check_encoding(info)  # same encoding: accepted

    older = dict(info, op_vocab=info["op_vocab"][:-2] + ["other"])
    with pytest.raises(EncodingMismatchError, match="op_vocab"):
        check_encoding(older)
    reordered = dict(info, static_feature_names=list(reversed(info["static_feature_names"])))
    with pytest.raises(EncodingMismatchError, match="different order"):
        check_encoding(reordered)
    with pytest.raises(InferperfError, match="version"):
        check_encoding(dict(info, version=ENCODING_VERSION + 1))


def test_cost_breakdown_separates_depthwise_from_dense_convolution():
    from onnx import TensorProto, helper, numpy_helper

    from inferperf.ir.build import build_graph

    def conv_graph(group: int):
        w = numpy_helper.from_array(np.ones((32, 32 // group, 3, 3), dtype=np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], group=group, pads=[1, 1, 1, 1])
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 16, 16])], [w])
        return build_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))

    names = list(STATIC_FEATURE_NAMES)
    dense, depthwise, grouped = (static_feature_vector(conv_graph(g)) for g in (1, 32, 4))
    i_dense, i_dw, i_gr = (names.index(f"log_macs_conv_{k}") for k in ("dense", "depthwise", "grouped"))
    assert dense[i_dense] > 0 and dense[i_dw] == 0 and dense[i_gr] == 0
    assert depthwise[i_dw] > 0 and depthwise[i_dense] == 0
    assert grouped[i_gr] > 0 and grouped[i_dw] == 0
    assert np.expm1(dense[i_dense]) == pytest.approx(32 * 32 * 9 * 256, rel=1e-3)  # MACs
    assert dense[names.index("log_roofline_us")] > depthwise[names.index("log_roofline_us")]
