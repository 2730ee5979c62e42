"""A model ready to serve batches of varying size: the ONNX Runtime session(s) behind the server and the
in-process system under test.

Dynamic batching needs a model that runs at whatever batch the batcher assembled. inferperf's exports and
bound ONNX files have a *fixed* batch dimension (every later stage needs concrete shapes), so a model is
made batchable in this order, and ``batching`` says which one was used:

1. ``native``: an ``.onnx`` file whose inputs already have a symbolic first dimension runs as is.
2. ``rewritten``: a fixed-batch graph is rewritten for a symbolic batch — the first dimension of every
   graph input and output becomes ``batch``, ``Reshape`` targets that hard-code the exported batch get
   ``-1`` there, stale ``value_info`` is dropped — and the rewrite is **verified**: at two batch sizes the
   batched outputs must equal the row-by-row outputs (rtol 1e-3). ResNet-style CNNs pass; graphs that bake
   the batch into other ops (attention reshapes of the dynamo-exported BERT) fail verification and are
   never served rewritten.
3. ``buckets``: one session per batch size in {1, 2, 4, …, max_batch} (named architectures are re-exported
   at each size); a batch is zero-padded up to the next bucket and the padding rows are dropped from the
   outputs. Costs memory (one set of weights per bucket) and padded compute.
4. ``fixed``: an ``.onnx`` file with a fixed batch that cannot be rewritten is served at that batch only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.errors import ConfigError, InferperfError

#: numpy dtype name → KServe v2 / Triton datatype
NUMPY_TO_V2 = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
V2_TO_NUMPY = {v: k for k, v in NUMPY_TO_V2.items()}

BATCH_DIM = "batch"
BATCHING_MODES = ("native", "rewritten", "buckets", "fixed")


class InvalidInputError(InferperfError):
    """A request's tensors do not match the model (name, shape, dtype, batch): a client error (HTTP 400)."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: per-row shape (without the batch dimension) and dtype."""

    name: str
    dtype: str
    row_shape: tuple[int, ...]

    @property
    def datatype(self) -> str:
        return NUMPY_TO_V2[self.dtype]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.row_shape]}


@dataclass
class ColdStart:
    """How long it took to get from a model reference to the first answer (never mixed into latency)."""

    load_ms: float = 0.0
    session_create_ms: float = 0.0
    verify_ms: float = 0.0
    first_inference_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.load_ms + self.session_create_ms + self.verify_ms + self.first_inference_ms

    def to_dict(self) -> dict[str, float]:
        return {"load_ms": self.load_ms, "session_create_ms": self.session_create_ms, "verify_ms": self.verify_ms,
                "first_inference_ms": self.first_inference_ms, "total_ms": self.total_ms}


