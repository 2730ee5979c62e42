"""In-process systems under test: a runner executes batches of samples, a SUT decides when.

- A **runner** turns a list of sample indices into one batched inference (plus per-sample pre- and
  post-processing when the workload carries raw inputs) and reports how long each part took.
  :class:`ModelRunner` runs a :class:`~inferperf.serve.model.ServedModel`; :class:`NoopRunner` does nothing
  (it measures the load generator itself).
- A **SUT** receives queries one by one. :class:`QueueSUT` queues them for worker threads that batch the
  way the HTTP server does (up to ``max_batch`` samples or ``max_delay_ms`` after the oldest), so an
  in-process run and a served run differ only by the HTTP layer. :class:`InlineSUT` runs each query in the
  caller's thread: a blocking system, the case coordinated omission is about.

Completion callbacks receive ``(query_id, t_done_ns, stages, batch_size, error)``: stage values are
milliseconds, ``error`` is None for a query that succeeded and the reason for one that failed.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from inferperf.load.clock import Clock, MonotonicClock

OnDone = Callable[[int, int, dict[str, float], int, str | None], None]


@dataclass
class RunTiming:
    """Durations of one batched run, in milliseconds (per-sample lists for the per-sample stages)."""

    inference_ms: float | None
    preprocess_ms: list[float] | None = None
    postprocess_ms: list[float] | None = None


class Runner(Protocol):
    """Executes one batch of samples."""

    sample_count: int
    rows_per_sample: int

    def run(self, samples: Sequence[int]) -> RunTiming: ...


class NoopRunner:
    """A system that answers instantly: what the generator alone can sustain."""

    rows_per_sample = 1

    def __init__(self, sample_count: int = 1024) -> None:
        self.sample_count = sample_count

    def run(self, samples: Sequence[int]) -> RunTiming:
        return RunTiming(inference_ms=None)  # nothing ran, so there is no inference time to report


@dataclass
class ModelRunner:
    """Batches samples of a workload through a served model.

    ``feeds[i]`` are ready tensors of sample i (tensor workloads); with ``raw`` items and a ``preprocess``
    function, each query pays its own pre-processing (decode, resize, tokenize), and ``postprocess``
    (softmax / top-k) runs on its slice of the outputs — the pipeline stages of the paper.
    """

    served: Any
    feeds: list[dict[str, np.ndarray]] = field(default_factory=list)
    raw: list[Any] | None = None
    preprocess: Callable[[Any], dict[str, np.ndarray]] | None = None
    postprocess: Callable[[dict[str, np.ndarray]], Any] | None = None
    rows_per_sample: int = 1
    clock: Clock = field(default_factory=MonotonicClock)

    def __post_init__(self) -> None:
        if self.raw is None and not self.feeds:
            raise ValueError("a ModelRunner needs prepared feeds or raw items with a preprocess function")
        if self.raw is not None and self.preprocess is None:
            raise ValueError("raw items need a preprocess function")

    @property
    def sample_count(self) -> int:
        return len(self.raw) if self.raw is not None else len(self.feeds)

    def run(self, samples: Sequence[int]) -> RunTiming:
        now = self.clock.now_ns
        pre_ms: list[float] | None = None
        if self.raw is not None:
            assert self.preprocess is not None
            pre_ms = []
            parts = []
            for s in samples:
                t = now()
                parts.append(self.preprocess(self.raw[s]))
                pre_ms.append((now() - t) / 1e6)
        else:
            parts = [self.feeds[s] for s in samples]
        feeds = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        rows = len(samples) * self.rows_per_sample
        t = now()
        outputs = self.served.infer(feeds, rows)
        inference_ms = (now() - t) / 1e6
        post_ms: list[float] | None = None
        if self.postprocess is not None:
            post_ms = []
            r = self.rows_per_sample
            for j in range(len(samples)):
                t = now()
                self.postprocess({k: v[j * r:(j + 1) * r] for k, v in outputs.items()})
                post_ms.append((now() - t) / 1e6)
        return RunTiming(inference_ms, pre_ms, post_ms)


def _stages(timing: RunTiming, j: int, queue_ms: float) -> dict[str, float]:
    st = {"queue": queue_ms}
    if timing.inference_ms is not None:
        st["inference"] = timing.inference_ms
    if timing.preprocess_ms is not None:
        st["preprocess"] = timing.preprocess_ms[j]
    if timing.postprocess_ms is not None:
        st["postprocess"] = timing.postprocess_ms[j]
    return st


class InlineSUT:
    """Runs each query synchronously in the issuing thread: the sender is blocked while the system works."""

    def __init__(self, runner: Runner, clock: Clock | None = None) -> None:
        self.runner = runner
        self.clock = clock or MonotonicClock()

    def issue(self, qid: int, sample: int, on_done: OnDone) -> None:
        try:
            timing = self.runner.run([sample])
        except Exception as exc:  # a failing system fails the query, not the generator
            on_done(qid, self.clock.now_ns(), {}, 1, f"{type(exc).__name__}: {exc}")
            return
        on_done(qid, self.clock.now_ns(), _stages(timing, 0, 0.0), 1, None)

    def start(self) -> None:
        return None

    def wait_idle(self, timeout_s: float) -> bool:
        return True

    def stop(self) -> None:
        return None


class QueueSUT:
    """Worker threads that batch queued queries (the server's dynamic batching, without HTTP).

    The queue itself is unbounded here because its producer is bounded: a generator issues a finite,
    pre-computed schedule, and a queued query is three integers.
    """

    def __init__(self, runner: Runner, *, max_batch: int = 1, max_delay_ms: float = 0.0, workers: int = 1,
                 clock: Clock | None = None) -> None:
        if max_batch < 1 or workers < 1 or max_delay_ms < 0:
            raise ValueError("max_batch and workers must be >= 1, max_delay_ms >= 0")
        self.runner = runner
        self.max_batch = max_batch
        self.max_delay_ns = int(max_delay_ms * 1e6)
        self.workers = workers
        self.clock = clock or MonotonicClock()
        self._queue: collections.deque[tuple[int, int, OnDone, int]] = collections.deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._busy = 0
        self.batches: dict[int, int] = {}

    def start(self) -> None:
        self._stopping = False
        for k in range(self.workers):
            t = threading.Thread(target=self._work, name=f"inferperf-sut-{k}", daemon=True)
            t.start()
            self._threads.append(t)

    def issue(self, qid: int, sample: int, on_done: OnDone) -> None:
        with self._cond:
            self._queue.append((qid, sample, on_done, self.clock.now_ns()))
            self._cond.notify()

    def issue_many(self, items: Sequence[tuple[int, int]], on_done: OnDone) -> None:
        """Queue several queries at once (a LoadGen query of many samples) with one wake-up."""
        t = self.clock.now_ns()
        with self._cond:
            self._queue.extend((qid, sample, on_done, t) for qid, sample in items)
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until the queue is empty and no worker is busy (or the timeout passes)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and self._busy == 0, timeout=timeout_s)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()

    def _take_batch(self) -> list[tuple[int, int, OnDone, int]] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            if self.max_batch > 1 and self.max_delay_ns > 0:
                deadline = self._queue[0][3] + self.max_delay_ns
                while len(self._queue) < self.max_batch and not self._stopping:
                    remaining = deadline - self.clock.now_ns()
                    if remaining <= 0:
                        break
                    self._cond.wait(timeout=remaining / 1e9)
                    if not self._queue:
                        break
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self._busy += 1
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
                continue
            t_start = self.clock.now_ns()
            try:
                timing = self.runner.run([sample for _, sample, _, _ in batch])
                error = None
            except Exception as exc:  # a failed batch completes its queries as failures, never hangs them
                timing, error = None, f"{type(exc).__name__}: {exc}"
            t_done = self.clock.now_ns()
            n = len(batch)
            self.batches[n] = self.batches.get(n, 0) + 1
            for j, (qid, _, on_done, t_issue) in enumerate(batch):
                if timing is None:
                    on_done(qid, t_done, {}, n, error)
                else:
                    on_done(qid, t_done, _stages(timing, j, (t_start - t_issue) / 1e6), n, None)
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()
