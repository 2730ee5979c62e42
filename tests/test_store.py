"""PerfDB behaviour, on SQLite and on a real PostgreSQL server (the ``db_url`` fixture runs each test on both).

What matters to the rest of inferperf: a stored run reads back exactly as measured (samples, kernels in
order, provenance), nothing measured is lost or turned into zeros, a re-run appends, a killed writer leaves
the whole run or none of it, and every mistake a user can make is a one-line StoreError.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from inferperf.errors import StoreError
from inferperf.store import migrate
from inferperf.store.db import PerfDB
from inferperf.store.paths import file_sha256, model_file_path, put_model_file, resolve_db_url
from inferperf.store.records import config_key
from inferperf.store.schema import VERSION_TABLE, Base

HASH_A = hashlib.sha256(b"model a").hexdigest()
HASH_B = hashlib.sha256(b"model b").hexdigest()
HASH_C = hashlib.sha256(b"model c").hexdigest()

DEVICE = {"id": "fp-cpu-0001", "name": "cpu-amd-epyc-2c", "kind": "cpu", "cpu": {"cores": 2, "avx2": True}}
ENV = {"python": "3.11.7", "onnxruntime": "1.32.0", "torch": "2.13.0", "os": "Linux", "kernel": "6.1.0"}


def make_run(
    *,
    batch: int = 1,
    threads: int = 1,
    status: str = "ok",
    n_kernels: int = 3,
    samples: list[float] | None = None,
    **extra_config: Any,
) -> dict[str, Any]:
    """A measurement dict in the shape of ``Measurement.to_dict()``."""
    samples = samples if samples is not None else [1.0 + 0.01 * i for i in range(50)]
    failed = status in ("failed", "timeout", "crashed")
    config = {
        "runtime": "onnxruntime",
        "batch_size": batch,
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "opt_level": "all",
        "provider": "cpu",
        "precision": "fp32",
        "protocol": {"min_repeats": 50, "target_ci_rel": 0.01},
        **extra_config,
    }
    return {
        "config": config,
        "status": status,
        "valid": status == "ok",
        "invalid_reasons": [status] if status != "ok" else [],
        "error": "MemoryError: out of memory" if failed else None,
        "latency_ms": None
        if failed
        else {
            "p50": samples[len(samples) // 2], "p90": 1.45, "p95": 1.47, "p99": 1.49, "p999": 1.49,
            "mean": sum(samples) / len(samples), "min": min(samples), "max": max(samples), "std": 0.144,
        },
        "cv": None if failed else 0.118,
        "ci95_ms": None if failed else [1.2, 1.3],
        "n_samples": 0 if failed else len(samples),
        "samples_ms": [] if failed else samples,
        "throughput": None if failed else batch / 1.245,
        "cold_start_ms": 120.5,
        "session_create_ms": 80.25,
        "first_inference_ms": 40.0,
        "memory_mb": None if failed else 42.0,
        "peak_rss_mb": None if failed else 310.5,
        "arena_mb": None,
        "energy_j": None if failed else 0.0123,
        "energy_source": None if failed else "estimate:tdp",
        "power_w": None if failed else 9.9,
        "cpu_util": None if failed else 0.97,
        "kernels": None
        if failed
        else [
            {
                "name": f"node_{i}", "op_type": "Conv" if i % 2 == 0 else "Relu", "kernel_type": "FusedConv",
                "provider": "CPUExecutionProvider", "duration_ms": 0.1 * (i + 1),
                "duration_ms_runs": [0.1 * (i + 1), 0.1 * (i + 1)], "input_shapes": [[1, 3, 8, 8]],
                "output_shapes": [[1, 8, 8, 8]], "covered_nodes": [f"n{i}a", f"n{i}b"],
            }
            for i in range(n_kernels)
        ],
        "fusion_edges": None
        if failed
        else [
            {"src": "n0a", "dst": "n0b", "tensor": "t0", "fused": True},
            {"src": "n0b", "dst": "n1a", "tensor": "t1", "fused": False},
        ],
        "provenance": {"seed": 0, "affinity": [0], "versions": {"onnxruntime": "1.32.0"}},
        "started_at": "2025-03-01T12:00:00.000+00:00",
        "duration_s": 3.5,
    }


@pytest.fixture
def store(db_url: str) -> Iterator[PerfDB]:
    db = PerfDB.open(db_url)
    yield db
    db.close()


@pytest.fixture
def ids(store: PerfDB) -> tuple[int, str, str]:
    model_id = store.add_model("resnet18", HASH_A, family="resnet", framework="torch", tags=["cnn", "vision"])
    return model_id, store.upsert_device(DEVICE), store.upsert_environment(ENV)


def _count(db: PerfDB, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# ------------------------------------------------------------------------------------------ schema
def test_migrations_from_empty_create_exactly_the_orm_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with PerfDB.open(db_url) as db:
        current, head = db.schema_revision()
        assert current == head == migrate.head_revision()
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
            diffs = compare_metadata(ctx, Base.metadata)
    assert {"devices", "environments", "models", "runs", "kernels", "fusion_edges", VERSION_TABLE} <= tables
    assert diffs == [], f"the migrations and schema.py disagree: {diffs}"


def test_reopening_keeps_data_and_does_not_migrate_again(db_url: str) -> None:
    with PerfDB.open(db_url) as db:
        model_id = db.add_model("m", HASH_A)
    with PerfDB.open(db_url) as db:
        assert db.find_model(model_id)["name"] == "m"
        assert db.schema_revision()[0] == migrate.head_revision()


def test_concurrent_first_opens_migrate_once(db_url: str) -> None:
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            with PerfDB.open(db_url) as db:
                db.upsert_device(DEVICE)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with PerfDB.open(db_url) as db:
        assert db.schema_revision()[0] == migrate.head_revision()
        assert len(db.list_devices()) == 1


def test_database_from_a_newer_inferperf_is_refused(db_url: str) -> None:
    with PerfDB.open(db_url) as db, db.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff_future'"))
    with pytest.raises(StoreError, match="ffff_future.*upgrade inferperf"):
        PerfDB.open(db_url)


# ------------------------------------------------------------------------------------------ runs
def test_run_round_trips_with_samples_kernels_and_provenance(store: PerfDB, ids: tuple[int, str, str]) -> None:
    model_id, dev_id, env_id = ids
    run = make_run(n_kernels=7, samples=[1.5, 1.25, 2.0, 1.0, 3.75])
    run["custom_metric"] = {"queue_ms": 0.5}  # a field this schema has no column for
    run_id = store.add_run(run, model_id, dev_id, env_id)

    got = store.get_run(run_id, with_samples=True, with_kernels=True)
    for key in ("config", "status", "valid", "invalid_reasons", "error", "latency_ms", "cv", "ci95_ms",
                "n_samples", "samples_ms", "cold_start_ms", "session_create_ms", "first_inference_ms",
                "memory_mb", "peak_rss_mb", "arena_mb", "energy_j", "energy_source", "power_w", "cpu_util",
                "fusion_edges", "provenance", "duration_s", "custom_metric"):
        assert got[key] == run[key], key
    assert got["throughput"] == pytest.approx(run["throughput"])
    # kernels come back in execution order, complete
    assert [k["name"] for k in got["kernels"]] == [f"node_{i}" for i in range(7)]
    assert [k["ordinal"] for k in got["kernels"]] == list(range(7))
    for want, have in zip(run["kernels"], got["kernels"], strict=True):
        assert {k: have[k] for k in want} == want
    assert got["started_at"].startswith("2025-03-01T12:00:00")
    assert (got["model"], got["model_version"], got["device"], got["environment_id"]) == (
        "resnet18", 1, DEVICE["name"], env_id)
    assert got["kind"] == "bench"


def test_bulky_parts_only_when_asked(store: PerfDB, ids: tuple[int, str, str]) -> None:
    run_id = store.add_run(make_run(), *ids)
    plain = store.get_run(run_id)
    assert "samples_ms" not in plain and "kernels" not in plain
    listed = store.list_runs()
    assert len(listed) == 1 and "samples_ms" not in listed[0]
    assert listed[0]["latency_ms"]["p50"] == plain["latency_ms"]["p50"]


def test_rerunning_a_config_appends_and_keys_resume(store: PerfDB, ids: tuple[int, str, str]) -> None:
    model_id, dev_id, env_id = ids
    first = store.add_run(make_run(key="cfg-1"), model_id, dev_id, env_id)
    second = store.add_run(make_run(key="cfg-1", samples=[9.0, 9.5]), model_id, dev_id, env_id)
    third = store.add_run(make_run(batch=8), model_id, dev_id, env_id)
    fourth = store.add_run(make_run(batch=4), model_id, dev_id, env_id, config_key="engine-key-4")
    assert len({first, second, third, fourth}) == 4
    assert store.get_run(first)["latency_ms"]["p50"] != store.get_run(second)["latency_ms"]["p50"]
    keys = store.done_config_keys(model_id, dev_id)
    assert keys == {"cfg-1", config_key(make_run(batch=8)["config"]), "engine-key-4"}
    # the derived key ignores a 'key' field and is stable across dict order
    cfg = make_run(batch=8)["config"]
    assert config_key(dict(reversed(list(cfg.items())))) == config_key({**cfg, "key": "x"})


def test_done_config_keys_are_scoped_and_filterable(store: PerfDB, ids: tuple[int, str, str]) -> None:
    model_id, dev_id, env_id = ids
    other_model = store.add_model("bert", HASH_B)
    other_dev = store.upsert_device({**DEVICE, "id": "fp-other", "name": "other"})
    store.add_run(make_run(key="ok-key"), model_id, dev_id, env_id)
    store.add_run(make_run(key="crash-key", status="crashed"), model_id, dev_id, env_id)
    store.add_run(make_run(key="load-key"), model_id, dev_id, env_id, kind="load")
    store.add_run(make_run(key="elsewhere"), other_model, dev_id, env_id)
    store.add_run(make_run(key="other-dev"), model_id, other_dev, env_id)
    assert store.done_config_keys(model_id, dev_id) == {"ok-key", "crash-key"}
    assert store.done_config_keys(model_id, dev_id, statuses=("ok", "unstable")) == {"ok-key"}
    assert store.done_config_keys(model_id, dev_id, kind=None) == {"ok-key", "crash-key", "load-key"}


def test_failed_run_has_no_numbers_rather_than_zeros(store: PerfDB, ids: tuple[int, str, str]) -> None:
    run_id = store.add_run(make_run(status="crashed"), *ids)
    got = store.get_run(run_id, with_samples=True, with_kernels=True)
    assert got["status"] == "crashed" and got["valid"] is False
    assert got["latency_ms"] is None and got["throughput"] is None and got["memory_mb"] is None
    assert got["error"].startswith("MemoryError") and got["samples_ms"] == []
    # not profiled (None) stays distinct from a profile that recorded nothing ([])
    assert got["kernels"] is None and got["fusion_edges"] is None and got["n_kernels"] is None
    empty = store.add_run({**make_run(), "kernels": [], "fusion_edges": []}, *ids)
    got = store.get_run(empty, with_kernels=True)
    assert got["kernels"] == [] and got["fusion_edges"] == [] and got["n_kernels"] == 0


def test_non_finite_numbers_become_null(store: PerfDB, ids: tuple[int, str, str]) -> None:
    run = make_run()
    run["latency_ms"]["p999"] = float("nan")
    run["cv"] = float("inf")
    run["provenance"]["ratio"] = float("nan")
    run["samples_ms"] = [1.0, float("nan"), 2.0]
    got = store.get_run(store.add_run(run, *ids), with_samples=True)
    assert got["latency_ms"]["p999"] is None and got["latency_ms"]["p50"] is not None
    assert got["cv"] is None and got["provenance"]["ratio"] is None
    assert got["samples_ms"] == [1.0, None, 2.0]


def test_numpy_values_are_stored_as_numbers(store: PerfDB, ids: tuple[int, str, str]) -> None:
    np = pytest.importorskip("numpy")
    run = make_run(batch=np.int64(2))
    run["samples_ms"] = np.array([1.0, 2.0, 4.0])
    run["latency_ms"]["p50"] = np.float32(2.0)
    got = store.get_run(store.add_run(run, *ids), with_samples=True)
    assert got["samples_ms"] == [1.0, 2.0, 4.0] and got["batch_size"] == 2
    assert got["latency_ms"]["p50"] == 2.0 and isinstance(got["latency_ms"]["p50"], float)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(status="great"), "status must be one of"),
        (lambda r: r.pop("config"), "no 'config'"),
        (lambda r: r["kernels"][1].pop("name"), "kernel #1"),
        (lambda r: r["fusion_edges"][0].pop("fused"), "fusion edge #0"),
        (lambda r: r.update(cv="high"), "'cv' must be a number"),
        (lambda r: r["config"].update(batch_size=1.5), "batch_size"),
        (lambda r: r.update(started_at="yesterday"), "ISO timestamp"),
    ],
)
def test_malformed_runs_are_rejected_before_anything_is_written(
    store: PerfDB, ids: tuple[int, str, str], mutate: Any, message: str
) -> None:
    run = make_run()
    mutate(run)
    with pytest.raises(StoreError, match=message):
        store.add_run(run, *ids)
    assert (_count(store, "runs"), _count(store, "kernels"), _count(store, "fusion_edges")) == (0, 0, 0)


def test_run_needs_known_model_device_and_environment(store: PerfDB, ids: tuple[int, str, str]) -> None:
    model_id, dev_id, env_id = ids
    with pytest.raises(StoreError, match="no model with id 999"):
        store.add_run(make_run(), 999, dev_id, env_id)
    with pytest.raises(StoreError, match="upsert_device"):
        store.add_run(make_run(), model_id, "nope", env_id)
    with pytest.raises(StoreError, match="upsert_environment"):
        store.add_run(make_run(), model_id, dev_id, "nope")
    with pytest.raises(StoreError, match="no run with id 12345"):
        store.get_run(12345)
    assert _count(store, "runs") == 0


def test_list_runs_filters_and_orders_newest_first(store: PerfDB, ids: tuple[int, str, str]) -> None:
    model_id, dev_id, env_id = ids
    bert1 = store.add_model("bert", HASH_B)
    bert2 = store.add_model("bert", HASH_C)
    other_dev = store.upsert_device({"id": "fp-gpu", "name": "gpu-a100", "kind": "gpu"})
    r1 = store.add_run(make_run(), model_id, dev_id, env_id)
    r2 = store.add_run(make_run(status="unstable"), bert1, dev_id, env_id)
    r3 = store.add_run(make_run(), bert2, other_dev, env_id)
    r4 = store.add_run(make_run(status="failed"), bert2, dev_id, env_id)

    def listed(**kw: Any) -> list[int]:
        return [r["id"] for r in store.list_runs(**kw)]

    assert listed() == [r4, r3, r2, r1]
    assert listed(limit=2) == [r4, r3]
    assert listed(model="bert") == [r4, r3, r2]
    assert listed(model="bert:1") == [r2]
    assert listed(model=bert2) == [r4, r3]
    assert listed(device="gpu-a100") == [r3] == listed(device="fp-gpu")
    assert listed(status="unstable") == [r2]
    assert listed(status=["ok", "failed"]) == [r4, r3, r1]
    assert listed(valid=False) == [r4, r2]
    assert store.count_runs(model="bert") == 3
    assert store.list_runs(model="bert:2")[0]["model_version"] == 2


def test_export_pages_through_everything_with_context(store: PerfDB, ids: tuple[int, str, str]) -> None:
    model_id, dev_id, env_id = ids
    run_ids = [store.add_run(make_run(batch=b, n_kernels=b), model_id, dev_id, env_id) for b in range(1, 6)]
    store.add_run(make_run(status="timeout"), model_id, dev_id, env_id)
    exported = list(store.iter_runs_for_export(with_kernels=True, with_samples=True, page_size=2))
    assert [r["id"] for r in exported][:5] == run_ids and len(exported) == 6
    for r in exported[:5]:  # each run carries its own kernels, not a neighbour's
        assert len(r["kernels"]) == r["batch_size"]
        assert r["samples_ms"] and r["model_info"]["content_hash"] == HASH_A
        assert r["device_descriptor"]["cpu"] == DEVICE["cpu"]
        assert r["environment"]["versions"]["onnxruntime"] == "1.32.0"
    assert [r["id"] for r in store.iter_runs_for_export(valid_only=True, page_size=4)] == run_ids


def test_real_measurement_round_trips_through_the_store(store: PerfDB) -> None:
    """The measurement engine's own record goes in and comes back as an equal Measurement."""
    result = pytest.importorskip("inferperf.measure.result")
    config_mod = pytest.importorskip("inferperf.measure.config")
    cfg = config_mod.RunConfig(batch_size=2)
    m = result.Measurement(
        config=cfg, protocol=config_mod.ProtocolConfig(), samples_ms=[1.0, 1.25, 1.5], n_samples=3, cv=0.2,
        latency_ms={k: 1.25 for k in ("p50", "p90", "p95", "p99", "p999", "mean", "min", "max", "std")},
        ci95_ms=[1.0, 1.5], kernels=[{"name": "Conv_0", "op_type": "Conv", "duration_ms": 0.5}],
    )
    model_id, dev_id = store.add_model("m", HASH_A), store.upsert_device(DEVICE)
    run_id = store.add_run(m.to_dict(), model_id, dev_id, config_key=cfg.key())
    assert store.done_config_keys(model_id, dev_id) == {cfg.key()}
    back = result.Measurement.from_dict(store.get_run(run_id, with_samples=True, with_kernels=True))
    want, got = m.to_dict(), back.to_dict()
    assert datetime.fromisoformat(got.pop("started_at")) == datetime.fromisoformat(want.pop("started_at"))
    got["kernels"] = [{k: v for k, v in kern.items() if v is not None} for kern in got["kernels"]]
    got["kernels"][0].pop("ordinal")
    assert got == want