@dataclass
class ServedModel:
    """Sessions keyed by the batch size they run (0 = any batch), with input/output specs."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sessions: dict[int, Any]
    max_batch: int
    batching: str
    threads: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    cold_start: ColdStart = field(default_factory=ColdStart)
    notes: list[str] = field(default_factory=list)
    model_path: str | None = None

    # ---------------------------------------------------------------------------------------- running
    def session_for(self, rows: int) -> tuple[int, Any]:
        """The session that runs ``rows`` rows and the batch it runs them at (>= rows when padded)."""
        if rows < 1:
            raise InvalidInputError("a request needs at least one row")
        if rows > self.max_batch:
            raise InvalidInputError(f"batch of {rows} rows exceeds the maximum batch {self.max_batch}")
        if 0 in self.sessions:
            return rows, self.sessions[0]
        for size in sorted(self.sessions):
            if size >= rows:
                return size, self.sessions[size]
        raise InvalidInputError(f"no session runs {rows} rows (batch sizes: {sorted(self.sessions)})")

    def infer(self, feeds: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """One inference over ``rows`` batched rows; padded to a bucket where needed, padding dropped."""
        size, sess = self.session_for(rows)
        if size != rows:
            feeds = {k: _pad_rows(v, size) for k, v in feeds.items()}
        outs = sess.run(feeds)
        result = {}
        for spec, arr in zip(self.outputs, outs, strict=True):
            arr = np.asarray(arr)
            result[spec.name] = arr[:rows] if size != rows else arr
        return result

    def validate(self, tensors: Mapping[str, np.ndarray]) -> int:
        """Check names, dtypes and per-row shapes of a request; returns its row count."""
        expected = {s.name: s for s in self.inputs}
        missing = [n for n in expected if n not in tensors]
        if missing:
            raise InvalidInputError(f"missing input(s) {missing}; the model takes {list(expected)}")
        extra = [n for n in tensors if n not in expected]
        if extra:
            raise InvalidInputError(f"unknown input(s) {extra}; the model takes {list(expected)}")
        rows: int | None = None
        for name, arr in tensors.items():
            spec = expected[name]
            if arr.dtype.name != spec.dtype:
                got = NUMPY_TO_V2.get(arr.dtype.name, arr.dtype.name)
                raise InvalidInputError(f"input {name!r} must be {spec.datatype}, got {got}")
            if arr.ndim != len(spec.row_shape) + 1 or tuple(arr.shape[1:]) != spec.row_shape:
                raise InvalidInputError(f"input {name!r} must have shape [N, {', '.join(map(str, spec.row_shape))}]"
                                        f", got {list(arr.shape)}")
            if rows is None:
                rows = int(arr.shape[0])
            elif int(arr.shape[0]) != rows:
                raise InvalidInputError(f"inputs disagree on the batch dimension ({rows} vs {arr.shape[0]} "
                                        f"for {name!r})")
        assert rows is not None
        if rows < 1:
            raise InvalidInputError("the batch dimension must be at least 1")
        if rows > self.max_batch:
            raise InvalidInputError(f"batch of {rows} rows exceeds the maximum batch {self.max_batch} of this model")
        return rows

    def example_feeds(self, rows: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded valid inputs (the runtime layer's generator: id ranges, masks of ones)."""
        from inferperf.runtimes.base import InputSpec, make_feeds

        specs = [InputSpec(s.name, (rows, *s.row_shape), s.dtype) for s in self.inputs]
        shapes = {s.name: (rows, *s.row_shape) for s in self.inputs}
        return make_feeds(specs, shapes, seed, self.metadata)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batching": self.batching,
            "max_batch": self.max_batch,
            "batch_sizes": sorted(self.sessions) if 0 not in self.sessions else "any",
            "threads": self.threads,
            "inputs": [s.metadata() for s in self.inputs],
            "outputs": [s.metadata() for s in self.outputs],
            "cold_start": self.cold_start.to_dict(),
            "notes": list(self.notes),
            "modality": self.metadata.get("modality"),
        }

    def close(self) -> None:
        for sess in self.sessions.values():
            sess.close()
        self.sessions.clear()


def _pad_rows(arr: np.ndarray, size: int) -> np.ndarray:
    pad = np.zeros((size - arr.shape[0], *arr.shape[1:]), dtype=arr.dtype)
    return np.concatenate([arr, pad], axis=0)


# ------------------------------------------------------------------------------------------- loading


def _specs_from_session(sess: Any, which: str) -> list[TensorSpec]:
    from inferperf.runtimes.base import numpy_dtype_of_onnx_type

    ort_sess = sess.inference_session
    items = ort_sess.get_inputs() if which == "inputs" else ort_sess.get_outputs()
    out = []
    for item in items:
        dims = list(item.shape)
        rest = dims[1:]
        if any(not isinstance(d, int) or d < 0 for d in rest):
            raise ConfigError(f"{which[:-1]} {item.name!r} has a symbolic non-batch dimension {dims}; bind it "
                              "(--seq-len / --image-size) to serve the model")
        out.append(TensorSpec(item.name, numpy_dtype_of_onnx_type(item.type), tuple(int(d) for d in rest)))
    return out


def _create_session(model: Any, threads: int) -> Any:
    from inferperf.measure.config import RunConfig
    from inferperf.runtimes import get_backend

    return get_backend("onnxruntime").load(model, RunConfig(intra_op_threads=threads))


