"""PerfDB → the open Parquet dataset (:mod:`inferperf.dataset.parquet`).

The database stores, per model, only a graph *summary* and the content-addressed ONNX file; the full
:class:`~inferperf.ir.graph.ModelGraph` a dataset needs is rebuilt from that file. Rebuilding means shape
inference and costing — seconds for a transformer — so each rebuilt graph is cached as JSON next to its
file (``<hash>.graph.json``) and a re-export costs only the Parquet writing.

A graph is identified by ``graph_key`` = the ONNX content hash + the batch size: the same bytes measured
under several configurations (threads, runtimes) are one graph with several runs. ``group_key`` is the model
name without a trailing ``-b<batch>`` (the zoo's key convention), so all batch sizes of one architecture land
on the same side of a split.

The export is written into a temporary directory next to the target and renamed into place at the end, so a
reader never sees half a dataset and an interrupted export leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferperf import __version__
from inferperf.dataset.core import DatasetError, GraphDataset
from inferperf.dataset.parquet import (
    DEVICES_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    LABEL_COLUMNS,
    LATENCY_STATS,
    META_FILE,
    DatasetWriter,
    json_features,
    summarize_runs,
)
from inferperf.errors import InferperfError
from inferperf.ir.build import BUILD_VERSION, upgrade_graph
from inferperf.ir.graph import ModelGraph
from inferperf.measure.speed_probe import PROBE_VERSION
from inferperf.store.paths import file_sha256, model_file_path

if TYPE_CHECKING:
    from inferperf.store.db import PerfDB

GRAPH_CACHE_SUFFIX = ".graph.json"

#: ``progress(done, total)``; total is an upper bound (None when unknown)
ProgressFn = Callable[[int, int | None], None]


class GraphUnavailableError(DatasetError):
    """A model's graph cannot be rebuilt (its file is not in the model store, or no longer loads)."""


# ============================================================================================== keys
def graph_key(content_hash: str, batch_size: int | None) -> str:
    """The dataset key of a graph: content hash (80 bits are plenty to be unique) + batch size."""
    return f"{str(content_hash).lower()[:20]}-b{batch_size if batch_size is not None else 'x'}"


_BATCH_SUFFIX = re.compile(r"-b\d+$")


def group_key(model_name: str) -> str:
    """The split group of a model: its name without a trailing ``-b<batch>``."""
    return _BATCH_SUFFIX.sub("", str(model_name))


def model_family(model: Mapping[str, Any]) -> str:
    """The family label of a model row: its ``family``, else the family its graph metadata names."""
    meta = (model.get("graph_summary") or {}).get("metadata") or {}
    return str(model.get("family") or meta.get("family") or "unknown")


# ============================================================================================== graphs
def graph_cache_path(content_hash: str, batch_size: int | None = None, home: Path | None = None) -> Path:
    """``<hash>.graph.json`` next to the stored model file; ``<hash>.b<N>.graph.json`` for a file whose batch
    dimension is symbolic and had to be bound to build the graph."""
    file = model_file_path(content_hash, home)
    infix = "" if batch_size is None else f".b{int(batch_size)}"
    return file.with_name(f"{file.stem}{infix}{GRAPH_CACHE_SUFFIX}")


