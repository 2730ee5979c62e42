"""A fixed reference workload timed now and then during a collection: how fast the machine is right now.

Why: a long collection on a shared VM spans hours and sessions, and the machine's speed drifts under it
(host load, frequency, noisy neighbours). Measured in the reference data: residuals of one cost model fitted
on every run were +13% (median) in the collection hours 21–22 h and −1% at 01 h, and in 30 of 36 families
the runs collected first sat higher than those collected later (benchmarks/label_drift.py). The
background-load check cannot see that: it measures other processes *in* the VM, not the host. A drift that
shifts whole families is the worst kind of label noise for leave-one-family-out evaluation.

The probe is a small ONNX model built here from fixed bytes — six 512×512 MatMul + Relu layers on a
[64, 512] input, 200 MFLOP and 6 MB of weights (past L2), ≈ 1 ms on one core, weights from a seeded
generator scaled so activations stay far from denormals — run on the same core and thread count as the
measurements, ``repeats`` times after a warm-up (≈ 0.2 s). Its median is stored in every run's
provenance (``speed_probe``, with its age) and exported as ``speed_probe_ms``, so a dataset can flag or
normalise the runs measured while the machine was slow. ``PROBE_VERSION`` changes when the workload does;
medians of different versions are not comparable.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import numpy as np

PROBE_VERSION = 1
_LAYERS, _WIDTH, _ROWS = 6, 512, 64


@lru_cache(maxsize=1)
def probe_model_bytes() -> bytes:
    """The serialized probe model (deterministic: the same bytes on every machine and run)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(20261123)
    inits, nodes = [], []
    prev = "x"
    for i in range(_LAYERS):
        # He scale √(2/width) keeps activations O(1) through the ReLUs: no denormals, no overflow
        w = (rng.standard_normal((_WIDTH, _WIDTH)) * (2.0 / _WIDTH) ** 0.5).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"h{i}"]))
        prev = f"h{i}"
    graph = helper.make_graph(
        nodes, "inferperf_speed_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [_ROWS, _WIDTH])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [_ROWS, _WIDTH])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="inferperf")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def measure_speed_probe(threads: int = 1, repeats: int = 150, warmup: int = 20) -> dict[str, Any]:
    """Time the probe in this process: ``{"version", "median_ms", "p10_ms", "p90_ms", "n", "threads", "at"}``.

    ``at`` is ``time.time()`` when it finished, so a run can record how old its probe reading is.
    """
    import onnxruntime as ort

    if threads < 1 or repeats < 5 or warmup < 0:
        raise ValueError("the speed probe needs threads >= 1, repeats >= 5 and warmup >= 0")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(probe_model_bytes(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((_ROWS, _WIDTH)).astype(np.float32)
    feed = {"x": x}
    for _ in range(warmup):
        session.run(None, feed)
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        times[i] = (time.perf_counter_ns() - t0) / 1e6
    return {
        "version": PROBE_VERSION,
        "median_ms": float(np.median(times)),
        "p10_ms": float(np.percentile(times, 10)),
        "p90_ms": float(np.percentile(times, 90)),
        "n": int(repeats),
        "threads": int(threads),
        "at": time.time(),
    }


def probe_reading(probe: dict[str, Any] | None, now: float | None = None) -> dict[str, Any] | None:
    """What a run stores about the latest probe: its median, spread, version and age in seconds."""
    if not probe:
        return None
    now = time.time() if now is None else now
    return {"version": probe["version"], "median_ms": probe["median_ms"], "p10_ms": probe["p10_ms"],
            "p90_ms": probe["p90_ms"], "threads": probe["threads"], "age_s": round(max(0.0, now - probe["at"]), 1)}
