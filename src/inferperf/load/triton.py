"""Triton Inference Server as a serving backend, through PyTriton (``nvidia-pytriton``).

PyTriton pins ``numpy<2`` while inferperf's environment uses numpy 2, so this backend runs in an
environment of its own (see docs/serving.md): there ``python -m inferperf.load.triton MODEL --port 8000``
binds the same ONNX Runtime sessions as ``inferperf serve`` to Triton's dynamic batcher, and inferperf's
load generator (``inferperf load NAME --url http://127.0.0.1:8000``) drives it over the same KServe v2
protocol, so the two serving stacks are measured side by side with one client.

Nothing here imports PyTriton until :func:`serve_with_pytriton` runs; :func:`pytriton_config` is the pure
mapping of inferperf's server settings onto Triton's model configuration.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from inferperf.errors import ConfigError
from inferperf.serve.app import ServerSettings
from inferperf.serve.model import ServedModel


def pytriton_available() -> bool:
    try:
        import pytriton  # noqa: F401
    except ImportError:
        return False
    return True


def pytriton_config(settings: ServerSettings) -> dict[str, Any]:
    """inferperf's batching settings as PyTriton ``ModelConfig`` / ``DynamicBatcher`` keyword arguments."""
    return {
        "max_batch_size": int(settings.max_batch),
        "batching": settings.max_batch > 1,
        "max_queue_delay_microseconds": int(round(settings.max_delay_ms * 1000)),
    }


def serve_with_pytriton(served: ServedModel, settings: ServerSettings, *, http_port: int = 8000,
                        grpc_port: int = 8001, metrics_port: int = 8002) -> None:
    """Serve ``served`` through Triton until interrupted (blocks)."""
    try:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise ConfigError("PyTriton is not installed here; it pins numpy<2, so install it in a separate "
                          "environment: pip install nvidia-pytriton (see docs/serving.md)") from exc
    cfg = pytriton_config(settings)

    @batch
    def infer_fn(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        rows = int(next(iter(inputs.values())).shape[0])
        return served.infer(inputs, rows)

    model_config = ModelConfig(
        batching=cfg["batching"], max_batch_size=cfg["max_batch_size"],
        batcher=DynamicBatcher(max_queue_delay_microseconds=cfg["max_queue_delay_microseconds"]),
    )
    triton_config = TritonConfig(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port)
    with Triton(config=triton_config) as triton:
        triton.bind(
            model_name=served.name,
            infer_func=infer_fn,
            inputs=[Tensor(name=s.name, dtype=np.dtype(s.dtype), shape=s.row_shape) for s in served.inputs],
            outputs=[Tensor(name=s.name, dtype=np.dtype(s.dtype), shape=s.row_shape) for s in served.outputs],
            config=model_config,
        )
        triton.serve()


def main(argv: list[str] | None = None) -> None:
    """``python -m inferperf.load.triton MODEL [--port] [--max-batch] [--max-delay-ms] [--threads]``."""
    from inferperf.serve.model import load_served_model

    parser = argparse.ArgumentParser(description="Serve a model through Triton (PyTriton).")
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=1)
    parser.add_argument("--max-delay-ms", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    served = load_served_model(args.model, max_batch=args.max_batch, threads=args.threads)
    settings = ServerSettings(max_batch=served.max_batch, max_delay_ms=args.max_delay_ms)
    serve_with_pytriton(served, settings, http_port=args.port, grpc_port=args.port + 1, metrics_port=args.port + 2)


if __name__ == "__main__":
    main()
