"""Named architectures built from transformers config classes with random weights.

Nothing is downloaded: every model is instantiated from its config class, so the latency measured on it is
real while the weights are random. Size overrides (``num_hidden_layers=4``, ``hidden_sizes=[...]``) change
the config before the model is built, which is how the zoo varies depth and width within a family.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from inferperf.errors import ConfigError, UnknownArchitectureError


@dataclass(frozen=True)
class Architecture:
    """A buildable architecture: the config class, the model class and the defaults that name a size.

    ``modality`` decides the inputs: ``vision`` models take ``pixel_values`` [B, C, H, W]; ``text`` models take
    ``input_ids`` and ``attention_mask`` [B, S] (GPT-2's legacy export needs the explicit mask).
    """

    name: str
    family: str
    modality: str
    config_class: str
    model_class: str
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    default_image_size: int = 224
    default_seq_len: int = 128

    def make_config(self, overrides: dict[str, Any] | None = None) -> Any:
        import transformers

        cfg_cls = getattr(transformers, self.config_class)
        kwargs = self.config_kwargs(overrides)
        try:
            cfg = cfg_cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid override for {self.name}: {exc}") from None
        for key in kwargs:
            if key != "attn_implementation" and not hasattr(cfg, key):
                raise ConfigError(f"{self.config_class} has no field '{key}' (override for {self.name})")
        if hasattr(cfg, "use_cache"):
            cfg.use_cache = False
        return cfg

    def config_kwargs(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults + overrides; classifiers get ImageNet's 1000 classes so parameter counts match papers."""
        kwargs = {**self.defaults, **(overrides or {})}
        if self.modality == "vision" and self.model_class.endswith("ForImageClassification"):
            kwargs.setdefault("num_labels", 1000)
        return kwargs

    def build(self, overrides: dict[str, Any] | None = None, seed: int = 0) -> Any:
        """Instantiate the model in eval mode with seeded random weights."""
        import torch
        import transformers

        cfg = self.make_config(overrides)
        torch.manual_seed(seed)
        model_cls = getattr(transformers, self.model_class)
        try:
            model = model_cls(cfg)
        except Exception as exc:  # transformers raises many types for inconsistent sizes
            raise ConfigError(f"cannot build {self.name} with {overrides or {}}: {exc}") from None
        return model.eval()

    def input_shapes(
        self, config: Any, batch_size: int, seq_len: int | None, image_size: int | None
    ) -> dict[str, tuple[tuple[int, ...], str]]:
        """Input name → (shape, dtype) for the given sizes."""
        if self.modality == "vision":
            size = image_size or getattr(config, "image_size", None) or self.default_image_size
            if isinstance(size, list | tuple):
                size = size[0]
            channels = getattr(config, "num_channels", 3)
            return {"pixel_values": ((batch_size, channels, int(size), int(size)), "float32")}
        s = seq_len or self.default_seq_len
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if limit is not None and s > limit:
            raise ConfigError(f"{self.name}: sequence length {s} exceeds max_position_embeddings={limit}")
        return {
            "input_ids": ((batch_size, s), "int64"),
            "attention_mask": ((batch_size, s), "int64"),
        }

    def vocab_bound(self, config: Any) -> int | None:
        return getattr(config, "vocab_size", None) if self.modality == "text" else None


def _a(name: str, family: str, modality: str, cfg: str, model: str, desc: str, **defaults: Any) -> Architecture:
    return Architecture(name, family, modality, cfg, model, defaults, desc)


_RESNET_BASIC = {"layer_type": "basic", "hidden_sizes": [64, 128, 256, 512]}
_VISION = "vision"
_TEXT = "text"

#: every named architecture; families are the labels used for leave-one-family-out evaluation
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in [
        _a("resnet18", "resnet", _VISION, "ResNetConfig", "ResNetForImageClassification",
           "ResNet-18 (basic blocks)", depths=[2, 2, 2, 2], **_RESNET_BASIC),
        _a("resnet34", "resnet", _VISION, "ResNetConfig", "ResNetForImageClassification",
           "ResNet-34 (basic blocks)", depths=[3, 4, 6, 3], **_RESNET_BASIC),
        _a("resnet50", "resnet", _VISION, "ResNetConfig", "ResNetForImageClassification",
           "ResNet-50 (bottleneck blocks)", depths=[3, 4, 6, 3]),
        _a("resnet101", "resnet", _VISION, "ResNetConfig", "ResNetForImageClassification",
           "ResNet-101", depths=[3, 4, 23, 3]),
        _a("mobilenet_v1", "mobilenet_v1", _VISION, "MobileNetV1Config", "MobileNetV1ForImageClassification",
           "MobileNetV1 1.0, 224"),
        _a("mobilenet_v2", "mobilenet_v2", _VISION, "MobileNetV2Config", "MobileNetV2ForImageClassification",
           "MobileNetV2 1.0, 224"),
        _a("convnext-tiny", "convnext", _VISION, "ConvNextConfig", "ConvNextForImageClassification",
           "ConvNeXt-T", depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768]),
        _a("convnext-small", "convnext", _VISION, "ConvNextConfig", "ConvNextForImageClassification",
           "ConvNeXt-S", depths=[3, 3, 27, 3], hidden_sizes=[96, 192, 384, 768]),
        _a("convnextv2-atto", "convnextv2", _VISION, "ConvNextV2Config", "ConvNextV2ForImageClassification",
           "ConvNeXt V2 atto", depths=[2, 2, 6, 2], hidden_sizes=[40, 80, 160, 320]),
        _a("efficientnet-b0", "efficientnet", _VISION, "EfficientNetConfig",
           "EfficientNetForImageClassification", "EfficientNet-B0",
           width_coefficient=1.0, depth_coefficient=1.0, image_size=224, dropout_rate=0.2, hidden_dim=1280),
        _a("regnet-y-400mf", "regnet", _VISION, "RegNetConfig", "RegNetForImageClassification",
           "RegNetY-400MF-like (Y blocks, SE)", embedding_size=32, hidden_sizes=[48, 104, 208, 440],
           depths=[1, 3, 6, 6], groups_width=8, layer_type="y"),
        _a("regnet-x-400mf", "regnet", _VISION, "RegNetConfig", "RegNetForImageClassification",
           "RegNetX-400MF-like (X blocks)", embedding_size=32, hidden_sizes=[32, 64, 160, 400],
           depths=[1, 2, 7, 12], groups_width=16, layer_type="x"),
        _a("vit-base", "vit", _VISION, "ViTConfig", "ViTForImageClassification", "ViT-B/16, 224"),
        _a("vit-small", "vit", _VISION, "ViTConfig", "ViTForImageClassification", "ViT-S/16, 224",
           hidden_size=384, num_attention_heads=6, intermediate_size=1536),
        _a("deit-tiny", "deit", _VISION, "DeiTConfig", "DeiTForImageClassification", "DeiT-Ti/16, 224",
           hidden_size=192, num_attention_heads=3, intermediate_size=768),
        _a("swin-tiny", "swin", _VISION, "SwinConfig", "SwinForImageClassification", "Swin-T, 224"),
        _a("mobilevit-small", "mobilevit", _VISION, "MobileViTConfig", "MobileViTForImageClassification",
           "MobileViT-S, 256", image_size=256),
        _a("poolformer-s12", "poolformer", _VISION, "PoolFormerConfig", "PoolFormerForImageClassification",
           "PoolFormer-S12"),
        _a("segformer-b0", "segformer", _VISION, "SegformerConfig", "SegformerForImageClassification",
           "SegFormer/MiT-B0 encoder with a classification head"),
        _a("pvt-v2-b0", "pvt", _VISION, "PvtV2Config", "PvtV2ForImageClassification", "PVTv2-B0"),
        _a("dinov2-small", "dinov2", _VISION, "Dinov2Config", "Dinov2ForImageClassification",
           "DINOv2-S/14, 224", hidden_size=384, num_attention_heads=6, image_size=224),
        _a("bert-base", "bert", _TEXT, "BertConfig", "BertModel", "BERT-base encoder"),
        _a("bert-large", "bert", _TEXT, "BertConfig", "BertModel", "BERT-large encoder",
           hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
        _a("distilbert", "distilbert", _TEXT, "DistilBertConfig", "DistilBertModel", "DistilBERT-base"),
        _a("roberta-base", "roberta", _TEXT, "RobertaConfig", "RobertaModel", "RoBERTa-base encoder",
           vocab_size=50265, max_position_embeddings=514),
        _a("albert-base", "albert", _TEXT, "AlbertConfig", "AlbertModel", "ALBERT-base",
           embedding_size=128, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
        _a("electra-small", "electra", _TEXT, "ElectraConfig", "ElectraModel", "ELECTRA-small discriminator"),
        _a("gpt2", "gpt2", _TEXT, "GPT2Config", "GPT2Model", "GPT-2 small (124M) decoder, no LM head"),
        _a("gpt2-medium", "gpt2", _TEXT, "GPT2Config", "GPT2Model", "GPT-2 medium decoder, no LM head",
           n_embd=1024, n_layer=24, n_head=16),
        _a("gpt-neo-125m", "gpt_neo", _TEXT, "GPTNeoConfig", "GPTNeoModel", "GPT-Neo 125M",
           hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]]),
        _a("opt-125m", "opt", _TEXT, "OPTConfig", "OPTModel", "OPT-125M decoder"),
        _a("llama-small", "llama", _TEXT, "LlamaConfig", "LlamaModel", "Llama-architecture, 8x512",
           hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
           num_key_value_heads=8, vocab_size=32000),
        _a("qwen2-small", "qwen2", _TEXT, "Qwen2Config", "Qwen2Model", "Qwen2-architecture, 8x512, GQA",
           hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
           num_key_value_heads=2, vocab_size=32000),
        _a("mobilebert", "mobilebert", _TEXT, "MobileBertConfig", "MobileBertModel", "MobileBERT"),
        _a("squeezebert", "squeezebert", _TEXT, "SqueezeBertConfig", "SqueezeBertModel",
           "SqueezeBERT (grouped convolutions)"),
        _a("mpnet-base", "mpnet", _TEXT, "MPNetConfig", "MPNetModel", "MPNet-base"),
    ]
}

