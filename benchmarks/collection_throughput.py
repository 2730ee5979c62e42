"""Collection throughput on this machine: graphs per hour and the distribution of per-graph time.

Runs ``inferperf collect`` (the same code path: persistent export and measure workers, adaptive timing,
kernel profile and fusion labels, PerfDB writes) into a throw-away INFERPERF_HOME on a fixed, seeded slice of
the zoo, and reports the rate and the per-graph time (export, measurement, total) as percentiles, per zoo.
"Small and medium graphs" are the random and canonical zoos (the issue's goal: >= 600 graphs/hour); the
real-architecture families are reported separately, since exporting a transformers model dominates there.

    .venv/bin/python benchmarks/collection_throughput.py                 # ~8 min: 48 random+canonical, 24 real
    .venv/bin/python benchmarks/collection_throughput.py --quick         # ~1 min, checks it works

Writes ``benchmarks/results/collection_throughput.json``. Run it on a quiet machine: the collector itself
re-measures graphs disturbed by other processes, which would count against the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _pct(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    s = sorted(xs)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]

    return {"n": len(s), "min": s[0], "p10": q(0.1), "p50": q(0.5), "p90": q(0.9), "max": s[-1],
            "mean": statistics.fmean(s)}


def run(zoo: str, limit: int, seed: int) -> dict[str, Any]:
    from inferperf.jobs.collect import CollectOptions, collect

    with tempfile.TemporaryDirectory(prefix="inferperf-throughput-") as home:
        os.environ["INFERPERF_HOME"] = home
        started = time.perf_counter()
        report = collect(CollectOptions(zoo=zoo, limit=limit, seed=seed))
        wall = time.perf_counter() - started
    out = report.to_dict()
    return {
        "zoo": zoo, "limit": limit, "seed": seed, "wall_s": wall,
        "graphs": report.measured + report.failed, "measured": report.measured, "failed": report.failed,
        "unstable": report.unstable, "remeasured": report.remeasured,
        "graphs_per_hour": 3600.0 * (report.measured + report.failed) / wall if wall > 0 else None,
        "graph_s": _pct(report.graph_seconds), "export_s": _pct(report.export_seconds),
        "measure_s": _pct(report.measure_seconds), "families": out.get("families"),
        "graph_seconds": [round(x, 3) for x in report.graph_seconds],  # raw, one per graph, in order
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=48, help="random + canonical graphs")
    parser.add_argument("--real", type=int, default=24, help="real-architecture graphs (0 to skip)")
    parser.add_argument("--seed", type=int, default=7, help="zoo sampling seed (not the reference's 0)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    small, real = (8, 0) if args.quick else (args.small, args.real)
    load_before = os.getloadavg()
    parts = [run("random", small // 2, args.seed), run("canonical", small - small // 2, args.seed)]
    if real:
        parts.append(run("real", real, args.seed))
    small_parts = parts[:2]
    n_small = sum(p["graphs"] for p in small_parts)
    wall_small = sum(p["wall_s"] for p in small_parts)
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "benchmarks/collection_throughput.py" + (" --quick" if args.quick else ""),
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "parts": parts,
        "summary": {
            "small_medium_graphs_per_hour": 3600.0 * n_small / wall_small if wall_small else None,
            "small_medium_graph_s": _pct([x for p in small_parts for x in p["graph_seconds"]]),
            "real_graphs_per_hour": parts[2]["graphs_per_hour"] if real else None,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "collection_throughput.json"
    if not args.quick:
        out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    for p in parts:
        g = p["graph_s"] or {}
        print(f"{p['zoo']:9s}: {p['graphs']} graphs in {p['wall_s']:.0f} s = {p['graphs_per_hour']:.0f}/h; "
              f"per graph p10 {g.get('p10', 0):.2f} / p50 {g.get('p50', 0):.2f} / p90 {g.get('p90', 0):.2f} / "
              f"max {g.get('max', 0):.2f} s")
    if not args.quick:
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
