"""Training sets of the kernel-level predictors: fusion edge labels, kernels, per-kernel latency.

Every profiled run (a :class:`~inferperf.dataset.core.Sample` with ``kernels`` and ``fusion_edges``) yields

- one label per original data-flow edge: fused (both ends ran in one kernel) or not;
- one flag per original node: *executed* (covered by a kernel) or not (constant-folded / eliminated);
- the measured kernels as node-index sets with their type and duration.

Two details of ONNX Runtime's traces shape the labels:

**Glue kernels.** ORT inserts kernels that compute no original node: ``Reshape`` around a ``MatMul+Add``
it turned into ``Gemm``, ``ReorderInput``/``ReorderOutput`` around NCHWc convolutions. They cover no
original node, yet cost up to ~15% of a run. Their time is attributed to the kernel they serve: a reorder
*out of* a blocked layout and a ``*output*`` reshape to the kernel before them in execution order, anything
else to the kernel after them. The sum over kernels is preserved exactly, and a predictor learns that an
NCHWc convolution costs its reorders too.

**Noisy durations.** On a shared machine one preempted profiled run can multiply a kernel's mean. The
duration used is the median over the profiled runs when the trace kept them, else the recorded mean.

Data come from an exported dataset directory (:mod:`inferperf.dataset.parquet`), a JSON dataset, or straight
from a PerfDB (:func:`load_perfdb`), which keeps what the Parquet export drops (per-run kernel durations).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.dataset.core import DatasetError, GraphDataset, Sample
from inferperf.dataset.parquet import trusted_label
from inferperf.errors import InferperfError
from inferperf.ir.graph import ModelGraph

#: optimization settings that change what ORT fuses (threads do not change the fusion plan on CPU)
FUSION_CONFIG_KEYS: tuple[str, ...] = ("runtime", "provider", "opt_level", "attention_fusion", "precision")

#: extra node features appended to the encoded node features (see :func:`structural_node_features`)
STRUCTURAL_FEATURE_NAMES: tuple[str, ...] = (
    "log_in_degree",
    "log_out_degree",
    "is_graph_output",
    "is_static",
    "input_from_static",
    "near_gelu_core",
)

#: resource features appended to the device features (see :func:`resource_features`)
RESOURCE_FEATURE_NAMES: tuple[str, ...] = ("compute_share", "log2_threads", "opt_level", "attention_fusion")

_OPT_LEVELS = ("disable", "basic", "extended", "layout", "all")


# ============================================================================================== labels
@dataclass
class KernelLabel:
    """One measured kernel on the original graph: node indices, type and duration (own + glue)."""

    nodes: list[int]
    kernel_type: str
    own_ms: float
    glue_ms: float = 0.0

    @property
    def duration_ms(self) -> float:
        return self.own_ms + self.glue_ms


@dataclass
class GraphLabels:
    """Fusion and kernel labels of one profiled run, indexed like ``graph.nodes`` / ``graph.edges``."""

    edge_fused: np.ndarray  # [E] float32: 1 fused, 0 not, NaN unknown (edge absent from the labels)
    executed: np.ndarray  # [N] bool: covered by some measured kernel
    kernels: list[KernelLabel]
    kernel_sum_ms: float  # every kernel of the trace, glue included
    n_glue: int = 0
    unknown_nodes: list[str] = field(default_factory=list)  # covered names the graph does not have

    @property
    def n_labelled_edges(self) -> int:
        return int(np.isfinite(self.edge_fused).sum())


def kernel_duration_ms(kernel: dict[str, Any]) -> float:
    """Robust duration of one trace kernel: median of the profiled runs, else the stored median/mean."""
    runs = kernel.get("duration_ms_runs")
    if runs:
        vals = [float(v) for v in runs if v is not None and math.isfinite(float(v))]
        if vals:
            return float(statistics.median(vals))
    med = kernel.get("duration_ms_median")
    if med is not None and float(med) > 0:
        return float(med)
    value = kernel.get("duration_ms")
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0


def _glue_goes_back(kernel: dict[str, Any]) -> bool:
    """Whether a glue kernel belongs to the kernel *before* it (it converts that kernel's output)."""
    name = str(kernel.get("name") or "").lower()
    ktype = str(kernel.get("kernel_type") or "")
    return ktype.endswith("ReorderOutput") or "output" in name


def graph_labels(sample: Sample) -> GraphLabels | None:
    """Labels of one sample, or None when the run was not profiled."""
    if not sample.kernels:
        return None
    graph = sample.graph
    index = {n.name: n.index for n in graph.nodes}
    kernels_sorted = sorted(sample.kernels, key=lambda k: (k.get("ordinal") is None, k.get("ordinal") or 0))
    labels: list[KernelLabel | None] = []
    unknown: list[str] = []
    for k in kernels_sorted:
        nodes = []
        for name in k.get("covered_nodes") or ():
            i = index.get(str(name))
            if i is None:
                unknown.append(str(name))
            else:
                nodes.append(i)
        labels.append(
            KernelLabel(
                sorted(set(nodes)),
                str(k.get("kernel_type") or k.get("op_type") or "?"),
                kernel_duration_ms(k),
            )
            if nodes
            else None
        )
    real = [i for i, lab in enumerate(labels) if lab is not None]
    total = sum(kernel_duration_ms(k) for k in kernels_sorted)
    n_glue = 0
    if real:
        for i, k in enumerate(kernels_sorted):
            if labels[i] is not None:
                continue
            n_glue += 1
            before = [j for j in real if j < i]
            after = [j for j in real if j > i]
            back = _glue_goes_back(k)
            target = (before[-1] if before else after[0]) if back else (after[0] if after else before[-1])
            lab = labels[target]
            assert lab is not None
            lab.glue_ms += kernel_duration_ms(k)
    kernels = [lab for lab in labels if lab is not None]
    executed = np.zeros(len(graph.nodes), dtype=bool)
    for lab in kernels:
        executed[lab.nodes] = True
    edge_fused = np.full(len(graph.edges), np.nan, dtype=np.float32)
    if sample.fusion_edges:
        by_key = {
            (str(e["src"]), str(e["dst"]), str(e.get("tensor"))): bool(e["fused"])
            for e in sample.fusion_edges
        }
        by_pair: dict[tuple[str, str], bool] = {}
        for e in sample.fusion_edges:
            by_pair[(str(e["src"]), str(e["dst"]))] = by_pair.get(
                (str(e["src"]), str(e["dst"])), False
            ) or bool(e["fused"])
        for j, e in enumerate(graph.edges):
            src, dst = graph.nodes[e.src].name, graph.nodes[e.dst].name
            v = by_key.get((src, dst, str(e.tensor)))
            if v is None:
                v = by_pair.get((src, dst))
            if v is not None:
                edge_fused[j] = 1.0 if v else 0.0
    else:  # derive from the partition: the same definition the measurement uses
        owner = np.full(len(graph.nodes), -1)
        for k, lab in enumerate(kernels):
            owner[lab.nodes] = k
        for j, e in enumerate(graph.edges):
            edge_fused[j] = 1.0 if owner[e.src] >= 0 and owner[e.src] == owner[e.dst] else 0.0
    return GraphLabels(edge_fused, executed, kernels, total, n_glue, unknown)


# ============================================================================================== features
def fusion_config_key(config: dict[str, Any]) -> tuple[Any, ...]:
    """The part of a run configuration that decides the fusion plan (for de-duplicating edge labels)."""
    return tuple(str(config.get(k)) for k in FUSION_CONFIG_KEYS)


def compute_share(config: dict[str, Any], device: dict[str, Any]) -> float:
    """Fraction of the device's compute a run may use: what makes one predictor serve every share.

    GPU: the MPS active-thread percentage (a MIG slice is already reflected in the device's SM count).
    CPU: cores the run may use over the device's logical CPUs — the CPU affinity when the configuration
    pins one, else the intra-op thread count — capped at 1.
    """
    feats = device.get("features") or {}
    if _num(feats.get("is_gpu")) == 1.0:
        share = _num(feats.get("gpu_mps_share"))
        share = share / 100.0 if share is not None and share > 1.0 else share
        return float(share) if share is not None and share > 0 else 1.0
    cpus = _num(feats.get("cpu_logical_cpus")) or _num(feats.get("cpu_physical_cores"))
    affinity = config.get("affinity")
    threads = _num(config.get("intra_op_threads"))
    if threads is None or threads <= 0:
        threads = _num(feats.get("threads_used")) or 1.0
    used = float(len(affinity)) if isinstance(affinity, list | tuple) and affinity else float(threads)
    used = min(used, float(threads)) if threads else used
    if not cpus or cpus <= 0:
        return 1.0
    return float(min(1.0, used / cpus))


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def resource_features(config: dict[str, Any], device: dict[str, Any]) -> np.ndarray:
    """:data:`RESOURCE_FEATURE_NAMES` for one run (the runtime settings the fusion and kernel models see)."""
    threads = (
        _num(config.get("intra_op_threads"))
        or _num((device.get("features") or {}).get("threads_used"))
        or 1.0
    )
    opt = config.get("opt_level", "all")
    return np.array(
        [
            compute_share(config, device),
            math.log2(max(threads, 1.0)),
            float(_OPT_LEVELS.index(opt)) if opt in _OPT_LEVELS else float(len(_OPT_LEVELS) - 1),
            1.0 if config.get("attention_fusion") else 0.0,
        ],
        dtype=np.float64,
    )


def device_resource_vector(config: dict[str, Any], device: dict[str, Any]) -> np.ndarray:
    """Device features (the descriptor layout, thread count taken from the configuration) + resources."""
    from inferperf.predict.features import device_vector

    return np.concatenate([device_vector(device, config), resource_features(config, device)])


def static_nodes(graph: ModelGraph) -> np.ndarray:
    """[N] bool: nodes whose outputs do not depend on any graph input (what ORT constant-folds).

    A node is static when each of its inputs is a weight or comes from a static node; ``Shape``/``Size`` of a
    tensor with a known shape are static whatever produced the tensor. Graph inputs are dynamic. Memoised on
    the graph (the rules, the kernel labels and the structural features all ask); the array is read-only.
    """
    return graph.derived(("static_nodes",), lambda: _static_nodes(graph))


def _static_nodes(graph: ModelGraph) -> np.ndarray:
    producer = graph.producers()
    static: list[bool] = []  # a list while it grows: a NumPy element read costs several times a list's
    for n in graph.nodes:  # nodes are topologically ordered
        if n.op_type in ("Shape", "Size") and n.inputs and n.inputs[0].shape is not None:
            static.append(True)
            continue
        ok = True
        for t in n.inputs:
            if not t.name or t.is_weight:
                continue
            p = producer.get(t.name)
            if p is None or p >= len(static) or not static[p]:  # a later producer: not known static yet
                ok = False
                break
        static.append(ok)
    out = np.array(static, dtype=bool).reshape(len(graph.nodes))
    out.flags.writeable = False
    return out


def structural_node_features(graph: ModelGraph) -> np.ndarray:
    """[N, len(STRUCTURAL_FEATURE_NAMES)] float32 graph-structure facts per node.

    The encoded node features describe a node alone; whether ORT fuses or folds it also depends on its
    neighbourhood (a MatMul whose output has two consumers keeps it, a shape computation on static shapes
    is folded). A single attention layer cannot propagate "static" along a long shape chain, so that fact
    is computed here once, exactly.
    """
    n = len(graph.nodes)
    out = np.zeros((n, len(STRUCTURAL_FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return out
    indeg = np.zeros(n)
    outdeg = np.zeros(n)
    for e in graph.edges:
        outdeg[e.src] += 1
        indeg[e.dst] += 1
    outputs = {t.name for t in graph.outputs}
    static = static_nodes(graph)
    from_static = np.zeros(n, dtype=bool)
    for e in graph.edges:
        if static[e.src]:
            from_static[e.dst] = True
    out[:, 0] = np.log1p(indeg)
    out[:, 1] = np.log1p(outdeg)
    out[:, 2] = [1.0 if any(t.name in outputs for t in node.outputs) else 0.0 for node in graph.nodes]
    out[:, 3] = static
    out[:, 4] = from_static
    out[:, 5] = gelu_core_nearness(graph)
    return out


EDGE_FEATURE_NAMES: tuple[str, ...] = ("log_tensor_bytes", "src_single_consumer", "shares_producer",
                                       "dst_log_in_degree", "rule_fused", "near_gelu_core")

#: the nonlinearity at the heart of a decomposed GELU (erf form, tanh form); see :func:`gelu_core_nearness`
_GELU_CORES = frozenset({"Erf", "Tanh"})
_GELU_REACH = 3


def gelu_core_nearness(graph: ModelGraph) -> np.ndarray:
    """[N] 1 / (1 + hops) to the nearest Erf / Tanh node (undirected, up to 3 hops; 0 farther).

    Why: ORT fuses elementwise Mul / Add chains only inside a GELU pattern it recognises (the tanh form
    becomes FastGelu: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))). The same Mul → Add edge is never fused
    as MobileBERT's NoNorm, PoolFormer's layer scale + residual or a rotary embedding — and in the
    reference data that was the largest source of wrong fusion predictions (spurious Mul → Add / Add → Mul,
    2,700 of 153,000 edges on held-out families), because one attention layer sees one hop of the pattern.
    As an edge feature alone (an input of the final linear layer) it did not stop MobileBERT's NoNorm
    edges, nowhere near a GELU, from being predicted fused (1,600 runs, 6 folds: 96.5% overall, MobileBERT
    84%); as a node feature too, so the attention layer and the LSTM can combine it with the op types, the
    fold holding MobileBERT out went from 86.9% to 91.9% on MobileBERT and 86.0% to 90.6% on PoolFormer.
    """
    n = len(graph.nodes)
    dist = np.full(n, np.inf)
    frontier = [v.index for v in graph.nodes if v.op_type in _GELU_CORES]
    if not frontier:
        return np.zeros(n, dtype=np.float32)
    adj: dict[int, list[int]] = {}
    for e in graph.edges:
        adj.setdefault(e.src, []).append(e.dst)
        adj.setdefault(e.dst, []).append(e.src)
    dist[frontier] = 0
    for hop in range(1, _GELU_REACH + 1):
        nxt = []
        for v in frontier:
            for w in adj.get(v, ()):
                if dist[w] > hop:
                    dist[w] = hop
                    nxt.append(w)
        frontier = nxt
    return np.where(np.isfinite(dist), 1.0 / (1.0 + dist), 0.0).astype(np.float32)


def rule_edge_fused(graph: ModelGraph, config: dict[str, Any] | None = None) -> np.ndarray:
    """[E] bool: the hand-written rules' fusion verdict per edge, computed once per graph and opt level.

    Both the edge input ``rule_fused`` and the node inputs of
    :func:`~inferperf.predict.fusion.edge_classifier.rule_node_features` read it; the rules depend on the
    configuration through its opt level only."""
    from inferperf.predict.fusion.rules import rule_partition

    return rule_partition(graph, str((config or {}).get("opt_level", "all"))).edge_fused


def edge_features(graph: ModelGraph, config: dict[str, Any] | None = None) -> np.ndarray:
    """[E, len(EDGE_FEATURE_NAMES)] float32 per-edge facts for the classifier's final layer.

    ``shares_producer`` marks a triangle (the consumer also reads a tensor the producer reads: x·σ(x),
    x·Φ(x), residual branches) — a pattern one attention layer sees only half of. ``rule_fused`` is the
    hand-written rules' verdict (:class:`~inferperf.predict.fusion.rules.RuleFusion`) for this
    configuration: the classifier learns where the rules hold and corrects them where they do not, instead
    of rediscovering every common pattern from scratch. ``near_gelu_core`` is the nearer endpoint's
    :func:`gelu_core_nearness`.
    """
    m = len(graph.edges)
    out = np.zeros((m, len(EDGE_FEATURE_NAMES)), dtype=np.float32)
    if m == 0:
        return out
    out[:, 4] = rule_edge_fused(graph, config).astype(np.float32)
    near = gelu_core_nearness(graph)
    consumers: dict[int, set[int]] = {}
    preds: dict[int, set[int]] = {}
    indeg = np.zeros(len(graph.nodes))
    for e in graph.edges:
        consumers.setdefault(e.src, set()).add(e.dst)
        preds.setdefault(e.dst, set()).add(e.src)
        indeg[e.dst] += 1
    for j, e in enumerate(graph.edges):
        out[j, 0] = math.log1p(max(e.nbytes, 0))
        out[j, 1] = 1.0 if len(consumers.get(e.src, ())) == 1 else 0.0
        out[j, 2] = 1.0 if preds.get(e.src, set()) & preds.get(e.dst, set()) else 0.0
        out[j, 3] = math.log1p(indeg[e.dst])
        out[j, 5] = max(near[e.src], near[e.dst])
    return out


# ============================================================================================== examples
@dataclass
class EdgeExample:
    """One graph under one fusion-relevant configuration, with its edge and node labels."""

    graph: ModelGraph
    config: dict[str, Any]
    device: dict[str, Any]
    edge_fused: np.ndarray
    executed: np.ndarray
    family: str
    graph_key: str


@dataclass
class KernelExample:
    """One measured kernel: a node subset of a graph, its type and duration under a configuration."""

    graph: ModelGraph
    nodes: list[int]
    config: dict[str, Any]
    device: dict[str, Any]
    kernel_type: str
    duration_ms: float
    family: str
    graph_key: str


def profiled_samples(dataset: Iterable[Sample]) -> list[tuple[Sample, GraphLabels]]:
    """Samples that carry a kernel profile, with their labels."""
    out = []
    for s in dataset:
        lab = graph_labels(s)
        if lab is not None and lab.kernels:
            out.append((s, lab))
    return out


def edge_examples(dataset: Iterable[Sample]) -> list[EdgeExample]:
    """One example per (graph, fusion-relevant configuration); repeated runs vote per edge."""
    groups: dict[tuple[Any, ...], list[tuple[Sample, GraphLabels]]] = {}
    for s, lab in profiled_samples(dataset):
        groups.setdefault((s.graph_key, s.device_id, fusion_config_key(s.config)), []).append((s, lab))
    out = []
    for runs in groups.values():
        s0, _ = runs[0]
        fused = np.stack([lab.edge_fused for _, lab in runs])
        execd = np.stack([lab.executed.astype(np.float32) for _, lab in runs])
        with np.errstate(all="ignore"):
            vote = np.nanmean(fused, axis=0) if len(runs) > 1 else fused[0]
        edge = np.where(np.isfinite(vote), (vote >= 0.5).astype(np.float32), np.nan).astype(np.float32)
        out.append(
            EdgeExample(
                s0.graph, s0.config, s0.device, edge, execd.mean(axis=0) >= 0.5, s0.family, s0.graph_key
            )
        )
    return out


def kernel_examples(
    dataset: Iterable[Sample],
    durations: Callable[[Sample, GraphLabels], np.ndarray] | None = None,
) -> list[KernelExample]:
    """Every measured kernel of every profiled sample (duplicates are merged by the kernel model).

    ``durations(sample, labels)`` replaces the profiled durations of a run's kernels (same order) — the
    run-calibrated targets of ``FusionKernelPredictor(calibrate_kernels=True)``."""
    out = []
    for s, lab in profiled_samples(dataset):
        ms = durations(s, lab) if durations is not None else [k.duration_ms for k in lab.kernels]
        for k, d in zip(lab.kernels, ms, strict=True):
            if k.duration_ms > 0 and d > 0:
                out.append(
                    KernelExample(
                        s.graph,
                        k.nodes,
                        s.config,
                        s.device,
                        k.kernel_type,
                        float(d),
                        s.family,
                        s.graph_key,
                    )
                )
    return out


# ============================================================================================== sources
def _sqlite_url(source: str) -> str:
    if "://" in source:
        return source
    path = Path(source).expanduser().absolute()
    if not path.is_file():
        raise DatasetError(f"performance database not found: {path}")
    return f"sqlite:///{path}"


def load_perfdb(
    source: str | os.PathLike[str],
    *,
    home: str | os.PathLike[str] | None = None,
    valid_only: bool = False,
    kind: str | None = "bench",
    device: str | None = None,
    require_kernels: bool = True,
    limit: int | None = None,
    per_family: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[GraphDataset, dict[str, Any]]:
    """Samples straight from a PerfDB (read only), keeping each kernel's per-run durations.

    ``per_family`` keeps each family's first N architectures (model names, in run order) with all their
    runs — every thread count and batch — so a fold-heavy evaluation can run on a balanced part of a large
    collection without losing one family's share pairs.

    ``home`` holds the model store (``models/<hash[:2]>/<hash>.graph.json``); it defaults to the folder of
    a SQLite database file. Runs whose graph cannot be rebuilt are skipped and counted in the report, never
    silently dropped. Returns ``(dataset, report)``.
    """
    from inferperf.dataset.export import (
        GraphUnavailableError,
        device_entry,
        graph_key,
        group_key,
        model_family,
        model_graph,
        run_row,
    )
    from inferperf.dataset.parquet import sample_labels
    from inferperf.store import PerfDB

    url = _sqlite_url(str(source))
    if home is None:
        if not url.startswith("sqlite:///"):
            raise DatasetError("pass home= (the folder holding models/) for a non-SQLite database")
        home = Path(url.removeprefix("sqlite:///")).parent
    home_path = Path(home)
    graphs: dict[str, ModelGraph | None] = {}
    devices: dict[str, dict[str, Any]] = {}
    samples: list[Sample] = []
    report: dict[str, Any] = {"source": url, "runs_seen": 0, "skipped": {}, "warnings": []}
    kept_archs: dict[str, set[str]] = {}  # family -> architectures kept under ``per_family``

    def skip(reason: str) -> None:
        report["skipped"][reason] = report["skipped"].get(reason, 0) + 1

    db = PerfDB.open(url, upgrade=False)
    try:
        for run in db.iter_runs_for_export(
            kind=kind, valid_only=valid_only, with_kernels=True, device=device
        ):
            report["runs_seen"] += 1
            if progress is not None:
                progress(report["runs_seen"])
            if require_kernels and not run.get("kernels"):
                skip("not_profiled")
                continue
            model = run["model_info"]
            if model.get("deleted"):
                skip("deleted_model")
                continue
            family = model_family(model)
            arch = group_key(model["name"])
            if per_family is not None:  # by architecture: one exported again later has another file hash
                kept = kept_archs.setdefault(family, set())
                if arch not in kept:
                    if len(kept) >= per_family:
                        skip("per_family_cap")
                        continue
                    kept.add(arch)
            batch = run.get("batch_size")
            key = graph_key(model["content_hash"], batch)
            if key not in graphs:
                try:
                    graphs[key] = model_graph(model, batch, home=home_path)
                except GraphUnavailableError:
                    graphs[key] = None
            graph = graphs[key]
            if graph is None:
                skip("graph_unavailable")
                continue
            dev_id = str(run["device_id"])
            if dev_id not in devices:
                entry, warning = device_entry(run)
                if warning:
                    report["warnings"].append(warning)
                devices[dev_id] = {
                    "id": dev_id,
                    "name": entry.get("name") or dev_id,
                    "kind": entry.get("kind"),
                    "features": {
                        k: (math.nan if v is None else float(v))
                        for k, v in (entry.get("features") or {}).items()
                    },
                    **({"gpu_name": entry["gpu_name"]} if entry.get("gpu_name") else {}),
                }
            row = run_row(run, key, arch, family)
            config = dict(run.get("config") or {})
            config["status"] = run.get("status")
            config["valid"] = bool(run.get("valid"))
            config["trusted"] = trusted_label(row)
            samples.append(
                Sample(
                    graph=graph,
                    family=family,
                    config=config,
                    device=devices[dev_id],
                    labels=sample_labels(row),
                    kernels=run.get("kernels"),
                    fusion_edges=run.get("fusion_edges"),
                    run_id=int(run["id"]),
                    graph_key=key,
                    group_key=arch,
                )
            )
            if limit is not None and len(samples) >= limit:
                break
    finally:
        db.close()
    dataset = GraphDataset(samples, name="perfdb")
    report["samples"] = len(samples)
    report["graphs"] = len(dataset.graph_keys())
    report["families"] = dataset.families()
    return dataset, report


def load_training_data(source: str | os.PathLike[str], **kwargs: Any) -> GraphDataset:
    """A dataset from a PerfDB (``.db`` file or URL; ``kwargs`` go to :func:`load_perfdb`) or a dataset
    directory / JSON file (through :func:`inferperf.dataset.core.load_dataset`)."""
    from inferperf.dataset.core import load_dataset

    text = str(source)
    if "://" in text or text.endswith((".db", ".sqlite", ".sqlite3")):
        return load_perfdb(text, **kwargs)[0]
    return load_dataset(text)


# ============================================================================================== profiling
def this_device(threads: int = 1) -> dict[str, Any]:
    """The ``Sample.device`` dict of this machine (features without the slow ceiling benchmark)."""
    from inferperf.dataset.parquet import json_features
    from inferperf.device.descriptor import describe_device

    desc = describe_device(threads=max(1, threads), measure_ceilings=False)
    feats = json_features(desc.features())
    return {
        "id": desc.device_id,
        "name": desc.name,
        "kind": desc.kind,
        "features": {k: (math.nan if v is None else float(v)) for k, v in feats.items()},
    }


def profiled_sample(
    model: Any,
    family: str,
    *,
    graph: ModelGraph | None = None,
    metadata: dict[str, Any] | None = None,
    threads: int = 1,
    opt_level: str = "all",
    runs: int = 10,
    warmup: int = 3,
    device: dict[str, Any] | None = None,
) -> Sample:
    """Profile an ONNX model (``ModelProto`` or path) on ORT CPU and return it as a labelled Sample.

    ``latency_ms`` is the median profiled run (the profiler adds a little per-kernel overhead; for clean
    latency use the measurement protocol). Meant for small models: tests, demos, co-location datasets.
    """
    import onnx

    from inferperf.ir.build import build_graph
    from inferperf.measure.kernels import profile_onnx

    if graph is None:
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        graph = build_graph(
            proto, proto.graph.name or family, {"family": family, **(metadata or {})}, infer=True
        )
    prof = profile_onnx(model, intra_op_threads=threads, opt_level=opt_level, runs=runs, warmup=warmup)
    if not prof.run_latency_ms_runs:
        raise InferperfError(f"profiling {graph.name} produced no run latencies")
    config = {
        "runtime": "onnxruntime",
        "provider": "cpu",
        "precision": "fp32",
        "opt_level": opt_level,
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "batch_size": graph.batch_size,
        "attention_fusion": False,
        "valid": True,
    }
    labels = {"latency_ms": float(np.median(prof.run_latency_ms_runs)), "kernel_sum_ms": prof.kernel_sum_ms}
    return Sample(
        graph=graph,
        family=family,
        config=config,
        device=device or this_device(threads),
        labels=labels,
        kernels=[{"ordinal": i, **k.to_dict()} for i, k in enumerate(prof.kernels)],
        fusion_edges=[dict(e) for e in prof.fusion_edges],
    )


def toy_dataset(
    per_family: int = 2,
    seed: int = 0,
    threads: Sequence[int] = (1,),
    families: Sequence[str] | None = None,
    runs: int = 8,
) -> GraphDataset:
    """Profiled toy graphs (:mod:`inferperf.predict.fusion.toy`): a real, small labelled dataset in seconds."""
    from inferperf.predict.fusion.toy import TOY_FAMILIES, toy_models

    devices = {t: this_device(t) for t in threads}
    samples = []
    for fam, model, meta in toy_models(per_family, seed, tuple(families or TOY_FAMILIES)):
        graph = None
        for t in threads:
            s = profiled_sample(
                model, fam, graph=graph, metadata=meta, threads=t, runs=runs, warmup=2, device=devices[t]
            )
            graph = s.graph
            samples.append(s)
    return GraphDataset(samples, name="toy")
