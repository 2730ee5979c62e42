"""How a run's latency relates to the sum of its profiled kernels, and what that means for the aggregator.

The kernel-level predictors (``fusion-kernel``, ``rule-kernel``) predict profiled kernel durations and turn
their sum into a run latency with ``latency = a · Σ kernel + b · n_kernels + c``. This script measures,
on a dataset's profiled runs (trusted latency labels only):

- per family: latency / measured kernel sum (median, 10th and 90th percentile) and
  (latency − kernel sum) / n_kernels in µs — the runtime's per-kernel cost net of the profiler's;
- leave-one-family-out MAPE of that aggregator fitted on the *measured* kernel sums of the other families and
  applied to the held-out family's measured kernel sums — the end-to-end error a perfect kernel model would
  have — with ``b`` clamped at zero (before 2026-11-23) and signed (as shipped, ``OverheadModel``).

    .venv/bin/python benchmarks/kernel_sum_overhead.py --dataset data/reference    # ~1 min

Writes ``benchmarks/results/kernel_sum_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="data/reference")
    ap.add_argument("--out", default=str(RESULTS / "kernel_sum_overhead.json"))
    args = ap.parse_args()

    from inferperf.dataset.core import load_dataset
    from inferperf.predict.fusion.data import graph_labels
    from inferperf.predict.fusion.predictor import OverheadModel

    runs = []
    for s in load_dataset(args.dataset).filter(lambda s: s.trusted):
        lat = s.label("latency_ms")
        lab = graph_labels(s) if s.kernels else None
        if lat and lab is not None and lab.kernels and lab.kernel_sum_ms > 0:
            runs.append((s.family, float(lat), lab.kernel_sum_ms, float(len(lab.kernels))))
    fam = np.array([r[0] for r in runs])
    lat, ksum, nk = (np.array([r[i] for r in runs]) for i in (1, 2, 3))
    per_family: dict[str, Any] = {}
    lofo = {"clamped": [], "signed": []}
    for f in sorted(set(fam)):
        te, tr = fam == f, fam != f
        ratio = lat[te] / ksum[te]
        old = OverheadModel().fit(ksum[tr], nk[tr], lat[tr], signed_per_kernel=False)
        clamped = float(np.mean(np.abs((old.a * ksum[te] + old.b * nk[te] + old.c) / lat[te] - 1)) * 100)
        model = OverheadModel().fit(ksum[tr], nk[tr], lat[tr])
        signed = float(np.mean(np.abs((model.a * ksum[te] + model.b * nk[te] + model.c) / lat[te] - 1)) * 100)
        lofo["clamped"].append(clamped)
        lofo["signed"].append(signed)
        per_family[f] = {
            "runs": int(te.sum()), "median_kernels": float(np.median(nk[te])),
            "latency_over_kernel_sum": {q: round(float(np.percentile(ratio, p)), 3)
                                        for q, p in (("p10", 10), ("median", 50), ("p90", 90))},
            "per_kernel_us_median": round(float(np.median((lat[te] - ksum[te]) / nk[te])) * 1000, 2),
            "lofo_mape_clamped": round(clamped, 2), "lofo_mape_signed": round(signed, 2),
        }
    whole = OverheadModel().fit(ksum, nk, lat)
    report = {
        "dataset": args.dataset, "runs": len(runs), "families": len(per_family), "machine": platform.machine(),
        "fit_on_all": whole.state(),
        "fit_on_all_clamped": OverheadModel().fit(ksum, nk, lat, signed_per_kernel=False).state(),
        "lofo_mean_mape": {k: round(float(np.mean(v)), 2) for k, v in lofo.items()},
        "per_family": per_family,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"{len(runs)} runs, {len(per_family)} families; aggregator on measured kernel sums, leave-one-family-out "
          f"MAPE: clamped b {report['lofo_mean_mape']['clamped']}%, signed b {report['lofo_mean_mape']['signed']}%; "
          f"fit on all: a={whole.a:.3f} b={whole.b * 1000:.2f} µs c={whole.c * 1000:.2f} µs")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
