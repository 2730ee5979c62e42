"""LILOU's graph partitioner: a GAT-LSTM classifier of fusible edges (plus a node "runs in no kernel" head).

Architecture (the paper's, with the deviations noted):

- node inputs: the encoded node features of :mod:`inferperf.ir.features` (columns that are zero in every
  training node dropped, standardised), the structural facts of
  :func:`~inferperf.predict.fusion.data.structural_node_features`, and the runtime settings
  (opt level, threads, compute share) broadcast to every node — fusion depends on them; and (deviation,
  ``rule_nodes``) whether the hand-written rules fuse the node with a producer / a consumer
  (:func:`rule_node_features`);
- one GAT layer (128 channels) → GraphSizeNorm → ReLU over the *directed* graph. Deviation: the 128
  channels are split between a GAT over producer→consumer edges and one over the reversed edges, because
  whether a node fuses depends on its consumers as much as on its producers (a MatMul with two consumers
  keeps its output); and a linear skip of the node's own inputs is concatenated, so the size normalisation
  (which scales a 700-node graph's embeddings 8× below a 10-node graph's) cannot erase the op type;
- an LSTM (128) over the ordered pair ``[z_src, z_dst]`` of each edge (order matters: conv→relu fuses,
  relu→conv does not), and a linear classifier over its last state and a few edge facts
  (:func:`~inferperf.predict.fusion.data.edge_features`: tensor size, single consumer, triangle);
- a second linear head on each node predicts whether ORT runs it at all (constant folding, eliminated
  no-ops), so the union-find never glues kernels through a node that does not run.

Trained with cross-entropy, Adam, a one-cycle learning-rate schedule, batches of 32 graphs (the paper's
settings); the weights with the best dev accuracy are kept. torch / torch_geometric load only on use.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.ir.features import edge_index
from inferperf.ir.graph import ModelGraph
from inferperf.predict.features import NODE_FEATURES
from inferperf.predict.fusion.data import (
    EDGE_FEATURE_NAMES,
    STRUCTURAL_FEATURE_NAMES,
    EdgeExample,
    edge_features,
    resource_features,
    rule_edge_fused,
    structural_node_features,
)

#: the hand-written rules' verdict per node (:func:`rule_node_features`), node inputs when ``rule_nodes``
RULE_NODE_FEATURE_NAMES: tuple[str, ...] = ("rule_fused_with_producer", "rule_fused_with_consumer")


def rule_node_features(graph: ModelGraph, config: dict[str, Any] | None) -> np.ndarray:
    """[N, 2] whether the rules fuse a node with one of its producers / consumers.

    Why as a node input, not only as the edge input ``rule_fused``: that one reaches the final linear layer
    only, where the endpoint embeddings outvote it — held out, SqueezeBERT's edges were 75% right against the
    rules' 99% (every Conv → Reshape and Transpose → LayerNorm predicted fused, every Transpose → MatMul not;
    the rules had each right), although on the training families' dev runs the network beat the rules on
    every op pair. In the embeddings the verdict can be combined with the op types, as the GELU nearness is.
    """
    out = np.zeros((len(graph.nodes), len(RULE_NODE_FEATURE_NAMES)), dtype=np.float32)
    if not graph.edges:
        return out
    fused = rule_edge_fused(graph, config)
    for e, f in zip(graph.edges, fused, strict=True):
        if f:
            out[e.dst, 0] = 1.0
            out[e.src, 1] = 1.0
    return out


def node_inputs(graph: ModelGraph, config: dict[str, Any], device: dict[str, Any], rule_nodes: bool = False
                ) -> np.ndarray:
    """[N, F] raw node inputs: encoded node features ⊕ structural features ⊕ broadcast runtime settings
    (⊕ the rules' verdict per node with ``rule_nodes``)."""
    base = NODE_FEATURES.matrix(graph).astype(np.float32)
    struct = structural_node_features(graph)
    res = np.broadcast_to(resource_features(config, device).astype(np.float32), (len(graph.nodes), 4))
    parts = [base, struct, res]
    if rule_nodes:
        parts.append(rule_node_features(graph, config))
    return np.concatenate(parts, axis=1)


class _ColumnScaler:
    """Keep columns non-zero in training, standardise non-binary ones (streaming over graphs), clip.

    The clip matters for unseen architectures: an adaptive pool exported as a 640×640 window sits 700
    standard deviations out, and a network extrapolates linearly from there (to hours of latency).
    """

    clip = 8.0

    def fit(self, mats: Sequence[np.ndarray]) -> _ColumnScaler:
        dim = mats[0].shape[1]
        nonzero = np.zeros(dim, dtype=bool)
        binary = np.ones(dim, dtype=bool)
        total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
        for m in mats:
            m = m.astype(np.float64)
            nonzero |= np.any(m != 0, axis=0)
            binary &= np.all((m == 0) | (m == 1), axis=0)
            total += m.sum(axis=0)
            total_sq += (m * m).sum(axis=0)
            count += len(m)
        mean = total / max(count, 1)
        std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0))
        self.cols = np.flatnonzero(nonzero)
        self.mean = np.where(binary[self.cols], 0.0, mean[self.cols]).astype(np.float32)
        self.scale = np.where(binary[self.cols], 1.0, np.maximum(std[self.cols], 0.1)).astype(np.float32)
        return self

    def transform(self, m: np.ndarray) -> np.ndarray:
        return np.clip((m[:, self.cols] - self.mean) / self.scale, -self.clip, self.clip).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {"cols": self.cols.tolist(), "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _ColumnScaler:
        s = cls()
        s.cols = np.asarray(state["cols"], dtype=np.int64)
        s.mean = np.asarray(state["mean"], dtype=np.float32)
        s.scale = np.asarray(state["scale"], dtype=np.float32)
        return s


def build_gat_lstm(in_dim: int, hidden: int, lstm_hidden: int, directions: str, gat_layers: int = 1) -> Any:
    import torch
    from torch import nn
    from torch_geometric.nn import GATConv
    from torch_geometric.nn.norm import GraphSizeNorm

    class GATLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.both = directions == "both"
            per = hidden // 2 if self.both else hidden
            dims = [in_dim] + [hidden] * gat_layers
            self.gat_fwd = nn.ModuleList(GATConv(d, per, heads=1) for d in dims[:-1])
            self.gat_bwd = nn.ModuleList(GATConv(d, hidden - per, heads=1) for d in dims[:-1]) if self.both else None
            self.norm = GraphSizeNorm()
            self.skip = nn.Linear(in_dim, hidden)
            self.proj = nn.Linear(2 * hidden, hidden)
            self.lstm = nn.LSTM(hidden, lstm_hidden, batch_first=True)
            self.edge_head = nn.Linear(lstm_hidden + len(EDGE_FEATURE_NAMES), 2)
            self.node_head = nn.Linear(hidden, 2)

        def forward(self, x: torch.Tensor, ei: torch.Tensor, batch: torch.Tensor, ea: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            h = x
            for k, fwd in enumerate(self.gat_fwd):
                out = fwd(h, ei)
                if self.gat_bwd is not None:
                    out = torch.cat([out, self.gat_bwd[k](h, ei.flip(0))], dim=1)
                h = torch.relu(self.norm(out, batch))
            z = torch.relu(self.proj(torch.cat([h, torch.relu(self.skip(x))], dim=1)))
            seq = torch.stack([z[ei[0]], z[ei[1]]], dim=1)  # [E, 2, H]: the ordered pair
            _, (last, _) = self.lstm(seq)
            return self.edge_head(torch.cat([last[-1], ea], dim=1)), self.node_head(z)

    return GATLSTM()


class _Encoded:
    __slots__ = ("x", "ei", "ea", "y_edge", "y_node")

    def __init__(self, x: Any, ei: Any, ea: Any, y_edge: Any = None, y_node: Any = None) -> None:
        self.x, self.ei, self.ea, self.y_edge, self.y_node = x, ei, ea, y_edge, y_node


class EdgeClassifier:
    """Fusible-edge and executed-node classifier (see the module docstring)."""

    def __init__(
        self,
        *,
        hidden: int = 128,
        lstm_hidden: int = 128,
        directions: str = "both",
        gat_layers: int = 1,
        epochs: int = 20,
        batch_size: int = 32,
        lr: float = 1e-2,
        node_weight: float = 0.5,
        rule_nodes: bool = True,
        seed: int = 0,
    ) -> None:
        if directions not in ("forward", "both"):
            raise ValueError(f"directions must be 'forward' or 'both', got {directions!r}")
        self.hidden = hidden
        self.lstm_hidden = lstm_hidden
        self.directions = directions
        self.gat_layers = gat_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.node_weight = node_weight
        #: the rules' verdict as node inputs too (:func:`rule_node_features`)
        self.rule_nodes = rule_nodes
        self.seed = seed
        self.model_: Any = None

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("hidden", "lstm_hidden", "directions", "gat_layers", "epochs",
                                              "batch_size", "lr", "node_weight", "rule_nodes", "seed")}

    # ---- encoding ------------------------------------------------------------------------------------
    def _encode(self, graph: ModelGraph, config: dict[str, Any], device: dict[str, Any],
                y_edge: np.ndarray | None = None, y_node: np.ndarray | None = None,
                raw: np.ndarray | None = None, edges: np.ndarray | None = None) -> _Encoded:
        """``raw`` / ``edges``: the node inputs and edge features when the caller already computed them."""
        import torch

        x = self.scaler_.transform(node_inputs(graph, config, device, self.rule_nodes) if raw is None else raw)
        ea = ((edge_features(graph, config) if edges is None else edges) - self.edge_mean_) / self.edge_scale_
        return _Encoded(
            torch.from_numpy(x), torch.from_numpy(edge_index(graph)), torch.from_numpy(ea.astype(np.float32)),
            None if y_edge is None else torch.from_numpy(np.nan_to_num(y_edge, nan=-1).astype(np.int64)),
            None if y_node is None else torch.from_numpy(y_node.astype(np.int64)),
        )

    @staticmethod
    def _collate(encs: Sequence[_Encoded]) -> tuple[Any, ...]:
        import torch

        xs, eis, eas, ye, yn, sizes = [], [], [], [], [], []
        offset = 0
        for e in encs:
            xs.append(e.x)
            eis.append(e.ei + offset)
            eas.append(e.ea)
            if e.y_edge is not None:
                ye.append(e.y_edge)
                yn.append(e.y_node)
            sizes.append(e.x.shape[0])
            offset += e.x.shape[0]
        batch = torch.repeat_interleave(torch.arange(len(encs)), torch.tensor(sizes, dtype=torch.long))
        return (torch.cat(xs), torch.cat(eis, dim=1), batch, torch.cat(eas),
                torch.cat(ye) if ye else None, torch.cat(yn) if yn else None)

    # ---- training ------------------------------------------------------------------------------------
    def fit(self, train: Sequence[EdgeExample], dev: Sequence[EdgeExample] | None = None) -> EdgeClassifier:
        import torch

        if not train:
            raise ValueError("no labelled graphs to train the fusion classifier on")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        raw = [node_inputs(ex.graph, ex.config, ex.device, self.rule_nodes) for ex in train]
        self.scaler_ = _ColumnScaler().fit(raw)
        edges = [edge_features(ex.graph, ex.config) for ex in train]  # runs the fusion rules: once per graph
        ea_all = np.concatenate(edges)
        self.edge_mean_ = ea_all.mean(axis=0).astype(np.float32) if len(ea_all) else np.zeros(ea_all.shape[1])
        self.edge_scale_ = np.maximum(ea_all.std(axis=0) if len(ea_all) else 1.0, 0.1).astype(np.float32)
        encs = [self._encode(ex.graph, ex.config, ex.device, ex.edge_fused, ex.executed, raw=r, edges=e)
                for ex, r, e in zip(train, raw, edges, strict=True)]
        dev_encs = [self._encode(ex.graph, ex.config, ex.device, ex.edge_fused, ex.executed) for ex in dev or ()]
        self.model_ = build_gat_lstm(len(self.scaler_.cols), self.hidden, self.lstm_hidden, self.directions,
                                     self.gat_layers)
        opt = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        steps = self.epochs * max(1, math.ceil(len(encs) / self.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        # fused edges are the minority (10–30%): weigh them by the square root of the class ratio, enough to
        # leave the all-negative plateau early without moving the decision threshold far from 0.5
        labelled = np.concatenate([ex.edge_fused[np.isfinite(ex.edge_fused)] for ex in train])
        pos = float(labelled.mean()) if labelled.size else 0.5
        pos_weight = math.sqrt((1 - pos) / pos) if 0 < pos < 1 else 1.0
        ce = torch.nn.CrossEntropyLoss(ignore_index=-1, weight=torch.tensor([1.0, pos_weight]))
        ce_node = torch.nn.CrossEntropyLoss()
        best, best_state, history = -1.0, None, []
        for epoch in range(self.epochs):
            self.model_.train()
            order = rng.permutation(len(encs))
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                x, ei, batch, ea, ye, yn = self._collate([encs[i] for i in order[start:start + self.batch_size]])
                opt.zero_grad(set_to_none=True)
                le, ln = self.model_(x, ei, batch, ea)
                loss = ce(le, ye) if (ye >= 0).any() else le.sum() * 0.0
                loss = loss + self.node_weight * ce_node(ln, yn)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model_.parameters(), 5.0)
                opt.step()
                sched.step()
                total += float(loss.item())
            score = self._accuracy(dev_encs) if dev_encs else math.nan
            history.append({"epoch": epoch, "loss": total, "dev_accuracy": score})
            if dev_encs and score > best:
                best, best_state = score, copy.deepcopy(self.model_.state_dict())
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        self.model_.eval()
        self.history_ = history
        self.best_dev_accuracy_ = best if best >= 0 else None
        return self

    def _accuracy(self, encs: Sequence[_Encoded]) -> float:
        import torch

        self.model_.eval()
        right = count = 0
        with torch.no_grad():
            for start in range(0, len(encs), 64):
                x, ei, batch, ea, ye, _ = self._collate(encs[start:start + 64])
                le, _ = self.model_(x, ei, batch, ea)
                ok = ye >= 0
                right += int((le.argmax(1)[ok] == ye[ok]).sum())
                count += int(ok.sum())
        return right / count if count else math.nan

    def choose_threshold(self, dev: Sequence[EdgeExample], grid: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6)
                         ) -> float:
        """The decision threshold with the best edge accuracy on ``dev`` (ties → the one closest to 0.5)."""
        if not dev:
            return 0.5
        probs = self.predict_proba([(ex.graph, ex.config, ex.device) for ex in dev])
        y = np.concatenate([ex.edge_fused for ex in dev])
        p = np.concatenate([pe for pe, _ in probs])
        ok = np.isfinite(y)
        if not ok.any():
            return 0.5
        scores = {t: float(np.mean((p[ok] >= t) == (y[ok] > 0.5))) for t in grid}
        return max(scores, key=lambda t: (round(scores[t], 6), -abs(t - 0.5)))

    # ---- prediction ----------------------------------------------------------------------------------
    def predict_proba(self, items: Sequence[tuple[ModelGraph, dict[str, Any], dict[str, Any]]], chunk: int = 64
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per (graph, config, device): (P(edge fused) [E], P(node runs in a kernel) [N])."""
        import torch

        if self.model_ is None:
            raise RuntimeError("EdgeClassifier used before fit/load")
        self.model_.eval()
        out: list[tuple[np.ndarray, np.ndarray]] = []
        with torch.no_grad():
            for start in range(0, len(items), chunk):
                part = items[start:start + chunk]
                encs = [self._encode(g, c, d) for g, c, d in part]
                x, ei, batch, ea, _, _ = self._collate(encs)
                le, ln = self.model_(x, ei, batch, ea)
                pe = torch.softmax(le, dim=1)[:, 1].numpy()
                pn = torch.softmax(ln, dim=1)[:, 1].numpy()
                e_off = n_off = 0
                for g, _, _ in part:
                    ne, nn_ = len(g.edges), len(g.nodes)
                    out.append((pe[e_off:e_off + ne].astype(np.float64), pn[n_off:n_off + nn_].astype(np.float64)))
                    e_off += ne
                    n_off += nn_
        return out

    # ---- persistence ---------------------------------------------------------------------------------
    def save(self, directory: Path, name: str = "edge_classifier.pt") -> dict[str, Any]:
        import torch

        torch.save(self.model_.state_dict(), directory / name)
        return {"weights": name, "params": self.params(), "scaler": self.scaler_.state(),
                "edge_mean": self.edge_mean_.tolist(), "edge_scale": self.edge_scale_.tolist(),
                "edge_features": list(EDGE_FEATURE_NAMES), "structural_features": list(STRUCTURAL_FEATURE_NAMES),
                "best_dev_accuracy": self.best_dev_accuracy_,
                "history": [h for h in self.history_ if h["epoch"] == len(self.history_) - 1]}

    @classmethod
    def load(cls, directory: Path, state: dict[str, Any]) -> EdgeClassifier:
        import torch

        saved = state.get("edge_features")  # older artifacts did not name them: their count must match
        compatible = (list(saved) == list(EDGE_FEATURE_NAMES) if saved
                      else len(state["edge_mean"]) == len(EDGE_FEATURE_NAMES))
        compatible &= list(state.get("structural_features") or []) == list(STRUCTURAL_FEATURE_NAMES)
        if not compatible:
            from inferperf.predict.base import PredictorError

            raise PredictorError(f"{directory}: the fusion edge classifier was trained on other edge or node features "
                                 "than this version computes; train it again (inferperf train --predictor "
                                 "fusion-kernel)")
        # artifacts from before the rules' node inputs: their params lack the switch, and they did without
        obj = cls(**{"rule_nodes": False, **state["params"]})
        obj.scaler_ = _ColumnScaler.from_state(state["scaler"])
        obj.edge_mean_ = np.asarray(state["edge_mean"], dtype=np.float32)
        obj.edge_scale_ = np.asarray(state["edge_scale"], dtype=np.float32)
        obj.best_dev_accuracy_ = state.get("best_dev_accuracy")
        obj.history_ = state.get("history", [])
        obj.model_ = build_gat_lstm(len(obj.scaler_.cols), obj.hidden, obj.lstm_hidden, obj.directions,
                                    obj.gat_layers)
        obj.model_.load_state_dict(torch.load(directory / state["weights"], weights_only=True))
        obj.model_.eval()
        return obj
