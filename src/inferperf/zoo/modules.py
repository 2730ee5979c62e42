"""torch.nn building blocks of the synthetic zoos (imported only when an entry is built).

The random-DAG generators describe a network as a list of low-level nodes (``conv``, ``bn``, ``act``,
``add``, ``concat``, ``attn`` …) so that the spec is plain JSON; :class:`GraphNet` interprets that list.
Everything here exports with ``torch.onnx.export(dynamo=True)``: Python control flow over the static spec is
traced away, and attention is written out (or uses ``scaled_dot_product_attention``) so the exported graph
contains the MatMul/Softmax patterns ONNX Runtime fuses.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

ACTIVATIONS: dict[str, Any] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}") from None


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt style: permute, normalise, permute back)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class RMSNorm(nn.Module):
    """Llama-style RMS norm written out (Pow, ReduceMean, Rsqrt, Mul in the graph)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SelfAttention(nn.Module):
    """Multi-head self-attention over [B, S, D].

    ``impl="manual"`` writes MatMul → scale → (mask) → Softmax → MatMul; ``impl="sdpa"`` calls
    ``scaled_dot_product_attention``. Both occur in real exported models, and both are fused differently.
    """

    def __init__(self, dim: int, heads: int, impl: str = "manual", causal: bool = False,
                 fused_qkv: bool = True, seq_len: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.impl, self.causal, self.fused_qkv = impl, causal, fused_qkv
        if fused_qkv:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q = nn.Linear(dim, dim)
            self.k = nn.Linear(dim, dim)
            self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        if causal and impl == "manual":
            if seq_len is None:
                raise ValueError("a manual causal attention needs the sequence length for its mask")
            mask = torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=1)
            self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        if self.fused_qkv:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        q, k, v = (t.reshape(b, s, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if self.impl == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
            if self.causal:
                scores = scores.masked_fill(self.mask, float("-inf"))
            y = torch.matmul(scores.softmax(dim=-1), v)
        return self.out(y.transpose(1, 2).reshape(b, s, self.dim))


class SpatialAttention(nn.Module):
    """Self-attention over the H·W positions of an NCHW map (LayerNorm first), returned as NCHW."""

    def __init__(self, channels: int, heads: int, impl: str = "manual") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = SelfAttention(channels, heads, impl=impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))
        return self.attn(tokens).transpose(1, 2).reshape(b, c, h, w)


class DepthwiseConv1d(nn.Module):
    """Token mixing along the sequence of a [B, S, D] tensor with a depthwise 1-D convolution."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class TokenEmbedding(nn.Module):
    """Token + learned position embedding (Gather + Add in the graph)."""

    def __init__(self, vocab: int, dim: int, seq_len: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(ids) + self.positions


class _Pool(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind


class TokenPool(_Pool):
    """[B, S, D] → [B, D] by mean, first token (CLS style) or last token (decoder style)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            return x.mean(dim=1)
        return x[:, 0] if self.kind == "first" else x[:, -1]


class _Binary(nn.Module):
    def __init__(self, kind: str, dim: int = 1) -> None:
        super().__init__()
        self.kind, self.dim = kind, dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.kind == "add":
            return xs[0] + xs[1]
        if self.kind == "mul":
            return xs[0] * xs[1]
        return torch.cat(xs, dim=self.dim)


def node_module(node: dict[str, Any]) -> nn.Module:
    """The module that computes one spec node."""
    op = node["op"]
    if op == "conv":
        return nn.Conv2d(node["cin"], node["cout"], node["k"], stride=node["stride"], padding=node["pad"],
                         groups=node.get("groups", 1), bias=node.get("bias", True))
    if op == "bn":
        return nn.BatchNorm2d(node["c"])
    if op == "lnc":
        return ChannelLayerNorm(node["c"])
    if op == "ln":
        return nn.LayerNorm(node["d"])
    if op == "rms":
        return RMSNorm(node["d"])
    if op == "act":
        return activation(node["fn"])
    if op in ("add", "mul"):
        return _Binary(op)
    if op == "concat":
        return _Binary("concat", node.get("dim", 1))
    if op == "pool":
        cls = nn.MaxPool2d if node["kind"] == "max" else nn.AvgPool2d
        return cls(node["k"], stride=node["stride"], padding=node["pad"])
    if op == "gap":
        return nn.AdaptiveAvgPool2d(1)
    if op == "flatten":
        return nn.Flatten(1)
    if op == "linear":
        return nn.Linear(node["din"], node["dout"], bias=node.get("bias", True))
    if op == "attn2d":
        return SpatialAttention(node["c"], node["heads"], impl=node.get("impl", "manual"))
    if op == "attn":
        return SelfAttention(node["d"], node["heads"], impl=node.get("impl", "manual"),
                             causal=node.get("causal", False), fused_qkv=node.get("fused_qkv", True),
                             seq_len=node.get("s"))
    if op == "dwconv1d":
        return DepthwiseConv1d(node["d"], node["k"])
    if op == "embed":
        return TokenEmbedding(node["vocab"], node["d"], node["s"])
    if op == "tokpool":
        return TokenPool(node["kind"])
    raise ValueError(f"unknown node op {op!r}")


class GraphNet(nn.Module):
    """Interprets a node list: node ``i`` (1-based id) reads the outputs of the ids in ``node["in"]``.

    Id 0 is the model input. A tensor is dropped after its last reader so eager peak memory stays that of
    the network, not of the whole activation history.
    """

    def __init__(self, nodes: list[dict[str, Any]], input_name: str) -> None:
        super().__init__()
        self.input_name = input_name
        self.nodes = [dict(n) for n in nodes]
        self.layers = nn.ModuleList(node_module(n) for n in self.nodes)
        last_use: dict[int, int] = {}
        for i, node in enumerate(self.nodes, start=1):
            for src in node["in"]:
                last_use[src] = i
        self._free_after = {i: [s for s, last in last_use.items() if last == i] for i in last_use.values()}

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {0: inputs[self.input_name]}
        out = values[0]
        for i, (node, layer) in enumerate(zip(self.nodes, self.layers, strict=True), start=1):
            out = layer(*(values[s] for s in node["in"]))
            values[i] = out
            for s in self._free_after.get(i, ()):
                del values[s]
        return out


class MLP(nn.Module):
    """Stacked Linear layers with an activation between them (not after the last)."""

    def __init__(self, in_features: int, widths: list[int], act: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_features
        for i, w in enumerate(widths):
            layers.append(nn.Linear(prev, w))
            if i < len(widths) - 1:
                layers.append(activation(act))
            prev = w
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PlainCNN(nn.Module):
    """Conv (+BN) + activation (+pool) layers, then a classifier head."""

    def __init__(self, in_channels: int, image_size: int, layers: list[dict[str, Any]], bn: bool,
                 head: str, num_classes: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c, hw = in_channels, image_size
        for layer in layers:
            k, s = layer["k"], layer["stride"]
            mods.append(nn.Conv2d(c, layer["cout"], k, stride=s, padding=k // 2, bias=not bn))
            hw = (hw + 2 * (k // 2) - k) // s + 1
            if bn:
                mods.append(nn.BatchNorm2d(layer["cout"]))
            mods.append(activation(layer["act"]))
            if layer.get("pool"):
                cls = nn.MaxPool2d if layer["pool"] == "max" else nn.AvgPool2d
                mods.append(cls(2, stride=2))
                hw = hw // 2
            c = layer["cout"]
        if head == "gap_fc":
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c, num_classes)]
        elif head == "flatten_fc":
            mods += [nn.Flatten(1), nn.Linear(c * hw * hw, num_classes)]
        self.net = nn.Sequential(*mods)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)


class ResidualBlock(nn.Module):
    """ResNet basic block at constant width: conv-BN-ReLU-conv-BN, identity add, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + x)


class ResidualCNN(nn.Module):
    """Canonical CNN: stem (stride 1, 2 or 4), N residual blocks at one width, global pool, classifier."""

    def __init__(self, channels: int, blocks: int, stem_stride: int, num_classes: int) -> None:
        super().__init__()
        stem: list[nn.Module] = [
            nn.Conv2d(3, channels, 3, stride=min(stem_stride, 2), padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        ]
        if stem_stride == 4:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, num_classes))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(pixel_values)))


class FCStack(nn.Module):
    """Canonical FC model: N × (Linear(width, width) + ReLU)."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*(m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LSTMStack(nn.Module):
    """Canonical RNN: a multi-layer LSTM over [B, S, H], classifier on the last step."""

    def __init__(self, hidden: int, layers: int, num_classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        return self.head(y[:, -1])


class TransformerStack(nn.Module):
    """Canonical attention model: N × ``nn.TransformerEncoderLayer`` (post-norm, ReLU FFN of 4·D)."""

    def __init__(self, dim: int, heads: int, layers: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        # nn.TransformerEncoder deep-copies its layer, so every layer would hold the same weights; the ONNX
        # exporter then stores them once and the runtime's memory is that of a model 1/N its size. Draw
        # each layer's weights separately (from the global RNG the zoo seeds before building).
        for block in self.encoder.layers:
            block.self_attn._reset_parameters()
            block.linear1.reset_parameters()
            block.linear2.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)
