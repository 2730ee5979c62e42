"""`inferperf bench` / `device` / `runs` end to end on tiny models (child processes, temporary PerfDB)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _mlp(path, bad_op: bool = False) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(64, 128)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=(128,)).astype(np.float32), "b1")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
    ]
    opsets = [helper.make_opsetid("", 17)]
    if bad_op:  # valid ONNX that ORT cannot load: an op from a domain it has no kernels for
        nodes.append(helper.make_node("Frobnicate", ["y"], ["z"], name="bad", domain="com.example"))
        opsets.append(helper.make_opsetid("com.example", 1))
    out = "z" if bad_op else "y"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], [w1, b1])
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)


def _cli(home, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    env = {"INFERPERF_HOME": str(home), "PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}
    return subprocess.run([sys.executable, "-m", "inferperf", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_bench_json_stores_runs_per_config(tmp_path, home):
    model = tmp_path / "mlp.onnx"
    _mlp(model)
    res = _cli(home, "bench", str(model), "--batch", "1,4", "--threads", "1", "--max-time", "0.5", "--json",
               "--profile")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["device"]["id"] and out["device"]["kind"] == "cpu"
    assert [r["config"]["batch_size"] for r in out["runs"]] == [1, 4]
    for r in out["runs"]:
        assert set(r["latency_ms"]) >= {"p50", "p90", "p95", "p99", "mean", "min", "std"}
        assert r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
        assert r["cold_start_ms"] > 0 and r["throughput"] > 0
        assert r["energy_source"] in ("rapl", "nvml", "rapl+nvml", "estimate")
        assert r["kernels"], "profiled run must carry kernels"
        covered = {n for k in r["kernels"] for n in k["covered_nodes"]}
        assert covered == {"mm", "add", "relu"}
        assert "samples_ms" not in r  # only with --samples
    listed = _cli(home, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 2
    # re-running a configuration appends a run, never overwrites
    again = _cli(home, "bench", str(model), "--batch", "1", "--max-time", "0.3", "--json")
    assert again.returncode == 0, again.stderr
    assert len(json.loads(_cli(home, "runs", "list", "--json").stdout)) == 3


def test_bench_unloadable_model_is_a_recorded_failure(tmp_path, home):
    model = tmp_path / "bad.onnx"
    _mlp(model, bad_op=True)
    res = _cli(home, "bench", str(model), "--batch", "1", "--max-time", "0.3", "--json")
    assert res.returncode == 1
    run = json.loads(res.stdout)["runs"][0]
    assert run["status"] == "failed" and not run["valid"]
    assert "Frobnicate" in (run["error"] or "")
    shown = json.loads(_cli(home, "runs", "show", str(run["run_id"]), "--json").stdout)
    assert shown["status"] == "failed"


def test_bench_bad_arguments_are_one_line(tmp_path, home):
    model = tmp_path / "mlp.onnx"
    _mlp(model)
    for args, needle in (
        (["bench", str(model), "--batch", "1,x"], "comma-separated"),
        (["bench", str(model), "--batch", "1", "--opt-level", "turbo"], "opt_level"),
        (["bench", str(model), "--runtime", "torch"], "needs an architecture name"),
    ):
        res = _cli(home, *args)
        assert res.returncode != 0 and "Traceback" not in res.stderr
        assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_device_json(home):
    res = _cli(home, "device", "--json", "--no-ceilings")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["id"] == d["fingerprint"] and d["cpu"]["logical_cpus"] >= 1


def test_a_run_timed_on_a_busy_machine_is_flagged():
    from inferperf.cli.measure import busy_warning

    assert busy_warning({"provenance": {"background_cpu": 0.05}}) is None
    assert busy_warning({"provenance": {}}) is None
    line = busy_warning({"provenance": {"background_cpu": 0.95}})
    assert line and "0.95 cores" in line and "\n" not in line
