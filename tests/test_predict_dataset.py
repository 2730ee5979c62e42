"""The dataset container: splits by graph group, leave-family-out, JSON round trip, loading."""

from __future__ import annotations

import json

import pytest

from inferperf.dataset.core import DatasetError, GraphDataset, Sample, graph_fingerprint, load_dataset
from inferperf.predict.synthetic import FAMILIES, synthetic_dataset, synthetic_device, synthetic_graph


@pytest.fixture(scope="module")
def ds() -> GraphDataset:
    # 6 architectures x 2 batches x 2 thread counts per family: several samples per graph and per group
    return synthetic_dataset(per_family=6, batches=(1, 2), threads=(1, 2))


def test_summary_counts(ds: GraphDataset) -> None:
    s = ds.summary()
    assert s["n_samples"] == len(FAMILIES) * 6 * 2 * 2
    assert s["n_graphs"] == len(FAMILIES) * 6 * 2
    assert s["n_groups"] == len(FAMILIES) * 6
    assert set(s["families"]) == set(FAMILIES)
    assert all(f["graphs"] == 12 for f in s["families"].values())
    assert s["labels"]["latency_ms"] == len(ds)
    assert [d["id"] for d in s["devices"]] == ["synthetic-cpu-a"]


def test_random_split_keeps_groups_together_and_is_reproducible(ds: GraphDataset) -> None:
    train, dev, test = ds.random_split(seed=3)
    assert len(train) + len(dev) + len(test) == len(ds)
    groups = [{s.group_key for s in part} for part in (train, dev, test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    n_groups = sum(len(g) for g in groups)
    assert abs(len(groups[0]) / n_groups - 0.7) < 0.05
    again = ds.random_split(seed=3)
    assert [s.graph_key for s in again[2]] == [s.graph_key for s in test]
    other = ds.random_split(seed=4)
    assert {s.group_key for s in other[2]} != groups[2]


def test_random_split_gives_every_positive_part_a_group() -> None:
    small = synthetic_dataset(per_family=1, families=("mlp", "cnn", "resnet"), batches=(1,))
    parts = small.random_split(0, (0.9, 0.05, 0.05))
    assert [len({s.group_key for s in p}) for p in parts] == [1, 1, 1]
    with pytest.raises(DatasetError):
        small.random_split(0, (0.25, 0.25, 0.25, 0.25))


def test_leave_family_out(ds: GraphDataset) -> None:
    train, test = ds.leave_family_out("mobile")
    assert {s.family for s in test} == {"mobile"}
    assert "mobile" not in {s.family for s in train}
    assert len(train) + len(test) == len(ds)
    with pytest.raises(DatasetError, match="not in the dataset"):
        ds.leave_family_out("lstm")


def test_filter_and_slicing(ds: GraphDataset) -> None:
    one_thread = ds.filter(lambda s: s.config["intra_op_threads"] == 1)
    assert len(one_thread) == len(ds) // 2
    assert ds.filter(device="nope").samples == []
    assert len(ds.filter(families=["mlp", "cnn"], exclude_families=["cnn"])) == len(ds.filter(family="mlp"))
    assert isinstance(ds[:3], GraphDataset) and len(ds[:3]) == 3


def test_json_round_trip_stores_each_graph_once(ds: GraphDataset, tmp_path) -> None:  # noqa: ANN001
    path = ds.to_json(tmp_path / "d")
    doc = json.loads(path.read_text())
    assert len(doc["graphs"]) == len({s.graph_key for s in ds})
    back = load_dataset(tmp_path / "d")
    assert len(back) == len(ds)
    for a, b in zip(ds, back, strict=True):
        assert a.labels == pytest.approx(b.labels)
        assert (a.family, a.config, a.graph_key, a.group_key, a.device) == (
            b.family,
            b.config,
            b.graph_key,
            b.group_key,
            b.device,
        )
        assert a.graph.to_dict() == b.graph.to_dict()
    gz = ds[:5].to_json(tmp_path / "small.json.gz")
    assert len(GraphDataset.from_json(gz)) == 5


def test_load_dataset_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "missing")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DatasetError, match="not an inferperf graph dataset"):
        load_dataset(bad)


def test_sample_defaults_and_labels() -> None:
    g = synthetic_graph("mlp", 0, 1)
    s = Sample(
        graph=g,
        family="mlp",
        config={},
        device=synthetic_device(),
        labels={"latency_ms": 2.0, "memory_mb": 0.0, "energy_j": float("nan")},
    )
    assert s.graph_key == graph_fingerprint(g) == graph_fingerprint(synthetic_graph("mlp", 0, 1))
    assert graph_fingerprint(synthetic_graph("mlp", 0, 2)) != s.graph_key  # the batch changes the graph
    assert s.group_key == s.graph_key
    assert s.label("latency_ms") == 2.0
    assert s.label("memory_mb") is None and s.label("energy_j") is None and s.label("x") is None
    with pytest.raises(DatasetError):
        Sample(graph=g, family="mlp", config={}, device={"name": "no id"}, labels={})
