"""CS230-style random networks: standard NNs (MLPs) and plain CNNs.

The report (Mendoza & Wang) samples MLPs of depth 3–10 with hidden units in base-2 scale 2^0…2^14 and
plain CNNs of depth 3–10 with channels 2^0…2^10. We follow that, sample the remaining choices the report
leaves open (input size, kernel 1/3/5/7, stride, pooling, activation, BatchNorm, head), and reject specs
over the MACs / weights budget — a 16384×16384 layer alone is 1 GB of weights, which no CPU dataset needs.
"""

from __future__ import annotations

import random
from typing import Any

from inferperf.zoo.base import BudgetedGenerator, conv_out, pow2

MLP_DEPTH = (3, 10)
MLP_WIDTH_EXP = (0, 14)
CNN_DEPTH = (3, 10)
CNN_CHANNEL_EXP = (0, 10)
CNN_KERNELS = (1, 3, 5, 7)
CNN_IMAGE_SIZES = (16, 32, 48, 64, 96, 128, 160, 192, 224)
MLP_ACTS = ("relu", "relu", "relu", "gelu", "tanh", "sigmoid", "silu")
CNN_ACTS = ("relu", "relu", "relu", "relu6", "leaky_relu", "gelu", "silu", "hardswish", "sigmoid", "tanh")


def mlp_cost(in_features: int, widths: list[int]) -> tuple[int, int]:
    """(MACs, weights) at batch 1: one MAC per weight of a Linear layer, plus biases as weights."""
    macs = weights = 0
    prev = in_features
    for w in widths:
        macs += prev * w
        weights += prev * w + w
        prev = w
    return macs, weights


class MLPGenerator(BudgetedGenerator):
    zoo = "random"
    family = "mlp"
    description = "CS230 standard NN: depth 3–10 Linear layers, widths 2^0…2^14"

    def draw(self, rng: random.Random) -> dict[str, Any]:
        depth = rng.randint(*MLP_DEPTH)
        in_features = pow2(rng, *MLP_WIDTH_EXP)
        widths = [pow2(rng, *MLP_WIDTH_EXP) for _ in range(depth)]
        macs, weights = mlp_cost(in_features, widths)
        return {"in_features": in_features, "widths": widths, "act": rng.choice(MLP_ACTS),
                "macs": macs, "weights": weights}

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.zoo.modules import MLP

        module = MLP(params["in_features"], params["widths"], params["act"])
        gen = torch.Generator().manual_seed(seed)
        return module, {"x": torch.randn(batch_size, params["in_features"], generator=gen)}


def cnn_cost(in_channels: int, image_size: int, layers: list[dict[str, Any]], bn: bool, head: str,
             num_classes: int) -> tuple[int, int]:
    macs = weights = 0
    c, hw = in_channels, image_size
    for layer in layers:
        k, s, cout = layer["k"], layer["stride"], layer["cout"]
        hw = conv_out(hw, k, s, k // 2)
        macs += cout * c * k * k * hw * hw
        weights += cout * c * k * k + (2 * cout if bn else cout)
        if layer.get("pool"):
            hw //= 2
        c = cout
    if head == "gap_fc":
        macs += c * num_classes
        weights += c * num_classes + num_classes
    elif head == "flatten_fc":
        macs += c * hw * hw * num_classes
        weights += c * hw * hw * num_classes + num_classes
    return macs, weights


class PlainCNNGenerator(BudgetedGenerator):
    zoo = "random"
    family = "plain_cnn"
    description = "CS230 plain CNN: depth 3–10 conv layers, channels 2^0…2^10, kernel 1/3/5/7"

    def draw(self, rng: random.Random) -> dict[str, Any]:
        depth = rng.randint(*CNN_DEPTH)
        image_size = rng.choice(CNN_IMAGE_SIZES)
        in_channels = rng.choice((1, 3, 3, 3))
        act = rng.choice(CNN_ACTS)
        bn = rng.random() < 0.5
        layers: list[dict[str, Any]] = []
        hw = image_size
        for _ in range(depth):
            k = rng.choice(CNN_KERNELS)
            stride = 2 if hw >= 4 and rng.random() < 0.25 else 1
            hw = conv_out(hw, k, stride, k // 2)
            pool = None
            if hw >= 4 and rng.random() < 0.25:
                pool = rng.choice(("max", "avg"))
                hw //= 2
            layers.append({"cout": pow2(rng, *CNN_CHANNEL_EXP), "k": k, "stride": stride, "pool": pool,
                           "act": act})
        head = rng.choice(("gap_fc", "gap_fc", "flatten_fc", "none"))
        num_classes = rng.choice((10, 100, 1000))
        macs, weights = cnn_cost(in_channels, image_size, layers, bn, head, num_classes)
        return {"in_channels": in_channels, "image_size": image_size, "layers": layers, "bn": bn,
                "head": head, "num_classes": num_classes, "macs": macs, "weights": weights}

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.zoo.modules import PlainCNN

        module = PlainCNN(params["in_channels"], params["image_size"], params["layers"], params["bn"],
                          params["head"], params["num_classes"])
        gen = torch.Generator().manual_seed(seed)
        size = params["image_size"]
        return module, {"pixel_values": torch.randn(batch_size, params["in_channels"], size, size,
                                                    generator=gen)}
