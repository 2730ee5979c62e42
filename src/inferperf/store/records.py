"""Conversion between the measurement engine's plain dicts and database rows.

The store takes a measurement as the dict produced by ``Measurement.to_dict()`` rather than the class, so it
does not depend on the measurement package. This module validates that dict at the boundary (a malformed
record raises :class:`StoreError` before anything is written), maps it onto columns, keeps every field it
has no column for in ``runs.extra``, and turns rows back into dicts of the same shape.

Numbers are normalised on the way in: numpy scalars become Python numbers, and NaN/inf become NULL — JSON
has no NaN, PostgreSQL's JSONB rejects it, and a missing value must read as missing, never as zero.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import PurePath
from typing import Any

from inferperf.errors import StoreError
from inferperf.store.schema import RUN_STATUSES, Device, Environment, FusionEdge, Kernel, Model, Run

#: latency statistics of ``latency_ms``, each stored in the column ``<key>_ms``
LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p999", "mean", "min", "max", "std")

#: config fields copied into indexed columns (the full config is kept as JSON as well)
CONFIG_INT_COLUMNS = ("batch_size", "intra_op_threads", "inter_op_threads")
CONFIG_STR_COLUMNS = ("runtime", "provider", "precision", "opt_level")

#: scalar float fields of a measurement with a column of the same name
FLOAT_FIELDS = (
    "cv",
    "throughput",
    "cold_start_ms",
    "session_create_ms",
    "first_inference_ms",
    "memory_mb",
    "peak_rss_mb",
    "arena_mb",
    "energy_j",
    "power_w",
    "cpu_util",
    "duration_s",
)

#: measurement fields this module maps explicitly; anything else goes to ``runs.extra``
_MAPPED_FIELDS = frozenset(
    {
        "config",
        "status",
        "valid",
        "invalid_reasons",
        "error",
        "latency_ms",
        "ci95_ms",
        "n_samples",
        "samples_ms",
        "energy_source",
        "kernels",
        "fusion_edges",
        "provenance",
        "started_at",
        *FLOAT_FIELDS,
    }
)


# --------------------------------------------------------------------------------------------- helpers
def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that any JSON column accepts: plain containers, finite numbers, strings.

    numpy scalars and arrays (duck-typed through ``item``/``tolist`` so numpy is not imported), tuples,
    sets, paths and datetimes are converted; NaN and infinities become None.
    """
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((json_safe(v) for v in obj), key=repr)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return json_safe(obj.tolist())
    if hasattr(obj, "item"):
        return json_safe(obj.item())
    raise StoreError(f"cannot store a value of type {type(obj).__name__} as JSON: {obj!r:.80}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) for hashing."""
    return json.dumps(json_safe(obj), sort_keys=True, separators=(",", ":"))


def config_key(config: Mapping[str, Any]) -> str:
    """Stable hash of a run configuration, ignoring a ``key`` field it may already carry.

    Used only when the measurement engine did not put its own ``key`` in the config: resumable collection
    compares keys, so the engine's key, when present, is what is stored.
    """
    body = {k: v for k, v in config.items() if k != "key"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:32]


def environment_id(env: Mapping[str, Any]) -> str:
    """Hash of an environment's JSON: identical library versions share one row."""
    body = {k: v for k, v in env.items() if k != "id"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:32]


def to_float(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise StoreError(f"run field '{field}' must be a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"run field '{field}' must be a number, got {value!r:.60}") from exc
    return number if math.isfinite(number) else None


def to_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise StoreError(f"'{field}' must be an integer, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"'{field}' must be an integer, got {value!r:.60}") from exc
    if not number.is_integer():
        raise StoreError(f"'{field}' must be an integer, got {value!r:.60}")
    return int(number)


def to_datetime(value: Any) -> datetime | None:
    """A timestamp given as datetime, ISO string or epoch seconds, as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise StoreError(f"'started_at' is not an ISO timestamp: {value!r:.60}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise StoreError(f"'started_at' must be a timestamp, got {type(value).__name__}")


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC; SQLite hands back naive datetimes, which were stored as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _str_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise StoreError(f"'{field}' must be a list of strings")
    return [str(v) for v in value]


# ----------------------------------------------------------------------------------------- into rows
def run_columns(run: Mapping[str, Any]) -> dict[str, Any]:
    """Column values of a ``runs`` row from a measurement dict (ids and ``kind`` are the caller's)."""
    if not isinstance(run, Mapping):
        raise StoreError(f"a run must be a dict (Measurement.to_dict()), got {type(run).__name__}")
    config = run.get("config")
    if not isinstance(config, Mapping):
        raise StoreError("the run has no 'config' dict")
    status = run.get("status")
    if status not in RUN_STATUSES:
        raise StoreError(f"run status must be one of {', '.join(RUN_STATUSES)}; got {status!r}")

    cols: dict[str, Any] = {
        "config": json_safe(config),
        "config_key": str(config.get("key") or config_key(config)),
        "status": status,
        "valid": bool(run["valid"]) if run.get("valid") is not None else status == "ok",
        "invalid_reasons": _str_list(run.get("invalid_reasons"), "invalid_reasons"),
        "error": None if run.get("error") is None else str(run["error"]),
        "started_at": to_datetime(run.get("started_at")),
        "energy_source": None if run.get("energy_source") is None else str(run["energy_source"]),
        "provenance": json_safe(run.get("provenance")),
    }
    for name in CONFIG_STR_COLUMNS:
        value = config.get(name)
        cols[name] = None if value is None else str(value)
    for name in CONFIG_INT_COLUMNS:
        cols[name] = to_int(config.get(name), f"config.{name}")
    for name in FLOAT_FIELDS:
        cols[name] = to_float(run.get(name), name)

    latency = run.get("latency_ms")
    if latency is not None and not isinstance(latency, Mapping):
        raise StoreError("'latency_ms' must be a dict of statistics or None")
    for key in LATENCY_KEYS:
        cols[f"{key}_ms"] = to_float(latency.get(key), f"latency_ms.{key}") if latency else None

    ci = run.get("ci95_ms")
    if ci is None:
        cols["ci95_lo_ms"] = cols["ci95_hi_ms"] = None
    else:
        if isinstance(ci, str | Mapping) or len(ci) != 2:
            raise StoreError("'ci95_ms' must be a pair [low, high]")
        cols["ci95_lo_ms"], cols["ci95_hi_ms"] = (to_float(v, "ci95_ms") for v in ci)

    samples = run.get("samples_ms")
    if samples is not None:
        if isinstance(samples, str | Mapping):
            raise StoreError("'samples_ms' must be a list of numbers")
        samples = [to_float(s, "samples_ms") for s in json_safe(samples)]
    cols["samples"] = samples
    n_samples = to_int(run.get("n_samples"), "n_samples")
    cols["n_samples"] = n_samples if n_samples is not None else (len(samples) if samples is not None else None)

    extra = {k: v for k, v in run.items() if k not in _MAPPED_FIELDS}
    cols["extra"] = json_safe(extra) if extra else None
    return cols


def kernel_rows(kernels: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """``kernels`` rows (without run_id), in the order given: that order is the execution order."""
    if kernels is None:
        return []
    rows = []
    for ordinal, k in enumerate(kernels):
        if not isinstance(k, Mapping) or not k.get("name"):
            raise StoreError(f"kernel #{ordinal} must be a dict with a 'name'")
        runs = k.get("duration_ms_runs")
        rows.append(
            {
                "ordinal": ordinal,
                "name": str(k["name"]),
                "op_type": None if k.get("op_type") is None else str(k["op_type"]),
                "kernel_type": None if k.get("kernel_type") is None else str(k["kernel_type"]),
                "provider": None if k.get("provider") is None else str(k["provider"]),
                "duration_ms": to_float(k.get("duration_ms"), "kernels.duration_ms"),
                "duration_ms_runs": None
                if runs is None
                else [to_float(v, "kernels.duration_ms_runs") for v in json_safe(runs)],
                "input_shapes": json_safe(k.get("input_shapes")),
                "output_shapes": json_safe(k.get("output_shapes")),
                "covered_nodes": json_safe(k.get("covered_nodes")),
            }
        )
    return rows


def fusion_rows(edges: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """``fusion_edges`` rows (without run_id)."""
    if edges is None:
        return []
    rows = []
    for i, e in enumerate(edges):
        if not isinstance(e, Mapping) or e.get("src") is None or e.get("dst") is None or "fused" not in e:
            raise StoreError(f"fusion edge #{i} must be a dict with 'src', 'dst' and 'fused'")
        rows.append(
            {
                "src": str(e["src"]),
                "dst": str(e["dst"]),
                "tensor": None if e.get("tensor") is None else str(e["tensor"]),
                "fused": bool(e["fused"]),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------ to dicts
def run_to_dict(run: Run, model: Model | None = None, device: Device | None = None) -> dict[str, Any]:
    """A run as a dict shaped like ``Measurement.to_dict()`` plus its ids and provenance links.

    ``samples_ms``, ``kernels`` and ``fusion_edges`` are added by the caller when asked for: they are the
    bulky parts.
    """
    latency = {key: getattr(run, f"{key}_ms") for key in LATENCY_KEYS}
    has_ci = run.ci95_lo_ms is not None or run.ci95_hi_ms is not None
    out: dict[str, Any] = {
        "id": run.id,
        "kind": run.kind,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "duration_s": run.duration_s,
        "model_id": run.model_id,
        "device_id": run.device_id,
        "environment_id": run.environment_id,
        "config": run.config,
        "config_key": run.config_key,
        "runtime": run.runtime,
        "batch_size": run.batch_size,
        "intra_op_threads": run.intra_op_threads,
        "status": run.status,
        "valid": run.valid,
        "invalid_reasons": list(run.invalid_reasons or []),
        "error": run.error,
        "latency_ms": latency if any(v is not None for v in latency.values()) else None,
        "cv": run.cv,
        "ci95_ms": [run.ci95_lo_ms, run.ci95_hi_ms] if has_ci else None,
        "n_samples": run.n_samples,
        "throughput": run.throughput,
        "cold_start_ms": run.cold_start_ms,
        "session_create_ms": run.session_create_ms,
        "first_inference_ms": run.first_inference_ms,
        "memory_mb": run.memory_mb,
        "peak_rss_mb": run.peak_rss_mb,
        "arena_mb": run.arena_mb,
        "energy_j": run.energy_j,
        "energy_source": run.energy_source,
        "power_w": run.power_w,
        "cpu_util": run.cpu_util,
        "n_kernels": run.n_kernels,
        "n_fusion_edges": run.n_fusion_edges,
        "provenance": run.provenance,
    }
    if model is not None:
        out.update(
            model=model.name,
            model_version=model.version,
            model_family=model.family,
            model_hash=model.content_hash,
        )
    if device is not None:
        out.update(device=device.name, device_kind=device.kind)
    for key, value in (run.extra or {}).items():
        out.setdefault(key, value)
    return out


def kernel_to_dict(k: Kernel) -> dict[str, Any]:
    return {
        "ordinal": k.ordinal,
        "name": k.name,
        "op_type": k.op_type,
        "kernel_type": k.kernel_type,
        "provider": k.provider,
        "duration_ms": k.duration_ms,
        "duration_ms_runs": k.duration_ms_runs,
        "input_shapes": k.input_shapes,
        "output_shapes": k.output_shapes,
        "covered_nodes": k.covered_nodes,
    }


def fusion_to_dict(e: FusionEdge) -> dict[str, Any]:
    return {"src": e.src, "dst": e.dst, "tensor": e.tensor, "fused": e.fused}


def model_to_dict(m: Model, n_runs: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id,
        "name": m.name,
        "version": m.version,
        "content_hash": m.content_hash,
        "family": m.family,
        "framework": m.framework,
        "source": m.source,
        "tags": list(m.tags or []),
        "input_spec": m.input_spec,
        "graph_summary": m.graph_summary,
        "file_path": m.file_path,
        "created_at": iso(m.created_at),
        "deleted": m.deleted,
    }
    if n_runs is not None:
        out["n_runs"] = n_runs
    return out


def device_to_dict(d: Device) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "kind": d.kind,
        "descriptor": d.descriptor,
        "first_seen": iso(d.first_seen),
        "last_seen": iso(d.last_seen),
    }


def environment_to_dict(e: Environment) -> dict[str, Any]:
    return {
        "id": e.id,
        "python": e.python,
        "os": e.os,
        "kernel": e.kernel,
        "versions": e.versions,
        "first_seen": iso(e.first_seen),
    }
