"""Few-shot calibration of a device no predictor was trained on.

Why: a predictor learns one machine's speeds. The shipped reference data comes from an AVX-512 EPYC VM; on an
AVX2 VM ResNet-50 runs 2.3× slower (40 ms there, 94 ms here), so a prediction for the reference device is not
a prediction for this one. Collecting and training on the new machine is the real fix (hours); in the
meantime a device-wide speed factor, measured on a couple of small architectures, carries most of the
difference: the factor moves little between architectures of one modality (×1.90 and ×2.11 for RegNetX-400MF
and ViT-Small on that AVX2 VM; ResNet-50, calibrated on them, came out +0.8%). The interval is widened by the
spread of those ratios. The calibration models come from families other than the predicted model's, so the
prediction stays one for an architecture the calibration did not see either.

Used by ``inferperf demo`` and ``inferperf predict --calibrate``. Measuring lives in the CLI layer (it runs
``run_bench``'s child-process protocol and stores the runs in the PerfDB with their provenance).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

#: small architectures measured to calibrate an unseen device, by modality, in order of preference
CALIBRATION_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "vision": ("regnet-x-400mf", "vit-small", "mobilenet_v2", "efficientnet-b0"),
    "text": ("distilbert", "electra-small", "albert-base", "gpt2"),
}


def calibration_scale(ratios: list[float]) -> tuple[float, float]:
    """(scale, spread) from measured / predicted ratios on a new device: the geometric mean, and the largest
    log distance of a ratio from it (as a factor ≥ 1) — a device-wide speed factor and how far a single model
    strayed from it."""
    if not ratios or any(not math.isfinite(r) or r <= 0 for r in ratios):
        raise ValueError(f"calibration needs positive finite ratios, got {ratios}")
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / len(logs)
    return math.exp(mean), math.exp(max(abs(x - mean) for x in logs))


def isa_summary(device: dict[str, Any] | None) -> str:
    """'AVX-512' / 'AVX2' / 'no AVX2' of a device dict, or of this machine when ``device`` is None — read as the
    additive model reads it (:func:`~inferperf.predict.additive.nchwc_block`: the SIMD width ORT blocks by)."""
    from inferperf.predict.additive import nchwc_block

    if device is None:
        from inferperf.predict.fusion.data import this_device

        device = this_device()
    return {16: "AVX-512", 8: "AVX2"}.get(nchwc_block(device), "no AVX2")


def pick_architectures(modality: str | None, exclude_family: str | None, k: int = 2) -> list[str]:
    """The first ``k`` calibration architectures of the modality whose family is not ``exclude_family``."""
    from inferperf.ir.architectures import list_architectures

    family_of = {a.name: a.family for a in list_architectures()}
    names = CALIBRATION_ARCHITECTURES.get(modality or "vision", CALIBRATION_ARCHITECTURES["vision"])
    return [n for n in names if family_of.get(n) not in (None, exclude_family)][:k]


@dataclass
class DeviceCalibration:
    """A measured speed factor of this machine against a predictor's reference device."""

    reference_device: str
    device: str
    scale: float
    spread: float
    models: list[dict[str, Any]] = field(default_factory=list)

    def apply(self, latency_ms: float, interval: tuple[float, float] | None) -> tuple[float,
                                                                                      tuple[float, float] | None]:
        """The latency and 90% interval on this machine (the interval widened by the calibration spread)."""
        lo_hi = None if interval is None else (interval[0] * self.scale / self.spread,
                                               interval[1] * self.scale * self.spread)
        return latency_ms * self.scale, lo_hi

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate_device(
    predictor: Any,
    reference_device: dict[str, Any],
    config: dict[str, Any],
    *,
    device_id: str,
    modality: str | None,
    exclude_family: str | None,
    k: int = 2,
    max_time_s: float = 3.0,
    report: Callable[[str], None] | None = None,
) -> DeviceCalibration | None:
    """Predict ``k`` calibration architectures for the reference device, measure them here — on ``device_id``,
    this machine (child process, stored in the PerfDB) — and return the speed factor; None when no calibration
    model could be measured."""
    from inferperf.cli.measure import run_bench
    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_model

    models, ratios = [], []
    for arch in pick_architectures(modality, exclude_family, k):
        loaded = load_model(arch, batch_size=1)
        graph = build_graph(loaded.model, loaded.name, loaded.metadata)
        cfg = {**config, "batch_size": 1}
        predicted = predictor.predict([graph], [cfg], reference_device)[0].latency_ms
        threads = int(cfg.get("intra_op_threads") or 1)
        run = run_bench(arch, batches=[1], threads=[threads], max_time_s=max_time_s, profile=False)["runs"][0]
        measured = (run.get("latency_ms") or {}).get("p50")
        if not measured or not predicted:
            if report:
                report(f"{arch}: not measured ({run.get('error') or 'no latency'}); skipped")
            continue
        ratios.append(measured / predicted)
        models.append({"model": arch, "predicted_ms": predicted, "measured_ms": measured, "ratio": ratios[-1]})
        if report:
            report(f"{arch}: predicted {predicted:.2f} ms (reference device), measured here {measured:.2f} ms "
                   f"→ ×{ratios[-1]:.2f}")
    if not ratios:
        return None
    scale, spread = calibration_scale(ratios)
    return DeviceCalibration(str(reference_device["id"]), device_id, scale, spread, models)
