"""`inferperf models ...`: the model repository on a temporary INFERPERF_HOME and SQLite database.

What matters: a registered model's file is stored content-addressed with its graph, the same name with new
bytes is a new version, references resolve the way users type them, metadata edits never touch identity,
and deleting never orphans runs — a model with runs needs --force and its runs keep their provenance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

import inferperf.cli.models  # noqa: F401  (registers `models` on the app)
from inferperf.cli.main import app
from inferperf.dataset.export import graph_cache_path
from inferperf.errors import ConfigError, InferperfError, ModelLoadError, StoreError
from inferperf.store.db import PerfDB
from inferperf.store.paths import file_sha256, model_file_path

runner = CliRunner()


def _mlp(path: Path, hidden: int = 32, dynamic: bool = True) -> Path:
    rng = np.random.default_rng(hidden)
    w1 = numpy_helper.from_array(rng.normal(size=(16, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=(hidden,)).astype(np.float32), "b1")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
    ]
    batch: Any = "N" if dynamic else 2
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w1, b1],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> dict[str, Any]:
    """A fresh INFERPERF_HOME and database; ``db_url`` (conftest) runs each test on SQLite and PostgreSQL."""
    home = tmp_path / "home"
    monkeypatch.setenv("INFERPERF_HOME", str(home))
    monkeypatch.delenv("INFERPERF_DB", raising=False)
    return {"home": home, "db": db_url, "tmp": tmp_path}


def cli(env: dict[str, Any], *args: str) -> Any:
    """Run a `models` command; return parsed JSON (when --json) or the result."""
    res = runner.invoke(app, ["models", *args, "--db", env["db"]])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout) if "--json" in args else res


def register(env: dict[str, Any], path: Path, *extra: str) -> dict[str, Any]:
    return cli(env, "register", str(path), *extra, "--json")


def _add_run(env: dict[str, Any], model_id: int) -> int:
    with PerfDB.open(env["db"]) as db:
        dev = db.upsert_device({"id": "dev-1", "name": "test-cpu", "kind": "cpu"})
        run = {
            "config": {"runtime": "onnxruntime", "batch_size": 1, "intra_op_threads": 1},
            "status": "ok",
            "valid": True,
            "latency_ms": {"p50": 1.5},
            "samples_ms": [1.4, 1.5, 1.6],
        }
        return db.add_run(run, model_id, dev)


def test_register_stores_file_graph_and_versions(env: dict[str, Any]) -> None:
    path = _mlp(env["tmp"] / "mlp.onnx")
    first = register(env, path, "--family", "mlp", "--tag", "tiny", "--tag", "test", "--source", "unit test")
    assert first["status"] == "new" and first["name"] == "mlp" and first["version"] == 1
    assert (first["family"], first["framework"], first["source"]) == ("mlp", "onnx", "unit test")
    assert first["tags"] == ["test", "tiny"] and first["n_runs"] == 0
    assert first["input_spec"] == {"x": {"shape": [1, 16], "dtype": "float32"}}  # default --batch 1 bound
    assert first["graph_summary"]["nodes"] == 3 and first["graph_summary"]["macs"] == 16 * 32
    stored = model_file_path(first["content_hash"])
    assert stored.is_file() and file_sha256(stored) == first["content_hash"]
    assert str(stored).startswith(str(env["home"]))
    assert graph_cache_path(first["content_hash"]).is_file()  # export will not need to rebuild it

    again = register(env, path, "--tag", "again")
    assert again["status"] == "existing" and again["id"] == first["id"] and again["version"] == 1
    assert again["tags"] == ["again", "test", "tiny"]  # options given again are applied to the existing row

    b4 = register(env, path, "--batch", "4", "--family", "mlp")  # new bytes (batch 4 bound): new version
    assert b4["status"] == "new" and b4["version"] == 2 and b4["id"] != first["id"]
    assert b4["graph_summary"]["macs"] == 4 * 16 * 32

    other = register(env, _mlp(env["tmp"] / "wide.onnx", hidden=64), "--name", "mlp-wide")
    assert other["name"] == "mlp-wide" and other["version"] == 1 and other["family"] is None


def test_list_search_and_show(env: dict[str, Any]) -> None:
    path = _mlp(env["tmp"] / "mlp.onnx")
    v1 = register(env, path, "--family", "mlp", "--tag", "legacy")
    v2 = register(env, path, "--batch", "2", "--family", "mlp", "--source", "https://example.org/mlp")
    static = register(
        env,
        _mlp(env["tmp"] / "s.onnx", hidden=8, dynamic=False),
        "--name",
        "static-net",
        "--family",
        "toy",
        "--tag",
        "small",
    )

    assert [(m["name"], m["version"]) for m in cli(env, "list", "--json")] == [("mlp", 2), ("static-net", 1)]
    assert len(cli(env, "list", "--all-versions", "--json")) == 3
    assert [m["name"] for m in cli(env, "list", "--family", "toy", "--json")] == ["static-net"]
    assert [m["id"] for m in cli(env, "list", "--tag", "legacy", "--all-versions", "--json")] == [v1["id"]]
    assert cli(env, "list", "--family", "nope", "--json") == []

    # search: case-insensitive over name, family, tags, source; a tag on an older version still finds it
    assert [m["id"] for m in cli(env, "search", "SMALL", "--json")] == [static["id"]]
    assert [m["id"] for m in cli(env, "search", "example.org", "--json")] == [v2["id"]]
    assert [m["id"] for m in cli(env, "search", "legacy", "--json")] == [v1["id"]]
    assert {m["id"] for m in cli(env, "search", "mlp", "--all-versions", "--json")} == {v1["id"], v2["id"]}
    assert cli(env, "search", "zzz", "--json") == []
    assert "no model matches" in cli(env, "search", "zzz").stdout

    # every way of referring to a model reaches the same row
    for ref in (str(v1["id"]), "mlp:1", v1["content_hash"][:10]):
        assert cli(env, "show", ref, "--json")["id"] == v1["id"]
    shown = cli(env, "show", "mlp", "--json")  # a bare name is the newest version
    assert shown["id"] == v2["id"] and shown["n_runs"] == 0 and shown["file_present"]
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    _add_run(env, v2["id"])
    _add_run(env, v2["id"])
    assert cli(env, "show", "mlp", "--json")["n_runs"] == 2
    assert [m["n_runs"] for m in cli(env, "list", "--json")] == [2, 0]
    text = cli(env, "show", "mlp:2").stdout
    assert "mlp:2" in text and "MatMul 1" in text


def test_update_metadata(env: dict[str, Any]) -> None:
    m = register(env, _mlp(env["tmp"] / "mlp.onnx"), "--tag", "a", "--tag", "b", "--source", "x")
    upd = cli(
        env,
        "update",
        "mlp",
        "--family",
        "mlp",
        "--tag",
        "c",
        "--untag",
        "a",
        "--framework",
        "pytorch",
        "--json",
    )
    assert (upd["family"], upd["framework"], upd["tags"], upd["source"]) == (
        "mlp",
        "pytorch",
        ["b", "c"],
        "x",
    )
    assert (upd["id"], upd["version"], upd["content_hash"]) == (m["id"], m["version"], m["content_hash"])
    cleared = cli(env, "update", str(m["id"]), "--source", "", "--json")
    assert cleared["source"] is None and cleared["family"] == "mlp"
    assert cli(env, "list", "--family", "mlp", "--json")[0]["tags"] == ["b", "c"]
    with pytest.raises(ConfigError, match="nothing to update"):
        cli(env, "update", "mlp")
    with pytest.raises(StoreError, match="no model 'ghost'"):
        cli(env, "update", "ghost", "--family", "x")


def test_delete_without_and_with_runs(env: dict[str, Any]) -> None:
    path = _mlp(env["tmp"] / "mlp.onnx")
    lonely = register(env, _mlp(env["tmp"] / "lonely.onnx", hidden=8), "--name", "lonely")
    assert cli(env, "delete", "lonely", "--json") == {
        "deleted": [{"id": lonely["id"], "name": "lonely", "version": 1, "n_runs": 0}]
    }
    assert cli(env, "list", "--json") == []
    assert cli(env, "show", "lonely", "--deleted", "--json")["deleted"] is True
    with pytest.raises(StoreError, match="no model 'lonely'"):
        cli(env, "show", "lonely")

    measured = register(env, path, "--family", "mlp")
    run_id = _add_run(env, measured["id"])
    with pytest.raises(StoreError, match="--force"):
        cli(env, "delete", "mlp")
    assert [m["id"] for m in cli(env, "list", "--json")] == [measured["id"]]  # refused: nothing changed
    res = cli(env, "delete", "mlp", "--force")
    assert "1 run(s) are kept" in res.stdout
    assert cli(env, "list", "--json") == []
    with PerfDB.open(env["db"]) as db:  # the run survives with its full provenance
        run = db.get_run(run_id, with_samples=True)
        assert (run["model"], run["model_version"], run["model_hash"]) == ("mlp", 1, measured["content_hash"])
        assert run["samples_ms"] == [1.4, 1.5, 1.6]
        assert [r["id"] for r in db.list_runs(model="mlp")] == [run_id]
    assert model_file_path(measured["content_hash"]).is_file()  # the file stays for those runs
    # registering the same bytes again restores the model rather than making a new version
    back = register(env, path)
    assert back["status"] == "restored" and back["id"] == measured["id"] and back["n_runs"] == 1


def test_delete_all_versions(env: dict[str, Any]) -> None:
    path = _mlp(env["tmp"] / "mlp.onnx")
    v1 = register(env, path)
    v2 = register(env, path, "--batch", "3")
    _add_run(env, v1["id"])
    with pytest.raises(StoreError, match=r"mlp:1 \(1 runs\)"):
        cli(env, "delete", "mlp", "--all-versions")
    out = cli(env, "delete", "mlp", "--all-versions", "--force", "--json")
    assert {d["id"] for d in out["deleted"]} == {v1["id"], v2["id"]}
    assert cli(env, "list", "--all-versions", "--json") == []


def test_bad_input_raises_user_errors(env: dict[str, Any]) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        cli(env, "register", str(env["tmp"] / "missing.onnx"))
    bad = env["tmp"] / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        cli(env, "register", str(bad))
    for args in (("show", "nosuch"), ("show", "mlp:7"), ("delete", "42"), ("show", "deadbeef00")):
        with pytest.raises(StoreError, match="no model"):
            cli(env, *args)
    with pytest.raises(InferperfError):
        cli(env, "register", "no-such-architecture")


def test_errors_are_one_line_and_nonzero_end_to_end(tmp_path: Path) -> None:
    """Through the real entry point: one `error:` line on stderr, no traceback, exit code 2."""
    child_env = {**os.environ, "INFERPERF_HOME": str(tmp_path / "home"), "TMPDIR": "/tmp"}
    db = f"sqlite:///{tmp_path / 'perf.db'}"
    for args in (["models", "show", "nosuch"], ["models", "register", str(tmp_path / "missing.onnx")]):
        res = subprocess.run(
            [sys.executable, "-m", "inferperf", *args, "--db", db],
            capture_output=True,
            text=True,
            env=child_env,
            timeout=120,
        )
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_register_architecture_name(env: dict[str, Any]) -> None:
    out = register(env, "electra-small", "--set", "num_hidden_layers=1", "--seq-len", "8", "--tag", "arch")
    assert (
        out["name"] == "electra-small" and out["family"] == "electra" and out["framework"] == "transformers"
    )
    assert out["source"] == "architecture:electra-small"
    assert out["input_spec"]["input_ids"]["shape"] == [1, 8]
    assert model_file_path(out["content_hash"]).is_file()
