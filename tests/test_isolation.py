"""Child-process isolation: crashes, hangs, OOM and unloadable models become recorded results."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto, numpy_helper

from inferperf.measure.config import ProtocolConfig, RunConfig
from inferperf.measure.isolation import measure_model, run_in_child
from inferperf.runtimes.torch_backend import TorchModelSpec

HERE = f"{__name__}:"  # pytest may import this file as tests.test_isolation or as test_isolation
IMPORT_ROOT = str(Path(__file__).resolve().parents[__name__.count(".")])
SRC = str(Path(__file__).resolve().parents[1] / "src")
CHILD_ENV = {"PYTHONPATH": IMPORT_ROOT}
FAST = ProtocolConfig(min_repeats=5, min_time_s=0.0, max_time_s=1.0, warmup_runs=2, warmup_min_s=0.0, block_min_s=0.0)


# ---- targets run in the child (by name) -----------------------------------------------------------


def answer(x: int) -> dict[str, int]:
    return {"double": 2 * x, "pid": os.getpid()}


def raise_value_error() -> None:
    raise ValueError("bad input shape")


def abort_now() -> None:
    os.abort()


def segfault() -> None:
    ctypes.string_at(0)


def sleep_forever() -> None:
    time.sleep(3600)


def allocate_mb(mb: int) -> int:
    return int(np.ones(mb * 1024 * 1024, dtype=np.uint8).sum())


def write_pid_and_sleep(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(3600)


def abort_factory() -> None:
    os.abort()


# ---- helpers ------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie has already stopped running)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def wait_until(predicate, limit_s: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll a condition with a generous upper bound (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def save(model: onnx.ModelProto, path: Path) -> str:
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return str(path)


def add_model(path: Path) -> str:
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    one = numpy_helper.from_array(np.ones(16, dtype=np.float32), "one")
    g = oh.make_graph([oh.make_node("Add", ["x", "one"], ["y"])], "add", [x], [y], [one])
    return save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)]), path)


def endless_loop_model(path: Path) -> str:
    """A Loop with 2^62 iterations: the first inference never returns."""
    body = oh.make_graph(
        [oh.make_node("Identity", ["cond_in"], ["cond_out"]), oh.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [
            oh.make_tensor_value_info("i", TensorProto.INT64, []),
            oh.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            oh.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            oh.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            oh.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")],
    )
    inits = [numpy_helper.from_array(np.array(2**62, np.int64), "M"), numpy_helper.from_array(np.array(True), "c")]
    g = oh.make_graph(
        [oh.make_node("Loop", ["M", "c", "x"], ["y"], body=body)],
        "loop",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        inits,
    )
    return save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)]), path)


def huge_expand_model(path: Path) -> str:
    """Expands one float to 40000 x 50000 (8 GB): more than the test's memory limit."""
    shape = numpy_helper.from_array(np.array([40000, 50000], dtype=np.int64), "shape")
    g = oh.make_graph(
        [oh.make_node("Expand", ["x", "shape"], ["y"])],
        "expand",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [40000, 50000])],
        [shape],
    )
    return save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)]), path)


@pytest.fixture
def child_imports_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """measure_model's child inherits the environment: make this test module importable there."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([IMPORT_ROOT, os.environ.get("PYTHONPATH", "")]))


# ---- the generic child runner ---------------------------------------------------------------------


def test_child_returns_the_value() -> None:
    out = run_in_child(HERE + "answer", {"x": 21}, timeout_s=60, env=CHILD_ENV)
    assert out.status == "ok", out.error
    assert out.value["double"] == 42
    assert out.value["pid"] != os.getpid() and out.value["pid"] == out.pid


def test_child_exception_is_an_error_with_its_message() -> None:
    out = run_in_child(HERE + "raise_value_error", {}, timeout_s=60, env=CHILD_ENV)
    assert out.status == "error"
    assert out.error_type == "ValueError" and "bad input shape" in (out.error or "")
    assert "raise_value_error" in out.output_tail  # the child's traceback


@pytest.mark.parametrize("target, sig", [("abort_now", "SIGABRT"), ("segfault", "SIGSEGV")])
def test_child_crash_is_reported_with_its_signal(target: str, sig: str) -> None:
    out = run_in_child(HERE + target, {}, timeout_s=60, env=CHILD_ENV)
    assert out.status == "crashed"
    assert out.signal == sig
    assert sig in (out.error or "")


def test_child_hang_times_out_and_is_killed() -> None:
    out = run_in_child(HERE + "sleep_forever", {}, timeout_s=2, env=CHILD_ENV)
    assert out.status == "timeout"
    assert out.pid is not None and not alive(out.pid)


def test_child_memory_limit_turns_an_allocation_into_memory_error() -> None:
    out = run_in_child(HERE + "allocate_mb", {"mb": 4096}, timeout_s=60, memory_limit_mb=1500, env=CHILD_ENV)
    assert out.status == "error"
    assert out.error_type == "MemoryError"
    # without the limit the same call works (the limit, not the machine, caused the failure)
    small = run_in_child(HERE + "allocate_mb", {"mb": 64}, timeout_s=60, memory_limit_mb=1500, env=CHILD_ENV)
    assert small.status == "ok" and small.value == 64 * 1024 * 1024


def _start_parent(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A parent Python process running run_in_child on a sleeping target; returns it and the child pid."""
    pid_file = tmp_path / "child.pid"
    script = (
        "from inferperf.measure.isolation import run_in_child\n"
        f"run_in_child({HERE + 'write_pid_and_sleep'!r}, {{'path': {str(pid_file)!r}}}, 600,"
        f" env={{'PYTHONPATH': {IMPORT_ROOT!r}}})\n"
    )
    # TMPDIR inside tmp_path: a SIGKILLed parent cannot remove its spec directory
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, IMPORT_ROOT]), TMPDIR=str(tmp_path))
    # SIGINT back to the default: a shell runs background jobs (`make test &`) with SIGINT ignored, children
    # inherit that, and a Python started with SIGINT ignored installs no KeyboardInterrupt handler
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert wait_until(lambda: pid_file.is_file() and pid_file.read_text().strip() != ""), "child never started"
    return parent, int(pid_file.read_text())