# ----------------------------------------------------------------------------------- models, devices
def test_model_versions_and_lookup(store: PerfDB) -> None:
    v1 = store.add_model("resnet", HASH_A, family="resnet", graph_summary={"macs": 1.8e9, "nodes": 69})
    assert store.add_model("resnet", HASH_A) == v1  # same bytes, same name: the same row
    v2 = store.add_model("resnet", HASH_B)
    alias = store.add_model("resnet-copy", HASH_A)
    assert len({v1, v2, alias}) == 3
    assert store.find_model(v1)["version"] == 1 and store.find_model(v2)["version"] == 2
    assert store.find_model(alias)["version"] == 1
    assert store.find_model(name="resnet")["id"] == v2  # newest version
    assert store.find_model(v1)["graph_summary"] == {"macs": 1.8e9, "nodes": 69}
    assert store.find_model(name="resnet", version=7) is None
    assert store.resolve_model(str(v1))["id"] == v1
    assert store.resolve_model("resnet")["id"] == v2
    assert store.resolve_model("resnet:1")["id"] == v1
    assert store.resolve_model(HASH_B[:10])["id"] == v2
    with pytest.raises(StoreError, match="no model 'vgg'"):
        store.resolve_model("vgg")
    names = [(m["name"], m["version"]) for m in store.list_models()]
    assert names == [("resnet", 1), ("resnet", 2), ("resnet-copy", 1)]
    assert [m["version"] for m in store.list_models(name="resnet", latest_only=True)] == [2]
    with pytest.raises(StoreError, match="sha256"):
        store.add_model("bad", "not-a-hash")
    with pytest.raises(StoreError, match="needs a name"):
        store.add_model("  ", HASH_A)


