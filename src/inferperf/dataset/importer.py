"""Exported dataset (Parquet) → PerfDB: merge datasets from several machines or sessions, resume collection.

The export keeps everything a run needs except its raw samples and full provenance, so an imported run
carries ``provenance.imported_from`` and an empty ``samples_ms``. What the export does keep comes back as it
was — the time the run was measured, its environment id, its speed-probe reading — so export → import →
export gives the same runs table (a resumed collection's export must not re-date the runs it started from).
Models come back as rows with their graph cache (the ModelGraph JSON), not their weights: zoo graphs are
rebuilt from their key when needed.
Importing the same directory twice adds nothing: a run whose (model hash, device, config key, status, median)
is already present is skipped — the median to the nanosecond identifies one measurement.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from inferperf.errors import InferperfError


def import_dataset(
    path: str | Path, db_url: str | None = None, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Load an exported dataset directory into PerfDB; returns counts of models, runs, skipped runs."""
    import pyarrow.parquet as pq

    from inferperf.dataset.export import save_graph_cache
    from inferperf.ir.graph import ModelGraph
    from inferperf.store import PerfDB

    root = Path(path)
    if not (root / "runs.parquet").is_file() or not (root / "graphs.parquet").is_file():
        raise InferperfError(f"{root} is not an exported inferperf dataset (no runs.parquet / graphs.parquet)")
    devices = json.loads((root / "devices.json").read_text()) if (root / "devices.json").is_file() else {}
    graphs = {g["graph_key"]: g for g in pq.read_table(root / "graphs.parquet").to_pylist()}
    runs = pq.read_table(root / "runs.parquet").to_pylist()
    kernels: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if (root / "kernels.parquet").is_file():
        for k in pq.read_table(root / "kernels.parquet").to_pylist():
            kernels[int(k.pop("run_id"))].append(k)
    edges: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if (root / "fusion_edges.parquet").is_file():
        for e in pq.read_table(root / "fusion_edges.parquet").to_pylist():
            edges[int(e.pop("run_id"))].append(e)
    counts = {"models": 0, "runs": 0, "skipped_runs": 0}
    origin = str(root.resolve())  # where every imported run and environment says it came from
    with PerfDB.open(db_url) as db:
        # each run keeps the environment id it was exported with (the export carries no library versions, so
        # the row only says where it came from); a run without one gets the import's own environment
        fallback_env = db.upsert_environment({"imported_from": origin})
        env_ids: dict[str, str] = {}
        device_ids: dict[str, str] = {}
        model_ids: dict[str, int] = {}
        existing = {_marker(r["model_hash"], r["device_id"], r.get("config_key"), r["status"],
                            (r.get("latency_ms") or {}).get("p50")) for r in db.list_runs()}
        for i, row in enumerate(runs):
            dev = row["device_id"]
            if dev not in device_ids:
                descriptor = devices.get(dev, {}).get("descriptor") or devices.get(dev) or {}
                device_ids[dev] = db.upsert_device({**descriptor, "id": dev,
                                                    "name": descriptor.get("name", dev),
                                                    "kind": descriptor.get("kind", "cpu")})
            gkey = row["graph_key"]
            if gkey not in model_ids:
                g = graphs.get(gkey)
                if g is None:
                    counts["skipped_runs"] += 1
                    continue
                graph = ModelGraph.from_dict(json.loads(g["graph_json"]))
                save_graph_cache(g["content_hash"], graph)
                model_ids[gkey] = db.add_model(
                    row["model_name"] or g["name"], g["content_hash"], family=g.get("family"),
                    source=f"zoo:{g['zoo']}" if g.get("zoo") else f"import:{root.name}",
                    tags=[t for t in (g.get("zoo"), g.get("family")) if t],
                    graph_summary={k: v for k, v in graph.summary().items() if k not in ("inputs", "outputs")},
                )
                counts["models"] += 1
            model_id = model_ids[gkey]
            config = json.loads(row["config_json"]) if row.get("config_json") else {}
            marker = _marker(graphs[gkey]["content_hash"], device_ids[dev], row.get("config_key"), row["status"],
                             row.get("latency_p50_ms"))
            if marker in existing:
                counts["skipped_runs"] += 1
                continue
            env = row.get("environment_id")
            if env and env not in env_ids:
                env_ids[env] = db.upsert_environment({"id": env, "imported_from": origin})
            run_id = int(row["run_id"])
            record = _run_record(row, config, kernels.get(run_id), edges.get(run_id), origin)
            created = row.get("created_at")
            db.add_run(record, model_id, device_ids[dev], env_ids[env] if env else fallback_env,
                       kind=row.get("kind") or "bench", config_key=row.get("config_key") or None,
                       created_at=created if isinstance(created, datetime) else None)
            existing.add(marker)
            counts["runs"] += 1
            if progress is not None:
                progress(i + 1, len(runs))
    return counts


def _marker(model_hash: str, device_id: str, config_key: str | None, status: str, p50: float | None) -> tuple:
    return (model_hash, device_id, config_key, status, None if p50 is None else round(float(p50), 6))


def _run_record(
    row: dict[str, Any], config: dict[str, Any], kernels: list | None, edges: list | None, origin: str
) -> dict[str, Any]:
    from inferperf.dataset.parquet import LATENCY_STATS
    from inferperf.measure.speed_probe import PROBE_VERSION

    latency = {s: row.get(f"latency_{s}_ms") for s in LATENCY_STATS}
    has_latency = row.get("latency_p50_ms") is not None
    created = row.get("created_at")
    return {
        "config": config,
        "status": row["status"],
        "valid": bool(row["valid"]),
        "invalid_reasons": list(row.get("invalid_reasons") or []),
        "error": None,
        "latency_ms": latency if has_latency else None,
        "cv": row.get("cv"),
        "ci95_ms": [row.get("ci95_lo_ms"), row.get("ci95_hi_ms")],
        "n_samples": row.get("n_samples") or 0,
        "samples_ms": [],
        **{k: row.get(k) for k in ("throughput", "memory_mb", "peak_rss_mb", "arena_mb", "energy_j",
                                   "energy_source", "power_w", "cpu_util", "cold_start_ms", "session_create_ms",
                                   "first_inference_ms")},
        "kernels": sorted(kernels, key=lambda k: k.get("ordinal", 0)) if kernels is not None else None,
        "fusion_edges": edges,
        "provenance": {"imported_from": origin, "original_run_id": row.get("run_id"),
                       "memory_method": row.get("memory_method"), "background_cpu": row.get("background_cpu"),
                       # the export keeps only the probe's median, and only of the current probe version
                       **({"speed_probe": {"median_ms": row["speed_probe_ms"], "version": PROBE_VERSION}}
                          if row.get("speed_probe_ms") is not None else {})},
        "started_at": created.isoformat() if hasattr(created, "isoformat") else created,
        "duration_s": 0.0,
    }
