"""Model ingestion: whatever the user hands us becomes one ONNX model with concrete shapes.

Accepted sources: an ``.onnx`` file (external data included), a ``torch.nn.Module`` with example inputs, a
named architecture (see :mod:`inferperf.ir.architectures`), and Keras / PaddlePaddle models through their
converters (optional extras). Every later stage needs concrete shapes, so a dynamic dimension the caller did
not bind is an error that names it.

Exports of named architectures are cached under ``$INFERPERF_HOME/cache/exports`` keyed by everything that
changes the graph, so repeated commands do not pay the export again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferperf.errors import ModelLoadError, UnboundDimensionError
from inferperf.store.paths import inferperf_home

if TYPE_CHECKING:
    import onnx

#: oldest default-domain opset we accept (shape inference and ORT support below that are unreliable)
MIN_OPSET = 7
EXPORT_OPSET = 20


@dataclass
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class LoadedModel:
    """An ONNX model with concrete input shapes, on disk (runtimes load paths) and in memory."""

    model: onnx.ModelProto
    path: str
    name: str
    inputs: list[InputSpec]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def input_spec(self) -> dict[str, Any]:
        return {i.name: {"shape": list(i.shape), "dtype": i.dtype} for i in self.inputs}


# ------------------------------------------------------------------------------------------------ sources


def load_model(
    source: Any,
    *,
    batch_size: int | None = None,
    seq_len: int | None = None,
    image_size: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    overrides: dict[str, Any] | None = None,
    example_inputs: Any = None,
    input_names: list[str] | None = None,
    exporter: str = "dynamo",
    name: str | None = None,
    cache: bool = True,
    seed: int = 0,
) -> LoadedModel:
    """Turn a path, an architecture name or a ``torch.nn.Module`` into a :class:`LoadedModel`."""
    if not isinstance(source, str | os.PathLike):
        if example_inputs is None:
            raise ModelLoadError("a torch.nn.Module needs example_inputs (a tensor, tuple or dict of tensors)")
        return load_torch_module(
            source, example_inputs, input_names=input_names, exporter=exporter, name=name
        )
    text = str(source)
    path = Path(text)
    if path.suffix.lower() in (".h5", ".keras") or (path.is_dir() and (path / "saved_model.pb").exists()):
        from inferperf.ir.converters import load_keras

        return load_keras(path, batch_size=batch_size, input_shapes=input_shapes)
    if path.suffix.lower() in (".pdmodel", ".json") and path.name.endswith((".pdmodel", ".json")) and (
        path.with_suffix(".pdiparams").exists()
    ):
        from inferperf.ir.converters import load_paddle

        return load_paddle(path, batch_size=batch_size, input_shapes=input_shapes)
    if path.exists() or path.suffix.lower() == ".onnx" or os.sep in text:
        return load_onnx_file(
            path, batch_size=batch_size, seq_len=seq_len, input_shapes=input_shapes, name=name
        )
    return load_architecture(
        text,
        batch_size=batch_size or 1,
        seq_len=seq_len,
        image_size=image_size,
        overrides=overrides,
        exporter=exporter,
        cache=cache,
        seed=seed,
    )


def load_onnx_file(
    path: str | Path,
    *,
    batch_size: int | None = None,
    seq_len: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    name: str | None = None,
) -> LoadedModel:
    """Load an ONNX file (with external data), bind dynamic dimensions and infer shapes."""
    import onnx

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"no such file: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not an ONNX file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelLoadError(f"{path} is not a valid ONNX model (truncated or not ONNX: {_short(exc)})") from None
    if not model.graph.node and not model.graph.input:
        raise ModelLoadError(f"{path} is not a valid ONNX model (no graph)")
    _check_opset(model, path)
    if _uses_external_data(model):
        try:
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(model, str(path.parent))
        except Exception as exc:
            raise ModelLoadError(f"{path}: cannot read its external data ({_short(exc)})") from None
    bound = bind_dimensions(model, batch_size=batch_size, seq_len=seq_len, input_shapes=input_shapes)
    model = infer_shapes(model)
    model_path = str(path)
    if bound is not None:  # runtimes load the path: it must carry the bound shapes
        model_path = _save(model, _cache_dir() / f"bound-{_hash_model(model)}.onnx")
    return LoadedModel(
        model=model,
        path=model_path,
        name=name or path.stem,
        inputs=_input_specs(model),
        metadata={"source": str(path), "framework": "onnx", "family": None},
    )


def load_architecture(
    arch_name: str,
    *,
    batch_size: int = 1,
    seq_len: int | None = None,
    image_size: int | None = None,
    overrides: dict[str, Any] | None = None,
    exporter: str = "dynamo",
    cache: bool = True,
    seed: int = 0,
) -> LoadedModel:
    """Build a named architecture with random weights and export it (cached)."""
    import onnx

    from inferperf.ir.architectures import get_architecture

    arch = get_architecture(arch_name)
    if batch_size < 1:
        raise ModelLoadError(f"batch size must be ≥ 1, got {batch_size}")
    config = arch.make_config(overrides)
    shapes = arch.input_shapes(config, batch_size, seq_len, image_size)
    meta = {
        "source": f"architecture:{arch.name}",
        "framework": "transformers",
        "architecture": arch.name,
        "family": arch.family,
        "modality": arch.modality,
        "batch_size": batch_size,
        "overrides": overrides or {},
        "seed": seed,
    }
    if arch.modality == "vision":
        meta["image_size"] = shapes["pixel_values"][0][-1]
    else:
        meta["seq_len"] = shapes["input_ids"][0][1]
        meta["vocab_size"] = arch.vocab_bound(config)
    key = _cache_key({"arch": arch.name, "shapes": shapes, "config": arch.config_kwargs(overrides), "seed": seed,
                      "exporter": exporter})
    target = _cache_dir() / f"{arch.name}-{key}.onnx"
    if cache and target.exists():
        try:
            model = onnx.load(str(target))
            return LoadedModel(model, str(target), arch.name, _input_specs(model), meta)
        except Exception:
            target.unlink(missing_ok=True)  # a corrupt cache entry is rebuilt, never trusted
    module = arch.build(overrides, seed=seed)
    examples = _example_tensors(shapes, meta.get("vocab_size"), seed)
    model = export_torch(module, examples, exporter=exporter)
    model = infer_shapes(model)
    path = _save(model, target)
    meta["exporter"] = model.producer_name
    return LoadedModel(model, path, arch.name, _input_specs(model), meta)


def load_torch_module(
    module: Any,
    example_inputs: Any,
    *,
    input_names: list[str] | None = None,
    exporter: str = "dynamo",
    name: str | None = None,
) -> LoadedModel:
    """Export a ``torch.nn.Module`` with example inputs (a tensor, a tuple, or a dict of named tensors)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"expected a torch.nn.Module, got {type(module).__name__}")
    keyword = isinstance(example_inputs, dict)
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = {(input_names or ["input"])[0]: example_inputs}
    elif isinstance(example_inputs, list | tuple):
        names = input_names or [f"input_{i}" for i in range(len(example_inputs))]
        example_inputs = dict(zip(names, example_inputs, strict=True))
    elif not isinstance(example_inputs, dict):
        raise ModelLoadError("example_inputs must be a tensor, a tuple/list or a dict of tensors")
    model = export_torch(module.eval(), example_inputs, exporter=exporter, keyword=keyword)
    model = infer_shapes(model)
    label = name or type(module).__name__
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:80]
    path = _save(model, _cache_dir() / f"module-{safe}-{_hash_model(model)}.onnx")
    return LoadedModel(model, path, label, _input_specs(model),
                       {"source": "torch.nn.Module", "framework": "pytorch", "family": None})


