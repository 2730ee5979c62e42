"""Collection: zoo → workers → PerfDB, resumable, failures recorded (small random graphs, short timing)."""

from __future__ import annotations

import math
import time

import pytest

from inferperf.jobs.collect import CollectOptions, collect, run_key
from inferperf.jobs.workers import Worker
from inferperf.store import PerfDB


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_collect_stores_runs_and_resumes(home):
    opts = CollectOptions(zoo="random", limit=3, families=["mlp", "plain_cnn", "random_dag"], max_time_s=0.3,
                          graph_budget_s=120)
    seen = []
    first = collect(opts, progress=seen.append)
    assert first.planned == 3 and first.measured + first.failed == 3 and first.failed == 0
    assert [s["done"] for s in seen] == [1, 2, 3]
    with PerfDB.open(None) as db:
        runs = db.list_runs()
        assert len(runs) == 3
        for r in runs:
            full = db.get_run(r["id"], with_kernels=True)
            assert full["kernels"], "collection profiles kernels"
            assert full["fusion_edges"] is not None
            assert full["provenance"]["collector"]["zoo_key"]
        families = {m["family"] for m in db.list_models()}
        assert families == {"mlp", "plain_cnn", "random_dag"}
    # graph JSON kept beside the content-addressed store; weights dropped by default
    assert list((home / "models").rglob("*.graph.json"))
    assert not list((home / "models").rglob("*.onnx"))
    again = collect(opts)
    assert again.skipped == 3 and again.measured == 0
    with PerfDB.open(None) as db:
        assert len(db.list_runs()) == 3


def test_export_failure_is_recorded_and_skipped_on_resume(home, monkeypatch):
    opts = CollectOptions(zoo="random", limit=1, families=["mlp"], max_time_s=0.3, graph_budget_s=0.01)
    report = collect(opts)  # no export can finish in 10 ms: recorded as a timeout
    assert report.failed == 1 and report.measured == 0
    with PerfDB.open(None) as db:
        (run,) = db.list_runs()
        assert run["status"] == "timeout"
    assert collect(opts).skipped == 1


def _sqrt(x: float) -> float:
    return math.sqrt(x)


def _sleep(secs: float) -> None:
    time.sleep(secs)


def test_worker_survives_a_crash_and_a_hang():
    w = Worker("call")
    try:
        assert w.run({"target": "tests.test_collect:_sqrt", "kwargs": {"x": 16.0}}, 60).value == 4.0
        crashed = w.run({"target": "os:abort"}, 60)
        assert crashed.status == "crashed" and "SIGABRT" in crashed.error
        hung = w.run({"target": "tests.test_collect:_sleep", "kwargs": {"secs": 30}}, 1.0)
        assert hung.status == "timeout"
        err = w.run({"target": "tests.test_collect:_sqrt", "kwargs": {"x": -1.0}}, 60)
        assert err.status == "error" and "ValueError" in err.error
        # restarted after the crash and the hang, still serving
        assert w.run({"target": "tests.test_collect:_sqrt", "kwargs": {"x": 9.0}}, 60).value == 3.0
        assert w.restarts == 2
    finally:
        w.close()


def test_measure_worker_answers_for_an_unloadable_model():
    with Worker("measure") as w:
        out = w.run({"model_path": "/nonexistent.onnx", "config": {}, "protocol": {}}, timeout_s=60)
        assert out.status == "ok" and out.value["status"] == "failed"


def test_run_key_depends_on_entry_and_config():
    assert run_key("a", "x") != run_key("b", "x") != run_key("a", "y")
    assert run_key("a", "x") == run_key("a", "x")