def test_soft_delete_keeps_runs_and_provenance(store: PerfDB, ids: tuple[int, str, str]) -> None:
    model_id, dev_id, env_id = ids
    run_id = store.add_run(make_run(), model_id, dev_id, env_id)
    lonely = store.add_model("unused", HASH_B, tags=["x"])
    store.soft_delete_model(lonely)  # no runs: no force needed
    with pytest.raises(StoreError, match="1 run"):
        store.soft_delete_model(model_id)
    assert store.find_model(model_id) is not None
    store.soft_delete_model(model_id, force=True)
    assert store.list_models() == []
    assert {m["id"] for m in store.list_models(include_deleted=True)} == {model_id, lonely}
    assert store.find_model(model_id) is None and store.find_model(model_id, include_deleted=True)["deleted"]
    assert store.get_run(run_id)["model"] == "resnet18"  # provenance intact
    assert store.list_models(include_deleted=True, tag="x")[0]["id"] == lonely
    assert store.add_model("resnet18", HASH_A) == model_id  # re-adding restores the row
    assert store.find_model(model_id)["deleted"] is False
    with pytest.raises(StoreError, match="no model with id 4242"):
        store.soft_delete_model(4242)


def test_device_and_environment_upserts(store: PerfDB) -> None:
    dev = store.upsert_device(DEVICE)
    assert store.upsert_device({**DEVICE, "name": "renamed", "cpu": {"cores": 4}}) == dev
    got = store.get_device(dev)
    assert got["name"] == "renamed" and got["descriptor"]["cpu"] == {"cores": 4}
    assert len(store.list_devices()) == 1
    # DeviceDescriptor.to_dict() has a fingerprint and no id
    assert store.upsert_device({"fingerprint": "abc123", "name": "n", "kind": "cpu"}) == "abc123"
    with pytest.raises(StoreError, match="fingerprint"):
        store.upsert_device({"name": "no id"})

    env1 = store.upsert_environment(ENV)
    assert store.upsert_environment(dict(reversed(list(ENV.items())))) == env1
    env2 = store.upsert_environment({**ENV, "onnxruntime": "1.33.0"})
    assert env2 != env1
    got_env = store.get_environment(env1)
    assert (got_env["python"], got_env["os"], got_env["kernel"]) == ("3.11.7", "Linux", "6.1.0")
    assert got_env["versions"]["torch"] == "2.13.0"


