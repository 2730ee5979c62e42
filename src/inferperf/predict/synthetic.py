"""A synthetic dataset for developing and testing predictors before measured data exists.

Graphs are real :class:`~inferperf.ir.graph.ModelGraph` objects built from small ONNX graphs of five
families (MLP, plain CNN, residual CNN, depthwise "mobile" CNN, transformer encoder), made directly with
``onnx.helper`` (weights are declared without data, so no torch export is needed and a graph takes ~30 ms).

Labels come from a *structure-dependent* cost model, so that a model which sees the graph can learn it and
a FLOPs-only regression cannot: each node costs ``max(compute, memory) + launch overhead`` where the
compute rate depends on the op category and falls for small ops, element-wise ops are memory-bound,
an activation right after a convolution is fused (nearly free), and threads speed up only large ops.
Memory is weights + 1.5 × peak activations + a runtime base; energy is static + dynamic power over the
latency plus a per-FLOP term. Multiplicative log-normal noise (3% latency) stands in for measurement noise.

Nothing here claims to model a real CPU; it exists so tests can assert that predictors learn structure.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from inferperf.dataset.core import GraphDataset, Sample
from inferperf.ir.graph import ModelGraph

FAMILIES: tuple[str, ...] = ("mlp", "cnn", "resnet", "mobile", "transformer")


def synthetic_device(name: str = "synthetic-cpu-a", speed: float = 1.0) -> dict[str, Any]:
    """A device dict with every feature of the descriptor layout (``speed`` scales peak and bandwidth)."""
    from inferperf.device.descriptor import DEVICE_FEATURE_NAMES

    feats: dict[str, float] = dict.fromkeys(DEVICE_FEATURE_NAMES, 0.0)
    feats.update(
        {
            "cpu_physical_cores": 2.0,
            "cpu_logical_cpus": 2.0,
            "threads_used": 1.0,
            "cpu_freq_mhz": 2450.0 * speed,
            "log2_l1d_kib": 5.0,
            "log2_l2_kib": 9.0,
            "log2_l3_kib": 15.0,
            "log2_memory_gib": 4.6,
            "peak_gflops": 40.0 * speed,
            "mem_bandwidth_gbs": 10.0 * speed,
            "isa_avx": 1.0,
            "isa_avx2": 1.0,
            "isa_fma": 1.0,
        }
    )
    return {"id": name, "name": name, "features": feats, "speed": speed}


# ---- ONNX construction -------------------------------------------------------------------------------------
class _Builder:
    def __init__(self, name: str) -> None:
        from onnx import TensorProto

        self.name = name
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0
        self._float = TensorProto.FLOAT

    def _fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def weight(self, shape: Sequence[int]) -> str:
        """A float weight declared without data (shape inference and costing only need its dims)."""
        from onnx import TensorProto

        t = TensorProto()
        t.name = self._fresh("w")
        t.data_type = self._float
        t.dims.extend(int(d) for d in shape)
        self.inits.append(t)
        return t.name

    def const(self, values: Sequence[float] | Sequence[int], dtype: str = "int64") -> str:
        from onnx import numpy_helper

        name = self._fresh("c")
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        from onnx import helper

        out = self._fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def model(self, inp: str, shape: Sequence[int], out: str) -> Any:
        from onnx import helper

        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info(inp, self._float, list(shape))],
            [helper.make_tensor_value_info(out, self._float, None)],
            initializer=self.inits,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv(
    b: _Builder, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1, bias: bool = True
) -> str:
    ins = [x, b.weight([cout, cin // group, k, k])]
    if bias:
        ins.append(b.weight([cout]))
    return b.op("Conv", ins, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=group)


def _bn(b: _Builder, x: str, c: int) -> str:
    return b.op("BatchNormalization", [x, b.weight([c]), b.weight([c]), b.weight([c]), b.weight([c])])


def _head(b: _Builder, x: str, c: int, classes: int) -> str:
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    return b.op("Gemm", [x, b.weight([classes, c]), b.weight([classes])], transB=1)


def _mlp(rng: random.Random, batch: int, scale: int = 1) -> tuple[Any, dict[str, Any]]:
    d_in = rng.choice([32, 64, 128, 256, 512])
    depth = rng.randint(2, 10 * scale)
    widths = [rng.choice([32, 64, 128, 256, 512, 1024]) for _ in range(depth)]
    act = rng.choice(["Relu", "Sigmoid", "Tanh"])
    b = _Builder("mlp")
    x, d = "x", d_in
    for w in widths:
        x = b.op("MatMul", [x, b.weight([d, w])])
        x = b.op("Add", [x, b.weight([w])])
        x = b.op(act, [x])
        d = w
    return b.model("x", [batch, d_in], x), {"d_in": d_in, "widths": widths, "act": act}


def _cnn(rng: random.Random, batch: int, scale: int = 1) -> tuple[Any, dict[str, Any]]:
    size = rng.choice([16, 24, 32, 48])
    depth = rng.randint(2, 7 * scale)
    b = _Builder("cnn")
    x, c, s = "x", 3, size
    chans = []
    for i in range(depth):
        cout = rng.choice([8, 16, 32, 48, 64, 96])
        x = b.op("Relu", [_conv(b, x, c, cout, rng.choice([1, 3, 5]))])
        c = cout
        chans.append(cout)
        if s > 4 and (i % 2 == 1 or rng.random() < 0.3):
            x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
            s //= 2
    return b.model("x", [batch, 3, size, size], _head(b, x, c, 10)), {"size": size, "channels": chans}


def _resnet(rng: random.Random, batch: int, scale: int = 1) -> tuple[Any, dict[str, Any]]:
    size = rng.choice([16, 32, 48])
    width = rng.choice([8, 16, 24, 32])
    stages = rng.randint(1, 3)
    blocks = rng.randint(1, 3 * scale)
    b = _Builder("resnet")
    c = width
    x = b.op("Relu", [_bn(b, _conv(b, "x", 3, c, 3, bias=False), c)])
    for st in range(stages):
        for blk in range(blocks):
            stride = 2 if (st > 0 and blk == 0) else 1
            cout = c * 2 if (st > 0 and blk == 0) else c
            y = b.op("Relu", [_bn(b, _conv(b, x, c, cout, 3, stride, bias=False), cout)])
            y = _bn(b, _conv(b, y, cout, cout, 3, bias=False), cout)
            shortcut = (
                x if stride == 1 and cout == c else _bn(b, _conv(b, x, c, cout, 1, stride, bias=False), cout)
            )
            x = b.op("Relu", [b.op("Add", [y, shortcut])])
            c = cout
    params = {"size": size, "width": width, "stages": stages, "blocks": blocks}
    return b.model("x", [batch, 3, size, size], _head(b, x, c, 10)), params


def _mobile(rng: random.Random, batch: int, scale: int = 1) -> tuple[Any, dict[str, Any]]:
    size = rng.choice([16, 32, 48, 64])
    c = rng.choice([8, 16, 32])
    depth = rng.randint(2, 8 * scale)
    b = _Builder("mobile")
    lo, hi = b.const([0.0], "float32"), b.const([6.0], "float32")
    x = b.op("Clip", [_bn(b, _conv(b, "x", 3, c, 3, 2, bias=False), c), lo, hi])
    s = size // 2
    for _ in range(depth):
        stride = 2 if s > 4 and rng.random() < 0.35 else 1
        x = b.op("Clip", [_bn(b, _conv(b, x, c, c, 3, stride, group=c, bias=False), c), lo, hi])
        s //= stride
        cout = rng.choice([c, c, 2 * c]) if c < 128 else c
        x = b.op("Clip", [_bn(b, _conv(b, x, c, cout, 1, bias=False), cout), lo, hi])
        c = cout
    return b.model("x", [batch, 3, size, size], _head(b, x, c, 10)), {"size": size, "depth": depth}


def _transformer(rng: random.Random, batch: int, scale: int = 1) -> tuple[Any, dict[str, Any]]:
    seq = rng.choice([16, 32, 64, 128])
    heads = rng.choice([2, 4, 8])
    dh = rng.choice([16, 32])
    d = heads * dh
    layers = rng.randint(1, 4 * scale)
    ff = d * rng.choice([2, 4])
    b = _Builder("transformer")
    x = "x"
    split_shape = b.const([batch, seq, heads, dh])
    merge_shape = b.const([batch, seq, d])
    inv_sqrt = b.const([1.0 / math.sqrt(dh)], "float32")

    def ln(t: str) -> str:
        return b.op("LayerNormalization", [t, b.weight([d]), b.weight([d])], axis=-1)

    def proj(t: str, din: int, dout: int) -> str:
        return b.op("Add", [b.op("MatMul", [t, b.weight([din, dout])]), b.weight([dout])])

    for _ in range(layers):
        h = ln(x)
        q = b.op("Transpose", [b.op("Reshape", [proj(h, d, d), split_shape])], perm=[0, 2, 1, 3])
        k = b.op("Transpose", [b.op("Reshape", [proj(h, d, d), split_shape])], perm=[0, 2, 3, 1])
        v = b.op("Transpose", [b.op("Reshape", [proj(h, d, d), split_shape])], perm=[0, 2, 1, 3])
        att = b.op("Softmax", [b.op("Mul", [b.op("MatMul", [q, k]), inv_sqrt])], axis=-1)
        o = b.op("Reshape", [b.op("Transpose", [b.op("MatMul", [att, v])], perm=[0, 2, 1, 3]), merge_shape])
        x = b.op("Add", [x, proj(o, d, d)])
        h = ln(x)
        u = proj(h, d, ff)
        u = b.op("Mul", [u, b.op("Sigmoid", [u])])
        x = b.op("Add", [x, proj(u, ff, d)])
    params = {"seq": seq, "heads": heads, "dh": dh, "layers": layers, "ff": ff}
    model = b.model("x", [batch, seq, d], ln(x))
    return model, params


_GENERATORS = {"mlp": _mlp, "cnn": _cnn, "resnet": _resnet, "mobile": _mobile, "transformer": _transformer}


def synthetic_graph(family: str, index: int, batch: int = 1, seed: int = 0, scale: int = 1) -> ModelGraph:
    """One graph of ``family``; the same (family, index, seed) gives the same architecture at every batch.
    ``scale`` multiplies the depth ranges (scale 2 reaches ~250 nodes)."""
    from inferperf.ir.build import build_graph

    if family not in _GENERATORS:
        raise ValueError(f"unknown synthetic family {family!r}; known: {', '.join(FAMILIES)}")
    rng = random.Random(f"inferperf.synthetic:{family}:{seed}:{index}" + (f":x{scale}" if scale != 1 else ""))
    model, params = _GENERATORS[family](rng, batch, scale)
    meta = {"family": family, "batch_size": batch, "synthetic": True, "arch": f"{family}-{seed}-{index}"}
    if family in ("cnn", "resnet", "mobile"):
        meta["image_size"] = params["size"]
    if family == "transformer":
        meta["seq_len"] = params["seq"]
    return build_graph(model, name=f"{family}-{seed}-{index}-b{batch}", metadata=meta, infer=True)


# ---- cost model ------------------------------------------------------------------------------------------
_COMPUTE_GFLOPS = {"conv": 30.0, "matmul": 40.0, "recurrent": 15.0}
_OVERHEAD_US = {"conv": 6.0, "matmul": 4.0, "norm": 3.0, "softmax": 3.0, "data_movement": 1.0, "pooling": 3.0}
_FUSED_AFTER_CONV = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSwish"}


def synthetic_labels(
    graph: ModelGraph, threads: int, device: dict[str, Any], noise: float, rng: np.random.Generator
) -> dict[str, float]:
    """latency_ms / memory_mb / energy_j of ``graph`` under the synthetic cost model."""
    from inferperf.ir.features import op_category

    speed = float(device.get("speed", 1.0))
    producers: dict[int, list[int]] = {}
    for e in graph.edges:
        producers.setdefault(e.dst, []).append(e.src)
    total_us = 15.0
    for node in graph.nodes:
        cat = op_category(node.qualified_type)
        if node.op_type in _FUSED_AFTER_CONV and any(
            graph.nodes[p].op_type == "Conv" for p in producers.get(node.index, ())
        ):
            total_us += 0.3  # fused into the convolution
            continue
        flops = float(node.flops)
        peak = _COMPUTE_GFLOPS.get(cat, 4.0) * speed
        if cat == "conv" and int(node.attributes.get("group", 1) or 1) > 1:
            peak = 5.0 * speed  # depthwise convolutions run far below the dense peak
        efficiency = flops / (flops + 3e5) if flops > 0 else 1.0
        par = threads**0.85 if flops > 2e6 else threads**0.25
        compute_us = flops / (peak * 1e3 * max(efficiency, 1e-3)) / par
        bw = (4.0 if cat == "data_movement" else 10.0) * speed
        memory_us = (node.bytes_read + node.bytes_written) / (bw * 1e3)
        total_us += max(compute_us, memory_us) + _OVERHEAD_US.get(cat, 2.0)
    latency_ms = total_us / 1e3 * math.exp(rng.normal(0.0, noise))
    memory_mb = 8.0 + (graph.weight_bytes + 1.5 * graph.peak_activation_bytes) / 2**20 + 0.5 * threads
    memory_mb *= math.exp(rng.normal(0.0, noise * 0.5))
    power_w = 5.0 + 12.0 * threads**0.9
    energy_j = (latency_ms / 1e3 * power_w + 0.2e-9 * graph.flops) * math.exp(rng.normal(0.0, noise * 1.5))
    return {"latency_ms": latency_ms, "memory_mb": memory_mb, "energy_j": energy_j}


@lru_cache(maxsize=64)
def _graphs(
    families: tuple[str, ...], per_family: int, batches: tuple[int, ...], seed: int, scale: int
) -> tuple:
    return tuple(
        (fam, i, b, synthetic_graph(fam, i, b, seed, scale))
        for fam in families
        for i in range(per_family)
        for b in batches
    )


def synthetic_dataset(
    per_family: int = 20,
    families: Sequence[str] = FAMILIES,
    batches: Sequence[int] = (1, 4),
    threads: Sequence[int] = (1,),
    devices: Sequence[dict[str, Any]] | None = None,
    seed: int = 0,
    noise: float = 0.03,
    targets: Sequence[str] = ("latency_ms", "memory_mb", "energy_j"),
    scale: int = 1,
) -> GraphDataset:
    """``per_family`` architectures × ``batches`` graphs per family, one sample per (thread count, device).

    Graphs are cached per process (tests of several modules share them); samples are fresh objects. The
    ``group_key`` is the architecture, so splits keep all batch sizes of an architecture together.
    """
    devices = list(devices) if devices else [synthetic_device()]
    rng = np.random.default_rng(seed)
    suffix = f"-x{scale}" if scale != 1 else ""
    samples = []
    for fam, i, b, graph in _graphs(tuple(families), per_family, tuple(batches), seed, scale):
        for dev in devices:
            for t in threads:
                labels = synthetic_labels(graph, t, dev, noise, rng)
                samples.append(
                    Sample(
                        graph=graph,
                        family=fam,
                        config={
                            "runtime": "onnxruntime",
                            "batch_size": b,
                            "intra_op_threads": t,
                            "opt_level": "all",
                        },
                        device=dev,
                        labels={k: v for k, v in labels.items() if k in targets},
                        graph_key=f"{fam}-{seed}-{i}-b{b}" + suffix,
                        group_key=f"{fam}-{seed}-{i}" + suffix,
                    )
                )
    return GraphDataset(samples, name=f"synthetic-{seed}")
