"""Is a CPU quota (cgroup-v1 CFS bandwidth) a usable "compute share" for latency prediction?

A share a predictor can learn from should slow a model down like fewer cores would. A CFS quota does not: the
group runs at full speed until its quota for the period is spent, then waits for the next period, so a call
either runs unthrottled or waits out the rest of a period. This probe times one fixed ONNX model (6 × 3×3
convolutions, 64 channels, 56×56, random weights from a seed) with ONNX Runtime at 1 and 2 intra-op threads
unthrottled, and at 2 threads under a 1.5-core quota with several periods (and 1 thread at half a core), each
in a child process moved into a fresh cgroup, and reports median / mean / p99 per setting.

Needs root and a writable cgroup-v1 ``cpu`` controller (``/sys/fs/cgroup/cpu``); says so and exits 0 otherwise.

    .venv/bin/python benchmarks/cpu_quota_probe.py          # ~30 s on a quiet 2-core machine

Writes ``benchmarks/results/cpu_quota_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CGROUP = Path("/sys/fs/cgroup/cpu")

#: (label, intra-op threads, quota in cores or None, period in µs)
SETTINGS = [
    ("1 thread, no quota", 1, None, 100_000),
    ("2 threads, no quota", 2, None, 100_000),
    ("2 threads, 1.5 cores, 100 ms period", 2, 1.5, 100_000),
    ("2 threads, 1.5 cores, 10 ms period", 2, 1.5, 10_000),
    ("2 threads, 1.5 cores, 2 ms period", 2, 1.5, 2_000),
    ("1 thread, 0.5 cores, 10 ms period", 1, 0.5, 10_000),
]

_CHILD = r"""
import json, os, sys, time
import numpy as np, onnxruntime as ort
path, threads, calls, tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if tasks != "-":
    with open(tasks, "w") as f:
        f.write(str(os.getpid()))
so = ort.SessionOptions()
so.intra_op_num_threads = threads
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
x = np.random.default_rng(0).standard_normal((1, 64, 56, 56)).astype(np.float32)
for _ in range(20):
    sess.run(None, {name: x})
ms = []
for _ in range(calls):
    t = time.perf_counter()
    sess.run(None, {name: x})
    ms.append((time.perf_counter() - t) * 1e3)
print(json.dumps(ms))
"""


def _model(path: Path) -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(6):
        w = (rng.standard_normal((64, 64, 3, 3)) * (2 / (64 * 9)) ** 0.5).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    graph = helper.make_graph(nodes, "conv6", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 56, 56])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 64, 56, 56])], inits)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--out", default=str(RESULTS / "cpu_quota_probe.json"))
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.access(CGROUP, os.W_OK):
        print(f"needs root and a writable cgroup-v1 cpu controller at {CGROUP}; nothing measured")
        return 0
    import numpy as np

    group = CGROUP / f"inferperf-quota-probe-{os.getpid()}"
    group.mkdir()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "conv6.onnx"
            _model(model)
            for label, threads, cores, period in SETTINGS:
                (group / "cpu.cfs_period_us").write_text(str(period))
                (group / "cpu.cfs_quota_us").write_text(str(int(cores * period)) if cores else "-1")
                tasks = str(group / "tasks") if cores else "-"
                out = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(threads), str(args.calls), tasks],
                                     capture_output=True, text=True, timeout=600, check=True)
                ms = np.array(json.loads(out.stdout))
                row = {"setting": label, "threads": threads, "quota_cores": cores, "period_us": period,
                       "median_ms": float(np.median(ms)), "mean_ms": float(ms.mean()),
                       "p10_ms": float(np.percentile(ms, 10)), "p90_ms": float(np.percentile(ms, 90)),
                       "p99_ms": float(np.percentile(ms, 99)), "calls": int(ms.size)}
                rows.append(row)
                print(f"{label:38s} median {row['median_ms']:6.2f}  mean {row['mean_ms']:6.2f}  "
                      f"p99 {row['p99_ms']:6.2f} ms", flush=True)
    finally:
        group.rmdir()
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
              "model": "6 x Conv3x3(64->64)+ReLU on 1x64x56x56, opset 17, seeded weights",
              "cpus": os.cpu_count(), "settings": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
