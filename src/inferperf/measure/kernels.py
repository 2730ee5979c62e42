"""Per-kernel profile of ONNX Runtime, with fusion labels on the original graph.

:func:`profile_onnx` runs a dedicated profiling session (ORT's profiler adds per-node overhead, so the clean
latency measurement lives elsewhere), saves the optimized graph next to the trace, and hands both to
:func:`~inferperf.measure.fusion.map_fusion`. The trace parsing is in :mod:`inferperf.measure.ort_trace`,
the graph mapping and kernel labels in :mod:`inferperf.measure.fusion`; this module re-exports them so
callers import one place.

Usage::

    prof = profile_onnx("model.onnx", runs=20, warmup=5)
    prof.kernels[0].kernel_type, prof.kernels[0].duration_ms, prof.kernels[0].covered_nodes
    [e for e in prof.fusion_edges if e["fused"]]
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from inferperf.errors import ConfigError, InferperfError, ModelLoadError, UnboundDimensionError
from inferperf.measure.fusion import (
    REASON_CONSTANT_FOLDED,
    REASON_ELIMINATED,
    REASON_UNEXPLAINED,
    KernelProfile,
    KernelRecord,
    ensure_unique_node_names,
    kernel_type_label,
    map_fusion,
)
from inferperf.measure.ort_trace import NodeEvent, TraceRun, parse_ort_trace

__all__ = [
    "KernelProfile",
    "KernelRecord",
    "NodeEvent",
    "TraceRun",
    "REASON_CONSTANT_FOLDED",
    "REASON_ELIMINATED",
    "REASON_UNEXPLAINED",
    "OPT_LEVELS",
    "apply_attention_fusion",
    "kernel_type_label",
    "make_feeds",
    "map_fusion",
    "parse_ort_trace",
    "profile_onnx",
]

#: ``opt_level`` names -> ``onnxruntime.GraphOptimizationLevel`` member names
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}

#: protobuf cannot serialize a message over 2 GiB; stay clearly below it
_PROTO_LIMIT = 1_800_000_000

_NUMPY_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


@contextlib.contextmanager
def _workdir(workdir: str | os.PathLike[str] | None) -> Iterator[Path]:
    """The caller's folder (kept) or a temporary one (removed with everything ORT wrote into it)."""
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="inferperf-kernels-") as tmp:
        yield Path(tmp)


def _has_unloaded_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data for t in model.graph.initializer)


def _save_model(model: onnx.ModelProto, path: Path) -> None:
    try:
        small = model.ByteSize() < _PROTO_LIMIT
    except Exception:  # protobuf refuses to even size some >2 GiB messages
        small = False
    if small:
        onnx.save(model, str(path))
    else:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")


def _prepare_model(model: str | os.PathLike[str] | onnx.ModelProto, workdir: Path) -> tuple[onnx.ModelProto, Path]:
    """(original graph for mapping, file ORT loads). Weights are only loaded when the file must be rewritten.

    A path is used as is (external data files resolve next to it); only when its node names are blank or
    duplicated — ORT keys profile events by node name — is a renamed copy written into ``workdir``.
    """
    if isinstance(model, onnx.ModelProto):
        if _has_unloaded_external_data(model):
            raise ModelLoadError(
                "the ModelProto references external data that is not loaded; pass the model's file path instead"
            )
        original, _ = ensure_unique_node_names(model)
        target = workdir / "model.onnx"
        _save_model(original, target)
        return original, target
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"ONNX model file not found: {path}")
    try:
        structure = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot read ONNX model {path}: {exc}") from exc
    original, renamed = ensure_unique_node_names(structure)
    if not renamed:
        return original, path
    full = onnx.load(str(path))  # resolves external data relative to the file
    full, _ = ensure_unique_node_names(full)
    target = workdir / "model.onnx"
    _save_model(full, target)
    return original, target


