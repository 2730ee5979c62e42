"""How ONNX Runtime's CPU kernels round work up to whole tiles, measured: MatMul rows and columns, NCHWc
convolution output and input channels.

Why: a kernel cost model that counts MACs assumes time grows with every row and channel; MLAS computes whole
output tiles (SGEMM) and whole filter sets (NCHWc convolutions), so a 1-row MatMul costs what a 6-row one does
and a convolution to 1 output channel what one to 16 does. This script measures the step sizes on the machine
it runs on, one single-node ONNX model per point, 1 intra-op thread, the median of 7 batches of timed runs
after a warm-up. The step shows as a flat run of times followed by a jump; read the ``ms`` columns side by side
(timings on a shared VM drift by ±10%, the steps are 1.3–2×).

    .venv/bin/python benchmarks/mlas_tiles.py            # ~1 min; writes benchmarks/results/mlas_tiles.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _session(nodes: list[Any], inputs: list[Any], initializers: list[Any]) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [out], initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _time_ms(session: Any, feeds: dict[str, np.ndarray], calls: int) -> float:
    for _ in range(10):
        session.run(None, feeds)
    batches = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(calls):
            session.run(None, feeds)
        batches.append((time.perf_counter() - t0) / calls)
    return float(np.median(batches) * 1e3)


def matmul_ms(m: int, k: int, n: int, rng: np.random.Generator) -> float:
    """A MatMul of an [m, k] input by a constant [k, n] weight."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array((rng.random((k, n)) * 0.01).astype(np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])
    s = _session([helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [w])
    return _time_ms(s, {"x": rng.random((m, k)).astype(np.float32)}, 50)


def conv_ms(cin: int, cout: int, hw: int, k: int, rng: np.random.Generator) -> float:
    """A k×k convolution (same padding) of a [1, cin, hw, hw] input to cout channels."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array((rng.random((cout, cin, k, k)) * 0.01).astype(np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])
    s = _session([helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4)], [x], [w])
    return _time_ms(s, {"x": rng.random((1, cin, hw, hw)).astype(np.float32)}, 20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(RESULTS / "mlas_tiles.json"))
    args = ap.parse_args()
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    sweeps: dict[str, list[dict[str, Any]]] = {"matmul_rows (k=n=1024)": [], "matmul_columns (m=60, k=512)": [],
                                               "conv3x3_output_channels (cin=64, 28x28)": [],
                                               "conv3x3_input_channels (cout=32, 28x28)": []}
    for m in (1, 2, 4, 6, 7, 8, 12, 13, 16, 32):
        sweeps["matmul_rows (k=n=1024)"].append({"m": m, "ms": round(matmul_ms(m, 1024, 1024, rng), 4)})
    for n in (8, 16, 17, 24, 32, 33, 48, 64):
        sweeps["matmul_columns (m=60, k=512)"].append({"n": n, "ms": round(matmul_ms(60, 512, n, rng), 4)})
    for cout in (1, 8, 16, 17, 24, 32, 40, 48, 49, 64, 65):
        sweeps["conv3x3_output_channels (cin=64, 28x28)"].append(
            {"cout": cout, "ms": round(conv_ms(64, cout, 28, 3, rng), 4)})
    for cin in (8, 16, 20, 24, 32, 36, 40, 48, 56, 64):
        sweeps["conv3x3_input_channels (cout=32, 28x28)"].append(
            {"cin": cin, "ms": round(conv_ms(cin, 32, 28, 3, rng), 4)})
    for name, rows in sweeps.items():
        print(name)
        for r in rows:
            print("   ", "  ".join(f"{k} {v}" for k, v in r.items()))
    from inferperf.device.cpu import read_cpu_info
    from inferperf.device.descriptor import cpu_identity

    cpu = cpu_identity(read_cpu_info())  # the tiles are the kernel MLAS picks for this CPU's ISA
    report = {"machine": platform.machine(), "cpu": {k: cpu[k] for k in ("vendor", "model_name", "isa")},
              "onnxruntime": ort.__version__,
              "threads": 1, "repeats": "median of 7 batches (50 calls MatMul, 20 Conv) after 10 warm-up calls",
              "sweeps": sweeps}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
