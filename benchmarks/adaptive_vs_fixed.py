"""Adaptive stopping rule vs a fixed 30-run protocol on the same model, alternated.

Each alternation measures the model once with the adaptive protocol (min 10 runs and 1 s, then until the
95% CI of the median is within ±1%, capped at 10 s) and once with exactly 30 timed runs, both after the
same warm-up, in alternating order (A B, B A, ...) so slow drift affects both alike. Reported per run: the
median, the number of samples, the time spent timing (warm-up + timed phase, not session creation), CI
width and CV; overall: time ratio, how far the two protocols' medians are apart in each alternation, and
how reproducible each protocol's median is across alternations (relative spread).

The model defaults to ResNet-50 built by ``inferperf.ir.ingest.load_model("resnet50")`` (random weights,
cached ONNX export); without that module it exports ``transformers.ResNetForImageClassification`` itself.
Writes ``benchmarks/results/adaptive_vs_fixed.json``.

    TMPDIR=/tmp .venv/bin/python benchmarks/adaptive_vs_fixed.py                 # ResNet-50, 3 alternations
    TMPDIR=/tmp .venv/bin/python benchmarks/adaptive_vs_fixed.py --model resnet18 --alternations 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from inferperf.measure.config import ProtocolConfig, RunConfig
from inferperf.measure.protocol import library_versions, run_measurement

RESULTS = Path(__file__).resolve().parent / "results"


def model_path(name: str, tmp: Path) -> tuple[str, dict[str, Any]]:
    try:
        from inferperf.ir.ingest import load_model
    except ImportError:
        if name != "resnet50":
            raise SystemExit(f"inferperf.ir.ingest is not available to build {name!r}") from None
        return export_resnet50(tmp), {"source": "transformers ResNetForImageClassification(ResNetConfig())"}
    loaded = load_model(name, batch_size=1)
    return loaded.path, dict(loaded.metadata)


def export_resnet50(tmp: Path) -> str:
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    model = ResNetForImageClassification(ResNetConfig()).eval()
    path = tmp / "resnet50.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), dynamo=True, input_names=["pixel_values"])
    return str(path)


def one(model: str, cfg: RunConfig, protocol: ProtocolConfig, metadata: dict[str, Any]) -> dict[str, Any]:
    m = run_measurement(model, cfg, protocol, metadata=metadata)
    if m.latency_ms is None:
        raise SystemExit(f"measurement failed: {m.error}")
    timing = m.provenance["timing"]
    spent_s = (m.provenance["warmup"]["ms"] / 1000.0) + timing["elapsed_ns"] / 1e9
    lo, hi = m.ci95_ms or [float("nan"), float("nan")]
    return {
        "mode": protocol.mode,
        "status": m.status,
        "median_ms": m.latency_ms["p50"],
        "n_samples": m.n_samples,
        "time_spent_s": spent_s,
        "ci95_ms": [lo, hi],
        "ci_rel": timing["ci_rel"],
        "cv": m.cv,
        "stop_reason": timing["stop_reason"],
        "retries": timing["retries"],
    }


def rel_spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50", help="architecture name or .onnx path")
    ap.add_argument("--alternations", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fixed-runs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS / "adaptive_vs_fixed.json")
    args = ap.parse_args()

    adaptive = ProtocolConfig()  # min 10 runs and 1 s, CI ±1%, cap 10 s, CV guard
    fixed = ProtocolConfig(mode="fixed", fixed_runs=args.fixed_runs)
    cfg = RunConfig(intra_op_threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model.endswith(".onnx"):
            model, metadata = args.model, {}
        else:
            model, metadata = model_path(args.model, Path(tmp))
        t0 = time.perf_counter()
        rows: list[dict[str, Any]] = []
        for k in range(args.alternations):
            order = (adaptive, fixed) if k % 2 == 0 else (fixed, adaptive)
            pair = {p.mode: one(model, cfg, p, metadata) for p in order}
            a, f = pair["adaptive"], pair["fixed"]
            row = {
                "alternation": k,
                "order": [p.mode for p in order],
                "adaptive": a,
                "fixed": f,
                "median_rel_diff": (a["median_ms"] - f["median_ms"]) / f["median_ms"],
                "time_ratio_adaptive_over_fixed": a["time_spent_s"] / f["time_spent_s"],
            }
            rows.append(row)
            print(
                f"[{k}] adaptive {a['median_ms']:.3f} ms (n={a['n_samples']}, {a['time_spent_s']:.2f} s, "
                f"{a['stop_reason']})  fixed {f['median_ms']:.3f} ms (n={f['n_samples']}, {f['time_spent_s']:.2f} s)"
                f"  diff {100 * row['median_rel_diff']:+.2f}%"
            )
        wall = time.perf_counter() - t0
    summary = {
        "adaptive_median_spread_rel": rel_spread([r["adaptive"]["median_ms"] for r in rows]),
        "fixed_median_spread_rel": rel_spread([r["fixed"]["median_ms"] for r in rows]),
        "max_abs_median_rel_diff": max(abs(r["median_rel_diff"]) for r in rows),
        "mean_time_ratio_adaptive_over_fixed": statistics.mean(r["time_ratio_adaptive_over_fixed"] for r in rows),
        "adaptive_ci_within_target": sum(r["adaptive"]["ci_rel"] <= adaptive.target_ci_rel for r in rows),
        "fixed_ci_within_target": sum(r["fixed"]["ci_rel"] <= adaptive.target_ci_rel for r in rows),
        "alternations": len(rows),
        "wall_s": wall,
    }
    out = {
        "benchmark": "adaptive_vs_fixed",
        "model": args.model,
        "model_metadata": metadata,
        "run_config": cfg.to_dict(),
        "adaptive_protocol": adaptive.to_dict(),
        "fixed_protocol": fixed.to_dict(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "rows": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