def test_concurrent_writers_all_land(db_url: str) -> None:
    with PerfDB.open(db_url) as db:
        model_id = db.add_model("m", HASH_A)
        dev_id = db.upsert_device(DEVICE)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            with PerfDB.open(db_url) as db:
                for i in range(8):
                    db.add_run(make_run(worker=worker, i=i, n_kernels=20), model_id, dev_id)
                    db.add_model(f"w{worker}", hashlib.sha256(f"{worker}-{i}".encode()).hexdigest())
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with PerfDB.open(db_url) as db:
        assert db.count_runs() == 24 and _count(db, "kernels") == 24 * 20
        assert [m["version"] for m in db.list_models(name="w1")] == list(range(1, 9))


# ------------------------------------------------------------------------------------- atomicity
_CHILD = r"""
import sys, time
from sqlalchemy import event
from inferperf.store.db import PerfDB

url, marker, mode = sys.argv[1:4]
db = PerfDB.open(url)
dev = db.upsert_device({"id": "fp-kill", "name": "k", "kind": "cpu"})
model = db.add_model("victim", "HASH_PLACEHOLDER")

def run(i, n):
    return {"config": {"runtime": "onnxruntime", "batch_size": 1, "i": i, "n_kernels": n}, "status": "ok",
            "latency_ms": {"p50": 1.0}, "samples_ms": [1.0] * 100,
            "kernels": [{"name": f"k{j}", "duration_ms": 0.01} for j in range(n)],
            "fusion_edges": [{"src": f"a{j}", "dst": f"b{j}", "fused": j % 2 == 0} for j in range(n)]}

if mode == "pause":
    @event.listens_for(db.engine, "after_cursor_execute")
    def _stall(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO KERNELS"):
            open(marker, "w").write("in transaction")
            time.sleep(600)
    db.add_run(run(0, 5000), model, dev)
else:
    i = 0
    while True:
        n = 200 + 97 * (i % 5)
        db.add_run(run(i, n), model, dev)
        i += 1
        open(marker, "w").write(str(i))
""".replace("HASH_PLACEHOLDER", HASH_A)


