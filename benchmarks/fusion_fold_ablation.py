"""One leave-family-out fold of the fusion edge classifier, with and without the GELU nearness as a node input.

The full evaluation (``fusion_eval.py``) deals families into folds anew whenever the family set changes, so
two of its runs differ by fold composition as much as by a feature. This script holds everything else
fixed — the same runs, the same held-out families, the same dev split and seed — and trains only the edge
classifier (≈ 2 min per variant on one core), once with the node features as shipped and once with the
``near_gelu_core`` node column removed (the nearness stays an edge input in both).

    .venv/bin/python benchmarks/fusion_fold_ablation.py --db <reference perf.db>

Writes ``benchmarks/results/fusion_fold_ablation.json``: edge accuracy per held-out family and variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_FOLD = "canonical_lstm,gpt2,mobilebert,mobilenet_v1,poolformer,regnet"


def run_variant(variant: str, train: list[Any], dev: list[Any], test: list[Any], seed: int) -> dict[str, Any]:
    import torch

    import inferperf.predict.fusion.edge_classifier as ec
    from inferperf.predict.fusion.data import STRUCTURAL_FEATURE_NAMES, edge_examples, structural_node_features

    column = STRUCTURAL_FEATURE_NAMES.index("near_gelu_core")
    ec.structural_node_features = (structural_node_features if variant == "shipped"
                                   else lambda g: np.delete(structural_node_features(g), column, axis=1))
    try:
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        dev_ex = edge_examples(dev)
        clf = ec.EdgeClassifier(seed=seed).fit(edge_examples(train), dev_ex)
        threshold = clf.choose_threshold(dev_ex)
        fit_s = time.perf_counter() - t0
        examples = edge_examples(test)
        probs = clf.predict_proba([(e.graph, e.config, e.device) for e in examples])
    finally:
        ec.structural_node_features = structural_node_features
    right: dict[str, list[np.ndarray]] = {}
    for e, (pe, _) in zip(examples, probs, strict=True):
        ok = np.isfinite(e.edge_fused)
        right.setdefault(e.family, []).append(e.edge_fused[ok] == (pe[ok] >= threshold))
    per = {f: {"accuracy": round(float(np.concatenate(v).mean()), 4), "edges": int(sum(len(x) for x in v))}
           for f, v in sorted(right.items())}
    return {"fit_s": round(fit_s, 1), "threshold": threshold, "per_family": per}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="/work/refhome2/perf.db")
    ap.add_argument("--limit", type=int, default=1600, help="use the first N profiled runs (as fusion_eval)")
    ap.add_argument("--hold-out", default=DEFAULT_FOLD, help="comma-separated families to hold out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "fusion_fold_ablation.json"))
    args = ap.parse_args()

    from inferperf.predict.fusion.data import load_perfdb

    held = [f for f in args.hold_out.split(",") if f]
    dataset, _ = load_perfdb(args.db, limit=args.limit)
    train_all = [s for s in dataset if s.family not in held]
    test = [s for s in dataset if s.family in held]
    order = np.random.default_rng(args.seed).permutation(len(train_all))
    n_dev = len(train_all) // 8
    dev = [train_all[i] for i in order[:n_dev]]
    train = [train_all[i] for i in order[n_dev:]]
    report: dict[str, Any] = {"db": args.db, "limit": args.limit, "held_out": held, "seed": args.seed,
                              "train_runs": len(train), "dev_runs": len(dev), "test_runs": len(test), "variants": {}}
    for variant in ("shipped", "no_node_nearness"):
        report["variants"][variant] = run_variant(variant, train, dev, test, args.seed)
        accs = {f: v["accuracy"] for f, v in report["variants"][variant]["per_family"].items()}
        print(f"{variant:18s} {accs}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
