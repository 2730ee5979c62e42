"""Fusion / kernel labels from profiled runs, resource features, and loading straight from a PerfDB."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from inferperf.dataset.core import Sample
from inferperf.ir.build import build_graph
from inferperf.predict.fusion.data import (
    STRUCTURAL_FEATURE_NAMES,
    compute_share,
    edge_examples,
    graph_labels,
    kernel_duration_ms,
    kernel_examples,
    load_perfdb,
    profiled_sample,
    resource_features,
    structural_node_features,
)
from inferperf.predict.fusion.toy import toy_model

os.environ.setdefault("TMPDIR", "/tmp")


@pytest.fixture(scope="module")
def attention_sample() -> Sample:
    model, meta = toy_model("toy_attention", 0)
    return profiled_sample(model, "toy_attention", metadata=meta, runs=4, warmup=1)


def test_labels_of_a_real_profile_are_consistent(attention_sample: Sample) -> None:
    s = attention_sample
    lab = graph_labels(s)
    assert lab is not None and lab.unknown_nodes == []
    # ORT inserts Reshapes around MatMul+Add→Gemm that compute no original node: their time is kept
    assert lab.n_glue > 0
    total = sum(kernel_duration_ms(k) for k in s.kernels)
    assert sum(k.duration_ms for k in lab.kernels) == pytest.approx(total)
    assert lab.kernel_sum_ms == pytest.approx(total)
    assert sum(k.glue_ms for k in lab.kernels) > 0
    # the fusion_edges labels agree with the partition the kernels imply
    owner = np.full(len(s.graph.nodes), -1)
    for i, k in enumerate(lab.kernels):
        owner[k.nodes] = i
    implied = np.array([1.0 if owner[e.src] >= 0 and owner[e.src] == owner[e.dst] else 0.0 for e in s.graph.edges])
    assert np.array_equal(lab.edge_fused, implied)
    assert lab.executed.sum() == sum(len(k.nodes) for k in lab.kernels)


def _sample_with(kernels: list[dict[str, Any]]) -> Sample:
    model, meta = toy_model("toy_cnn", 0)
    graph = build_graph(model, "g", meta, infer=True)
    return Sample(graph=graph, family="toy_cnn", config={}, device={"id": "d", "features": {}}, labels={},
                  kernels=kernels)


def test_glue_kernels_go_to_the_kernel_they_serve() -> None:
    probe = _sample_with([])
    a, b = probe.graph.nodes[0].name, probe.graph.nodes[2].name
    kernels = [
        {"ordinal": 0, "name": "ReorderInput", "kernel_type": "Data:ReorderInput", "covered_nodes": [],
         "duration_ms": 0.5},
        {"ordinal": 1, "name": "k1", "kernel_type": "Conv", "covered_nodes": [a], "duration_ms": 1.0,
         "duration_ms_runs": [1.0, 1.0, 9.0]},  # a preempted run does not move the median
        {"ordinal": 2, "name": "ReorderOutput_x", "kernel_type": "Data:ReorderOutput", "covered_nodes": [],
         "duration_ms": 0.25},
        {"ordinal": 3, "name": "gemm_input_reshape", "kernel_type": "Data:Reshape", "covered_nodes": [],
         "duration_ms": 0.125},
        {"ordinal": 4, "name": "k2", "kernel_type": "MaxPool", "covered_nodes": [b], "duration_ms": 2.0},
    ]
    lab = graph_labels(_sample_with(kernels))
    assert [k.own_ms for k in lab.kernels] == [1.0, 2.0]
    # ReorderInput (before k1) → k1; ReorderOutput → the kernel before it (k1); the input reshape → k2
    assert lab.kernels[0].glue_ms == pytest.approx(0.75)
    assert lab.kernels[1].glue_ms == pytest.approx(0.125)
    assert lab.n_glue == 3
    assert graph_labels(_sample_with([])) is None


def test_compute_share_cpu_affinity_and_gpu_mps() -> None:
    cpu = {"id": "c", "features": {"is_gpu": 0.0, "cpu_logical_cpus": 8.0, "cpu_physical_cores": 4.0}}
    assert compute_share({"intra_op_threads": 2}, cpu) == 0.25
    assert compute_share({"intra_op_threads": 16}, cpu) == 1.0
    assert compute_share({"intra_op_threads": 4, "affinity": [0, 1]}, cpu) == 0.25
    gpu = {"id": "g", "features": {"is_gpu": 1.0, "gpu_mps_share": 30.0}}
    assert compute_share({}, gpu) == pytest.approx(0.3)
    assert compute_share({}, {"id": "g", "features": {"is_gpu": 1.0, "gpu_mps_share": 0.5}}) == 0.5
    assert compute_share({}, {"id": "g", "features": {"is_gpu": 1.0}}) == 1.0  # no MPS: the whole GPU
    r = resource_features({"intra_op_threads": 4, "opt_level": "basic"}, cpu)
    assert r.tolist() == [0.5, 2.0, 1.0, 0.0]


def test_structural_features_mark_static_shape_chains() -> None:
    model, meta = toy_model("toy_mlp", 0)
    g = build_graph(model, "g", meta, infer=True)
    feats = structural_node_features(g)
    static = {n.name for n, f in zip(g.nodes, feats, strict=True) if f[3] == 1.0}
    assert {g.nodes[i].op_type for i in range(4)} == {"Shape", "Gather", "Unsqueeze", "Concat"}
    assert static == {g.nodes[i].name for i in range(4)}
    assert feats[:, 2].sum() == 1.0  # one node produces the graph output
    assert not feats[:, STRUCTURAL_FEATURE_NAMES.index("near_gelu_core")].any()  # no Erf / Tanh in an MLP


def test_examples_merge_repeated_runs(attention_sample: Sample) -> None:
    s = attention_sample
    flipped = [dict(e, fused=not e["fused"]) if i == 0 else dict(e) for i, e in enumerate(s.fusion_edges)]
    again = Sample(s.graph, s.family, dict(s.config), s.device, s.labels, s.kernels, flipped)
    third = Sample(s.graph, s.family, dict(s.config), s.device, s.labels, s.kernels, s.fusion_edges)
    ex = edge_examples([s, again, third])
    assert len(ex) == 1  # one graph, one fusion-relevant configuration
    assert np.array_equal(ex[0].edge_fused, graph_labels(s).edge_fused)  # the majority wins
    other_opt = Sample(s.graph, s.family, {**s.config, "opt_level": "basic"}, s.device, s.labels, s.kernels,
                       s.fusion_edges)
    assert len(edge_examples([s, other_opt])) == 2
    assert len(kernel_examples([s])) == len(graph_labels(s).kernels)


def test_load_perfdb_keeps_kernels_and_skips_missing_graphs(tmp_path: Path, attention_sample: Sample,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from inferperf.device import describe_device
    from inferperf.store import PerfDB
    from inferperf.store.paths import put_model_file

    home = tmp_path / "home"
    monkeypatch.setenv("INFERPERF_HOME", str(home))
    model, meta = toy_model("toy_attention", 0)
    path = tmp_path / "att.onnx"
    onnx.save(model, str(path))
    s = attention_sample
    desc = describe_device(threads=1, measure_ceilings=False)
    run = {
        "config": {"runtime": "onnxruntime", "batch_size": 1, "intra_op_threads": 1, "opt_level": "all",
                   "provider": "cpu", "precision": "fp32"},
        "status": "ok", "valid": True, "invalid_reasons": [], "error": None,
        "latency_ms": {"p50": 0.5, "p90": 0.6, "mean": 0.52}, "cv": 0.02, "n_samples": 10,
        "kernels": s.kernels, "fusion_edges": s.fusion_edges, "provenance": {},
        "started_at": "2026-01-01T00:00:00+00:00", "duration_s": 1.0,
    }
    url = f"sqlite:///{tmp_path / 'perf.db'}"
    with PerfDB.open(url) as db:
        dev = db.upsert_device({**desc.to_dict(), "id": desc.fingerprint})
        env = db.upsert_environment({"python": "3.11"})
        content_hash = put_model_file(str(path))
        summary = {k: v for k, v in s.graph.summary().items() if k not in ("inputs", "outputs")}
        model_id = db.add_model("toy_attention/s0-b1", content_hash, family="toy_attention", framework="onnx",
                                graph_summary=summary)
        db.add_run(run, model_id, dev, env)
        orphan = db.add_model("gone/s0-b1", "ab" * 32, family="gone", framework="onnx", graph_summary=summary)
        db.add_run(run, orphan, dev, env)
    dataset, report = load_perfdb(tmp_path / "perf.db", home=home)
    assert report["skipped"] == {"graph_unavailable": 1}
    assert len(dataset) == 1
    got = dataset[0]
    assert got.family == "toy_attention" and got.label("latency_ms") == 0.5
    assert got.device["features"]["cpu_logical_cpus"] == desc.cpu.logical_cpus
    lab = graph_labels(got)
    assert lab is not None and len(lab.kernels) == len(graph_labels(s).kernels)
    assert all(math.isfinite(k.duration_ms) for k in lab.kernels)
    with pytest.raises(Exception, match="not found"):
        load_perfdb(tmp_path / "missing.db")
