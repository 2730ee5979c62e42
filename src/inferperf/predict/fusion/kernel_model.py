"""LILOU's sub-graph runtime analyzer: a GAT over each kernel that predicts its latency and its type.

Per kernel (a node subset of the original graph, see :mod:`inferperf.predict.fusion.kernels`):

- node inputs: the encoded node features (unused columns dropped, standardised); edges: the edges induced
  inside the kernel, both directions (the paper found direction irrelevant here);
- three GAT layers (256) each followed by GraphSizeNorm and ReLU, global mean pooling;
- concatenated with the device features (the descriptor layout: cores, threads, frequency, caches, GPU SMs,
  MPS share …) and the resource features (compute share, threads, opt level) — so one model serves every
  device and every share of a device — and, a deviation from the paper, the kernel's summed cost
  (:func:`~inferperf.predict.fusion.rules.kernel_features`): mean pooling alone cannot tell a kernel's size;
- a second deviation, on by default (``FusionKernelPredictor(kernel_prior=True)``): the regression learns the
  kernel's log latency *relative to a cost prior* — the additive model's prices applied to the kernel's
  nodes (:mod:`inferperf.predict.fusion.prior`) — and sees the log prior as an input, so a kernel unlike any
  in training falls back to what its nodes cost instead of to the look-alike kernels of other families;
- an MLP with two heads: log latency (regression) and kernel type (classification), trained on
  RMSE(standardised log latency) + cross-entropy, the paper's multi-task loss.

Identical kernels (same nodes, shapes, device, configuration) recur thousands of times in a dataset of
transformer blocks; they are merged before training (median latency, majority type, loss weight growing
with the square root of the count), which keeps an epoch short without ignoring how common a kernel is.
"""

from __future__ import annotations

import copy
import hashlib
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.ir.graph import ModelGraph
from inferperf.predict.features import NODE_FEATURES, Standardizer
from inferperf.predict.fusion.data import KernelExample, device_resource_vector
from inferperf.predict.fusion.edge_classifier import _ColumnScaler
from inferperf.predict.fusion.prior import KernelCostPrior
from inferperf.predict.fusion.rules import kernel_features, node_neighbours