def _spawn(db_url: str, marker: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TMPDIR": "/tmp"}
    return subprocess.Popen([sys.executable, "-c", _CHILD, db_url, str(marker), mode], env=env,
                            stderr=subprocess.PIPE)


def _wait_for(marker: Path, child: subprocess.Popen[bytes], ready: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            pytest.fail(f"child exited early: {child.stderr.read().decode()[-2000:]}")
        if marker.exists() and ready(marker.read_text()):
            return
        time.sleep(0.02)
    child.kill()
    pytest.fail("child never reached the point to be killed at")


def _assert_complete_runs_only(db_url: str) -> int:
    with PerfDB.open(db_url) as db:  # opens fine after the kill
        if db.dialect == "sqlite":
            with db.engine.connect() as conn:
                assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
        runs = list(db.iter_runs_for_export(with_kernels=True))
        for r in runs:
            n = r["config"]["n_kernels"]
            assert len(r["kernels"]) == n and len(r["fusion_edges"]) == n, r["id"]
        total_kernels = _count(db, "kernels")
        assert total_kernels == sum(r["config"]["n_kernels"] for r in runs)  # no orphans either
        assert _count(db, "fusion_edges") == total_kernels
        return len(runs)


def test_killed_mid_transaction_leaves_nothing(db_url: str, tmp_path: Path) -> None:
    PerfDB.open(db_url).close()
    marker = tmp_path / "marker"
    child = _spawn(db_url, marker, "pause")
    _wait_for(marker, child, lambda s: s == "in transaction")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert _assert_complete_runs_only(db_url) == 0
    with PerfDB.open(db_url) as db:  # and the database still takes writes
        assert db.add_run(make_run(), db.add_model("after", HASH_B), db.upsert_device(DEVICE)) > 0


def test_killed_while_storing_many_runs_keeps_only_whole_runs(db_url: str, tmp_path: Path) -> None:
    PerfDB.open(db_url).close()
    marker = tmp_path / "marker"
    child = _spawn(db_url, marker, "loop")
    _wait_for(marker, child, lambda s: s.isdigit() and int(s) >= 4)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert _assert_complete_runs_only(db_url) >= 4


# ------------------------------------------------------------------------------------ opening, paths
def test_sqlite_is_opened_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    with PerfDB.open(str(tmp_path / "x.db")) as db, db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() > 0


def test_corrupt_or_unusable_databases_give_one_clear_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite at all " * 400)
    with pytest.raises(StoreError, match="not a valid SQLite database") as err:
        PerfDB.open(str(corrupt))
    assert "\n" not in str(err.value) and str(corrupt) in str(err.value)
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        PerfDB.open("mysql://u@localhost/db")
    with pytest.raises(StoreError, match="not a database URL"):
        PerfDB.open("postgresql://user@host:notaport/db")
    with pytest.raises(StoreError, match="cannot open"):
        PerfDB.open(f"sqlite:///{tmp_path}")  # a directory


def test_default_location_and_url_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("INFERPERF_HOME", str(home))
    monkeypatch.delenv("INFERPERF_DB", raising=False)
    with PerfDB.open() as db:
        db.upsert_device(DEVICE)
    assert (home / "perf.db").is_file()
    monkeypatch.setenv("INFERPERF_DB", str(tmp_path / "other.db"))
    assert resolve_db_url(None) == f"sqlite:///{tmp_path / 'other.db'}"
    assert resolve_db_url("postgres://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
    assert resolve_db_url("postgresql://h/db") == "postgresql+psycopg://h/db"
    assert resolve_db_url("sqlite:///abs.db") == "sqlite:///abs.db"
    assert resolve_db_url("rel/x.db") == f"sqlite:///{Path('rel/x.db').resolve()}"


def test_content_addressed_model_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INFERPERF_DB", raising=False)
    src = tmp_path / "net.onnx"
    src.write_bytes(os.urandom(3 * (1 << 20) + 17))  # spans several copy chunks
    h = put_model_file(src)
    assert h == hashlib.sha256(src.read_bytes()).hexdigest() == file_sha256(src)
    dest = model_file_path(h)
    assert dest == tmp_path / "home" / "models" / h[:2] / f"{h}.onnx"
    assert dest.read_bytes() == src.read_bytes()
    mtime = dest.stat().st_mtime_ns
    assert put_model_file(src) == h and dest.stat().st_mtime_ns == mtime  # stored once
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".tmp-")]
    with PerfDB.open() as db:  # a stored file becomes the model's file_path by default
        assert db.find_model(db.add_model("net", h))["file_path"] == str(dest)
    with pytest.raises(StoreError, match="not found"):
        put_model_file(tmp_path / "missing.onnx")
    with pytest.raises(StoreError, match="sha256"):
        model_file_path("../../etc/passwd")


# ----------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path))
    monkeypatch.delenv("INFERPERF_DB", raising=False)
    with PerfDB.open() as db:
        resnet = db.add_model("resnet18", HASH_A, family="resnet")
        bert = db.add_model("bert-tiny", HASH_B, family="bert")
        dev = db.upsert_device(DEVICE)
        env = db.upsert_environment(ENV)
        r1 = db.add_run(make_run(samples=[2.0, 2.5, 3.0]), resnet, dev, env)
        r2 = db.add_run(make_run(batch=8, threads=2, samples=[7.25, 7.5]), bert, dev, env)
        r3 = db.add_run(make_run(status="crashed"), bert, dev, env)
    return {"runs": [r1, r2, r3], "tmp": tmp_path}


def _invoke(*args: str) -> Any:
    from inferperf.cli.main import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "220"})


