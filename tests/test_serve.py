"""The KServe v2 server: endpoints, binary and JSON tensors, bad input, 413, 503, dynamic batching, metrics,
tritonclient compatibility and a schemathesis fuzz against the server's own OpenAPI document.

Servers run on 127.0.0.1 on a free port in a background thread. Models are loaded off the main thread:
ONNX Runtime's denormal flushing sets flush-to-zero in the thread that creates a session, and Hypothesis
(schemathesis) refuses to run in a thread without subnormal floats.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from inferperf.load.http_client import decode_infer_response, encode_infer_request
from inferperf.serve import (
    ServedModel,
    ServerSettings,
    TensorSpec,
    bucket_sizes,
    create_app,
    load_served_model,
    make_batch_dynamic,
    serving,
)
from inferperf.serve.app import ServerThread

T = TypeVar("T")
W = (np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
B = np.array([0.1, 0.2, 0.3], np.float32)


def _tiny_onnx(path: Path, batch: int | str = "N", concat_const: bool = False) -> Path:
    """y = x @ W + b; with ``concat_const`` the output also gets a constant row (its batch is baked in)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["y0"])]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "b")]
    out_batch: int | str = batch
    if concat_const:
        inits.append(numpy_helper.from_array(np.zeros((1, 3), np.float32), "extra"))
        nodes.append(helper.make_node("Concat", ["y0", "extra"], ["y"], axis=0))
        out_batch = batch + 1 if isinstance(batch, int) else "M"
    else:
        nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [out_batch, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _off_main_thread(fn: Callable[[], T]) -> T:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def tiny_model(tiny_dir: Path) -> ServedModel:
    path = _tiny_onnx(tiny_dir / "tiny.onnx")
    return _off_main_thread(lambda: load_served_model(str(path), max_batch=8))


@pytest.fixture(scope="module")
def server(tiny_model: ServedModel) -> Iterator[ServerThread]:
    settings = ServerSettings(max_batch=8, max_delay_ms=0.0, max_queue=64, max_body_bytes=64 * 1024)
    with serving(tiny_model, settings) as srv:
        yield srv


def _request(url: str, method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _infer_json(url: str, model: str, x: Any, **extra: Any) -> tuple[int, Any]:
    doc = {"inputs": [{"name": "x", "shape": list(np.shape(x)), "datatype": "FP32",
                       "data": np.asarray(x).ravel().tolist()}], **extra}
    status, _, body = _request(f"{url}/v2/models/{model}/infer", "POST", json.dumps(doc).encode(),
                               {"Content-Type": "application/json"})
    return status, json.loads(body)


# ------------------------------------------------------------------------------------------ endpoints


def test_health_and_metadata(server: ServerThread) -> None:
    for path, key in (("/v2/health/live", "live"), ("/v2/health/ready", "ready"), ("/v2/models/tiny/ready", "ready")):
        status, _, body = _request(server.url + path)
        assert status == 200 and json.loads(body)[key] is True
    status, _, body = _request(server.url + "/v2/models/tiny")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "tiny" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["parameters"]["batching"] == "native" and meta["parameters"]["max_batch"] == 8
    status, _, body = _request(server.url + "/v2/models/nope")
    assert status == 404 and "nope" in json.loads(body)["error"]
    status, _, body = _request(server.url + "/v2/repository/index", "POST", b"")
    assert status == 200 and json.loads(body)[0]["name"] == "tiny"


def test_json_inference_is_correct(server: ServerThread) -> None:
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    status, doc = _infer_json(server.url, "tiny", x, id="req-1")
    assert status == 200 and doc["id"] == "req-1" and doc["model_name"] == "tiny"
    out = doc["outputs"][0]
    assert out["name"] == "y" and out["shape"] == [3, 3] and out["datatype"] == "FP32"
    assert np.allclose(np.array(out["data"]).reshape(3, 3), x @ W + B, atol=1e-5)
    params = doc["parameters"]
    assert params["batch_size"] == 3 and params["server_ms"] >= params["inference_ms"] >= 0
    status, doc = _infer_json(server.url.replace("/v2", ""), "tiny/versions/1", x)
    assert status == 200


def test_binary_inference_is_correct(server: ServerThread) -> None:
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    body, headers = encode_infer_request({"x": x})
    status, resp_headers, data = _request(server.url + "/v2/models/tiny/infer", "POST", body, headers)
    assert status == 200
    hlen = int(resp_headers["inference-header-content-length"])
    outputs, params = decode_infer_response(data, hlen)
    assert np.allclose(outputs["y"], x @ W + B, atol=1e-5) and params["batch_size"] == 2


@pytest.mark.parametrize(("doc", "status", "needle"), [
    ({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}, 400, "shape"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}, 400, "FP32"),
    ({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, 400, "missing"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}, 400, "values"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}]}, 400, "FP32"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a"]}]}, 400, "BYTES"),
    ({"inputs": [{"name": "x", "shape": [9, 4], "datatype": "FP32", "data": [0] * 36}]}, 400, "maximum batch"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
      "outputs": [{"name": "nope"}]}, 400, "unknown output"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]},
     400, "binary"),
    ({"inputs": []}, 400, "inputs"),
    ([1, 2, 3], 400, "object"),
])
def test_bad_requests_get_a_4xx_with_a_message(server: ServerThread, doc: Any, status: int, needle: str) -> None:
    code, _, body = _request(server.url + "/v2/models/tiny/infer", "POST", json.dumps(doc).encode())
    assert code == status
    assert needle in json.loads(body)["error"]


