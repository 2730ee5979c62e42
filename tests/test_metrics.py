"""Predictor metrics on examples computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferperf.predict.metrics import (
    err_bound,
    interval_coverage,
    interval_relative_width,
    mape,
    regression_report,
    rmspe,
    spearman,
)

TRUE = [100.0, 200.0, 50.0, 10.0]
PRED = [110.0, 180.0, 50.0, 13.0]  # relative errors +10%, -10%, 0%, +30%


def test_mape_and_rmspe_by_hand() -> None:
    assert mape(TRUE, PRED) == pytest.approx((10 + 10 + 0 + 30) / 4)
    assert rmspe(TRUE, PRED) == pytest.approx(math.sqrt((0.01 + 0.01 + 0 + 0.09) / 4) * 100)


def test_error_bounds_count_the_boundary_as_inside() -> None:
    assert err_bound(TRUE, PRED, 0.05) == pytest.approx(0.25)
    assert err_bound(TRUE, PRED, 0.10) == pytest.approx(0.75)
    assert err_bound(TRUE, PRED, 0.15) == pytest.approx(0.75)
    assert err_bound(TRUE, PRED, 0.30) == pytest.approx(1.0)


def test_spearman_orders_and_ties() -> None:
    assert spearman(TRUE, PRED) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # tied predictions get average ranks (1.5, 1.5, 3, 4): r = 4.5 / sqrt(5 * 4.5)
    assert spearman([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(4.5 / math.sqrt(5 * 4.5))


def test_interval_coverage_and_width() -> None:
    # 1 in [0.5, 1.5]; 2 not in [2.5, 3]; 3 in [2, 3] (boundary); the NaN interval is skipped
    assert interval_coverage([1, 2, 3, 4], [0.5, 2.5, 2, np.nan], [1.5, 3, 3, 5]) == pytest.approx(2 / 3)
    assert interval_relative_width([1, 2], [0.5, 1], [1.5, 4]) == pytest.approx((1.0 + 1.5) / 2)


def test_missing_and_non_positive_labels_are_dropped_not_zero() -> None:
    assert mape([100.0, np.nan, 0.0, -1.0], [110.0, 5.0, 5.0, 5.0]) == pytest.approx(10.0)
    report = regression_report([100.0, np.nan], [90.0, 1.0])
    assert report["n"] == 1
    assert report["mape"] == pytest.approx(10.0)
    assert math.isnan(report["coverage"])  # no interval given: not a fake 0


def test_empty_inputs_give_nan() -> None:
    assert math.isnan(mape([], []))
    assert math.isnan(rmspe([np.nan], [1.0]))
    assert math.isnan(spearman([1.0], [1.0]))
    assert math.isnan(interval_coverage([1.0], [np.nan], [np.nan]))


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        mape([1.0, 2.0], [1.0])
