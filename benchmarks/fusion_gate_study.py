"""How far the fusion edge classifier should defer to the hand-written rules, held out by family.

Trains the edge classifier alone (no kernel model) once per leave-family-out fold, keeps every held-out
edge's probability with the documented and the runtime-pattern rules' verdicts, and compares, per family
(each family weighs the same): the documented rules (the nn-Meter baseline), the runtime-pattern rules, the
classifier at its dev-chosen threshold, and the classifier gated by either rule set at several confidences
(the rules' verdict stands unless the classifier is at least that sure against it). Why a study and not a
dev choice: on the training families' dev runs the network beats the rules on every op pair, so a gate
chosen on dev is "never"; held out, the network is unsure exactly where the rules are right.

One fold takes ~4 min on one core of this machine; folds can run in separate processes and be summarised
after:

    .venv/bin/python benchmarks/fusion_gate_study.py --fold 0 --work /tmp/gate   # … --fold 5
    .venv/bin/python benchmarks/fusion_gate_study.py --summarize --work /tmp/gate \
        --out benchmarks/results/fusion_gate_study.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TMPDIR", "/tmp")
ROOT = Path(__file__).resolve().parent
GATES = (0.8, 0.9, 0.95, 0.98)


def run_fold(args: argparse.Namespace) -> None:
    import torch

    from inferperf.dataset import GraphDataset, load_dataset
    from inferperf.predict.fusion.data import edge_examples
    from inferperf.predict.fusion.edge_classifier import EdgeClassifier
    from inferperf.predict.fusion.evaluation import family_folds
    from inferperf.predict.fusion.rules import rule_partition

    torch.set_num_threads(1)
    data = load_dataset(args.dataset)
    data = GraphDataset([s for s in data if s.kernels][: args.limit], name="profiled")
    fold = family_folds(data.families(), args.folds, args.seed)[args.fold]
    train, dev = data.filter(exclude_families=fold).random_split(args.seed, (0.85, 0.15))
    t0 = time.perf_counter()
    clf = EdgeClassifier(seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    clf.fit(edge_examples(train), edge_examples(dev))
    threshold = clf.choose_threshold(edge_examples(dev))
    rows = []
    test = edge_examples(data.filter(families=fold))
    for ex, (pe, _) in zip(test, clf.predict_proba([(e.graph, e.config, e.device) for e in test]), strict=True):
        opt = str(ex.config.get("opt_level", "all"))
        rows.append({"family": ex.family, "y": ex.edge_fused, "p": pe,
                     "doc": rule_partition(ex.graph, opt).edge_fused.copy(),
                     "rt": rule_partition(ex.graph, opt, runtime_patterns=True).edge_fused.copy()})
    Path(args.work).mkdir(parents=True, exist_ok=True)
    with open(Path(args.work) / f"fold_{args.fold}.pkl", "wb") as fh:
        pickle.dump({"fold": fold, "threshold": threshold, "fit_s": time.perf_counter() - t0, "rows": rows}, fh)
    print(f"fold {args.fold} ({', '.join(fold)}): {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def summarize(args: argparse.Namespace) -> dict[str, Any]:
    folds = []
    for path in sorted(glob.glob(str(Path(args.work) / "fold_*.pkl"))):
        with open(path, "rb") as fh:
            folds.append(pickle.load(fh))
    if not folds:
        raise SystemExit(f"no fold results under {args.work}")

    def decide(kind: str, r: dict[str, Any], threshold: float) -> np.ndarray:
        if kind == "learned":
            return r["p"] >= threshold
        if kind.startswith("rules_"):
            return r["doc" if kind == "rules_documented" else "rt"]
        _, rules, gate = kind.split("_")  # gate_<doc|rt>_<confidence>
        return np.where(r[rules], r["p"] > 1 - float(gate), r["p"] >= float(gate))

    kinds = ["learned", "rules_documented", "rules_runtime",
             *(f"gate_{name}_{g}" for g in GATES for name in ("doc", "rt"))]
    per: dict[str, dict[str, list[int]]] = {k: defaultdict(lambda: [0, 0]) for k in kinds}
    for fold in folds:
        for r in fold["rows"]:
            ok = np.isfinite(r["y"])
            truth = r["y"][ok] > 0.5
            for k in kinds:
                acc = per[k][r["family"]]
                acc[0] += int((decide(k, r, fold["threshold"])[ok] == truth).sum())
                acc[1] += int(ok.sum())
    by_family = {k: {f: a / n for f, (a, n) in sorted(v.items()) if n} for k, v in per.items()}
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
            "folds": [f["fold"] for f in folds], "thresholds": [f["threshold"] for f in folds],
            "mean_over_families": {k: float(np.mean(list(v.values()))) for k, v in by_family.items()},
            "per_family": by_family}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(ROOT.parent / "data" / "reference"))
    ap.add_argument("--limit", type=int, default=1600, help="the first N profiled runs (as fusion_eval --limit)")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fold", type=int, help="train and score this fold")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--work", default="/tmp/fusion_gate_study", help="per-fold results")
    ap.add_argument("--summarize", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "results" / "fusion_gate_study.json"))
    args = ap.parse_args()
    if args.fold is not None:
        run_fold(args)
    if args.summarize:
        report = summarize(args)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(json.dumps(report["mean_over_families"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
