"""How close the simulated ONNX Runtime footprint (:mod:`inferperf.predict.ort_memory`) comes to the real one.

For a per-family sample of the reference graphs, the zoo entry is rebuilt (same parameters and seed), exported,
and measured by the measurement engine (``run_measurement``, 1 thread, 10 fixed runs) in a child process whose
ONNX Runtime default logger is verbose: every growth of the CPU arena is logged ("Extended allocation by N
bytes"), so the arena's real size is known exactly, next to the heap footprint the engine reports
(``memory_mb``). The simulation is then run on the graph with this CPU's NCHWc block.

Figures written (``--out``, default benchmarks/results/ort_arena_check.json):

- ``arena_exact``: share of graphs whose simulated arena equals the logged one (to the byte), per family;
  ``arena_log2_error``: mean |log2(simulated / logged)| (1.0 = one doubling off);
- ``fit``: a linear model ``heap ≈ a + b·kept weights + c·packed weights + d·arena`` fitted on the sample
  (non-negative least squares on relative error) with the logged arena and with the simulated one: its MAPE
  says how much of the footprint the three terms explain, and what the simulation's misses cost.

The raw records (one JSON line per graph) go to ``--raw`` and are reused on a second run (``--resume``), so a
long collection can be stopped and continued. Usage:

    .venv/bin/python benchmarks/ort_arena_check.py --dataset data/reference --per-family 5 --resume
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
_MB = float(1 << 20)

_CHILD = r"""
import sys, onnxruntime as ort
ort.set_default_logger_severity(0); ort.set_default_logger_verbosity(0)
from inferperf.measure.config import RunConfig, ProtocolConfig
from inferperf.measure.protocol import run_measurement
cfg = RunConfig(intra_op_threads=1, inter_op_threads=1, profile=False, batch_size=int(sys.argv[2]))
proto = ProtocolConfig(mode="fixed", fixed_runs=10, warmup_runs=3, warmup_min_s=0.0, max_time_s=2.0)
m = run_measurement(sys.argv[1], cfg, proto)
print("HEAP", m.memory_mb, m.provenance.get("memory_method"), m.status, flush=True)
"""


def _pick(dataset: str, per_family: int) -> list[tuple[str, dict]]:
    """Graphs spread over each family's weight sizes (every k-th by weight bytes), batch 1."""
    import pandas as pd

    if per_family <= 0:
        return []
    graphs = pd.read_parquet(Path(dataset) / "graphs.parquet")
    graphs = graphs[graphs["batch_size"] == 1].sort_values(["family", "memory_bytes"])
    picked = []
    for _, fam in graphs.groupby("family"):
        step = max(1, len(fam) // per_family)
        for _, row in fam.iloc[::step].head(per_family).iterrows():
            picked.append((row["name"], json.loads(row["graph_json"])["metadata"]))
    return picked


def _measure(name: str, meta: dict) -> dict:
    from inferperf.zoo.base import ZooEntry

    entry = ZooEntry(key=meta["zoo_key"], zoo=meta["zoo"], family=meta["family"], params=meta["zoo_params"],
                     batch_size=meta["batch_size"], seed=meta["seed"])
    loaded = entry.load()
    proc = subprocess.run([sys.executable, "-c", _CHILD, loaded.path, str(meta["batch_size"])],
                          capture_output=True, text=True, timeout=600)
    heap = [line for line in proc.stdout.splitlines() if line.startswith("HEAP")]
    extended = [int(x) for x in re.findall(r"Extended allocation by (\d+)", proc.stderr)]
    return {"name": name, "family": meta["family"], "heap_mb": float(heap[0].split()[1]) if heap else None,
            "arena_bytes": sum(extended), "regions": extended, "rc": proc.returncode,
            "error": None if heap else proc.stderr[-500:]}


def _fit(rows: list[dict], arena_key: str) -> dict:
    from scipy.optimize import nnls

    y = np.array([r["heap_mb"] for r in rows])
    a = np.column_stack([np.ones(len(rows)), [r["kept_mb"] for r in rows], [r["packed_mb"] for r in rows],
                         [r[arena_key] for r in rows]])
    w = 1.0 / y
    coef, _ = nnls(a * w[:, None], y * w)
    err = np.abs(a @ coef / y - 1)
    return {"coef": dict(zip(["base", "kept_weights", "packed_weights", "arena"], coef.round(4).tolist(), strict=True)),
            "mape": round(100 * float(err.mean()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="data/reference")
    parser.add_argument("--per-family", type=int, default=5)
    parser.add_argument("--raw", default=str(RESULTS / "ort_arena_check.jsonl"))
    parser.add_argument("--out", default=str(RESULTS / "ort_arena_check.json"))
    parser.add_argument("--resume", action="store_true", help="keep the records already in --raw")
    args = parser.parse_args()

    from inferperf.dataset.parquet import read_dataset
    from inferperf.predict.additive import nchwc_block
    from inferperf.predict.fusion.data import this_device
    from inferperf.predict.ort_memory import ort_memory

    raw = Path(args.raw)
    records = {json.loads(line)["name"]: json.loads(line) for line in raw.open()} if args.resume and raw.exists() \
        else {}
    if not args.resume:
        raw.write_text("")
    todo = [(n, m) for n, m in _pick(args.dataset, args.per_family) if n not in records]
    for i, (name, meta) in enumerate(todo, 1):
        rec = _measure(name, meta)
        records[name] = rec
        with raw.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"[{i}/{len(todo)}] {name}: heap {rec['heap_mb']} MB, arena {rec['arena_bytes'] / _MB:.0f} MB",
              flush=True)

    device = this_device()
    block = nchwc_block(device)
    graphs = {s.graph.name: s.graph for s in read_dataset(args.dataset, with_kernels=False)}
    rows = []
    for rec in records.values():
        if rec.get("heap_mb") is None or rec["name"] not in graphs:
            continue
        est = ort_memory(graphs[rec["name"]], block)
        rows.append({"name": rec["name"], "family": rec["family"], "heap_mb": rec["heap_mb"],
                     "arena_mb": rec["arena_bytes"] / _MB, "sim_arena_mb": est.arena_mb, "kept_mb": est.weights_mb,
                     "packed_mb": est.prepacked_mb, "sim_pattern_mb": est.pattern_mb})
    by_family: dict[str, dict] = {}
    for fam in sorted({r["family"] for r in rows}):
        rs = [r for r in rows if r["family"] == fam]
        by_family[fam] = {"n": len(rs),
                          "arena_exact": round(float(np.mean([abs(r["sim_arena_mb"] - r["arena_mb"]) < 1e-6
                                                              for r in rs])), 3),
                          "arena_log2_error": round(float(np.mean([abs(math.log2(r["sim_arena_mb"] / r["arena_mb"]))
                                                                   for r in rs])), 3)}
    report = {
        "machine": {"device_id": device["id"], "nchwc_block": block, "platform": platform.platform()},
        "command": " ".join(["benchmarks/ort_arena_check.py", *sys.argv[1:]]),
        "graphs": len(rows),
        "arena_exact": round(float(np.mean([abs(r["sim_arena_mb"] - r["arena_mb"]) < 1e-6 for r in rows])), 3),
        "arena_log2_error": round(float(np.mean([abs(math.log2(r["sim_arena_mb"] / r["arena_mb"])) for r in rows])), 3),
        "fit": {"logged_arena": _fit(rows, "arena_mb"), "simulated_arena": _fit(rows, "sim_arena_mb")},
        "by_family": by_family,
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("graphs", "arena_exact", "arena_log2_error", "fit")}, indent=1))


if __name__ == "__main__":
    main()
