"""PerfDB → Parquet dataset → GraphDataset / PyG, on a small database filled through the PerfDB API.

The models are real (tiny ONNX graphs built with onnx.helper, ingested like `bench` does); the runs are
measurement dicts shaped like ``Measurement.to_dict()``. What matters: every stored run comes back as one
sample with its own labels, graphs are shared by key, nothing unmeasured turns into 0, an export never
half-overwrites a directory, and a model whose graph cannot be rebuilt is reported, not silently dropped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from inferperf.dataset.core import DatasetError, GraphDataset, load_dataset
from inferperf.dataset.export import (
    database_stats,
    export_dataset,
    graph_cache_path,
    graph_key,
    group_key,
)
from inferperf.dataset.parquet import dataset_stats, read_dataset, read_node_features
from inferperf.errors import ConfigError
from inferperf.ir.features import NODE_FEATURE_DIM, STATIC_FEATURE_DIM, node_feature_matrix
from inferperf.store.db import PerfDB
from inferperf.store.paths import model_file_path

# ---------------------------------------------------------------------------------------------- models


def _mlp(path: Path) -> Path:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(16, 32)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=(32,)).astype(np.float32), "b1")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w1, b1],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _cnn(path: Path) -> Path:
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["y"], name="flat"),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _store_model(db: PerfDB, path: Path, name: str, family: str | None, batch: int) -> dict[str, Any]:
    """What `bench` does: ingest at a batch size, store the file, record metadata and the graph summary
    (no graph cache: the export has to rebuild the graph from the stored file)."""
    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_model
    from inferperf.store.paths import put_model_file

    loaded = load_model(str(path), batch_size=batch)
    graph = build_graph(loaded.model, name, loaded.metadata)
    content_hash = put_model_file(loaded.path)
    summary = {k: v for k, v in graph.summary().items() if k not in ("inputs", "outputs")}
    model_id = db.add_model(
        name,
        content_hash,
        family=family,
        framework="onnx",
        input_spec=loaded.input_spec,
        graph_summary=summary,
    )
    return {
        "id": model_id,
        "hash": content_hash,
        "nodes": len(graph.nodes),
        "edges": len(graph.edges),
        "graph": graph,
    }


# ---------------------------------------------------------------------------------------------- runs


def make_run(
    *,
    batch: int = 1,
    threads: int = 1,
    status: str = "ok",
    p50: float = 1.0,
    profiled: bool = True,
    energy_source: str = "estimate",
    nodes: tuple[str, ...] = ("mm", "add", "relu"),
) -> dict[str, Any]:
    """A measurement dict in the shape of ``Measurement.to_dict()``."""
    failed = status in ("failed", "timeout", "crashed")
    samples = [p50 * (0.95 + 0.002 * i) for i in range(50)]
    return {
        "config": {
            "runtime": "onnxruntime",
            "batch_size": batch,
            "intra_op_threads": threads,
            "inter_op_threads": 1,
            "opt_level": "all",
            "provider": "cpu",
            "precision": "fp32",
            "execution_mode": "sequential",
            "protocol": {"min_repeats": 10},
        },
        "status": status,
        "valid": status == "ok",
        "invalid_reasons": [] if status == "ok" else [status],
        "error": "MemoryError" if failed else None,
        "latency_ms": None
        if failed
        else {
            "p50": p50,
            "p90": p50 * 1.1,
            "p95": p50 * 1.15,
            "p99": p50 * 1.3,
            "p999": p50 * 1.4,
            "mean": p50 * 1.02,
            "min": p50 * 0.95,
            "max": p50 * 1.5,
            "std": p50 * 0.05,
        },
        "cv": None if failed else 0.05,
        "ci95_ms": None if failed else [p50 * 0.99, p50 * 1.01],
        "n_samples": 0 if failed else len(samples),
        "samples_ms": [] if failed else samples,
        "throughput": None if failed else batch / p50 * 1000,
        "cold_start_ms": 50.0,
        "session_create_ms": 30.0,
        "first_inference_ms": 20.0,
        "memory_mb": None if failed else 10.0 + batch,
        "peak_rss_mb": None if failed else 200.0,
        "arena_mb": None,
        "energy_j": None if failed else 0.002 * p50,
        "energy_source": None if failed else energy_source,
        "power_w": None if failed else 2.0,
        "cpu_util": None if failed else 0.9,
        "kernels": None
        if failed or not profiled
        else [
            {
                "name": f"{n}_kernel",
                "op_type": "Op",
                "kernel_type": "Fused" if i == 0 else n,
                "provider": "CPUExecutionProvider",
                "duration_ms": 0.1 * (i + 1),
                "covered_nodes": [n],
            }
            for i, n in enumerate(nodes)
        ],
        "fusion_edges": None
        if failed or not profiled
        else [
            {"src": nodes[i], "dst": nodes[i + 1], "tensor": f"t{i}", "fused": i == 0}
            for i in range(len(nodes) - 1)
        ],
        "provenance": {"seed": 0, "memory_method": "heap", "background_cpu": 0.01},
        "started_at": "2025-03-01T12:00:00+00:00",
        "duration_s": 1.0,
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("INFERPERF_HOME", str(h))
    monkeypatch.delenv("INFERPERF_DB", raising=False)
    return h


@pytest.fixture(scope="module")
def real_device() -> dict[str, Any]:
    from inferperf.device import describe_device

    d = describe_device(threads=1, measure_ceilings=False)
    return {**d.to_dict(), "id": d.fingerprint}


@pytest.fixture
def populated(home: Path, tmp_path: Path, real_device: dict[str, Any], db_url: str) -> dict[str, Any]:
    """Two families, three graphs (mlp at batch 1 and 4, a zoo-named cnn), valid + invalid runs, two devices
    (one with a full descriptor, one hand-written); on SQLite and PostgreSQL (``db_url`` from conftest)."""
    url = db_url
    mlp_file, cnn_file = _mlp(tmp_path / "mlp.onnx"), _cnn(tmp_path / "cnn.onnx")
    with PerfDB.open(url) as db:
        dev = db.upsert_device(real_device)
        fake = db.upsert_device({"id": "fake-gpu-1", "name": "handwritten", "kind": "gpu"})
        env = db.upsert_environment({"python": "3.11", "onnxruntime": "1.32.0"})
        mlp1 = _store_model(db, mlp_file, "mlp", "mlp", 1)
        mlp4 = _store_model(db, mlp_file, "mlp", "mlp", 4)
        cnn = _store_model(db, cnn_file, "cnn/s00001-abcd1234-b1", "cnn", 1)
        cnn_nodes = ("conv", "relu", "gap", "flat")
        runs = {
            "mlp1_t1": db.add_run(make_run(p50=1.0), mlp1["id"], dev, env),
            "mlp1_t2": db.add_run(make_run(threads=2, p50=0.7, energy_source="rapl"), mlp1["id"], dev, env),
            "mlp4": db.add_run(make_run(batch=4, p50=2.5, profiled=False), mlp4["id"], dev, env),
            "cnn": db.add_run(make_run(p50=3.0, nodes=cnn_nodes), cnn["id"], dev, env),
            "cnn_fake": db.add_run(make_run(p50=0.3, nodes=cnn_nodes), cnn["id"], fake, env),
            "cnn_failed": db.add_run(make_run(status="failed"), cnn["id"], dev, env),
            "cnn_unstable": db.add_run(
                make_run(status="unstable", p50=3.3, nodes=cnn_nodes), cnn["id"], dev, env
            ),
        }
    return {
        "url": url,
        "device": dev,
        "fake": fake,
        "models": {"mlp1": mlp1, "mlp4": mlp4, "cnn": cnn},
        "runs": runs,
        "valid": {"mlp1_t1", "mlp1_t2", "mlp4", "cnn", "cnn_fake"},
    }


# ---------------------------------------------------------------------------------------------- tests


def test_export_round_trip(populated: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "ds"
    meta = export_dataset(populated["url"], out)
    runs, models = populated["runs"], populated["models"]
    assert meta["counts"]["runs"] == len(populated["valid"])
    assert meta["counts"]["graphs"] == 3
    assert meta["counts"]["nodes"] == sum(m["nodes"] for m in models.values())
    assert meta["counts"]["edges"] == sum(m["edges"] for m in models.values())
    assert meta["families"] == {"cnn": 2, "mlp": 3}
    assert set(json.loads((out / "devices.json").read_text())) == {populated["device"], populated["fake"]}
    # the hand-written device has no features, and the export says so instead of writing zeros
    assert any("fake-gpu-1" in w for w in meta["warnings"])

    ds = read_dataset(out)
    assert isinstance(ds, GraphDataset) and len(ds) == len(populated["valid"])
    by_run = {s.run_id: s for s in ds}
    assert set(by_run) == {runs[k] for k in populated["valid"]}
    assert len(ds.graph_keys()) == 3
    # labels are the run's own numbers; estimated energy is not passed off as a measured energy label
    s1, s2 = by_run[runs["mlp1_t1"]], by_run[runs["mlp1_t2"]]
    assert s1.labels["latency_ms"] == pytest.approx(1.0) and s2.labels["latency_ms"] == pytest.approx(0.7)
    assert s1.labels["latency_p99_ms"] == pytest.approx(1.3)
    assert s1.labels["memory_mb"] == pytest.approx(11.0)
    assert "energy_j" not in s1.labels and s1.labels["energy_j_estimate"] == pytest.approx(0.002)
    assert s2.labels["energy_j"] == pytest.approx(0.0014)
    assert s1.config["intra_op_threads"] == 1 and s2.config["intra_op_threads"] == 2
    assert s1.config["valid"] is True and s1.config["status"] == "ok"
    # one graph shared by the two runs of the same bytes; batch 4 is another graph of the same group
    assert s1.graph is s2.graph and s1.graph_key == graph_key(models["mlp1"]["hash"], 1)
    s4 = by_run[runs["mlp4"]]
    assert s4.graph_key != s1.graph_key and s4.group_key == s1.group_key == "mlp"
    assert s4.graph.batch_size == 4 and s1.graph.batch_size == 1
    cnn = by_run[runs["cnn"]]
    assert cnn.family == "cnn" and cnn.group_key == "cnn/s00001-abcd1234"
    assert [n.op_type for n in cnn.graph.nodes] == ["Conv", "Relu", "GlobalAveragePool", "Flatten"]
    assert cnn.graph.macs == models["cnn"]["graph"].macs > 0
    # kernels in execution order with their covered nodes; an unprofiled run has None, not []
    assert [k["name"] for k in cnn.kernels] == ["conv_kernel", "relu_kernel", "gap_kernel", "flat_kernel"]
    assert cnn.kernels[2]["duration_ms"] == pytest.approx(0.3) and cnn.kernels[0]["covered_nodes"] == ["conv"]
    assert [e["fused"] for e in cnn.fusion_edges] == [True, False, False]
    assert s4.kernels is None and s4.fusion_edges is None
    # devices: real descriptor → named features; hand-written → empty features
    assert s1.device["features"]["cpu_logical_cpus"] >= 1
    assert by_run[runs["cnn_fake"]].device["features"] == {}


def test_tables_hold_consistent_features(populated: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "ds"
    export_dataset(populated["url"], out)
    graphs = pq.read_table(out / "graphs.parquet").to_pylist()
    assert len({g["graph_key"] for g in graphs}) == len(graphs) == 3
    assert all(len(g["static_features"]) == STATIC_FEATURE_DIM for g in graphs)
    stored = read_node_features(out)
    ds = read_dataset(out)
    for s in ds:
        np.testing.assert_allclose(stored[s.graph_key], node_feature_matrix(s.graph), rtol=1e-6)
        assert stored[s.graph_key].shape == (len(s.graph.nodes), NODE_FEATURE_DIM)
    edges = pq.read_table(out / "edges.parquet").to_pylist()
    cnn_key = graph_key(populated["models"]["cnn"]["hash"], 1)
    cnn_edges = [(e["src"], e["dst"]) for e in edges if e["graph_key"] == cnn_key]
    assert cnn_edges == [(0, 1), (1, 2), (2, 3)]
    assert all(e["bytes"] > 0 for e in edges)
    runs = pq.read_table(out / "runs.parquet").to_pylist()
    assert {r["group_key"] for r in runs} == {"mlp", "cnn/s00001-abcd1234"}
    assert all(json.loads(r["config_json"])["runtime"] == "onnxruntime" for r in runs)
    # load_dataset (the predictors' entry point) finds the Parquet reader for a directory
    assert len(load_dataset(out)) == len(ds)


def test_all_runs_and_no_kernels(populated: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "all"
    meta = export_dataset(populated["url"], out, valid_only=False, with_kernels=False)
    assert meta["counts"]["runs"] == len(populated["runs"])
    assert meta["counts"]["kernels"] == meta["counts"]["fusion_edges"] == 0
    by_run = {s.run_id: s for s in read_dataset(out)}
    failed = by_run[populated["runs"]["cnn_failed"]]
    assert failed.config["status"] == "failed" and failed.config["valid"] is False
    assert "latency_ms" not in failed.labels and "memory_mb" not in failed.labels  # missing, never 0
    assert failed.label("latency_ms") is None
    assert by_run[populated["runs"]["cnn"]].kernels is None  # not exported, so not claimed empty
    assert len(read_dataset(out, valid_only=True)) == len(populated["valid"])


def test_device_filter_and_deleted_models(populated: dict[str, Any], tmp_path: Path) -> None:
    meta = export_dataset(populated["url"], tmp_path / "fake", device=populated["fake"])
    assert meta["counts"]["runs"] == 1 and meta["counts"]["devices"] == 1
    with PerfDB.open(populated["url"]) as db:
        db.soft_delete_model(populated["models"]["mlp4"]["id"], force=True)
    meta = export_dataset(populated["url"], tmp_path / "no-deleted")
    assert meta["counts"]["runs"] == len(populated["valid"]) - 1
    assert meta["skipped"]["reasons"] == {"deleted_model": 1}
    meta = export_dataset(populated["url"], tmp_path / "with-deleted", include_deleted=True)
    assert meta["counts"]["runs"] == len(populated["valid"])


def test_stats_from_database_and_directory_agree(populated: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "ds"
    export_dataset(populated["url"], out)
    from_db = database_stats(populated["url"], valid_only=True)
    from_dir = dataset_stats(out)
    for key in (
        "graphs",
        "runs",
        "families",
        "devices",
        "valid_runs",
        "kernels",
        "batch_sizes",
        "family_graphs",
    ):
        assert from_db[key] == from_dir[key], key
    assert from_dir["graphs"] == 3 and from_dir["runs"] == 5
    assert from_dir["families"] == {"cnn": 2, "mlp": 3}
    assert from_dir["family_graphs"] == {"cnn": 1, "mlp": 2}
    assert from_dir["batch_sizes"] == {"1": 4, "4": 1}
    assert {d["id"] for d in from_dir["devices"]} == {populated["device"], populated["fake"]}
    everything = database_stats(populated["url"])
    assert everything["runs"] == len(populated["runs"]) and everything["valid_runs"] == 5


def test_reexport_replaces_atomically_and_refuses_foreign_dirs(
    populated: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    export_dataset(populated["url"], out, device=populated["fake"])
    assert len(read_dataset(out)) == 1
    export_dataset(populated["url"], out)
    assert len(read_dataset(out)) == len(populated["valid"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")) == []  # no temp leftovers

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="refusing to overwrite"):
        export_dataset(populated["url"], foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    # a failure in the middle leaves the previous export in place
    with pytest.raises(ValueError, match="boom"):
        export_dataset(
            populated["url"],
            out,
            device=populated["fake"],
            progress=lambda done, total: (_ for _ in ()).throw(ValueError("boom")),
        )
    assert len(read_dataset(out)) == len(populated["valid"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")] == []


def test_graph_cache_and_missing_model_files(
    populated: dict[str, Any], tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_dataset(populated["url"], tmp_path / "first")
    cnn_hash = populated["models"]["cnn"]["hash"]
    assert graph_cache_path(cnn_hash).is_file()

    import inferperf.ir.ingest as ingest

    def no_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cached graph should have been used")

    with monkeypatch.context() as m:
        m.setattr(ingest, "load_onnx_file", no_loading)
        meta = export_dataset(populated["url"], tmp_path / "cached")
    assert meta["counts"]["graphs"] == 3

    # a model whose file left the store: its runs are skipped and the reason recorded
    model_file_path(cnn_hash).unlink()
    graph_cache_path(cnn_hash).unlink()
    meta = export_dataset(populated["url"], tmp_path / "missing")
    assert meta["counts"]["runs"] == 3 and meta["counts"]["graphs"] == 2
    assert meta["skipped"]["reasons"] == {"graph_unavailable": 2}
    (skipped,) = meta["skipped"]["graphs"]
    assert skipped["runs"] == 2 and "not in the model store" in skipped["reason"]


def test_group_and_graph_keys() -> None:
    assert group_key("mlp/s00003-0badf00d-b16") == "mlp/s00003-0badf00d"
    assert group_key("resnet50") == "resnet50" and group_key("model-b1x") == "model-b1x"
    h = "ab" * 32
    assert graph_key(h, 1) != graph_key(h, 2) and graph_key(h.upper(), 1) == graph_key(h, 1)


def test_read_errors_are_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no meta.json"):
        read_dataset(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "meta.json").write_text(json.dumps({"format": "inferperf-parquet-dataset", "format_version": 99}))
    with pytest.raises(DatasetError, match="version 99"):
        read_dataset(bad)


def test_cli_export_and_stats(populated: dict[str, Any], tmp_path: Path) -> None:
    import inferperf.cli.dataset  # noqa: F401  (registers the sub-command)
    from inferperf.cli.main import app

    runner = CliRunner()
    out = tmp_path / "cli-ds"
    res = runner.invoke(app, ["dataset", "export", "--out", str(out), "--db", populated["url"], "--json"])
    assert res.exit_code == 0, res.output
    meta = json.loads(res.stdout)
    assert meta["counts"]["runs"] == 5 and meta["path"] == str(out.absolute())
    for args in (["--dataset", str(out)], ["--db", populated["url"], "--valid-only"]):
        res = runner.invoke(app, ["dataset", "stats", *args, "--json"])
        assert res.exit_code == 0, res.output
        stats = json.loads(res.stdout)
        assert {"graphs", "runs", "families", "devices"} <= set(stats)
        assert (stats["graphs"], stats["runs"], stats["families"]) == (3, 5, {"cnn": 2, "mlp": 3})
    res = runner.invoke(app, ["dataset", "stats", "--dataset", str(out)])
    assert res.exit_code == 0 and "3 graphs, 5 runs (5 valid" in " ".join(res.stdout.split())
    res = runner.invoke(app, ["dataset", "stats", "--dataset", str(out), "--db", populated["url"]])
    assert isinstance(res.exception, ConfigError)


def test_pyg_conversion(populated: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("torch_geometric")
    from inferperf.dataset.parquet import ParquetGraphDataset, to_pyg_list
    from inferperf.device.descriptor import DEVICE_FEATURE_NAMES

    out = tmp_path / "ds"
    export_dataset(populated["url"], out)
    ds = read_dataset(out)
    sample = next(s for s in ds if s.run_id == populated["runs"]["cnn"])
    (data,) = to_pyg_list([sample])
    assert tuple(data.x.shape) == (4, NODE_FEATURE_DIM)
    assert data.edge_index.tolist() == [[0, 1, 2], [1, 2, 3]]
    assert tuple(data.static.shape) == (1, STATIC_FEATURE_DIM)
    assert data.y[0, 0].item() == pytest.approx(3.0)  # latency_ms
    assert data.y[0, 1].item() == pytest.approx(11.0)  # memory_mb
    assert math.isnan(data.y[0, 2].item())  # energy was only estimated: masked, not 0
    assert tuple(data.device_x.shape) == (1, len(DEVICE_FEATURE_NAMES))

    pyg = ParquetGraphDataset(out)
    assert len(pyg) == len(ds) and not pyg.features_recomputed
    assert {int(pyg[i].num_nodes) for i in range(len(pyg))} == {3, 4}


def test_dataset_from_db_matches_the_export(populated: dict[str, Any], tmp_path: Path) -> None:
    from inferperf.dataset.export import dataset_from_db

    export_dataset(populated["url"], tmp_path / "ds")
    exported = {s.run_id: s for s in read_dataset(tmp_path / "ds")}
    direct = {s.run_id: s for s in dataset_from_db(populated["url"])}
    assert set(direct) == set(exported)
    for run_id, s in direct.items():
        assert s.labels == exported[run_id].labels and s.graph_key == exported[run_id].graph_key
        assert s.kernels is None  # kernels are left out unless asked for


def test_an_rss_memory_figure_is_not_a_training_label():
    from inferperf.dataset.parquet import sample_labels

    row = {"latency_p50_ms": 2.0, "memory_mb": 0.0, "memory_method": "rss-vmhwm"}
    assert "memory_mb" not in sample_labels(row) and sample_labels(row)["latency_ms"] == 2.0
    assert sample_labels({**row, "memory_mb": 12.5, "memory_method": "heap"})["memory_mb"] == 12.5


def test_an_unstable_run_is_trusted_only_when_its_median_is_precise():
    from inferperf.dataset.parquet import trusted_label

    base = {"status": "unstable", "valid": False, "latency_p50_ms": 10.0, "n_samples": 200}
    assert trusted_label({**base, "ci95_lo_ms": 9.9, "ci95_hi_ms": 10.15})
    assert not trusted_label({**base, "ci95_lo_ms": 9.5, "ci95_hi_ms": 10.1})  # 5% below
    assert not trusted_label({**base, "ci95_lo_ms": 9.9, "ci95_hi_ms": 10.1, "n_samples": 12})
    assert not trusted_label({**base, "status": "failed", "ci95_lo_ms": 9.99, "ci95_hi_ms": 10.01})
    assert trusted_label({"status": "ok", "valid": True})


def test_a_run_timed_on_a_busy_machine_is_not_trusted():
    from inferperf.dataset.parquet import trusted_label

    assert trusted_label({"status": "ok", "valid": True, "background_cpu": 0.05})
    assert not trusted_label({"status": "ok", "valid": True, "background_cpu": 0.9})


def test_run_row_exports_the_speed_probe_of_this_probe_version_only() -> None:
    from inferperf.dataset.export import run_row
    from inferperf.measure.speed_probe import PROBE_VERSION

    run = {**make_run(), "id": 1}
    run["provenance"]["speed_probe"] = {"version": PROBE_VERSION, "median_ms": 0.93, "age_s": 4.0}
    assert run_row(run, "k", "g", "mlp")["speed_probe_ms"] == 0.93
    run["provenance"]["speed_probe"]["version"] = PROBE_VERSION + 1  # another workload: not comparable
    assert run_row(run, "k", "g", "mlp")["speed_probe_ms"] is None
    del run["provenance"]["speed_probe"]  # collected before the probe existed
    assert run_row(run, "k", "g", "mlp")["speed_probe_ms"] is None
