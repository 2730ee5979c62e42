"""The predictor contract: registry, nothing learned before fit, save/load, encoding checks, OOD."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferperf.dataset.core import GraphDataset
from inferperf.errors import InferperfError
from inferperf.ir.features import node_feature_matrix
from inferperf.predict import NotFittedError, PredictorError, get_predictor, list_predictors
from inferperf.predict.base import (
    Predictor,
    best_artifact,
    list_artifacts,
    new_artifact_dir,
    record_evaluation,
)
from inferperf.predict.conformal import ConformalCalibrator, conformal_quantile
from inferperf.predict.features import NodeFeatureCache, static_matrix
from inferperf.predict.ood import OODDetector
from inferperf.predict.synthetic import synthetic_dataset

TINY = {
    "lr-flops": {},
    "additive": {},
    "additive-gbm": {},
    "lgbm": {"n_estimators": 60},
    "mlp-flat": {"epochs": 3, "depth_grid": (1,), "threads": 1, "max_nodes": 32},
    "gnn-sage": {"epochs": 3, "threads": 1, "hidden": 16, "fc": (16, 16)},
    "gnn-gin": {"epochs": 2, "threads": 1, "hidden": 16, "fc": (16, 16)},
}


@pytest.fixture(scope="module")
def ds() -> GraphDataset:
    # 40 architectures: the automatic dev split has enough samples (>= 9) to calibrate 90% intervals
    return synthetic_dataset(per_family=8, batches=(1, 2), seed=5)


def test_registry_lists_every_predictor_without_importing_models() -> None:
    names = {p["name"] for p in list_predictors()}
    assert {"lr-flops", "mlp-flat", "lgbm", "gnn-sage", "gnn-gat", "gnn-gcn", "gnn-gin", "gnn-none"} <= names
    with pytest.raises(PredictorError, match="unknown predictor"):
        get_predictor("gnn-transformer")
    with pytest.raises(PredictorError, match="no hyper-parameter"):
        get_predictor("lgbm", hidden=3)
    assert get_predictor("gnn-gat").name == "gnn-gat"
    assert get_predictor("gnn-sage", hidden=8).get_params()["hidden"] == 8


@pytest.mark.parametrize("name", ["lr-flops", "gnn-sage"])
def test_nothing_learned_before_fit(name: str, ds: GraphDataset, tmp_path) -> None:  # noqa: ANN001
    model = get_predictor(name)
    assert not model.fitted
    assert not [k for k in vars(model) if k.endswith("_")]  # learned state only appears in fit
    with pytest.raises(NotFittedError, match="not trained yet"):
        model.predict([ds[0].graph], [ds[0].config], ds[0].device)
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "x")


def test_fit_rejects_data_without_latency(ds: GraphDataset) -> None:
    stripped = GraphDataset(
        [
            type(s)(
                graph=s.graph, family=s.family, config=s.config, device=s.device, labels={"memory_mb": 1.0}
            )
            for s in ds
        ]
    )
    with pytest.raises(PredictorError, match="latency"):
        get_predictor("lr-flops").fit(stripped)
    with pytest.raises(PredictorError, match="empty"):
        get_predictor("lr-flops").fit(GraphDataset())


@pytest.mark.filterwarnings("ignore:mlp-flat.*truncated")
@pytest.mark.parametrize("name", list(TINY))
def test_save_load_round_trip_gives_identical_predictions(name: str, ds: GraphDataset, tmp_path) -> None:  # noqa: ANN001
    model = get_predictor(name, **TINY[name]).fit(ds)
    graphs, configs = [s.graph for s in ds[:12]], [s.config for s in ds[:12]]
    before = model.predict(graphs, configs, ds[0].device_id)
    path = model.save(tmp_path / name)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["predictor"] == name
    assert meta["training"]["n_samples"] > 0 and meta["encoding"]["version"] >= 1
    assert "numpy" in meta["library_versions"]
    loaded = Predictor.load(path)
    after = loaded.predict(graphs, configs, ds[0].device_id)
    for a, b in zip(before, after, strict=True):
        assert a.latency_ms == pytest.approx(b.latency_ms, rel=1e-5)
        assert a.memory_mb == pytest.approx(b.memory_mb, rel=1e-5)
        assert a.interval_90 is not None
        assert a.interval_90 == pytest.approx(b.interval_90, rel=1e-5)
        assert a.ood_score == pytest.approx(b.ood_score, rel=1e-5)
        assert a.predictor == b.predictor == name


def test_incompatible_artifacts_are_refused(ds: GraphDataset, tmp_path) -> None:  # noqa: ANN001
    path = get_predictor("lr-flops").fit(ds).save(tmp_path / "a")
    meta = json.loads((path / "meta.json").read_text())
    meta["encoding"]["version"] = 999
    meta["encoding"]["op_vocab"] = meta["encoding"]["op_vocab"][:-3]
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InferperfError, match="different feature encoding"):
        Predictor.load(path)

    path2 = get_predictor("lr-flops").fit(ds).save(tmp_path / "b")
    meta = json.loads((path2 / "meta.json").read_text())
    meta["feature_layout"]["device_feature_names"] = ["is_gpu"]
    (path2 / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InferperfError, match="configuration/device feature layout"):
        Predictor.load(path2)
    with pytest.raises(InferperfError, match="not a predictor artifact"):
        Predictor.load(tmp_path)


def test_prediction_fields_and_device_resolution(ds: GraphDataset) -> None:
    model = get_predictor("lgbm", n_estimators=60).fit(ds)
    (p,) = model.predict(ds[0].graph, ds[0].config, ds[0].device_id)
    assert p.device == ds[0].device_id and p.predictor == "lgbm"
    lo, hi = p.interval_90
    assert lo < p.latency_ms < hi
    assert p.mig_profile is None and "not applicable" in p.breakdown["mig"]  # a CPU device has no MIG
    (g,) = model.predict(ds[0].graph, ds[0].config, ds[0].device_id, mig_gpu="A100-40GB")
    assert g.mig_profile == "1g.5gb"  # a few MiB fit the smallest slice
    with pytest.raises(PredictorError, match="not in this predictor's training data"):
        model.predict(ds[0].graph, ds[0].config, "some-other-device")
    d = p.to_dict()
    assert set(d) >= {
        "latency_ms",
        "interval_90",
        "memory_mb",
        "energy_j",
        "mig_profile",
        "predictor",
        "device",
        "ood",
    }


def test_node_feature_cache_matches_the_reference_encoding(ds: GraphDataset) -> None:
    cache = NodeFeatureCache()
    for s in ds[::7]:
        np.testing.assert_array_equal(cache.matrix(s.graph), node_feature_matrix(s.graph))
    assert cache.hits > 0  # repeated (op, shape, cost) nodes were served from the cache


def test_conformal_quantile_and_coverage_on_synthetic_residuals() -> None:
    assert conformal_quantile(np.arange(1, 10), 0.1) == 9.0  # n=9: k = ceil(10 * 0.9) = 9
    assert conformal_quantile(np.arange(1, 9), 0.1) == np.inf  # too few points for 90%
    rng = np.random.default_rng(0)
    pred = np.exp(rng.normal(0, 2, 3000))
    truth = pred * np.exp(rng.normal(0, 0.2, 3000))
    cal = ConformalCalibrator(alpha=0.1).fit(["latency_ms"], truth[:500, None], pred[:500, None], ["f"] * 500)
    lo, hi = cal.intervals("latency_ms", pred[500:], [None] * 2500)
    coverage = np.mean((truth[500:] >= lo) & (truth[500:] <= hi))
    assert 0.86 <= coverage <= 0.95
    uncal = ConformalCalibrator().fit(["latency_ms"], truth[:5, None], pred[:5, None], ["f"] * 5)
    lo, _ = uncal.intervals("latency_ms", pred[:3], [None] * 3)
    assert np.isnan(lo).all()  # no interval rather than a fake one


def test_conformal_keeps_a_wider_quantile_for_a_noisier_family() -> None:
    rng = np.random.default_rng(1)
    n = 200
    pred = np.exp(rng.normal(0, 1, 2 * n))
    noise = np.concatenate([rng.normal(0, 0.05, n), rng.normal(0, 0.5, n)])
    groups = ["calm"] * n + ["noisy"] * n
    cal = ConformalCalibrator(min_group=30).fit(
        ["latency_ms"], (pred * np.exp(noise))[:, None], pred[:, None], groups
    )
    assert cal.quantile("latency_ms", "noisy") > 3 * cal.quantile("latency_ms", "calm")
    glob = cal.quantile("latency_ms", "unseen-family")
    assert cal.quantile("latency_ms", "calm") < glob < cal.quantile("latency_ms", "noisy")


def test_end_to_end_interval_coverage_in_a_loose_band() -> None:
    data = synthetic_dataset(per_family=14, batches=(1, 4), threads=(1, 2), seed=1)
    train, dev, test = data.random_split(seed=0, fractions=(0.55, 0.2, 0.25))
    arrays = get_predictor("lgbm").fit(train, dev).predict_dataset(test)
    y = np.array([s.labels["latency_ms"] for s in test])
    covered = np.mean((y >= arrays["lo"][:, 0]) & (y <= arrays["hi"][:, 0]))
    assert 0.7 <= covered <= 1.0


def test_ood_scores_unseen_families_higher(ds: GraphDataset) -> None:
    data = synthetic_dataset(per_family=10, batches=(1, 2), seed=6)
    seen = data.filter(families=["mlp", "cnn"])
    train, test = seen.random_split(0, (0.7, 0.3))
    unique = {s.graph_key: s for s in train}.values()
    det = OODDetector().fit(static_matrix([s.graph for s in unique]), [s.group_key for s in unique])
    in_dist = det.score(static_matrix([s.graph for s in test]))
    unseen = det.score(static_matrix([s.graph for s in data.filter(family="transformer")]))
    assert np.median(unseen) > 2 * np.median(in_dist)
    assert np.mean(unseen > 1) > 0.8
    assert np.mean(in_dist > 1) < 0.3


def test_artifact_listing_and_best_choice(ds: GraphDataset, tmp_path) -> None:  # noqa: ANN001
    model = get_predictor("lr-flops").fit(ds)
    first = model.save(new_artifact_dir([ds[0].device_id], "lr-flops", home=tmp_path))
    second = model.save(new_artifact_dir([ds[0].device_id], "lr-flops", home=tmp_path))
    assert {a.path for a in list_artifacts(ds[0].device_id, home=tmp_path)} == {first, second}
    assert list_artifacts("other-device", home=tmp_path) == []
    assert best_artifact(ds[0].device_id, home=tmp_path).path == second  # no evaluation: the newest
    report = {
        "protocol": "leave-family-out",
        "seeds": [0],
        "predictors": {
            "lr-flops": {"targets": {"latency_ms": {"mean": {"mape": {"mean": 12.0, "std": 1.0}}}}}
        },
    }
    record_evaluation(first, report)
    assert (first / "evaluation-leave-family-out.json").exists()
    assert best_artifact(ds[0].device_id, home=tmp_path).path == first  # evaluated beats newest


def test_hparams_for_routes_settings_to_predictors() -> None:
    from inferperf.predict.base import hparams_for

    out = hparams_for(["threads=1", "gnn-sage.epochs=7", "ridge=0.5"], ["lr-flops", "lgbm", "gnn-sage"])
    assert out == {
        "lr-flops": {"ridge": 0.5},
        "lgbm": {"threads": 1},
        "gnn-sage": {"threads": 1, "epochs": 7},
    }
    with pytest.raises(PredictorError, match="no predictor"):
        hparams_for(["epochz=3"], ["lr-flops", "gnn-sage"])
    with pytest.raises(PredictorError, match="not one of the predictors"):
        hparams_for(["mlp-flat.epochs=3"], ["gnn-sage"])


def test_gpu_device_gets_a_mig_profile_without_asking(ds: GraphDataset) -> None:
    model = get_predictor("lr-flops").fit(ds)
    gpu = {
        "id": "gpu-x",
        "name": "gpu-nvidia-a100-sxm4-80gb",
        "features": {**ds[0].device["features"], "is_gpu": 1.0},
    }
    (p,) = model.predict(ds[0].graph, ds[0].config, gpu)
    assert p.device == "gpu-x"
    assert p.mig_profile == "1g.10gb"  # the smallest A100-80GB slice
    assert "fits" in p.breakdown["mig"]


def test_kernel_level_predictors_are_listed_without_importing_them():
    import subprocess
    import sys

    code = ("import sys; from inferperf.predict.base import list_predictors; "
            "names = [p['name'] for p in list_predictors()]; "
            "assert {'fusion-kernel', 'rule-kernel'} <= set(names), names; "
            "assert 'inferperf.predict.fusion.predictor' not in sys.modules; "
            "from inferperf.predict.base import predictor_class; "
            "assert predictor_class('rule-kernel').__name__ == 'RuleKernelPredictor'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unseen_family_interval_from_out_of_family_residuals(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(2)
    pred = np.exp(rng.normal(0, 1, 300))
    cal = ConformalCalibrator().fit(["latency_ms"], (pred * np.exp(rng.normal(0, 0.05, 300)))[:, None],
                                    pred[:, None], ["a"] * 150 + ["b"] * 150)
    cal.fit_unseen(["latency_ms"], (pred * np.exp(rng.normal(0, 0.4, 300)))[:, None], pred[:, None], ["a", "b"])
    seen, unseen = cal.quantile("latency_ms", "a"), cal.quantile("latency_ms", "never-trained-on")
    assert unseen > 3 * seen  # extrapolation errors, not interpolation errors
    assert cal.quantile("latency_ms", None) == unseen  # a model of no known family is not a known family
    again = ConformalCalibrator.from_state(json.loads(json.dumps(cal.state())))
    assert again.quantile("latency_ms", "never-trained-on") == pytest.approx(unseen)
    assert again.quantile("latency_ms", "a") == pytest.approx(seen)


@pytest.mark.parametrize("name", ["additive", "additive-gbm", "lgbm"])
def test_cheap_predictors_cross_fit_families_for_intervals(name: str) -> None:
    data = synthetic_dataset(per_family=20, batches=(1,), seed=7)
    train = data.filter(exclude_families={"transformer"})
    model = get_predictor(name, family_folds=2).fit(train)
    assert model.conformal_.known == {"cnn", "mlp", "mobile", "resnet"}
    assert "latency_ms" in model.conformal_.unseen
    test = data.filter(family="transformer")
    graphs, configs, devices = [s.graph for s in test], [s.config for s in test], [s.device for s in test]
    held = model.predict_arrays(graphs, configs, devices, ["transformer"] * len(test))
    as_seen = model.predict_arrays(graphs, configs, devices, ["cnn"] * len(test))
    assert np.all(held["hi"][:, 0] / held["lo"][:, 0] >= as_seen["hi"][:, 0] / as_seen["lo"][:, 0] - 1e-12)
    off = get_predictor(name, family_folds=0).fit(train)
    assert off.conformal_.known is None and not off.conformal_.unseen
