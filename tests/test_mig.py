"""MIG profile choice from predicted memory: fits, boundary with margin, none fits, unknown GPU."""

from __future__ import annotations

import pytest

from inferperf.errors import InferperfError
from inferperf.predict.mig import MIG_PROFILES, UnknownGpuError, mig_choice, mig_profile, resolve_gpu


def test_small_model_gets_the_smallest_slice() -> None:
    assert mig_profile(4000, "A100-40GB") == "1g.5gb"
    assert mig_profile(100, "H200") == "1g.18gb"


def test_margin_boundary() -> None:
    cap = 5 * 1024  # 1g.5gb in MiB
    just_fits = cap / 1.1 - 0.5
    just_over = cap / 1.1 + 0.5
    assert mig_profile(just_fits, "A100-40GB", margin=0.1) == "1g.5gb"
    assert mig_profile(just_over, "A100-40GB", margin=0.1) == "1g.10gb"
    # without a margin the same memory fits the small slice again
    assert mig_profile(just_over, "A100-40GB", margin=0.0) == "1g.5gb"


def test_fewer_compute_slices_win_over_equal_memory() -> None:
    # 12 GB needs a 20 GB profile: 3g.20gb, not 4g.20gb
    assert mig_profile(12_000, "A100-40GB") == "3g.20gb"
    # 15 GB on an 80 GB part: the memory-heavy 1g.20gb slice
    assert mig_profile(15_000, "A100-80GB") == "1g.20gb"
    assert mig_profile(60_000, "H200") == "3g.71gb"
    assert mig_profile(100_000, "H200") == "7g.141gb"


def test_none_fits_is_an_answer_with_a_reason() -> None:
    choice = mig_choice(40_000, "A100-40GB", margin=0.1)  # 44 000 MiB > 40 960 MiB
    assert choice.profile is None
    assert "none fits" in choice.reason
    assert mig_profile(40_000, "A100-40GB", margin=0.0) == "7g.40gb"
    assert mig_profile(200_000, "H100-80GB") is None


def test_every_table_is_ordered_by_capacity_within_slices() -> None:
    for gpu, profiles in MIG_PROFILES.items():
        assert mig_profile(0, gpu) == min(profiles, key=lambda p: (p[1], p[2]))[0]
        largest = max(profiles, key=lambda p: p[2])
        assert mig_profile(largest[2] * 1024, gpu, margin=0.0) == largest[0]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("a100", "A100-40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
        ("NVIDIA H100 80GB HBM3", "H100-80GB"),
        ("NVIDIA H200", "H200"),
    ],
)
def test_gpu_names_resolve(name: str, key: str) -> None:
    assert resolve_gpu(name) == key


def test_unknown_gpu_and_bad_memory_raise_user_errors() -> None:
    with pytest.raises(UnknownGpuError, match="no MIG profile table"):
        mig_profile(1000, "GeForce RTX 4090")
    assert issubclass(UnknownGpuError, InferperfError)
    with pytest.raises(InferperfError):
        mig_profile(-5, "A100-40GB")
    with pytest.raises(InferperfError):
        mig_profile(float("nan"), "A100-40GB")