# ------------------------------------------------------------------------------------------------ export


class _NamedInputs:
    """Factory for a wrapper module whose positional inputs become named keyword arguments.

    transformers models take keyword inputs and return ModelOutput objects; exporters want positional
    tensors in and tensors out. The first output (logits / last hidden state) is the one kept.
    """

    @staticmethod
    def wrap(module: Any, names: list[str], keyword: bool = True) -> Any:
        import torch

        class NamedInputs(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = module

            def forward(self, *tensors: Any) -> Any:
                out = self.inner(**dict(zip(names, tensors, strict=True))) if keyword else self.inner(*tensors)
                return out if isinstance(out, torch.Tensor) else out[0]

        return NamedInputs().eval()


def export_torch(
    module: Any, example_inputs: dict[str, Any], *, exporter: str = "dynamo", keyword: bool = True
) -> onnx.ModelProto:
    """Export with the dynamo exporter, falling back to the legacy TorchScript exporter on failure.

    ``keyword`` passes the named inputs as keyword arguments (transformers models); otherwise they are passed
    positionally in order and the names only label the ONNX inputs.
    """
    import onnx
    import torch

    _cache_torchlib_registry()
    names = list(example_inputs)
    wrapper = _NamedInputs.wrap(module, names, keyword)
    args = tuple(example_inputs[n] for n in names)
    errors: list[str] = []
    order = ["dynamo", "legacy"] if exporter == "dynamo" else ["legacy"]
    for kind in order:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "model.onnx"
            try:
                with _quiet(), torch.inference_mode(False), torch.no_grad():
                    if kind == "dynamo":
                        program = torch.onnx.export(
                            wrapper, args, dynamo=True, input_names=names, output_names=["output"],
                            opset_version=EXPORT_OPSET, external_data=False,
                        )
                        program.save(str(out))
                    else:
                        torch.onnx.export(
                            wrapper, args, str(out), dynamo=False, input_names=names,
                            output_names=["output"], opset_version=17, do_constant_folding=True,
                        )
                model = onnx.load(str(out))
                model.producer_name = f"inferperf/torch.onnx[{kind}]"
                return model
            except Exception as exc:
                errors.append(f"{kind}: {_short(exc)}")
    raise ModelLoadError("ONNX export failed — " + "; ".join(errors))


_REGISTRY_CACHED = False


def _cache_torchlib_registry() -> None:
    """Build the dynamo exporter's torchlib op registry once per process instead of once per export.

    ``ONNXRegistry.from_torchlib`` compiles ~500 onnxscript functions every call: 1 s of a 4 s BERT export,
    paid again for every graph of a collection. The exporter only reads the registry (our exports pass no
    custom translation table), and each call still gets its own copy of the op table. Private torch API:
    if it is not where we expect it, exports simply stay uncached.
    """
    global _REGISTRY_CACHED
    if _REGISTRY_CACHED:
        return
    _REGISTRY_CACHED = True
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        return
    registry_cls = getattr(_registration, "ONNXRegistry", None)
    original = getattr(registry_cls, "from_torchlib", None)
    if registry_cls is None or original is None:
        return
    built: dict[tuple[type, Any], Any] = {}

    def from_torchlib(cls: type, opset_version: Any = None) -> Any:
        key = (cls, opset_version)
        if key not in built:
            built[key] = original.__func__(cls) if opset_version is None else original.__func__(cls, opset_version)
        copy = cls()
        copy._opset_version = built[key]._opset_version
        copy.functions = {k: list(v) for k, v in built[key].functions.items()}
        return copy

    registry_cls.from_torchlib = classmethod(from_torchlib)


@contextlib.contextmanager
def _quiet() -> Any:
    """Keep exporter chatter off stdout (``--json`` output must stay parseable)."""
    import logging

    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _example_tensors(
    shapes: dict[str, tuple[tuple[int, ...], str]], vocab: int | None, seed: int
) -> dict[str, Any]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    for name, (shape, dtype) in shapes.items():
        if dtype == "int64":
            if name == "attention_mask":
                out[name] = torch.ones(shape, dtype=torch.int64)
            else:
                out[name] = torch.randint(0, max(2, min(vocab or 100, 1000)), shape, generator=gen)
        else:
            out[name] = torch.randn(shape, generator=gen)
    return out


# ------------------------------------------------------------------------------------------------ shapes


def bind_dimensions(
    model: onnx.ModelProto,
    *,
    batch_size: int | None = None,
    seq_len: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> onnx.ModelProto | None:
    """Replace symbolic input dimensions by concrete ones, in place; None when nothing needed binding.

    Rules, in order: an explicit ``input_shapes[name]`` wins; a symbolic first dimension is the batch; a
    symbolic second dimension of an integer input is the sequence length. Anything else left symbolic
    raises :class:`UnboundDimensionError` naming the input and the dimension.
    """
    input_shapes = dict(input_shapes or {})
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    unknown = set(input_shapes) - {i.name for i in graph_inputs}
    if unknown:
        names = ", ".join(i.name for i in graph_inputs)
        raise ModelLoadError(f"--input names {sorted(unknown)} are not model inputs (inputs: {names})")
    changed = False
    for value in graph_inputs:
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            if value.name in input_shapes:
                for d in input_shapes[value.name]:
                    ttype.shape.dim.add().dim_value = int(d)
                changed = True
                continue
            raise UnboundDimensionError(value.name, "<rank unknown>", "pass --input NAME=DIMxDIM...")
        dims = ttype.shape.dim
        if value.name in input_shapes:
            wanted = input_shapes[value.name]
            if len(wanted) != len(dims):
                raise ModelLoadError(
                    f"--input {value.name}: rank {len(wanted)} given, the model expects rank {len(dims)}"
                )
            for d, w in zip(dims, wanted, strict=True):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != w:
                    raise ModelLoadError(
                        f"--input {value.name}: dimension {d.dim_value} is fixed by the model, got {w}"
                    )
                d.Clear()
                d.dim_value = int(w)
            changed = True
            continue
        is_int = ttype.elem_type in (6, 7)  # INT32, INT64
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            label = d.dim_param or f"dim{axis}"
            if axis == 0 and batch_size is not None:
                d.Clear()
                d.dim_value = int(batch_size)
            elif axis == 1 and is_int and seq_len is not None:
                d.Clear()
                d.dim_value = int(seq_len)
            else:
                hint = {0: "pass --batch N", 1: "pass --seq-len N" if is_int else ""}.get(axis, "")
                hint = hint or f"pass --input {value.name}=" + "x".join(
                    str(x.dim_value) if x.HasField("dim_value") and x.dim_value > 0 else "N" for x in dims
                )
                raise UnboundDimensionError(value.name, label, hint)
            changed = True
    return model if changed else None


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference with data propagation (so Reshape targets computed from Shape resolve).

    Large weights are detached while inference runs: the C++ inference serializes the whole model, and for
    BERT-base that copy costs 1.6 s of the 1.6 s. Shapes only need the initializers' dims (and the values of
    the small int64 tensors data propagation reads, which stay attached). The inferred ``value_info`` and
    output types are written back into ``model``, which is returned.
    """
    import onnx

    graph = model.graph
    detached: dict[int, bytes] = {}
    for i, init in enumerate(graph.initializer):
        if len(init.raw_data) > 4096:
            detached[i] = init.raw_data
            init.ClearField("raw_data")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ModelLoadError(f"shape inference failed: {_short(exc)}") from None
    finally:
        for i, raw in detached.items():
            graph.initializer[i].raw_data = raw
    graph.ClearField("value_info")
    graph.value_info.extend(inferred.graph.value_info)
    for out, inf in zip(graph.output, inferred.graph.output, strict=True):
        out.type.CopyFrom(inf.type)
    return model


def _check_opset(model: onnx.ModelProto, path: Path | str) -> None:
    import onnx

    latest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            if imp.version > latest:
                raise ModelLoadError(
                    f"{path}: opset {imp.version} is newer than this onnx supports (≤ {latest})"
                )
            if imp.version < MIN_OPSET:
                raise ModelLoadError(f"{path}: opset {imp.version} is unsupported (need ≥ {MIN_OPSET})")
            return
    raise ModelLoadError(f"{path}: the model imports no default ONNX opset")


def _uses_external_data(model: onnx.ModelProto) -> bool:
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in model.graph.initializer)


def _input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    from onnx import helper

    initializers = {i.name for i in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        ttype = value.type.tensor_type
        shape = tuple(d.dim_value for d in ttype.shape.dim)
        dtype = helper.tensor_dtype_to_np_dtype(ttype.elem_type).name if ttype.elem_type else "float32"
        specs.append(InputSpec(value.name, shape, dtype))
    return specs


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``name=1x3x224x224`` strings from the command line."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        m = re.fullmatch(r"\s*([^=\s]+)\s*=\s*(\d+(?:[x,]\d+)*)\s*", spec)
        if not m:
            raise ModelLoadError(f"--input '{spec}' is not NAME=DIMxDIMx... (e.g. pixel_values=1x3x224x224)")
        out[m.group(1)] = tuple(int(x) for x in re.split(r"[x,]", m.group(2)))
    return out


def parse_overrides(specs: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` config overrides; values are JSON when they parse as JSON (ints, lists)."""
    out: dict[str, Any] = {}
    for spec in specs or []:
        if "=" not in spec:
            raise ModelLoadError(f"--set '{spec}' is not KEY=VALUE (e.g. num_hidden_layers=4)")
        key, raw = spec.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


# ------------------------------------------------------------------------------------------------ files


def _cache_dir() -> Path:
    d = inferperf_home() / "cache" / "exports"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cache_key(obj: dict[str, Any]) -> str:
    import torch
    import transformers

    from inferperf import __version__

    payload = {**obj, "torch": torch.__version__, "transformers": transformers.__version__,
               "inferperf": __version__, "opset": EXPORT_OPSET}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _hash_model(model: onnx.ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:16]


def _save(model: onnx.ModelProto, target: Path) -> str:
    """Write atomically (a killed export never leaves a half file that later loads as 'cached')."""
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    if model.ByteSize() > 1_900_000_000:
        onnx.save(model, str(tmp), save_as_external_data=True, location=target.name + ".data")
    else:
        onnx.save(model, str(tmp))
    os.replace(tmp, target)
    return str(target)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:300]
