"""The open dataset format: a directory of Parquet tables plus two JSON files.

Why Parquet and why these tables: the dataset is meant to be read by anything (pandas, Spark, DuckDB, R,
PyG), so every table is flat and columnar, graphs are stored once per ``graph_key`` however many runs
measured them, and nothing needs inferperf to be understood — ``docs/dataset.md`` documents every column.

``graphs.parquet``        one row per distinct graph: the full ModelGraph JSON, static features, totals
``nodes.parquet``         one row per node: op type and the node feature vector (fixed-size list<float32>)
``edges.parquet``         one row per data-flow edge: src, dst, tensor, bytes
``runs.parquet``          one row per run: configuration columns, labels, validity, provenance ids
``kernels.parquet``       one row per executed kernel of a profiled run
``fusion_edges.parquet``  one row per graph edge of a profiled run, labelled fused or not
``devices.json``          device descriptors and their feature vectors, keyed by device id
``meta.json``             format version, feature encoding, counts, source, export time

The feature columns are a convenience for non-Python readers and for fast loading; the graph JSON is the
source of truth, so a reader with a newer feature encoding recomputes them instead of trusting stale slots.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inferperf.dataset.core import TARGETS, DatasetError, GraphDataset, Sample
from inferperf.ir.features import (
    NODE_FEATURE_DIM,
    STATIC_FEATURE_DIM,
    EncodingMismatchError,
    check_encoding,
    edge_feature_matrix,
    edge_index,
    node_feature_matrix,
    static_feature_vector,
)
from inferperf.ir.graph import ModelGraph

if TYPE_CHECKING:
    from torch_geometric.data import Data

FORMAT_NAME = "inferperf-parquet-dataset"
FORMAT_VERSION = 1

GRAPHS_FILE = "graphs.parquet"
NODES_FILE = "nodes.parquet"
EDGES_FILE = "edges.parquet"
RUNS_FILE = "runs.parquet"
KERNELS_FILE = "kernels.parquet"
FUSION_FILE = "fusion_edges.parquet"
DEVICES_FILE = "devices.json"
META_FILE = "meta.json"

#: latency statistics exported per run, as ``latency_<stat>_ms``
LATENCY_STATS: tuple[str, ...] = ("p50", "p90", "p95", "p99", "p999", "mean", "min", "max", "std")

#: rows buffered per table before a Parquet row group is written (bounded memory on large exports)
ROW_GROUP_ROWS = 65_536

GRAPHS_SCHEMA = pa.schema(
    [
        ("graph_key", pa.string()),
        ("content_hash", pa.string()),
        ("batch_size", pa.int64()),
        ("name", pa.string()),
        ("family", pa.string()),
        ("zoo", pa.string()),
        ("model_id", pa.int64()),
        ("n_nodes", pa.int64()),
        ("n_edges", pa.int64()),
        ("macs", pa.int64()),
        ("flops", pa.int64()),
        ("params", pa.int64()),
        ("memory_bytes", pa.int64()),
        ("static_features", pa.list_(pa.float32(), STATIC_FEATURE_DIM)),
        ("encoding_version", pa.int32()),
        ("graph_json", pa.large_string()),
    ]
)

NODES_SCHEMA = pa.schema(
    [
        ("graph_key", pa.string()),
        ("node_index", pa.int32()),
        ("name", pa.string()),
        ("op_type", pa.string()),
        ("features", pa.list_(pa.float32(), NODE_FEATURE_DIM)),
    ]
)

EDGES_SCHEMA = pa.schema(
    [
        ("graph_key", pa.string()),
        ("edge_index", pa.int32()),
        ("src", pa.int32()),
        ("dst", pa.int32()),
        ("tensor", pa.string()),
        ("bytes", pa.int64()),
    ]
)

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.int64()),
        ("graph_key", pa.string()),
        ("group_key", pa.string()),
        ("family", pa.string()),
        ("model_id", pa.int64()),
        ("model_name", pa.string()),
        ("model_version", pa.int32()),
        ("content_hash", pa.string()),
        ("device_id", pa.string()),
        ("environment_id", pa.string()),
        ("kind", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("runtime", pa.string()),
        ("provider", pa.string()),
        ("precision", pa.string()),
        ("batch_size", pa.int32()),
        ("intra_op_threads", pa.int32()),
        ("inter_op_threads", pa.int32()),
        ("opt_level", pa.string()),
        ("execution_mode", pa.string()),
        ("config_json", pa.string()),
        ("config_key", pa.string()),
        ("status", pa.string()),
        ("valid", pa.bool_()),
        ("invalid_reasons", pa.list_(pa.string())),
        *[(f"latency_{s}_ms", pa.float64()) for s in LATENCY_STATS],
        ("cv", pa.float64()),
        ("ci95_lo_ms", pa.float64()),
        ("ci95_hi_ms", pa.float64()),
        ("n_samples", pa.int64()),
        ("throughput", pa.float64()),
        ("memory_mb", pa.float64()),
        ("memory_method", pa.string()),
        ("peak_rss_mb", pa.float64()),
        ("arena_mb", pa.float64()),
        ("energy_j", pa.float64()),
        ("energy_source", pa.string()),
        ("power_w", pa.float64()),
        ("cpu_util", pa.float64()),
        ("cold_start_ms", pa.float64()),
        ("session_create_ms", pa.float64()),
        ("first_inference_ms", pa.float64()),
        ("n_kernels", pa.int32()),
        ("n_fusion_edges", pa.int32()),
        ("background_cpu", pa.float64()),
        ("speed_probe_ms", pa.float64()),  # the machine's speed when the run was timed (measure.speed_probe)
    ]
)

KERNELS_SCHEMA = pa.schema(
    [
        ("run_id", pa.int64()),
        ("ordinal", pa.int32()),
        ("name", pa.string()),
        ("op_type", pa.string()),
        ("kernel_type", pa.string()),
        ("provider", pa.string()),
        ("duration_ms", pa.float64()),
        ("covered_nodes", pa.list_(pa.string())),
    ]
)

FUSION_SCHEMA = pa.schema(
    [
        ("run_id", pa.int64()),
        ("src", pa.string()),
        ("dst", pa.string()),
        ("tensor", pa.string()),
        ("fused", pa.bool_()),
    ]
)

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    GRAPHS_FILE: GRAPHS_SCHEMA,
    NODES_FILE: NODES_SCHEMA,
    EDGES_FILE: EDGES_SCHEMA,
    RUNS_FILE: RUNS_SCHEMA,
    KERNELS_FILE: KERNELS_SCHEMA,
    FUSION_FILE: FUSION_SCHEMA,
}

#: Sample label → runs.parquet column. ``latency_ms`` is the median: the statistic the predictors target.
LABEL_COLUMNS: dict[str, str] = {
    "latency_ms": "latency_p50_ms",
    "latency_p90_ms": "latency_p90_ms",
    "latency_p95_ms": "latency_p95_ms",
    "latency_p99_ms": "latency_p99_ms",
    "latency_mean_ms": "latency_mean_ms",
    "latency_min_ms": "latency_min_ms",
    "latency_std_ms": "latency_std_ms",
    "cv": "cv",
    "throughput": "throughput",
    "memory_mb": "memory_mb",
    "peak_rss_mb": "peak_rss_mb",
    "cold_start_ms": "cold_start_ms",
    "energy_j": "energy_j",
}


def is_estimated_energy(source: str | None) -> bool:
    """True when the energy figure is a model (TDP × time), not a hardware counter reading."""
    return source is not None and str(source).startswith("estimate")


# ================================================================================================ writing
class _TableSink:
    """One Parquet file written in row groups, so an export of millions of kernel rows stays bounded."""

    def __init__(self, path: Path, schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        self._row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        # opened eagerly: a table with no rows is still a valid file carrying its schema
        self._writer = pq.ParquetWriter(str(path), schema, compression="zstd")

    def append_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.append_batch(pa.RecordBatch.from_pylist(list(rows), schema=self.schema))

    def append_batch(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._pending_rows >= self._row_group_rows:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending, schema=self.schema))
            self._pending = []
            self._pending_rows = 0

    def close(self) -> None:
        self.flush()
        self._writer.close()


class DatasetWriter:
    """Writes the tables of one dataset into an (empty) directory.

    The exporter decides *what* goes in (which runs, which graph each run belongs to); this class owns *how*
    it is laid out, so the reader below and the writer can never disagree about a column.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sinks = {
            name: _TableSink(self.directory / name, schema) for name, schema in TABLE_SCHEMAS.items()
        }
        self._graph_keys: set[str] = set()
        self._closed = False

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_graph(self, key: str) -> bool:
        return key in self._graph_keys

    def add_graph(
        self,
        key: str,
        graph: ModelGraph,
        *,
        content_hash: str | None,
        batch_size: int | None,
        family: str,
        zoo: str | None = None,
        model_id: int | None = None,
    ) -> None:
        """One graph row plus its node and edge rows; a key already written is ignored."""
        if key in self._graph_keys:
            return
        from inferperf.ir.features import ENCODING_VERSION

        self._graph_keys.add(key)
        static = static_feature_vector(graph)
        self._sinks[GRAPHS_FILE].append_rows(
            [
                {
                    "graph_key": key,
                    "content_hash": content_hash,
                    "batch_size": batch_size,
                    "name": graph.name,
                    "family": family,
                    "zoo": zoo,
                    "model_id": model_id,
                    "n_nodes": len(graph.nodes),
                    "n_edges": len(graph.edges),
                    "macs": graph.macs,
                    "flops": graph.flops,
                    "params": graph.params,
                    "memory_bytes": graph.memory_bytes,
                    "static_features": static.tolist(),
                    "encoding_version": ENCODING_VERSION,
                    "graph_json": json.dumps(graph.to_dict(), separators=(",", ":"), default=str),
                }
            ]
        )
        n = len(graph.nodes)
        if n:
            feats = node_feature_matrix(graph).astype(np.float32, copy=False)
            self._sinks[NODES_FILE].append_batch(
                pa.RecordBatch.from_arrays(
                    [
                        pa.array([key] * n, pa.string()),
                        pa.array(np.arange(n, dtype=np.int32)),
                        pa.array([node.name for node in graph.nodes], pa.string()),
                        pa.array([node.qualified_type for node in graph.nodes], pa.string()),
                        pa.FixedSizeListArray.from_arrays(pa.array(feats.reshape(-1)), NODE_FEATURE_DIM),
                    ],
                    schema=NODES_SCHEMA,
                )
            )
        m = len(graph.edges)
        if m:
            self._sinks[EDGES_FILE].append_batch(
                pa.RecordBatch.from_arrays(
                    [
                        pa.array([key] * m, pa.string()),
                        pa.array(np.arange(m, dtype=np.int32)),
                        pa.array([e.src for e in graph.edges], pa.int32()),
                        pa.array([e.dst for e in graph.edges], pa.int32()),
                        pa.array([e.tensor for e in graph.edges], pa.string()),
                        pa.array([int(e.nbytes) for e in graph.edges], pa.int64()),
                    ],
                    schema=EDGES_SCHEMA,
                )
            )

    def add_run(
        self,
        row: Mapping[str, Any],
        kernels: Iterable[Mapping[str, Any]] | None = None,
        fusion_edges: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        """A runs row (keys of :data:`RUNS_SCHEMA`, missing ones null) with its kernels and fusion edges."""
        if row.get("graph_key") not in self._graph_keys:
            raise DatasetError(f"run {row.get('run_id')}: its graph {row.get('graph_key')!r} was not written")
        run_id = int(row["run_id"])
        self._sinks[RUNS_FILE].append_rows([{name: row.get(name) for name in RUNS_SCHEMA.names}])
        if kernels:
            self._sinks[KERNELS_FILE].append_rows(
                [
                    {
                        "run_id": run_id,
                        "ordinal": int(k["ordinal"]) if k.get("ordinal") is not None else i,
                        "name": k.get("name"),
                        "op_type": k.get("op_type"),
                        "kernel_type": k.get("kernel_type"),
                        "provider": k.get("provider"),
                        "duration_ms": _finite(k.get("duration_ms")),
                        "covered_nodes": None
                        if k.get("covered_nodes") is None
                        else [str(n) for n in k["covered_nodes"]],
                    }
                    for i, k in enumerate(kernels)
                ]
            )
        if fusion_edges:
            self._sinks[FUSION_FILE].append_rows(
                [
                    {
                        "run_id": run_id,
                        "src": str(e["src"]),
                        "dst": str(e["dst"]),
                        "tensor": None if e.get("tensor") is None else str(e["tensor"]),
                        "fused": bool(e["fused"]),
                    }
                    for e in fusion_edges
                ]
            )

    def counts(self) -> dict[str, int]:
        """Rows written per table, by table stem (``graphs``, ``runs``, ``kernels``, ...)."""
        return {name.removesuffix(".parquet"): sink.rows for name, sink in self._sinks.items()}

    def write_json(self, name: str, obj: Any) -> None:
        text = json.dumps(obj, indent=1, sort_keys=False, allow_nan=False, default=str)
        (self.directory / name).write_text(text + "\n", encoding="utf-8")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for sink in self._sinks.values():
            try:
                sink.close()
            except Exception as exc:  # close every file even when one fails; report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def json_features(features: Mapping[str, float]) -> dict[str, float | None]:
    """Feature dict for JSON: NaN (unknown) becomes null, since JSON has no NaN."""
    return {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in features.items()}


# ================================================================================================ reading
def is_parquet_dataset(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / META_FILE).is_file() and (p / RUNS_FILE).is_file()


def read_meta(path: str | Path) -> dict[str, Any]:
    """``meta.json`` of a dataset directory, after checking it is this format at a version we read."""
    directory = Path(path).expanduser()
    if not directory.exists():
        raise DatasetError(f"dataset not found: {directory}")
    if not directory.is_dir():
        raise DatasetError(f"{directory} is not a dataset directory")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise DatasetError(f"{directory} is not an inferperf Parquet dataset (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {meta_path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetError(f"{directory} is not an inferperf Parquet dataset (format {FORMAT_NAME!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{directory}: dataset format version {meta.get('format_version')} is not supported "
            f"(this inferperf reads version {FORMAT_VERSION}); re-export it"
        )
    return meta


def _read_table(directory: Path, name: str, columns: Sequence[str] | None = None) -> pa.Table:
    path = directory / name
    if not path.is_file():
        raise DatasetError(f"{directory}: {name} is missing; the dataset is incomplete")
    try:
        return pq.read_table(str(path), columns=list(columns) if columns is not None else None)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def read_devices(path: str | Path) -> dict[str, dict[str, Any]]:
    """``devices.json``: {device id: {"id", "name", "kind", "descriptor", "features", "feature_vector"}}."""
    file = Path(path) / DEVICES_FILE
    try:
        devices = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{Path(path)}: {DEVICES_FILE} is missing; the dataset is incomplete") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {file}: {exc}") from None
    if not isinstance(devices, dict):
        raise DatasetError(f"{file}: expected an object keyed by device id")
    return devices


def _sample_device(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Sample.device`` dict: id, name, kind, GPU model name and features (unknown = NaN, never 0)."""
    feats = entry.get("features") or {}
    device: dict[str, Any] = {
        "id": str(entry["id"]),
        "name": entry.get("name") or str(entry["id"]),
        "kind": entry.get("kind"),
        "features": {k: (math.nan if v is None else float(v)) for k, v in feats.items()},
    }
    if entry.get("gpu_name"):
        device["gpu_name"] = entry["gpu_name"]
    return device


def read_graphs(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, ModelGraph]:
    """The dataset's graphs by ``graph_key`` (rebuilt from the stored graph JSON); only ``keys`` if given
    (parsing the JSON is most of a dataset's load time)."""
    table = _read_table(Path(path), GRAPHS_FILE, ["graph_key", "graph_json"])
    wanted = set(keys) if keys is not None else None
    graphs: dict[str, ModelGraph] = {}
    for key, text in zip(
        table.column("graph_key").to_pylist(), table.column("graph_json").to_pylist(), strict=True
    ):
        if wanted is not None and key not in wanted:
            continue
        try:
            graphs[key] = ModelGraph.from_dict(json.loads(text))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: graph {key!r} is malformed: {exc!r}") from None
    return graphs


def read_node_features(path: str | Path) -> dict[str, np.ndarray]:
    """Stored node feature matrices by ``graph_key`` ([N, NODE_FEATURE_DIM] float32, node order).

    Raises :class:`~inferperf.ir.features.EncodingMismatchError` when the dataset was written with another
    feature encoding: those slots mean something else here, so recompute from the graphs instead.
    """
    directory = Path(path)
    check_encoding(read_meta(directory).get("encoding"))
    table = _read_table(directory, NODES_FILE).sort_by(
        [("graph_key", "ascending"), ("node_index", "ascending")]
    )
    keys = table.column("graph_key").to_pylist()
    flat = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    matrix = np.array(flat, dtype=np.float32).reshape(len(keys), NODE_FEATURE_DIM)  # a writable copy
    out: dict[str, np.ndarray] = {}
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            out[keys[start]] = matrix[start:i]
            start = i
    return out


def _grouped(table: pa.Table, order: str | None = None) -> dict[int, list[dict[str, Any]]]:
    if order is not None:
        table = table.sort_by([("run_id", "ascending"), (order, "ascending")])
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        run_id = row.pop("run_id")
        out[run_id].append(row)
    return out


#: an ``unstable`` run's median is still a training label when its 95% CI is this tight (relative half-width)
#: over at least TRUSTED_MIN_SAMPLES samples
TRUSTED_CI_REL = 0.02
TRUSTED_MIN_SAMPLES = 30
#: other processes' CPU use (cores) during the timed phase above which no run is trusted
TRUSTED_MAX_BACKGROUND = 0.3


def trusted_label(row: Mapping[str, Any]) -> bool:
    """Whether a run's latency median can be learned from.

    A valid run, yes. An ``unstable`` run (a timing block stayed noisier than the protocol allows: on this
    VM, 23% of zoo graphs, mostly scattered +10–50% outliers) still estimates its median precisely when the
    distribution-free 95% CI of the median is within ±2% over ≥ 30 samples — dropping those would discard a
    quarter of a collection and bias the data against models with jittery timing. Failed runs, never; nor a
    run timed while other processes used more than 0.3 cores (``background_cpu``).
    """
    background = row.get("background_cpu")
    if background is not None and background > TRUSTED_MAX_BACKGROUND:
        return False  # timed while other processes ran: inflated, whatever its spread
    if row.get("valid"):
        return True
    if row.get("status") != "unstable":
        return False
    p50, lo, hi = row.get("latency_p50_ms"), row.get("ci95_lo_ms"), row.get("ci95_hi_ms")
    if not p50 or lo is None or hi is None or (row.get("n_samples") or 0) < TRUSTED_MIN_SAMPLES:
        return False
    return max(p50 - lo, hi - p50) / p50 <= TRUSTED_CI_REL


def sample_labels(row: Mapping[str, Any], estimated_energy: bool = False) -> dict[str, float]:
    """Labels of one runs row; a value that was not measured is absent, never 0.

    ``memory_mb`` is a label only where it is the heap footprint (``memory_method == "heap"``). An energy
    figure that is an estimate (no hardware counter) is kept as ``energy_j_estimate`` and only
    becomes the ``energy_j`` training target when ``estimated_energy`` is set: a TDP model is latency times a
    constant, and a predictor trained on it as if it were measured energy would learn nothing true.
    """
    labels: dict[str, float] = {}
    for label, column in LABEL_COLUMNS.items():
        value = row.get(column)
        if value is None or not math.isfinite(float(value)):
            continue
        if label == "memory_mb" and row.get("memory_method") != "heap":
            # an RSS delta from a long-lived worker reads 0 after the previous model freed its memory: kept in
            # the export, never a training target (see inferperf.measure.memory)
            continue
        if label == "energy_j" and is_estimated_energy(row.get("energy_source")) and not estimated_energy:
            labels["energy_j_estimate"] = float(value)
            continue
        labels[label] = float(value)
    return labels


def read_dataset(
    path: str | Path,
    *,
    valid_only: bool = False,
    with_kernels: bool = True,
    estimated_energy: bool = False,
    name: str | None = None,
    per_family: int | None = None,
) -> GraphDataset:
    """Load an exported directory as a :class:`GraphDataset`: one Sample per run, graphs shared by key.

    ``per_family`` keeps the runs of the first N graphs of each family (in run order) — a quick slice of a
    large dataset, e.g. for tests.

    ``Sample.config`` is the run's configuration as measured, plus ``status`` and ``valid`` so an export
    made with ``--all`` can still be filtered. ``kernels``/``fusion_edges`` are None for runs that were not
    profiled (or when the export or ``with_kernels`` left them out), and a list otherwise.
    """
    directory = Path(path).expanduser()
    meta = read_meta(directory)
    runs = _read_table(directory, RUNS_FILE).sort_by("run_id").to_pylist()
    if valid_only:
        runs = [row for row in runs if row["valid"]]
    if per_family is not None:
        chosen: dict[str, list[str]] = defaultdict(list)
        for row in runs:
            keys = chosen[row["family"]]
            if row["graph_key"] not in keys and len(keys) < per_family:
                keys.append(row["graph_key"])
        keep = {k for keys in chosen.values() for k in keys}
        runs = [row for row in runs if row["graph_key"] in keep]
    graphs = read_graphs(directory, {row["graph_key"] for row in runs})
    devices = {
        dev_id: _sample_device({**entry, "id": dev_id}) for dev_id, entry in read_devices(directory).items()
    }
    include_kernels = with_kernels and bool(meta.get("with_kernels", True))
    kernels = _grouped(_read_table(directory, KERNELS_FILE), "ordinal") if include_kernels else {}
    fusion = _grouped(_read_table(directory, FUSION_FILE)) if include_kernels else {}
    samples: list[Sample] = []
    for row in runs:
        key = row["graph_key"]
        graph = graphs.get(key)
        if graph is None:
            raise DatasetError(
                f"{directory}: run {row['run_id']} refers to graph {key!r}, which is not in {GRAPHS_FILE}"
            )
        device = devices.get(row["device_id"])
        if device is None:
            raise DatasetError(
                f"{directory}: run {row['run_id']} refers to device {row['device_id']!r}, which "
                f"is not in {DEVICES_FILE}"
            )
        try:
            config = json.loads(row["config_json"]) if row.get("config_json") else {}
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{directory}: run {row['run_id']} has malformed config_json: {exc}") from None
        config["status"] = row["status"]
        config["valid"] = bool(row["valid"])
        config["trusted"] = trusted_label(row)
        run_id = int(row["run_id"])
        run_kernels = run_fusion = None
        if include_kernels:
            if row.get("n_kernels") is not None:
                run_kernels = kernels.get(run_id, [])
            if row.get("n_fusion_edges") is not None:
                run_fusion = fusion.get(run_id, [])
        samples.append(
            Sample(
                graph=graph,
                family=row["family"] or "unknown",
                config=config,
                device=device,
                labels=sample_labels(row, estimated_energy),
                kernels=run_kernels,
                fusion_edges=run_fusion,
                run_id=run_id,
                graph_key=key,
                group_key=row.get("group_key") or key,
            )
        )
    return GraphDataset(samples, name=name or directory.name)


# ================================================================================================ stats
def summarize_runs(
    rows: Iterable[Mapping[str, Any]], devices: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The ``dataset stats`` object from run rows (``graph_key``, ``family``, ``device_id``, ``batch_size``,
    ``valid``, ``runtime``, ``n_kernels`` each); the same code serves a database and an exported directory,
    so the two always agree."""
    graphs: set[str] = set()
    family_runs: Counter[str] = Counter()
    family_graphs: dict[str, set[str]] = defaultdict(set)
    device_runs: Counter[str] = Counter()
    batch_runs: Counter[int] = Counter()
    runtimes: Counter[str] = Counter()
    runs = valid = profiled = kernels = 0
    for r in rows:
        runs += 1
        key = str(r["graph_key"])
        fam = r.get("family") or "unknown"
        graphs.add(key)
        family_runs[fam] += 1
        family_graphs[fam].add(key)
        device_runs[str(r["device_id"])] += 1
        if r.get("batch_size") is not None:
            batch_runs[int(r["batch_size"])] += 1
        if r.get("runtime"):
            runtimes[str(r["runtime"])] += 1
        valid += 1 if r.get("valid") else 0
        if r.get("n_kernels") is not None:
            profiled += 1
            kernels += int(r["n_kernels"])
    return {
        "graphs": len(graphs),
        "runs": runs,
        "families": dict(sorted(family_runs.items())),
        "devices": [
            {
                "id": dev_id,
                "name": (devices.get(dev_id) or {}).get("name") or dev_id,
                "kind": (devices.get(dev_id) or {}).get("kind"),
                "runs": n,
            }
            for dev_id, n in sorted(device_runs.items())
        ],
        "valid_runs": valid,
        "profiled_runs": profiled,
        "kernels": kernels,
        "family_graphs": {f: len(keys) for f, keys in sorted(family_graphs.items())},
        "batch_sizes": {str(b): n for b, n in sorted(batch_runs.items())},
        "runtimes": dict(sorted(runtimes.items())),
    }


def dataset_stats(path: str | Path) -> dict[str, Any]:
    """``dataset stats`` of an exported directory (read from its runs table, not from meta.json, so a
    hand-edited or truncated directory is described as it is)."""
    directory = Path(path).expanduser()
    meta = read_meta(directory)
    cols = ["graph_key", "family", "device_id", "batch_size", "valid", "runtime", "n_kernels"]
    rows = _read_table(directory, RUNS_FILE, cols).to_pylist()
    out = summarize_runs(rows, read_devices(directory))
    out["source"] = str(directory)
    out["exported_from"] = meta.get("source")
    out["exported_at"] = meta.get("exported_at")
    return out


# ================================================================================================ PyG
def _device_tensor(device: Mapping[str, Any]) -> list[float]:
    from inferperf.device.descriptor import DEVICE_FEATURE_NAMES

    feats = device.get("features") or {}
    out = []
    for name in DEVICE_FEATURE_NAMES:
        v = feats.get(name)
        out.append(math.nan if v is None else float(v))
    return out


def to_pyg_list(
    dataset: Iterable[Sample],
    targets: Sequence[str] = TARGETS,
    node_features: Mapping[str, np.ndarray] | None = None,
) -> list[Data]:
    """One ``torch_geometric.data.Data`` per sample.

    Attributes are those of :func:`inferperf.ir.features.to_pyg` (``x``, ``edge_index``, ``edge_attr``,
    ``static`` [1, S]) plus ``y`` [1, T] in ``targets`` order with NaN for a missing label (mask it in the
    loss), ``device_x`` [1, D] (``DEVICE_FEATURE_NAMES``, NaN unknown), ``batch_size`` and ``threads`` [1],
    and the plain attributes ``run_id``, ``graph_key``, ``family``, ``device_id``. Graph tensors are built
    once per ``graph_key`` and shared; ``node_features`` (from :func:`read_node_features`) skips recomputing
    ``x``.
    """
    import torch
    from torch_geometric.data import Data

    per_graph: dict[str, dict[str, Any]] = {}
    out: list[Data] = []
    for s in dataset:
        base = per_graph.get(s.graph_key)
        if base is None:
            stored = node_features.get(s.graph_key) if node_features is not None else None
            if stored is not None and stored.shape[0] != len(s.graph.nodes):
                raise DatasetError(
                    f"graph {s.graph_key}: {stored.shape[0]} stored node rows for {len(s.graph.nodes)} nodes"
                )
            x = stored if stored is not None else node_feature_matrix(s.graph)
            base = {
                "x": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                "edge_index": torch.from_numpy(edge_index(s.graph)),
                "edge_attr": torch.from_numpy(edge_feature_matrix(s.graph)),
                "static": torch.from_numpy(static_feature_vector(s.graph)).unsqueeze(0),
            }
            per_graph[s.graph_key] = base
        values = [s.labels.get(t) for t in targets]
        data = Data(
            x=base["x"],
            edge_index=base["edge_index"],
            edge_attr=base["edge_attr"],
            num_nodes=len(s.graph.nodes),
        )
        data.static = base["static"]
        data.y = torch.tensor([[math.nan if v is None else float(v) for v in values]], dtype=torch.float32)
        data.device_x = torch.tensor([_device_tensor(s.device)], dtype=torch.float32)
        batch = s.config.get("batch_size") or s.graph.batch_size
        data.batch_size = torch.tensor([float(batch) if batch else math.nan], dtype=torch.float32)
        threads = s.config.get("intra_op_threads")
        data.threads = torch.tensor([float(threads) if threads else math.nan], dtype=torch.float32)
        data.run_id = s.run_id
        data.graph_key = s.graph_key
        data.family = s.family
        data.device_id = s.device_id
        out.append(data)
    return out


def _pyg_dataset_class() -> type:
    """The InMemoryDataset subclass, created on first use so torch_geometric (6–9 s to import) stays lazy."""
    global _PYG_CLASS
    if _PYG_CLASS is not None:
        return _PYG_CLASS
    from torch_geometric.data import InMemoryDataset

    class ParquetGraphDataset(InMemoryDataset):
        """An exported dataset directory as a PyG ``InMemoryDataset`` (see :func:`to_pyg_list` for the
        attributes of each graph). Stored node features are used when the dataset's feature encoding is
        this inferperf's, recomputed from the graph JSON otherwise."""

        def __init__(
            self,
            path: str | Path,
            targets: Sequence[str] = TARGETS,
            *,
            valid_only: bool = True,
            estimated_energy: bool = False,
            transform: Any = None,
        ) -> None:
            super().__init__(root=None, transform=transform)
            self.path = Path(path)
            self.targets = tuple(targets)
            self.samples = read_dataset(
                path, valid_only=valid_only, with_kernels=False, estimated_energy=estimated_energy
            )
            try:
                stored = read_node_features(path)
                self.features_recomputed = False
            except EncodingMismatchError:
                stored = None
                self.features_recomputed = True
            data_list = to_pyg_list(self.samples, self.targets, stored)
            if not data_list:
                raise DatasetError(f"{path}: no runs to load" + (" (valid_only=True)" if valid_only else ""))
            self._data, self.slices = self.collate(data_list)

    _PYG_CLASS = ParquetGraphDataset
    return _PYG_CLASS


_PYG_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    # ``from inferperf.dataset.parquet import ParquetGraphDataset`` imports torch_geometric only then
    if name == "ParquetGraphDataset":
        return _pyg_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