def make_batch_dynamic(model: Any, batch: int) -> Any:
    """A copy of ``model`` whose batch dimension is symbolic (see the module docstring, step 2)."""
    from onnx import numpy_helper

    m = copy.deepcopy(model)
    initializers = {i.name for i in m.graph.initializer}
    for value in [*[i for i in m.graph.input if i.name not in initializers], *m.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    inits = {i.name: i for i in m.graph.initializer}
    const_nodes = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant" and n.output}
    for node in m.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        target = node.input[1]
        tensor = inits.get(target)
        if tensor is None and target in const_nodes:
            attrs = [a for a in const_nodes[target].attribute if a.name == "value"]
            tensor = attrs[0].t if attrs else None
        if tensor is None:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and shape.size and shape[0] == batch and -1 not in shape:
            shape[0] = -1
            tensor.CopyFrom(numpy_helper.from_array(shape.astype(shape.dtype), tensor.name))
    del m.graph.value_info[:]
    return m


def _verify_dynamic(sess: Any, inputs: list[TensorSpec], batches: list[int], metadata: Mapping[str, Any]) -> str | None:
    """None when batched outputs equal row-by-row outputs at every size in ``batches``; else why not."""
    from inferperf.runtimes.base import InputSpec, make_feeds

    for b in batches:
        specs = [InputSpec(s.name, (b, *s.row_shape), s.dtype) for s in inputs]
        feeds = make_feeds(specs, {s.name: (b, *s.row_shape) for s in inputs}, seed=1234 + b, metadata=metadata)
        try:
            batched = sess.run(feeds)
            rows = [sess.run({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(b)]
        except Exception as exc:  # ORT shape errors surface as runtime exceptions
            return f"batch {b} fails to run: {str(exc).splitlines()[0][:200]}"
        for j, out in enumerate(batched):
            ref = np.concatenate([np.asarray(r[j]) for r in rows], axis=0)
            got = np.asarray(out)
            if got.shape != ref.shape:
                return f"output {j} has shape {list(got.shape)} at batch {b}, expected {list(ref.shape)}"
            if got.dtype.kind == "f":
                if not np.allclose(got, ref, rtol=1e-3, atol=1e-4, equal_nan=True):
                    return f"output {j} at batch {b} differs from the row-by-row result"
            elif not np.array_equal(got, ref):
                return f"output {j} at batch {b} differs from the row-by-row result"
    return None


def bucket_sizes(max_batch: int) -> list[int]:
    """Powers of two up to ``max_batch``, and ``max_batch`` itself."""
    sizes = [1]
    while sizes[-1] * 2 <= max_batch:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    return sizes


def _onnx_batch_dims(path: Path) -> tuple[bool, bool]:
    """(every input has a symbolic first dim, some input has another symbolic dim) of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    first_symbolic, other_symbolic = True, False
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims or (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            first_symbolic = False
        for d in list(dims)[1:]:
            if not (d.HasField("dim_value") and d.dim_value > 0):
                other_symbolic = True
    return first_symbolic, other_symbolic


def load_served_model(
    source: str,
    *,
    max_batch: int = 1,
    threads: int = 1,
    name: str | None = None,
    strategy: str = "auto",
    seq_len: int | None = None,
    image_size: int | None = None,
) -> ServedModel:
    """Load ``source`` (an .onnx file or an architecture name) for batches of 1..``max_batch`` rows.

    ``strategy``: ``auto`` (native → rewritten → buckets → fixed, see the module docstring), or force
    ``rewritten`` / ``buckets``. Each session uses ``threads`` intra-op threads.
    """
    from inferperf.ir.ingest import load_model

    if max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1, got {max_batch}")
    if strategy not in ("auto", "rewritten", "buckets"):
        raise ConfigError(f"batching strategy must be auto, rewritten or buckets; got {strategy!r}")
    cold = ColdStart()
    notes: list[str] = []
    path = Path(source)
    is_file = path.suffix.lower() == ".onnx" or path.exists()

    t0 = time.perf_counter_ns()
    if is_file and path.is_file() and strategy == "auto":
        first_symbolic, other_symbolic = _onnx_batch_dims(path)
        if first_symbolic and not other_symbolic:
            sessions_t = time.perf_counter_ns()
            cold.load_ms = (sessions_t - t0) / 1e6
            sess = _create_session(str(path), threads)
            cold.session_create_ms = (time.perf_counter_ns() - sessions_t) / 1e6
            served = ServedModel(name or path.stem, _specs_from_session(sess, "inputs"),
                                 _specs_from_session(sess, "outputs"), {0: sess}, max_batch, "native", threads,
                                 {"source": str(path)}, cold, notes, str(path))
            _first_inference(served)
            return served
    loaded = load_model(source, batch_size=1, seq_len=seq_len, image_size=image_size)
    model_name = name or loaded.name
    metadata = {k: loaded.metadata.get(k) for k in ("vocab_size", "family", "modality", "architecture", "source",
                                                     "image_size", "seq_len")}
    fixed_batch = loaded.inputs[0].shape[0] if loaded.inputs and loaded.inputs[0].shape else 1
    cold.load_ms = (time.perf_counter_ns() - t0) / 1e6

    if max_batch > 1 and strategy in ("auto", "rewritten"):
        t1 = time.perf_counter_ns()
        dyn = make_batch_dynamic(loaded.model, fixed_batch)
        try:
            sess = _create_session(dyn, threads)
        except InferperfError as exc:
            sess, why = None, f"the rewritten graph does not load: {exc}"
        cold.session_create_ms += (time.perf_counter_ns() - t1) / 1e6
        if sess is not None:
            inputs = _specs_from_session(sess, "inputs")
            t2 = time.perf_counter_ns()
            why = _verify_dynamic(sess, inputs, sorted({2, max_batch}), metadata)
            cold.verify_ms = (time.perf_counter_ns() - t2) / 1e6
            if why is None:
                served = ServedModel(model_name, inputs, _specs_from_session(sess, "outputs"), {0: sess}, max_batch,
                                     "rewritten", threads, metadata, cold, notes, loaded.path)
                _first_inference(served)
                return served
            sess.close()
        notes.append(f"dynamic-batch rewrite rejected: {why}")
        if strategy == "rewritten":
            raise ConfigError(f"cannot serve {source} with a rewritten dynamic batch: {why}")

    from inferperf.ir.architectures import is_architecture_name

    if max_batch > 1 and not is_architecture_name(source):
        notes.append(f"an ONNX file with a fixed batch of {fixed_batch} cannot be re-exported per batch size: "
                     f"served at batch {fixed_batch} only")
        sizes = [fixed_batch]
    else:
        sizes = bucket_sizes(max_batch) if max_batch > 1 else [fixed_batch]
    sessions: dict[int, Any] = {}
    path_of_first = loaded.path
    for size in sizes:
        t1 = time.perf_counter_ns()
        model_ref = loaded if size == fixed_batch else load_model(source, batch_size=size, seq_len=seq_len,
                                                                   image_size=image_size)
        t2 = time.perf_counter_ns()
        cold.load_ms += (t2 - t1) / 1e6 if size != fixed_batch else 0.0
        sessions[size] = _create_session(model_ref.path, threads)
        cold.session_create_ms += (time.perf_counter_ns() - t2) / 1e6
    any_sess = sessions[sizes[0]]
    outputs = _specs_from_session(any_sess, "outputs")
    for spec, item in zip(outputs, any_sess.inference_session.get_outputs(), strict=True):
        # padding and splitting slice outputs by rows; a lone batch-1 session never does either
        if max(sizes) > 1 and item.shape and item.shape[0] != sizes[0]:
            raise ConfigError(f"output {spec.name!r} is not batch-major ({item.shape}); cannot split batches")
    mode = "buckets" if len(sizes) > 1 else "fixed"
    if mode == "fixed" and max_batch > 1:
        notes.append("dynamic batching disabled")
    served = ServedModel(model_name, _specs_from_session(any_sess, "inputs"), outputs, sessions, max(sizes) if
                         mode == "buckets" else fixed_batch, mode, threads, metadata, cold, notes, path_of_first)
    _first_inference(served)
    return served


def _first_inference(served: ServedModel) -> None:
    """Run every session once (warm-up; the first call allocates arenas) and time the first one."""
    first = True
    for size in sorted(served.sessions):
        rows = size or 1
        feeds = served.example_feeds(rows)
        t = time.perf_counter_ns()
        served.sessions[size].run(feeds)
        if first:
            served.cold_start.first_inference_ms = (time.perf_counter_ns() - t) / 1e6
            first = False
