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
                          graph_budget_s=120, max_background=64.0, probe_every=2)
    seen = []
    first = collect(opts, progress=seen.append)
    assert first.planned == 3 and first.measured + first.failed == 3 and first.failed == 0
    # the speed probe ran before graphs 1 and 3, on the measurement worker
    assert len(first.speed_probe_ms) == 2 and all(ms > 0 for ms in first.speed_probe_ms)
    assert first.to_dict()["speed_probe_ms"]["n"] == 2
    assert [s["done"] for s in seen] == [1, 2, 3]
    with PerfDB.open(None) as db:
        runs = db.list_runs()
        assert len(runs) == 3
        for r in runs:
            full = db.get_run(r["id"], with_kernels=True)
            assert full["kernels"], "collection profiles kernels"
            assert full["fusion_edges"] is not None
            assert full["provenance"]["collector"]["zoo_key"]
            # the machine's other load during the timed phase is recorded with every attempt
            (load,) = full["provenance"]["background_attempts"]
            assert load is None or 0.0 <= load < 64.0
            # and the machine's speed: the latest probe reading, with its age
            probe = full["provenance"]["speed_probe"]
            assert probe["version"] >= 1 and probe["median_ms"] in first.speed_probe_ms and probe["age_s"] >= 0
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
    opts = CollectOptions(zoo="random", limit=1, families=["mlp"], max_time_s=0.3, graph_budget_s=0.01,
                          max_background=None)
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


class _FakeOutcome:
    def __init__(self, load: float) -> None:
        self.status = "ok"
        self.error = None
        self.value = {"status": "ok", "config": {}, "provenance": {"background_cpu": load}}


class _FakeMeasurer:
    def __init__(self, loads: list[float]) -> None:
        self.loads = list(loads)
        self.calls = 0

    def run(self, task, budget):
        self.calls += 1
        return _FakeOutcome(self.loads.pop(0))


def test_a_disturbed_measurement_is_taken_again(monkeypatch):
    import inferperf.measure.background as background
    from inferperf.jobs.collect import CollectReport, _measure_quietly

    waits = []
    monkeypatch.setattr(background, "wait_for_quiet", lambda max_cores, **kw: waits.append(max_cores) or 1.5)
    opts = CollectOptions(max_background=0.3, quiet_retries=2)
    report = CollectReport()
    measurer = _FakeMeasurer([0.9, 0.1, 0.0])
    record = _measure_quietly(measurer, {}, None, None, opts, report, None)
    assert measurer.calls == 2 and waits == [0.3]  # no wait before the first attempt, one before the second
    assert record["provenance"]["background_attempts"] == [0.9, 0.1]
    assert report.remeasured == 1 and report.disturbed == 0 and report.quiet_wait_s == 1.5

    # never quiet: the last attempt is kept and counted as disturbed
    report = CollectReport()
    record = _measure_quietly(_FakeMeasurer([0.9, 0.8, 0.7]), {}, None, None, opts, report, None)
    assert record["provenance"]["background_attempts"] == [0.9, 0.8, 0.7]
    assert report.remeasured == 2 and report.disturbed == 1

    # the pipelined mode's own exporter is the background: no waiting, no re-measuring
    report = CollectReport()
    waits.clear()
    piped = CollectOptions(max_background=0.3, pipeline=True)
    record = _measure_quietly(_FakeMeasurer([0.9]), {}, None, None, piped, report, None)
    assert waits == [] and record["provenance"]["background_attempts"] == [0.9] and report.disturbed == 0


def test_graphs_whose_runs_were_all_disturbed_are_found_for_a_retry(home):
    from inferperf.jobs.collect import disturbed_keys
    from inferperf.measure.config import ProtocolConfig, RunConfig
    from inferperf.measure.result import Measurement

    cfg, proto = RunConfig().validate(), ProtocolConfig().validate()
    with PerfDB.open(None) as db:
        dev = db.upsert_device({"id": "dev1", "name": "d", "kind": "cpu"})
        model = db.add_model("m", "0" * 64)
        for key, loads in (("quiet", [0.0]), ("busy", [0.9, 0.8, 0.7]), ("busy-then-quiet", [0.9, 0.1]),
                           ("old", None)):
            rec = Measurement.failure(cfg, proto, "failed", "x").to_dict()
            rec["status"] = "ok"
            rec["provenance"] = {"background_attempts": loads} if loads else {}
            db.add_run(rec, model, dev, None, config_key=key)
        rec = Measurement.failure(cfg, proto, "failed", "x").to_dict()
        rec["provenance"] = {"background_attempts": [0.05]}
        db.add_run(rec, model, dev, None, config_key="busy-then-quiet")  # re-measured later, quietly
        assert disturbed_keys(db, dev, 0.3) == {"busy"}
