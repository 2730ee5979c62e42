"""Real architecture families from transformers config classes, varied in depth, width and input size.

Each family of :mod:`inferperf.ir.architectures` gets a sampler of config overrides that stays inside what
the config class accepts (heads dividing the hidden size, RegNet widths multiple of the group width, image
sizes a multiple of the patch size, …). Most samples are small-to-medium so collection stays fast on a CPU
(text models 1–6 layers, hidden ≤ 512; CNNs at 32–224 px); about one in ten is a registered full-size
architecture. Entries load through :func:`inferperf.ir.ingest.load_architecture` with the overrides, so the
export cache applies.

Families that cannot be built or exported offline are listed in :data:`EXCLUDED` with the reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from inferperf.zoo.base import SampledGenerator, round_to, sample_rng

if TYPE_CHECKING:
    from inferperf.ir.ingest import LoadedModel
    from inferperf.zoo.base import ZooEntry

#: probability that a sample is a registered full-size architecture (only the input size varies)
P_FULL = 0.1
CNN_SIZES = (32, 64, 96, 128, 160, 192, 224)
SEQ_LENS = (16, 32, 64, 128, 256)
SMALL_VOCABS = (4096, 8192, 30522)
MAX_PATCHES = 256

#: families of the architecture registry that are not in the zoo, with the reason
EXCLUDED: dict[str, str] = {}

Draw = tuple[str, dict[str, Any], int]  # (architecture name, overrides, image size or sequence length)


def _heads(rng: random.Random, hidden: int, head_dims: tuple[int, ...] = (32, 64)) -> int:
    options = [hidden // hd for hd in head_dims if hidden % hd == 0]
    return rng.choice(options) if options else 1


def _size(rng: random.Random, minimum: int = 32, multiple: int = 1, sizes: tuple[int, ...] = CNN_SIZES) -> int:
    choices = sorted({round_to(s, multiple) for s in sizes if s >= minimum})
    return rng.choice(choices)


def _full(rng: random.Random, names: tuple[str, ...]) -> str | None:
    return rng.choice(names) if rng.random() < P_FULL else None


def _pyramid(base: int, factors: tuple[int, ...] = (1, 2, 4, 8)) -> list[int]:
    return [base * f for f in factors]


# ------------------------------------------------------------------------------------------------ vision


def _resnet(rng: random.Random) -> Draw:
    if full := _full(rng, ("resnet18", "resnet34", "resnet50")):
        return full, {}, _size(rng, 64)
    if rng.random() < 0.5:
        w = rng.choice((16, 32, 64))
        return "resnet18", {"layer_type": "basic", "hidden_sizes": _pyramid(w),
                            "depths": [rng.randint(1, 3) for _ in range(4)],
                            "embedding_size": rng.choice((16, 32, 64))}, _size(rng)
    w = rng.choice((16, 32, 64))
    return "resnet50", {"layer_type": "bottleneck", "hidden_sizes": _pyramid(4 * w),
                        "depths": [rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 6), rng.randint(1, 3)],
                        "embedding_size": rng.choice((32, 64))}, _size(rng)


def _mobilenet_v1(rng: random.Random) -> Draw:
    size = _size(rng)
    if _full(rng, ("mobilenet_v1",)):
        return "mobilenet_v1", {"image_size": size}, size
    return "mobilenet_v1", {"depth_multiplier": rng.choice((0.25, 0.5, 0.75, 1.0)), "image_size": size}, size


def _mobilenet_v2(rng: random.Random) -> Draw:
    size = _size(rng)
    if _full(rng, ("mobilenet_v2",)):
        return "mobilenet_v2", {"image_size": size}, size
    return "mobilenet_v2", {"depth_multiplier": rng.choice((0.35, 0.5, 0.75, 1.0, 1.4)),
                            "expand_ratio": rng.choice((4.0, 6.0)), "image_size": size}, size


def _convnext(rng: random.Random) -> Draw:
    if full := _full(rng, ("convnext-tiny",)):
        return full, {}, _size(rng, 64)
    return "convnext-tiny", {"hidden_sizes": _pyramid(rng.choice((32, 48, 64, 96))),
                             "depths": [rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 9),
                                        rng.randint(1, 3)]}, _size(rng)


def _convnextv2(rng: random.Random) -> Draw:
    if full := _full(rng, ("convnextv2-atto",)):
        return full, {}, _size(rng, 64)
    return "convnextv2-atto", {"hidden_sizes": _pyramid(rng.choice((16, 24, 32, 40, 48, 64))),
                               "depths": [rng.randint(1, 2), rng.randint(1, 2), rng.randint(1, 6),
                                          rng.randint(1, 2)]}, _size(rng)


def _efficientnet(rng: random.Random) -> Draw:
    size = _size(rng)
    width = 1.0 if rng.random() < P_FULL else rng.choice((0.5, 0.75, 1.0, 1.1))
    depth = 1.0 if width == 1.0 and rng.random() < 0.5 else rng.choice((0.5, 0.75, 1.0, 1.2))
    # the head's BatchNorm is sized by hidden_dim, which must equal round_filters(config, 1280)
    hidden = _round_filters(1280, width)
    return "efficientnet-b0", {"width_coefficient": width, "depth_coefficient": depth, "hidden_dim": hidden,
                               "image_size": size}, size


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """transformers' EfficientNet ``round_filters`` (kept in sync; a mismatch fails the build loudly)."""
    channels = channels * width
    new = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if new < 0.9 * channels:
        new += divisor
    return int(new)


