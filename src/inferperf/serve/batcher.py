"""Dynamic batching with a bounded queue, on the server's asyncio event loop.

Requests wait in a queue of at most ``max_queue`` entries (a full queue rejects at once: the server answers
503 and memory stays bounded whatever the offered load). One collector task forms batches the way Triton's
dynamic batcher does: it takes the oldest request, then keeps adding requests until the batch holds
``max_batch`` rows or ``max_delay`` has passed *since the oldest request arrived*; the batch runs as one
inference on a single model-instance thread (ONNX Runtime releases the GIL, so the event loop keeps
accepting requests meanwhile, and requests arriving during an inference form the next batch). With
``max_delay = 0`` the batcher never waits: it batches only what queued up during the previous inference.

If a batched inference fails, each of its requests is re-run alone, so one bad request (an id outside the
vocabulary) fails by itself instead of failing its batch-mates.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np


class QueueFullError(Exception):
    """The batcher's queue holds ``max_queue`` requests: the request is rejected (HTTP 503)."""


class InferenceFailedError(Exception):
    """The model failed on this request's inputs even when run alone."""


@dataclass
class BatchTiming:
    """Where one request's server time went."""

    queue_ms: float
    inference_ms: float
    batch_rows: int
    batch_requests: int

    def parameters(self) -> dict[str, Any]:
        return {"queue_ms": round(self.queue_ms, 4), "inference_ms": round(self.inference_ms, 4),
                "batch_size": self.batch_rows, "batch_requests": self.batch_requests}


class _Item:
    __slots__ = ("feeds", "rows", "future", "t_enqueue")

    def __init__(self, feeds: Mapping[str, np.ndarray], rows: int, future: asyncio.Future[Any], t: int) -> None:
        self.feeds = feeds
        self.rows = rows
        self.future = future
        self.t_enqueue = t


class DynamicBatcher:
    """Collects requests into batches; ``infer(feeds, rows)`` runs one batch and returns named outputs."""

    def __init__(
        self,
        infer: Callable[[Mapping[str, np.ndarray], int], dict[str, np.ndarray]],
        *,
        max_batch: int = 1,
        max_delay_ms: float = 0.0,
        max_queue: int = 64,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_delay_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_delay_ms >= 0")
        self._infer = infer
        self.max_batch = int(max_batch)
        self.max_delay_ns = int(max_delay_ms * 1e6)
        self.max_queue = int(max_queue)
        self.on_batch = on_batch
        self._pending: collections.deque[_Item] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inferperf-model")
        self.batches_run = 0
        self.rejected = 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._task = loop.create_task(self._collect_forever(), name="inferperf-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(QueueFullError("the server is shutting down"))
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def submit(self, feeds: Mapping[str, np.ndarray], rows: int) -> tuple[dict[str, np.ndarray], BatchTiming]:
        """Queue one request; resolves with its outputs and timing. Raises QueueFullError when full."""
        if self._wakeup is None:
            raise RuntimeError("the batcher is not started")
        if len(self._pending) >= self.max_queue:
            self.rejected += 1
            raise QueueFullError(f"the queue holds {self.max_queue} requests")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(feeds, rows, fut, time.perf_counter_ns()))
        self._wakeup.set()
        return await fut

    async def _collect_forever(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._pending[0].t_enqueue + self.max_delay_ns
            while self._rows_pending() < self.max_batch:
                remaining = deadline - time.perf_counter_ns()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining / 1e9)
                except TimeoutError:
                    break
            batch: list[_Item] = []
            rows = 0
            head = self._pending[0]
            if head.rows > self.max_batch:  # validation prevents it; never let one request wedge the queue
                self._pending.popleft()
                if not head.future.done():
                    head.future.set_exception(InferenceFailedError(
                        f"batch of {head.rows} rows exceeds the maximum batch {self.max_batch}"))
                continue
            while self._pending and rows + self._pending[0].rows <= self.max_batch:
                item = self._pending.popleft()
                if item.future.cancelled():  # the client went away while queued
                    continue
                batch.append(item)
                rows += item.rows
            if not batch:
                continue
            t_start = time.perf_counter_ns()
            results = await loop.run_in_executor(self._executor, self._run_batch, batch, rows)
            self.batches_run += 1
            for item, (outputs, inf_ms, error) in zip(batch, results, strict=True):
                if item.future.done():
                    continue
                if error is not None:
                    item.future.set_exception(InferenceFailedError(error))
                    continue
                timing = BatchTiming((t_start - item.t_enqueue) / 1e6, inf_ms, rows, len(batch))
                item.future.set_result((outputs, timing))

    def _rows_pending(self) -> int:
        return sum(item.rows for item in self._pending)

    def _run_batch(self, batch: list[_Item], rows: int) -> list[tuple[dict[str, np.ndarray] | None, float, str | None]]:
        """Runs on the model thread: one batched inference, split back per request."""
        if len(batch) == 1:
            feeds = batch[0].feeds
        else:
            feeds = {name: np.concatenate([it.feeds[name] for it in batch], axis=0) for name in batch[0].feeds}
        t = time.perf_counter_ns()
        try:
            outputs = self._infer(feeds, rows)
        except Exception as exc:
            if len(batch) == 1:
                return [(None, (time.perf_counter_ns() - t) / 1e6, _short(exc))]
            return [self._run_alone(item) for item in batch]
        inf_ms = (time.perf_counter_ns() - t) / 1e6
        if self.on_batch is not None:
            self.on_batch(rows, len(batch), inf_ms)
        if len(batch) == 1:
            return [(outputs, inf_ms, None)]
        out: list[tuple[dict[str, np.ndarray] | None, float, str | None]] = []
        start = 0
        for item in batch:
            out.append(({k: v[start:start + item.rows] for k, v in outputs.items()}, inf_ms, None))
            start += item.rows
        return out

    def _run_alone(self, item: _Item) -> tuple[dict[str, np.ndarray] | None, float, str | None]:
        t = time.perf_counter_ns()
        try:
            outputs = self._infer(item.feeds, item.rows)
        except Exception as exc:
            return None, (time.perf_counter_ns() - t) / 1e6, _short(exc)
        inf_ms = (time.perf_counter_ns() - t) / 1e6
        if self.on_batch is not None:
            self.on_batch(item.rows, 1, inf_ms)
        return outputs, inf_ms, None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
