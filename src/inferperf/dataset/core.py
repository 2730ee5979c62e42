"""The in-memory dataset the predictors train on: graphs, their run configurations, devices and labels.

A :class:`Sample` is one measured (graph, configuration, device) triple with its labels. The same graph is
usually measured under several configurations (threads, runtimes) and the same architecture at several
batch sizes, so splits never go by sample: they go by ``group_key`` (by default the ``graph_key``), so a
graph — or an architecture, when the builder sets ``group_key`` to it — is never on both sides of a split.
Otherwise a random split would test on graphs the model has already seen with another thread count and
report accuracy that does not transfer to new models.

The JSON format here is deliberately simple (the Parquet export lives in :mod:`inferperf.dataset.parquet`):
graphs are stored once under their ``graph_key`` and samples refer to them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from inferperf.errors import InferperfError
from inferperf.ir.graph import ModelGraph

#: the targets every predictor knows about, in the order of multi-target outputs
TARGETS: tuple[str, ...] = ("latency_ms", "memory_mb", "energy_j")

FORMAT_NAME = "inferperf-graph-dataset"
FORMAT_VERSION = 1
JSON_FILENAME = "dataset.json"

#: graph metadata keys that vary between two builds of the same graph and so stay out of its key
_VOLATILE_METADATA = frozenset({"build_seconds", "path", "export_seconds", "source_path"})


class DatasetError(InferperfError):
    """A dataset cannot be read, is malformed, or cannot be split as asked."""


def graph_fingerprint(graph: ModelGraph) -> str:
    """A stable 16-hex-digit key of a graph's structure and shapes (not of its name or timing metadata).

    Two exports of the same model at the same shapes give the same key, so duplicates can be found even
    when the dataset builder did not set a ``graph_key``.
    """
    nodes = [
        (
            n.qualified_type,
            sorted((k, repr(v)) for k, v in n.attributes.items()),
            [t.shape for t in n.inputs],
            [t.shape for t in n.outputs],
            n.flops,
            n.params,
        )
        for n in graph.nodes
    ]
    edges = [(e.src, e.dst) for e in graph.edges]
    meta = {k: v for k, v in graph.metadata.items() if k not in _VOLATILE_METADATA}
    blob = json.dumps([nodes, edges, [t.shape for t in graph.inputs], meta], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Sample:
    """One measurement: a graph run under ``config`` on ``device``, with its ``labels``.

    ``config`` holds the run settings (``runtime``, ``batch_size``, ``intra_op_threads``, ``opt_level``, …);
    ``device`` is ``{"id", "name", "features": {name: value}}``; ``labels`` holds ``latency_ms`` (the
    median), ``memory_mb``, ``energy_j`` and optional extras such as ``latency_p90_ms``. A label that was
    not measured is absent (never 0). ``group_key`` decides which samples must stay on the same side of a
    split; it defaults to ``graph_key``.
    """

    graph: ModelGraph
    family: str
    config: dict[str, Any]
    device: dict[str, Any]
    labels: dict[str, float]
    kernels: list[dict[str, Any]] | None = None
    fusion_edges: list[dict[str, Any]] | None = None
    run_id: int | None = None
    graph_key: str = ""
    group_key: str = ""

    def __post_init__(self) -> None:
        if not self.graph_key:
            self.graph_key = graph_fingerprint(self.graph)
        if not self.group_key:
            self.group_key = self.graph_key
        if not isinstance(self.device, dict) or "id" not in self.device:
            raise DatasetError(f"sample of {self.graph.name!r}: device must be a dict with an 'id'")

    @property
    def device_id(self) -> str:
        return str(self.device["id"])

    @property
    def trusted(self) -> bool:
        """Whether this run's labels can be learned from: the dataset's ``trusted`` verdict where it gives one
        (Parquet exports: :func:`inferperf.dataset.parquet.trusted_label`), else the protocol's ``valid``."""
        cfg = self.config
        return bool(cfg["trusted"]) if "trusted" in cfg else cfg.get("valid", True) is not False

    def label(self, target: str) -> float | None:
        """The label as a float, or None when missing / not a positive finite number."""
        v = self.labels.get(target)
        if v is None:
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) and f > 0 else None

    def to_dict(self, include_graph: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "family": self.family,
            "config": self.config,
            "device": self.device,
            "labels": self.labels,
            "kernels": self.kernels,
            "fusion_edges": self.fusion_edges,
            "run_id": self.run_id,
            "graph_key": self.graph_key,
            "group_key": self.group_key,
        }
        if include_graph:
            d["graph"] = self.graph.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], graph: ModelGraph | None = None) -> Sample:
        try:
            g = graph if graph is not None else ModelGraph.from_dict(d["graph"])
            return cls(
                graph=g,
                family=str(d["family"]),
                config=dict(d.get("config") or {}),
                device=dict(d["device"]),
                labels={k: float(v) for k, v in (d.get("labels") or {}).items() if v is not None},
                kernels=d.get("kernels"),
                fusion_edges=d.get("fusion_edges"),
                run_id=d.get("run_id"),
                graph_key=str(d.get("graph_key") or ""),
                group_key=str(d.get("group_key") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"malformed dataset sample: {exc!r}") from None


class GraphDataset(Sequence[Sample]):
    """An ordered, list-like collection of :class:`Sample`; slicing and filtering return new datasets that
    share the same Sample objects (nothing is copied)."""

    def __init__(self, samples: Iterable[Sample] = (), name: str = "") -> None:
        self.samples: list[Sample] = list(samples)
        self.name = name

    # ---- list-like ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> GraphDataset: ...

    def __getitem__(self, index: int | slice) -> Sample | GraphDataset:
        if isinstance(index, slice):
            return GraphDataset(self.samples[index], self.name)
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __add__(self, other: GraphDataset) -> GraphDataset:
        return GraphDataset([*self.samples, *other.samples], self.name)

    def __repr__(self) -> str:
        return (
            f"GraphDataset({len(self)} samples, {len(self.graph_keys())} graphs, families={self.families()})"
        )

    def append(self, sample: Sample) -> None:
        self.samples.append(sample)

    def extend(self, samples: Iterable[Sample]) -> None:
        self.samples.extend(samples)

    # ---- views --------------------------------------------------------------------------------------
    def families(self) -> list[str]:
        return sorted({s.family for s in self.samples})

    def devices(self) -> list[dict[str, Any]]:
        """One device dict per distinct device id, in order of first appearance."""
        seen: dict[str, dict[str, Any]] = {}
        for s in self.samples:
            seen.setdefault(s.device_id, s.device)
        return list(seen.values())

    def device_ids(self) -> list[str]:
        return [str(d["id"]) for d in self.devices()]

    def graph_keys(self) -> list[str]:
        return list(dict.fromkeys(s.graph_key for s in self.samples))

    def targets(self) -> list[str]:
        """Targets of :data:`TARGETS` with at least one usable label."""
        return [t for t in TARGETS if any(s.label(t) is not None for s in self.samples)]

    def filter(
        self,
        predicate: Callable[[Sample], bool] | None = None,
        *,
        family: str | None = None,
        families: Iterable[str] | None = None,
        exclude_families: Iterable[str] | None = None,
        device: str | None = None,
        target: str | None = None,
    ) -> GraphDataset:
        """Samples matching every given condition (``device`` is a device id; ``target`` keeps samples
        that carry a usable label for it)."""
        fams = set(families) if families is not None else None
        excl = set(exclude_families or ())

        def keep(s: Sample) -> bool:
            if family is not None and s.family != family:
                return False
            if fams is not None and s.family not in fams:
                return False
            if s.family in excl:
                return False
            if device is not None and s.device_id != device:
                return False
            if target is not None and s.label(target) is None:
                return False
            return predicate is None or predicate(s)

        return GraphDataset([s for s in self.samples if keep(s)], self.name)

    # ---- splits -------------------------------------------------------------------------------------
    def leave_family_out(self, family: str) -> tuple[GraphDataset, GraphDataset]:
        """(every other family, this family): the unseen-architecture protocol."""
        if family not in self.families():
            raise DatasetError(
                f"family {family!r} is not in the dataset (families: {', '.join(self.families())})"
            )
        train = self.filter(exclude_families=[family])
        test = self.filter(family=family)
        return train, test

    def random_split(
        self, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15)
    ) -> tuple[GraphDataset, ...]:
        """Split by ``group_key`` into ``len(fractions)`` parts (70/15/15 by default), reproducibly.

        Fractions are of groups, not samples. Every part with a positive fraction gets at least one group
        when there are enough groups; a dataset with fewer groups than parts raises.
        """
        if not fractions or any(f < 0 for f in fractions) or sum(fractions) <= 0:
            raise DatasetError(f"split fractions must be non-negative and sum to > 0; got {list(fractions)}")
        groups = sorted({s.group_key for s in self.samples})
        needed = sum(1 for f in fractions if f > 0)
        if len(groups) < needed:
            raise DatasetError(f"cannot split {len(groups)} distinct graphs into {needed} non-empty parts")
        random.Random(seed).shuffle(groups)
        counts = _part_sizes(len(groups), fractions)
        assignment: dict[str, int] = {}
        start = 0
        for part, count in enumerate(counts):
            for g in groups[start : start + count]:
                assignment[g] = part
            start += count
        parts: list[list[Sample]] = [[] for _ in fractions]
        for s in self.samples:
            parts[assignment[s.group_key]].append(s)
        return tuple(GraphDataset(p, self.name) for p in parts)

    # ---- description --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts saved with every trained artifact: what the predictor has seen."""
        fam_samples = Counter(s.family for s in self.samples)
        fam_graphs: dict[str, set[str]] = {}
        for s in self.samples:
            fam_graphs.setdefault(s.family, set()).add(s.graph_key)
        node_counts = [len(s.graph.nodes) for s in {s.graph_key: s for s in self.samples}.values()]
        label_counts = {t: sum(1 for s in self.samples if s.label(t) is not None) for t in TARGETS}
        return {
            "name": self.name,
            "n_samples": len(self.samples),
            "n_graphs": len(self.graph_keys()),
            "n_groups": len({s.group_key for s in self.samples}),
            "families": {
                f: {"samples": fam_samples[f], "graphs": len(fam_graphs[f])} for f in sorted(fam_samples)
            },
            "devices": [{"id": d["id"], "name": d.get("name", "")} for d in self.devices()],
            "labels": label_counts,
            "nodes": {
                "min": min(node_counts) if node_counts else 0,
                "max": max(node_counts) if node_counts else 0,
                "mean": round(sum(node_counts) / len(node_counts), 1) if node_counts else 0.0,
            },
        }

    # ---- JSON ---------------------------------------------------------------------------------------
    def to_json(self, path: str | Path) -> Path:
        """Write the dataset; a directory (or a path without a ``.json``/``.json.gz`` suffix) gets
        ``dataset.json`` inside it. Graphs are written once per ``graph_key``. Returns the file written."""
        target = _json_target(Path(path), creating=True)
        graphs: dict[str, Any] = {}
        samples = []
        for s in self.samples:
            graphs.setdefault(s.graph_key, s.graph.to_dict())
            samples.append(s.to_dict(include_graph=False))
        doc = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": self.name,
            "graphs": graphs,
            "samples": samples,
        }
        text = json.dumps(doc, default=_json_default, allow_nan=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".gz":
            with gzip.open(target, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            target.write_text(text, encoding="utf-8")
        return target

    @classmethod
    def from_json(cls, path: str | Path) -> GraphDataset:
        target = _json_target(Path(path), creating=False)
        try:
            if target.suffix == ".gz":
                with gzip.open(target, "rt", encoding="utf-8") as fh:
                    doc = json.load(fh)
            else:
                doc = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"dataset file not found: {target}") from None
        except (OSError, json.JSONDecodeError, EOFError) as exc:
            raise DatasetError(f"cannot read dataset {target}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise DatasetError(f"{target} is not an inferperf graph dataset (format {FORMAT_NAME!r})")
        if doc.get("version") != FORMAT_VERSION:
            raise DatasetError(
                f"{target}: dataset format version {doc.get('version')} is not supported "
                f"(this inferperf reads version {FORMAT_VERSION})"
            )
        graphs: dict[str, ModelGraph] = {}
        try:
            for key, gd in doc["graphs"].items():
                graphs[key] = ModelGraph.from_dict(gd)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{target}: malformed graph: {exc!r}") from None
        samples = []
        for sd in doc.get("samples", []):
            key = sd.get("graph_key")
            if key not in graphs:
                raise DatasetError(f"{target}: sample refers to unknown graph {key!r}")
            samples.append(Sample.from_dict(sd, graph=graphs[key]))
        return cls(samples, name=str(doc.get("name") or target.parent.name))


def _part_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Group counts per part: proportional, at least one for each positive fraction, summing to ``n``."""
    total = float(sum(fractions))
    raw = [f / total * n for f in fractions]
    counts = [round(r) for r in raw]
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0:
            counts[i] = 1
    while sum(counts) > n:  # take from the part furthest above its share that can spare one
        spare = [i for i, c in enumerate(counts) if c > (1 if fractions[i] > 0 else 0)]
        i = max(spare, key=lambda j: counts[j] - raw[j])
        counts[i] -= 1
    while sum(counts) < n:  # give to the positive part furthest below its share
        i = max((j for j, f in enumerate(fractions) if f > 0), key=lambda j: raw[j] - counts[j])
        counts[i] += 1
    return counts


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalar
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _json_target(path: Path, creating: bool) -> Path:
    name = path.name
    if name.endswith((".json", ".json.gz")):
        return path
    if path.is_dir() or creating:
        for candidate in (path / JSON_FILENAME, path / f"{JSON_FILENAME}.gz"):
            if not creating and candidate.exists():
                return candidate
        return path / JSON_FILENAME
    return path


def is_json_dataset(path: str | Path) -> bool:
    p = Path(path)
    if p.is_file():
        return p.name.endswith((".json", ".json.gz"))
    return (p / JSON_FILENAME).exists() or (p / f"{JSON_FILENAME}.gz").exists()


def load_dataset(path_or_url: str | Path) -> GraphDataset:
    """Open a dataset from a directory, a file, or a performance-database URL.

    Order: a JSON dataset (``dataset.json[.gz]`` in the directory, or a ``.json`` file) is read here;
    any other path goes to :func:`inferperf.dataset.parquet.read_dataset` when that module exists; a
    database URL (``sqlite:///…``, ``postgresql://…``) goes to
    :func:`inferperf.dataset.export.dataset_from_db` (valid runs only, through the same export as a
    dataset directory).
    """
    text = str(path_or_url)
    if "://" in text:
        try:
            from inferperf.dataset.export import dataset_from_db
        except ImportError as exc:
            if exc.name not in ("inferperf.dataset.export", None):
                raise
            raise DatasetError(
                "reading a dataset straight from a performance database is not available in this build; "
                "export it to a dataset directory first and pass --dataset DIR"
            ) from None
        return dataset_from_db(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if is_json_dataset(path):
        return GraphDataset.from_json(path)
    try:
        from inferperf.dataset import parquet  # type: ignore[attr-defined]
    except ModuleNotFoundError as exc:
        if exc.name != "inferperf.dataset.parquet":
            raise
        raise DatasetError(
            f"{path} holds no {JSON_FILENAME}, and the Parquet dataset reader is not available in this build"
        ) from None
    return parquet.read_dataset(path)
