"""Test–retest of the reference latency labels: measure zoo graphs again, compare with what is stored.

The random-split figure of a predictor cannot beat the noise of its labels. This script re-measures the
first ``--per-family`` graphs of every zoo family into a fresh home (same deterministic zoo keys, same
protocol, collector pinned to core 0 and waiting for a quiet machine, as ``collect_reference.sh`` does), then
joins the new runs to the reference database's runs by run key and reports, per family and overall, the
ratio of the new median latency to the stored one — on every pair, and on the pairs trusted both times
(:func:`inferperf.dataset.parquet.trusted_label`).

    .venv/bin/python benchmarks/label_retest.py --reference /work/refhome2/perf.db --per-family 3

Writes ``benchmarks/results/label_retest.json``. Read it as: "a label of the reference dataset is within
±X% of what the same graph measures on another day on this machine" — the floor under any predictor's
error on that data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

def _runs(db_url: str) -> dict[str, dict[str, Any]]:
    """Run key → the run's dataset row (``runs.parquet`` shape, what ``trusted_label`` reads), timed runs only."""
    from inferperf.dataset.export import run_row
    from inferperf.store import PerfDB

    out = {}
    with PerfDB.open(db_url) as db:
        for run in db.iter_runs_for_export():
            row = run_row(run, "", "", run["model_info"].get("family") or "?")
            if row.get("latency_p50_ms"):
                out[run["config_key"]] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default="/work/refhome2/perf.db", help="reference PerfDB (path or URL)")
    ap.add_argument("--home", default="/tmp/inferperf-retest", help="fresh INFERPERF_HOME for the re-measurement")
    ap.add_argument("--per-family", type=int, default=3)
    ap.add_argument("--zoo", default="all")
    ap.add_argument("--skip-collect", action="store_true", help="compare what --home already has")
    ap.add_argument("--out", default=str(RESULTS / "label_retest.json"))
    args = ap.parse_args()

    from inferperf.dataset.parquet import trusted_label

    home = Path(args.home)
    t0 = time.perf_counter()
    if not args.skip_collect:
        home.mkdir(parents=True, exist_ok=True)
        cli = str(Path(sys.executable).with_name("inferperf"))
        cmd = ["taskset", "-c", "0", cli, "collect", "--zoo", args.zoo, "--per-family", str(args.per_family),
               "--batch", "1", "--json"]
        subprocess.run(cmd, check=True, env={**os.environ, "INFERPERF_HOME": str(home)}, stdout=subprocess.DEVNULL)
    new, ref = _runs(str(home / "perf.db")), _runs(args.reference)
    pairs = [(ref[k], new[k]) for k in new if k in ref]
    per_family: dict[str, list[tuple[float, bool]]] = {}
    for old, now in pairs:
        both = trusted_label(old) and trusted_label(now)
        per_family.setdefault(old["family"], []).append((now["latency_p50_ms"] / old["latency_p50_ms"], both))

    def summary(values: list[tuple[float, bool]], trusted_only: bool) -> dict[str, Any]:
        r = np.array([v for v, t in values if t or not trusted_only])
        if not len(r):
            return {"n": 0}
        dev = np.abs(r - 1) * 100
        return {"n": int(len(r)), "median_ratio": round(float(np.median(r)), 3),
                "median_abs_dev_pct": round(float(np.median(dev)), 2), "mean_abs_dev_pct": round(float(dev.mean()), 2),
                "p90_abs_dev_pct": round(float(np.percentile(dev, 90)), 2),
                "within_5pct": round(float((dev <= 5).mean()), 3), "within_10pct": round(float((dev <= 10).mean()), 3)}

    everything = [v for vs in per_family.values() for v in vs]
    report = {
        "reference": args.reference, "home": str(home), "per_family": args.per_family, "machine": platform.machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pairs": len(pairs),
        "overall": {"all": summary(everything, False), "trusted_both": summary(everything, True)},
        "families": {f: {"all": summary(v, False), "trusted_both": summary(v, True)}
                     for f, v in sorted(per_family.items())},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    o = report["overall"]
    print(f"{len(pairs)} graphs measured again: |new/stored − 1| median {o['all'].get('median_abs_dev_pct')}% "
          f"(mean {o['all'].get('mean_abs_dev_pct')}%); trusted both times ({o['trusted_both']['n']}): median "
          f"{o['trusted_both'].get('median_abs_dev_pct')}%, mean {o['trusted_both'].get('mean_abs_dev_pct')}%, "
          f"within ±10% {o['trusted_both'].get('within_10pct')}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
