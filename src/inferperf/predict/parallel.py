"""Per-graph derived quantities computed in forked worker processes.

Why: a batched ``additive-gbm`` prediction spends most of its time deriving per-graph quantities in Python —
the fusion rules' partition, the simulated ONNX Runtime arena, the cost rows, the static and node-cost
features — ~3 ms for a 100-node graph, against ~0.3 ms for everything the fitted model does with them. Those
quantities are pure functions of one graph (and its device), independent across graphs, and memoised on the
graph object (:meth:`~inferperf.ir.graph.ModelGraph.derived`). So a large batch is split: forked workers
derive a share each and hand back the memo entries, the calling process derives its own share meanwhile and
adopts theirs; the model work (prices, trees, intervals) stays in the calling process, so the predictions are
identical to a serial run (tested). Workers only run Python and NumPy — never LightGBM or torch, whose
thread pools do not survive a fork.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from inferperf.ir.graph import ModelGraph

#: fewer graphs than this per process and the fork and the transfer cost more than they save
MIN_GRAPHS_PER_PROCESS = 64

Derive = Callable[[ModelGraph, dict[str, Any], dict[str, Any]], None]
_Job = tuple[Sequence[ModelGraph], Sequence[dict[str, Any]], Sequence[dict[str, Any]], Derive, Collection[str]]
#: what a forked worker inherits: (graphs, configs, devices, derive, memo key names to hand back)
_JOB: _Job | None = None
_LOCK = threading.Lock()


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset``; else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def processes_for(n_graphs: int, n_jobs: int | None) -> int:
    """How many processes (the caller's included) derive ``n_graphs``: ``n_jobs`` (None or ≤ 0: every
    available CPU), at most one per :data:`MIN_GRAPHS_PER_PROCESS` graphs, and 1 where ``fork`` is missing."""
    wanted = available_cpus() if n_jobs is None or n_jobs <= 0 else int(n_jobs)
    if "fork" not in mp.get_all_start_methods():
        return 1
    return max(1, min(wanted, n_graphs // MIN_GRAPHS_PER_PROCESS))


def _work(indices: np.ndarray) -> list[dict[tuple[Any, ...], Any]]:
    if _JOB is None:  # pragma: no cover - only reachable if a worker was not forked from derive_all
        raise RuntimeError("derive worker started without a job")
    graphs, configs, devices, derive, keys = _JOB
    out = []
    for i in indices:
        derive(graphs[i], configs[i], devices[i])
        out.append(graphs[i].derived_items(keys))
    return out


def derive_all(graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]], devices: Sequence[dict[str, Any]],
               derive: Derive, keys: Collection[str], n_jobs: int | None = None) -> int:
    """Call ``derive(graph, config, device)`` for every graph (it memoises its results on the graph), in up to
    ``n_jobs`` processes; the memo entries named by ``keys`` computed in workers are adopted by the graphs
    here. Graphs that already hold an entry of every name in ``keys`` are skipped. Returns the number of
    processes used."""
    todo = np.array([i for i, g in enumerate(graphs)
                     if {k[0] for k in g.derived_items(keys)} != set(keys)], dtype=np.int64)
    jobs = processes_for(len(todo), n_jobs)
    if jobs < 2:
        for i in todo:
            derive(graphs[i], configs[i], devices[i])
        return 1
    chunks = [todo[k::jobs] for k in range(jobs)]  # interleaved: graph sizes drift along a batch
    with _LOCK:  # one job at a time: the workers read it from a module global
        _fork_and_derive(graphs, configs, devices, derive, keys, chunks)
    return jobs


def _fork_and_derive(graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]],
                     devices: Sequence[dict[str, Any]], derive: Derive, keys: Collection[str],
                     chunks: list[np.ndarray]) -> None:
    global _JOB
    _JOB = (graphs, configs, devices, derive, tuple(keys))
    # every object that exists now goes to the permanent generation: no collection in either process walks
    # (and so writes to) the pages the two share after the fork, which would copy them one by one
    gc.freeze()
    try:
        with mp.get_context("fork").Pool(len(chunks) - 1) as pool:
            pending = pool.map_async(_work, chunks[1:])
            for i in chunks[0]:
                derive(graphs[i], configs[i], devices[i])
            for chunk, items in zip(chunks[1:], pending.get(), strict=True):
                for i, entries in zip(chunk, items, strict=True):
                    graphs[i].adopt_derived(entries)
    finally:
        _JOB = None
        gc.unfreeze()
