"""Read ONNX Runtime's chrome-trace profile into per-run lists of executed-node events.

ORT (``SessionOptions.enable_profiling``) writes one JSON array of chrome-trace events. Per inference it
emits one ``cat == "Node"`` event per executed node, named ``<node name>_kernel_time`` (older builds also
emit ``_fence_before`` / ``_fence_after`` events, which carry no kernel time and are skipped), and two
``cat == "Session"`` events that bracket the whole inference: ``SequentialExecutor::Execute`` (the executor
loop) and ``model_run`` (the full ``Run()`` call, including feed/fetch handling). Node events are grouped
by the ``model_run`` interval that contains them, so the caller can drop warm-up runs and average the rest;
nothing is aggregated here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferperf.errors import InferperfError

KERNEL_SUFFIX = "_kernel_time"
RUN_EVENT = "model_run"
EXECUTOR_EVENTS = ("SequentialExecutor::Execute", "ParallelExecutor::Execute")


class TraceError(InferperfError):
    """The profile file is missing, unreadable, or holds no inference runs."""


@dataclass
class NodeEvent:
    """One execution of one node of the *optimized* graph (times in microseconds, as ORT writes them)."""

    name: str
    op_name: str
    provider: str
    ts_us: float
    dur_us: float
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    thread_scheduling_stats: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op_name": self.op_name,
            "provider": self.provider,
            "ts_us": self.ts_us,
            "dur_us": self.dur_us,
            "input_shapes": self.input_shapes,
            "output_shapes": self.output_shapes,
            "thread_scheduling_stats": self.thread_scheduling_stats,
        }


@dataclass
class TraceRun:
    """One ``model_run``: its own duration and the node events it contains, in execution order.

    ``executor_dur_us`` is the ``SequentialExecutor::Execute`` span inside the run (None when absent); the
    difference to ``dur_us`` is the per-run overhead outside the kernel loop (feeds, fetches, allocation).
    """

    index: int
    ts_us: float
    dur_us: float
    events: list[NodeEvent] = field(default_factory=list)
    executor_dur_us: float | None = None

    @property
    def kernel_sum_us(self) -> float:
        return sum(e.dur_us for e in self.events)


def _shapes(entries: Any) -> list[list[int]]:
    """ORT writes shapes as ``[{"float": [1, 3, 224, 224]}, ...]``, one dict per (present) tensor."""
    out: list[list[int]] = []
    if not isinstance(entries, list):
        return out
    for entry in entries:
        if isinstance(entry, dict):
            for dims in entry.values():
                out.append([int(d) for d in dims] if isinstance(dims, list) else [])
                break
            else:
                out.append([])
    return out


def load_trace_events(trace_path: str | Path) -> list[dict[str, Any]]:
    """The raw event list; raises :class:`TraceError` with the path when it cannot be read."""
    path = Path(trace_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TraceError(f"ORT profile file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise TraceError(f"ORT profile file is not valid JSON: {path} ({exc})") from exc
    if isinstance(data, dict) and "traceEvents" in data:
        data = data["traceEvents"]
    if not isinstance(data, list):
        raise TraceError(f"ORT profile file has no event list: {path}")
    return [e for e in data if isinstance(e, dict)]


def parse_ort_trace(trace_path: str | Path) -> list[TraceRun]:
    """Executed-node events of every inference in the trace, grouped per ``model_run``, in time order.

    Node events outside every ``model_run`` interval (none are expected on the CPU EP) are dropped; a trace
    with node events but no ``model_run`` is an error, because durations could then not be attributed to
    runs and warm-up could not be excluded.
    """
    events = load_trace_events(trace_path)
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == RUN_EVENT),
        key=lambda e: float(e.get("ts", 0)),
    )
    node_events = sorted(
        (e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith(KERNEL_SUFFIX)),
        key=lambda e: float(e.get("ts", 0)),
    )
    executors = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") in EXECUTOR_EVENTS),
        key=lambda e: float(e.get("ts", 0)),
    )
    if not runs:
        if node_events:
            raise TraceError(f"ORT profile has node events but no '{RUN_EVENT}' events: {trace_path}")
        raise TraceError(f"ORT profile holds no inference run: {trace_path}")

    out = [TraceRun(index=i, ts_us=float(r.get("ts", 0)), dur_us=float(r.get("dur", 0))) for i, r in enumerate(runs)]
    # Each run is a closed interval [ts, ts + dur]; events are sorted, so one sweep assigns them.
    ri = 0
    for e in node_events:
        ts = float(e.get("ts", 0))
        while ri < len(out) and ts > out[ri].ts_us + out[ri].dur_us:
            ri += 1
        if ri == len(out):
            break
        if ts < out[ri].ts_us:
            continue
        args = e.get("args", {}) or {}
        out[ri].events.append(
            NodeEvent(
                name=str(e["name"])[: -len(KERNEL_SUFFIX)],
                op_name=str(args.get("op_name", "")),
                provider=str(args.get("provider", "")),
                ts_us=ts,
                dur_us=float(e.get("dur", 0)),
                input_shapes=_shapes(args.get("input_type_shape")),
                output_shapes=_shapes(args.get("output_type_shape")),
                thread_scheduling_stats=str(args.get("thread_scheduling_stats", "") or ""),
            )
        )
    ri = 0
    for ex in executors:
        ts = float(ex.get("ts", 0))
        while ri < len(out) and ts > out[ri].ts_us + out[ri].dur_us:
            ri += 1
        if ri == len(out):
            break
        if ts >= out[ri].ts_us and out[ri].executor_dur_us is None:
            out[ri].executor_dur_us = float(ex.get("dur", 0))
    return out
