"""Per-graph derived quantities computed in forked worker processes.

Why: a batched ``additive-gbm`` prediction spends most of its time deriving per-graph quantities in Python —
the fusion rules' partition, the simulated ONNX Runtime arena, the cost rows, the static and node-cost
features — ~2.5 ms for a 100-node graph, against ~0.3 ms for everything the fitted model does with them. Those
quantities are pure functions of one graph (and its device), independent across graphs, and memoised on the
graph object (:meth:`~inferperf.ir.graph.ModelGraph.derived`). So a large batch is shared out: forked workers
and the calling process take graphs from one queue a few at a time (a process slowed by its neighbours takes
fewer), the workers hand back the memo entries and the calling process adopts them; the model work (prices,
trees, intervals) stays in the calling process, so the predictions are identical to a serial run (tested).
Workers only run Python and NumPy — never LightGBM or torch, whose thread pools do not survive a fork.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from inferperf.ir.graph import ModelGraph

#: fewer graphs than this per process and the fork and the transfer cost more than they save
MIN_GRAPHS_PER_PROCESS = 64

#: graphs a process takes from the shared queue at a time (fewer: more lock traffic; more: a longer tail)
CLAIM = 8

Derive = Callable[[ModelGraph, dict[str, Any], dict[str, Any]], None]
#: what a forked worker inherits: (graphs, configs, devices, derive, memo key names to hand back, the indices
#: to derive, the shared position of the next unclaimed one)
_Job = tuple[Sequence[ModelGraph], Sequence[dict[str, Any]], Sequence[dict[str, Any]], Derive, Collection[str],
             list[int], Any]
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


def _claimed(todo: list[int], position: Any) -> Iterator[int]:
    """Indices of ``todo`` this process takes, :data:`CLAIM` at a time, until none is left: each process
    derives as many graphs as its speed allows, so none waits for another at the end (a forked worker runs
    slower than the parent while it copies the pages it writes)."""
    while True:
        with position.get_lock():
            start = position.value
            position.value = start + CLAIM
        if start >= len(todo):
            return
        yield from todo[start:start + CLAIM]


def _work(conn: Any) -> None:
    """A forked worker: derive graphs from the shared queue, send back (index, memo entries) for each, exit."""
    if _JOB is None:  # pragma: no cover - only reachable if a worker was not forked from derive_all
        raise RuntimeError("derive worker started without a job")
    graphs, configs, devices, derive, keys, todo, position = _JOB
    out = []
    for i in _claimed(todo, position):
        derive(graphs[i], configs[i], devices[i])
        out.append((i, graphs[i].derived_items(keys)))
    conn.send(out)
    conn.close()


def derive_all(graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]], devices: Sequence[dict[str, Any]],
               derive: Derive, keys: Collection[str], n_jobs: int | None = None) -> int:
    """Call ``derive(graph, config, device)`` for every graph (it memoises its results on the graph), in up to
    ``n_jobs`` processes; the memo entries named by ``keys`` computed in workers are adopted by the graphs
    here. Graphs that already hold an entry of every name in ``keys`` are skipped. Returns the number of
    processes used."""
    todo = [i for i, g in enumerate(graphs) if {k[0] for k in g.derived_items(keys)} != set(keys)]
    jobs = processes_for(len(todo), n_jobs)
    if jobs < 2:
        for i in todo:
            derive(graphs[i], configs[i], devices[i])
        return 1
    with _LOCK:  # one job at a time: the workers read it from a module global
        _fork_and_derive(graphs, configs, devices, derive, keys, todo, jobs)
    return jobs


def _fork_and_derive(graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]],
                     devices: Sequence[dict[str, Any]], derive: Derive, keys: Collection[str],
                     todo: list[int], jobs: int) -> None:
    global _JOB
    ctx = mp.get_context("fork")
    position = ctx.Value("q", 0)  # the next unclaimed position in todo, shared by every process
    _JOB = (graphs, configs, devices, derive, tuple(keys), todo, position)
    # every object that exists now goes to the permanent generation: no collection in either process walks
    # (and so writes to) the pages the two share after the fork, which would copy them one by one
    gc.freeze()
    workers: list[tuple[Any, Any]] = []
    try:
        for _ in range(jobs - 1):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_work, args=(send,), daemon=True)
            proc.start()
            send.close()  # the worker holds the other copy: its exit ends the pipe
            workers.append((proc, receive))
        derived = set()
        for i in _claimed(todo, position):
            derive(graphs[i], configs[i], devices[i])
            derived.add(i)
        for _, receive in workers:
            try:
                items = receive.recv()
            except EOFError:  # the worker died: what it claimed and did not send is derived below
                continue
            for i, entries in items:
                graphs[i].adopt_derived(entries)
                derived.add(i)
        for i in todo:
            if i not in derived:
                derive(graphs[i], configs[i], devices[i])
    finally:
        _JOB = None
        gc.unfreeze()
        for _, receive in workers:
            receive.close()
        if workers:
            # a worker's exit frees its copy of the address space (~25 ms for a 2 GB process): reap it in the
            # background instead of waiting for it
            threading.Thread(target=_reap, args=([proc for proc, _ in workers],), daemon=True).start()


def _reap(procs: list[Any]) -> None:
    for proc in procs:
        proc.join()
