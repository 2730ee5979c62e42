"""Persistent worker processes for long collections: isolation without paying a process start per graph.

``measure_model`` spawns one child per measurement, which costs ~1 s of interpreter start and imports: fine
for ``bench``, too slow for thousands of small graphs. A :class:`Worker` is a long-lived child (``spawn``
context, its own core) that serves requests over a pipe. A request that crashes the child (segfault, OOM
kill) or exceeds its timeout is answered with an error outcome; the child is killed and restarted, and the
caller never dies with it.

Two kinds of work run in workers: ``export`` (build a zoo entry in torch and export it to ONNX, plus its
ModelGraph JSON) and ``measure`` (the measurement protocol on one ONNX file, or the speed probe of
:mod:`inferperf.measure.speed_probe`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class WorkerOutcome:
    """What came back from one request: ``status`` ok | error | timeout | crashed."""

    status: str
    value: Any = None
    error: str | None = None
    wall_s: float = 0.0


def _serve(conn: Any, kind: str, cores: list[int] | None) -> None:
    """Child main loop: handle requests until the pipe closes."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    handler = {"export": _export, "measure": _measure, "call": _call}[kind]
    if kind == "export":
        import torch

        torch.set_num_threads(1)
    while True:
        try:
            request = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        try:
            conn.send(("ok", handler(request)))
        except Exception as exc:  # reported to the parent, the worker stays alive
            conn.send(("error", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"))


def _export(request: dict[str, Any]) -> dict[str, Any]:
    import json

    from inferperf.ir.build import build_graph
    from inferperf.zoo import ZooEntry

    entry = ZooEntry.from_dict(request["entry"])
    t0 = time.perf_counter()
    loaded = entry.load()
    export_s = time.perf_counter() - t0
    graph = build_graph(loaded.model, entry.key, loaded.metadata)
    graph_path = loaded.path + ".graph.json"
    with open(graph_path, "w") as fh:
        json.dump(graph.to_dict(), fh)
    summary = {k: v for k, v in graph.summary().items() if k not in ("inputs", "outputs")}
    return {
        "path": loaded.path,
        "graph_path": graph_path,
        "name": loaded.name,
        "metadata": loaded.metadata,
        "input_spec": loaded.input_spec,
        "graph_summary": summary,
        "export_s": export_s,
    }


def _call(request: dict[str, Any]) -> Any:
    """Generic work: ``{"target": "package.module:function", "kwargs": {...}}`` (co-location runs, tests)."""
    from inferperf.runtimes.base import resolve_callable

    return resolve_callable(request["target"], "worker target")(**request.get("kwargs", {}))


def _measure(request: dict[str, Any]) -> dict[str, Any]:
    from inferperf.measure.config import ProtocolConfig, RunConfig
    from inferperf.measure.protocol import run_measurement

    if "speed_probe" in request:  # the machine's speed, on the measurement's own core (measure.speed_probe)
        from inferperf.measure.speed_probe import measure_speed_probe

        return measure_speed_probe(**request["speed_probe"])

    config = RunConfig.from_dict(request["config"])
    protocol = ProtocolConfig.from_dict(request["protocol"])
    m = run_measurement(request["model_path"], config, protocol, metadata=request.get("metadata"))
    return m.to_dict()


class Worker:
    """A restartable child process serving one kind of request at a time."""

    def __init__(self, kind: str, cores: list[int] | None = None) -> None:
        if kind not in ("export", "measure", "call"):
            raise ValueError(f"unknown worker kind {kind!r}")
        self.kind = kind
        self.cores = cores
        self.restarts = 0
        self._proc: Any = None
        self._conn: Any = None
        self._sent_at: float | None = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.kind, self.cores), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def submit(self, request: dict[str, Any]) -> None:
        """Send a request without waiting (so export of the next graph overlaps a measurement)."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send(request)
        self._sent_at = time.perf_counter()

    def result(self, timeout_s: float) -> WorkerOutcome:
        """Wait for the submitted request's answer; kill and restart the child on timeout or crash."""
        if self._sent_at is None:
            raise RuntimeError("result() without submit()")
        remaining = max(0.0, timeout_s - (time.perf_counter() - self._sent_at))
        died = False
        try:
            if self._conn.poll(remaining):
                status, value = self._conn.recv()
                wall = time.perf_counter() - self._sent_at
                self._sent_at = None
                if status == "ok":
                    return WorkerOutcome("ok", value=value, wall_s=wall)
                return WorkerOutcome("error", error=value, wall_s=wall)
        except (EOFError, OSError):
            died = True  # the pipe closed: the child is gone (or going), not slow
            self._proc.join(timeout=10)
        wall = time.perf_counter() - self._sent_at
        self._sent_at = None
        hung = not died and self._proc.is_alive()
        self._kill()
        if hung:
            return WorkerOutcome("timeout", error=f"no answer within {timeout_s:.0f} s", wall_s=wall)
        code = self._proc.exitcode
        reason = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit {code}"
        return WorkerOutcome("crashed", error=f"worker process died ({reason})", wall_s=wall)

    def run(self, request: dict[str, Any], timeout_s: float) -> WorkerOutcome:
        self.submit(request)
        return self.result(timeout_s)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self.restarts += 1

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.close()
                self._proc.join(timeout=5)
            finally:
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join(timeout=5)
        self._proc = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
