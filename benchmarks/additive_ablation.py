"""What each runtime-aware term of the ``additive`` model is worth, by leave-one-family-out evaluation.

Each variant switches one term off (or the surcharge shrinkage), everything else as shipped; the same folds,
trusted runs only, family cross-fitting off (it changes intervals, not point predictions). Weight folding is
not switchable here: it is part of how the graphs in the dataset were built.

    .venv/bin/python benchmarks/additive_ablation.py --dataset data/reference     # ~1.5 min per variant

Writes ``benchmarks/results/additive_ablation.json``: per variant the mean latency MAPE over families and the
per-family MAPE.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "no surcharge shrinkage": {"surcharge_penalty": 0.0},
    "no im2col term": {"im2col": False},
    "no recurrent re-read": {"recurrent_reread": False},
    "no NCHWc reorder term": {"reorder": False},
    "no depthwise bytes": {"depthwise_bytes": False},
    "neither (as of session 4)": {"reorder": False, "depthwise_bytes": False},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="data/reference")
    ap.add_argument("--threads", type=int, default=1, help="runs at this intra-op thread count (the protocol: 1)")
    ap.add_argument("--out", default=str(RESULTS / "additive_ablation.json"))
    args = ap.parse_args()

    from inferperf.dataset.core import load_dataset
    from inferperf.predict.evaluate import evaluate

    data = load_dataset(args.dataset).filter(
        lambda s: s.trusted and int(s.config.get("intra_op_threads") or 1) == args.threads)
    report: dict[str, Any] = {
        "dataset": args.dataset, "threads": args.threads, "runs": len(data), "families": len(data.families()),
        "machine": platform.machine(), "protocol": "leave-family-out", "variants": {},
    }
    for name, hp in VARIANTS.items():
        t0 = time.perf_counter()
        res = evaluate(data, ["additive"], "leave-family-out", seeds=[0],
                       hparams={"additive": {**hp, "family_folds": 0}})
        lat = res["predictors"]["additive"]["targets"]["latency_ms"]
        per = {f: round(m["mape"]["mean"], 2) for f, m in lat["per_family"].items()}
        report["variants"][name] = {"hparams": hp, "mape": round(lat["mean"]["mape"]["mean"], 2),
                                    "per_family": per, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name:24s} LOFO latency MAPE {lat['mean']['mape']['mean']:.2f}%", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