def build_kernel_gat(node_dim: int, tab_dim: int, n_types: int, hidden: int, layers: int, heads: int) -> Any:
    import torch
    from torch import nn
    from torch_geometric.nn import GATConv, global_mean_pool
    from torch_geometric.nn.norm import GraphSizeNorm

    class KernelGAT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            dims = [node_dim] + [hidden] * layers
            self.convs = nn.ModuleList(
                GATConv(a, b // heads, heads=heads) for a, b in zip(dims[:-1], dims[1:], strict=True))
            self.norm = GraphSizeNorm()
            width = (hidden // heads) * heads
            self.mlp = nn.Sequential(nn.Linear(width + tab_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2),
                                     nn.ReLU())
            self.reg = nn.Linear(hidden // 2, 1)
            self.cls = nn.Linear(hidden // 2, max(n_types, 1))

        def forward(self, x: torch.Tensor, ei: torch.Tensor, batch: torch.Tensor, tab: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            h = x
            for conv in self.convs:
                h = torch.relu(self.norm(conv(h, ei), batch))
            z = self.mlp(torch.cat([global_mean_pool(h, batch, tab.shape[0]), tab], dim=1))
            return self.reg(z).squeeze(1), self.cls(z)

    return KernelGAT()


def _kernel_edges_cached(graph: ModelGraph, nodes: Sequence[int]) -> np.ndarray:
    """Induced edges via a per-graph adjacency memo (a graph has hundreds of kernels to encode)."""
    adj = node_neighbours(graph)[1]
    pos = {v: k for k, v in enumerate(nodes)}
    pairs = [(pos[v], pos[w]) for v in nodes for w in adj.get(v, ()) if w in pos and w != v]
    if not pairs:
        return np.zeros((2, 0), dtype=np.int64)
    a = np.array(pairs, dtype=np.int64).T
    return np.concatenate([a, a[::-1]], axis=1)


class KernelItem:
    """A kernel to encode: node rows, induced edges, tabular vector (device + resources + summed cost, and the
    log cost prior when there is one), and that log prior (0 without one)."""

    __slots__ = ("rows", "edges", "tab", "prior")

    def __init__(self, graph: ModelGraph, nodes: Sequence[int], config: dict[str, Any], device: dict[str, Any],
                 log_prior: float | None = None) -> None:
        nodes = list(nodes)
        self.rows = np.stack([NODE_FEATURES.row(graph.nodes[v]) for v in nodes]).astype(np.float32)
        self.edges = _kernel_edges_cached(graph, nodes)
        parts = [kernel_features(graph, nodes), device_resource_vector(config, device)]
        if log_prior is not None:
            parts.append([log_prior])
        self.tab = np.concatenate(parts)
        self.prior = float(log_prior) if log_prior is not None else 0.0

    def key(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for arr in (self.rows, self.edges, np.nan_to_num(self.tab, nan=-999.0)):
            h.update(np.ascontiguousarray(arr).tobytes())
            h.update(b"|")
        return h.hexdigest()


class KernelModel:
    """Multi-task GAT kernel latency regressor + kernel type classifier (see the module docstring)."""

    def __init__(
        self,
        *,
        prior: KernelCostPrior | None = None,
        hidden: int = 256,
        layers: int = 3,
        heads: int = 1,
        epochs: int = 80,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        patience: int = 12,
        type_weight: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.layers = layers
        self.heads = heads
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.type_weight = type_weight
        self.seed = seed
        #: the kernel's cost prior (:mod:`inferperf.predict.fusion.prior`): the regression learns log duration
        #: minus log prior, so a kernel unlike any in training falls back to what its nodes cost
        self.prior = prior
        self.model_: Any = None

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("hidden", "layers", "heads", "epochs", "batch_size", "lr",
                                              "weight_decay", "patience", "type_weight", "seed")}

    # ---- data ----------------------------------------------------------------------------------------
    def _items(self, kernels: Sequence[tuple[ModelGraph, Sequence[int], dict[str, Any], dict[str, Any]]]
               ) -> list[KernelItem]:
        priors = self.prior.log_ms(kernels) if self.prior is not None else [None] * len(kernels)
        return [KernelItem(g, nodes, c, d, p) for (g, nodes, c, d), p in zip(kernels, priors, strict=True)]

    def merge(self, examples: Sequence[KernelExample]) -> tuple[list[KernelItem], np.ndarray, list[str], np.ndarray]:
        """Unique kernels: (items, median log latency, majority type, occurrence count)."""
        groups: dict[str, tuple[KernelItem, list[float], Counter[str]]] = {}
        items = self._items([(ex.graph, ex.nodes, ex.config, ex.device) for ex in examples])
        for ex, item in zip(examples, items, strict=True):
            k = item.key()
            if k not in groups:
                groups[k] = (item, [], Counter())
            groups[k][1].append(math.log(ex.duration_ms))
            groups[k][2][ex.kernel_type] += 1
        items = [g[0] for g in groups.values()]
        y = np.array([float(np.median(g[1])) for g in groups.values()])
        types = [g[2].most_common(1)[0][0] for g in groups.values()]
        counts = np.array([len(g[1]) for g in groups.values()], dtype=np.float64)
        return items, y, types, counts

    def _tensors(self, items: Sequence[KernelItem]) -> tuple[Any, ...]:
        import torch

        rows = [self.node_scaler_.transform(it.rows) for it in items]
        sizes = [len(r) for r in rows]
        offsets = np.cumsum([0, *sizes[:-1]])
        x = torch.from_numpy(np.concatenate(rows)) if rows else torch.zeros((0, len(self.node_scaler_.cols)))
        ei = torch.from_numpy(np.concatenate([it.edges + off for it, off in zip(items, offsets, strict=True)], axis=1)
                              if items else np.zeros((2, 0), dtype=np.int64))
        batch = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(sizes, dtype=torch.long))
        tab = torch.from_numpy(np.clip(self.tab_scaler_.transform(np.stack([it.tab for it in items])), -8.0, 8.0)
                               if items else np.zeros((0, len(self.tab_scaler_.mean)), dtype=np.float32))
        return x, ei, batch, tab

    # ---- training ------------------------------------------------------------------------------------
    def fit(self, train: Sequence[KernelExample], dev: Sequence[KernelExample] | None = None) -> KernelModel:
        import torch

        if not train:
            raise ValueError("no measured kernels to train the kernel model on")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        items, y, types, counts = self.merge(train)
        self.types_ = sorted(set(types))
        self.node_scaler_ = _ColumnScaler().fit([it.rows for it in items])
        with warnings.catch_warnings():  # a device feature unknown everywhere (NaN column) is expected
            warnings.simplefilter("ignore", RuntimeWarning)
            self.tab_scaler_ = Standardizer().fit(np.stack([it.tab for it in items]))
        # the regression target: log latency, less the kernel's log cost prior when there is one
        y = y - np.array([it.prior for it in items])
        self.y_mean_, self.y_std_ = float(y.mean()), max(float(y.std()), 1e-3)
        self.y_range_ = (float(y.min()), float(y.max()))
        yz = torch.from_numpy(((y - self.y_mean_) / self.y_std_).astype(np.float32))
        yt = torch.tensor([self.types_.index(t) for t in types], dtype=torch.long)
        w = torch.from_numpy((np.sqrt(counts) / np.sqrt(counts).mean()).astype(np.float32))
        dev_data = None
        if dev:
            d_items, d_y, d_types, d_counts = self.merge(dev)
            dev_data = (d_items, d_y, d_counts)
        self.model_ = build_kernel_gat(len(self.node_scaler_.cols), self.tab_scaler_.mean.size, len(self.types_),
                                       self.hidden, self.layers, self.heads)
        opt = torch.optim.AdamW(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(2, self.patience // 3))
        ce = torch.nn.CrossEntropyLoss(reduction="none")
        best, best_state, best_epoch = math.inf, None, 0
        history = []
        for epoch in range(self.epochs):
            self.model_.train()
            order = rng.permutation(len(items))
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                x, ei, batch, tab = self._tensors([items[i] for i in idx])
                t_idx = torch.from_numpy(idx)
                opt.zero_grad(set_to_none=True)
                reg, cls = self.model_(x, ei, batch, tab)
                wi = w[t_idx]
                mse = ((reg - yz[t_idx]) ** 2 * wi).sum() / wi.sum()
                loss = torch.sqrt(mse + 1e-8) + self.type_weight * (ce(cls, yt[t_idx]) * wi).sum() / wi.sum()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model_.parameters(), 5.0)
                opt.step()
                total += float(loss.item()) * len(idx)
            record = {"epoch": epoch, "loss": total / len(items)}
            if dev_data is not None:
                pred, _ = self._predict_items(dev_data[0])
                err = float(np.average(np.abs(pred - dev_data[1]), weights=np.sqrt(dev_data[2])))
                record["dev_abs_log_error"] = err
                sched.step(err)
                if err < best - 1e-5:
                    best, best_state, best_epoch = err, copy.deepcopy(self.model_.state_dict()), epoch
                elif epoch - best_epoch >= self.patience:
                    history.append(record)
                    break
            history.append(record)
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        self.model_.eval()
        self.history_ = history
        self.best_dev_ = best if math.isfinite(best) else None
        self.n_unique_ = len(items)
        return self

    # ---- prediction ----------------------------------------------------------------------------------
    def _predict_items(self, items: Sequence[KernelItem], chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        import torch

        self.model_.eval()
        regs, probs = [], []
        with torch.no_grad():
            for start in range(0, len(items), chunk):
                reg, cls = self.model_(*self._tensors(items[start:start + chunk]))
                regs.append(reg.numpy().astype(np.float64))
                probs.append(torch.softmax(cls, dim=1).numpy().astype(np.float64))
        if not regs:
            return np.zeros(0), np.zeros((0, len(self.types_)))
        # never further than e² (7×) outside the latencies (or, with a prior, the ratios to it) seen in
        # training: past that it is extrapolation
        log_ms = np.clip(np.concatenate(regs) * self.y_std_ + self.y_mean_, self.y_range_[0] - 2.0,
                         self.y_range_[1] + 2.0)
        return log_ms + np.array([it.prior for it in items]), np.concatenate(probs)

    def predict(self, kernels: Sequence[tuple[ModelGraph, Sequence[int], dict[str, Any], dict[str, Any]]]
                ) -> tuple[np.ndarray, np.ndarray]:
        """Per (graph, nodes, config, device): (log latency in ms [n], type probabilities [n, n_types])."""
        if self.model_ is None:
            raise RuntimeError("KernelModel used before fit/load")
        return self._predict_items(self._items(kernels))

    def top_types(self, probs: np.ndarray, k: int = 5, rule_types: Sequence[str] | None = None
                  ) -> list[list[tuple[str, float | None]]]:
        """The ``k`` likeliest kernel types per row of ``probs``, with their probabilities.

        With ``rule_types`` (per row, the type the fusion rules compose from the kernel's nodes,
        :func:`~inferperf.predict.fusion.rules.rule_kernel_type`) the list is open-vocabulary. Why: a
        classifier can only name types it saw in training, and a held-out family brings kernel types no other
        family has (``LSTM``, ``Gemm+Sigmoid``, ``InstanceNorm``, ``Reduce:ReduceL2`` — 8–23% of the kernels
        of four families), while the labels are composed from the node types in a way the rules reproduce. So
        a rule type outside the classifier's vocabulary leads the list (probability ``None``: the classifier
        has no opinion on it), and a known rule type missing from the top ``k`` takes the last place.
        """
        order = np.argsort(-probs, axis=1)[:, :k]
        out: list[list[tuple[str, float | None]]] = [
            [(self.types_[j], float(p[j])) for j in row] for row, p in zip(order, probs, strict=True)]
        if rule_types is None:
            return out
        index = {t: j for j, t in enumerate(self.types_)}
        for i, (rule, p) in enumerate(zip(rule_types, probs, strict=True)):
            if any(t == rule for t, _ in out[i]):
                continue
            j = index.get(rule)
            if j is None:
                out[i] = [(rule, None), *out[i][:k - 1]]
            else:
                out[i] = [*out[i][:k - 1], (rule, float(p[j]))]
        return out

    # ---- persistence ---------------------------------------------------------------------------------
    def save(self, directory: Path, name: str = "kernel_model.pt") -> dict[str, Any]:
        import torch

        torch.save(self.model_.state_dict(), directory / name)
        return {"weights": name, "params": self.params(), "types": self.types_,
                "node_scaler": self.node_scaler_.state(), "tab_scaler": self.tab_scaler_.state(),
                "y_mean": self.y_mean_, "y_std": self.y_std_, "y_range": list(self.y_range_),
                "best_dev": self.best_dev_, "prior": self.prior.state() if self.prior is not None else None,
                "n_unique": self.n_unique_, "epochs_run": len(self.history_)}

    @classmethod
    def load(cls, directory: Path, state: dict[str, Any]) -> KernelModel:
        import torch

        prior = KernelCostPrior.from_state(state["prior"]) if state.get("prior") else None
        obj = cls(prior=prior, **state["params"])
        obj.types_ = list(state["types"])
        obj.node_scaler_ = _ColumnScaler.from_state(state["node_scaler"])
        obj.tab_scaler_ = Standardizer.from_state(state["tab_scaler"])
        obj.y_mean_, obj.y_std_ = float(state["y_mean"]), float(state["y_std"])
        obj.y_range_ = (float(state["y_range"][0]), float(state["y_range"][1]))
        obj.best_dev_ = state.get("best_dev")
        obj.n_unique_ = int(state.get("n_unique", 0))
        obj.history_ = []
        obj.model_ = build_kernel_gat(len(obj.node_scaler_.cols), obj.tab_scaler_.mean.size, len(obj.types_),
                                      obj.hidden, obj.layers, obj.heads)
        obj.model_.load_state_dict(torch.load(directory / state["weights"], weights_only=True))
        obj.model_.eval()
        return obj
