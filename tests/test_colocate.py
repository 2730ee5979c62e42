"""Co-location: measuring models in separate processes, the pair/trio dataset, the slowdown predictor, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from inferperf.colocate import (
    ColocationDataset,
    ColocationResult,
    ColoExample,
    ColoModel,
    MemberResult,
    SlowdownPredictor,
    collect,
    evaluate_unseen_groups,
    measure_colocation,
    plan_cores,
)
from inferperf.colocate.measure import parse_cores, parse_split
from inferperf.errors import ConfigError
from inferperf.ir.build import build_graph
from inferperf.predict.fusion.toy import toy_model

os.environ.setdefault("TMPDIR", "/tmp")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[ColoModel]:
    out = []
    root = tmp_path_factory.mktemp("colo")
    for fam in ("toy_attention", "toy_cnn", "toy_resnet"):
        model, meta = toy_model(fam, 1)
        path = root / f"{fam}.onnx"
        onnx.save(model, str(path))
        out.append(ColoModel(fam, str(path), build_graph(model, fam, meta, infer=True), fam))
    return out


def test_two_models_in_separate_processes(models: list[ColoModel]) -> None:
    a, b = models[0], models[1]
    result = measure_colocation([a.path, b.path], threads=[1, 1], duration_s=0.4, names=[a.name, b.name])
    assert [m.model for m in result.members] == [a.name, b.name]
    for m in result.members:
        assert m.solo_n > 0 and m.colocated_n > 0
        assert m.solo_ms > 0 and m.colocated_ms > 0
        assert 0.2 < m.slowdown < 50 and math.isfinite(m.slowdown_mean)  # sanity only: timings are noisy here
    again = ColocationResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.members[0].slowdown == result.members[0].slowdown


def test_sharing_one_core_slows_down_on_average(models: list[ColoModel]) -> None:
    """Two processes time-slicing one core each get about half of it: the mean latency per inference,
    which counts the inferences the other process preempted, cannot come out faster than alone."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    result = measure_colocation([models[0].path, models[0].path], cores=[[cpu], [cpu]], duration_s=0.4,
                                names=["first", "second"])
    assert all(m.cores == [cpu] for m in result.members)
    assert all(m.slowdown_mean >= 1.0 for m in result.members), [m.slowdown_mean for m in result.members]


def test_planning_and_parsing() -> None:
    assert plan_cores([1, 1], allowed=[0, 1]) == [[0], [1]]
    assert plan_cores([1, 1, 1], allowed=[0, 1]) == [[0], [1], [0]]  # the third model wraps onto core 0
    assert plan_cores([2, 1], allowed=[4, 5]) == [[4, 5], [4]]
    assert parse_split("2,1", 2) == [2, 1] and parse_split(None, 3) == [1, 1, 1]
    assert parse_cores("0,1;1", 2) == [[0, 1], [1]] and parse_cores(None, 2) is None
    for bad in ("1", "a,b", "0,1"):  # wrong count, not integers, zero threads
        with pytest.raises(ConfigError):
            parse_split(bad, 2)
    with pytest.raises(ConfigError):
        measure_colocation(["only-one.onnx"])


def test_collect_pairs_and_trios_resumably(models: list[ColoModel], tmp_path: Path) -> None:
    out = tmp_path / "ds"
    ds = collect(models, out, pairs=2, trios=1, duration_s=0.2, seed=1)
    records = ds.records()
    assert sorted(len(r["members"]) for r in records) == [2, 2, 3]
    examples = ds.examples()
    assert len(examples) == 7
    assert [len(e.others) for e in examples] == [1, 1, 1, 1, 2, 2, 2]
    again = collect(models, out, pairs=2, trios=1, duration_s=0.2, seed=1)
    assert len(again.records()) == 3  # nothing measured twice
    assert ColocationDataset(out).graph(models[0].name).name == models[0].graph.name


