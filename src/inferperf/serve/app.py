"""The HTTP inference server: KServe v2 / Open Inference Protocol over FastAPI + uvicorn.

Endpoints (what ``curl`` and ``tritonclient.http`` use unchanged):

- ``GET /v2`` server metadata, ``GET /v2/health/live``, ``GET /v2/health/ready``
- ``GET /v2/models/{name}[/versions/{v}]`` model metadata, ``.../ready`` readiness
- ``POST /v2/models/{name}[/versions/{v}]/infer`` inference (JSON or binary tensors)
- ``GET /v2/models/{name}/stats`` batching statistics, ``POST /v2/repository/index`` the model list
- ``GET /metrics`` Prometheus metrics, ``GET /openapi.json`` the OpenAPI document

Why FastAPI with hand-written handlers: routes take the raw ``Request`` and return ``Response`` objects, so
no pydantic model parses or re-serialises a tensor (FastAPI's body validation costs more than the
inference of a small model); FastAPI still provides routing, error handling and the OpenAPI document,
whose request and response schemas are written out below so that schemathesis can fuzz the server
against them. uvicorn runs with uvloop and httptools when they are installed
(``benchmarks/serving_overhead.py`` measures the stack).

Failure modes all answer with ``{"error": message}``: 400 for malformed or mismatched tensors, 404 for an
unknown model, 413 for a body over ``max_body_bytes`` (checked from Content-Length before reading, and
while streaming a chunked body), 503 when the batcher's queue is full.
"""

# no ``from __future__ import annotations`` here: FastAPI resolves handler annotations (``Request``) at
# route definition, and they are imported inside create_app to keep FastAPI off the import path
import contextlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from inferperf.serve.batcher import DynamicBatcher, InferenceFailedError, QueueFullError
from inferperf.serve.model import InvalidInputError, ServedModel
from inferperf.serve.protocol import HEADER_LENGTH, ProtocolError, decode_request, encode_response

SERVER_NAME = "inferperf"
DEFAULT_MAX_BODY = 64 * 1024 * 1024


@dataclass
class ServerSettings:
    """How the server batches and protects itself."""

    max_batch: int = 1
    max_delay_ms: float = 0.0
    max_queue: int = 64
    max_body_bytes: int = DEFAULT_MAX_BODY

    def to_dict(self) -> dict[str, Any]:
        return {"max_batch": self.max_batch, "max_delay_ms": self.max_delay_ms, "max_queue": self.max_queue,
                "max_body_bytes": self.max_body_bytes}


