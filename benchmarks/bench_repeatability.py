"""`inferperf bench resnet50` (1 thread, batch 1) three times: time to the stopping rule and median spread.

Usage: .venv/bin/python benchmarks/bench_repeatability.py [--model resnet50] [--invocations 3]
Each invocation is a separate `inferperf bench --json` process (a fresh child measures, as a user would run
it). Writes benchmarks/results/bench_repeatability.json. Goal: stopping rule reached in ≤ 15 s, medians of
the invocations within 2% of each other.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--invocations", type=int, default=3)
    args = parser.parse_args()
    db = Path(tempfile.mkdtemp(prefix="inferperf-bench-")) / "perf.db"
    runs = []
    for i in range(args.invocations):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "inferperf", "bench", args.model, "--threads", "1", "--batch",
                              "1", "--json", "--db", str(db)], capture_output=True, text=True, check=True,
                             env={**os.environ, "TMPDIR": os.environ.get("TMPDIR", "/tmp")})
        wall = time.perf_counter() - t0
        run = json.loads(out.stdout)["runs"][0]
        timing = run["provenance"].get("timing", {})
        runs.append({
            "invocation": i, "p50_ms": run["latency_ms"]["p50"], "cv": run["cv"], "status": run["status"],
            "n_samples": run["n_samples"], "stop_reason": timing.get("stop_reason"),
            "measure_s": run["duration_s"], "timed_s": timing.get("elapsed_ns", 0) / 1e9, "process_wall_s": wall,
        })
        print(f"invocation {i}: p50 {run['latency_ms']['p50']:.3f} ms, {run['n_samples']} samples, "
              f"stop {timing.get('stop_reason')}, measurement {run['duration_s']:.1f} s, process {wall:.1f} s")
    medians = [r["p50_ms"] for r in runs]
    spread = (max(medians) - min(medians)) / min(medians)
    out = {"model": args.model, "threads": 1, "batch": 1, "runs": runs, "median_spread_rel": spread,
           "max_measure_s": max(r["measure_s"] for r in runs)}
    print(f"medians {[round(m, 3) for m in medians]} → spread {100 * spread:.2f}% "
          f"(goal < 2%); slowest measurement {out['max_measure_s']:.1f} s (goal ≤ 15 s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_repeatability.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
