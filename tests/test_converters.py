"""Keras and PaddlePaddle ingestion through their converters (optional extras: skipped when absent)."""

from __future__ import annotations

import pytest

from inferperf.errors import ModelLoadError
from inferperf.ir import converters
from inferperf.ir.ingest import load_model


def test_missing_extra_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(converters, "keras_available", lambda: False)
    monkeypatch.setattr(converters, "paddle_available", lambda: False)
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"not really keras")
    with pytest.raises(ModelLoadError, match=r"inferperf\[keras\]"):
        load_model(str(keras_file))
    pd = tmp_path / "model.pdmodel"
    pd.write_bytes(b"x")
    (tmp_path / "model.pdiparams").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"inferperf\[paddle\]"):
        load_model(str(pd))


@pytest.mark.skipif(not converters.keras_available(), reason="keras extra (tensorflow + tf2onnx) not installed")
def test_keras_model_converts(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    import tensorflow as tf

    from inferperf.ir.build import build_graph

    inputs = tf.keras.Input(shape=(32,), name="features")
    outputs = tf.keras.layers.Dense(10)(tf.keras.layers.Dense(64, activation="relu")(inputs))
    path = tmp_path / "mlp.keras"
    tf.keras.Model(inputs, outputs).save(path)
    loaded = load_model(str(path), batch_size=4)
    g = build_graph(loaded.model, loaded.name)
    assert loaded.metadata["framework"] == "keras"
    assert g.macs == 4 * (32 * 64 + 64 * 10)


@pytest.mark.skipif(not converters.paddle_available(), reason="paddle extra (paddlepaddle + paddle2onnx) not installed")
def test_paddle_model_converts(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path / "home"))
    import paddle

    from inferperf.ir.build import build_graph

    net = paddle.nn.Sequential(paddle.nn.Linear(32, 64), paddle.nn.ReLU(), paddle.nn.Linear(64, 10))
    net.eval()
    prefix = str(tmp_path / "model")
    paddle.jit.save(net, prefix, input_spec=[paddle.static.InputSpec([None, 32], "float32", "features")])
    loaded = load_model(prefix + ".pdmodel", batch_size=4)
    g = build_graph(loaded.model, loaded.name)
    assert loaded.metadata["framework"] == "paddle"
    assert g.macs == 4 * (32 * 64 + 64 * 10)
