"""Leave-family-out fusion edge accuracy of the partition alone (``fusion-kernel``'s edge classifier).

``fusion_eval.py`` fits the whole pipeline per fold (≈ 8 min each at 30 architectures per family on one
core); the fusion figures depend only on the edge classifier (≈ 3 min). This script uses the same folds
(``evaluation.family_folds``), the same train/dev split and seed, and the same metrics
(``evaluation.partition_metrics``, pooled and per family as ``fusion_eval.py`` reports them), so a change to
the edge classifier can be measured on all 36 families in half an hour. ``--set`` takes ``fusion-kernel``
hyper-parameters (``edge_rule_nodes=false`` is the classifier before session 6).

    .venv/bin/python benchmarks/fusion_partition_eval.py --db <reference perf.db> --per-family 30 \\
        --out benchmarks/results/fusion_partition_rule_nodes.json

Writes the pooled and per-family edge metrics, the rules' for comparison, and the most common errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TMPDIR", "/tmp")
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="/work/refhome2/perf.db")
    ap.add_argument("--per-family", type=int, default=30)
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--out", default=str(RESULTS / "fusion_partition_eval.json"))
    args = ap.parse_args()

    import torch

    from inferperf.predict import get_predictor
    from inferperf.predict.base import json_clean, parse_hparams
    from inferperf.predict.fusion.data import edge_examples, load_perfdb
    from inferperf.predict.fusion.evaluation import _pool_edge, family_folds, partition_metrics
    from inferperf.predict.fusion.predictor import RuleKernelPredictor

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    dataset, report = load_perfdb(args.db, per_family=args.per_family)
    hp = parse_hparams(args.set)
    folds = family_folds(dataset.families(), args.folds, args.seed)
    learned: dict[str, Any] = {}
    rules: dict[str, Any] = {}
    rule_model = RuleKernelPredictor()
    for fold in folds:
        rest, test = dataset.filter(exclude_families=fold), dataset.filter(families=fold)
        train, dev = rest.random_split(args.seed, (0.85, 0.15))
        model = get_predictor("fusion-kernel", threads=1, seed=args.seed, **hp)
        model._fit_partition(train, dev)  # the edge classifier and its threshold, nothing else
        learned.update(partition_metrics(model, test))
        rule_model._fit_partition(train, dev)
        rules.update(partition_metrics(rule_model, test))
        print(f"[{time.perf_counter() - t0:6.0f}s] without {', '.join(fold)}: "
              + ", ".join(f"{f} {learned[f]['accuracy']:.3f}" for f in fold), file=sys.stderr, flush=True)
    out = {
        "command": " ".join(sys.argv), "db": args.db, "architectures_per_family": args.per_family, "folds": folds,
        "hparams": hp, "runs": len(dataset), "edge_examples": len(edge_examples(dataset)), "data": report,
        "learned_pooled": _pool_edge(list(learned.values())),
        "rules_pooled": _pool_edge(list(rules.values())),
        "learned_mean_accuracy": sum(r["accuracy"] for r in learned.values()) / len(learned),
        "rules_mean_accuracy": sum(r["accuracy"] for r in rules.values()) / len(rules),
        "per_family": {f: {"learned": learned[f], "rules": rules.get(f)} for f in sorted(learned)},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(json_clean(out), indent=1, default=str))
    print(json.dumps({k: out[k] for k in ("learned_pooled", "rules_pooled", "learned_mean_accuracy",
                                          "rules_mean_accuracy")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
