"""Graph extraction time: load ONNX + shape inference + ModelGraph + features (export excluded).

Usage: .venv/bin/python benchmarks/graph_extraction.py [--repeats 7]
Writes benchmarks/results/graph_extraction.json. Exports are done (and cached) before timing starts.
Also times `inferperf --help` as a cold process start.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _extract(path: str) -> dict[str, float]:
    from inferperf.ir.build import build_graph
    from inferperf.ir.features import node_feature_vector, static_feature_vector
    from inferperf.ir.ingest import load_onnx_file

    t0 = time.perf_counter()
    loaded = load_onnx_file(path)  # onnx.load + opset checks + shape inference (data propagation)
    t1 = time.perf_counter()
    graph = build_graph(loaded.model, loaded.name)
    t2 = time.perf_counter()
    for node in graph.nodes:
        node_feature_vector(node)
    static_feature_vector(graph)
    t3 = time.perf_counter()
    return {"load_and_infer_s": t1 - t0, "build_s": t2 - t1, "features_s": t3 - t2, "total_s": t3 - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from inferperf.ir.ingest import load_model

    out: dict = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "repeats": args.repeats,
        "models": {},
    }
    for arch in ("resnet50", "bert-base"):
        path = load_model(arch, batch_size=1).path  # export once (cached), not timed
        _extract(path)  # warm the import caches
        runs = [_extract(path) for _ in range(args.repeats)]
        totals = [r["total_s"] for r in runs]
        out["models"][arch] = {
            "median_total_s": statistics.median(totals),
            "min_total_s": min(totals),
            "max_total_s": max(totals),
            "median_parts_s": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
        }
        print(f"{arch}: median {statistics.median(totals):.3f} s (min {min(totals):.3f}, max {max(totals):.3f})")
    helps = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "inferperf", "--help"], capture_output=True, check=True)
        helps.append(time.perf_counter() - t0)
    out["cli_help_s"] = {"median": statistics.median(helps), "max": max(helps), "runs": len(helps)}
    print(f"inferperf --help: median {statistics.median(helps):.3f} s, max {max(helps):.3f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "graph_extraction.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
