"""Leave-one-family-out point predictions of ``additive-gbm`` variants in minutes, and where the error sits.

Why: ``inferperf evaluate`` fits every fold's model six times (the point model, then five family cross-fits
that size the intervals of unseen families), ~30 min per LOFO run on the 2-core VM. A question about the
correction — a hyper-parameter, a loss — needs only the point predictions, and the per-compute-node cost
model (most of a fit) does not depend on the correction's hyper-parameters, so it is fitted once per fold
and reused by every variant. Everything else is the shipped code: ``AdditiveGBMPredictor._fit`` and
``_predict_log`` on the same folds and dev split as ``inferperf evaluate`` (it reproduces the evaluator's
mean latency MAPE exactly with the defaults).

The report also splits the first variant's error: what is left if each held-out family's median log error
were known (the part that is per-family bias), and MAPE by latency decade.

    .venv/bin/python benchmarks/correction_folds.py --dataset data/reference                    # ~5 min
    .venv/bin/python benchmarks/correction_folds.py --variant 'delta 0.2={"huber_delta": 0.2}' \\
        --variant 'seed 1={"seed": 1}'
    .venv/bin/python benchmarks/correction_folds.py --runs-out runs.jsonl   # + per-run predictions (family, batch)

Writes ``benchmarks/results/correction_folds.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEV_FRACTION = 0.15  # as ``inferperf evaluate``: the share of the other families held out of the fit
DEFAULT_VARIANTS = {"shipped": {}, "huber delta 0.2 (session 11)": {"huber_delta": 0.2}}


def _parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, sep, hp = text.partition("=")
    if not sep:
        raise SystemExit(f"--variant takes NAME=JSON, got {text!r}")
    try:
        params = json.loads(hp)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--variant {name}: not JSON ({exc.msg})") from None
    if not isinstance(params, dict):
        raise SystemExit(f"--variant {name}: expected a JSON object of hyper-parameters")
    return name.strip(), params


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="data/reference")
    ap.add_argument("--threads", type=int, default=1, help="runs at this intra-op thread count (the protocol: 1)")
    ap.add_argument("--seed", type=int, default=0, help="the evaluator's seed: dev split and model seed")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="hyper-parameters of additive-gbm to compare (default: shipped vs huber_delta 0.2)")
    ap.add_argument("--families", help="comma-separated subset of families to hold out (a quick look)")
    ap.add_argument("--out", default=str(RESULTS / "correction_folds.json"))
    ap.add_argument("--runs-out", metavar="PATH",
                    help="also write the first variant's per-run latency predictions (JSON lines) for error analysis")
    args = ap.parse_args()
    variants = dict(_parse_variant(v) for v in args.variant) if args.variant else DEFAULT_VARIANTS

    from inferperf.dataset.core import load_dataset
    from inferperf.predict.additive_gbm import AdditiveGBMPredictor
    from inferperf.predict.base import TARGETS, PredictorError, log_labels
    from inferperf.predict.metrics import mape, relative_errors

    for name, hp in variants.items():  # a bad name fails now, not after the first fold
        try:
            AdditiveGBMPredictor(**hp)
        except (TypeError, PredictorError) as exc:
            raise SystemExit(f"variant {name}: {exc}") from None

    data = load_dataset(args.dataset).filter(
        lambda s: s.trusted and int(s.config.get("intra_op_threads") or 1) == args.threads)
    families = data.families()
    if args.families:
        wanted = [f.strip() for f in args.families.split(",") if f.strip()]
        unknown = sorted(set(wanted) - set(families))
        if unknown:
            raise SystemExit(f"families not in the dataset: {', '.join(unknown)}")
        families = wanted
    node_costs: dict[str, Any] = {}

    class _Cached(AdditiveGBMPredictor):
        fold = ""

        def _fit_node_cost(self, samples: list[Any]) -> Any:
            key = f"{self.fold}|{self.seed}|{self.node_cost_prior}|{self.node_cost_kind_shrinkage}"
            if key not in node_costs:
                node_costs[key] = super()._fit_node_cost(samples)
            return node_costs[key]

        def _fit_other_kernel_cost(self, samples: list[Any]) -> Any:
            key = f"{self.fold}|{self.seed}|other|{self.other_cost_prior}"
            if key not in node_costs:
                node_costs[key] = super()._fit_other_kernel_cost(samples)
            return node_costs[key]

    lat = TARGETS.index("latency_ms")
    results: dict[str, Any] = {}
    kept: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # first variant: per family (pred, true, batch)
    run_rows: list[dict[str, Any]] = []  # first variant: one row per held-out run (--runs-out)
    for v, (name, hp) in enumerate(variants.items()):
        t0 = time.perf_counter()
        per_family: dict[str, dict[str, float]] = {}
        for k, fam in enumerate(families):
            rest, test = data.leave_family_out(fam)
            train, _ = rest.random_split(args.seed, (1 - DEV_FRACTION, DEV_FRACTION))
            model = _Cached(**{"seed": args.seed, **hp})
            model.fold = fam
            model.targets_ = [t for t in TARGETS if any(s.label(t) is not None for s in train)]
            model.devices_ = {str(d["id"]): d for d in train.devices()}
            model._fit(train, None)
            pred = np.exp(model._predict_log([s.graph for s in test], [s.config for s in test],
                                             [s.device for s in test]))
            true = np.exp(log_labels(test))
            per_family[fam] = {t: round(mape(true[:, j], pred[:, j]), 3) for j, t in enumerate(TARGETS)
                               if np.isfinite(true[:, j]).any() and np.isfinite(pred[:, j]).any()}
            if v == 0:
                kept[fam] = (pred[:, lat], true[:, lat],
                             np.array([int(s.config.get("batch_size") or 1) for s in test]))
                run_rows += [{"family": fam, "model": s.graph.name, "run_id": s.run_id,
                              "batch": s.config.get("batch_size"), "nodes": len(s.graph.nodes),
                              "measured_ms": float(y), "predicted_ms": float(p)}
                             for s, p, y in zip(test, pred[:, lat], true[:, lat], strict=True)]
            print(f"\r{name}: {k + 1}/{len(families)} folds", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        means = {t: round(statistics.fmean(f[t] for f in per_family.values() if t in f), 3)
                 for t in TARGETS if any(t in f for f in per_family.values())}
        results[name] = {"hparams": hp, "mean_mape": means, "per_family": per_family,
                         "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name:32s} LOFO latency MAPE {means.get('latency_ms', float('nan')):.3f}%  memory "
              f"{means.get('memory_mb', float('nan')):.3f}%  ({results[name]['seconds']:.0f} s)", flush=True)

    # where the first variant's latency error sits
    debiased = {}
    decades: dict[int, list[float]] = {}
    batches: dict[int, dict[str, list[float]]] = {}  # batch size -> family -> |relative error| per run
    for fam, (p, y, b) in kept.items():
        ok = np.isfinite(p) & np.isfinite(y) & (y > 0)
        ratio = np.log(p[ok] / y[ok])
        debiased[fam] = mape(y[ok], y[ok] * np.exp(ratio - np.median(ratio)))
        for r, t, n in zip(relative_errors(y[ok], p[ok]), y[ok], b[ok], strict=True):
            decades.setdefault(int(np.floor(np.log10(t))), []).append(abs(float(r)))
            batches.setdefault(int(n), {}).setdefault(fam, []).append(float(r))
    first = next(iter(variants))
    report = {
        "dataset": args.dataset, "threads": args.threads, "seed": args.seed, "runs": len(data),
        "families": len(families), "machine": platform.machine(), "protocol": "leave-family-out, point model only",
        "variants": results,
        "error_split": {
            "variant": first,
            "latency_mape": results[first]["mean_mape"].get("latency_ms"),
            "latency_mape_without_family_bias": round(statistics.fmean(debiased.values()), 3),
            "note": "the per-family median log error removed (an oracle): the rest is spread within families",
            "by_latency_decade": {f"1e{d} ms": {"runs": len(v), "mape": round(100 * statistics.fmean(v), 2)}
                                  for d, v in sorted(decades.items())},
            # per batch size: MAPE over runs, and the median signed error (is a batch size priced too high?)
            "by_batch_size": {str(n): {"runs": sum(len(v) for v in fams.values()), "families": len(fams),
                                       "mape": round(100 * statistics.fmean(abs(r) for v in fams.values()
                                                                            for r in v), 2),
                                       "median_error_pct": round(100 * float(np.median(
                                           [r for v in fams.values() for r in v])), 2)}
                              for n, fams in sorted(batches.items())},
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"without each family's median error: {report['error_split']['latency_mape_without_family_bias']:.2f}%")
    for n, row in report["error_split"]["by_batch_size"].items():
        print(f"batch {n}: {row['runs']} runs in {row['families']} families, MAPE {row['mape']:.2f}%, "
              f"median error {row['median_error_pct']:+.2f}%")
    print(f"wrote {args.out}")
    if args.runs_out:
        Path(args.runs_out).write_text("".join(json.dumps(r) + "\n" for r in run_rows))
        print(f"wrote {args.runs_out} ({len(run_rows)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
