"""Export → import round trip: a shipped dataset seeds a fresh PerfDB and a resumed collection skips it."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from inferperf.dataset.export import database_stats, export_dataset
from inferperf.dataset.importer import import_dataset
from inferperf.jobs.collect import CollectOptions, collect
from inferperf.store import PerfDB


def test_import_round_trip_is_idempotent_and_resumable(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "a"))
    # max_background=None: the round trip, not the quiet-machine wait, is under test (a busy machine would stall it)
    opts = CollectOptions(zoo="random", limit=2, families=["mlp", "random_dag"], max_time_s=0.3, max_background=None)
    assert collect(opts).measured == 2
    out = tmp_path / "export"
    export_dataset(None, out, valid_only=False)
    before = database_stats(None)

    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "b"))  # a new machine / session
    counts = import_dataset(out)
    assert counts["runs"] == 2
    after = database_stats(None)
    assert after["graphs"] == before["graphs"] and after["runs"] == before["runs"]
    assert after["families"] == before["families"]
    with PerfDB.open(None) as db:
        run = db.get_run(db.list_runs()[0]["id"], with_kernels=True)
        assert run["kernels"] and run["provenance"]["imported_from"]
    assert import_dataset(out)["runs"] == 0  # idempotent
    resumed = collect(opts)
    assert resumed.skipped == 2 and resumed.measured == 0
    # the imported graphs export again without their weights (graph cache only)
    again = export_dataset(None, tmp_path / "export2", valid_only=False)
    assert again["counts"]["runs"] == 2
    # ... and the runs come back as they were measured: time, environment, speed probe (not the import's)
    kept = ["config_key", "created_at", "environment_id", "speed_probe_ms", "latency_p50_ms", "background_cpu"]
    first, second = (pq.read_table(d / "runs.parquet").to_pandas()[kept].sort_values("config_key")
                     .reset_index(drop=True) for d in (out, tmp_path / "export2"))
    assert first["speed_probe_ms"].notna().all()
    pd.testing.assert_frame_equal(first, second)