def _synthetic_examples(models: list[ColoModel], n_groups: int = 40) -> list[ColoExample]:
    """A made-up interference law: sharing a core costs ×1.8, and heavier co-runners cost more."""
    rng = np.random.default_rng(0)
    graphs = [m.graph for m in models]
    out = []
    for g in range(n_groups):
        size = 2 + (g % 2)
        members = [int(i) for i in rng.choice(len(graphs), size=size)]
        shared = int(rng.integers(0, 2))
        for i, idx in enumerate(members):
            others = [graphs[j] for k, j in enumerate(members) if k != i]
            load = sum(o.flops for o in others) / (graphs[idx].flops + sum(o.flops for o in others))
            slowdown = (1.8 if shared else 1.0) * (1.0 + 0.3 * load)
            out.append(ColoExample(graphs[idx], others, 1, [1] * len(others), shared * len(others), 2, slowdown,
                                   f"group{g}", models[idx].name))
    return out


def test_slowdown_predictor_learns_and_round_trips(models: list[ColoModel], tmp_path: Path) -> None:
    examples = _synthetic_examples(models)
    report = evaluate_unseen_groups(examples, seeds=(0,), depths=(1,), alphas=(0.01, 1.0))
    mlp, const = report["models"]["mlp"]["mape"]["mean"], report["models"]["constant"]["mape"]["mean"]
    assert mlp < const / 2, report["models"]
    model = SlowdownPredictor(kind="mlp", depths=(1, 2), alphas=(0.01, 1.0)).fit(examples)
    path = model.save(tmp_path / "art")
    again = SlowdownPredictor.load(path)
    assert np.allclose(model.predict(examples), again.predict(examples))
    group = again.predict_group([m.graph for m in models[:2]], [1, 1], [[0], [0]], n_cores=2)
    assert group.shape == (2,) and (group > 1.3).all()  # a shared core was learned to cost ~×1.8


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {"INFERPERF_HOME": str(home), "PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}
    return subprocess.run([sys.executable, "-m", "inferperf", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_errors_are_one_line(models: list[ColoModel], tmp_path: Path) -> None:
    a, b = models[0].path, models[1].path
    cases = [
        ((a,), "2 or 3"),
        ((a, str(tmp_path / "missing.onnx"), "--measure"), "not found"),
        ((a, b), "--measure"),
        ((a, b, "--measure", "--threads-split", "1,x"), "comma-separated"),
        ((a, b, "--predict"), "no trained co-location predictor"),
    ]
    for args, needle in cases:
        r = _cli("colocate", *args, home=tmp_path)
        assert r.returncode != 0, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)
    r = _cli("colocate-train", str(tmp_path), home=tmp_path)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "records.jsonl" in r.stderr


def test_cli_trains_and_predicts(models: list[ColoModel], tmp_path: Path) -> None:
    ds = ColocationDataset(tmp_path / "ds")
    for m in models:
        ds.add_graph(Path(m.path).stem, m.graph)
    # records in the on-disk format: one line per group, members in order
    rng = np.random.default_rng(1)
    names = [Path(m.path).stem for m in models]
    for g in range(24):
        pick = [names[int(i)] for i in rng.choice(3, size=2 + g % 2, replace=False)]
        shared = g % 3 == 0
        members = [MemberResult(n, 1, [0] if shared else [k], 1.0, 1.9 if shared else 1.05 + 0.01 * k,
                                1.9 if shared else 1.05 + 0.01 * k, 10, 10, 0.01, 0.01) for k, n in enumerate(pick)]
        ds.append(ColocationResult(members, 1.0, "dev-x"), {"n_cores": 2})
    art = tmp_path / "art"
    r = _cli("colocate-train", str(tmp_path / "ds"), "--out", str(art), "--no-evaluate", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)
    assert trained["n_examples"] == sum(2 + g % 2 for g in range(24))
    assert trained["evaluation"] is None and (art / "meta.json").is_file()
    r = _cli("colocate", models[0].path, models[1].path, "--predict", "--predictor", str(art), "--cores", "0;0",
             "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["predicted"]) == 2 and all(v > 0 for v in out["predicted"])
    assert "measured" not in out
