"""Evaluation of the kernel-level predictors, with the metrics LILOU reports.

- **fusion**: precision / recall / accuracy of fusible-edge predictions against the measured labels, per
  family (edges whose label is unknown are skipped); plus the accuracy of the "runs in a kernel" flag;
- **kernel type**: top-1 / top-5 accuracy of the predicted type of each *measured* kernel (the type head
  is judged on the true partition, as in the paper; rules give a single type, so their top-5 = top-1);
- **kernel latency**: MAPE of each measured kernel's predicted duration, and of the per-run kernel sum;
- **end-to-end**: the usual latency metrics (:func:`~inferperf.predict.metrics.regression_report`) per
  family, next to any other registered predictor (the graph-level GNN) fitted on the same folds;
- **held-out shares**: train without every run at one compute share (threads / cores on CPU, MPS
  percentage on GPU) and predict that share — the resource-aware claim.

Leave-family-out: every family is predicted by a model that never saw it. With ``n_folds`` the families are
dealt into that many groups and each group is held out at once (the paper's 5-fold protocol over models);
with ``n_folds=None`` each family is its own fold.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from inferperf.dataset.core import DatasetError, GraphDataset
from inferperf.predict.base import get_predictor, json_clean
from inferperf.predict.fusion.data import compute_share, graph_labels
from inferperf.predict.metrics import mape, regression_report


# ================================================================================================ metrics
def edge_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Precision, recall, accuracy, F1 of boolean edge predictions (NaN truth skipped)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=bool)
    ok = np.isfinite(t)
    t, p = t[ok] > 0.5, p[ok]
    tp, fp = int((t & p).sum()), int((~t & p).sum())
    fn, tn = int((t & ~p).sum()), int((~t & ~p).sum())
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else math.nan
    return {"precision": precision, "recall": recall, "accuracy": (tp + tn) / n if n else math.nan, "f1": f1,
            "n": n, "positives": tp + fn, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _pool_edge(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Edge metrics over the union of several count tables."""
    tp, fp, fn, tn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn", "tn"))
    t = np.array([1.0] * (tp + fn) + [0.0] * (fp + tn))
    p = np.array([True] * tp + [False] * fn + [True] * fp + [False] * tn)
    return edge_metrics(t, p)


def topk_accuracy(truth: Sequence[str], ranked: Sequence[Sequence[str]], k: int) -> float:
    if not truth:
        return math.nan
    return float(np.mean([t in list(r)[:k] for t, r in zip(truth, ranked, strict=True)]))


