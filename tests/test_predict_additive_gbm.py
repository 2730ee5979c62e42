"""``additive-gbm``: the additive model's prices, times a learned correction factor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferperf.predict import PredictorError, get_predictor
from inferperf.predict.additive_gbm import CORRECTION_FEATURE_NAMES
from inferperf.predict.base import Predictor
from inferperf.predict.metrics import mape
from inferperf.predict.synthetic import synthetic_dataset


@pytest.fixture(scope="module")
def split():  # noqa: ANN201
    ds = synthetic_dataset(per_family=20, batches=(1, 4), seed=3)
    return ds.random_split(seed=0, fractions=(0.6, 0.15, 0.25))


def _truth(ds) -> np.ndarray:  # noqa: ANN001
    return np.array([s.labels["latency_ms"] for s in ds])


def test_correction_beats_the_plain_sum_of_prices(split) -> None:  # noqa: ANN001
    # the synthetic cost model has per-op efficiencies and fusion, which one price per kind cannot express
    train, dev, test = split
    plain = get_predictor("additive", family_folds=0).fit(train, dev).predict_dataset(test)["pred"][:, 0]
    boosted = get_predictor("additive-gbm", family_folds=0).fit(train, dev).predict_dataset(test)["pred"][:, 0]
    assert mape(_truth(test), boosted) < 0.8 * mape(_truth(test), plain)


def test_zero_correction_is_the_additive_model(split) -> None:  # noqa: ANN001
    train, dev, test = split
    plain = get_predictor("additive", family_folds=0).fit(train, dev)
    off = get_predictor("additive-gbm", family_folds=0, correction=0.0).fit(train, dev)
    assert off.prices_ == plain.prices_  # the same prices underneath
    np.testing.assert_allclose(off.predict_dataset(test)["pred"], plain.predict_dataset(test)["pred"], rtol=1e-12)


def test_breakdown_terms_still_sum_to_the_prediction(split) -> None:  # noqa: ANN001
    train, dev, test = split
    model = get_predictor("additive-gbm", family_folds=0).fit(train, dev)
    s = test[0]
    pred = model.predict([s.graph], [s.config], s.device)[0]
    b = pred.breakdown
    assert b["correction_factor"] > 0 and b["correction_factor"] != pytest.approx(1.0)
    assert sum(b["by_term"].values()) == pytest.approx(pred.latency_ms, rel=1e-6)


def test_save_load_round_trip_and_layout_check(split, tmp_path) -> None:  # noqa: ANN001
    train, dev, test = split
    model = get_predictor("additive-gbm", family_folds=0).fit(train, dev)
    art = model.save(tmp_path / "art")
    again = Predictor.load(art)
    np.testing.assert_allclose(again.predict_dataset(test)["pred"][:, :2], model.predict_dataset(test)["pred"][:, :2],
                               rtol=1e-9)
    meta_path = art / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["state"]["correction_features"] == list(CORRECTION_FEATURE_NAMES)
    meta["state"]["correction_features"] = meta["state"]["correction_features"][:-1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="train it again"):
        Predictor.load(art)


def test_too_few_runs_means_no_correction() -> None:
    small = synthetic_dataset(per_family=3, batches=(1,), seed=1)  # 15 runs: below the minimum
    model = get_predictor("additive-gbm", family_folds=0, dev_fraction=0.0).fit(small)
    assert model.boosters_ == {}
    plain = get_predictor("additive", family_folds=0, dev_fraction=0.0).fit(small)
    np.testing.assert_allclose(model.predict_dataset(small)["pred"], plain.predict_dataset(small)["pred"])


def _conv(i: int, cin: int, cout: int, k: int, hw: int, group: int = 1):  # noqa: ANN202
    from inferperf.ir.graph import Node, TensorInfo

    macs = cout * (cin // group) * k * k * hw * hw
    return Node(index=i, name=f"c{i}", op_type="Conv", domain="", attributes={"group": group},
                inputs=[TensorInfo(f"x{i}", (1, cin, hw, hw), "float32"),
                        TensorInfo(f"w{i}", (cout, cin // group, k, k), "float32", is_weight=True)],
                outputs=[TensorInfo(f"x{i + 1}", (1, cout, hw, hw), "float32")], macs=macs)


def test_conv_shape_features_are_mac_weighted_over_dense_convolutions() -> None:
    from inferperf.ir.graph import ModelGraph, TensorInfo
    from inferperf.predict.additive_gbm import conv_shape_features

    big = _conv(0, 64, 64, 3, 8)  # 64·64·9·64 MACs, output 8×8, reduction 576
    small = _conv(1, 64, 32, 1, 8)  # 64·32·64 MACs, output 8×8, reduction 64
    depthwise = _conv(2, 32, 32, 3, 8, group=32)  # not dense: left out
    g = ModelGraph("g", [big, small, depthwise], [], [TensorInfo("x0", (1, 64, 8, 8), "float32")],
                   [TensorInfo("x3", (1, 32, 8, 8), "float32")], 17)
    f = conv_shape_features(g)
    w = np.array([big.macs, small.macs], dtype=float) / (big.macs + small.macs)
    assert f[0] == pytest.approx(np.log2(64))  # both outputs 8×8
    assert f[1] == pytest.approx(w @ np.log2([576, 64]))
    assert f[2] == pytest.approx(w @ np.log2([64, 32]))
    none = ModelGraph("n", [depthwise], [], [TensorInfo("x2", (1, 32, 8, 8), "float32")],
                      [TensorInfo("x3", (1, 32, 8, 8), "float32")], 17)
    assert np.isnan(conv_shape_features(none)).all()  # missing, not zero: the trees route it apart
