"""The HTTP inference server (KServe v2 / Open Inference Protocol) with dynamic batching.

Importing this package is cheap: FastAPI, uvicorn and ONNX Runtime are imported only when a server is
created or a model loaded.
"""

from inferperf.serve.app import ServerSettings, ServerThread, create_app, free_port, serve_forever, serving
from inferperf.serve.batcher import BatchTiming, DynamicBatcher, InferenceFailedError, QueueFullError
from inferperf.serve.model import (
    ColdStart,
    InvalidInputError,
    ServedModel,
    TensorSpec,
    bucket_sizes,
    load_served_model,
    make_batch_dynamic,
)
from inferperf.serve.protocol import InferRequest, ProtocolError, decode_request, encode_response

__all__ = [
    "BatchTiming",
    "ColdStart",
    "DynamicBatcher",
    "InferRequest",
    "InferenceFailedError",
    "InvalidInputError",
    "ProtocolError",
    "QueueFullError",
    "ServedModel",
    "ServerSettings",
    "ServerThread",
    "TensorSpec",
    "bucket_sizes",
    "create_app",
    "decode_request",
    "encode_response",
    "free_port",
    "load_served_model",
    "make_batch_dynamic",
    "serve_forever",
    "serving",
]
