"""The simulated ONNX Runtime footprint: the arena's growth rule, the pattern block, weight packing, the planner —
and one check against the arena ONNX Runtime really grows (its own log, in a child process)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferperf.ir.build import build_graph
from inferperf.predict.additive import MEMORY_COLUMNS, memory_row, nchwc_block
from inferperf.predict.fusion.data import this_device
from inferperf.predict.ort_memory import (
    BFCArenaModel,
    ort_memory,
    pattern_block_bytes,
    weight_layout_mb,
)

MB = 1 << 20


def test_arena_grows_like_the_traced_onnxruntime_arena() -> None:
    # ORT's log for a plain CNN: 2 MB asked -> a 2 MB region; 32 KB with that region full -> 2 MB more;
    # the 2.03 MB pattern block fits neither region -> 4 MB (the next doubling)
    arena = BFCArenaModel()
    big = arena.alloc(2 * MB)
    arena.alloc(32 * 1024)
    arena.free(big)
    arena.alloc(2129920)
    assert arena.regions == [2 * MB, 2 * MB, 4 * MB]


def test_arena_reuses_and_coalesces_freed_chunks() -> None:
    arena = BFCArenaModel()
    a, b = arena.alloc(300_000), arena.alloc(300_000)
    arena.free(a)
    arena.free(b)  # the two neighbours merge back into one chunk of the first region
    arena.alloc(600_000)
    assert arena.regions == [MB]
    arena.alloc(600_000)  # no room left in 1 MB: a new region
    assert len(arena.regions) == 2


def test_pattern_block_reuses_gaps() -> None:
    events = [("alloc", 0, 1000), ("alloc", 1, 1000), ("free", 0, 1000), ("alloc", 2, 640), ("free", 1, 1000),
              ("alloc", 3, 3000)]
    # 640 bytes go into the gap the first buffer left (offset 0); with the second freed, 3000 bytes go right
    # after the last live block, not after everything ever placed
    assert pattern_block_bytes(events) == 640 + 3008
    assert pattern_block_bytes(events[:4]) == 2048  # the 640 fitted the gap: the block did not grow


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:  # noqa: ANN001
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _vi(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_matmul_weights_are_packed_once_and_padded_to_16_columns() -> None:
    w = numpy_helper.from_array(np.zeros((64, 20), np.float32), "w")
    # the same weight read by two MatMuls (ALBERT's shared layers): one packed copy, the original released
    m = _model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                helper.make_node("Slice", ["r", "s", "e"], ["r2"]),
                helper.make_node("MatMul", ["x", "w"], ["y"])],
               [_vi("x", [1, 64])], [_vi("y", [1, 20]), _vi("r2", [1, 20])],
               [w, numpy_helper.from_array(np.array([0], np.int64), "s"),
                numpy_helper.from_array(np.array([20], np.int64), "e")])
    g = build_graph(m, infer=True)
    held, packed = weight_layout_mb(g, 16)
    assert packed == pytest.approx(64 * 32 * 4 / MB)  # 20 columns padded to 32
    assert held < 1e-3  # only the Slice bounds stay


def _cnn(channels: int, hw: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits, nodes, prev, cin = [], [], "x", 3
    for i in range(3):
        inits.append(numpy_helper.from_array(rng.standard_normal((channels, cin, 3, 3)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev, cin = f"r{i}", channels
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["y"]))
    return _model(nodes, [_vi("x", [1, 3, hw, hw])], [_vi("y", [1, channels, 1, 1])], inits)


def test_fused_activations_and_reuse_keep_the_first_run_small() -> None:
    g = build_graph(_cnn(32, 64), infer=True)
    est = ort_memory(g, 8)
    fmap = 32 * 64 * 64 * 4 / MB
    # blocked conv outputs: at most the reordered input + two maps live, never the six tensors of the graph
    assert est.first_run_peak_mb <= 3 * fmap + 1e-6
    assert est.pattern_mb >= 2 * fmap - 1e-6
    assert est.arena_mb >= est.pattern_mb
    row = memory_row(g, 8)
    assert row[MEMORY_COLUMNS.index("arena_mb")] == est.arena_mb
    assert memory_row(g, 8, arena=False)[MEMORY_COLUMNS.index("arena_mb")] == 0.0


def test_where_keeps_two_output_sized_temporaries() -> None:
    cond = helper.make_node("IsNaN", ["x"], ["c"])
    where = helper.make_node("Where", ["c", "z", "x"], ["w"])
    tail = helper.make_node("Sin", ["w"], ["y"])
    zero = numpy_helper.from_array(np.zeros((), np.float32), "z")
    m = _model([cond, where, tail], [_vi("x", [1, 256, 256])], [_vi("y", [1, 256, 256])], [zero])
    sin = _model([helper.make_node("Sin", ["x"], ["w"]), helper.make_node("Sin", ["w"], ["y"])],
                 [_vi("x", [1, 256, 256])], [_vi("y", [1, 256, 256])])
    out = 256 * 256 * 4 / MB
    with_where = ort_memory(build_graph(m, infer=True), 8).first_run_peak_mb
    without = ort_memory(build_graph(sin, infer=True), 8).first_run_peak_mb
    assert without == pytest.approx(2 * out)  # the Sin between: its input and the held output
    # at the Where: the bool mask, the output and two output-sized temporaries
    assert with_where == pytest.approx(out / 4 + out + 2 * out)


_CHILD = textwrap.dedent("""
    import sys, numpy as np, onnxruntime as ort
    ort.set_default_logger_severity(0)
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
    b = s.io_binding()
    x = np.random.rand(*s.get_inputs()[0].shape).astype(np.float32)
    b.bind_cpu_input(s.get_inputs()[0].name, x)
    b.bind_output(s.get_outputs()[0].name, "cpu")
    for _ in range(3):
        s.run_with_iobinding(b)