def apply_attention_fusion(source: Path, target: Path) -> dict[str, int]:
    """Rewrite ``source`` with onnxscript's ORT fusions (Attention, SkipLayerNorm, BiasGelu, ...) to ``target``.

    Returns onnxscript's count per fusion. ``optimize_for_ort`` (onnxscript 0.7.2) rewrites the ``ir.Model``
    in place and returns ``(model, counts)``. Outputs of replaced patterns keep their original names (that is
    what lets the mapping find them). Two repairs keep that sound:

    - a replacement output whose static shape differs from the original value of that name, with the same
      element count, gets a Reshape back to the original shape. onnxscript 0.7.2 fuses GPT-2's attention
      (exported with 2-D ``addmm`` views) into a MultiHeadAttention whose 3-D output feeds a Gemm that
      needs 2-D, and ORT refuses the model without this;
    - new nodes or values whose names would otherwise point at a different original are renamed.
    """
    try:
        import onnx_ir as ir
        from onnxscript.rewriter.ort_fusions import optimize_for_ort
    except ImportError as exc:  # pragma: no cover - onnxscript is a pinned dependency
        raise InferperfError(f"attention fusion needs onnxscript: {exc}") from exc

    model = ir.load(str(source))
    with _quiet_logger("onnxscript"):  # constant folding logs expected evaluation failures as warnings
        counts, repairs = _fuse_in_place(ir, optimize_for_ort, model)
    ir.save(model, str(target), external_data=target.name + ".data")
    out = {k: int(v) for k, v in counts.items()}
    out["inferperf_shape_repairs"] = repairs
    return out


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fuse_in_place(ir: Any, optimize_for_ort: Any, model: Any) -> tuple[dict[str, int], int]:
    """Run the fusions on ``model`` and repair names/shapes (see :func:`apply_attention_fusion`)."""
    old_nodes = {id(n): n for n in model.graph}  # holding references keeps the ids unique
    old_node_names = {n.name for n in model.graph}
    old_values: dict[str, Any] = {}
    for n in model.graph:
        for v in n.outputs:
            old_values[v.name] = v
    live_ids = {id(v) for v in old_values.values()}
    fused, counts = optimize_for_ort(model)
    if fused is not model:  # 0.7.2 rewrites in place; a future copy would be lost by the caller
        raise InferperfError("onnxscript optimize_for_ort returned a new model; attention fusion needs updating")
    surviving = {v.name for n in model.graph for v in n.outputs if id(v) in live_ids}
    repairs = 0
    for i, n in enumerate(list(model.graph)):
        if id(n) not in old_nodes and n.name in old_node_names:
            n.name = f"{n.name}__ortfusion{i}"
        for v in list(n.outputs):
            if id(v) in live_ids or v.name not in old_values:
                continue
            old = old_values[v.name]
            if v.name in surviving:
                v.name = f"{v.name}__ortfusion{i}"
                continue
            old_dims, new_dims = _static_dims(old.shape), _produced_dims(n, v)
            if old_dims is None or new_dims is None or old_dims == new_dims:
                continue
            if math.prod(old_dims) == math.prod(new_dims) and old.dtype == v.dtype:
                _reshape_back(ir, model.graph, n, v, old_dims)
                repairs += 1
            else:
                v.name = f"{v.name}__ortfusion{i}"
    del old_nodes
    return dict(counts), repairs


