"""Kernel-level prediction on the reference data: fusion, kernel types, end-to-end latency, co-location.

Reads the reference PerfDB (default ``/work/refhome/perf.db``, opened read-only) and reports, on
leave-family-out folds (families dealt into ``--folds`` groups; every family is predicted by models that
never saw it):

- fusion edge precision / recall / accuracy per family, learned (``fusion-kernel``) vs rules (``rule-kernel``);
- kernel type top-1 / top-5 and per-kernel latency error on the measured kernels;
- end-to-end latency MAPE, RMSPE, ErrBound(0.1), per family and averaged over families, for the
  kernel-level predictors and the graph-level GNN (``gnn-sage``) fitted on the same folds — on all runs,
  and on the runs the measurement protocol marked valid (the rest hit the CV limit on the shared machine);
- end-to-end figures per compute share for the families measured at several thread counts (the family is
  unseen, the share is not), and held-out compute shares: every run at one share left out of training
  (needs runs at several thread counts; reported as skipped otherwise);
- co-location slowdown MAPE on unseen pairs/trios (``--colocation DIR`` to evaluate a dataset,
  ``--collect-colocation`` to measure a small one first from zoo graphs).

Writes ``benchmarks/results/fusion_eval.json`` with the figures, the targets and whether each is met.

    .venv/bin/python benchmarks/fusion_eval.py --folds 6
    .venv/bin/python benchmarks/fusion_eval.py --collect-colocation --pairs 30 --trios 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TMPDIR", "/tmp")

ROOT = Path(__file__).resolve().parent
TARGETS = {
    "fusion_accuracy_lofo": (">=", 0.98),
    "e2e_mape_lofo": ("<=", 7.0),
    "e2e_err10_lofo": (">=", 0.85),
    "kernel_type_top1": (">=", 0.90),
    "kernel_type_top5": (">=", 0.98),
    "colocation_mape_unseen": ("<=", 15.0),
}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _met(name: str, value: float | None) -> dict[str, Any]:
    op, goal = TARGETS[name]
    ok = None if value is None or not math.isfinite(value) else (value >= goal if op == ">=" else value <= goal)
    return {"value": value, "target": f"{op} {goal}", "met": ok}


def _fusion_comparison(report: dict[str, Any]) -> dict[str, Any]:
    """Learned vs rules per family, and on the families the rules do not cover (rule recall < 0.8)."""
    learned = report["per_family"].get("fusion-kernel", {}).get("fusion", {})
    rules = report["per_family"].get("rule-kernel", {}).get("fusion", {})
    fams = sorted(set(learned) & set(rules))
    rows = {f: {"learned": learned[f]["accuracy"], "rules": rules[f]["accuracy"],
                "rules_recall": rules[f]["recall"]} for f in fams}
    uncovered = [f for f in fams if rules[f]["recall"] is not None and rules[f]["recall"] < 0.8]

    def mean(key: str, subset: list[str]) -> float | None:
        vals = [rows[f][key] for f in subset if rows[f][key] is not None]
        return sum(vals) / len(vals) if vals else None

    return {
        "per_family": rows,
        "families_without_rules": uncovered,
        "learned_mean_on_those": mean("learned", uncovered),
        "rules_mean_on_those": mean("rules", uncovered),
        "learned_beats_rules_on": [f for f in fams if (rows[f]["learned"] or 0) > (rows[f]["rules"] or 0)],
    }


def _load(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The profiled runs to evaluate on: from ``--dataset`` (an export) or ``--db`` (a PerfDB)."""
    from inferperf.predict.fusion.data import load_perfdb

    if not args.dataset:
        return load_perfdb(args.db, home=args.home, limit=args.limit, per_family=args.per_family)
    import re

    from inferperf.dataset import GraphDataset, load_dataset

    data = load_dataset(args.dataset)
    profiled = [s for s in data if s.kernels]
    kept, seen = [], {}
    for s in profiled:  # the first N architectures of each family (all their batches and thread counts)
        arch = re.sub(r"-b\d+$", "", s.graph.name or s.graph_key)
        archs = seen.setdefault(s.family, [])
        if arch not in archs:
            if args.per_family is not None and len(archs) >= args.per_family:
                continue
            archs.append(arch)
        kept.append(s)
    if args.limit is not None:
        kept = kept[: args.limit]
    report = {"source": str(args.dataset), "runs_total": len(data), "runs_profiled": len(profiled),
              "runs_kept": len(kept), "families": sorted({s.family for s in kept})}
    return GraphDataset(kept, name="reference-export"), report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="/work/refhome/perf.db")
    ap.add_argument("--dataset", default=None,
                    help="read a dataset export directory (e.g. data/reference) instead of the PerfDB: runnable on "
                    "a fresh clone; kernel durations are the export's medians, not the per-run lists")
    ap.add_argument("--home", default=None, help="model store root (default: the database's folder)")
    ap.add_argument("--folds", type=int, default=6, help="family groups (0 = one fold per family)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--predictors", default="fusion-kernel,rule-kernel,gnn-sage")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many runs")
    ap.add_argument("--per-family", type=int, default=None,
                    help="use each family's first N graphs (with all their runs: every thread count)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training")
    ap.add_argument("--colocation", default=None, help="evaluate this co-location dataset directory")
    ap.add_argument("--collect-colocation", action="store_true", help="measure a small pair/trio dataset first")
    ap.add_argument("--colocation-models", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--trios", type=int, default=10)
    ap.add_argument("--colocation-budget-s", type=float, default=900.0)
    ap.add_argument("--min-macs", type=int, default=20_000_000, help="smallest zoo graph to co-locate")
    ap.add_argument("--max-macs", type=int, default=1_500_000_000)
    ap.add_argument("--rounds", type=int, default=3, help="alone/together rounds per group")
    ap.add_argument("--window-s", type=float, default=0.6, help="seconds per measurement window")
    ap.add_argument("--skip-lofo", action="store_true")
    ap.add_argument("--skip-share-holdout", action="store_true", help="leave-family-out only (no share holdout)")
    ap.add_argument("--only-share-holdout", action="store_true",
                    help="the held-out compute shares only (the rest of --out, if it exists, is kept)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="hyper-parameter, as `inferperf evaluate --set` (fusion-kernel.kernel_prior=false)")
    ap.add_argument("--out", default=str(ROOT / "results" / "fusion_eval.json"))
    args = ap.parse_args()

    from inferperf.predict.base import hparams_for, json_clean
    from inferperf.predict.fusion.evaluation import leave_family_out, share_holdout

    previous: dict[str, Any] = {}
    out_path = Path(args.out)
    if out_path.is_file():
        previous = json.loads(out_path.read_text())
    result: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "command": " ".join(sys.argv), "db": args.dataset or args.db}
    t0 = time.perf_counter()
    predictors = [p for p in args.predictors.split(",") if p]
    hparams: dict[str, dict[str, Any]] = {p: {"threads": args.threads} for p in predictors if p != "gnn-sage"}
    if "gnn-sage" in predictors and args.threads:
        hparams["gnn-sage"] = {"threads": args.threads}
    for name, extra in hparams_for(args.set, predictors).items():
        hparams.setdefault(name, {}).update(extra)

    if args.only_share_holdout:
        dataset, load_report = _load(args)
        result.update({k: v for k, v in previous.items() if k not in ("created", "command", "db", "wall_s")})
        _log(f"held-out compute shares on {len(dataset)} profiled runs")
        result["held_out_shares"] = share_holdout(dataset, "fusion-kernel", seed=args.seed,
                                                  hparams=hparams.get("fusion-kernel"))
        result["held_out_shares"]["data"] = {**load_report, "n_runs": len(dataset)}
    elif not args.skip_lofo:
        dataset, load_report = _load(args)
        result["data"] = {**load_report, "n_runs": len(dataset), "n_graphs": len(dataset.graph_keys()),
                          "n_families": len(dataset.families()),
                          "n_valid_runs": sum(1 for s in dataset if s.config.get("valid"))}
        _log(f"{len(dataset)} profiled runs, {len(dataset.graph_keys())} graphs, {len(dataset.families())} families")
        lofo = leave_family_out(dataset, predictors, n_folds=args.folds or None, seed=args.seed, hparams=hparams,
                                progress=lambda m: _log(m))
        result["leave_family_out"] = lofo
        summ = lofo["summary"]
        fk = summ.get("fusion-kernel", {})
        result["fusion_comparison"] = _fusion_comparison(lofo)
        headline = {
            "fusion_accuracy_lofo": _met("fusion_accuracy_lofo", (fk.get("fusion_pooled") or {}).get("accuracy")),
            "e2e_mape_lofo": _met("e2e_mape_lofo", (fk.get("e2e_all") or {}).get("mape")),
            "e2e_err10_lofo": _met("e2e_err10_lofo", (fk.get("e2e_all") or {}).get("err10")),
            "kernel_type_top1": _met("kernel_type_top1", (fk.get("kernels_mean") or {}).get("type_top1")),
            "kernel_type_top5": _met("kernel_type_top5", (fk.get("kernels_mean") or {}).get("type_top5")),
        }
        result["headline"] = headline
        result["comparison_e2e_mape"] = {
            name: {"all_runs": (s.get("e2e_all") or {}).get("mape"),
                   "valid_runs": (s.get("e2e_valid") or {}).get("mape"),
                   "err10_all": (s.get("e2e_all") or {}).get("err10")}
            for name, s in summ.items()
        }
        if args.skip_share_holdout:
            result["held_out_shares"] = previous.get("held_out_shares")
        else:
            _log("held-out compute shares")
            result["held_out_shares"] = share_holdout(dataset, "fusion-kernel", seed=args.seed,
                                                      hparams=hparams.get("fusion-kernel"))
    else:
        for key in ("data", "leave_family_out", "fusion_comparison", "headline", "comparison_e2e_mape",
                    "held_out_shares"):
            if key in previous:
                result[key] = previous[key]

    colo_dir = args.colocation
    if args.collect_colocation:
        from inferperf.colocate import collect, zoo_models
        from inferperf.predict.fusion.data import this_device

        colo_dir = colo_dir or str(ROOT / "results" / "colocation")
        work = Path("/tmp/inferperf-colocation-models")
        _log("exporting zoo models for co-location")
        models = zoo_models(args.colocation_models, work, seed=args.seed, min_macs=args.min_macs,
                            max_macs=args.max_macs, progress=_log)
        collect(models, colo_dir, pairs=args.pairs, trios=args.trios, seed=args.seed, duration_s=args.window_s,
                rounds=args.rounds, time_budget_s=args.colocation_budget_s, device_id=this_device()["id"],
                progress=_log)
    if colo_dir and Path(colo_dir, "records.jsonl").is_file():
        from inferperf.colocate import ColocationDataset, evaluate_unseen_groups

        ds = ColocationDataset(colo_dir)
        colo: dict[str, Any] = {"dataset": colo_dir, "records": len(ds.records())}
        for target in ("slowdown", "slowdown_mean"):
            try:
                colo[target] = evaluate_unseen_groups(ds.examples(target), seeds=(0, 1, 2))
            except Exception as exc:  # too few groups: say so in the report
                colo[target] = {"error": str(exc)}
        result["colocation"] = colo
        mlp = (colo.get("slowdown") or {}).get("models", {}).get("mlp", {}).get("mape", {}).get("mean")
        result.setdefault("headline", {})["colocation_mape_unseen"] = _met("colocation_mape_unseen", mlp)
    elif "colocation" in previous:
        result["colocation"] = previous["colocation"]
        result.setdefault("headline", {})["colocation_mape_unseen"] = previous.get("headline", {}).get(
            "colocation_mape_unseen")
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(json_clean(result), indent=1, default=str))
    _log(f"wrote {out_path}")
    print(json.dumps(json_clean({k: result.get(k) for k in ("headline", "comparison_e2e_mape")}), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