""")


@pytest.mark.parametrize(("channels", "hw"), [(32, 64), (16, 96)])
def test_simulated_arena_matches_onnxruntime(tmp_path, channels: int, hw: int) -> None:  # noqa: ANN001
    """The arena ONNX Runtime grows for a small CNN, read from its own log, is the simulated one."""
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    model = _cnn(channels, hw)
    path = tmp_path / "cnn.onnx"
    onnx.save(model, path)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    grown = sum(int(m) for m in re.findall(r"Extended allocation by (\d+) bytes", proc.stderr))
    assert grown > 0, "no arena log: onnxruntime's logging changed?"
    assert "CPUExecutionProvider" in ort.get_available_providers()
    block = nchwc_block(this_device())  # this CPU's NCHWc block
    assert ort_memory(build_graph(model, infer=True), block).arena_mb == pytest.approx(grown / MB)


def test_silu_is_one_kernel_and_activations_write_in_place() -> None:
    x = [_vi("x", [1, 256, 256])]
    unit = 256 * 256 * 4 / MB
    silu = _model([helper.make_node("Sin", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["s"]),
                   helper.make_node("Mul", ["a", "s"], ["m"]), helper.make_node("Sin", ["m"], ["y"])],
                  x, [_vi("y", [1, 256, 256])])
    # x * sigmoid(x) runs as ORT's QuickGelu: the sigmoid's output never exists, two maps live at most
    assert ort_memory(build_graph(silu, infer=True), 8).first_run_peak_mb == pytest.approx(2 * unit)
    relu = _model([helper.make_node("Sin", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
                   helper.make_node("Neg", ["r"], ["n"]), helper.make_node("Sin", ["n"], ["y"])],
                  x, [_vi("y", [1, 256, 256])])
    est = ort_memory(build_graph(relu, infer=True), 8)
    # Relu overwrites its dying input; Neg allocates (measured: no MayInplace), then takes a freed buffer
    assert est.first_run_peak_mb == pytest.approx(2 * unit)
    assert est.pattern_mb == pytest.approx(2 * unit)
