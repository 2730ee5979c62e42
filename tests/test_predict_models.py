"""Each predictor learns the synthetic cost model: it beats a constant predictor on held-out graphs.

The synthetic labels depend on graph structure (per-op efficiency, fusion, launch overheads), so the
assertions are relative — a model must cut the constant predictor's error substantially — never absolute
accuracy thresholds. Epochs are kept small so the whole file runs in well under a minute.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from inferperf.dataset.core import GraphDataset
from inferperf.predict import get_predictor
from inferperf.predict.metrics import mape
from inferperf.predict.synthetic import synthetic_dataset

FAST = {
    "lr-flops": {},
    "additive": {},
    "additive-gbm": {},
    "lgbm": {},
    "mlp-flat": {"epochs": 40, "depth_grid": (1, 2), "threads": 1},
    "gnn-sage": {"epochs": 40, "threads": 1},
    "gnn-gat": {"epochs": 40, "threads": 1},
    "gnn-gcn": {"epochs": 40, "threads": 1},
    "gnn-gin": {"epochs": 40, "threads": 1},
    "gnn-none": {"epochs": 40, "threads": 1},
}


@pytest.fixture(scope="module")
def split() -> tuple[GraphDataset, GraphDataset, GraphDataset]:
    ds = synthetic_dataset(per_family=14, batches=(1, 4), threads=(1, 2), seed=1)
    return ds.random_split(seed=0, fractions=(0.6, 0.15, 0.25))


def _labels(ds: GraphDataset, target: str) -> np.ndarray:
    return np.array([s.labels[target] for s in ds])


def _constant_mape(train: GraphDataset, test: GraphDataset, target: str) -> float:
    """MAPE of the best constant in log space (the geometric mean of the training labels)."""
    const = math.exp(float(np.mean(np.log(_labels(train, target)))))
    return mape(_labels(test, target), np.full(len(test), const))


@pytest.mark.parametrize("name", list(FAST))
def test_beats_a_constant_predictor(name: str, split) -> None:  # noqa: ANN001
    train, dev, test = split
    model = get_predictor(name, **FAST[name]).fit(train, dev)
    pred = model.predict_dataset(test)["pred"]
    for j, target in enumerate(("latency_ms", "memory_mb", "energy_j")):
        model_err = mape(_labels(test, target), pred[:, j])
        const_err = _constant_mape(train, test, target)
        # the log-log FLOPs regression and the truncating flat MLP are the weak baselines by design
        factor = {"lr-flops": 0.9, "mlp-flat": 0.8}.get(name, 0.6)
        assert model_err < factor * const_err, (
            f"{name} {target}: {model_err:.1f}% vs constant {const_err:.1f}%"
        )


def test_structure_aware_models_beat_flops_regression(split) -> None:  # noqa: ANN001
    """The synthetic latency is not a function of FLOPs: a model that sees more must do much better."""
    train, dev, test = split
    y = _labels(test, "latency_ms")
    errs = {
        n: mape(y, get_predictor(n, **FAST[n]).fit(train, dev).predict_dataset(test)["pred"][:, 0])
        for n in ("lr-flops", "lgbm", "gnn-sage")
    }
    assert errs["lgbm"] < 0.7 * errs["lr-flops"]
    assert errs["gnn-sage"] < 0.7 * errs["lr-flops"]


@pytest.mark.parametrize("name", ["lgbm", "gnn-sage", "lr-flops"])
def test_missing_target_is_masked_not_invented(name: str) -> None:
    ds = synthetic_dataset(per_family=4, batches=(1, 2), targets=("latency_ms", "memory_mb"), seed=2)
    model = get_predictor(name, **FAST[name]).fit(ds)
    assert "energy_j" not in model.targets_
    pred = model.predict([s.graph for s in ds[:3]], [s.config for s in ds[:3]], ds[0].device)
    assert all(p.energy_j is None and p.latency_ms and p.memory_mb for p in pred)
    assert all("energy_j" not in p.intervals for p in pred)


def test_mlp_flat_warns_when_it_truncates_graphs() -> None:
    ds = synthetic_dataset(per_family=3, families=("transformer", "mlp"), batches=(1,), seed=3)
    model = get_predictor("mlp-flat", max_nodes=16, epochs=3, depth_grid=(1,), threads=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(ds)
    assert any("truncated" in str(w.message) for w in caught)


def test_thread_count_is_an_input(split) -> None:  # noqa: ANN001
    """The same graph predicted with 1 and 2 threads must differ as the labels do (faster with 2)."""
    train, dev, _ = split
    model = get_predictor("lgbm").fit(train, dev)
    big = max(train, key=lambda s: s.graph.flops).graph
    cfg = {"runtime": "onnxruntime", "batch_size": big.batch_size}
    one, two = model.predict(
        [big, big], [{**cfg, "intra_op_threads": 1}, {**cfg, "intra_op_threads": 2}], train[0].device
    )
    assert two.latency_ms < one.latency_ms


def test_device_features_are_inputs() -> None:
    """Trained on a fast and a half-speed device, the predictor must tell them apart."""
    from inferperf.predict.synthetic import synthetic_device

    fast, slow = synthetic_device("fast", 1.0), synthetic_device("slow", 0.5)
    ds = synthetic_dataset(per_family=8, batches=(1, 2), devices=[fast, slow], seed=4)
    model = get_predictor("lgbm").fit(ds)
    assert set(model.devices_) == {"fast", "slow"}
    graphs, configs = [s.graph for s in ds[:20]], [s.config for s in ds[:20]]
    on_fast = np.array([p.latency_ms for p in model.predict(graphs, configs, "fast")])
    on_slow = np.array([p.latency_ms for p in model.predict(graphs, configs, "slow")])
    assert np.median(on_slow / on_fast) > 1.4  # the labels differ by a factor of ~2
