"""Few-shot device calibration of ``inferperf demo`` on a machine that is not a training device."""

from __future__ import annotations

import math

import pytest

from inferperf.cli.calibration import CALIBRATION_ARCHITECTURES, calibration_scale, isa_summary, pick_architectures
from inferperf.ir.architectures import get_architecture


def test_scale_is_the_geometric_mean_and_spread_the_farthest_ratio() -> None:
    scale, spread = calibration_scale([1.9, 2.1])
    assert scale == pytest.approx(math.sqrt(1.9 * 2.1))
    assert spread == pytest.approx(2.1 / scale)
    assert calibration_scale([2.0]) == (pytest.approx(2.0), pytest.approx(1.0))
    # a ratio far from the others widens the interval by that much
    assert calibration_scale([1.0, 1.0, 4.0])[1] == pytest.approx(4.0 / 4.0 ** (1 / 3))


@pytest.mark.parametrize("bad", [[], [0.0], [-1.0, 2.0], [float("nan")]])
def test_bad_ratios_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        calibration_scale(bad)


def test_calibration_architectures_exist_and_span_families() -> None:
    for modality, names in CALIBRATION_ARCHITECTURES.items():
        arches = [get_architecture(n) for n in names]
        assert all(a.modality == modality for a in arches)
        # two picks remain whichever family is held out
        assert len({a.family for a in arches}) >= 3


def test_isa_summary_reads_device_features() -> None:
    assert isa_summary({"id": "x", "features": {"isa_avx2": 1.0, "isa_avx512f": 1.0}}) == "AVX-512"
    assert isa_summary({"id": "x", "features": {"isa_avx2": 1.0, "isa_avx512f": 0.0}}) == "AVX2"
    assert isa_summary({"id": "x", "features": {}}) == "no AVX2"


def test_picks_skip_the_held_out_family_and_follow_the_modality() -> None:
    vision = pick_architectures("vision", "regnet")
    assert len(vision) == 2 and all(get_architecture(n).family != "regnet" for n in vision)
    assert all(get_architecture(n).modality == "text" for n in pick_architectures("text", None))
    assert pick_architectures(None, None) == pick_architectures("vision", None)
