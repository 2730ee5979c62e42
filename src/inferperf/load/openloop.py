"""inferperf's own load generators: open loop (a seeded schedule) and closed loop (N outstanding queries),
against an in-process SUT or an HTTP server.

Open loop follows measurement rule 5. The schedule is fixed before the run; the sender waits for each
scheduled time and dispatches; the dispatch time is recorded (lateness = dispatch − scheduled) and the
latency of every query is taken from its *scheduled* time. If the system stalls and the sender is held up
(a blocking SUT, an exhausted connection pool, a busy event loop), the queries that should have gone out
meanwhile carry the stall in their latency and are counted late, instead of silently disappearing from
the tail. The sender's own CPU time over the wall time of the send phase tells whether the generator was
the bottleneck.

Closed loop keeps ``concurrency`` queries outstanding (each worker sends the next query when its previous
one completes): the concurrency sweep of perf_analyzer. It measures capacity, not latency under a given
arrival rate, so lateness does not apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from inferperf.load.clock import Clock, MonotonicClock
from inferperf.load.result import LoadResult, Recorder, build_result
from inferperf.load.schedule import Schedule
from inferperf.load.validity import ValidityRules
from inferperf.measure.result import now_iso

T = TypeVar("T")

#: the first arrival is scheduled this far after the sender starts, so set-up cost never makes it late
LEAD_NS = 20_000_000

#: the HTTP sender sleeps on the event loop's timer until this long before a send, then polls the loop
#: (answers are still read meanwhile) until the send time: uvloop's timers have 1 ms resolution, so
#: sleeping all the way made 3-4% of sends more than 1 ms late at 1,000 req/s (benchmarks/load_generator.py)
SPIN_NS = 2_000_000

#: GIL switch interval during in-process runs. The default 5 ms lets a worker thread running Python code
#: keep the GIL for up to 5 ms while the sender waits to send on time; 0.5 ms halved the late sends
#: measured with an ONNX model behind a QueueSUT (benchmarks/load_generator.py).
SWITCH_INTERVAL_S = 0.0005


@contextlib.contextmanager
def gil_switch_interval(seconds: float = SWITCH_INTERVAL_S) -> Iterator[None]:
    """Shorten the interpreter's GIL switch interval for the duration of a run, then restore it."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _recorder_callback(rec: Recorder) -> Callable[[int, int, dict[str, float], int, str | None], None]:
    def on_done(qid: int, t_done: int, stages: dict[str, float], batch: int, error: str | None) -> None:
        if error is not None:
            rec.fail(qid, t_done, error)
        else:
            rec.complete(qid, t_done, stages=stages, batch_size=batch)

    return on_done


def run_open_loop(
    sut: Any,
    schedule: Schedule,
    *,
    sample_count: int,
    rules: ValidityRules | None = None,
    clock: Clock | None = None,
    scenario: str = "server",
    target: dict[str, Any] | None = None,
    drain_timeout_s: float = 30.0,
) -> LoadResult:
    """Issue ``schedule`` to an in-process ``sut`` (``issue(qid, sample, on_done)``) from this thread."""
    rules = rules or ValidityRules()
    clock = clock or MonotonicClock()
    measure_cpu = isinstance(clock, MonotonicClock)
    n = len(schedule)
    rec = Recorder(n)
    rec.set_count(n)
    on_done = _recorder_callback(rec)
    started_at = now_iso()
    sut.start()
    with contextlib.ExitStack() as stack:
        stack.callback(sut.stop)
        stack.enter_context(gil_switch_interval())
        start = clock.now_ns() + LEAD_NS
        rec.scheduled[:] = start + schedule.offsets_ns
        times = rec.scheduled.tolist()
        sent = rec.sent
        now, sleep_until, issue = clock.now_ns, clock.sleep_until, sut.issue
        cpu0, wall0 = time.thread_time_ns(), now()
        for i in range(n):
            t = times[i]
            if now() < t:
                sleep_until(t)
            sent[i] = now()
            issue(i, i % sample_count, on_done)
        wall = now() - wall0
        cpu = (time.thread_time_ns() - cpu0) / wall if measure_cpu and wall > 0 else None
        sut.wait_idle(drain_timeout_s)
    return build_result(rec, scenario=scenario, target=target or {}, generator="inferperf-openloop", rules=rules,
                        start_ns=start, qps_target=schedule.qps, open_loop=True, client_cpu=cpu,
                        schedule=schedule.to_dict(), started_at=started_at)


