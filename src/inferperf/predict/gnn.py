"""Graph-level multi-target GNN (DIPPM's PMGNS) and its layer ablations.

Architecture: ``layers`` (3) message-passing blocks over the node features along the data-flow edges
(producer → consumer), each conv → LayerNorm → ReLU; a graph read-out (mean ⊕ max pooling by
default, or sum); the pooled embedding concatenated with the static graph features, the run configuration
and the device features; three fully connected layers; one output per target (latency ms, memory MiB,
energy J, learned as standardised logs; a missing label is masked out of the Huber loss). Dropout is
applied in the head only: on node embeddings it cost more CPU time than the convolutions.

Variants, one registry name each: ``gnn-sage`` (GraphSAGE, DIPPM's choice), ``gnn-gat``, ``gnn-gcn``,
``gnn-gin`` and ``gnn-none`` (no message passing: the static/config/device features through the same
MLP head — the ablation that tells whether the graph structure earns its cost).

Node features: :func:`~inferperf.ir.features.node_feature_vector` rows, minus the columns that are zero in
every training node (ops never seen in training), standardised except for 0/1 columns. An op never seen in
training therefore contributes through its op *category* one-hot and its cost features only, instead of
through an untrained weight. Mini-batches are collated here (concatenated node matrices, offset edge
indices) rather than through PyG ``Data``/``Batch`` objects, which cost more than the model itself on CPU.
torch and torch_geometric are imported only when a model is built or used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.dataset.core import TARGETS, GraphDataset
from inferperf.ir.features import edge_index
from inferperf.ir.graph import ModelGraph
from inferperf.predict.base import Predictor, PredictorError, log_labels, register
from inferperf.predict.features import NODE_FEATURES, Standardizer, tabular_matrix

CONVS: tuple[str, ...] = ("sage", "gat", "gcn", "gin", "none")
POOLINGS: tuple[str, ...] = ("mean+max", "sum", "mean")


def build_model(
    node_dim: int,
    tab_dim: int,
    n_targets: int,
    conv: str,
    hidden: int,
    layers: int,
    pooling: str,
    fc: Sequence[int],
    dropout: float,
    heads: int = 2,
) -> Any:
    """The torch module (a function so that torch / torch_geometric load only when needed)."""
    import torch
    import torch_geometric.nn as pyg
    from torch import nn

    class GraphRegressor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_kind = conv
            self.pooling = pooling
            self.convs = nn.ModuleList()
            self.norms = nn.ModuleList()
            d = node_dim
            if conv != "none":
                for _ in range(layers):
                    if conv == "sage":
                        layer = pyg.SAGEConv(d, hidden, aggr="mean")
                    elif conv == "gat":
                        layer = pyg.GATConv(d, hidden // heads, heads=heads, concat=True)
                    elif conv == "gcn":
                        layer = pyg.GCNConv(d, hidden)
                    elif conv == "gin":
                        layer = pyg.GINConv(
                            nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
                        )
                    else:
                        raise PredictorError(f"unknown GNN layer {conv!r}; known: {', '.join(CONVS)}")
                    self.convs.append(layer)
                    out_dim = (hidden // heads) * heads if conv == "gat" else hidden
                    self.norms.append(nn.LayerNorm(out_dim))
                    d = out_dim
                pooled = d * (2 if pooling == "mean+max" else 1)
            else:
                pooled = 0
            widths = [pooled + tab_dim, *fc]
            head: list[nn.Module] = []
            for a, b in zip(widths[:-1], widths[1:], strict=True):
                head += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
            head.append(nn.Linear(widths[-1], n_targets))
            self.head = nn.Sequential(*head)

        def forward(
            self, x: torch.Tensor, edges: torch.Tensor, batch: torch.Tensor, tab: torch.Tensor
        ) -> torch.Tensor:
            if self.conv_kind == "none":
                return self.head(tab)
            h = x
            for layer, norm in zip(self.convs, self.norms, strict=True):
                h = torch.relu(norm(layer(h, edges)))
            size = tab.shape[0]
            if self.pooling == "mean+max":
                z = torch.cat(
                    [pyg.global_mean_pool(h, batch, size), pyg.global_max_pool(h, batch, size)], dim=1
                )
            elif self.pooling == "sum":
                z = pyg.global_add_pool(h, batch, size)
            else:
                z = pyg.global_mean_pool(h, batch, size)
            return self.head(torch.cat([z, tab], dim=1))

    return GraphRegressor()


class _Encoded:
    """Per unique graph: standardised node matrix (torch) and edge index (torch)."""

    __slots__ = ("x", "edges")

    def __init__(self, x: Any, edges: Any) -> None:
        self.x, self.edges = x, edges


@register("gnn-sage", conv="sage")
class GNNPredictor(Predictor):
    """Graph-level multi-target GNN (DIPPM); ``conv`` picks the message-passing layer."""

    def __init__(
        self,
        *,
        conv: str = "sage",
        hidden: int = 64,
        layers: int = 3,
        pooling: str = "mean+max",
        fc: Sequence[int] = (128, 64),
        dropout: float = 0.05,
        edges: str = "forward",
        epochs: int = 300,
        batch_size: int = 32,
        lr: float = 2e-3,
        weight_decay: float = 1e-5,
        patience: int = 30,
        huber_delta: float = 1.0,
        heads: int = 2,
        threads: int | None = None,
        predict_threads: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conv = conv
        self.hidden = hidden
        self.layers = layers
        self.pooling = pooling
        self.fc = tuple(fc)
        self.dropout = dropout
        self.edges = edges
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.huber_delta = huber_delta
        self.heads = heads
        self.threads = threads
        self.predict_threads = predict_threads
        if conv not in CONVS:
            raise PredictorError(f"unknown GNN layer {conv!r}; known: {', '.join(CONVS)}")
        if pooling not in POOLINGS:
            raise PredictorError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
        if edges not in ("forward", "both"):
            raise PredictorError(f"edges must be 'forward' (data flow) or 'both'; got {edges!r}")
        self.name = f"gnn-{conv}"

    # ---- encoding ------------------------------------------------------------------------------------
    def _encode(self, graphs: Sequence[ModelGraph]) -> list[_Encoded]:
        import torch

        cache: dict[int, _Encoded] = {}
        out = []
        for g in graphs:
            enc = cache.get(id(g))
            if enc is None:
                if self.conv == "none":
                    enc = _Encoded(None, None)
                else:
                    x = NODE_FEATURES.matrix(g)[:, self.node_cols_]
                    x = (x - self.node_mean_) / self.node_scale_
                    ei = edge_index(g)
                    if self.edges == "both" and ei.size:
                        ei = np.concatenate([ei, ei[::-1]], axis=1)
                    enc = _Encoded(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(ei))
                cache[id(g)] = enc
            out.append(enc)
        return out

    def _collate(self, encs: Sequence[_Encoded], tab: Any) -> tuple[Any, Any, Any, Any]:
        import torch

        if self.conv == "none":
            return None, None, None, tab
        xs, es, sizes = [], [], []
        offset = 0
        for enc in encs:
            xs.append(enc.x)
            es.append(enc.edges + offset)
            n = enc.x.shape[0]
            sizes.append(n)
            offset += n
        x = torch.cat(xs) if xs else torch.zeros((0, len(self.node_cols_)))
        e = torch.cat(es, dim=1) if es else torch.zeros((2, 0), dtype=torch.long)
        batch = torch.repeat_interleave(torch.arange(len(encs)), torch.tensor(sizes, dtype=torch.long))
        return x, e, batch, tab

    def _fit_node_scaling(self, graphs: Sequence[ModelGraph]) -> None:
        unique = list({id(g): g for g in graphs}.values())
        if self.conv == "none":
            self.node_cols_ = np.zeros(0, dtype=np.int64)
            self.node_mean_ = np.zeros(0)
            self.node_scale_ = np.ones(0)
            return
        # streaming moments: the stacked node matrix of a few thousand graphs would not fit comfortably
        dim = NODE_FEATURES.matrix(unique[0]).shape[1] if unique else 0
        nonzero = np.zeros(dim, dtype=bool)
        binary = np.ones(dim, dtype=bool)
        total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
        for g in unique:
            m = NODE_FEATURES.matrix(g).astype(np.float64)
            nonzero |= np.any(m != 0, axis=0)
            binary &= np.all((m == 0) | (m == 1), axis=0)
            total += m.sum(axis=0)
            total_sq += (m * m).sum(axis=0)
            count += len(m)
        mean = total / max(count, 1)
        std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0))
        self.node_cols_ = np.flatnonzero(nonzero)
        cols = self.node_cols_
        self.node_mean_ = np.where(binary[cols], 0.0, mean[cols]).astype(np.float32)
        self.node_scale_ = np.where(binary[cols], 1.0, np.maximum(std[cols], 0.1)).astype(np.float32)

    def _new_model(self, tab_dim: int) -> Any:
        import torch

        torch.manual_seed(self.seed)
        return build_model(
            len(self.node_cols_),
            tab_dim,
            len(TARGETS),
            self.conv,
            self.hidden,
            self.layers,
            self.pooling,
            self.fc,
            self.dropout,
            self.heads,
        )

    # ---- training ------------------------------------------------------------------------------------
    def _fit(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        from inferperf.predict.training import torch_threads

        with torch_threads(self.threads):
            self._fit_torch(train, dev)

    def _fit_torch(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        import torch

        from inferperf.predict.training import (
            TargetScaler,
            mean_abs_log_error,
            minibatches,
            train_loop,
        )

        graphs = [s.graph for s in train]
        self._fit_node_scaling(graphs)
        tab_raw = tabular_matrix(graphs, [s.config for s in train], [s.device for s in train])
        self.tab_scaler_ = Standardizer().fit(tab_raw)
        tab = torch.from_numpy(self.tab_scaler_.transform(tab_raw))
        encs = self._encode(graphs)
        y_log = log_labels(train)
        self.target_scaler_ = TargetScaler().fit(y_log)
        y, mask = (torch.from_numpy(a) for a in self.target_scaler_.transform(y_log))
        self.model_ = self._new_model(tab.shape[1])

        def batches(rng: np.random.Generator):  # noqa: ANN202
            for idx in minibatches(len(encs), self.batch_size, rng):
                t = torch.from_numpy(idx)
                yield self._collate([encs[i] for i in idx], tab[t]), y[t], mask[t]

        dev_eval = None
        if dev is not None and len(dev):
            dev_graphs = [s.graph for s in dev]
            dev_encs = self._encode(dev_graphs)
            dev_tab = torch.from_numpy(
                self.tab_scaler_.transform(
                    tabular_matrix(dev_graphs, [s.config for s in dev], [s.device for s in dev])
                )
            )
            dev_y = log_labels(dev)

            def dev_eval(model: Any) -> float:
                out = self._forward_chunks(model, dev_encs, dev_tab)
                return mean_abs_log_error(self.target_scaler_.inverse(out), dev_y)

        self.history_ = train_loop(
            self.model_,
            batches,
            lambda m, inp: m(*inp),
            dev_eval,
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=self.patience,
            seed=self.seed,
            huber_delta=self.huber_delta,
        )

    def _forward_chunks(self, model: Any, encs: Sequence[_Encoded], tab: Any, chunk: int = 512) -> np.ndarray:
        import torch

        outs = []
        with torch.no_grad():
            for start in range(0, len(encs), chunk):
                outs.append(
                    model(*self._collate(encs[start : start + chunk], tab[start : start + chunk])).numpy()
                )
        return np.concatenate(outs) if outs else np.zeros((0, len(TARGETS)), dtype=np.float32)

    def _predict_log(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
    ) -> np.ndarray:
        import torch

        from inferperf.predict.training import torch_threads

        tab = torch.from_numpy(self.tab_scaler_.transform(tabular_matrix(graphs, configs, devices)))
        with torch_threads(self.predict_threads):
            out = self._forward_chunks(self.model_, self._encode(graphs), tab)
        return self.target_scaler_.inverse(out)

    # ---- persistence ---------------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> dict[str, Any]:
        import torch

        torch.save(self.model_.state_dict(), directory / "model.pt")
        history = {k: v for k, v in self.history_.items() if k in ("best_epoch", "best_dev", "epochs_run")}
        return {
            "weights": "model.pt",
            "node_cols": self.node_cols_.tolist(),
            "node_mean": self.node_mean_.tolist(),
            "node_scale": self.node_scale_.tolist(),
            "tab_scaler": self.tab_scaler_.state(),
            "target_scaler": self.target_scaler_.state(),
            "history": history,
        }

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        import torch

        from inferperf.predict.training import TargetScaler

        self.node_cols_ = np.asarray(state["node_cols"], dtype=np.int64)
        self.node_mean_ = np.asarray(state["node_mean"], dtype=np.float32)
        self.node_scale_ = np.asarray(state["node_scale"], dtype=np.float32)
        self.tab_scaler_ = Standardizer.from_state(state["tab_scaler"])
        self.target_scaler_ = TargetScaler.from_state(state["target_scaler"])
        self.history_ = state.get("history", {})
        model = self._new_model(len(self.tab_scaler_.mean))
        model.load_state_dict(torch.load(directory / state["weights"], weights_only=True))
        self.model_ = model.eval()


# the other layer variants share the class; the registry fixes ``conv`` per name
for _conv in ("gat", "gcn", "gin", "none"):
    register(f"gnn-{_conv}", conv=_conv)(GNNPredictor)
