"""`inferperf train / predict / predictors list / evaluate` end to end, in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferperf.predict.synthetic import synthetic_dataset


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {"INFERPERF_HOME": str(home), "PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}
    return subprocess.run(
        [sys.executable, "-m", "inferperf", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data")
    synthetic_dataset(per_family=8, batches=(1, 2), seed=9).to_json(path)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(16, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_predict_without_artifact_says_how_to_get_one(tmp_path: Path, model_file: Path) -> None:
    r = _cli("predict", str(model_file), "--batch", "1", home=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert (
        "no trained predictor" in lines[0]
        and "inferperf collect" in lines[0]
        and "inferperf train" in lines[0]
    )
    assert "Traceback" not in r.stderr


def test_train_then_predict_json_round_trip(tmp_path: Path, dataset_dir: Path, model_file: Path) -> None:
    r = _cli("train", "--predictor", "lr-flops", "--dataset", str(dataset_dir), "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    artifact = Path(info["artifact"])
    assert (artifact / "meta.json").exists()
    assert artifact.parent.name == "synthetic-cpu-a" and artifact.parent.parent == tmp_path / "predictors"

    r = _cli(
        "predict",
        str(model_file),
        "--batch",
        "2",
        "--device",
        "synthetic-cpu-a",
        "--mig-gpu",
        "A100-40GB",
        "--json",
        home=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {
        "latency_ms",
        "interval_90",
        "memory_mb",
        "energy_j",
        "mig_profile",
        "predictor",
        "device",
        "ood",
    } <= set(out)
    assert out["predictor"] == "lr-flops" and out["device"] == "synthetic-cpu-a"
    lo, hi = out["interval_90"]
    assert lo < out["latency_ms"] < hi
    assert out["mig_profile"] == "1g.5gb"
    assert out["config"]["batch_size"] == 2

    r = _cli("predictors", "list", "--json", home=tmp_path)
    listed = json.loads(r.stdout)
    assert [a["path"] for a in listed["artifacts"]] == [str(artifact)]
    assert "gnn-sage" in {p["name"] for p in listed["predictors"]}


def test_train_errors_are_one_line(tmp_path: Path, dataset_dir: Path) -> None:
    r = _cli("train", "--predictor", "nope", "--dataset", str(dataset_dir), home=tmp_path)
    assert r.returncode != 0 and "unknown predictor" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("train", "--predictor", "lr-flops", "--dataset", str(tmp_path / "missing"), home=tmp_path)
    assert r.returncode != 0 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = _cli(
        "train", "--predictor", "lr-flops", "--dataset", str(dataset_dir), "--device", "x", home=tmp_path
    )
    assert r.returncode != 0 and "no samples" in r.stderr


def test_evaluate_threads_filter_errors_are_one_line(tmp_path: Path, dataset_dir: Path) -> None:
    base = ("evaluate", "--predictors", "lr-flops", "--protocol", "random", "--seeds", "1",
            "--dataset", str(dataset_dir))
    r = _cli(*base, "--threads", "2", home=tmp_path)  # the fixture has 1-thread runs only
    assert r.returncode != 0 and "no runs at 2 intra-op thread" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _cli(*base, "--threads", "one", home=tmp_path)
    assert r.returncode != 0 and "positive integers" in r.stderr and "Traceback" not in r.stderr
    r = _cli(*base, "--threads", "1,2", "--json", home=tmp_path)  # 2 matches nothing, 1 keeps every run
    assert r.returncode == 0, r.stderr
    from inferperf.dataset.core import load_dataset

    assert json.loads(r.stdout)["dataset"]["n_samples"] == len(load_dataset(dataset_dir))


def test_evaluate_json(tmp_path: Path, dataset_dir: Path) -> None:
    out_file = tmp_path / "report.json"
    r = _cli(
        "evaluate",
        "--predictors",
        "lr-flops",
        "--protocol",
        "random",
        "--seeds",
        "2",
        "--dataset",
        str(dataset_dir),
        "--json",
        "--out",
        str(out_file),
        home=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["protocol"] == "random" and report["seeds"] == [0, 1]
    assert report["predictors"]["lr-flops"]["targets"]["latency_ms"]["mean"]["mape"]["mean"] > 0
    assert json.loads(out_file.read_text())["protocol"] == "random"


def test_cli_import_stays_light() -> None:
    code = (
        "import json, sys, inferperf.cli.main; "
        "print(json.dumps({'predict': 'inferperf.cli.predict' in sys.modules, "
        "'heavy': [m for m in ('torch', 'torch_geometric', 'lightgbm') if m in sys.modules]}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["predict"], "the CLI did not register the predict commands"
    assert out["heavy"] == []


def test_predict_kernels_breakdown(tmp_path: Path, dataset_dir: Path, model_file: Path) -> None:
    for name in ("lr-flops", "additive"):
        r = _cli("train", "--predictor", name, "--dataset", str(dataset_dir), "--json", home=tmp_path)
        assert r.returncode == 0, r.stderr
    common = ("predict", str(model_file), "--batch", "1", "--device", "synthetic-cpu-a")
    r = _cli(*common, "--predictor", "lr-flops", "--kernels", home=tmp_path)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "fusion-kernel" in r.stderr and "Traceback" not in r.stderr

    r = _cli(*common, "--predictor", "additive", "--kernels", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    terms = out["breakdown"]["by_term"]
    assert terms and all(v > 0 for v in terms.values())
    assert sum(terms.values()) == pytest.approx(out["latency_ms"], rel=1e-6)
    assert list(terms.values()) == sorted(terms.values(), reverse=True)
    r = _cli(*common, "--predictor", "additive", "--kernels", home=tmp_path)
    assert r.returncode == 0, r.stderr
    from inferperf.cli.predict import _term_label

    assert "latency by cost term" in r.stdout and _term_label(next(iter(terms))) in r.stdout
    assert _term_label("mmacs_conv_dense") == "compute: conv_dense MACs"
    assert _term_label("n_all") == "dispatch: every operator"


def test_kernel_breakdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    from inferperf.cli.predict import _print_breakdown
    from inferperf.predict.fusion.kernels import FusedGraph, PredictedKernel

    fused = FusedGraph(
        graph_name="g",
        kernels=[PredictedKernel([0, 1], ["conv", "relu"], "Conv+Relu", 2.0, [("Conv+Relu", 0.9)], 1.9),
                 PredictedKernel([2], ["gemm"], "Gemm", 1.0, [("Gemm", 0.8)], 0.9)],
        dropped=[], fixed_ms=1.0, fused_edges=1, n_edges=2,
    )
    _print_breakdown(fused.breakdown(top=5))
    printed = capsys.readouterr().out
    assert "2 kernels, 1 of 2 edges fused" in printed and "top kernels by predicted time" in printed
    assert "Conv+Relu" in printed and "50.0%" in printed  # 2 of the 4 ms
    assert "time per kernel type" in printed and "(fixed overhead)" in printed
    assert "never measured" not in printed
    fused.scale(0.5 ** 0.5, {"share": 1.0, "predicted_at": 0.5, "exponent": 0.5})
    assert fused.latency_ms == pytest.approx(4.0 * 0.5 ** 0.5)
    _print_breakdown(fused.breakdown(top=5))
    printed = capsys.readouterr().out
    assert "compute share 1 was never measured: predicted at 0.5" in printed


def test_predict_calibrate_rescales_another_devices_predictor(tmp_path: Path, dataset_dir: Path,
                                                              model_file: Path) -> None:
    # the only artifact is for the synthetic device: plain predict says so and points at --calibrate; with
    # --calibrate two small architectures are measured here (real runs) and the prediction is rescaled
    r = _cli("train", "--predictor", "lr-flops", "--dataset", str(dataset_dir), "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("predict", str(model_file), "--batch", "1", home=tmp_path)
    assert r.returncode != 0 and "--calibrate" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("predict", str(model_file), "--batch", "1", "--calibrate", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    cal = out["calibration"]
    assert cal["reference_device"] == "synthetic-cpu-a" and out["device"] == cal["device"] != "synthetic-cpu-a"
    assert len(cal["models"]) == 2 and all(m["measured_ms"] > 0 and m["predicted_ms"] > 0 for m in cal["models"])
    ratios = [m["measured_ms"] / m["predicted_ms"] for m in cal["models"]]
    assert cal["scale"] == pytest.approx(float(np.exp(np.mean(np.log(ratios)))), rel=1e-9)
    assert out["latency_ms"] == pytest.approx(out["uncalibrated_latency_ms"] * cal["scale"], rel=1e-9)
    if out["interval_90"]:
        lo, hi = out["interval_90"]
        assert lo < out["latency_ms"] < hi
    r = _cli("predict", str(model_file), "--calibrate", "--device", "synthetic-cpu-a", home=tmp_path)
    assert r.returncode != 0 and "does not combine" in r.stderr and "Traceback" not in r.stderr
