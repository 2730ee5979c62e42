"""Small, runnable ONNX graphs with the fusion patterns ONNX Runtime's CPU provider applies.

Unit tests and the docs example need *real* fusion labels (from :func:`~inferperf.measure.kernels.profile_onnx`)
within seconds, and a torch export costs seconds per graph. These graphs are written directly with
``onnx.helper`` and carry random weights, so ORT can run and profile them in well under a second each.

Families and the patterns they exercise:

- ``toy_cnn``: Conv+Relu, Conv+BatchNorm+Relu (BN folded), MaxPool, GlobalAveragePool, Flatten, Gemm;
- ``toy_resnet``: Conv+Relu, Conv + residual Add + Relu (NCHWc "Sum" fusion);
- ``toy_swish``: Conv+Sigmoid+Mul (QuickGelu), depthwise Conv;
- ``toy_mlp``: MatMul+Add (→ Gemm), Relu, a static shape sub-graph feeding a Reshape (constant-folded);
- ``toy_attention``: LayerNorm, MatMul+Add, Reshape/Transpose, MatMul+scale (→ FusedMatMul), Softmax,
  erf-Gelu (→ Gelu), Add+LayerNorm (→ SkipLayerNorm).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

TOY_FAMILIES: tuple[str, ...] = ("toy_cnn", "toy_resnet", "toy_swish", "toy_mlp", "toy_attention")


class _G:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def weight(self, *shape: int, scale: float = 0.1) -> str:
        name = self.fresh("w")
        self.inits.append(nh.from_array((scale * self.rng.standard_normal(shape)).astype(np.float32), name))
        return name

    def const(self, values: Any, dtype: Any = np.int64) -> str:
        name = self.fresh("c")
        self.inits.append(nh.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs: Any) -> Any:
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(
            h.make_node(op_type, inputs, outs, name=self.fresh(f"n_{op_type}"), domain=domain, **attrs)
        )
        return outs[0] if n_out == 1 else outs

    def model(
        self, inputs: list[tuple[str, list[int]]], output: str, out_shape: list[int] | None = None
    ) -> Any:
        graph = h.make_graph(
            self.nodes,
            self.name,
            [h.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
            [h.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
            initializer=self.inits,
        )
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _conv(g: _G, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, group: int = 1) -> str:
    pad = k // 2
    return g.op(
        "Conv",
        [x, g.weight(cout, cin // group, k, k), g.weight(cout)],
        kernel_shape=[k, k],
        pads=[pad] * 4,
        strides=[stride, stride],
        group=group,
    )


def _bn(g: _G, x: str, c: int) -> str:
    scale = g.const(1.0 + 0.1 * g.rng.standard_normal(c), np.float32)
    bias = g.const(0.1 * g.rng.standard_normal(c), np.float32)
    mean = g.const(0.1 * g.rng.standard_normal(c), np.float32)
    var = g.const(1.0 + 0.1 * np.abs(g.rng.standard_normal(c)), np.float32)
    return g.op("BatchNormalization", [x, scale, bias, mean, var])


def _head(g: _G, x: str, c: int, classes: int) -> str:
    p = g.op("GlobalAveragePool", [x])
    f = g.op("Flatten", [p], axis=1)
    return g.op("Gemm", [f, g.weight(c, classes), g.weight(classes)])


def toy_cnn(rng: random.Random, seed: int) -> tuple[onnx.ModelProto, dict[str, Any]]:
    c, size, depth = rng.choice([8, 16, 24]), rng.choice([16, 24, 32]), rng.randint(2, 4)
    g = _G("toy_cnn", seed)
    x = g.op("Relu", [_conv(g, "x", 3, c)])
    for i in range(depth):
        y = _conv(g, x, c, c)
        y = _bn(g, y, c) if i % 2 == 0 else y
        x = g.op("Relu", [y])
        if i == 0:
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    out = _head(g, x, c, 10)
    return g.model([("x", [1, 3, size, size])], out, [1, 10]), {
        "image_size": size,
        "channels": c,
        "depth": depth,
    }


def toy_resnet(rng: random.Random, seed: int) -> tuple[onnx.ModelProto, dict[str, Any]]:
    c, size, blocks = rng.choice([8, 16, 32]), rng.choice([16, 24, 32]), rng.randint(1, 3)
    g = _G("toy_resnet", seed)
    x = g.op("Relu", [_conv(g, "x", 3, c)])
    for _ in range(blocks):
        y = g.op("Relu", [_conv(g, x, c, c)])
        y = _conv(g, y, c, c)
        x = g.op("Relu", [g.op("Add", [y, x])])
    out = _head(g, x, c, 10)
    return g.model([("x", [1, 3, size, size])], out, [1, 10]), {
        "image_size": size,
        "channels": c,
        "blocks": blocks,
    }


def toy_swish(rng: random.Random, seed: int) -> tuple[onnx.ModelProto, dict[str, Any]]:
    c, size, blocks = rng.choice([8, 16, 24]), rng.choice([16, 24, 32]), rng.randint(1, 3)
    g = _G("toy_swish", seed)
    x = _conv(g, "x", 3, c)
    x = g.op("Mul", [x, g.op("Sigmoid", [x])])
    for _ in range(blocks):
        y = _conv(g, x, c, c, group=c)  # depthwise
        y = g.op("Mul", [y, g.op("Sigmoid", [y])])
        y = _conv(g, y, c, c, k=1)
        x = g.op("Add", [x, y])
    out = _head(g, x, c, 10)
    return g.model([("x", [1, 3, size, size])], out, [1, 10]), {
        "image_size": size,
        "channels": c,
        "blocks": blocks,
    }


def toy_mlp(rng: random.Random, seed: int) -> tuple[onnx.ModelProto, dict[str, Any]]:
    d_in, width, depth = rng.choice([32, 64, 128]), rng.choice([64, 128, 256]), rng.randint(1, 3)
    g = _G("toy_mlp", seed)
    # a static shape sub-graph: Shape -> Gather -> Unsqueeze -> Concat -> Reshape (ORT folds all but Reshape)
    shp = g.op("Shape", ["x"])
    batch = g.op("Gather", [shp, g.const(0)], axis=0)
    batch = g.op("Unsqueeze", [batch, g.const([0])])
    new_shape = g.op("Concat", [batch, g.const([-1])], axis=0)
    x = g.op("Reshape", ["x", new_shape])
    d = d_in
    for _ in range(depth):
        x = g.op("Relu", [g.op("Add", [g.op("MatMul", [x, g.weight(d, width)]), g.weight(width)])])
        d = width
    out = g.op("Add", [g.op("MatMul", [x, g.weight(d, 10)]), g.weight(10)])
    return g.model([("x", [1, 1, d_in])], out, [1, 10]), {"width": width, "depth": depth}


def _layer_norm(g: _G, x: str, d: int) -> str:
    return g.op(
        "LayerNormalization",
        [x, g.const(np.ones(d), np.float32), g.const(np.zeros(d), np.float32)],
        axis=-1,
        epsilon=1e-5,
    )


def _gelu_erf(g: _G, x: str) -> str:
    y = g.op("Div", [x, g.const(np.float32(1.4142135), np.float32)])
    y = g.op("Add", [g.op("Erf", [y]), g.const(np.float32(1.0), np.float32)])
    return g.op("Mul", [g.op("Mul", [x, y]), g.const(np.float32(0.5), np.float32)])


def toy_attention(rng: random.Random, seed: int) -> tuple[onnx.ModelProto, dict[str, Any]]:
    seq, heads, head_dim, layers = (
        rng.choice([8, 16, 32]),
        rng.choice([2, 4]),
        rng.choice([8, 16]),
        rng.randint(1, 2),
    )
    d = heads * head_dim
    g = _G("toy_attention", seed)
    x = _layer_norm(g, "x", d)
    for _ in range(layers):

        def proj(src: str, dout: int = d) -> str:
            return g.op(
                "Add", [g.op("MatMul", [src, g.weight(d if dout == d else dout, dout)]), g.weight(dout)]
            )

        def heads_of(t: str) -> str:
            r = g.op("Reshape", [t, g.const([1, seq, heads, head_dim])])
            return g.op("Transpose", [r], perm=[0, 2, 1, 3])

        q, k, v = heads_of(proj(x)), heads_of(proj(x)), heads_of(proj(x))
        kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = g.op("Mul", [g.op("MatMul", [q, kt]), g.const(np.float32(head_dim**-0.5), np.float32)])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, g.const([1, seq, d])])
        attn = proj(ctx)
        x = _layer_norm(g, g.op("Add", [attn, x]), d)
        hidden = g.op("Add", [g.op("MatMul", [x, g.weight(d, 2 * d)]), g.weight(2 * d)])
        hidden = _gelu_erf(g, hidden)
        ff = g.op("Add", [g.op("MatMul", [hidden, g.weight(2 * d, d)]), g.weight(d)])
        x = _layer_norm(g, g.op("Add", [ff, x]), d)
    return g.model([("x", [1, seq, d])], x, [1, seq, d]), {"seq_len": seq, "heads": heads, "layers": layers}


_BUILDERS = {
    "toy_cnn": toy_cnn,
    "toy_resnet": toy_resnet,
    "toy_swish": toy_swish,
    "toy_mlp": toy_mlp,
    "toy_attention": toy_attention,
}


def toy_model(family: str, index: int = 0, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """One toy model of ``family`` (deterministic in ``index`` and ``seed``) and its metadata."""
    if family not in _BUILDERS:
        raise KeyError(f"unknown toy family {family!r}; known: {', '.join(TOY_FAMILIES)}")
    model_seed = seed * 100_003 + index * 7 + TOY_FAMILIES.index(family)
    model, params = _BUILDERS[family](random.Random(model_seed), model_seed)
    model.graph.name = f"{family}-{index}"
    return model, {"family": family, "batch_size": 1, **params}


def toy_models(
    per_family: int = 2, seed: int = 0, families: tuple[str, ...] = TOY_FAMILIES
) -> Iterator[tuple[str, onnx.ModelProto, dict[str, Any]]]:
    """``(family, model, metadata)`` for ``per_family`` models of each family, round-robin."""
    for i in range(per_family):
        for fam in families:
            model, meta = toy_model(fam, i, seed)
            yield fam, model, meta