#: short aliases users type
ALIASES: dict[str, str] = {
    "resnet-50": "resnet50",
    "resnet-18": "resnet18",
    "mobilenetv2": "mobilenet_v2",
    "mobilenet-v2": "mobilenet_v2",
    "mobilenetv1": "mobilenet_v1",
    "mobilenet-v1": "mobilenet_v1",
    "convnext": "convnext-tiny",
    "vit": "vit-base",
    "vit-b16": "vit-base",
    "bert": "bert-base",
    "bert-base-uncased": "bert-base",
    "gpt-2": "gpt2",
    "efficientnet": "efficientnet-b0",
}


def list_architectures() -> list[Architecture]:
    return sorted(ARCHITECTURES.values(), key=lambda a: (a.family, a.name))


def families() -> list[str]:
    return sorted({a.family for a in ARCHITECTURES.values()})


def get_architecture(name: str) -> Architecture:
    """Look an architecture up by name or alias; an unknown name suggests the closest ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in ARCHITECTURES:
        return ARCHITECTURES[key]
    close = difflib.get_close_matches(key, list(ARCHITECTURES) + list(ALIASES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownArchitectureError(
        f"unknown architecture '{name}' (and no such file){hint} — `inferperf archs` lists them"
    )


def is_architecture_name(name: str) -> bool:
    key = name.strip().lower()
    return ALIASES.get(key, key) in ARCHITECTURES


def build_with_inputs(
    name: str,
    overrides: dict[str, Any] | None = None,
    batch_size: int = 1,
    seq_len: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> tuple[Any, list[dict[str, Any]]]:
    """Factory for the PyTorch runtimes: the eval-mode module and its input specs (name, shape, dtype).

    Named by dotted path (``inferperf.ir.architectures:build_with_inputs``) in a TorchModelSpec, so the model
    is built inside the isolated measuring process rather than pickled across.
    """
    arch = get_architecture(name)
    config = arch.make_config(overrides)
    module = arch.build(overrides, seed=seed)
    shapes = arch.input_shapes(config, batch_size, seq_len, image_size)
    return module, [{"name": n, "shape": list(s), "dtype": d} for n, (s, d) in shapes.items()]