def test_ctrl_c_in_the_parent_kills_the_child(tmp_path: Path) -> None:
    parent, child = _start_parent(tmp_path)
    assert alive(child)
    parent.send_signal(signal.SIGINT)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode != 0
    assert b"KeyboardInterrupt" in err  # re-raised after cleanup
    assert wait_until(lambda: not alive(child)), "child survived the parent's Ctrl-C"


def test_child_dies_with_a_killed_parent(tmp_path: Path) -> None:
    parent, child = _start_parent(tmp_path)
    parent.kill()
    parent.wait(timeout=60)
    assert parent.stderr is not None
    parent.stderr.close()
    assert wait_until(lambda: not alive(child)), "orphaned child kept running"


# ---- measure_model --------------------------------------------------------------------------------


def test_isolated_measurement_succeeds(tmp_path: Path) -> None:
    model = add_model(tmp_path / "add.onnx")
    m = measure_model(model, RunConfig(batch_size=2), FAST, timeout_s=120)
    assert m.status in ("ok", "unstable"), m.error
    assert m.n_samples >= 5 and m.latency_ms is not None
    iso = m.provenance["isolation"]
    assert iso["isolated"] is True and iso["child_pid"] == m.provenance["pid"] != os.getpid()
    assert m.provenance["env"]["OMP_NUM_THREADS"] == "1"


def test_unloadable_model_is_failed_with_the_runtime_message(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a model")
    m = measure_model(str(bad), RunConfig(), FAST, timeout_s=120)
    assert m.status == "failed" and not m.valid
    assert "onnxruntime cannot load the model" in (m.error or "")
    assert m.latency_ms is None and m.n_samples == 0


def test_hanging_inference_is_a_timeout(tmp_path: Path) -> None:
    model = endless_loop_model(tmp_path / "loop.onnx")
    m = measure_model(model, RunConfig(), FAST, timeout_s=4)
    assert m.status == "timeout" and not m.valid
    assert "no result within 4 s" in (m.error or "")
    assert not alive(m.provenance["isolation"]["child_pid"])


def test_out_of_memory_is_failed_and_labelled(tmp_path: Path) -> None:
    model = huge_expand_model(tmp_path / "expand.onnx")
    m = measure_model(model, RunConfig(), FAST, timeout_s=120, memory_limit_mb=3000)
    assert m.status == "failed", m.error
    assert "out of memory" in m.invalid_reasons
    assert "allocate" in (m.error or "").lower()


def test_crash_in_the_model_loader_is_crashed_not_fatal(child_imports_tests: None) -> None:
    spec = TorchModelSpec(HERE + "abort_factory")
    m = measure_model(spec, RunConfig(runtime="torch"), FAST, timeout_s=120)
    assert m.status == "crashed"
    assert "SIGABRT" in (m.error or "")
    assert m.provenance["isolation"]["signal"] == "SIGABRT"
    assert set(m.to_dict()["config"]) >= {"runtime", "batch_size", "protocol"}


def test_in_memory_module_cannot_be_isolated() -> None:
    with pytest.raises(TypeError, match="isolate=False"):
        measure_model(object(), RunConfig(runtime="torch"), FAST, timeout_s=10)
