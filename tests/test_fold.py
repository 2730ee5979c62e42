"""Weight folding (inferperf.ir.fold): tensors computed from weights alone are weights."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import inferperf.ir.build as build_mod
from inferperf.dataset.export import graph_cache_path, load_graph_cache
from inferperf.ir.build import build_graph
from inferperf.ir.features import mac_kind, op_category
from inferperf.ir.fold import fold_weight_subgraphs

H = 16


def shared_transposed_model() -> onnx.ModelProto:
    """ALBERT's pattern: one weight, transposed in the graph, feeding two MatMuls; plus a random tensor
    (never folded) and a plain activation Transpose (never folded)."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((H, H)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, H], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], name="t_w", perm=[1, 0]),
        helper.make_node("MatMul", ["x", "wt"], ["h1"], name="mm1"),
        helper.make_node("MatMul", ["h1", "wt"], ["h2"], name="mm2"),
        helper.make_node("RandomNormal", [], ["noise"], name="rnd", shape=[1, H], dtype=TensorProto.FLOAT),
        helper.make_node("Reshape", ["noise", "shape"], ["noise2"], name="reshape_noise"),
        helper.make_node("Add", ["h2", "noise2"], ["y0"], name="add"),
        helper.make_node("Transpose", ["y0"], ["y"], name="t_act", perm=[1, 0]),
    ]
    graph = helper.make_graph(
        nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, H])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [H, 1])], initializer=[w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model)


def by_name(graph):
    return {n.name: n for n in graph.nodes}


def test_transposed_shared_weight_is_a_weight_counted_once():
    g = build_graph(shared_transposed_model(), "shared")
    nodes = by_name(g)
    assert nodes["t_w"].is_constant and nodes["t_w"].bytes_read == 0 and nodes["t_w"].bytes_written == 0
    for name in ("mm1", "mm2"):
        assert mac_kind(nodes[name], op_category(nodes[name].qualified_type)) == "matmul_weights"
    assert nodes["mm1"].weight_bytes == H * H * 4 and nodes["mm2"].weight_bytes == 0  # one copy held
    assert g.weight_bytes == H * H * 4 + 2 * 8  # the folded copy + the int64 shape
    assert g.params == H * H
    # random values are computed per call; an activation's transpose is work
    assert not nodes["rnd"].is_constant and not nodes["reshape_noise"].is_constant
    assert not nodes["t_act"].is_constant


def test_fold_is_idempotent():
    g = build_graph(shared_transposed_model(), "shared")
    before = json.dumps(g.to_dict(), sort_keys=True)
    assert fold_weight_subgraphs(g) == 1
    assert json.dumps(g.to_dict(), sort_keys=True) == before


def test_cached_graph_of_an_older_builder_is_upgraded(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "fold_weight_subgraphs", lambda graph: 0)  # the builder before folding
    old = build_graph(shared_transposed_model(), "shared")
    monkeypatch.undo()
    assert by_name(old)["mm1"].weight_bytes == 0 and not by_name(old)["t_w"].is_constant
    content_hash = "ab" * 32
    path = graph_cache_path(content_hash, None, tmp_path)
    path.parent.mkdir(parents=True)
    from inferperf import __version__

    path.write_text(json.dumps({"inferperf_version": __version__, "graph": old.to_dict()}))  # no build_version
    upgraded = load_graph_cache(content_hash, None, tmp_path)
    fresh = build_graph(shared_transposed_model(), "shared")
    assert upgraded is not None
    assert upgraded.weight_bytes == fresh.weight_bytes
    assert upgraded.peak_activation_bytes == fresh.peak_activation_bytes
    assert [n.is_constant for n in upgraded.nodes] == [n.is_constant for n in fresh.nodes]


@pytest.mark.parametrize("op", ["Dropout", "RandomNormalLike"])
def test_nondeterministic_ops_are_not_folded(op):
    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "w")
    node = helper.make_node(op, ["w"], ["r"], name="n")
    mm = helper.make_node("MatMul", ["x", "r"], ["y"], name="mm")
    graph = helper.make_graph(
        [node, mm], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=[w],
    )
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    g = build_graph(model, "g")
    assert not by_name(g)["n"].is_constant
    assert mac_kind(by_name(g)["mm"], "matmul") == "matmul_activations"