def test_cli_runs_list_table_and_json(cli_home: dict[str, Any]) -> None:
    r1, r2, r3 = cli_home["runs"]
    res = _invoke("runs", "list")
    assert res.exit_code == 0, res.output
    for needle in ("resnet18:1", "bert-tiny:1", "cpu-amd-epyc-2c", "crashed", "p50 ms", "7.5", "3 runs"):
        assert needle in res.output, needle
    res = _invoke("runs", "list", "--json")
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert [d["id"] for d in data] == [r3, r2, r1]
    assert data[1]["latency_ms"]["p50"] == 7.5 and data[1]["batch_size"] == 8
    only = json.loads(_invoke("runs", "list", "--model", "bert-tiny", "--limit", "1", "--json").output)
    assert [d["id"] for d in only] == [r3]
    res = _invoke("runs", "list", "--limit", "1")
    assert "1 of 3 runs" in res.output
    assert "no runs match" in _invoke("runs", "list", "--model", "vgg").output


def test_cli_runs_show(cli_home: dict[str, Any]) -> None:
    r1, _, r3 = cli_home["runs"]
    res = _invoke("runs", "show", str(r1), "--samples")
    assert res.exit_code == 0, res.output
    for needle in ("run " + str(r1), "resnet18:1", "p50", "2.5 ms", "slowest of 3 kernels", "node_2",
                   "3 raw samples", "fusion: 1 of 2", "estimate:tdp"):
        assert needle in res.output, needle
    data = json.loads(_invoke("runs", "show", str(r1), "--json", "--samples").output)
    assert data["samples_ms"] == [2.0, 2.5, 3.0] and len(data["kernels"]) == 3
    assert data["device_descriptor"]["cpu"] == DEVICE["cpu"]
    assert "samples_ms" not in json.loads(_invoke("runs", "show", str(r1), "--json").output)
    crashed = _invoke("runs", "show", str(r3))
    assert "no latency was measured" in crashed.output and "out of memory" in crashed.output
    missing = _invoke("runs", "show", "999")
    assert isinstance(missing.exception, StoreError) and "no run with id 999" in str(missing.exception)