def _regnet(rng: random.Random) -> Draw:
    if full := _full(rng, ("regnet-x-400mf", "regnet-y-400mf")):
        return full, {}, _size(rng, 64)
    gw = rng.choice((8, 16, 24))
    base = rng.choice((1, 2, 3))
    widths = [gw * base * f for f in (1, 2, 4, 8)]
    return rng.choice(("regnet-x-400mf", "regnet-y-400mf")), {
        "groups_width": gw, "hidden_sizes": widths,
        "depths": [rng.randint(1, 2), rng.randint(1, 4), rng.randint(1, 7), rng.randint(1, 4)],
        "embedding_size": rng.choice((16, 32))}, _size(rng)


def _vit_like(arch: str, full_names: tuple[str, ...], patch_choices: tuple[int, ...]) -> Callable[..., Draw]:
    def draw(rng: random.Random) -> Draw:
        if full := _full(rng, full_names):
            return full, {}, 224
        hidden = rng.choice((96, 128, 192, 256, 384, 512))
        patch = rng.choice(patch_choices)
        # at most 256 patches (ViT-B/16 at 224 has 196): more makes attention dominate a CPU run
        sizes = tuple(s for s in CNN_SIZES if (round_to(s, patch) // patch) ** 2 <= MAX_PATCHES)
        size = _size(rng, minimum=2 * patch, multiple=patch, sizes=sizes)
        return arch, {"hidden_size": hidden, "num_hidden_layers": rng.randint(1, 8),
                      "num_attention_heads": _heads(rng, hidden), "intermediate_size": 4 * hidden,
                      "patch_size": patch, "image_size": size}, size

    return draw


def _dinov2(rng: random.Random) -> Draw:
    if _full(rng, ("dinov2-small",)):
        return "dinov2-small", {}, 224
    hidden = rng.choice((96, 128, 192, 256, 384))
    size = rng.choice((56, 98, 112, 140, 168, 224))
    # image_size = input size: the position embeddings then need no (bicubic) interpolation
    return "dinov2-small", {"hidden_size": hidden, "num_hidden_layers": rng.randint(1, 8),
                            "num_attention_heads": _heads(rng, hidden), "image_size": size}, size


def _swin(rng: random.Random) -> Draw:
    if _full(rng, ("swin-tiny",)):
        return "swin-tiny", {}, 224
    head_dim = rng.choice((16, 32))
    embed = rng.choice((32, 48, 64, 96))
    if embed % head_dim:
        head_dim = 16
    stages = rng.choice((3, 4))
    window = rng.choice((4, 7, 8))
    # the last stage must be at least one window wide: HF Swin shrinks a larger window to the feature map,
    # but its relative-position table keeps the configured size and the forward pass fails
    reduction = 4 * 2 ** (stages - 1)
    sizes = [s for s in (64, 96, 112, 128, 160, 192, 224, 256) if s % reduction == 0 and s // reduction >= window]
    size = rng.choice(sizes)
    return "swin-tiny", {"embed_dim": embed, "num_heads": [embed // head_dim * 2**i for i in range(stages)],
                         "depths": [rng.randint(1, 2), rng.randint(1, 2), rng.randint(1, 6), rng.randint(1, 2)][
                             :stages],
                         "window_size": window, "image_size": size}, size


_MOBILEVIT_TIERS = (
    ([64, 80, 96], [16, 16, 24, 48, 64, 80, 320], 2.0),  # XXS
    ([96, 120, 144], [16, 32, 48, 64, 80, 96, 384], 4.0),  # XS
    ([144, 192, 240], [16, 32, 64, 96, 128, 160, 640], 4.0),  # S
)


def _mobilevit(rng: random.Random) -> Draw:
    hidden, neck, expand = rng.choice(_MOBILEVIT_TIERS)
    size = rng.choice((64, 96, 128, 160, 192, 224, 256))
    return "mobilevit-small", {"hidden_sizes": hidden, "neck_hidden_sizes": neck, "expand_ratio": expand,
                               "image_size": size}, size


def _poolformer(rng: random.Random) -> Draw:
    if full := _full(rng, ("poolformer-s12",)):
        return full, {}, _size(rng, 64)
    base = rng.choice((32, 48, 64))
    return "poolformer-s12", {"hidden_sizes": [base, 2 * base, 5 * base, 8 * base],
                              "depths": [rng.randint(1, 2), rng.randint(1, 2), rng.randint(1, 6),
                                         rng.randint(1, 2)]}, _size(rng)


def _mit(arch: str) -> Callable[..., Draw]:
    """SegFormer (MiT) and PVTv2 share the hierarchical config: widths, heads, spatial-reduction ratios."""

    def draw(rng: random.Random) -> Draw:
        if _full(rng, (arch,)):
            return arch, {}, _size(rng, 64)
        scale = rng.choice((1, 2))
        hidden = [32 * scale, 64 * scale, 160 * scale, 256 * scale]
        heads = [1 * scale, 2 * scale, 5 * scale, 8 * scale]
        size = _size(rng, 64)
        overrides: dict[str, Any] = {"hidden_sizes": hidden, "num_attention_heads": heads,
                                     "depths": [rng.randint(1, 3) for _ in range(4)]}
        if arch.startswith("pvt"):
            overrides["image_size"] = size
        return arch, overrides, size

    return draw


# ------------------------------------------------------------------------------------------------ text


def _text_sizes(rng: random.Random) -> tuple[int, int, int]:
    hidden = rng.choice((128, 192, 256, 384, 512, 512, 768))
    return hidden, _heads(rng, hidden), rng.randint(1, 6)


def _bert_like(arch: str, full_names: tuple[str, ...], seq_max: int = 512) -> Callable[..., Draw]:
    def draw(rng: random.Random) -> Draw:
        seq = rng.choice([s for s in SEQ_LENS if s <= seq_max])
        if full := _full(rng, full_names):
            return full, {}, min(seq, 128)
        hidden, heads, layers = _text_sizes(rng)
        return arch, {"hidden_size": hidden, "num_attention_heads": heads, "num_hidden_layers": layers,
                      "intermediate_size": 4 * hidden, "vocab_size": rng.choice(SMALL_VOCABS)}, seq

    return draw


def _albert(rng: random.Random) -> Draw:
    seq = rng.choice(SEQ_LENS)
    if _full(rng, ("albert-base",)):
        return "albert-base", {}, min(seq, 128)
    hidden, heads, _ = _text_sizes(rng)
    return "albert-base", {"hidden_size": hidden, "num_attention_heads": heads,
                           "num_hidden_layers": rng.randint(1, 12), "intermediate_size": 4 * hidden,
                           "embedding_size": rng.choice((64, 128)), "vocab_size": rng.choice(SMALL_VOCABS)}, seq


def _electra(rng: random.Random) -> Draw:
    seq = rng.choice(SEQ_LENS)
    if _full(rng, ("electra-small",)):
        return "electra-small", {}, seq
    hidden, heads, layers = _text_sizes(rng)
    return "electra-small", {"hidden_size": hidden, "num_attention_heads": heads, "num_hidden_layers": layers,
                             "intermediate_size": 4 * hidden, "embedding_size": rng.choice((64, 128)),
                             "vocab_size": rng.choice(SMALL_VOCABS)}, seq


def _distilbert(rng: random.Random) -> Draw:
    seq = rng.choice(SEQ_LENS)
    if _full(rng, ("distilbert",)):
        return "distilbert", {}, min(seq, 128)
    hidden, heads, layers = _text_sizes(rng)
    return "distilbert", {"dim": hidden, "n_heads": heads, "n_layers": layers, "hidden_dim": 4 * hidden,
                          "vocab_size": rng.choice(SMALL_VOCABS)}, seq


def _gpt2(rng: random.Random) -> Draw:
    seq = rng.choice(SEQ_LENS)
    if _full(rng, ("gpt2",)):
        return "gpt2", {}, min(seq, 128)
    hidden, heads, layers = _text_sizes(rng)
    return "gpt2", {"n_embd": hidden, "n_head": heads, "n_layer": layers, **_gpt_vocab(rng)}, seq


def _gpt_vocab(rng: random.Random) -> dict[str, int]:
    """A smaller vocabulary; GPT-2 and GPT-Neo's bos/eos id (50256) must then move inside it."""
    vocab = rng.choice(SMALL_VOCABS)
    return {"vocab_size": vocab, "bos_token_id": vocab - 1, "eos_token_id": vocab - 1}


def _gpt_neo(rng: random.Random) -> Draw:
    seq = rng.choice(SEQ_LENS)
    if _full(rng, ("gpt-neo-125m",)):
        return "gpt-neo-125m", {}, min(seq, 128)
    hidden, heads, _ = _text_sizes(rng)
    pairs = rng.randint(1, 3)  # GPT-Neo alternates global and local attention layers
    return "gpt-neo-125m", {"hidden_size": hidden, "num_heads": heads, "num_layers": 2 * pairs,
                            "attention_types": [[["global", "local"], pairs]],
                            "window_size": rng.choice((32, 64, 256)), **_gpt_vocab(rng)}, seq


def _opt(rng: random.Random) -> Draw:
    seq = rng.choice(SEQ_LENS)
    if _full(rng, ("opt-125m",)):
        return "opt-125m", {}, min(seq, 128)
    hidden, heads, layers = _text_sizes(rng)
    return "opt-125m", {"hidden_size": hidden, "num_attention_heads": heads, "num_hidden_layers": layers,
                        "ffn_dim": 4 * hidden, "word_embed_proj_dim": hidden,
                        "vocab_size": rng.choice(SMALL_VOCABS)}, seq


def _llama_like(arch: str) -> Callable[..., Draw]:
    def draw(rng: random.Random) -> Draw:
        seq = rng.choice(SEQ_LENS)
        if _full(rng, (arch,)):
            return arch, {}, min(seq, 128)
        hidden, heads, layers = _text_sizes(rng)
        kv = rng.choice([k for k in (1, 2, 4, heads) if heads % k == 0])
        return arch, {"hidden_size": hidden, "num_attention_heads": heads, "num_key_value_heads": kv,
                      "head_dim": hidden // heads, "num_hidden_layers": layers,
                      "intermediate_size": round_to(hidden * 8 / 3, 64),
                      "vocab_size": rng.choice(SMALL_VOCABS)}, seq

    return draw


def _mobilebert(rng: random.Random) -> Draw:
    seq = rng.choice(SEQ_LENS)
    if _full(rng, ("mobilebert",)):
        return "mobilebert", {}, min(seq, 128)
    bottleneck = rng.choice((64, 128))
    return "mobilebert", {"num_hidden_layers": rng.randint(2, 12), "intra_bottleneck_size": bottleneck,
                          "intermediate_size": bottleneck * 4,
                          "num_feedforward_networks": rng.randint(1, 4),
                          "vocab_size": rng.choice(SMALL_VOCABS)}, seq


def _squeezebert(rng: random.Random) -> Draw:
    seq = rng.choice(SEQ_LENS)
    if _full(rng, ("squeezebert",)):
        return "squeezebert", {}, min(seq, 128)
    hidden, heads, layers = _text_sizes(rng)
    return "squeezebert", {"hidden_size": hidden, "embedding_size": hidden, "num_attention_heads": heads,
                           "num_hidden_layers": layers, "intermediate_size": 4 * hidden,
                           "vocab_size": rng.choice(SMALL_VOCABS)}, seq


#: family → sampler; the family names are those of :mod:`inferperf.ir.architectures`
SAMPLERS: dict[str, Callable[[random.Random], Draw]] = {
    "resnet": _resnet,
    "mobilenet_v1": _mobilenet_v1,
    "mobilenet_v2": _mobilenet_v2,
    "convnext": _convnext,
    "convnextv2": _convnextv2,
    "efficientnet": _efficientnet,
    "regnet": _regnet,
    "vit": _vit_like("vit-small", ("vit-small", "vit-base"), (8, 16, 32)),
    "deit": _vit_like("deit-tiny", ("deit-tiny",), (16,)),
    "swin": _swin,
    "mobilevit": _mobilevit,
    "poolformer": _poolformer,
    "segformer": _mit("segformer-b0"),
    "pvt": _mit("pvt-v2-b0"),
    "dinov2": _dinov2,
    "bert": _bert_like("bert-base", ("bert-base",)),
    "distilbert": _distilbert,
    "roberta": _bert_like("roberta-base", ("roberta-base",), seq_max=256),
    "albert": _albert,
    "electra": _electra,
    "gpt2": _gpt2,
    "gpt_neo": _gpt_neo,
    "opt": _opt,
    "llama": _llama_like("llama-small"),
    "qwen2": _llama_like("qwen2-small"),
    "mobilebert": _mobilebert,
    "squeezebert": _squeezebert,
    "mpnet": _bert_like("mpnet-base", ("mpnet-base",)),
}


class RealFamily(SampledGenerator):
    """Samples of one architecture family; ``params`` = ``{"arch", "overrides", "image_size"|"seq_len"}``."""

    zoo = "real"

    def __init__(self, family: str, sampler: Callable[[random.Random], Draw]) -> None:
        self.family = family
        self.sampler = sampler
        self.description = f"{family} (transformers config, random weights)"

    def draw_params(self, sample_seed_value: int) -> dict[str, Any]:
        from inferperf.ir.architectures import get_architecture

        arch_name, overrides, size = self.sampler(sample_rng(self.family, sample_seed_value))
        arch = get_architecture(arch_name)
        if arch.family != self.family:  # a sampler bug: the label would corrupt leave-one-family-out
            raise AssertionError(f"sampler of {self.family} drew {arch_name} ({arch.family})")
        size_key = "image_size" if arch.modality == "vision" else "seq_len"
        return {"arch": arch.name, "modality": arch.modality, "overrides": overrides, size_key: size}

    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from inferperf.ir.architectures import get_architecture

        arch = get_architecture(params["arch"])
        config = arch.make_config(params["overrides"])
        module = arch.build(params["overrides"], seed=seed)
        shapes = arch.input_shapes(config, batch_size, params.get("seq_len"), params.get("image_size"))
        gen = torch.Generator().manual_seed(seed)
        inputs: dict[str, Any] = {}
        for name, (shape, dtype) in shapes.items():
            if name == "attention_mask":
                inputs[name] = torch.ones(shape, dtype=torch.int64)
            elif dtype == "int64":
                vocab = arch.vocab_bound(config) or 1000
                inputs[name] = torch.randint(0, max(2, min(vocab, 1000)), shape, generator=gen)
            else:
                inputs[name] = torch.randn(shape, generator=gen)
        return module, inputs

    def load(self, entry: ZooEntry) -> LoadedModel:
        from inferperf.ir.ingest import load_architecture

        p = entry.params
        loaded = load_architecture(p["arch"], batch_size=entry.batch_size, seq_len=p.get("seq_len"),
                                   image_size=p.get("image_size"), overrides=p["overrides"], seed=entry.seed)
        loaded.name = entry.key
        return loaded


def real_generators() -> list[RealFamily]:
    return [RealFamily(family, sampler) for family, sampler in SAMPLERS.items() if family not in EXCLUDED]
