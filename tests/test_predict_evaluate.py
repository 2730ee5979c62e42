"""Evaluation protocols: fold structure, aggregation over seeds and families, rendering."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from inferperf.dataset.core import DatasetError, GraphDataset
from inferperf.predict.base import PredictorError, json_clean
from inferperf.predict.evaluate import evaluate, render_report
from inferperf.predict.synthetic import synthetic_dataset

FAMS = ("mlp", "cnn", "transformer")


@pytest.fixture(scope="module")
def ds() -> GraphDataset:
    return synthetic_dataset(per_family=8, families=FAMS, batches=(1, 2), seed=7)


def test_leave_family_out_structure(ds: GraphDataset) -> None:
    seen: list[str] = []
    # dev_fraction 0.3: enough dev samples (>= 9) to calibrate the 90% intervals on this small dataset
    report = evaluate(
        ds,
        ["lr-flops", "lgbm"],
        "leave-family-out",
        seeds=(0, 1),
        hparams={"lgbm": {"n_estimators": 80}},
        dev_fraction=0.3,
        progress=seen.append,
    )
    assert len(report["folds"]) == 2 * 2 * len(FAMS) == len(seen)
    for fold in report["folds"]:
        # the held-out family is the whole test set and never in training
        assert fold["fold"] in FAMS
        assert fold["n_test"] == len(ds.filter(family=fold["fold"]))
        assert fold["n_train"] < len(ds) - fold["n_test"]  # a dev split was held out of the rest
    lat = report["predictors"]["lgbm"]["targets"]["latency_ms"]
    assert set(lat["per_family"]) == set(FAMS)
    # the headline is the mean over families per seed, then mean ± std over seeds
    per_seed = []
    for seed in (0, 1):
        vals = [
            f["targets"]["latency_ms"]["mape"]
            for f in report["folds"]
            if f["predictor"] == "lgbm" and f["seed"] == seed
        ]
        per_seed.append(sum(vals) / len(vals))
    assert lat["mean"]["mape"]["mean"] == pytest.approx(sum(per_seed) / 2)
    assert lat["mean"]["mape"]["std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2)
    assert 0 <= lat["mean"]["coverage"]["mean"] <= 1
    # the hyper-parameters each predictor ran with, defaults included, so a figure can be re-run
    assert report["predictors"]["lgbm"]["params"]["n_estimators"] == 80
    assert "dev_fraction" in report["predictors"]["lr-flops"]["params"]
    assert "seed" not in report["predictors"]["lr-flops"]["params"]  # per fold, from report["seeds"]
    json.dumps(json_clean(report))  # JSON-able without NaN


def test_random_protocol_reports_per_family_of_the_test_split(ds: GraphDataset) -> None:
    report = evaluate(ds, ["lr-flops"], "random", seeds=(0,))
    (fold,) = report["folds"]
    assert fold["fold"] == "random"
    assert set(fold["per_family"]) <= set(FAMS)
    assert report["predictors"]["lr-flops"]["targets"]["latency_ms"]["mean"]["mape"]["std"] == 0.0
    assert not math.isnan(report["predictors"]["lr-flops"]["targets"]["energy_j"]["mean"]["mape"]["mean"])


def test_render_report_prints_tables(ds: GraphDataset) -> None:
    report = evaluate(ds, ["lr-flops"], "leave-family-out", seeds=(0,))
    console = Console(record=True, width=160)
    render_report(report, console)
    text = console.export_text()
    assert "latency_ms" in text and "MAPE" in text and "transformer" in text


def test_bad_requests_fail_before_training(ds: GraphDataset) -> None:
    with pytest.raises(PredictorError, match="protocol"):
        evaluate(ds, ["lr-flops"], "k-fold")
    with pytest.raises(PredictorError, match="unknown predictor"):
        evaluate(ds, ["lr-flops", "nope"], "random")
    with pytest.raises(DatasetError, match="two families"):
        evaluate(ds.filter(family="mlp"), ["lr-flops"], "leave-family-out")
    with pytest.raises(DatasetError, match="not in the dataset"):
        evaluate(ds, ["lr-flops"], families=["lstm"])
