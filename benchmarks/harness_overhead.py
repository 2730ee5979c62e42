"""Harness overhead per timed call: what the protocol's timing loop adds over the model call itself.

Three comparisons, alternated (A B A B ...) so drift and co-tenant noise hit both sides alike:

1. ONNX Runtime on trivial models (Identity and Add on a 1x16 float tensor): a bare loop of
   ``session.run(None, feeds)`` timed as a whole vs the protocol's timed loop (two ``perf_counter_ns``
   reads and a list store per call) around the same bound call — the difference per call is the overhead;
2. the same for a no-op Python callable, i.e. the floor of the loop;
3. ``run(None, feeds)`` vs ``run_with_iobinding`` with inputs and outputs pre-bound, to decide whether
   IO binding would reduce per-call overhead on CPU.

Goal: < 2 µs overhead per call. Writes ``benchmarks/results/harness_overhead.json``.

    TMPDIR=/tmp .venv/bin/python benchmarks/harness_overhead.py            # ~10 s
    TMPDIR=/tmp .venv/bin/python benchmarks/harness_overhead.py --calls 200000 --rounds 9
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.helper as oh
from onnx import TensorProto, numpy_helper

from inferperf.measure.config import RunConfig
from inferperf.measure.protocol import library_versions, pinned, timed_block
from inferperf.runtimes.onnxruntime import OrtBackend

RESULTS = Path(__file__).resolve().parent / "results"


def trivial_model(op: str, path: Path) -> str:
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    inits = []
    if op == "Identity":
        node = oh.make_node("Identity", ["x"], ["y"])
    else:
        inits.append(numpy_helper.from_array(np.ones((1, 16), dtype=np.float32), "b"))
        node = oh.make_node("Add", ["x", "b"], ["y"])
    model = oh.make_model(oh.make_graph([node], op.lower(), [x], [y], inits), opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return str(path)


def bare_ns_per_call(call: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        call()
    return (time.perf_counter_ns() - t0) / n


def protocol_ns_per_call(call: Callable[[], Any], n: int) -> tuple[float, float]:
    """Wall time per call of the protocol loop, and the median of the samples it recorded."""
    t0 = time.perf_counter_ns()
    samples = timed_block(call, n, time.perf_counter_ns)
    wall = (time.perf_counter_ns() - t0) / n
    return wall, float(statistics.median(samples))


def compare(name: str, call: Callable[[], Any], calls: int, rounds: int) -> dict[str, Any]:
    bare, proto, recorded = [], [], []
    for _ in range(min(3, calls // 10) or 1):  # warm caches and branch predictors
        call()
    for _ in range(rounds):
        bare.append(bare_ns_per_call(call, calls))
        w, med = protocol_ns_per_call(call, calls)
        proto.append(w)
        recorded.append(med)
    overheads = [p - b for p, b in zip(proto, bare, strict=True)]
    return {
        "name": name,
        "bare_ns_per_call_median": statistics.median(bare),
        "protocol_ns_per_call_median": statistics.median(proto),
        "overhead_ns_per_call_median": statistics.median(overheads),
        "overhead_ns_per_call_all": overheads,
        "recorded_sample_median_ns": statistics.median(recorded),
        "calls_per_round": calls,
        "rounds": rounds,
    }


def iobinding_vs_run(sess: Any, feeds: dict[str, np.ndarray], calls: int, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort

    binding = sess.io_binding()
    for name, arr in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cpu")
    run_call = functools.partial(sess.run, None, feeds)
    bind_call = functools.partial(sess.run_with_iobinding, binding)
    run_t, bind_t = [], []
    for _ in range(rounds):
        run_t.append(bare_ns_per_call(run_call, calls))
        bind_t.append(bare_ns_per_call(bind_call, calls))
    return {
        "run_ns_per_call_median": statistics.median(run_t),
        "iobinding_ns_per_call_median": statistics.median(bind_t),
        "iobinding_saves_ns_median": statistics.median([r - b for r, b in zip(run_t, bind_t, strict=True)]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50_000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=5, help="alternations of bare vs protocol")
    ap.add_argument("--out", type=Path, default=RESULTS / "harness_overhead.json")
    args = ap.parse_args()

    cfg = RunConfig()  # 1 intra-op thread, pinned like a real measurement
    results: dict[str, Any] = {
        "benchmark": "harness_overhead",
        "goal_ns_per_call": 2000,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "comparisons": [],
    }
    with tempfile.TemporaryDirectory() as tmp, pinned(cfg) as affinity:
        results["affinity"] = affinity

        def noop() -> None:
            return None

        results["comparisons"].append(compare("noop-callable", noop, args.calls, args.rounds))
        for op in ("Identity", "Add"):
            sess = OrtBackend().load(trivial_model(op, Path(tmp) / f"{op}.onnx"), cfg)
            feeds = {"x": np.ones((1, 16), dtype=np.float32)}
            call = sess.bind(sess.prepare_feeds(feeds))
            results["comparisons"].append(compare(f"onnxruntime-{op}", call, args.calls, args.rounds))
            if op == "Add":
                results["iobinding"] = iobinding_vs_run(sess.inference_session, feeds, args.calls, args.rounds)
            sess.close()
    worst = max(c["overhead_ns_per_call_median"] for c in results["comparisons"])
    results["max_overhead_ns_per_call"] = worst
    results["meets_goal"] = worst < results["goal_ns_per_call"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    for c in results["comparisons"]:
        print(
            f"{c['name']:>22}: bare {c['bare_ns_per_call_median']:8.0f} ns  protocol "
            f"{c['protocol_ns_per_call_median']:8.0f} ns  overhead {c['overhead_ns_per_call_median']:6.0f} ns/call"
        )
    io = results["iobinding"]
    print(
        f"{'io binding (Add)':>22}: run {io['run_ns_per_call_median']:.0f} ns, "
        f"run_with_iobinding {io['iobinding_ns_per_call_median']:.0f} ns"
    )
    print(f"max overhead {worst:.0f} ns/call (goal < 2000): {'OK' if results['meets_goal'] else 'MISSED'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
