"""Does the machine's speed drift under a long collection? Residuals of one cost model against collection time.

Fits ``additive`` on every trusted run of a dataset (in-sample: the question is not how well it predicts but
whether its misfit depends on *when* a run was measured), then groups the log residuals
(measured / predicted) by the hour each run was created, and, per family, compares the first half of the
family's runs (by time) with the second half. A machine of constant speed gives no trend across hours and
no systematic early/late difference within families; drift shows as both.

    .venv/bin/python benchmarks/label_drift.py --dataset data/reference      # ~1 min

Writes ``benchmarks/results/label_drift.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="data/reference")
    ap.add_argument("--min-runs", type=int, default=15, help="smallest hour bin reported")
    ap.add_argument("--out", default=str(RESULTS / "label_drift.json"))
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from inferperf.dataset.core import load_dataset
    from inferperf.predict import get_predictor

    data = load_dataset(args.dataset).filter(lambda s: s.trusted)
    created = dict(zip(*pq.read_table(Path(args.dataset) / "runs.parquet", columns=["run_id", "created_at"])
                       .to_pydict().values(), strict=True))
    model = get_predictor("additive", family_folds=0).fit(data)
    pred = model.predict_dataset(data)["pred"][:, 0]
    measured = np.array([s.label("latency_ms") for s in data])
    resid = np.log(measured / pred)
    when = np.array([created[s.run_id].strftime("%Y-%m-%d %H") for s in data])
    order_key = np.array([created[s.run_id].timestamp() for s in data])
    fam = np.array([s.family for s in data])
    hours = {}
    for h in sorted(set(when)):
        sel = when == h
        if sel.sum() >= args.min_runs:
            hours[h] = {"runs": int(sel.sum()), "families": len(set(fam[sel])),
                        "median_residual_pct": round(float(np.median(resid[sel])) * 100, 2)}
    families: dict[str, Any] = {}
    for f in sorted(set(fam)):
        idx = np.flatnonzero(fam == f)
        idx = idx[np.argsort(order_key[idx])]
        half = len(idx) // 2
        early, late = float(np.median(resid[idx[:half]])), float(np.median(resid[idx[half:]]))
        families[f] = {"runs": len(idx), "early_pct": round(early * 100, 2), "late_pct": round(late * 100, 2),
                       "late_minus_early_pct": round((late - early) * 100, 2)}
    diffs = np.array([v["late_minus_early_pct"] for v in families.values()])
    hour_medians = [v["median_residual_pct"] for v in hours.values()]
    report = {
        "dataset": args.dataset, "runs": len(data), "fit": "additive, in-sample, every trusted run",
        "by_hour": hours,
        "hour_median_range_pct": [min(hour_medians), max(hour_medians)] if hour_medians else None,
        "families_early_above_late": int((diffs < 0).sum()), "families": len(families),
        "median_late_minus_early_pct": round(float(np.median(diffs)), 2),
        "per_family": families,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"{len(data)} runs; median residual by collection hour {report['hour_median_range_pct']} %; "
          f"in {report['families_early_above_late']} of {len(families)} families the earlier half sat above the "
          f"later one (median difference {report['median_late_minus_early_pct']}%)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
