"""How completely ORT's executed kernels map back onto the original graph, and how well they add up.

For ResNet-50, MobileNetV2, ConvNeXt-tiny, ViT-base, BERT-base and GPT-2 (batch 1, 224x224 images,
128-token sequences; transformers with and without onnxscript attention fusion) this profiles one ORT
CPU session per case and records:

- coverage: share of original nodes covered by an executed kernel or explained (target >= 99%), and every
  uncovered node's reason (none may be "unexplained");
- kernel sum / run latency: the sum of per-kernel mean durations over the mean ``model_run`` span (target:
  within 5% of 1), plus the per-run median of that ratio, which a preempted run cannot move;
- kernel counts, kernel-type histogram, fused-edge share, the costliest kernels.

Models come from ``inferperf.ir.ingest.load_model``; if that fails for a name, a scratch export with
transformers' default config is used instead (cached in /tmp/kernels_scratch). Timings are from a shared
2-core machine with 1 intra-op thread: treat absolute milliseconds as indicative, the ratios as the result.

Run: ``TMPDIR=/tmp .venv/bin/python benchmarks/fusion_coverage.py [--runs 20] [--warmup 5] [--only bert-base]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("TMPDIR", "/tmp")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from inferperf.measure.kernels import REASON_UNEXPLAINED, profile_onnx  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "fusion_coverage.json"
SCRATCH = Path("/tmp/kernels_scratch")

#: (registry name, scratch export key, try attention fusion)
MODELS: list[tuple[str, str, bool]] = [
    ("resnet50", "resnet50", False),
    ("mobilenet_v2", "mobilenetv2", False),
    ("convnext-tiny", "convnext", False),
    ("vit-base", "vit", True),
    ("bert-base", "bert", True),
    ("gpt2", "gpt2", True),
]


def _scratch_export(key: str) -> str:
    """Default-config transformers model exported with the dynamo exporter (legacy exporter as fallback)."""
    import torch
    import transformers as tf

    target = SCRATCH / f"{key}.onnx"
    if target.exists():
        return str(target)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    vision = {
        "resnet50": (tf.ResNetForImageClassification, tf.ResNetConfig),
        "mobilenetv2": (tf.MobileNetV2ForImageClassification, tf.MobileNetV2Config),
        "convnext": (tf.ConvNextForImageClassification, tf.ConvNextConfig),
        "vit": (tf.ViTForImageClassification, tf.ViTConfig),
    }
    text = {"bert": (tf.BertModel, tf.BertConfig), "gpt2": (tf.GPT2Model, tf.GPT2Config)}

    if key in vision:
        cls, cfg = vision[key]

        class Image(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = cls(cfg()).eval()

            def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
                return self.m(pixel_values=pixel_values).logits

        module: torch.nn.Module = Image().eval()
        args: tuple[Any, ...] = (torch.randn(1, 3, 224, 224),)
        names = ["pixel_values"]
    else:
        cls, cfg = text[key]

        class Text(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = cls(cfg()).eval()

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        module = Text().eval()
        args = (torch.randint(0, 100, (1, 128)), torch.ones(1, 128, dtype=torch.int64))
        names = ["input_ids", "attention_mask"]
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        try:
            torch.onnx.export(module, args, str(target), dynamo=True, input_names=names, external_data=False)
        except Exception:
            torch.onnx.export(module, args, str(target), dynamo=False, input_names=names, opset_version=17)
    return str(target)


def _model_path(name: str, key: str) -> tuple[str, str]:
    try:
        from inferperf.ir.ingest import load_model

        with contextlib.redirect_stdout(io.StringIO()):
            loaded = load_model(name, batch_size=1, seq_len=128, image_size=224)
        return loaded.path, "inferperf.ir.ingest.load_model"
    except Exception as exc:  # the registry is optional here; the scratch export is equivalent
        print(f"  load_model({name!r}) failed ({type(exc).__name__}: {exc}); using scratch export", flush=True)
        return _scratch_export(key), "scratch export (transformers default config, dynamo)"


_ATTENTION = ("Attention", "MultiHeadAttention", "GroupQueryAttention")


def _label_ok(orig_op: str, kernel_type: str) -> bool:
    """Whether a heavy original op sits in a kernel of a plausible type (a self-check of the mapping)."""
    if orig_op in ("Conv", "ConvTranspose"):
        return kernel_type.startswith("Conv")
    if orig_op in ("MatMul", "Gemm"):
        return kernel_type.startswith(("Gemm", "MatMul")) or kernel_type in _ATTENTION
    if orig_op == "Softmax":
        return kernel_type == "Softmax" or kernel_type in _ATTENTION
    if orig_op == "LayerNormalization":
        return kernel_type.endswith("LayerNorm")
    if orig_op in ("MaxPool", "AveragePool", "GlobalAveragePool"):
        return kernel_type == orig_op
    return True


def _label_mismatches(profile: Any, path: str) -> list[str]:
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(path, load_external_data=False).graph.node}
    return [
        f"{n} ({ops[n]}) -> {k.name} ({k.kernel_type})"
        for k in profile.kernels
        for n in k.covered_nodes
        if n in ops and not _label_ok(ops[n], k.kernel_type)
    ]


def _summarize(profile: Any, wall_s: float) -> dict[str, Any]:
    reasons = Counter(profile.uncovered.values())
    by_type: Counter[str] = Counter()
    time_by_type: Counter[str] = Counter()
    for k in profile.kernels:
        by_type[k.kernel_type] += 1
        time_by_type[k.kernel_type] += k.duration_ms
    fused = sum(1 for e in profile.fusion_edges if e["fused"])
    top = sorted(profile.kernels, key=lambda k: -k.duration_ms)[:5]
    covered = sum(len(k.covered_nodes) for k in profile.kernels)
    return {
        "n_original_nodes": profile.n_original_nodes,
        "n_covered_nodes": covered,
        "coverage": round(profile.coverage, 6),
        "uncovered_by_reason": dict(reasons),
        "uncovered": dict(profile.uncovered),
        "unexplained": [n for n, r in profile.uncovered.items() if r == REASON_UNEXPLAINED],
        "n_kernels": len(profile.kernels),
        "n_kernels_without_original_nodes": sum(1 for k in profile.kernels if not k.covered_nodes),
        "kernel_sum_ms": round(profile.kernel_sum_ms, 4),
        "run_latency_ms": round(profile.run_latency_ms, 4),
        "kernel_sum_ratio": round(profile.kernel_sum_ratio, 4),
        "kernel_sum_ratio_median": round(profile.kernel_sum_ratio_median, 4),
        "within_5pct": abs(1.0 - profile.kernel_sum_ratio) <= 0.05,
        "fusion_edges": len(profile.fusion_edges),
        "fused_edges": fused,
        "kernel_types": dict(by_type.most_common()),
        "kernel_type_ms": {k: round(v, 3) for k, v in time_by_type.most_common()},
        "top_kernels": [
            {
                "name": k.name,
                "kernel_type": k.kernel_type,
                "ms": round(k.duration_ms, 3),
                "covers": len(k.covered_nodes),
            }
            for k in top
        ],
        "attention_fusion_counts": profile.settings.get("attention_fusion_counts"),
        "mapping": profile.settings.get("mapping"),
        "warnings": profile.warnings,
        "profile_wall_s": round(wall_s, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, help="registry names to run (default: all)")
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    import onnxscript

    cases: list[dict[str, Any]] = []
    for name, key, try_fusion in MODELS:
        if args.only and name not in args.only:
            continue
        path, source = _model_path(name, key)
        for fusion in (False, True) if try_fusion else (False,):
            print(f"{name:14} attention_fusion={fusion!s:5} ...", end=" ", flush=True)
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                prof = profile_onnx(
                    path, runs=args.runs, warmup=args.warmup, attention_fusion=fusion, intra_op_threads=args.threads
                )
            summary = _summarize(prof, time.perf_counter() - t0)
            summary["label_mismatches"] = _label_mismatches(prof, path)
            cases.append({"model": name, "source": source, "attention_fusion": fusion, **summary})
            print(
                f"coverage {summary['coverage']:.4f}  unexplained {len(summary['unexplained'])}  "
                f"kernels {summary['n_kernels']:4d}  sum/run {summary['kernel_sum_ratio']:.3f} "
                f"(median {summary['kernel_sum_ratio_median']:.3f})  run {summary['run_latency_ms']:.1f} ms  "
                f"label mismatches {len(summary['label_mismatches'])}",
                flush=True,
            )

    result = {
        "benchmark": "fusion_coverage",
        "targets": {"coverage_min": 0.99, "unexplained": 0, "kernel_sum_ratio_within": 0.05},
        "all_coverage_ok": all(c["coverage"] >= 0.99 and not c["unexplained"] for c in cases),
        "all_ratio_within_5pct": all(c["within_5pct"] for c in cases),
        "label_mismatches": sum(len(c["label_mismatches"]) for c in cases),
        "min_coverage": min((c["coverage"] for c in cases), default=None),
        "kernel_sum_ratio_range": [
            min((c["kernel_sum_ratio"] for c in cases), default=None),
            max((c["kernel_sum_ratio"] for c in cases), default=None),
        ],
        "settings": {
            "runs": args.runs,
            "warmup": args.warmup,
            "intra_op_threads": args.threads,
            "inter_op_threads": 1,
            "opt_level": "all",
            "batch_size": 1,
            "seq_len": 128,
            "image_size": 224,
        },
        "provenance": {
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "cases": cases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0 if result["all_coverage_ok"] else 1


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
