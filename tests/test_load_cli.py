"""``inferperf load`` and ``inferperf serve`` end to end on a tiny ONNX model: the JSON keys the commands
promise, runs stored in PerfDB with kind "load", HTTP targets, network shaping and the local-only guard.
Runs are short (fractions of a second); nothing asserts a duration or a rate."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from inferperf.cli.main import app
from inferperf.errors import ConfigError
from inferperf.serve import ServerSettings, load_served_model, serving
from inferperf.serve.app import ServerThread, free_port

KEYS = {"scenario", "qps_target", "qps_achieved", "latency_ms", "valid", "invalid_reasons", "late_ratio", "stages",
        "cold_start_ms"}
PERCENTILES = {"p50", "p90", "p95", "p99", "p999"}


def _tiny(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory.mktemp("cli") / "tiny.onnx")


@pytest.fixture(scope="module")
def server(tiny_path: Path) -> Iterator[ServerThread]:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # keep ORT's flush-to-zero off the main thread
        served = pool.submit(load_served_model, str(tiny_path), max_batch=4).result()
    with serving(served, ServerSettings(max_batch=4, max_queue=256)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMPDIR", os.environ.get("TMPDIR", "/tmp"))


def _load(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["load", *args, "--json", "--min-queries", "1"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_in_process_server_scenario_json_and_store(tiny_path: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'perf.db'}"
    out = _load(str(tiny_path), "--scenario", "server", "--qps", "200", "--duration", "0.5", "--db", db)
    assert set(out) >= KEYS
    assert set(out["latency_ms"]) >= PERCENTILES
    assert out["scenario"] == "server" and out["qps_target"] == 200.0 and out["qps_achieved"] > 0
    assert out["cold_start_ms"] > 0 and isinstance(out["valid"], bool)
    assert out["stages"]["inference"]["n"] == out["completed"]
    assert out["generator"] in ("mlperf-loadgen", "inferperf-openloop")
    assert out["resources"]["peak_rss_mb"] > 0

    from inferperf.store import PerfDB

    with PerfDB.open(db) as perfdb:
        runs = perfdb.list_runs(kind="load")
        assert [r["id"] for r in runs] == [out["run_id"]]
        stored = perfdb.get_run(out["run_id"], with_samples=True)
    assert stored["scenario"] == "server" and stored["qps_target"] == 200.0
    assert stored["latency_ms"]["p99"] == pytest.approx(out["latency_ms"]["p99"])
    assert len(stored["samples_ms"]) == out["completed"]
    assert "late_ratio" in stored and "stages" in stored and stored["p999"] == pytest.approx(out["latency_ms"]["p999"])
    assert not perfdb_has_bench(db)


def perfdb_has_bench(db: str) -> bool:
    from inferperf.store import PerfDB

    with PerfDB.open(db) as perfdb:
        return bool(perfdb.list_runs(kind="bench"))


def test_in_process_open_loop_generator(tiny_path: Path) -> None:
    out = _load(str(tiny_path), "--scenario", "server", "--qps", "300", "--duration", "0.3", "--generator",
                "openloop", "--no-store", "--max-batch", "4")
    assert out["generator"] == "inferperf-openloop" and out["late_sends"] is not None
    assert out["client_cpu"] is not None


def test_http_single_stream_and_multi_stream(server: ServerThread) -> None:
    out = _load("tiny", "--url", server.url, "--scenario", "single-stream", "--duration", "0.3", "--no-store")
    assert set(out) >= KEYS
    assert out["generator"] == "inferperf-closedloop-http" and out["errors"] == 0
    assert {"transmission", "queue", "inference", "server_other"} <= {k for k, v in out["stages"].items() if v}
    assert out["cold_start_ms"] is None  # a server someone else started: its cold start is unknown
    multi = _load("tiny", "--url", server.url, "--scenario", "multi-stream", "--samples-per-query", "3",
                  "--duration", "0.3", "--no-store")
    assert multi["samples_per_query"] == 3 and multi["completed"] > 0


def test_http_concurrency_sweep_reports_every_point(server: ServerThread) -> None:
    out = _load("--url", server.url, "--scenario", "concurrency", "--concurrency", "1,3", "--duration", "0.3",
                "--no-store")
    assert [p["concurrency"] for p in out["points"]] == [1, 3]
    assert out["best_concurrency"] in (1, 3) and set(out) >= KEYS


def test_http_server_scenario_with_a_network_profile(server: ServerThread) -> None:
    out = _load("tiny", "--url", server.url, "--scenario", "server", "--qps", "50", "--duration", "0.4",
                "--network", "4g", "--no-store")
    assert out["network"]["profile"] == "4g" and out["network"]["method"] == "app"
    assert out["network"]["reason"]
    # a 4G round trip is at least twice the 25 ms one-way delay minus the jitter: it shows in transmission
    assert out["stages"]["transmission"]["p50_ms"] > 20.0


def test_load_against_a_spawned_server_measures_its_cold_start(tiny_path: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'perf.db'}"
    out = _load(str(tiny_path), "--serve", "--scenario", "server", "--qps", "100", "--duration", "0.3",
                "--max-batch", "2", "--db", db)
    assert out["cold_start_ms"] > 0 and out["target"]["spawned"] is True
    assert out["target"]["server"]["max_batch"] == 2


def test_bad_load_invocations_fail_with_a_message(tiny_path: Path) -> None:
    runner = CliRunner()
    for args in (["load"], ["load", str(tiny_path), "--scenario", "server"],
                 ["load", str(tiny_path), "--scenario", "peak"], ["load", str(tiny_path), "--network", "wifi"],
                 ["load", str(tiny_path), "--scenario", "bogus"]):
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert isinstance(result.exception, ConfigError), args


def test_remote_urls_need_an_explicit_opt_in() -> None:
    from inferperf.cli.serving import check_local_url

    check_local_url("http://127.0.0.1:8000")
    check_local_url("http://169.254.3.2:8000")
    with pytest.raises(ConfigError, match="allow-remote"):
        check_local_url("http://10.1.2.3:8000")
    with pytest.raises(ConfigError):
        check_local_url("https://127.0.0.1")


def test_serve_command_runs_a_kserve_server(tiny_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "inferperf", "serve", str(tiny_path), "--port", str(port),
                             "--max-batch", "4", "--max-delay-ms", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": "/tmp"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                with urllib.request.urlopen(base + "/v2/health/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)
        with urllib.request.urlopen(base + "/v2/models/tiny", timeout=10) as resp:
            meta = json.load(resp)
        assert meta["parameters"]["max_batch"] == 4 and meta["parameters"]["max_delay_ms"] == 1.0
        body = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                       "data": [1, 1, 1, 1, 2, 2, 2, 2]}]}).encode()
        req = urllib.request.Request(base + "/v2/models/tiny/infer", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            doc = json.load(resp)
        assert doc["outputs"][0]["data"] == [4.0, 4.0, 4.0, 8.0, 8.0, 8.0]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