def run_closed_loop(
    sut: Any,
    *,
    concurrency: int,
    duration_s: float,
    sample_count: int,
    max_queries: int = 1_000_000,
    rules: ValidityRules | None = None,
    scenario: str = "concurrency",
    target: dict[str, Any] | None = None,
    drain_timeout_s: float = 30.0,
) -> LoadResult:
    """``concurrency`` threads, each sending its next query when the previous one completed."""
    rules = rules or ValidityRules()
    clock = MonotonicClock()
    rec = Recorder(max_queries)
    on_done = _recorder_callback(rec)
    started_at = now_iso()
    start = clock.now_ns()
    deadline = start + int(duration_s * 1e9)

    def worker() -> None:
        event = threading.Event()

        def done(qid: int, t: int, stages: dict[str, float], batch: int, error: str | None) -> None:
            on_done(qid, t, stages, batch, error)
            event.set()

        while clock.now_ns() < deadline:
            i = rec.next_index()
            if i is None:
                return
            event.clear()
            t = clock.now_ns()
            rec.scheduled[i] = rec.sent[i] = t
            sut.issue(i, i % sample_count, done)
            if not event.wait(timeout=drain_timeout_s):
                return

    sut.start()
    with contextlib.ExitStack() as stack:
        stack.callback(sut.stop)
        stack.enter_context(gil_switch_interval())
        threads = [threading.Thread(target=worker, name=f"inferperf-closed-{k}", daemon=True)
                   for k in range(concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=duration_s + drain_timeout_s + 5)
        sut.wait_idle(drain_timeout_s)
    return build_result(rec, scenario=scenario, target=target or {}, generator="inferperf-closedloop", rules=rules,
                        start_ns=start, qps_target=None, open_loop=False, concurrency=concurrency,
                        started_at=started_at)


# ------------------------------------------------------------------------------------------------ HTTP


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh event loop, uvloop when installed (about twice the asyncio throughput)."""
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


@dataclass
class HttpWork:
    """What one HTTP query sends and does with the answer.

    ``prepare(sample)`` returns the request bytes and the pre-processing time it spent (None when the
    bytes were built before the run); ``finish(body, header_length)`` post-processes a successful answer
    and returns the time that took (None when the answer is not looked at).
    """

    sample_count: int
    prepare: Callable[[int], tuple[bytes, float | None]]
    finish: Callable[[bytes, int | None], float | None] | None = None


async def _send_one(client: Any, work: HttpWork, rec: Recorder, i: int, sample: int) -> None:
    from inferperf.load.http_client import server_parameters

    try:
        raw, pre_ms = work.prepare(sample)
        resp = await client.send(raw)
    except Exception as exc:  # connection refused / reset: a failed query, never a crashed run
        rec.fail(i, time.perf_counter_ns(), f"transport error: {type(exc).__name__}: {exc}")
        return
    if resp.status != 200:
        rec.fail(i, resp.t_done_ns, f"HTTP {resp.status}", resp.status)
        return
    stages: dict[str, float] = {}
    batch = 0
    if pre_ms is not None:
        stages["preprocess"] = pre_ms
    rtt_ms = (resp.t_done_ns - resp.t_sent_ns) / 1e6
    try:
        params = server_parameters(resp.body, resp.header_length)
    except Exception:
        params = {}
    server_ms = params.get("server_ms")
    if isinstance(server_ms, int | float):
        stages["transmission"] = max(rtt_ms - server_ms, 0.0)
        queue_ms, inf_ms = params.get("queue_ms"), params.get("inference_ms")
        if isinstance(queue_ms, int | float) and isinstance(inf_ms, int | float):
            stages["queue"] = queue_ms
            stages["inference"] = inf_ms
            stages["server_other"] = max(server_ms - queue_ms - inf_ms, 0.0)
        batch = int(params.get("batch_size") or 0)
    t_done = resp.t_done_ns
    if work.finish is not None:
        post_ms = work.finish(resp.body, resp.header_length)
        if post_ms is not None:
            stages["postprocess"] = post_ms
        t_done = time.perf_counter_ns()
    rec.complete(i, t_done, status=200, stages=stages, batch_size=batch)


async def _open_loop_http(client: Any, work: HttpWork, schedule: Schedule, rec: Recorder,
                          drain_timeout_s: float) -> tuple[int, float]:
    n = len(schedule)
    now = time.perf_counter_ns
    start = now() + LEAD_NS
    rec.scheduled[:n] = start + schedule.offsets_ns
    times = rec.scheduled[:n].tolist()
    sent = rec.sent
    tasks: set[asyncio.Task[None]] = set()
    cpu0, wall0 = time.thread_time_ns(), now()
    for i in range(n):
        t = times[i]
        delay = t - now()
        if delay > SPIN_NS:
            await asyncio.sleep((delay - SPIN_NS) / 1e9)
        while now() < t:  # poll the loop (answers keep flowing) until the send time, never before it
            await asyncio.sleep(0)
        sent[i] = now()
        task = asyncio.create_task(_send_one(client, work, rec, i, i % work.sample_count))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    wall = now() - wall0
    cpu = (time.thread_time_ns() - cpu0) / wall if wall > 0 else 0.0
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_timeout_s)
        for task in pending:
            task.cancel()
    return start, cpu


def run_open_loop_http(
    url: str,
    work: HttpWork,
    schedule: Schedule,
    *,
    rules: ValidityRules | None = None,
    scenario: str = "server",
    target: dict[str, Any] | None = None,
    max_connections: int = 256,
    shaper: Any = None,
    drain_timeout_s: float = 30.0,
) -> LoadResult:
    """Open-loop Poisson (or uniform) load over HTTP with keep-alive connections."""
    from inferperf.load.http_client import HttpClient

    rules = rules or ValidityRules()
    rec = Recorder(len(schedule))
    rec.set_count(len(schedule))
    started_at = now_iso()

    async def main() -> tuple[int, float, dict[str, int]]:
        client = HttpClient(url, max_connections=max_connections, shaper=shaper)
        try:
            start, cpu = await _open_loop_http(client, work, schedule, rec, drain_timeout_s)
        finally:
            await client.close()
        return start, cpu, {"connections_opened": client.opened, "pool_waits": client.pool_waits}

    start, cpu, pool = run_async(main())
    result = build_result(rec, scenario=scenario, target=target or {"url": url}, generator="inferperf-openloop-http",
                          rules=rules, start_ns=start, qps_target=schedule.qps, open_loop=True, client_cpu=cpu,
                          schedule=schedule.to_dict(), started_at=started_at)
    result.extra["client_pool"] = pool
    if pool["pool_waits"]:
        result.extra["client_pool"]["note"] = (f"{pool['pool_waits']} sends waited for a free connection "
                                               f"(max {max_connections}); their wait counts as lateness")
    return result


async def _closed_loop_http(client: Any, work: HttpWork, rec: Recorder, concurrency: int, duration_s: float,
                            samples_per_query: int, drain_timeout_s: float) -> tuple[int, float]:
    now = time.perf_counter_ns
    start = now()
    deadline = start + int(duration_s * 1e9)
    cpu0 = time.thread_time_ns()

    async def worker(k: int) -> None:
        while now() < deadline:
            i = rec.next_index()
            if i is None:
                return
            t = now()
            rec.scheduled[i] = rec.sent[i] = t
            if samples_per_query == 1:
                await _send_one(client, work, rec, i, i % work.sample_count)
                continue
            # a multi-stream query: its samples go out together, it completes with the last of them
            sub = Recorder(samples_per_query)
            sub.set_count(samples_per_query)
            sub.scheduled[:] = t
            base = i * samples_per_query
            await asyncio.gather(*(_send_one(client, work, sub, j, (base + j) % work.sample_count)
                                   for j in range(samples_per_query)))
            if sub.failed.any():
                rec.fail(i, int(sub.done.max()), next(iter(sub.errors), "failed"))
            else:
                stages = {k: float(np.nanmax(v)) for k, v in sub.stage_ms.items() if not np.isnan(v).all()}
                rec.complete(i, int(sub.done.max()), stages=stages, batch_size=int(sub.batch_size.max()))

    tasks = [asyncio.create_task(worker(k)) for k in range(concurrency)]
    await asyncio.wait(tasks, timeout=duration_s + drain_timeout_s)
    for task in tasks:
        task.cancel()
    wall = now() - start
    return start, (time.thread_time_ns() - cpu0) / wall if wall > 0 else 0.0


def run_closed_loop_http(
    url: str,
    work: HttpWork,
    *,
    concurrency: int,
    duration_s: float,
    rules: ValidityRules | None = None,
    scenario: str = "concurrency",
    target: dict[str, Any] | None = None,
    samples_per_query: int = 1,
    max_queries: int = 1_000_000,
    shaper: Any = None,
    drain_timeout_s: float = 30.0,
) -> LoadResult:
    """Closed-loop HTTP load: ``concurrency`` outstanding queries of ``samples_per_query`` requests each."""
    from inferperf.load.http_client import HttpClient

    rules = rules or ValidityRules()
    rec = Recorder(max_queries)
    started_at = now_iso()

    async def main() -> tuple[int, float]:
        client = HttpClient(url, max_connections=max(concurrency * samples_per_query, 1), shaper=shaper)
        try:
            return await _closed_loop_http(client, work, rec, concurrency, duration_s, samples_per_query,
                                           drain_timeout_s)
        finally:
            await client.close()

    start, cpu = run_async(main())
    return build_result(rec, scenario=scenario, target=target or {"url": url}, generator="inferperf-closedloop-http",
                        rules=rules, start_ns=start, qps_target=None, open_loop=False, client_cpu=cpu,
                        concurrency=concurrency, samples_per_query=samples_per_query, started_at=started_at)