def test_malformed_json_unknown_model_and_bad_headers(server: ServerThread) -> None:
    code, _, body = _request(server.url + "/v2/models/tiny/infer", "POST", b"{not json")
    assert code == 400 and "JSON" in json.loads(body)["error"]
    code, _, body = _request(server.url + "/v2/models/other/infer", "POST", b"{}")
    assert code == 404
    code, _, _ = _request(server.url + "/v2/models/tiny/versions/7/infer", "POST", b"{}")
    assert code == 404
    code, _, body = _request(server.url + "/v2/models/tiny/infer", "POST", b"{}",
                             {"Inference-Header-Content-Length": "999"})
    assert code == 400
    # the server is still up after all of it
    assert _request(server.url + "/v2/health/live")[0] == 200


def test_oversized_payload_gets_413(server: ServerThread) -> None:
    big = json.dumps({"inputs": [{"name": "x", "shape": [8, 4], "datatype": "FP32",
                                  "data": [0.0] * 32, "pad": "z" * 70_000}]}).encode()
    code, _, body = _request(server.url + "/v2/models/tiny/infer", "POST", big)
    assert code == 413 and "exceeds" in json.loads(body)["error"]
    # a chunked body declares no length: the limit is enforced while reading it
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/v2/models/tiny/infer", body=iter([b"{" + b" " * 40_000] * 2), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413
        resp.read()
    finally:
        conn.close()
    assert _request(server.url + "/v2/health/ready")[0] == 200


def test_metrics_and_openapi(server: ServerThread) -> None:
    _infer_json(server.url, "tiny", np.zeros((1, 4), np.float32))
    _request(server.url + "/v2/models/tiny/infer", "POST", b"{bad")
    status, headers, body = _request(server.url + "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'inferperf_requests_total{code="200",model="tiny"}' in text
    assert 'inferperf_requests_total{code="400",model="tiny"}' in text
    assert "inferperf_batch_size_bucket" in text and "inferperf_queue_depth" in text
    status, _, body = _request(server.url + "/openapi.json")
    spec = json.loads(body)
    infer = spec["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert {"200", "400", "404", "413", "503"} <= set(infer["responses"])
    assert "inputs" in infer["requestBody"]["content"]["application/json"]["schema"]["properties"]


# ------------------------------------------------------------------------------------------ batching and queueing


class _FakeSession:
    """Doubles its input; records batch sizes; can hold every run until released; fails on negative input."""

    def __init__(self, hold: bool = False) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.entered.set()
        self.release.wait(30)
        x = feeds["x"]
        if (x < 0).any():
            raise ValueError("negative input")
        self.sizes.append(int(x.shape[0]))
        return [x * 2]

    def close(self) -> None: ...


def _fake_model(session: _FakeSession, max_batch: int = 8) -> ServedModel:
    spec = [TensorSpec("x", "float32", (4,))]
    return ServedModel("fake", spec, [TensorSpec("y", "float32", (4,))], {0: session}, max_batch, "native")


def _post_rows(url: str, rows: np.ndarray) -> tuple[int, Any]:
    return _infer_json(url, "fake", rows)


def test_concurrent_requests_are_batched_together() -> None:
    session = _FakeSession()
    # a long max delay: the batch closes only when 8 rows are waiting, so all 8 requests share it
    with serving(_fake_model(session), ServerSettings(max_batch=8, max_delay_ms=20_000, max_queue=16)) as srv:
        xs = [np.full((1, 4), i, np.float32) for i in range(8)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda x: _post_rows(srv.url, x), xs))
        stats = json.loads(_request(srv.url + "/v2/models/fake/stats")[2])
    assert session.sizes == [8]
    for x, (status, doc) in zip(xs, results, strict=True):
        assert status == 200
        assert doc["parameters"]["batch_size"] == 8 and doc["parameters"]["batch_requests"] == 8
        assert np.allclose(np.array(doc["outputs"][0]["data"]), x.ravel() * 2)  # each gets its own rows back
    assert stats["batch_size_counts"] == {"8": 1}


def test_a_bad_request_fails_alone_not_its_batch() -> None:
    session = _FakeSession()
    with serving(_fake_model(session), ServerSettings(max_batch=2, max_delay_ms=20_000)) as srv, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        good = pool.submit(_post_rows, srv.url, np.ones((1, 4), np.float32))
        bad = pool.submit(_post_rows, srv.url, -np.ones((1, 4), np.float32))
        good_status, _ = good.result()
        bad_status, bad_doc = bad.result()
    assert good_status == 200
    assert bad_status == 400 and "negative input" in bad_doc["error"]


def test_full_queue_answers_503_and_recovers() -> None:
    session = _FakeSession(hold=True)
    with serving(_fake_model(session, 1), ServerSettings(max_batch=1, max_queue=1)) as srv, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(_post_rows, srv.url, np.ones((1, 4), np.float32))
        assert session.entered.wait(30)  # the first request is inside the model
        second = pool.submit(_post_rows, srv.url, np.ones((1, 4), np.float32))
        deadline = time.monotonic() + 30
        while json.loads(_request(srv.url + "/v2/models/fake/stats")[2])["queue_depth"] < 1:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.01)
        status, doc = _post_rows(srv.url, np.ones((1, 4), np.float32))
        assert status == 503 and "overloaded" in doc["error"]
        session.release.set()
        assert first.result()[0] == 200 and second.result()[0] == 200
        assert _post_rows(srv.url, np.ones((1, 4), np.float32))[0] == 200
        metrics = _request(srv.url + "/metrics")[2].decode()
    assert 'inferperf_requests_total{code="503",model="fake"} 1.0' in metrics


# ------------------------------------------------------------------------------------------ model loading


def test_fixed_batch_models_are_rewritten_and_verified(tiny_dir: Path) -> None:
    fixed = _tiny_onnx(tiny_dir / "fixed.onnx", batch=1)
    served = _off_main_thread(lambda: load_served_model(str(fixed), max_batch=4))
    assert served.batching == "rewritten" and served.max_batch == 4
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    assert np.allclose(served.infer({"x": x}, 3)["y"], x @ W + B, atol=1e-5)
    baked = _tiny_onnx(tiny_dir / "baked.onnx", batch=1, concat_const=True)
    refused = _off_main_thread(lambda: load_served_model(str(baked), max_batch=4))
    assert refused.batching == "fixed" and refused.max_batch == 1
    assert any("rewrite rejected" in n for n in refused.notes)


def test_make_batch_dynamic_patches_reshape_targets() -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "r",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array([1, 4], np.int64), "shape")])
    model = make_batch_dynamic(helper.make_model(graph), 1)
    assert numpy_helper.to_array(model.graph.initializer[0]).tolist() == [-1, 4]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    onnx.checker.check_model(model)


