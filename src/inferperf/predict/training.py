"""Shared pieces of the torch predictors: target scaling, masked Huber loss, and the training loop.

Targets are natural logs of the labels, standardised per target, so the three targets (ms, MiB, J) weigh
the same in a multi-target loss whatever their units. A missing label is masked out of the loss instead of
being imputed: a dataset measured on a machine without energy counters still trains latency and memory.
Early stopping watches the mean absolute log error on the dev set (≈ the mean relative error for small
errors), the quantity the evaluation reports, rather than the Huber loss.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from inferperf.dataset.core import TARGETS
from inferperf.predict.base import log_labels

__all__ = ["TargetScaler", "log_labels", "masked_huber", "torch_threads", "train_loop"]


class TargetScaler:
    """Per-target mean/std of log labels (NaN = missing)."""

    def __init__(self) -> None:
        self.mean = np.zeros(len(TARGETS))
        self.std = np.ones(len(TARGETS))
        self.trained = np.zeros(len(TARGETS), dtype=bool)

    def fit(self, y_log: np.ndarray) -> TargetScaler:
        for j in range(y_log.shape[1]):
            col = y_log[:, j]
            col = col[np.isfinite(col)]
            if col.size:
                self.trained[j] = True
                self.mean[j] = float(col.mean())
                self.std[j] = max(float(col.std()), 1e-3)
        return self

    def transform(self, y_log: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scaled targets with NaN → 0, mask of present labels) as float32."""
        mask = np.isfinite(y_log) & self.trained
        z = np.where(mask, (np.nan_to_num(y_log) - self.mean) / self.std, 0.0)
        return z.astype(np.float32), mask.astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Scaled outputs → log predictions, NaN for untrained targets."""
        out = np.asarray(z, dtype=np.float64) * self.std + self.mean
        out[:, ~self.trained] = np.nan
        return out

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "trained": self.trained.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TargetScaler:
        s = cls()
        s.mean = np.asarray(state["mean"], dtype=np.float64)
        s.std = np.asarray(state["std"], dtype=np.float64)
        s.trained = np.asarray(state["trained"], dtype=bool)
        return s


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (default: the process's cores, at most 4),
    restoring the caller's setting afterwards — training must not change a host application's threads."""
    import torch

    if threads is None:
        try:
            threads = min(len(os.sched_getaffinity(0)), 4)
        except AttributeError:
            threads = min(os.cpu_count() or 1, 4)
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def masked_huber(pred: Any, y: Any, mask: Any, delta: float = 1.0) -> Any:
    import torch

    loss = torch.nn.functional.huber_loss(pred, y, reduction="none", delta=delta) * mask
    return loss.sum() / mask.sum().clamp_min(1.0)


def train_loop(
    model: Any,
    train_batches: Callable[[np.random.Generator], Iterable[tuple[Any, Any, Any]]],
    forward: Callable[[Any, Any], Any],
    dev_eval: Callable[[Any], float] | None,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    patience: int,
    seed: int,
    huber_delta: float = 1.0,
) -> dict[str, Any]:
    """Adam + plateau LR decay + early stopping on ``dev_eval`` (lower is better); restores the best weights.

    ``train_batches(rng)`` yields ``(inputs, y, mask)`` per mini-batch; ``forward(model, inputs)`` returns
    the [B, T] outputs. Returns the history (per-epoch train loss, dev metric, best epoch).
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(2, patience // 3))
    best = math.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch = 0
    history: dict[str, Any] = {"train_loss": [], "dev": []}
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for inputs, y, mask in train_batches(rng):
            opt.zero_grad(set_to_none=True)
            loss = masked_huber(forward(model, inputs), y, mask, huber_delta)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.item() * len(y)
            count += len(y)
        history["train_loss"].append(total / max(count, 1))
        if dev_eval is None:
            continue
        model.eval()
        with torch.no_grad():
            metric = float(dev_eval(model))
        history["dev"].append(metric)
        sched.step(metric)
        if metric < best - 1e-6:
            best, best_epoch = metric, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    if dev_eval is not None:
        model.load_state_dict(best_state)
    history["best_epoch"] = best_epoch
    history["best_dev"] = best if math.isfinite(best) else None
    history["epochs_run"] = len(history["train_loss"])
    model.eval()
    return history


def mean_abs_log_error(pred_log: np.ndarray, y_log: np.ndarray) -> float:
    """Mean over targets of the mean |log ŷ - log y| (NaN labels skipped)."""
    errs = []
    for j in range(y_log.shape[1]):
        ok = np.isfinite(y_log[:, j]) & np.isfinite(pred_log[:, j])
        if ok.any():
            errs.append(float(np.mean(np.abs(pred_log[ok, j] - y_log[ok, j]))))
    return float(np.mean(errs)) if errs else math.inf


def minibatches(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterable[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