def save_graph_cache(
    content_hash: str, graph: ModelGraph, batch_size: int | None = None, home: Path | None = None
) -> Path:
    """Write the graph cache atomically (a concurrent export never reads half a file)."""
    target = graph_cache_path(content_hash, batch_size, home)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=GRAPH_CACHE_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"inferperf_version": __version__, "build_version": BUILD_VERSION, "graph": graph.to_dict()},
                      fh, default=str)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_graph_cache(
    content_hash: str, batch_size: int | None = None, home: Path | None = None
) -> ModelGraph | None:
    """The cached graph, or None when absent, unreadable, or written by another inferperf version (the cost
    formulas may have changed, so a stale graph is rebuilt rather than trusted). A graph of an older builder
    is upgraded (:func:`~inferperf.ir.build.upgrade_graph`): zoo graphs outlive their weights."""
    path = graph_cache_path(content_hash, batch_size, home)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("inferperf_version") != __version__:
            return None
        return upgrade_graph(ModelGraph.from_dict(doc["graph"]), doc.get("build_version"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _model_file(model: Mapping[str, Any], home: Path | None) -> Path:
    content_hash = str(model["content_hash"])
    stored = model_file_path(content_hash, home)
    if stored.is_file():
        return stored
    recorded = model.get("file_path")
    if recorded and Path(recorded).is_file() and file_sha256(recorded) == content_hash:
        return Path(recorded)
    raise GraphUnavailableError(
        f"model {model.get('name')}:{model.get('version')}: its file (sha256 {content_hash[:12]}…) is not in "
        f"the model store ({stored.parent}); export on the machine that measured it, or register the file "
        "again"
    )


def model_graph(
    model: Mapping[str, Any],
    batch_size: int | None = None,
    *,
    home: Path | None = None,
    use_cache: bool = True,
) -> ModelGraph:
    """The full graph of a model row (a ``PerfDB`` model dict), rebuilt from its stored ONNX file and cached.

    ``batch_size`` only matters for a file whose batch dimension is still symbolic. The graph is named after
    the model and its metadata is the one recorded at registration (``graph_summary.metadata``).
    """
    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_onnx_file

    content_hash = str(model["content_hash"])
    graph = None
    if use_cache:
        graph = load_graph_cache(content_hash, None, home)
        if graph is None and batch_size is not None:
            graph = load_graph_cache(content_hash, batch_size, home)
    meta = dict((model.get("graph_summary") or {}).get("metadata") or {})
    if graph is None:
        path = _model_file(model, home)
        try:
            loaded = load_onnx_file(
                path, batch_size=batch_size, seq_len=meta.get("seq_len"), name=model.get("name")
            )
            graph = build_graph(loaded.model, str(model.get("name") or path.stem), meta)
        except InferperfError as exc:
            raise GraphUnavailableError(f"model {model.get('name')}:{model.get('version')}: {exc}") from None
        bound = Path(loaded.path) != path  # a symbolic dimension was bound: the graph depends on the batch
        save_graph_cache(content_hash, graph, batch_size if bound else None, home)
    graph.name = str(model.get("name") or graph.name)
    graph.metadata["family"] = model_family(model)
    if graph.metadata.get("batch_size") is None and graph.batch_size is not None:
        graph.metadata["batch_size"] = graph.batch_size
    return graph


# ============================================================================================== rows
def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_row(run: Mapping[str, Any], key: str, group: str, family: str) -> dict[str, Any]:
    """A ``runs.parquet`` row from a ``PerfDB.iter_runs_for_export`` run dict."""
    config = dict(run.get("config") or {})
    latency = run.get("latency_ms") or {}
    ci = run.get("ci95_ms") or (None, None)
    row: dict[str, Any] = {
        "run_id": int(run["id"]),
        "graph_key": key,
        "group_key": group,
        "family": family,
        "model_id": run.get("model_id"),
        "model_name": run.get("model"),
        "model_version": run.get("model_version"),
        "content_hash": run.get("model_hash"),
        "device_id": run.get("device_id"),
        "environment_id": run.get("environment_id"),
        "kind": run.get("kind"),
        "created_at": _timestamp(run.get("created_at")),
        "runtime": run.get("runtime") or config.get("runtime"),
        "provider": config.get("provider"),
        "precision": config.get("precision"),
        "batch_size": run.get("batch_size")
        if run.get("batch_size") is not None
        else config.get("batch_size"),
        "intra_op_threads": run.get("intra_op_threads")
        if run.get("intra_op_threads") is not None
        else config.get("intra_op_threads"),
        "inter_op_threads": config.get("inter_op_threads"),
        "opt_level": config.get("opt_level"),
        "execution_mode": config.get("execution_mode"),
        "config_json": json.dumps(config, sort_keys=True, default=str),
        "config_key": run.get("config_key"),
        "status": run.get("status"),
        "valid": bool(run.get("valid")),
        "invalid_reasons": list(run.get("invalid_reasons") or []),
        "ci95_lo_ms": ci[0],
        "ci95_hi_ms": ci[1],
    }
    for stat in LATENCY_STATS:
        row[f"latency_{stat}_ms"] = latency.get(stat)
    for name in (
        "cv",
        "n_samples",
        "throughput",
        "memory_mb",
        "peak_rss_mb",
        "arena_mb",
        "energy_j",
        "energy_source",
        "power_w",
        "cpu_util",
        "cold_start_ms",
        "session_create_ms",
        "first_inference_ms",
        "n_kernels",
        "n_fusion_edges",
    ):
        row[name] = run.get(name)
    provenance = run.get("provenance") or {}
    row["memory_method"] = provenance.get("memory_method")
    row["background_cpu"] = provenance.get("background_cpu")
    probe = provenance.get("speed_probe") or {}
    # a median of another probe version times another workload: not comparable, so not exported as one
    row["speed_probe_ms"] = probe.get("median_ms") if probe.get("version") == PROBE_VERSION else None
    return row


def device_entry(run: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The ``devices.json`` entry of a run's device, and a warning when its features cannot be computed.

    Features come from :class:`~inferperf.device.DeviceDescriptor`; a descriptor that is not a full one
    (hand-written, from an older inferperf) gets ``features: null`` and a warning — never zeros.
    """
    from inferperf.device.descriptor import DeviceDescriptor

    descriptor = run.get("device_descriptor") or {}
    entry: dict[str, Any] = {
        "id": str(run["device_id"]),
        "name": run.get("device") or descriptor.get("name") or str(run["device_id"]),
        "kind": run.get("device_kind") or descriptor.get("kind"),
        "descriptor": descriptor,
        "features": None,
        "feature_vector": None,
    }
    try:
        desc = DeviceDescriptor.from_dict(descriptor)
        feats = desc.features()
    except (InferperfError, AttributeError, TypeError, ValueError) as exc:
        return entry, f"device {entry['id']}: no features (its descriptor is incomplete: {exc})"
    entry["features"] = json_features(feats)
    entry["feature_vector"] = list(entry["features"].values())
    gpus = desc.visible_gpus()
    if desc.kind == "gpu" and gpus:
        entry["gpu_name"] = gpus[0].name
    return entry, None


# ============================================================================================== export
def _check_target(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DatasetError(f"{out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    try:
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
        ours = isinstance(meta, dict) and meta.get("format") == FORMAT_NAME
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise DatasetError(
            f"{out} is a non-empty directory that is not an inferperf dataset; refusing to "
            "overwrite it (choose an empty or new directory)"
        )


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with renames on one file system; the old export is restored on failure."""
    tmp.chmod(0o755)  # mkdtemp makes it private; a dataset is meant to be shared
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _open_db(source: PerfDB | str | None) -> tuple[PerfDB, bool]:
    from inferperf.store.db import PerfDB

    if isinstance(source, PerfDB):
        return source, False
    return PerfDB.open(source), True


def _iter_runs(
    db: PerfDB,
    *,
    device: str | None,
    valid_only: bool,
    kind: str | None,
    include_deleted: bool,
    with_kernels: bool,
    skipped: Counter[str],
) -> Iterator[dict[str, Any]]:
    for run in db.iter_runs_for_export(
        device=device, kind=kind, valid_only=valid_only, with_kernels=with_kernels
    ):
        if run["model_info"].get("deleted") and not include_deleted:
            skipped["deleted_model"] += 1
            continue
        yield run


def export_dataset(
    source: PerfDB | str | None,
    out_dir: str | Path,
    *,
    device: str | None = None,
    valid_only: bool = True,
    with_kernels: bool = True,
    kind: str | None = "bench",
    include_deleted: bool = False,
    home: Path | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Export the runs of a performance database (a ``PerfDB`` or its URL) into ``out_dir``; returns the
    dataset's ``meta.json`` (with ``path`` added).

    Runs whose model file cannot be found or loaded are left out, each counted under ``skipped`` in the
    metadata with the reason, so an incomplete export is visible, never silent. Runs of soft-deleted
    models are left out unless ``include_deleted``; ``kind=None`` exports every kind of run.
    """
    from inferperf.device.descriptor import DEVICE_FEATURE_NAMES
    from inferperf.ir.features import encoding_info
    from inferperf.store.db import display_url

    out = Path(out_dir).expanduser().absolute()
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    db, owned = _open_db(source)
    try:
        total = db.count_runs(device=device) if progress is not None else None
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            skipped: Counter[str] = Counter()
            failures: dict[str, dict[str, Any]] = {}
            devices: dict[str, dict[str, Any]] = {}
            warnings: list[str] = []
            families: Counter[str] = Counter()
            done = 0
            with DatasetWriter(tmp) as writer:
                runs = _iter_runs(
                    db,
                    device=device,
                    valid_only=valid_only,
                    kind=kind,
                    include_deleted=include_deleted,
                    with_kernels=with_kernels,
                    skipped=skipped,
                )
                for run in runs:
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    model = run["model_info"]
                    batch = run.get("batch_size")
                    key = graph_key(model["content_hash"], batch)
                    family = model_family(model)
                    if key in failures:
                        failures[key]["runs"] += 1
                        skipped["graph_unavailable"] += 1
                        continue
                    if not writer.has_graph(key):
                        try:
                            graph = model_graph(model, batch, home=home)
                        except GraphUnavailableError as exc:
                            failures[key] = {
                                "graph_key": key,
                                "model": f"{model['name']}:{model['version']}",
                                "reason": str(exc),
                                "runs": 1,
                            }
                            skipped["graph_unavailable"] += 1
                            continue
                        writer.add_graph(
                            key,
                            graph,
                            content_hash=model["content_hash"],
                            batch_size=batch if batch is not None else graph.batch_size,
                            family=family,
                            zoo=graph.metadata.get("zoo"),
                            model_id=model["id"],
                        )
                    if run["device_id"] not in devices:
                        entry, warning = device_entry(run)
                        devices[entry["id"]] = entry
                        if warning:
                            warnings.append(warning)
                    writer.add_run(
                        run_row(run, key, group_key(model["name"]), family),
                        run.get("kernels") if with_kernels else None,
                        run.get("fusion_edges") if with_kernels else None,
                    )
                    families[family] += 1
                counts = writer.counts()
                counts["devices"] = len(devices)
                counts["skipped_runs"] = sum(skipped.values())
                meta: dict[str, Any] = {
                    "format": FORMAT_NAME,
                    "format_version": FORMAT_VERSION,
                    "inferperf_version": __version__,
                    "exported_at": datetime.now(UTC).isoformat(),
                    "source": display_url(db.url),
                    "filters": {
                        "device": device,
                        "valid_only": valid_only,
                        "kind": kind,
                        "include_deleted": include_deleted,
                    },
                    "with_kernels": with_kernels,
                    "counts": counts,
                    "families": dict(sorted(families.items())),
                    "skipped": {"reasons": dict(skipped), "graphs": list(failures.values())},
                    "warnings": warnings,
                    "label_columns": LABEL_COLUMNS,
                    "device_feature_names": list(DEVICE_FEATURE_NAMES),
                    "encoding": encoding_info(),
                }
                writer.write_json(DEVICES_FILE, devices)
                writer.write_json(META_FILE, meta)
            _swap_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        if owned:
            db.close()
    return {**meta, "path": str(out)}


def database_stats(
    source: PerfDB | str | None,
    *,
    device: str | None = None,
    valid_only: bool = False,
    kind: str | None = "bench",
    include_deleted: bool = False,
) -> dict[str, Any]:
    """``dataset stats`` straight from a database: what an export with the same filters would hold
    (graphs keyed as the export keys them; runs whose model file is missing are still counted here)."""
    from inferperf.store.db import display_url

    db, owned = _open_db(source)
    try:
        rows: list[dict[str, Any]] = []
        devices: dict[str, dict[str, Any]] = {}
        skipped: Counter[str] = Counter()
        for run in _iter_runs(
            db,
            device=device,
            valid_only=valid_only,
            kind=kind,
            include_deleted=include_deleted,
            with_kernels=False,
            skipped=skipped,
        ):
            devices.setdefault(run["device_id"], {"name": run.get("device"), "kind": run.get("device_kind")})
            rows.append(
                {
                    "graph_key": graph_key(run["model_hash"], run.get("batch_size")),
                    "family": model_family(run["model_info"]),
                    "device_id": run["device_id"],
                    "batch_size": run.get("batch_size"),
                    "valid": run.get("valid"),
                    "runtime": run.get("runtime"),
                    "n_kernels": run.get("n_kernels"),
                }
            )
        out = summarize_runs(rows, devices)
        out["source"] = display_url(db.url)
        if skipped:
            out["skipped_runs"] = dict(skipped)
        return out
    finally:
        if owned:
            db.close()


def dataset_from_db(
    source: PerfDB | str | None,
    *,
    device: str | None = None,
    valid_only: bool = True,
    with_kernels: bool = False,
    kind: str | None = "bench",
    estimated_energy: bool = False,
) -> GraphDataset:
    """A :class:`GraphDataset` straight from a database, through the same export (to a throw-away
    directory), so training from ``--db`` and from an exported directory can never see different data."""
    from inferperf.dataset.parquet import read_dataset

    with tempfile.TemporaryDirectory(prefix="inferperf-dataset-") as tmp:
        out = Path(tmp) / "dataset"
        export_dataset(
            source, out, device=device, valid_only=valid_only, with_kernels=with_kernels, kind=kind
        )
        return read_dataset(out, with_kernels=with_kernels, estimated_energy=estimated_energy, name="perfdb")
