"""Backends: feeds from input specs, ONNX Runtime sessions on tiny onnx.helper models, torch eager/compile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto, numpy_helper

from inferperf.errors import ConfigError, ModelLoadError, UnboundDimensionError
from inferperf.measure.config import ProtocolConfig, RunConfig
from inferperf.measure.protocol import run_measurement
from inferperf.runtimes import available_runtimes, backend_names, get_backend
from inferperf.runtimes.base import InputSpec, RuntimeUnavailableError, make_feeds, resolve_shapes
from inferperf.runtimes.onnxruntime import (
    DENORMAL_CONFIG_KEY,
    OrtBackend,
    _to_fp16,
    ort_providers,
    providers_from_ort,
    session_options,
)
from inferperf.runtimes.torch_backend import TorchModelSpec

VOCAB = 50
HIDDEN = 8
FAST = ProtocolConfig(min_repeats=5, min_time_s=0.0, max_time_s=1.0, warmup_runs=2, warmup_min_s=0.0, block_min_s=0.0)


def embedding_table() -> np.ndarray:
    return np.arange(VOCAB * HIDDEN, dtype=np.float32).reshape(VOCAB, HIDDEN) / 100.0


def tiny_model(path: Path) -> Path:
    """y = x + mean_seq(E[input_ids]);  n = sum(attention_mask) — float, int64 ids and a mask."""
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", HIDDEN])
    ids = oh.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = oh.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", HIDDEN])
    n = oh.make_tensor_value_info("n", TensorProto.INT64, ["batch"])
    nodes = [
        oh.make_node("Gather", ["E", "input_ids"], ["emb"], name="gather"),
        oh.make_node("ReduceMean", ["emb", "axes1"], ["pooled"], keepdims=0, name="pool"),
        oh.make_node("Add", ["x", "pooled"], ["y"], name="add"),
        oh.make_node("ReduceSum", ["attention_mask", "axes1"], ["n"], keepdims=0, name="count"),
    ]
    inits = [
        numpy_helper.from_array(embedding_table(), "E"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1"),
    ]
    graph = oh.make_graph(nodes, "tiny", [x, ids, mask], [y, n], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


# ---- input specs and feeds ------------------------------------------------------------------------

SPECS = [
    InputSpec("x", ("batch", 8), "float32"),
    InputSpec("input_ids", ("batch", "sequence"), "int64"),
    InputSpec("attention_mask", ("batch", "sequence"), "int64"),
    InputSpec("token_type_ids", (None, "sequence"), "int64"),
]


def test_shapes_bind_batch_and_named_dims() -> None:
    shapes = resolve_shapes(SPECS, 3, {"sequence": 16})
    assert shapes == {"x": (3, 8), "input_ids": (3, 16), "attention_mask": (3, 16), "token_type_ids": (3, 16)}


def test_unbound_dimension_is_a_clear_error() -> None:
    with pytest.raises(UnboundDimensionError, match="sequence"):
        resolve_shapes(SPECS, 1)


def test_fixed_batch_dimension_must_match_batch_size() -> None:
    specs = [InputSpec("x", (1, 3, 224, 224), "float32")]
    assert resolve_shapes(specs, 1) == {"x": (1, 3, 224, 224)}
    with pytest.raises(ConfigError, match="fixed batch dimension of 1"):
        resolve_shapes(specs, 8)


def test_feeds_are_seeded_typed_and_in_range() -> None:
    shapes = resolve_shapes(SPECS, 2, {"sequence": 64})
    a = make_feeds(SPECS, shapes, seed=1, metadata={"vocab_size": 30})
    b = make_feeds(SPECS, shapes, seed=1, metadata={"vocab_size": 30})
    c = make_feeds(SPECS, shapes, seed=2, metadata={"vocab_size": 30})
    for name, shape in shapes.items():
        assert a[name].shape == shape
        np.testing.assert_array_equal(a[name], b[name])
    assert a["x"].dtype == np.float32 and a["input_ids"].dtype == np.int64
    assert not np.array_equal(a["x"], c["x"])
    assert a["input_ids"].min() >= 0 and a["input_ids"].max() < 30
    assert len(np.unique(a["input_ids"])) > 10  # really random ids, not a constant
    assert (a["attention_mask"] == 1).all()
    assert (a["token_type_ids"] == 0).all()
    assert abs(float(a["x"].mean())) < 0.5 and 0.5 < float(a["x"].std()) < 1.5


def test_feed_id_ranges_default_and_per_input() -> None:
    specs = [InputSpec("input_ids", (1, 500), "int64")]
    shapes = resolve_shapes(specs, 1)
    assert make_feeds(specs, shapes, 0)["input_ids"].max() < 100
    ranged = make_feeds(specs, shapes, 0, {"input_ranges": {"input_ids": [5, 9]}})["input_ids"]
    assert ranged.min() >= 5 and ranged.max() < 9


# ---- ONNX Runtime ---------------------------------------------------------------------------------


def test_registry_is_lazy_and_knows_the_runtimes() -> None:
    assert set(backend_names()) >= {"onnxruntime", "torch", "torch-compile"}
    assert isinstance(get_backend("onnxruntime"), OrtBackend)
    assert "cpu" in available_runtimes()["onnxruntime"]
    with pytest.raises(ConfigError, match="unknown runtime"):
        get_backend("tvm")


@pytest.mark.parametrize("opt_level", ["disable", "basic", "extended", "all"])
@pytest.mark.parametrize("threads", [1, 2])
def test_ort_session_runs_with_threads_and_opt_levels(tiny: Path, opt_level: str, threads: int) -> None:
    cfg = RunConfig(intra_op_threads=threads, opt_level=opt_level, dim_values={"sequence": 6}, batch_size=2)
    sess = OrtBackend().load(str(tiny), cfg)
    try:
        specs = {s.name: s for s in sess.input_specs}
        assert specs["input_ids"].dtype == "int64" and specs["x"].shape == ("batch", HIDDEN)
        feeds = make_feeds(sess.input_specs, resolve_shapes(sess.input_specs, 2, cfg.dim_values), seed=0,
                           metadata={"vocab_size": VOCAB})  # fmt: skip
        y, n = sess.run(sess.prepare_feeds(feeds))
        bound = sess.bind(sess.prepare_feeds(feeds))
        bound()  # the timed form: io binding, outputs stay in ORT memory
        y_bound, n_bound = sess._bound[-1][0].copy_outputs_to_cpu()  # type: ignore[attr-defined]
        np.testing.assert_array_equal(y_bound, y)
        np.testing.assert_array_equal(n_bound, n)
        expected = feeds["x"] + embedding_table()[feeds["input_ids"]].mean(axis=1)
        np.testing.assert_allclose(y, expected, rtol=1e-5)
        np.testing.assert_array_equal(n, [6, 6])
        prov = sess.provenance()
        assert prov["intra_op_num_threads"] == threads
        assert prov["providers"][0] == "CPUExecutionProvider"
        assert prov["graph_optimization_level"].startswith("ORT_")
    finally:
        sess.close()


def test_session_options_carry_settings() -> None:
    cfg = RunConfig(intra_op_threads=3, inter_op_threads=2, execution_mode="parallel", opt_level="basic",
                    cpu_mem_arena=False, session_config={"session.intra_op.allow_spinning": "0"})  # fmt: skip
    so = session_options(cfg, enable_profiling=True)
    assert so.intra_op_num_threads == 3 and so.inter_op_num_threads == 2
    assert so.graph_optimization_level.name == "ORT_ENABLE_BASIC"
    assert so.execution_mode.name == "ORT_PARALLEL"
    assert so.enable_cpu_mem_arena is False and so.enable_profiling is True
    assert so.get_session_config_entry(DENORMAL_CONFIG_KEY) == "1"
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        session_options(RunConfig(flush_denormal=False)).get_session_config_entry(DENORMAL_CONFIG_KEY)


def test_optimized_model_is_written_when_asked(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "opt" / "tiny.opt.onnx"
    sess = OrtBackend().load(str(tiny), RunConfig(optimized_model_path=str(out), dim_values={"sequence": 4}))
    sess.close()
    assert out.is_file() and onnx.load(str(out)).graph.node


def test_profiling_session_writes_a_trace(tiny: Path, tmp_path: Path) -> None:
    cfg = RunConfig(dim_values={"sequence": 4})
    sess = OrtBackend().load(str(tiny), cfg, enable_profiling=True, profile_prefix=str(tmp_path / "prof"))
    feeds = make_feeds(sess.input_specs, resolve_shapes(sess.input_specs, 1, cfg.dim_values), 0, {"vocab_size": VOCAB})
    sess.run(feeds)
    trace = Path(sess.end_profiling())
    sess.close()
    assert trace.is_file() and trace.parent == tmp_path
    assert "gather" in trace.read_text()  # per-node events name the graph's nodes


def test_unloadable_model_raises_model_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        OrtBackend().load(str(bad), RunConfig())
    with pytest.raises(ModelLoadError, match="not found"):
        OrtBackend().load(str(tmp_path / "missing.onnx"), RunConfig())


def test_provider_chain_and_missing_provider_errors() -> None:
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_from_ort(gpu) == ["cpu", "cuda", "tensorrt"]
    assert [p for p, _ in ort_providers(RunConfig(), cpu_only)] == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeUnavailableError, match="CUDAExecutionProvider"):
        ort_providers(RunConfig(provider="cuda"), cpu_only)
    chain = ort_providers(RunConfig(provider="tensorrt", precision="fp16"), gpu)
    assert [p for p, _ in chain] == gpu
    assert chain[0][1]["trt_fp16_enable"] is True
    cuda = ort_providers(RunConfig(provider="cuda", provider_options={"device_id": 1}), gpu)
    assert cuda[0] == ("CUDAExecutionProvider", {"device_id": 1})


def test_silent_cpu_fallback_is_refused(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT quietly runs on CPU when CUDA libraries fail to load; that must never pass as a GPU run."""
    import onnxruntime as ort

    real = ort.InferenceSession

    def fake_session(source: Any, so: Any, providers: Any) -> Any:
        return real(source, so, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", fake_session)
    with pytest.raises(RuntimeUnavailableError, match="fell back"):
        OrtBackend().load(str(tiny), RunConfig(provider="cuda", dim_values={"sequence": 4}))


def test_fp16_conversion_keeps_fp32_io(tiny: Path) -> None:
    half = onnx.load_from_string(_to_fp16(str(tiny)))
    emb = next(i for i in half.graph.initializer if i.name == "E")
    assert emb.data_type == TensorProto.FLOAT16
    x = next(i for i in half.graph.input if i.name == "x")
    assert x.type.tensor_type.elem_type == TensorProto.FLOAT


def test_ort_measurement_end_to_end_in_process(tiny: Path) -> None:
    cfg = RunConfig(batch_size=2, dim_values={"sequence": 8})
    m = run_measurement(str(tiny), cfg, FAST, metadata={"vocab_size": VOCAB})
    assert m.status in ("ok", "unstable"), m.error
    assert m.n_samples >= 5 and m.latency_ms is not None
    assert m.latency_ms["min"] <= m.latency_ms["p50"] <= m.latency_ms["max"]
    assert m.session_create_ms and m.session_create_ms > 0 and m.first_inference_ms and m.first_inference_ms > 0
    assert m.peak_rss_mb and m.memory_mb is not None and m.memory_mb >= 0
    assert m.provenance["input_shapes"] == {"x": [2, HIDDEN], "input_ids": [2, 8], "attention_mask": [2, 8]}
    assert m.provenance["runtime"]["denormal_as_zero"] is True
    assert len(m.provenance["model_sha256"]) == 64
    assert m.cpu_util is not None and m.cpu_util > 0


def test_profile_adds_kernels_and_fusion_edges_without_touching_latency(tiny: Path) -> None:
    pytest.importorskip("inferperf.measure.kernels")
    cfg = RunConfig(batch_size=2, dim_values={"sequence": 8}, profile=True)
    m = run_measurement(str(tiny), cfg, FAST, metadata={"vocab_size": VOCAB})
    assert m.status in ("ok", "unstable"), m.error
    assert "kernels_error" not in m.provenance, m.provenance.get("kernels_error")
    assert m.kernels and all(isinstance(k, dict) for k in m.kernels)
    assert m.fusion_edges is not None
    assert m.provenance["kernels_note"].startswith("collected in a separate profiled session")
    assert "timed_call" in m.provenance["runtime"]  # the timed session itself was not a profiling one


# ---- PyTorch --------------------------------------------------------------------------------------

FACTORY = f"{__name__}:tiny_torch_factory"  # pytest may import this file as tests.test_runtimes


def tiny_torch_factory(hidden: int = 8) -> Any:
    """Factory used by name (FACTORY) — returns (module, inputs)."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, hidden)
            self.lin = torch.nn.Linear(hidden, hidden)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            h = self.emb(input_ids) * attention_mask.unsqueeze(-1)
            return self.lin(h.mean(dim=1))

    inputs = [
        {"name": "input_ids", "shape": ["batch", "sequence"], "dtype": "int64"},
        {"name": "attention_mask", "shape": ["batch", "sequence"], "dtype": "int64"},
    ]
    return Tiny(), inputs


def test_torch_model_spec_parsing(tmp_path: Path) -> None:
    spec = TorchModelSpec(FACTORY, {"hidden": 4})
    path = tmp_path / "spec.json"
    import json

    path.write_text(json.dumps(spec.to_dict()))
    assert TorchModelSpec.parse(str(path)) == spec
    assert TorchModelSpec.parse("pkg.mod:fn") == TorchModelSpec("pkg.mod:fn")
    module, inputs = spec.build()
    assert [i.name for i in inputs] == ["input_ids", "attention_mask"]
    assert module.lin.in_features == 4


def test_torch_eager_measurement_is_seeded_and_in_inference_mode() -> None:
    import torch

    spec = TorchModelSpec(FACTORY)
    cfg = RunConfig(runtime="torch", batch_size=3, dim_values={"sequence": 5}, seed=3)
    backend = get_backend("torch")
    sess = backend.load(spec, cfg)
    try:
        feeds = make_feeds(sess.input_specs, resolve_shapes(sess.input_specs, 3, cfg.dim_values), 0,
                           {"vocab_size": VOCAB})  # fmt: skip
        out = sess.bind(sess.prepare_feeds(feeds))()
        assert tuple(out.shape) == (3, 8)
        assert out.is_inference()
        assert torch.get_num_threads() == 1
        first_weights = sess._module.lin.weight.clone()  # type: ignore[attr-defined]
    finally:
        sess.close()
    again = backend.load(spec, cfg)
    try:
        assert torch.equal(again._module.lin.weight, first_weights)  # type: ignore[attr-defined]
    finally:
        again.close()
    assert not torch.is_inference_mode_enabled()

    m = run_measurement(spec, cfg, FAST, metadata={"vocab_size": VOCAB})
    assert m.status in ("ok", "unstable"), m.error
    assert m.provenance["runtime"]["torch"].startswith("2.")
    assert m.provenance["runtime"]["num_threads"] == 1


def test_torch_compile_failure_is_a_recorded_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def broken_compile(module: Any, **_: Any) -> Any:
        def call(**kwargs: Any) -> Any:
            raise RuntimeError("inductor: no working C++ compiler")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    spec = TorchModelSpec(FACTORY)
    m = run_measurement(spec, RunConfig(runtime="torch-compile", dim_values={"sequence": 4}), FAST)
    assert m.status == "failed"
    assert "no working C++ compiler" in (m.error or "")
    assert m.session_create_ms is not None  # the session was created; the first inference failed


def test_torch_cuda_absent_is_a_clear_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    m = run_measurement(
        TorchModelSpec(FACTORY),
        RunConfig(runtime="torch", provider="cuda", dim_values={"sequence": 4}),
        FAST,
    )
    assert m.status == "failed" and "cuda" in (m.error or "")


@pytest.mark.slow
def test_torch_compile_really_compiles() -> None:
    spec = TorchModelSpec(FACTORY)
    cfg = RunConfig(runtime="torch-compile", dim_values={"sequence": 4})
    m = run_measurement(spec, cfg, FAST, metadata={"vocab_size": VOCAB})
    assert m.status in ("ok", "unstable"), m.error
    assert m.provenance["runtime"]["compiled"] is True
    assert m.first_inference_ms is not None and m.latency_ms is not None
    assert m.first_inference_ms > m.latency_ms["p50"]  # compilation happens on the first call