# ------------------------------------------------------------------------------------------ OpenAPI

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_TENSOR_META = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                   "shape": {"type": "array", "items": {"type": "integer"}}},
}
_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
              "FP64", "BYTES"]
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": _DATATYPES},
                    "parameters": {"type": "object"},
                    "data": {"type": "array"},
                },
            },
        },
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                "properties": {"name": {"type": "string"},
                                                               "parameters": {"type": "object"}}}},
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "datatype", "shape"],
            "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                           "shape": {"type": "array", "items": {"type": "integer"}},
                           "parameters": {"type": "object"}, "data": {"type": "array"}}}},
    },
}
_MODEL_META = {
    "type": "object",
    "required": ["name", "platform", "inputs", "outputs"],
    "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                   "platform": {"type": "string"}, "inputs": {"type": "array", "items": _TENSOR_META},
                   "outputs": {"type": "array", "items": _TENSOR_META}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_E400 = {400: _json(_ERROR, "Malformed request or tensors that do not match the model")}
_E404 = {404: _json(_ERROR, "Unknown model or version")}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Inference result (JSON, or a JSON header followed by binary tensors)",
          "content": {"application/json": {"schema": _INFER_RESPONSE},
                      "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    **_E400,
    **_E404,
    413: _json(_ERROR, "Request body larger than the server accepts"),
    503: _json(_ERROR, "The batching queue is full; retry later"),
}
_INFER_EXTRA = {"requestBody": {"required": True, "content": {"application/json": {"schema": _INFER_REQUEST}}}}


# ------------------------------------------------------------------------------------------ metrics


class _Metrics:
    """Prometheus metrics in a registry of this app's own (several servers can live in one process)."""

    def __init__(self, model: str, batcher: DynamicBatcher) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        lat_buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
        self._requests = Counter("inferperf_requests", "Inference requests by HTTP status", ["model", "code"],
                                 registry=self.registry)
        self.request_seconds = Histogram("inferperf_request_duration_seconds", "Server time per inference request",
                                         ["model"], buckets=lat_buckets, registry=self.registry).labels(model)
        self.queue_seconds = Histogram("inferperf_queue_duration_seconds", "Time a request waited for its batch",
                                       ["model"], buckets=lat_buckets, registry=self.registry).labels(model)
        self.inference_seconds = Histogram("inferperf_inference_duration_seconds", "Time of one batched inference",
                                           ["model"], buckets=lat_buckets, registry=self.registry).labels(model)
        self.batch_size = Histogram("inferperf_batch_size", "Rows per executed batch", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry).labels(model)
        depth = Gauge("inferperf_queue_depth", "Requests waiting for a batch", ["model"], registry=self.registry)
        depth.labels(model).set_function(lambda: batcher.depth)
        self.model = model
        self._by_code: dict[int, Any] = {}
        self.batch_counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def count(self, status: int) -> None:
        child = self._by_code.get(status)
        if child is None:
            child = self._by_code[status] = self._requests.labels(self.model, str(status))
        child.inc()

    def on_batch(self, rows: int, requests: int, inference_ms: float) -> None:
        """Called from the model thread after every executed batch."""
        self.inference_seconds.observe(inference_ms / 1e3)
        self.batch_size.observe(rows)
        with self._lock:
            self.batch_counts[rows] = self.batch_counts.get(rows, 0) + 1

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# ------------------------------------------------------------------------------------------ the service

_JSON = "application/json"
Reply = tuple[int, str, bytes, dict[str, str]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return status, _JSON, json.dumps({"error": message}).encode(), headers or {}


class InferenceService:
    """Everything behind ``/v2/models/{name}/infer``, independent of the web framework.

    The ASGI fast path and the FastAPI routes both call :meth:`infer`, so the two can never disagree.
    """

    def __init__(self, served: ServedModel, settings: ServerSettings) -> None:
        if settings.max_batch > served.max_batch:
            raise InvalidInputError(f"max_batch {settings.max_batch} exceeds what the model was loaded for "
                                    f"({served.max_batch})")
        self.served = served
        self.settings = settings
        self.batcher = DynamicBatcher(served.infer, max_batch=settings.max_batch,
                                      max_delay_ms=settings.max_delay_ms, max_queue=settings.max_queue)
        self.metrics = _Metrics(served.name, self.batcher)
        self.batcher.on_batch = self.metrics.on_batch
        self.ready = False
        self._outputs = {s.name for s in served.outputs}

    def check_model(self, model_name: str, version: str | None) -> Reply | None:
        if model_name != self.served.name:
            return _error(404, f"unknown model {model_name!r}; this server serves {self.served.name!r}")
        if version is not None and version != "1":
            return _error(404, f"model {model_name!r} has no version {version!r} (versions: ['1'])")
        return None

    def too_large(self, declared: str | None) -> Reply | None:
        """The 413 (or 400) answer for a declared Content-Length, before any byte of the body is read."""
        if declared is None:
            return None
        try:
            size = int(declared)
        except ValueError:
            return _error(400, "invalid Content-Length")
        if size > self.settings.max_body_bytes:
            return _error(413, f"the body of {size} bytes exceeds the limit of {self.settings.max_body_bytes}")
        return None

    async def infer(self, model_name: str, version: str | None, header_length: str | None, body: bytes,
                    t0: int) -> Reply:
        reply = await self._infer(model_name, version, header_length, body, t0)
        self.metrics.count(reply[0])
        return reply

    async def _infer(self, model_name: str, version: str | None, header_length: str | None, body: bytes,
                     t0: int) -> Reply:
        bad = self.check_model(model_name, version)
        if bad is not None:
            return bad
        try:
            hlen = int(header_length) if header_length is not None else None
        except ValueError:
            return _error(400, f"invalid {HEADER_LENGTH} header {header_length!r}")
        try:
            req = decode_request(body, hlen)
            rows = self.served.validate(req.inputs)
        except ProtocolError as exc:
            return _error(exc.status, exc.message)
        except InvalidInputError as exc:
            return _error(400, str(exc))
        if req.outputs is not None:
            unknown = [n for n in req.outputs if n not in self._outputs]
            if unknown:
                return _error(400, f"unknown output(s) {unknown}; the model produces {sorted(self._outputs)}")
        if rows > self.settings.max_batch:
            return _error(400, f"batch of {rows} rows exceeds the server's max batch {self.settings.max_batch}")
        try:
            outputs, timing = await self.batcher.submit(req.inputs, rows)
        except QueueFullError as exc:
            return _error(503, f"server overloaded: {exc}", {"retry-after": "1"})
        except InferenceFailedError as exc:
            return _error(400, f"the model rejected this input: {exc}")
        params = timing.parameters()
        t1 = time.perf_counter_ns()
        params["server_ms"] = round((t1 - t0) / 1e6, 4)
        self.metrics.request_seconds.observe((t1 - t0) / 1e9)
        self.metrics.queue_seconds.observe(timing.queue_ms / 1e3)
        try:
            payload, json_len = encode_response(self.served.name, outputs, req, params)
        except ProtocolError as exc:
            return _error(exc.status, exc.message)
        if json_len is None:
            return 200, _JSON, payload, {}
        return 200, "application/octet-stream", payload, {HEADER_LENGTH: str(json_len)}


_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class _FastInferPath:
    """A plain ASGI layer that answers ``POST .../infer`` itself and hands everything else to FastAPI.

    FastAPI's routing and request objects cost ~0.2 ms of CPU per request here, more than a small model's
    inference; this path reads the body (with the size limit), calls the service and writes the reply.
    """

    def __init__(self, app: Any, service: InferenceService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        m = _INFER_PATH.match(scope["path"])
        if m is None:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter_ns()
        service = self.service
        declared = header_length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value.decode("latin-1")
            elif key == b"inference-header-content-length":
                header_length = value.decode("latin-1")
        reply = service.too_large(declared)
        if reply is None:
            limit = service.settings.max_body_bytes
            chunks: list[bytes] = []
            total = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > limit:
                    reply = _error(413, f"the body exceeds the limit of {limit} bytes")
                    break
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            if reply is None:
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                reply = await service.infer(urllib.parse.unquote(m.group(1)),
                                            urllib.parse.unquote(m.group(2)) if m.group(2) else None,
                                            header_length, body, t0)
            else:
                service.metrics.count(413)
        else:
            service.metrics.count(reply[0])
        status, content_type, payload, extra = reply
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


# ------------------------------------------------------------------------------------------ the app


def create_app(served: ServedModel, settings: ServerSettings | None = None) -> Any:
    """The ASGI application: the inference fast path in front of a FastAPI app with every other route.

    The returned object has ``.service`` (batcher, metrics) and ``.fastapi`` (for the OpenAPI document).
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    settings = settings or ServerSettings(max_batch=served.max_batch)
    service = InferenceService(served, settings)
    batcher, metrics = service.batcher, service.metrics

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        batcher.start()
        service.ready = True
        try:
            yield
        finally:
            service.ready = False
            await batcher.stop()

    app = FastAPI(title="inferperf inference server", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="KServe v2 / Open Inference Protocol server with dynamic batching.")

    def error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def reply(r: Reply | None) -> Response | None:
        if r is None:
            return None
        status, content_type, payload, extra = r
        return Response(payload, status_code=status, media_type=content_type, headers=extra)

    # KServe parameters are scalars: only the ones that are known, never None
    parameters = {"batching": served.batching, "max_batch": settings.max_batch, "max_delay_ms": settings.max_delay_ms,
                  "max_queue": settings.max_queue, "threads": served.threads,
                  "cold_start_ms": round(served.cold_start.total_ms, 3), "model_path": served.model_path,
                  "vocab_size": served.metadata.get("vocab_size"), "family": served.metadata.get("family")}
    parameters = {k: v for k, v in parameters.items() if v is not None}

    def model_metadata() -> dict[str, Any]:
        return {"name": served.name, "versions": ["1"], "platform": "onnxruntime_onnx",
                "inputs": [s.metadata() for s in served.inputs], "outputs": [s.metadata() for s in served.outputs],
                "parameters": parameters}

    @app.exception_handler(Exception)
    async def _unhandled(_request: Request, exc: Exception) -> Response:  # the server must never crash
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/v2", responses={200: _json({"type": "object"}, "Server metadata")})
    async def server_metadata() -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": "1", "extensions": ["binary_tensor_data", "statistics",
                                                                                 "model_repository"]})

    @app.get("/v2/health/live", responses={200: _json({"type": "object"}, "The server process is up")})
    async def live() -> Response:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready", responses={200: _json({"type": "object"}, "Ready for inference"),
                                            503: _json({"type": "object"}, "Not ready")})
    async def ready() -> Response:
        return JSONResponse({"ready": service.ready}, status_code=200 if service.ready else 503)

    @app.get("/v2/models/{model_name}", responses={200: _json(_MODEL_META, "Model metadata"), **_E404})
    async def metadata(model_name: str) -> Response:
        return reply(service.check_model(model_name, None)) or JSONResponse(model_metadata())

    @app.get("/v2/models/{model_name}/versions/{version}",
             responses={200: _json(_MODEL_META, "Model metadata"), **_E404})
    async def metadata_version(model_name: str, version: str) -> Response:
        return reply(service.check_model(model_name, version)) or JSONResponse(model_metadata())

    ready_responses: dict[int | str, dict[str, Any]] = {200: _json({"type": "object"}, "Model ready"), **_E404}

    @app.get("/v2/models/{model_name}/ready", responses=ready_responses)
    async def model_ready(model_name: str) -> Response:
        return reply(service.check_model(model_name, None)) or JSONResponse({"name": served.name,
                                                                             "ready": service.ready})

    @app.get("/v2/models/{model_name}/versions/{version}/ready", responses=ready_responses)
    async def model_ready_version(model_name: str, version: str) -> Response:
        return reply(service.check_model(model_name, version)) or JSONResponse({"name": served.name,
                                                                                "ready": service.ready})

    @app.get("/v2/models/{model_name}/stats", responses={200: _json({"type": "object"}, "Batching statistics"),
                                                         **_E404})
    async def stats(model_name: str) -> Response:
        bad = reply(service.check_model(model_name, None))
        if bad is not None:
            return bad
        return JSONResponse({"name": served.name, "batches": batcher.batches_run, "rejected": batcher.rejected,
                             "queue_depth": batcher.depth,
                             "batch_size_counts": {str(k): v for k, v in sorted(metrics.batch_counts.items())},
                             "batching": served.batching})

    @app.post("/v2/repository/index", responses={200: _json({"type": "array"}, "Models on this server")})
    async def repository_index() -> Response:
        return JSONResponse([{"name": served.name, "version": "1", "state": "READY" if service.ready else "LOADING"}])

    @app.get("/metrics", responses={200: {"description": "Prometheus metrics",
                                          "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def infer_route(model_name: str, version: str | None, request: Request) -> Response:
        # reached only when the fast path is bypassed (e.g. FastAPI's TestClient on app.fastapi)
        t0 = time.perf_counter_ns()
        r = service.too_large(request.headers.get("content-length"))
        if r is None:
            body = await request.body()
            r = await service.infer(model_name, version, request.headers.get(HEADER_LENGTH), body, t0)
        return reply(r)  # type: ignore[return-value]

    @app.post("/v2/models/{model_name}/infer", responses=_INFER_RESPONSES, openapi_extra=_INFER_EXTRA)
    async def infer(model_name: str, request: Request) -> Response:
        return await infer_route(model_name, None, request)

    @app.post("/v2/models/{model_name}/versions/{version}/infer", responses=_INFER_RESPONSES,
              openapi_extra=_INFER_EXTRA)
    async def infer_version(model_name: str, version: str, request: Request) -> Response:
        return await infer_route(model_name, version, request)

    asgi = _FastInferPath(app, service)
    asgi.fastapi = app  # type: ignore[attr-defined]
    asgi.state = app.state  # type: ignore[attr-defined]
    app.state.service = service
    return asgi


# ------------------------------------------------------------------------------------------ running


def uvicorn_config(app: Any, host: str, port: int, **kwargs: Any) -> Any:
    """uvicorn settings: uvloop + httptools when installed, no access log (it costs ~15% throughput)."""
    import importlib.util

    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return uvicorn.Config(app, host=host, port=port, loop=loop, http=http, access_log=False,
                          log_level=kwargs.pop("log_level", "warning"), timeout_keep_alive=30,
                          lifespan="on", **kwargs)


def serve_forever(served: ServedModel, settings: ServerSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the server in the foreground until interrupted (the ``inferperf serve`` command)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(create_app(served, settings), host, port, log_level="info")).run()


class ServerThread:
    """A server on a background thread of this process: for tests and in-process benchmarks.

    ``with ServerThread(app) as srv: srv.url`` starts it on a free port of 127.0.0.1 and stops it on exit.
    A server sharing the process with its client shares the GIL too, so throughput figures come from a
    server in its own process (``inferperf serve``); this is for behaviour, not speed.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 30.0) -> None:
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerThread":
        import uvicorn

        self._server = uvicorn.Server(uvicorn_config(self.app, self.host, self.port))
        self._server.install_signal_handlers = lambda: None  # not the main thread
        self._thread = threading.Thread(target=self._server.run, name="inferperf-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited during start-up")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server did not start within {self.start_timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(served: ServedModel, settings: ServerSettings | None = None) -> Iterator[ServerThread]:
    """``with serving(model, settings) as srv:`` — a ServerThread around :func:`create_app`."""
    with ServerThread(create_app(served, settings)) as srv:
        yield srv