def test_cli_db_current_and_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    res = _invoke("db", "current", "--db", url)
    assert res.exit_code == 0 and "not initialised" in res.output
    res = _invoke("db", "upgrade", "--db", url, "--json")
    assert json.loads(res.output) == {"url": url, "from": None, "to": migrate.head_revision(),
                                      "head": migrate.head_revision()}
    assert "up to date" in _invoke("db", "current", "--db", url).output
    assert "already at revision" in _invoke("db", "upgrade", "--db", url).output
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"x" * 5000)
    res = _invoke("runs", "list", "--db", str(bad))
    assert isinstance(res.exception, StoreError) and "not a valid SQLite database" in str(res.exception)


def test_cli_help_does_not_import_sqlalchemy() -> None:
    code = (
        "import sys; import inferperf.cli.main; "
        "bad = [m for m in ('sqlalchemy', 'alembic') if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_latency_helpers_format_missing_values_as_dash() -> None:
    from inferperf.cli.store import _ms, _pct

    assert _ms(None) == "-" and _pct(None) == "-"
    # three significant digits whatever the magnitude: sub-millisecond kernels must not print as 0.00
    assert [_ms(v) for v in (1.23456, 123.4, 0.0123456, 0.0000123)] == ["1.23", "123", "0.0123", "1.23e-05"]
    assert _pct(0.031) == "3.1%" and _ms(0.0) == "0"