#: contrib attention ops whose first output is (batch, sequence, hidden) whatever the replaced pattern produced
_ATTENTION_OPS = frozenset(
    {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention", "PackedMultiHeadAttention"}
)


def _static_dims(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    dims = tuple(shape)
    return dims if all(isinstance(d, int) for d in dims) else None


def _produced_dims(node: Any, value: Any) -> tuple[int, ...] | None:
    """The shape ``node`` really gives ``value``; onnxscript copies the replaced value's shape onto it.

    For attention ops the output is ``(batch, seq, hidden)`` from a 3-D query, which is what the copied
    shape can get wrong; other ops are trusted.
    """
    if node.op_type in _ATTENTION_OPS and node.outputs and node.outputs[0] is value and node.inputs:
        query = node.inputs[0]
        q = _static_dims(query.shape) if query is not None else None
        copied = _static_dims(value.shape)
        if q is not None and len(q) == 3 and copied is not None:
            total = math.prod(copied)
            if q[0] * q[1] and total % (q[0] * q[1]) == 0:
                return (q[0], q[1], total // (q[0] * q[1]))
        return None
    return _static_dims(value.shape)


def _reshape_back(ir: Any, graph: Any, producer: Any, value: Any, dims: tuple[int, ...]) -> None:
    """Give ``value``'s consumers a Reshape of it to ``dims`` under ``value``'s name (see the caller)."""
    name = value.name
    uses = list(value.uses())
    outputs = list(graph.outputs)
    value.name = f"{name}__ortfusion_pre"
    real = _produced_dims(producer, value)
    value.shape = ir.Shape(list(real)) if real is not None else None
    shape_value = ir.Value(
        name=f"{name}__ortfusion_shape",
        shape=ir.Shape([len(dims)]),
        type=ir.TensorType(ir.DataType.INT64),
        const_value=ir.tensor(np.array(dims, dtype=np.int64), name=f"{name}__ortfusion_shape"),
    )
    graph.register_initializer(shape_value)
    out = ir.Value(name=name, shape=ir.Shape(list(dims)), type=value.type)
    reshape = ir.Node("", "Reshape", [value, shape_value], outputs=[out], name=f"{name}__ortfusion_reshape")
    graph.insert_after(producer, reshape)
    for use in uses:
        use.node.replace_input_with(use.idx, out)
    for j, o in enumerate(outputs):
        if o is value:
            graph.outputs[j] = out


def make_feeds(inputs: list[Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds for ORT session inputs: float ~ N(0, 1), integers in [0, 100), bools fair; seeded."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for arg in inputs:
        dims: list[int] = []
        for j, d in enumerate(arg.shape):
            if not isinstance(d, int) or d < 0:
                raise UnboundDimensionError(
                    arg.name, str(d if d is not None else f"dim{j}"), "pass feeds=... with concrete arrays"
                )
            dims.append(d)
        dtype = _NUMPY_DTYPES.get(arg.type)
        if dtype is None:
            raise InferperfError(f"input '{arg.name}' has type {arg.type}; pass feeds=... for it")
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(dims).astype(dtype)
        elif dtype is np.bool_:
            feeds[arg.name] = rng.random(dims) < 0.5
        else:
            feeds[arg.name] = rng.integers(0, 100, size=dims).astype(dtype)
    return feeds


def profile_onnx(
    model: str | os.PathLike[str] | onnx.ModelProto,
    *,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    opt_level: str = "all",
    runs: int = 20,
    warmup: int = 5,
    attention_fusion: bool = False,
    feeds: Mapping[str, np.ndarray] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> KernelProfile:
    """Profile every executed kernel of ``model`` on ORT's CPU EP and map them onto the original graph.

    The first ``warmup`` runs are profiled too (ORT cannot start its profiler late) but dropped. With
    ``attention_fusion`` the original model is first rewritten by onnxscript's ``optimize_for_ort``; the
    mapping still refers to the nodes of the model as given. Files (optimized graph, trace) go to
    ``workdir`` when given, else to a temporary folder that is removed.
    """
    import onnxruntime as ort

    if opt_level not in OPT_LEVELS:
        raise ConfigError(f"opt_level must be one of {sorted(OPT_LEVELS)}, not {opt_level!r}")
    if runs < 1 or warmup < 0:
        raise ConfigError("runs must be >= 1 and warmup >= 0")
    if intra_op_threads < 0 or inter_op_threads < 0:
        raise ConfigError("thread counts must be >= 0 (0 lets ORT choose)")

    with _workdir(workdir) as wd:
        original, session_path = _prepare_model(model, wd)
        fusion_counts: dict[str, int] | None = None
        if attention_fusion:
            fused_path = wd / "fused.onnx"
            fusion_counts = apply_attention_fusion(session_path, fused_path)
            session_path = fused_path

        optimized_path = wd / "optimized.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt_level])
        so.intra_op_num_threads = intra_op_threads
        so.inter_op_num_threads = inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.enable_profiling = True
        so.profile_file_prefix = str(wd / "ort_profile")
        so.optimized_model_filepath = str(optimized_path)
        # Weights of the saved graph go to a side file: the mapping needs only the structure.
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", optimized_path.name + ".data"
        )
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        so.log_severity_level = 3  # the NCHWc "hardware specific" warning on save is expected
        try:
            sess = ort.InferenceSession(str(session_path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"ONNX Runtime cannot load the model: {exc}") from exc
        run_feeds = dict(feeds) if feeds is not None else make_feeds(sess.get_inputs(), seed)
        missing = [i.name for i in sess.get_inputs() if i.name not in run_feeds]
        if missing:
            raise InferperfError(f"feeds lack model input(s): {', '.join(missing)}")
        try:
            for _ in range(warmup + runs):
                sess.run(None, run_feeds)
        except Exception as exc:  # wrong dtype/shape in the caller's feeds, or a kernel failing on them
            raise InferperfError(f"ONNX Runtime failed to run the model: {exc}") from exc
        finally:
            trace_path = sess.end_profiling()
        del sess
        trace_runs = parse_ort_trace(trace_path)
        if len(trace_runs) != warmup + runs:
            raise InferperfError(
                f"ORT profile holds {len(trace_runs)} runs, expected {warmup + runs} (warm-up + measured)"
            )
        optimized = onnx.load(str(optimized_path), load_external_data=False)
        profile = map_fusion(original, optimized, trace_runs, warmup=warmup)

    profile.settings.update(
        {
            "runtime": "onnxruntime",
            "onnxruntime_version": ort.__version__,
            "provider": "CPUExecutionProvider",
            "opt_level": opt_level,
            "intra_op_threads": intra_op_threads,
            "inter_op_threads": inter_op_threads,
            "execution_mode": "sequential",
            "attention_fusion": attention_fusion,
            "attention_fusion_counts": fusion_counts,
            "runs": runs,
            "warmup": warmup,
            "seed": seed,
            "feeds": "given" if feeds is not None else "random",
        }
    )
    return profile
