"""Model ingestion and the bad-input contract of `inferperf graph`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferperf.errors import ModelLoadError, UnboundDimensionError, UnknownArchitectureError
from inferperf.ir.architectures import get_architecture, list_architectures
from inferperf.ir.build import build_graph
from inferperf.ir.ingest import load_model, parse_input_shapes, parse_overrides


def _conv_model(batch: int | str = "N", opset: int = 17) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _cli(*args: str, home) -> subprocess.CompletedProcess:  # noqa: ANN001
    env = {"INFERPERF_HOME": str(home), "PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}
    return subprocess.run(
        [sys.executable, "-m", "inferperf", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_onnx_file_with_dynamic_batch_binds_and_costs(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    path = tmp_path / "m.onnx"
    onnx.save(_conv_model(), path)
    loaded = load_model(str(path), batch_size=4)
    assert loaded.inputs[0].shape == (4, 3, 16, 16)
    g = build_graph(loaded.model, loaded.name, loaded.metadata)
    conv = g.nodes[0]
    assert conv.outputs[0].shape == (4, 8, 16, 16)
    assert conv.macs == 4 * 8 * 16 * 16 * 3 * 3 * 3
    assert g.params == 8 * 3 * 3 * 3
    assert [(e.src, e.dst) for e in g.edges] == [(0, 1)]
    # the bound model on disk carries the concrete shape: runtimes load the path
    on_disk = onnx.load(loaded.path)
    assert on_disk.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_unbound_dynamic_dimension_is_named(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_conv_model(), path)
    with pytest.raises(UnboundDimensionError) as err:
        load_model(str(path))
    assert "'x'" in str(err.value) and "'N'" in str(err.value)


def test_input_shape_override_and_bad_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    path = tmp_path / "m.onnx"
    onnx.save(_conv_model(), path)
    loaded = load_model(str(path), input_shapes=parse_input_shapes(["x=2x3x16x16"]))
    assert loaded.inputs[0].shape == (2, 3, 16, 16)
    with pytest.raises(ModelLoadError):
        parse_input_shapes(["x:2x3"])
    with pytest.raises(ModelLoadError, match="not model inputs"):
        load_model(str(path), input_shapes={"nope": (1, 3, 16, 16)})


def test_external_data_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    path = tmp_path / "ext.onnx"
    onnx.save(_conv_model(batch=1), path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    assert (tmp_path / "ext.onnx.data").exists()
    g = build_graph(load_model(str(path)).model)
    assert g.params == 8 * 3 * 3 * 3


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(str(tmp_path / "missing.onnx"))
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a protobuf at all, just words\n" * 10)
    with pytest.raises(ModelLoadError, match="not a valid ONNX"):
        load_model(str(text))
    full = _conv_model(batch=1).SerializeToString()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(full[: len(full) // 2])
    with pytest.raises(ModelLoadError):
        load_model(str(trunc))
    future = tmp_path / "future.onnx"
    onnx.save(_conv_model(batch=1, opset=onnx.defs.onnx_opset_version() + 5), future)
    with pytest.raises(ModelLoadError, match="opset"):
        load_model(str(future))


def test_unknown_architecture_suggests():
    with pytest.raises(UnknownArchitectureError, match="resnet50"):
        get_architecture("resnet5O")
    names = {a.name for a in list_architectures()}
    assert {"resnet50", "mobilenet_v2", "convnext-tiny", "vit-base", "bert-base", "gpt2"} <= names


def test_overrides_parse_json_values():
    assert parse_overrides(["num_hidden_layers=2", "hidden_sizes=[8,16]", "act=gelu"]) == {
        "num_hidden_layers": 2, "hidden_sizes": [8, 16], "act": "gelu"}


def test_torch_module_with_example_inputs(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(32, 64)
            self.fc2 = torch.nn.Linear(64, 10)

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.fc2(torch.relu(self.fc1(x)))

    loaded = load_model(Tiny(), example_inputs=torch.randn(5, 32), input_names=["features"])
    assert loaded.inputs[0].name == "features" and loaded.inputs[0].shape == (5, 32)
    g = build_graph(loaded.model, loaded.name)
    assert g.params == 32 * 64 + 64 + 64 * 10 + 10
    assert g.macs == 5 * (32 * 64 + 64 * 10)
    with pytest.raises(ModelLoadError, match="example_inputs"):
        load_model(Tiny())


def test_small_architecture_override_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    loaded = load_model("bert-base", seq_len=16, batch_size=2,
                        overrides={"num_hidden_layers": 1, "hidden_size": 64, "num_attention_heads": 2,
                                   "intermediate_size": 128})
    assert [i.shape for i in loaded.inputs] == [(2, 16), (2, 16)]
    g = build_graph(loaded.model, loaded.name, loaded.metadata)
    assert g.metadata["family"] == "bert" and g.metadata["seq_len"] == 16
    assert not g.warnings
    # QKV + output + 2 FFN matmuls per token, plus attention score/context matmuls
    dense = 2 * 16 * (4 * 64 * 64 + 2 * 64 * 128)
    attn = 2 * 2 * 16 * 16 * 64
    # the pooler is dead code for the exported last_hidden_state output and must not be counted
    assert g.macs == dense + attn


@pytest.mark.parametrize(
    "args, needle",
    [
        (["graph", "/nonexistent/model.onnx"], "no such file"),
        (["graph", "no-such-arch"], "unknown architecture"),
        (["graph", "resnet50", "--set", "depths"], "KEY=VALUE"),
    ],
)
def test_cli_bad_input_one_line_no_traceback(tmp_path, args, needle):
    res = _cli(*args, home=tmp_path)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0]


def test_cli_bad_files_and_unbound_dim(tmp_path):
    text = tmp_path / "x.onnx"
    text.write_bytes(b"\x00\x01garbage" * 50)
    dyn = tmp_path / "dyn.onnx"
    onnx.save(_conv_model(), dyn)
    for args, needle in ((["graph", str(text)], "not a valid ONNX"), (["graph", str(dyn)], "unbound dynamic")):
        res = _cli(*args, home=tmp_path)
        assert res.returncode != 0 and "Traceback" not in res.stderr
        assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_graph_json(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_conv_model(), path)
    res = _cli("graph", str(path), "--batch", "2", "--json", "--nodes", "--csv", str(tmp_path / "n.csv"),
               home=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("nodes", "edges", "macs", "flops", "params", "memory_bytes", "op_counts", "warnings"):
        assert key in out
    assert out["op_counts"] == {"Conv": 1, "Relu": 1}
    assert len(out["node_table"]) == 2
    assert (tmp_path / "n.csv").read_text().count("\n") == 3


def test_torchlib_registry_is_built_once_and_copied_per_export():
    pytest.importorskip("torch")
    from torch.onnx._internal.exporter import _registration

    from inferperf.ir.ingest import _cache_torchlib_registry

    _cache_torchlib_registry()
    a = _registration.ONNXRegistry.from_torchlib()
    b = _registration.ONNXRegistry.from_torchlib()
    assert a is not b and a.functions is not b.functions and a.functions.keys() == b.functions.keys()
    key = next(iter(a.functions))
    a.functions[key].clear()  # one export's edits never reach the next
    assert b.functions[key] and _registration.ONNXRegistry.from_torchlib().functions[key]