def test_bucketed_sessions_pad_and_trim() -> None:
    class Echo:
        def __init__(self, size: int) -> None:
            self.size = size
            self.seen: list[int] = []

        def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            assert feeds["x"].shape[0] == self.size
            self.seen.append(self.size)
            return [feeds["x"] + 1]

        def close(self) -> None: ...

    sessions = {s: Echo(s) for s in bucket_sizes(6)}
    assert sorted(sessions) == [1, 2, 4, 6]
    spec = [TensorSpec("x", "float32", (2,))]
    served = ServedModel("b", spec, [TensorSpec("y", "float32", (2,))], sessions, 6, "buckets")
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    out = served.infer({"x": x}, 5)["y"]
    assert out.shape == (5, 2) and np.array_equal(out, x + 1)
    assert sessions[6].seen == [6]


# ------------------------------------------------------------------------------------------ clients


def test_tritonclient_http_works_unchanged(server: ServerThread) -> None:
    httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny")
        meta = client.get_model_metadata("tiny")
        assert meta["inputs"][0]["name"] == "x"
        x = np.random.default_rng(4).standard_normal((2, 4)).astype(np.float32)
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)  # binary tensor extension
        result = client.infer("tiny", [inp])
        assert np.allclose(result.as_numpy("y"), x @ W + B, atol=1e-5)
        inp_json = httpclient.InferInput("x", list(x.shape), "FP32")
        inp_json.set_data_from_numpy(x, binary_data=False)
        out = httpclient.InferRequestedOutput("y", binary_data=False)
        result = client.infer("tiny", [inp_json], outputs=[out])
        assert np.allclose(result.as_numpy("y"), x @ W + B, atol=1e-5)
    finally:
        client.close()


