"""Random DAG generators: image DAGs (convolutional) and token DAGs (transformer-like).

MLPs and plain CNNs are chains; the local patterns an inference runtime fuses — Conv+BN folding, Conv+ReLU,
Conv+Add+ReLU, MatMul+Add, Add+LayerNorm, GELU, attention — and the branch/merge structure that decides
memory traffic only appear in DAGs. These generators compose the blocks real networks are built from
(residual, bottleneck, grouped, inverted-residual with depthwise convs, squeeze-excitation, inception-style
branches with concatenation, ConvNeXt blocks, spatial attention; attention / MLP / gated-MLP / depthwise
token-mixing blocks for sequences) and add random cross-block merges (add or concat of any two tensors of a
stage), so a graph's topology is a random DAG, not one of a few templates.

A spec is a list of low-level nodes (see :mod:`inferperf.zoo.modules`); shapes, MACs and weights are tracked
while sampling, so the MACs budget is checked without building anything. ``params["blocks"]`` lists the block
kinds used, which tests and dataset summaries use to check pattern coverage.
"""

from __future__ import annotations

import random
from typing import Any

from inferperf.zoo.base import BudgetedGenerator, conv_out, round_to

IMAGE_SIZES = (32, 48, 56, 64, 96, 112, 128, 160, 192, 224)
STEM_WIDTHS = (8, 16, 24, 32, 48, 64)
IMAGE_BLOCKS: dict[str, float] = {
    "conv": 1.0,
    "basic_res": 1.5,
    "bottleneck": 1.0,
    "grouped": 1.0,
    "inverted": 1.5,
    "convnext": 1.0,
    "inception": 1.0,
    "se": 0.7,
    "gate": 0.5,
    "attention": 1.0,
    "merge": 1.5,
}
TOKEN_BLOCKS: dict[str, float] = {
    "attention": 2.0,
    "mlp": 1.5,
    "glu": 1.0,
    "conv1d": 0.7,
    "linear": 0.7,
    "merge": 1.0,
}
#: spatial attention only on small maps (H·W ≤ 256 tokens), as in hybrid CNN-transformers
MAX_ATTN_TOKENS = 256


