"""Run a measurement in a child process, so that nothing the runtime does can take the caller down.

The child is ``python -m inferperf.measure.isolation SPEC.json``: it imports a target function named
``"module:function"``, calls it with the spec's JSON keyword arguments and writes the JSON result to a
file (stdout and stderr go to a log file, because runtimes print freely). The parent waits with a
timeout and turns every ending into a result:

- the target returned → its value;
- the target raised (including ``MemoryError`` under the memory limit) → "error" with its message;
- the child died by a signal (segfault, abort, the OOM killer's SIGKILL) or exited without a result →
  "crashed" with the signal and the tail of its output;
- no result within ``timeout_s`` → "timeout"; the child's whole process group is killed.

The child runs in its own session (process group): a Ctrl-C at the terminal reaches only the parent, which
kills the group (the child and anything it spawned, e.g. torch.compile's workers) before re-raising; and
the child asks the kernel to kill it if the parent dies (``PR_SET_PDEATHSIG``), so no orphan keeps
burning a core. ``memory_limit_mb`` caps the child's address space (``RLIMIT_AS``): an allocation past it
fails inside the child instead of pushing the machine into swap.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferperf.measure.config import ProtocolConfig, RunConfig
from inferperf.measure.protocol import base_provenance, run_measurement
from inferperf.measure.result import Measurement, now_iso

_MEASURE_TARGET = "inferperf.measure.protocol:measure_to_dict"
_PR_SET_PDEATHSIG = 1
_TAIL_CHARS = 4000
_KILL_GRACE_S = 2.0


@dataclass
class ChildOutcome:
    """How a child run ended. ``status``: "ok" | "error" | "crashed" | "timeout"."""

    status: str
    value: Any = None
    error: str | None = None
    error_type: str | None = None
    returncode: int | None = None
    signal: str | None = None
    output_tail: str = ""
    pid: int | None = None
    wall_s: float = 0.0


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    src_root = str(Path(__file__).resolve().parents[2])
    paths = [src_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != src_root]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if grace is None:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_CHARS))
            return f.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def run_in_child(
    target: str,
    kwargs: Mapping[str, Any],
    timeout_s: float,
    *,
    memory_limit_mb: float | None = None,
    env: Mapping[str, str] | None = None,
) -> ChildOutcome:
    """Call ``target(**kwargs)`` (a ``"module:function"`` returning JSON-able data) in a fresh process.

    ``env`` adds to the inherited environment; the parent's ``inferperf`` is always importable there.
    Never raises for anything the child does; a ``KeyboardInterrupt`` in the parent kills the child's
    process group and is re-raised.
    """
    with tempfile.TemporaryDirectory(prefix="inferperf-child-") as tmp:
        tmpdir = Path(tmp)
        result_path = tmpdir / "result.json"
        log_path = tmpdir / "child.log"
        spec_path = tmpdir / "spec.json"
        spec = {
            "target": target,
            "kwargs": dict(kwargs),
            "result_path": str(result_path),
            "memory_limit_mb": memory_limit_mb,
            "parent_pid": os.getpid(),
        }
        spec_path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        timed_out = False
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "inferperf.measure.isolation", str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(env),
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
            except BaseException:
                _kill_group(proc)
                raise
            else:
                # reap anything the child left running in its group (compile workers and the like)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        wall = time.perf_counter() - t0
        tail = _tail(log_path)
        rc = proc.returncode
        if timed_out:
            return ChildOutcome(
                status="timeout",
                error=f"no result within {timeout_s:g} s; the measuring process was killed",
                returncode=rc,
                output_tail=tail,
                pid=proc.pid,
                wall_s=wall,
            )
        payload = None
        if result_path.is_file():
            try:
                payload = json.loads(result_path.read_text())
            except (OSError, ValueError):
                payload = None
        if payload is None:
            if rc is not None and rc < 0:
                sig = _signal_name(-rc)
                why = f"the measuring process was killed by {sig}"
                if -rc == signal.SIGKILL:
                    why += " (the kernel's OOM killer sends SIGKILL)"
            else:
                sig = None
                why = f"the measuring process exited with code {rc} without a result"
            return ChildOutcome(
                status="crashed",
                error=why + (f"; output tail:\n{tail}" if tail else ""),
                returncode=rc,
                signal=sig,
                output_tail=tail,
                pid=proc.pid,
                wall_s=wall,
            )
        if payload.get("ok"):
            return ChildOutcome(
                status="ok", value=payload.get("value"), returncode=rc, output_tail=tail, pid=proc.pid, wall_s=wall
            )
        return ChildOutcome(
            status="error",
            error=f"{payload.get('error_type')}: {payload.get('error')}",
            error_type=payload.get("error_type"),
            returncode=rc,
            output_tail=payload.get("traceback") or tail,
            pid=proc.pid,
            wall_s=wall,
        )


def _model_arg(model: Any) -> Any:
    """The model as JSON: a path string as is, a TorchModelSpec as its dict."""
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    if isinstance(model, Mapping):
        return dict(model)
    if hasattr(model, "to_dict"):
        return model.to_dict()
    raise TypeError(
        f"an isolated measurement needs a model path or a TorchModelSpec, not {type(model).__name__}; "
        f"pass isolate=False to measure an in-memory module"
    )


def measure_model(
    model_path: Any,
    config: RunConfig,
    protocol: ProtocolConfig,
    timeout_s: float,
    isolate: bool = True,
    *,
    metadata: Mapping[str, Any] | None = None,
    memory_limit_mb: float | None = None,
) -> Measurement:
    """Measure one model with one configuration; the entry point of ``inferperf bench``.

    ``model_path``: an ``.onnx`` file for onnxruntime; for the torch runtimes a
    :class:`~inferperf.runtimes.torch_backend.TorchModelSpec` (or its dict, its JSON file path, or a bare
    ``"module:function"`` factory path — see that module). With ``isolate`` (the default) the measurement
    runs in a child process under ``timeout_s`` (which includes the child's start-up and imports) and
    ``memory_limit_mb``; a crash, hang or OOM comes back as a Measurement with status crashed / timeout /
    failed. Without isolation it runs here: faster to start, but a segfault takes the caller with it,
    neither the timeout nor the memory limit is enforced, and torch's thread settings leak into this
    process.
    """
    metadata = dict(metadata) if metadata else None
    if not isolate:
        m = run_measurement(model_path, config, protocol, metadata=metadata)
        m.provenance["isolation"] = {"isolated": False}
        return m
    started_at = now_iso()
    kwargs = {
        "model": _model_arg(model_path),
        "config": config.to_dict(),
        "protocol": protocol.to_dict(),
        "metadata": metadata,
    }
    # The child's OpenMP/MKL pools (torch) start with the configured size instead of one thread per core.
    threads = str(config.intra_op_threads)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    outcome = run_in_child(_MEASURE_TARGET, kwargs, timeout_s, memory_limit_mb=memory_limit_mb, env=env)
    isolation = {
        "isolated": True,
        "child_pid": outcome.pid,
        "child_wall_s": outcome.wall_s,
        "timeout_s": timeout_s,
        "memory_limit_mb": memory_limit_mb,
        "returncode": outcome.returncode,
    }
    if outcome.status == "ok":
        m = Measurement.from_dict(outcome.value)
        m.provenance["isolation"] = isolation
        return m
    provenance = base_provenance(config)
    provenance["isolation"] = isolation
    if outcome.signal:
        isolation["signal"] = outcome.signal
    if outcome.output_tail:
        provenance["output_tail"] = outcome.output_tail
    status = {"error": "failed", "crashed": "crashed", "timeout": "timeout"}[outcome.status]
    return Measurement.failure(
        config,
        protocol,
        status,
        outcome.error or status,
        provenance=provenance,
        started_at=started_at,
        duration_s=outcome.wall_s,
    )


# ---- child side ------------------------------------------------------------------------------------


def _die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGKILL this process when its parent exits; exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(3)


def _limit_memory(limit_mb: float | None) -> None:
    if limit_mb:
        limit = int(limit_mb * 1024 * 1024)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    _die_with_parent(spec.get("parent_pid"))
    _limit_memory(spec.get("memory_limit_mb"))
    try:
        from inferperf.runtimes.base import resolve_callable

        fn = resolve_callable(spec["target"], what="isolated target")
        payload: dict[str, Any] = {"ok": True, "value": fn(**spec.get("kwargs", {}))}
    except BaseException as exc:  # everything, MemoryError and SystemExit included, becomes a result
        payload = {
            "ok": False,
            "error_type": type(exc).__name__,
            "error": str(exc),
            "traceback": traceback.format_exc()[-_TAIL_CHARS:],
        }
    result_path = Path(spec["result_path"])
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: runtime destructors (thread pools, compile workers) can hang or crash
    # after the result is safely written.
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m inferperf.measure.isolation SPEC.json")
    _child_main(sys.argv[1])