def partition_metrics(predictor: Any, dataset: GraphDataset) -> dict[str, dict[str, Any]]:
    """Per family: edge precision/recall/accuracy and executed-node accuracy of ``predictor.partition``."""
    items, labels, fams = [], [], []
    for s in dataset:
        lab = graph_labels(s)
        if lab is None:
            continue
        items.append((s.graph, s.config, s.device))
        labels.append(lab)
        fams.append(s.family)
    out: dict[str, dict[str, Any]] = {}
    if not items:
        return out
    parts = predictor.partition(items)
    by_fam: dict[str, list[tuple[Any, Any]]] = {}
    for fam, lab, part in zip(fams, labels, parts, strict=True):
        by_fam.setdefault(fam, []).append((lab, part))
    graphs: dict[str, list[Any]] = {}
    for (g, _, _), fam in zip(items, fams, strict=True):
        graphs.setdefault(fam, []).append(g)
    for fam, rows in by_fam.items():
        y = np.concatenate([lab.edge_fused for lab, _ in rows])
        p = np.concatenate([np.asarray(part[0], dtype=bool) for _, part in rows])
        ex_t = np.concatenate([lab.executed for lab, _ in rows])
        ex_p = np.concatenate([np.asarray(part[1], dtype=bool) for _, part in rows])
        errors: dict[str, int] = {}
        for g, (lab, part) in zip(graphs[fam], rows, strict=True):
            for j, e in enumerate(g.edges):
                t = lab.edge_fused[j]
                if np.isfinite(t) and bool(t > 0.5) != bool(part[0][j]):
                    key = f"{'missed' if t > 0.5 else 'spurious'} {g.nodes[e.src].op_type}->{g.nodes[e.dst].op_type}"
                    errors[key] = errors.get(key, 0) + 1
        out[fam] = {**edge_metrics(y, p), "executed_accuracy": float(np.mean(ex_t == ex_p)) if ex_t.size else math.nan,
                    "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:8])}
    return out


def kernel_metrics(predictor: Any, dataset: GraphDataset) -> dict[str, dict[str, Any]]:
    """Per family, on the measured kernels: type top-1/top-5 (as the predictor ranks types and, for a learned
    classifier, by the classifier alone: ``classifier_top1/5``), kernel latency MAPE, kernel-sum MAPE."""
    from inferperf.predict.fusion.data import device_resource_vector
    from inferperf.predict.fusion.rules import kernel_features, rule_kernel_type

    rows: dict[str, dict[str, list[Any]]] = {}
    flat, meta = [], []
    for s in dataset:
        lab = graph_labels(s)
        if lab is None:
            continue
        for k in lab.kernels:
            flat.append((s.graph, k.nodes, s.config, s.device))
            meta.append((s.family, s.run_id if s.run_id is not None else id(s), k.kernel_type, k.duration_ms))
    if not flat:
        return {}
    if hasattr(predictor, "kernel_model_"):
        log_ms, probs = predictor.kernel_model_.predict(flat)
        ranked = [[t for t, _ in top] for top in predictor.rank_types(flat, probs, 5)]
        classifier = [[t for t, _ in top] for top in predictor.kernel_model_.top_types(probs, 5)]
    else:
        types = [rule_kernel_type(g, nodes) for g, nodes, _, _ in flat]
        x = np.array([np.concatenate([kernel_features(g, nodes), device_resource_vector(c, d)])
                      for g, nodes, c, d in flat])
        log_ms = predictor.regressors_.predict(x, types)
        ranked = [[t] for t in types]
        classifier = None
    sums: dict[Any, list[float]] = {}
    for i, ((fam, run, ktype, dur), lm, rk) in enumerate(zip(meta, log_ms, ranked, strict=True)):
        r = rows.setdefault(fam, {"truth": [], "ranked": [], "classifier": [], "dur": [], "pred": []})
        r["truth"].append(ktype)
        r["ranked"].append(rk)
        if classifier is not None:
            r["classifier"].append(classifier[i])
        r["dur"].append(dur)
        r["pred"].append(math.exp(lm))
        acc = sums.setdefault((fam, run), [0.0, 0.0])
        acc[0] += dur
        acc[1] += math.exp(lm)
    out = {}
    for fam, r in rows.items():
        ks = [v for (f, _), v in sums.items() if f == fam]
        out[fam] = {
            "type_top1": topk_accuracy(r["truth"], r["ranked"], 1),
            "type_top5": topk_accuracy(r["truth"], r["ranked"], 5),
            **({"classifier_top1": topk_accuracy(r["truth"], r["classifier"], 1),
                "classifier_top5": topk_accuracy(r["truth"], r["classifier"], 5)} if r["classifier"] else {}),
            "kernel_mape": mape(r["dur"], r["pred"]),
            "kernel_sum_mape": mape([a for a, _ in ks], [b for _, b in ks]),
            "n_kernels": len(r["truth"]),
        }
    return out


def pipeline_kernel_sum(predictor: Any, dataset: GraphDataset) -> dict[str, Any]:
    """Per family: the whole pipeline (predicted partition → predicted kernels) summed, against the run's
    measured kernel sum (median durations). On a shared machine this is the cleanest end-to-end check: the
    per-kernel medians drop the time slices other processes took, which the run latency keeps."""
    items, truth, fams = [], [], []
    for s in dataset:
        lab = graph_labels(s)
        if lab is None or lab.kernel_sum_ms <= 0:
            continue
        items.append((s.graph, s.config, s.device))
        truth.append(lab.kernel_sum_ms)
        fams.append(s.family)
    if not items:
        return {}
    pred = np.array([f.raw_kernel_sum_ms for f in predictor.explain_many(items)])
    truth_a, fams_a = np.array(truth), np.array(fams)
    return {fam: regression_report(truth_a[fams_a == fam], pred[fams_a == fam]) for fam in sorted(set(fams))}


# ================================================================================================ protocols
def family_folds(families: Sequence[str], n_folds: int | None, seed: int = 0) -> list[list[str]]:
    """Families dealt into ``n_folds`` groups (shuffled with ``seed``), or one fold per family."""
    fams = sorted(families)
    if n_folds is None or n_folds >= len(fams):
        return [[f] for f in fams]
    if n_folds < 2:
        raise DatasetError("leave-family-out needs at least 2 folds")
    random.Random(seed).shuffle(fams)
    return [sorted(fams[i::n_folds]) for i in range(n_folds)]


def _family_reports(dataset: GraphDataset, pred: np.ndarray) -> dict[str, Any]:
    fams = np.array([s.family for s in dataset])
    truth = np.array([s.label("latency_ms") or np.nan for s in dataset], dtype=np.float64)
    # the e2e figure on runs whose label is trustworthy (valid, or unstable with a precise median): the
    # key stays "valid" so earlier reports compare
    valid = np.array([s.trusted for s in dataset])
    shares = np.array([round(compute_share(s.config, s.device), 4) for s in dataset])
    out = {}
    for fam in sorted(set(fams.tolist())):
        rows = fams == fam
        out[fam] = {"all": regression_report(truth[rows], pred[rows]),
                    "valid": regression_report(truth[rows & valid], pred[rows & valid])}
        fam_shares = sorted(set(shares[rows].tolist()))
        if len(fam_shares) > 1:  # a family measured at several compute shares: how each share fares
            out[fam]["by_share"] = {str(sh): regression_report(truth[rows & (shares == sh)],
                                                               pred[rows & (shares == sh)])
                                    for sh in fam_shares}
    return out


def leave_family_out(
    dataset: GraphDataset,
    predictors: Sequence[str] = ("fusion-kernel", "rule-kernel"),
    *,
    n_folds: int | None = None,
    seed: int = 0,
    dev_fraction: float = 0.15,
    hparams: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit every predictor once per fold of held-out families; collect all metrics per family."""
    import inferperf.predict.fusion  # noqa: F401  (registers the kernel-level predictors)

    if len(dataset.families()) < 2:
        raise DatasetError(f"leave-family-out needs at least two families; have {dataset.families()}")
    hparams = hparams or {}
    folds = family_folds(dataset.families(), n_folds, seed)
    per: dict[str, dict[str, Any]] = {name: {"e2e": {}, "fusion": {}, "kernels": {}, "fit_seconds": []}
                                      for name in predictors}
    for fold in folds:
        rest = dataset.filter(exclude_families=fold)
        test = dataset.filter(families=fold)
        train, dev = rest.random_split(seed, (1 - dev_fraction, dev_fraction))
        for name in predictors:
            predictor = get_predictor(name, **{**hparams.get(name, {}), "seed": seed})
            t0 = time.perf_counter()
            predictor.fit(train, dev)
            per[name]["fit_seconds"].append(time.perf_counter() - t0)
            arrays = predictor.predict_dataset(test)
            per[name]["e2e"].update(_family_reports(test, arrays["pred"][:, 0]))
            if hasattr(predictor, "partition"):
                per[name]["fusion"].update(partition_metrics(predictor, test))
                per[name]["kernels"].update(kernel_metrics(predictor, test))
                per[name].setdefault("pipeline_kernel_sum", {}).update(pipeline_kernel_sum(predictor, test))
            if progress:
                progress(f"{name} without {', '.join(fold)}")
    summary = {name: summarize(per[name]) for name in predictors}
    return json_clean({
        "protocol": "leave-family-out", "folds": folds, "seed": seed,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": dataset.summary(), "summary": summary, "per_family": per,
    })


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def summarize(per: dict[str, Any]) -> dict[str, Any]:
    """Means over families (each family weighs the same) plus pooled fusion counts."""
    out: dict[str, Any] = {"fit_seconds_mean": _mean(per["fit_seconds"])}
    for subset in ("all", "valid"):
        reps = [r[subset] for r in per["e2e"].values() if r[subset]["n"]]
        out[f"e2e_{subset}"] = {m: _mean([r[m] for r in reps]) for m in ("mape", "rmspe", "err10", "err5", "err15",
                                                                          "spearman")}
        out[f"e2e_{subset}"]["families"] = len(reps)
        out[f"e2e_{subset}"]["runs"] = int(sum(r["n"] for r in reps))
    by_share: dict[str, list[dict[str, Any]]] = {}
    for r in per["e2e"].values():
        for share, rep in (r.get("by_share") or {}).items():
            if rep["n"]:
                by_share.setdefault(share, []).append(rep)
    if by_share:  # means over the families measured at several shares, one entry per share
        out["e2e_by_share"] = {share: {**{m: _mean([r[m] for r in reps]) for m in ("mape", "err10", "spearman")},
                                       "families": len(reps), "runs": int(sum(r["n"] for r in reps))}
                               for share, reps in sorted(by_share.items())}
    if per["fusion"]:
        fus = list(per["fusion"].values())
        out["fusion_mean"] = {m: _mean([r[m] for r in fus]) for m in ("precision", "recall", "accuracy",
                                                                       "executed_accuracy")}
        out["fusion_pooled"] = _pool_edge(fus)
        errors: dict[str, int] = {}
        for r in fus:
            for k, v in (r.get("errors") or {}).items():
                errors[k] = errors.get(k, 0) + v
        out["fusion_top_errors"] = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:12])
    if per.get("pipeline_kernel_sum"):
        reps = list(per["pipeline_kernel_sum"].values())
        out["pipeline_kernel_sum"] = {m: _mean([r[m] for r in reps]) for m in ("mape", "rmspe", "err10", "spearman")}
    if per["kernels"]:
        ker = list(per["kernels"].values())
        out["kernels_mean"] = {m: _mean([r[m] for r in ker]) for m in ("type_top1", "type_top5", "kernel_mape",
                                                                        "kernel_sum_mape")}
        if all("classifier_top1" in r for r in ker):
            out["kernels_mean"].update({m: _mean([r[m] for r in ker]) for m in ("classifier_top1",
                                                                                "classifier_top5")})
    return out


def share_holdout(
    dataset: GraphDataset,
    predictor: str = "fusion-kernel",
    *,
    seed: int = 0,
    hparams: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """For each compute share present: train on the runs at every other share, test on this one.

    Needs runs at ≥ 2 shares (several thread counts on CPU, several MPS percentages on GPU); otherwise the
    report says so (``status: "skipped"``) rather than inventing a number.
    """
    import inferperf.predict.fusion  # noqa: F401

    shares = np.array([round(compute_share(s.config, s.device), 4) for s in dataset])
    distinct = sorted(set(shares.tolist()))
    if len(distinct) < 2:
        return {"status": "skipped", "reason": f"runs at {len(distinct)} compute share(s) only: {distinct}; "
                "collect at several thread counts (or MPS percentages) to evaluate held-out shares",
                "shares": distinct}
    out: dict[str, Any] = {"status": "ok", "predictor": predictor, "shares": {},
                           "extrapolation": len(distinct) < 3}
    if len(distinct) < 3:
        out["note"] = ("two shares: holding one out leaves a single share in training, so nothing in training "
                       "says how latency scales with the share; the kernel-level predictors predict the held-out "
                       "share at the trained one and scale by the default exponent (0.5)")
    # the same model measured at the other shares: what ignoring the share, or assuming perfect scaling,
    # would give — reference points for the model, which never sees the held-out share's labels. Paired by
    # architecture and batch (``group_key``), not by file: two exports of one zoo architecture a day apart
    # can differ in their bytes, and so in their hash
    def structure(sample: Any) -> tuple[str, Any]:
        return sample.group_key, sample.config.get("batch_size")

    measured: dict[tuple[tuple[str, Any], float], float] = {}
    for s, sh in zip(dataset, shares, strict=True):
        lat = s.label("latency_ms")
        if lat:
            measured.setdefault((structure(s), float(sh)), lat)
    for share in distinct:
        test = GraphDataset([s for s, sh in zip(dataset, shares, strict=True) if sh == share])
        rest = GraphDataset([s for s, sh in zip(dataset, shares, strict=True) if sh != share])
        model = get_predictor(predictor, **{**(hparams or {}), "seed": seed})
        model.fit(rest)
        pred = model.predict_dataset(test)["pred"][:, 0]
        truth = np.array([s.label("latency_ms") or np.nan for s in test])
        entry = {**regression_report(truth, pred), "n_train": len(rest), "n_test": len(test),
                 "families": len(test.families())}
        trained = getattr(model, "train_shares_", None)
        if trained is not None:  # a kernel-level predictor: what its nearest-share fallback is worth
            entry["share_exponent"] = model.share_exponent_
            model.train_shares_ = {k: sorted({*v, share}) for k, v in trained.items()}  # "seen": no fallback
            try:
                entry["without_share_fallback"] = regression_report(truth, model.predict_dataset(test)["pred"][:, 0])
            finally:
                model.train_shares_ = trained
        others = [o for o in distinct if o != share]
        blind, scaled, pred_paired, truth_paired = [], [], [], []
        for s, t, p in zip(test, truth, pred, strict=True):
            near = min(others, key=lambda o: (abs(o - share), o))
            ref = measured.get((structure(s), near))
            if ref is not None:
                blind.append(ref)
                scaled.append(ref * near / share)
                pred_paired.append(p)
                truth_paired.append(t)
        if truth_paired:
            entry["paired_runs"] = len(truth_paired)
            entry["model_on_paired"] = mape(truth_paired, pred_paired)
            entry["share_blind_on_paired"] = mape(truth_paired, blind)
            entry["linear_scaling_on_paired"] = mape(truth_paired, scaled)
        out["shares"][str(share)] = entry
        if progress:
            progress(f"{predictor} without share {share}")
    out["mean_mape"] = _mean([r["mape"] for r in out["shares"].values()])
    return json_clean(out)
