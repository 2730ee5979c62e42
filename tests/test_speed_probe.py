"""The speed probe: a fixed workload whose timing says how fast the machine is while a collection runs."""

from __future__ import annotations

import onnx
import pytest

from inferperf.measure.speed_probe import PROBE_VERSION, measure_speed_probe, probe_model_bytes, probe_reading


def test_the_probe_model_is_fixed_bytes_and_a_valid_model() -> None:
    first = probe_model_bytes()
    probe_model_bytes.cache_clear()
    assert probe_model_bytes() == first  # rebuilt from the seed: the same workload everywhere
    model = onnx.load_from_string(first)
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Relu"] * 6


def test_measure_speed_probe_reports_a_positive_ordered_spread() -> None:
    probe = measure_speed_probe(threads=1, repeats=10, warmup=2)
    assert probe["version"] == PROBE_VERSION and probe["n"] == 10 and probe["threads"] == 1
    assert 0 < probe["p10_ms"] <= probe["median_ms"] <= probe["p90_ms"]
    with pytest.raises(ValueError):
        measure_speed_probe(repeats=1)


def test_probe_reading_carries_the_age_of_the_reading() -> None:
    probe = {"version": 1, "median_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.2, "threads": 1, "at": 100.0}
    reading = probe_reading(probe, now=160.0)
    assert reading["age_s"] == 60.0 and reading["median_ms"] == 1.0 and "at" not in reading
    assert probe_reading(None) is None
