"""Evaluation protocols for predictors, so numbers compare with the literature.

- ``leave-family-out`` (NNLQP / LILOU, "unseen architectures"): for every family, train on all the other
  families (a dev split of them — by architecture — selects the model and calibrates the intervals) and
  test on the held-out family. Reported per family and as the mean over families.
- ``random`` (DIPPM): 70/15/15 split by architecture group; train / dev (selection + calibration) / test.

Each protocol runs once per seed (the split and the model initialisation change with it); every metric is
reported as mean ± std over seeds. For leave-family-out the headline number of a seed is the mean over
families (each family weighs the same whatever its size), and its std is across seeds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from inferperf.dataset.core import TARGETS, DatasetError, GraphDataset
from inferperf.predict.base import PredictorError, get_predictor, json_clean
from inferperf.predict.metrics import METRIC_NAMES, regression_report

PROTOCOLS: tuple[str, ...] = ("leave-family-out", "random")


def _metrics(
    dataset: GraphDataset, arrays: dict[str, np.ndarray], rows: np.ndarray | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sel = np.arange(len(dataset)) if rows is None else rows
    for j, target in enumerate(TARGETS):
        truth = np.array([dataset[int(i)].label(target) or np.nan for i in sel], dtype=np.float64)
        if not np.isfinite(truth).any():
            continue
        out[target] = regression_report(
            truth, arrays["pred"][sel, j], arrays["lo"][sel, j], arrays["hi"][sel, j]
        )
    return out


def _fit_predict(
    name: str,
    hparams: dict[str, Any],
    seed: int,
    train: GraphDataset,
    dev: GraphDataset | None,
    test: GraphDataset,
) -> tuple[dict[str, np.ndarray], float]:
    predictor = get_predictor(name, **{**hparams, "seed": seed})
    t0 = time.perf_counter()
    predictor.fit(train, dev)
    fit_seconds = time.perf_counter() - t0
    return predictor.predict_dataset(test), fit_seconds


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(a.mean()), "std": float(a.std())}


def evaluate(
    dataset: GraphDataset,
    predictors: Sequence[str],
    protocol: str = "leave-family-out",
    seeds: Sequence[int] = (0, 1, 2),
    hparams: dict[str, dict[str, Any]] | None = None,
    families: Sequence[str] | None = None,
    dev_fraction: float = 0.15,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``protocol`` for each predictor name; returns the report (plain dict, JSON-able after
    :func:`~inferperf.predict.base.json_clean`). ``progress`` is called after every fitted model."""
    if protocol not in PROTOCOLS:
        raise PredictorError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not predictors:
        raise PredictorError("no predictor to evaluate")
    if len(dataset) == 0:
        raise DatasetError("cannot evaluate on an empty dataset")
    hparams = hparams or {}
    # fail on a bad name / hyper-parameter before hours of training; the report records every
    # hyper-parameter each predictor ran with (defaults included): a figure without them cannot be re-run.
    # Not the seed: each fold sets it from ``seeds``, which the report lists
    params = {name: {k: v for k, v in get_predictor(name, **hparams.get(name, {})).get_params().items()
                     if k != "seed"} for name in predictors}
    fams = list(families) if families else dataset.families()
    if protocol == "leave-family-out" and len(dataset.families()) < 2:
        raise DatasetError(
            "leave-family-out needs at least two families; the dataset has "
            f"{', '.join(dataset.families()) or 'none'}"
        )
    unknown = sorted(set(fams) - set(dataset.families()))
    if unknown:
        raise DatasetError(f"families not in the dataset: {', '.join(unknown)}")

    folds: list[dict[str, Any]] = []
    for name in predictors:
        hp = hparams.get(name, {})
        for seed in seeds:
            if protocol == "leave-family-out":
                for fam in fams:
                    rest, test = dataset.leave_family_out(fam)
                    train, dev = rest.random_split(seed, (1 - dev_fraction, dev_fraction))
                    arrays, secs = _fit_predict(name, hp, seed, train, dev, test)
                    folds.append(_fold(name, seed, fam, train, test, arrays, secs, per_family=False))
                    if progress:
                        progress(f"{name} seed {seed} without {fam}")
            else:
                train, dev, test = dataset.random_split(seed, (0.7, 0.15, 0.15))
                arrays, secs = _fit_predict(name, hp, seed, train, dev, test)
                folds.append(_fold(name, seed, "random", train, test, arrays, secs, per_family=True))
                if progress:
                    progress(f"{name} seed {seed}")
    return {
        "protocol": protocol,
        "seeds": list(seeds),
        "families": fams,
        "dataset": dataset.summary(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "predictors": {
            name: {**_aggregate([f for f in folds if f["predictor"] == name], protocol), "params": params[name]}
            for name in predictors
        },
        "folds": folds,
    }


def _fold(
    name: str,
    seed: int,
    fold: str,
    train: GraphDataset,
    test: GraphDataset,
    arrays: dict[str, np.ndarray],
    secs: float,
    per_family: bool,
) -> dict[str, Any]:
    ood = arrays["ood_score"]
    rec: dict[str, Any] = {
        "predictor": name,
        "seed": seed,
        "fold": fold,
        "n_train": len(train),
        "n_test": len(test),
        "fit_seconds": round(secs, 3),
        "ood_rate": float(np.mean(ood > 1.0)) if np.isfinite(ood).any() else math.nan,
        "targets": _metrics(test, arrays),
    }
    if per_family:
        fam = np.array([s.family for s in test])
        rec["per_family"] = {f: _metrics(test, arrays, np.flatnonzero(fam == f)) for f in sorted(set(fam))}
    return rec


def _aggregate(folds: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    seeds = sorted({f["seed"] for f in folds})
    targets: dict[str, Any] = {}
    for target in TARGETS:
        # per-family values per seed
        fam_vals: dict[str, dict[str, list[float]]] = {}
        seed_means: dict[str, list[float]] = {m: [] for m in METRIC_NAMES}
        for seed in seeds:
            seed_folds = [f for f in folds if f["seed"] == seed]
            if protocol == "leave-family-out":
                per_fam = {f["fold"]: f["targets"].get(target) for f in seed_folds}
            else:
                per_fam = {
                    fam: m.get(target) for f in seed_folds for fam, m in f.get("per_family", {}).items()
                }
            per_fam = {k: v for k, v in per_fam.items() if v}
            for fam, metrics in per_fam.items():
                for m in METRIC_NAMES:
                    fam_vals.setdefault(fam, {}).setdefault(m, []).append(metrics[m])
            if protocol == "leave-family-out":
                for m in METRIC_NAMES:
                    vals = [v[m] for v in per_fam.values() if v[m] is not None and np.isfinite(v[m])]
                    seed_means[m].append(float(np.mean(vals)) if vals else math.nan)
            else:
                overall = [f["targets"].get(target) for f in seed_folds if f["targets"].get(target)]
                for m in METRIC_NAMES:
                    seed_means[m].extend(o[m] for o in overall)
        if not fam_vals:
            continue
        targets[target] = {
            "mean": {m: _mean_std(v) for m, v in seed_means.items()},
            "per_family": {
                fam: {m: _mean_std(v) for m, v in ms.items()} for fam, ms in sorted(fam_vals.items())
            },
        }
    return {
        "targets": targets,
        "fit_seconds": _mean_std([f["fit_seconds"] for f in folds]),
        "ood_rate": _mean_std([f["ood_rate"] for f in folds]),
    }


# ---- rendering -----------------------------------------------------------------------------------------
_COLUMNS = (
    ("mape", "MAPE %", 1, 1.0),
    ("rmspe", "RMSPE %", 1, 1.0),
    ("err5", "±5%", 0, 100.0),
    ("err10", "±10%", 0, 100.0),
    ("err15", "±15%", 0, 100.0),
    ("spearman", "Spearman", 3, 1.0),
    ("coverage", "cov90 %", 0, 100.0),
    ("width", "width", 2, 1.0),
)


def _cell(ms: dict[str, float] | None, digits: int, scale: float, spread: bool = True) -> str:
    if not ms or ms.get("mean") is None or not np.isfinite(ms["mean"]):
        return "–"
    mean, std = ms["mean"] * scale, (ms.get("std") or 0.0) * scale
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if spread and np.isfinite(std) else f"{mean:.{digits}f}"


def render_report(report: dict[str, Any], console: Any = None) -> None:
    """Rich tables: one per target (predictors × metrics, mean ± std over seeds), then per-family MAPE."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    preds = report["predictors"]
    spread = len(report["seeds"]) > 1  # "± 0.0" over one seed would suggest a stability never measured
    title_proto = (
        f"{report['protocol']}, {len(report['seeds'])} seed(s), {report['dataset']['n_graphs']} graphs"
    )
    for target in TARGETS:
        if not any(target in p["targets"] for p in preds.values()):
            continue
        table = Table(title=f"{target} — {title_proto}")
        table.add_column("predictor", style="bold", no_wrap=True)
        for _, header, _, _ in _COLUMNS:
            table.add_column(header, justify="right")
        table.add_column("fit s", justify="right")
        for name, p in preds.items():
            t = p["targets"].get(target)
            if t is None:
                continue
            table.add_row(
                name,
                *[_cell(t["mean"].get(k), d, s, spread) for k, _, d, s in _COLUMNS],
                _cell(p["fit_seconds"], 1, 1.0, spread),
            )
        console.print(table)
    fams = sorted(
        {f for p in preds.values() for f in p["targets"].get("latency_ms", {}).get("per_family", {})}
    )
    if fams:
        table = Table(
            title="latency MAPE % per family"
            + (" (held-out family)" if report["protocol"] == "leave-family-out" else " (test split)")
        )
        # families as rows: 36 family columns do not fit any terminal
        table.add_column("family", style="bold", no_wrap=True)
        for name in preds:
            table.add_column(name, justify="right")
        for f in fams:
            table.add_row(f, *[_cell(p["targets"].get("latency_ms", {}).get("per_family", {}).get(f, {}).get("mape"),
                                     1, 1.0, spread) for p in preds.values()])
        table.add_row("OOD rate %", *[_cell(p["ood_rate"], 0, 100.0, spread) for p in preds.values()], style="dim")
        console.print(table)


def report_json(report: dict[str, Any]) -> dict[str, Any]:
    return json_clean(report)