class _Dag:
    """Node list with shape tracking and a running MACs / weights count (batch 1)."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.shape: dict[int, tuple[int, ...]] = {}
        self.macs = 0
        self.weights = 0
        self.blocks: list[str] = []

    def add(self, node: dict[str, Any], shape: tuple[int, ...], macs: int = 0, weights: int = 0) -> int:
        self.nodes.append(node)
        nid = len(self.nodes)
        self.shape[nid] = shape
        self.macs += macs
        self.weights += weights
        return nid

    # ---------------------------------------------------------------- image ops (shape = (C, H))
    def conv(self, x: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False) -> int:
        cin, hw = self.shape[x]
        pad = k // 2
        out = conv_out(hw, k, stride, pad)
        node = {"op": "conv", "in": [x], "cin": cin, "cout": cout, "k": k, "stride": stride, "pad": pad,
                "groups": groups, "bias": bias}
        w = cout * (cin // groups) * k * k + (cout if bias else 0)
        return self.add(node, (cout, out), macs=w * out * out - (cout * out * out if bias else 0), weights=w)

    def bn(self, x: int) -> int:
        c = self.shape[x][0]
        return self.add({"op": "bn", "in": [x], "c": c}, self.shape[x], weights=2 * c)

    def lnc(self, x: int) -> int:
        c = self.shape[x][0]
        return self.add({"op": "lnc", "in": [x], "c": c}, self.shape[x], weights=2 * c)

    def act(self, x: int, fn: str) -> int:
        return self.add({"op": "act", "in": [x], "fn": fn}, self.shape[x])

    def binary(self, op: str, a: int, b: int) -> int:
        return self.add({"op": op, "in": [a, b]}, self.shape[a])

    def concat(self, xs: list[int], dim: int = 1) -> int:
        first = self.shape[xs[0]]
        if dim == 1:
            shape: tuple[int, ...] = (sum(self.shape[x][0] for x in xs), first[1])
        else:
            shape = (first[0], sum(self.shape[x][1] for x in xs))
        return self.add({"op": "concat", "in": list(xs), "dim": dim}, shape)

    def pool(self, x: int, kind: str, k: int, stride: int) -> int:
        c, hw = self.shape[x]
        pad = k // 2
        return self.add({"op": "pool", "in": [x], "kind": kind, "k": k, "stride": stride, "pad": pad},
                        (c, conv_out(hw, k, stride, pad)))

    def gap(self, x: int) -> int:
        return self.add({"op": "gap", "in": [x]}, (self.shape[x][0], 1))

    def conv_bn_act(self, x: int, cout: int, k: int, act: str | None, stride: int = 1, groups: int = 1) -> int:
        y = self.bn(self.conv(x, cout, k, stride, groups))
        return self.act(y, act) if act else y

    def match(self, x: int, c: int, hw: int) -> int:
        """A shortcut of ``x`` with ``c`` channels at size ``hw`` (identity, or strided 1×1 conv + BN)."""
        cin, xhw = self.shape[x]
        if cin == c and xhw == hw:
            return x
        stride = 2 if xhw > hw else 1
        return self.bn(self.conv(x, c, 1, stride))

    # ---------------------------------------------------------------- token ops (shape = (S, D))
    def linear(self, x: int, dout: int, bias: bool = True) -> int:
        s, din = self.shape[x]
        node = {"op": "linear", "in": [x], "din": din, "dout": dout, "bias": bias}
        return self.add(node, (s, dout), macs=s * din * dout, weights=din * dout + (dout if bias else 0))

    def norm(self, x: int, kind: str) -> int:
        d = self.shape[x][1]
        if kind == "rms":
            return self.add({"op": "rms", "in": [x], "d": d}, self.shape[x], weights=d)
        return self.add({"op": "ln", "in": [x], "d": d}, self.shape[x], weights=2 * d)

    def attn(self, x: int, heads: int, impl: str, causal: bool, fused_qkv: bool) -> int:
        s, d = self.shape[x]
        node = {"op": "attn", "in": [x], "d": d, "heads": heads, "impl": impl, "causal": causal,
                "fused_qkv": fused_qkv, "s": s}
        return self.add(node, (s, d), macs=4 * s * d * d + 2 * s * s * d, weights=4 * d * d + 4 * d)


# ------------------------------------------------------------------------------------------------ image DAG


def _heads_for(dim: int, rng: random.Random) -> int | None:
    options = [hd for hd in (16, 32, 64) if dim % hd == 0 and dim // hd >= 1]
    return dim // rng.choice(options) if options else None


def _image_block(g: _Dag, kind: str, src: int, c: int, stride: int, rng: random.Random, act: str,
                 pool: list[int]) -> int:
    """Append one block reading ``src``; returns its output id (``c`` channels unless noted)."""
    cin, hw = g.shape[src]
    out_hw = conv_out(hw, 3, stride, 1)
    if kind == "conv":
        return g.conv_bn_act(src, c, rng.choice((1, 3, 3, 5)), act, stride)
    if kind == "basic_res":  # Conv+BN+ReLU, Conv+BN, Add, ReLU
        y = g.conv_bn_act(src, c, 3, act, stride)
        y = g.bn(g.conv(y, c, 3))
        return g.act(g.binary("add", y, g.match(src, c, out_hw)), act)
    if kind in ("bottleneck", "grouped"):
        mid = round_to(c / rng.choice((2, 4)), 8) if kind == "bottleneck" else round_to(c, 8)
        groups = 1
        if kind == "grouped":
            groups = rng.choice([gr for gr in (2, 4, 8, 16, 32) if mid % gr == 0] or [1])
        y = g.conv_bn_act(src, mid, 1, act)
        y = g.conv_bn_act(y, mid, 3, act, stride, groups)
        y = g.bn(g.conv(y, c, 1))
        return g.act(g.binary("add", y, g.match(src, c, out_hw)), act)
    if kind == "inverted":  # MobileNetV2/V3, EfficientNet MBConv
        k = rng.choice((3, 5, 7))
        mid = round_to(cin * rng.choice((2, 3, 4, 6)), 8)
        block_act = rng.choice(("relu6", "hardswish", "silu"))
        y = g.conv_bn_act(src, mid, 1, block_act)
        y = g.conv_bn_act(y, mid, k, block_act, stride, groups=mid)  # depthwise
        if rng.random() < 0.5:
            y = _squeeze_excite(g, y, rng)
        y = g.bn(g.conv(y, c, 1))
        if cin == c and stride == 1:
            y = g.binary("add", y, src)
        return y
    if kind == "convnext":  # depthwise 7×7, LayerNorm, 1×1 4×, GELU, 1×1, residual
        x = g.match(src, c, out_hw)
        y = g.conv(x, c, 7, groups=c, bias=True)
        y = g.lnc(y)
        y = g.act(g.conv(y, 4 * c, 1, bias=True), "gelu")
        y = g.conv(y, c, 1, bias=True)
        return g.binary("add", y, x)
    if kind == "inception":
        x = src if stride == 1 else g.pool(src, "max", 3, 2)
        share = max(8, round_to(c / 4, 8))
        branches = [g.conv_bn_act(x, share, 1, act)]
        options = ["3x3", "5x5", "double3x3", "pool"]
        rng.shuffle(options)
        for b in options[: rng.randint(1, 3)]:
            if b == "pool":
                branches.append(g.conv_bn_act(g.pool(x, rng.choice(("max", "avg")), 3, 1), share, 1, act))
            elif b == "3x3":
                branches.append(g.conv_bn_act(g.conv_bn_act(x, share, 1, act), share, 3, act))
            elif b == "5x5":
                branches.append(g.conv_bn_act(g.conv_bn_act(x, share, 1, act), share, 5, act))
            else:
                y = g.conv_bn_act(x, share, 1, act)
                branches.append(g.conv_bn_act(g.conv_bn_act(y, share, 3, act), share, 3, act))
        return g.concat(branches)  # channels = share × branches
    if kind == "se":
        x = g.match(src, c, out_hw)
        return _squeeze_excite(g, x, rng)
    if kind == "gate":  # x · sigmoid(conv(x)) — GLU-style gating
        x = g.match(src, c, out_hw)
        gate = g.act(g.conv(x, c, rng.choice((1, 3)), bias=True), "sigmoid")
        return g.binary("mul", x, gate)
    if kind == "attention":
        x = g.match(src, c, out_hw)
        heads = _heads_for(c, rng) or 1
        y = g.add({"op": "attn2d", "in": [x], "c": c, "hw": out_hw, "heads": heads,
                   "impl": rng.choice(("manual", "sdpa"))},
                  (c, out_hw), macs=4 * out_hw**2 * c * c + 2 * out_hw**4 * c, weights=4 * c * c + 6 * c)
        return g.binary("add", x, y)
    if kind == "merge":  # cross-block edge: add or concat the latest tensor with an earlier one
        return _join(g, src, rng.choice([p for p in pool if p != src]), c, rng, act)
    raise ValueError(kind)


def _join(g: _Dag, a: int, b: int, c: int, rng: random.Random, act: str) -> int:
    """Merge two tensors of one stage: Add (after 1×1 projections to ``c``) or Concat + 1×1 conv."""
    hw = g.shape[a][1]
    if rng.random() < 0.5:
        y = g.binary("add", g.match(a, c, hw), g.match(b, c, hw))
        return g.act(y, act) if rng.random() < 0.5 else y
    y = g.concat([a, b])
    return g.conv_bn_act(y, c, 1, act) if rng.random() < 0.7 else y


def _squeeze_excite(g: _Dag, x: int, rng: random.Random) -> int:
    c = g.shape[x][0]
    squeeze = max(4, round_to(c / rng.choice((4, 8, 16)), 4))
    s = g.gap(x)
    s = g.act(g.conv(s, squeeze, 1, bias=True), rng.choice(("relu", "silu")))
    s = g.act(g.conv(s, c, 1, bias=True), rng.choice(("sigmoid", "hardsigmoid")))
    return g.binary("mul", x, s)


def draw_image_dag(rng: random.Random) -> dict[str, Any]:
    g = _Dag()
    image_size = rng.choice(IMAGE_SIZES)
    in_channels = 3
    g.shape[0] = (in_channels, image_size)
    act = rng.choice(("relu", "relu", "relu", "relu6", "silu", "gelu", "hardswish", "leaky_relu"))
    c = rng.choice(STEM_WIDTHS)
    stem_stride = 2 if image_size >= 96 else rng.choice((1, 2)) if image_size >= 56 else 1
    x = g.conv_bn_act(0, c, rng.choice((3, 3, 5, 7)), act, stem_stride)
    if image_size >= 160 and rng.random() < 0.6:
        x = g.pool(x, "max", 3, 2)
    g.blocks.append("stem")
    weights = dict(IMAGE_BLOCKS)
    kinds = list(weights)
    for stage in range(rng.randint(1, 4)):
        stride = 1
        if stage > 0:
            c = round_to(c * rng.choice((1.5, 2.0)), 8)
            if g.shape[x][1] > 1:
                if rng.random() < 0.3:
                    x = g.pool(x, rng.choice(("max", "avg")), 3, 2)
                else:
                    stride = 2
        # tensors of this stage at its resolution (a strided first block makes the stage's first one)
        pool = [] if stride == 2 else [x]
        for _ in range(rng.randint(1, 4)):
            allowed = [k for k in kinds if not (k == "merge" and len(pool) < 2)]
            if g.shape[x][1] ** 2 > MAX_ATTN_TOKENS * (4 if stride == 2 else 1):
                allowed.remove("attention")
            kind = rng.choices(allowed, weights=[weights[k] for k in allowed])[0]
            branch = kind != "merge" and len(pool) >= 2 and rng.random() < 0.3
            # a branch reads an earlier tensor of the stage; the tensor it skips is joined back afterwards,
            # because a dead end would be pruned by the exporter and break the MACs estimate
            src = rng.choice(pool[:-1]) if branch else x
            y = _image_block(g, kind, src, c, stride, rng, act, pool)
            x = _join(g, y, x, c, rng, act) if branch else y
            g.blocks.append(kind)
            stride = 1
            pool.append(x)
    x = g.add({"op": "flatten", "in": [g.gap(x)]}, (g.shape[x][0], 1))
    num_classes = rng.choice((10, 100, 1000))
    cfin = g.shape[x][0]
    g.add({"op": "linear", "in": [x], "din": cfin, "dout": num_classes, "bias": True}, (num_classes, 1),
          macs=cfin * num_classes, weights=cfin * num_classes + num_classes)
    return {"in_channels": in_channels, "image_size": image_size, "nodes": g.nodes, "blocks": g.blocks,
            "macs": g.macs, "weights": g.weights}


# ------------------------------------------------------------------------------------------------ token DAG


def _token_block(g: _Dag, kind: str, src: int, rng: random.Random, style: dict[str, Any],
                 pool: list[int]) -> int:
    d = g.shape[src][1]

    def residual(body: Any) -> int:
        if style["pre_norm"]:
            return g.binary("add", src, body(g.norm(src, style["norm"])))
        return g.norm(g.binary("add", src, body(src)), style["norm"])  # Add+LayerNorm

    if kind == "attention":
        return residual(lambda x: g.attn(x, style["heads"], style["impl"], style["causal"], style["fused_qkv"]))
    if kind == "mlp":
        ratio = rng.choice((2, 3, 4))
        return residual(lambda x: g.linear(g.act(g.linear(x, ratio * d), style["mlp_act"]), d))
    if kind == "glu":  # SwiGLU / GeGLU
        hidden = round_to(d * rng.choice((2, 8 / 3, 4)), 16)

        def glu(x: int) -> int:
            gate = g.act(g.linear(x, hidden, bias=False), rng.choice(("silu", "gelu")))
            return g.linear(g.binary("mul", gate, g.linear(x, hidden, bias=False)), d, bias=False)

        return residual(glu)
    if kind == "conv1d":
        k = rng.choice((3, 5, 7))
        s = g.shape[src][0]

        def mix(x: int) -> int:
            y = g.add({"op": "dwconv1d", "in": [x], "d": d, "k": k}, (s, d), macs=s * d * k, weights=d * k + d)
            return g.act(y, rng.choice(("gelu", "silu", "relu")))

        return residual(mix)
    if kind == "linear":  # MatMul+Add(+activation) without residual
        return g.act(g.linear(src, d), rng.choice(("gelu", "relu", "tanh")))
    if kind == "merge":
        other = rng.choice([p for p in pool if p != src])
        if rng.random() < 0.5:
            return g.binary("add", src, other)
        return g.linear(g.concat([src, other], dim=-1), d)
    raise ValueError(kind)


def draw_token_dag(rng: random.Random) -> dict[str, Any]:
    g = _Dag()
    seq_len = rng.choice((16, 32, 64, 128, 256))
    dim = rng.choice((64, 96, 128, 192, 256, 384, 512, 768))
    vocab = rng.choice((1000, 4096, 8192, 30522))
    g.shape[0] = (seq_len, 1)
    style = {
        "pre_norm": rng.random() < 0.5,
        "norm": rng.choice(("ln", "ln", "rms")),
        "heads": _heads_for(dim, rng) or 1,
        "impl": rng.choice(("manual", "sdpa")),
        "causal": rng.random() < 0.3,
        "fused_qkv": rng.random() < 0.5,
        "mlp_act": rng.choice(("gelu", "gelu", "gelu_tanh", "relu", "silu")),
    }
    x = g.add({"op": "embed", "in": [0], "vocab": vocab, "d": dim, "s": seq_len}, (seq_len, dim),
              weights=vocab * dim + seq_len * dim)
    if rng.random() < 0.5:
        x = g.norm(x, style["norm"])
    g.blocks.append("embed")
    pool = [x]
    kinds = list(TOKEN_BLOCKS)
    for _ in range(rng.randint(1, 8)):
        allowed = [k for k in kinds if not (k == "merge" and len(pool) < 2)]
        kind = rng.choices(allowed, weights=[TOKEN_BLOCKS[k] for k in allowed])[0]
        branch = kind != "merge" and len(pool) >= 2 and rng.random() < 0.2
        src = rng.choice(pool[:-1]) if branch else x
        y = _token_block(g, kind, src, rng, style, pool)
        x = g.binary("add", y, x) if branch else y
        g.blocks.append(kind)
        pool.append(x)
    if style["pre_norm"]:
        x = g.norm(x, style["norm"])
    x = g.add({"op": "tokpool", "in": [x], "kind": rng.choice(("mean", "first", "last"))}, (1, dim))
    g.linear(x, rng.choice((2, 10, 1000)))
    return {"seq_len": seq_len, "vocab": vocab, "dim": dim, "style": style, "nodes": g.nodes,
            "blocks": g.blocks, "macs": g.macs, "weights": g.weights}


# ------------------------------------------------------------------------------------------------ generators


class RandomDagGenerator(BudgetedGenerator):
    zoo = "random"
    family = "random_dag"
    description = "random convolutional DAGs on images (residual, grouped, depthwise, SE, inception, attention)"

    def draw(self, rng: random.Random) -> dict[str, Any]:
        return draw_image_dag(rng)

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.zoo.modules import GraphNet

        module = GraphNet(params["nodes"], "pixel_values")
        size, ch = params["image_size"], params["in_channels"]
        gen = torch.Generator().manual_seed(seed)
        return module, {"pixel_values": torch.randn(batch_size, ch, size, size, generator=gen)}


class RandomTokenDagGenerator(BudgetedGenerator):
    zoo = "random"
    family = "random_token_dag"
    description = "random transformer-like DAGs on token sequences (attention, MLP, GLU, conv mixing, merges)"

    def draw(self, rng: random.Random) -> dict[str, Any]:
        return draw_token_dag(rng)

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.zoo.modules import GraphNet

        module = GraphNet(params["nodes"], "input_ids")
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, params["vocab"], (batch_size, params["seq_len"]), generator=gen)
        return module, {"input_ids": ids}