def test_pytriton_backend_needs_its_own_environment() -> None:
    pytest.importorskip("pytriton", reason="nvidia-pytriton pins numpy<2 and lives in a separate environment; "
                                           "see docs/serving.md (Triton through PyTriton)")
    from inferperf.load.triton import pytriton_config

    assert pytriton_config(ServerSettings(max_batch=4, max_delay_ms=2.0))["max_batch_size"] == 4


@contextlib.contextmanager
def _subnormals_allowed() -> Iterator[None]:
    """Restore the default floating-point environment (no flush-to-zero) for Hypothesis, then put it back."""
    libm = ctypes.CDLL("libm.so.6")
    saved = ctypes.create_string_buffer(64)
    libm.fegetenv(saved)
    libm.fesetenv(ctypes.c_void_p(-1))  # FE_DFL_ENV
    try:
        yield
    finally:
        libm.fesetenv(saved)


def test_schemathesis_fuzz_finds_no_server_error(server: ServerThread) -> None:
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    tested = []
    def fuzzer(operation: Any) -> Callable[[], None]:
        is_infer = operation.path.endswith("/infer")

        @settings(max_examples=25 if is_infer else 5, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            if is_infer and case.path_parameters:
                case.path_parameters["model_name"] = "tiny"  # reach the tensor validation, not just the 404
            case.call_and_validate(checks=checks)

        return fuzz

    with _subnormals_allowed():
        for result in schema.get_all_operations():
            operation = result.ok()
            fuzzer(operation)()
            tested.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /v2/models/{model_name}/infer" in tested and len(tested) >= 10
    assert _request(server.url + "/v2/health/live")[0] == 200


def test_create_app_refuses_a_batch_the_model_cannot_run(tiny_model: ServedModel) -> None:
    from inferperf.serve import InvalidInputError

    with pytest.raises(InvalidInputError):
        create_app(tiny_model, ServerSettings(max_batch=64))
