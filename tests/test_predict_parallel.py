"""Per-graph derived inputs computed in forked workers: the same memo entries, the same predictions."""

from __future__ import annotations

import copy
import multiprocessing as mp
import os

import numpy as np
import pytest

from inferperf.predict import get_predictor, parallel
from inferperf.predict.synthetic import synthetic_dataset

pytestmark = pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")


def _batch(seed: int = 5):  # noqa: ANN202
    """Fresh graph objects with nothing derived (the synthetic dataset shares its graphs within a process)."""
    ds = synthetic_dataset(per_family=3, batches=(1,), seed=seed)
    graphs = [copy.deepcopy(s.graph) for s in ds]
    for g in graphs:
        g.forget_derived()
    return graphs, [s.config for s in ds], [s.device for s in ds]


def test_processes_for_respects_n_jobs_batch_size_and_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "available_cpus", lambda: 4)
    per = parallel.MIN_GRAPHS_PER_PROCESS
    assert parallel.processes_for(10 * per, None) == 4  # None: every CPU
    assert parallel.processes_for(10 * per, 0) == 4
    assert parallel.processes_for(10 * per, 2) == 2
    assert parallel.processes_for(10 * per, 1) == 1
    assert parallel.processes_for(2 * per + 1, None) == 2  # too small a batch for four
    assert parallel.processes_for(per - 1, 8) == 1


def test_workers_hand_back_what_a_serial_run_derives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_GRAPHS_PER_PROCESS", 4)
    monkeypatch.setattr(parallel, "CLAIM", 1)
    model = get_predictor("additive-gbm", family_folds=0)
    graphs, configs, devices = _batch()
    here = []
    parent = os.getpid()
    worker_started = mp.get_context("fork").Event()

    def derive(g, c, d) -> None:  # noqa: ANN001
        if os.getpid() == parent:
            # the processes share the batch as they go: the parent would take all 15 graphs of this small
            # batch before the worker starts, so it waits for the worker's first graph
            here.append(g)
            assert worker_started.wait(timeout=60), "the worker never started"
        else:
            worker_started.set()
        model._derive(g, c, d)

    keys = model._derived_keys()
    assert parallel.derive_all(graphs, configs, devices, derive, keys, n_jobs=2) == 2
    assert 0 < len(here) < len(graphs)  # the rest was derived in the worker and adopted
    serial, *_ = _batch()
    for g in serial:
        model._derive(g, configs[0], devices[0])
    for a, b in zip(graphs, serial, strict=True):
        got, want = a.derived_items(keys), b.derived_items(keys)
        assert got.keys() == want.keys() and {k[0] for k in got} == set(keys)
        for k in want:
            va, vb = got[k], want[k]
            if isinstance(vb, tuple):  # node-cost features: (indices, rows)
                for x, y in zip(va, vb, strict=True):
                    np.testing.assert_array_equal(x, y)
            elif isinstance(vb, np.ndarray):
                np.testing.assert_array_equal(va, vb)
            else:
                assert va == vb
    # everything derived: nothing is forked again
    here.clear()
    assert parallel.derive_all(graphs, configs, devices, derive, keys, n_jobs=2) == 1 and not here


def test_parallel_prediction_equals_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_GRAPHS_PER_PROCESS", 4)
    train = synthetic_dataset(per_family=12, batches=(1, 4), seed=3)
    serial_model = get_predictor("additive-gbm", family_folds=0, n_jobs=1).fit(train)
    parallel_model = get_predictor("additive-gbm", family_folds=0, n_jobs=2).fit(
        synthetic_dataset(per_family=12, batches=(1, 4), seed=3))
    graphs, configs, _ = _batch(seed=9)
    again, *_ = _batch(seed=9)
    device = train[0].device
    a = serial_model.predict_arrays(graphs, configs, [device] * len(graphs))
    b = parallel_model.predict_arrays(again, configs, [device] * len(again))
    for key in ("pred", "lo", "hi", "ood_score"):
        np.testing.assert_array_equal(a[key], b[key])


def test_graphs_a_dead_worker_claimed_are_derived_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_GRAPHS_PER_PROCESS", 4)
    model = get_predictor("additive-gbm", family_folds=0)
    graphs, configs, devices = _batch()
    parent = os.getpid()
    worker_started = mp.get_context("fork").Event()

    def derive(g, c, d) -> None:  # noqa: ANN001
        if os.getpid() != parent:
            worker_started.set()
            os._exit(3)  # the worker dies holding the graphs it claimed
        assert worker_started.wait(timeout=60), "the worker never started"
        model._derive(g, c, d)

    keys = model._derived_keys()
    assert parallel.derive_all(graphs, configs, devices, derive, keys, n_jobs=2) == 2
    assert all({k[0] for k in g.derived_items(keys)} == set(keys) for g in graphs)
