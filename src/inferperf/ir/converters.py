"""Keras and PaddlePaddle models through their ONNX converters (optional extras).

The converters pull in whole frameworks (TensorFlow, Paddle), so they are pip extras
(``pip install inferperf[keras]`` / ``inferperf[paddle]``); without them, the user gets one line saying which
extra to install rather than an ImportError traceback.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from inferperf.errors import ModelLoadError

if TYPE_CHECKING:
    from inferperf.ir.ingest import LoadedModel


def keras_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tf2onnx"))


def paddle_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("paddle", "paddle2onnx"))


def load_keras(
    path: str | Path, *, batch_size: int | None = None, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> LoadedModel:
    """Convert a Keras model (``.keras`` / ``.h5`` / SavedModel dir) with tf2onnx, then load it as ONNX."""
    if not keras_available():
        raise ModelLoadError("Keras models need the keras extra: pip install 'inferperf[keras]'")
    import tensorflow as tf
    import tf2onnx

    from inferperf.ir.ingest import load_onnx_file

    try:
        model = tf.keras.models.load_model(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a loadable Keras model ({str(exc).splitlines()[0]})") from None
    return convert_keras_model(model, tf2onnx, load_onnx_file, batch_size, input_shapes, Path(path).stem)


def convert_keras_model(model, tf2onnx, load_onnx_file, batch_size, input_shapes, name):  # noqa: ANN001, ANN201
    """Convert an in-memory Keras model; batch and other free dims are bound after conversion."""
    import tensorflow as tf

    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    out = Path(tempfile.mkdtemp(prefix="inferperf-keras-")) / f"{name}.onnx"
    try:
        tf2onnx.convert.from_keras(model, input_signature=specs, output_path=str(out))
    except Exception as exc:
        raise ModelLoadError(f"tf2onnx could not convert {name}: {str(exc).splitlines()[0]}") from None
    loaded = load_onnx_file(out, batch_size=batch_size, input_shapes=input_shapes, name=name)
    loaded.metadata.update({"framework": "keras", "converter": f"tf2onnx {tf2onnx.__version__}"})
    return loaded


def load_paddle(
    path: str | Path, *, batch_size: int | None = None, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> LoadedModel:
    """Convert a Paddle inference model (``model.pdmodel`` + ``model.pdiparams``) with paddle2onnx."""
    if not paddle_available():
        raise ModelLoadError("PaddlePaddle models need the paddle extra: pip install 'inferperf[paddle]'")
    import paddle2onnx

    from inferperf.ir.ingest import load_onnx_file

    path = Path(path)
    params = path.with_suffix(".pdiparams")
    out = Path(tempfile.mkdtemp(prefix="inferperf-paddle-")) / f"{path.stem}.onnx"
    try:
        onnx_bytes = paddle2onnx.export(str(path), str(params))
        if isinstance(onnx_bytes, bytes | bytearray):
            out.write_bytes(onnx_bytes)
        elif not out.exists():
            paddle2onnx.export(str(path), str(params), str(out))
    except Exception as exc:
        raise ModelLoadError(f"paddle2onnx could not convert {path}: {str(exc).splitlines()[0]}") from None
    loaded = load_onnx_file(out, batch_size=batch_size, input_shapes=input_shapes, name=path.stem)
    loaded.metadata.update({"framework": "paddle", "converter": f"paddle2onnx {paddle2onnx.__version__}"})
    return loaded
