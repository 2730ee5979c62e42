"""InferBench canonical models: one block type stacked over a grid of sizes.

InferBench builds four groups of models by repeatedly stacking the most common blocks — a fully-connected
layer, a residual CNN block, an LSTM layer and a Transformer (attention) block — over a grid of layer
number, neuron number and batch size, to study how hardware performance depends on each hyper-parameter
(heat maps, roofline). Here each group is a family whose samples are the grid points; the batch size is the
zoo's ``batch_sizes`` axis. Grid points over the MACs / weights budget are left out (listed by
:func:`excluded_points`), and the grid is visited in a seeded shuffled order so a ``--limit`` run still
spans the grid.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

from inferperf.zoo.base import Generator, Sample, within_budget

FC_DEPTHS = (1, 2, 4, 8, 16)
FC_WIDTHS = (64, 256, 1024, 2048, 4096)
RES_BLOCKS = (1, 2, 4, 8)
RES_CHANNELS = (16, 32, 64, 128)
RES_IMAGE_SIZES = (32, 64, 128, 224)
LSTM_LAYERS = (1, 2, 4)
LSTM_HIDDEN = (64, 128, 256, 512, 1024)
LSTM_SEQ = (16, 32, 64, 128)
TF_LAYERS = (1, 2, 4, 8)
TF_DIMS = (128, 256, 512, 768)
TF_HEADS = (2, 4, 8, 12)
TF_SEQ = (32, 64, 128, 256)
NUM_CLASSES = 1000


class _Grid(Generator):
    zoo = "canonical"

    def grid(self) -> list[dict[str, Any]]:
        """Every grid point as params including ``macs`` and ``weights`` (budget not yet applied)."""
        raise NotImplementedError

    def stem(self, params: dict[str, Any]) -> str:
        raise NotImplementedError

    def points(self) -> list[dict[str, Any]]:
        return [p for p in self.grid() if within_budget(p)]

    def excluded_points(self) -> list[dict[str, Any]]:
        return [p for p in self.grid() if not within_budget(p)]

    def samples(self, seed: int) -> Iterator[Sample]:
        points = self.points()
        random.Random(f"inferperf.zoo:{self.family}:order:{seed}").shuffle(points)
        for p in points:
            # the grid point is the model: the same key whatever the seed, weights always seeded with 0
            yield Sample(self.stem(p), p, 0)


class CanonicalFC(_Grid):
    family = "canonical_fc"
    description = "InferBench FC group: N × Linear(W, W) + ReLU"

    def grid(self) -> list[dict[str, Any]]:
        return [{"depth": d, "width": w, "macs": d * w * w, "weights": d * (w * w + w)}
                for d, w in itertools.product(FC_DEPTHS, FC_WIDTHS)]

    def stem(self, params: dict[str, Any]) -> str:
        return f"d{params['depth']}-w{params['width']}"

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.zoo.modules import FCStack

        gen = torch.Generator().manual_seed(seed)
        return FCStack(params["width"], params["depth"]), {
            "x": torch.randn(batch_size, params["width"], generator=gen)}


def resnet_stem_stride(image_size: int) -> int:
    """Stride of the canonical CNN's stem: like ResNet (/4) on large images, none on CIFAR-size ones."""
    return 4 if image_size >= 128 else 2 if image_size >= 64 else 1


class CanonicalResNet(_Grid):
    family = "canonical_resnet"
    description = "InferBench CNN group: stem + N residual basic blocks at C channels"

    def grid(self) -> list[dict[str, Any]]:
        out = []
        for n, c, r in itertools.product(RES_BLOCKS, RES_CHANNELS, RES_IMAGE_SIZES):
            stride = resnet_stem_stride(r)
            h1 = (r - 1) // min(stride, 2) + 1
            h = (h1 - 1) // 2 + 1 if stride == 4 else h1
            macs = c * 3 * 9 * h1 * h1 + n * 2 * c * c * 9 * h * h + c * NUM_CLASSES
            weights = c * 27 + 2 * c + n * (2 * 9 * c * c + 4 * c) + c * NUM_CLASSES + NUM_CLASSES
            out.append({"blocks": n, "channels": c, "image_size": r, "stem_stride": stride, "macs": macs,
                        "weights": weights})
        return out

    def stem(self, params: dict[str, Any]) -> str:
        return f"n{params['blocks']}-c{params['channels']}-r{params['image_size']}"

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.zoo.modules import ResidualCNN

        module = ResidualCNN(params["channels"], params["blocks"], params["stem_stride"], NUM_CLASSES)
        r = params["image_size"]
        gen = torch.Generator().manual_seed(seed)
        return module, {"pixel_values": torch.randn(batch_size, 3, r, r, generator=gen)}


class CanonicalLSTM(_Grid):
    family = "canonical_lstm"
    description = "InferBench RNN group: an L-layer LSTM of hidden size H over S steps"

    def grid(self) -> list[dict[str, Any]]:
        out = []
        for n, h, s in itertools.product(LSTM_LAYERS, LSTM_HIDDEN, LSTM_SEQ):
            per_layer = 4 * h * (h + h)  # input and recurrent matmuls, input size = H
            out.append({"layers": n, "hidden": h, "seq_len": s, "macs": n * s * per_layer + h * NUM_CLASSES,
                        "weights": n * (per_layer + 8 * h) + h * NUM_CLASSES + NUM_CLASSES})
        return out

    def stem(self, params: dict[str, Any]) -> str:
        return f"l{params['layers']}-h{params['hidden']}-s{params['seq_len']}"

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.zoo.modules import LSTMStack

        gen = torch.Generator().manual_seed(seed)
        module = LSTMStack(params["hidden"], params["layers"], NUM_CLASSES)
        return module, {"x": torch.randn(batch_size, params["seq_len"], params["hidden"], generator=gen)}


class CanonicalTransformer(_Grid):
    family = "canonical_transformer"
    description = "InferBench attention group: N × TransformerEncoderLayer(D, heads, FFN 4·D)"

    def grid(self) -> list[dict[str, Any]]:
        out = []
        for n, d, heads, s in itertools.product(TF_LAYERS, TF_DIMS, TF_HEADS, TF_SEQ):
            if d % heads or d // heads < 16:
                continue
            macs = n * (12 * s * d * d + 2 * s * s * d)  # QKV+out (4·S·D²), FFN (8·S·D²), scores and AV
            weights = n * (12 * d * d + 13 * d)
            out.append({"layers": n, "dim": d, "heads": heads, "seq_len": s, "macs": macs, "weights": weights})
        return out

    #: bumped when the models of a grid point change: the stem (and so the zoo key, the run keys and the model
    #: names) carries it, so a collection measures the new models instead of skipping their points as done.
    #: 2: each layer's weights drawn separately (in 1 all layers were copies of one; the exported model stored
    #: them once, and the measured memory was that of a model 1/N its size).
    revision = 2

    def stem(self, params: dict[str, Any]) -> str:
        return f"l{params['layers']}-d{params['dim']}-h{params['heads']}-s{params['seq_len']}-v{self.revision}"

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.zoo.modules import TransformerStack

        gen = torch.Generator().manual_seed(seed)
        module = TransformerStack(params["dim"], params["heads"], params["layers"])
        return module, {"x": torch.randn(batch_size, params["seq_len"], params["dim"], generator=gen)}
