"""The reference dataset shipped in data/reference: it loads with this build's encoding, carries what the
predictors need (family labels, end-to-end and per-kernel labels, heap memory), and a slice of it trains and
evaluates a predictor end to end."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from inferperf.dataset.parquet import read_dataset
from inferperf.zoo import zoo_families

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"


@pytest.fixture(scope="module")
def reference():
    if not (REFERENCE / "meta.json").exists():
        pytest.fail("data/reference is part of the repository and must be present")
    return read_dataset(REFERENCE, per_family=8)  # a slice: the whole set feeds training, not the suite


def test_reference_covers_many_families_with_real_architectures(reference):
    families = Counter(s.family for s in reference)
    real = set(zoo_families("real"))
    assert len(families) >= 12 and len(real & set(families)) >= 6
    assert set(families) <= set(zoo_families("all")), "every family label is a zoo family"
    import pyarrow.parquet as pq

    runs = pq.read_table(REFERENCE / "runs.parquet", columns=["batch_size", "intra_op_threads"]).to_pydict()
    assert set(runs["batch_size"]) >= {1, 4}, "batch sizes beyond 1 for a part of it"
    threads = Counter(runs["intra_op_threads"])
    assert set(threads) == {1, 2}, "1 intra-op thread, and both cores for the compute-share subset"
    assert threads[1] > 5 * threads[2], "the reference protocol is 1 intra-op thread"


def test_reference_labels_are_measured_not_filled_in(reference):
    with_latency = [s for s in reference if s.label("latency_ms") is not None]
    assert len(with_latency) >= 0.8 * len(reference)
    assert all(s.label("latency_ms") > 0 and math.isfinite(s.label("latency_ms")) for s in with_latency)
    profiled = [s for s in reference if s.kernels]
    assert len(profiled) >= 0.8 * len(reference)
    k = profiled[0].kernels[0]
    assert k["duration_ms"] >= 0 and k["covered_nodes"]
    # memory is only a label where it is the heap footprint; an RSS delta is never a target
    for s in reference:
        mem = s.label("memory_mb")
        assert mem is None or mem > 0


def test_a_slice_trains_and_predicts_a_held_out_family(reference):
    from inferperf.predict.base import get_predictor

    by_family: dict[str, list] = {}
    for s in reference:
        if s.label("latency_ms") is not None and s.config.get("valid"):
            by_family.setdefault(s.family, []).append(s)
    held_out = "resnet"
    train = [s for fam, ss in by_family.items() if fam != held_out for s in ss[:6]]
    test = by_family[held_out][:4]
    model = get_predictor("lgbm", seed=0).fit(type(reference)(train, name="slice"))
    preds = model.predict([s.graph for s in test], [s.config for s in test], test[0].device)
    for p, s in zip(preds, test, strict=True):
        assert p.latency_ms > 0
        # a sanity bound, not an accuracy claim: within a factor of 10 of the measurement
        assert 0.1 < p.latency_ms / s.label("latency_ms") < 10
