"""Dataset collection: profile zoo graphs through the measurement engine into PerfDB, resumably.

For each zoo entry (one graph at one batch size) and each thread count: export (in an export worker),
measure with the adaptive protocol + per-kernel profile + fusion labels (in a measurement worker), and store
the model, its ModelGraph JSON and the run in one transaction. The export of the next graph overlaps the
measurement of the current one when ``pipeline`` is on, each worker pinned to its own core. It is off by
default: measured side by side on 16 zoo graphs, a concurrent export on the other core inflated medians by
12% (median ratio; up to 69%) and tripled the share of runs flagged unstable (5/16 vs 1/16), for 25% more
graphs per hour. Provenance records the mode of every run.

Resumable: every run's ``config_key`` is ``sha256(zoo key + RunConfig.key())``; entries whose keys are all
recorded for this device are skipped before anything is exported. Failures (export errors, crashes,
timeouts) are recorded as failed runs and skipped on resume unless ``retry_failed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferperf.errors import ConfigError


@dataclass
class CollectOptions:
    zoo: str = "all"
    limit: int | None = None
    per_family: int | None = None
    families: list[str] | None = None
    batch_sizes: tuple[int, ...] = (1,)
    threads: tuple[int, ...] = (1,)
    seed: int = 0
    profile: bool = True
    graph_budget_s: float = 180.0
    max_time_s: float = 5.0
    pipeline: bool = False
    retry_failed: bool = False
    retry_unstable: bool = False
    #: on resume, measure again the graphs whose every recorded run was disturbed by other processes
    #: (background load above ``max_background`` even after the re-measurements)
    retry_disturbed: bool = False
    keep_files: bool = False
    db: str | None = None
    #: wait until other processes use at most this many cores before measuring, and measure again (up to
    #: ``quiet_retries`` times) when they used more during the timed phase; None = do not check
    max_background: float | None = 0.3
    quiet_retries: int = 2
    quiet_timeout_s: float = 600.0
    #: time the speed probe (:mod:`inferperf.measure.speed_probe`) before the first graph and then every
    #: this many graphs, and store the latest reading with every run; 0 = never
    probe_every: int = 20


@dataclass
class CollectReport:
    planned: int = 0
    skipped: int = 0
    measured: int = 0
    failed: int = 0
    unstable: int = 0
    remeasured: int = 0
    disturbed: int = 0
    quiet_wait_s: float = 0.0
    speed_probe_ms: list[float] = field(default_factory=list)
    graph_seconds: list[float] = field(default_factory=list)
    export_seconds: list[float] = field(default_factory=list)
    measure_seconds: list[float] = field(default_factory=list)
    families: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        import statistics

        def dist(xs: list[float]) -> dict[str, float] | None:
            if not xs:
                return None
            qs = sorted(xs)
            return {"n": len(xs), "median": statistics.median(xs), "p90": qs[int(0.9 * (len(qs) - 1))],
                    "max": qs[-1], "mean": statistics.fmean(xs)}

        graphs_per_hour = 3600.0 * (self.measured + self.failed) / self.wall_s if self.wall_s else None
        return {
            "planned": self.planned, "skipped": self.skipped, "measured": self.measured, "failed": self.failed,
            "unstable": self.unstable, "remeasured": self.remeasured, "disturbed": self.disturbed,
            "quiet_wait_s": self.quiet_wait_s, "families": self.families, "wall_s": self.wall_s,
            "graphs_per_hour": graphs_per_hour, "graph_s": dist(self.graph_seconds),
            "export_s": dist(self.export_seconds), "measure_s": dist(self.measure_seconds),
            # the machine's speed over the collection: a max/min far above 1 means labels drifted with it
            "speed_probe_ms": dist(self.speed_probe_ms),
        }


def run_key(zoo_key: str, config_key: str) -> str:
    return hashlib.sha256(f"{zoo_key}|{config_key}".encode()).hexdigest()[:32]


def _cores() -> tuple[list[int] | None, list[int] | None]:
    """Export on the first allowed core, measure on the last (None: let the OS place a single-core run)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(allowed) < 2:
        return None, None
    return [allowed[0]], [allowed[-1]]


def collect(options: CollectOptions, progress: Callable[[dict[str, Any]], None] | None = None) -> CollectReport:
    """Run a collection; ``progress`` is called after every graph with a small status dict."""
    from inferperf.device import describe_device
    from inferperf.jobs.workers import Worker
    from inferperf.measure.config import ProtocolConfig, RunConfig
    from inferperf.measure.protocol import library_versions
    from inferperf.measure.result import Measurement
    from inferperf.measure.speed_probe import probe_reading
    from inferperf.store import PerfDB
    from inferperf.zoo import iter_zoo

    if options.limit is None and options.per_family is None:
        raise ConfigError("pass --limit N or --per-family N (the random zoos are unbounded)")
    protocol = ProtocolConfig(max_time_s=options.max_time_s,
                              min_time_s=min(ProtocolConfig.min_time_s, options.max_time_s)).validate()
    configs = [RunConfig(batch_size=1, intra_op_threads=t, profile=options.profile).validate()
               for t in options.threads]
    device = describe_device(threads=max(options.threads), measure_ceilings=True)
    device_dict = {**device.to_dict(), "id": device.fingerprint}
    report = CollectReport()
    started = time.perf_counter()
    export_cores, measure_cores = _cores() if options.pipeline else (None, None)

    with PerfDB.open(options.db) as db:
        device_id = db.upsert_device(device_dict)
        env_id = db.upsert_environment({"libraries": library_versions()})
        done = _recorded_keys(db, device_id, _done_statuses(options))
        if options.retry_disturbed and options.max_background is not None:
            done -= disturbed_keys(db, device_id, options.max_background)
        entries = list(iter_zoo(options.zoo, limit=options.limit, batch_sizes=options.batch_sizes,
                                seed=options.seed, families=options.families, per_family=options.per_family))
        report.planned = len(entries)
        todo = []
        for entry in entries:
            keys = [run_key(entry.key, _config_for(c, entry.batch_size).key()) for c in configs]
            if all(k in done for k in keys):
                report.skipped += 1
            else:
                todo.append(entry)
        exporter = Worker("export", export_cores)
        measurer = Worker("measure", measure_cores)
        try:
            if todo:
                exporter.submit({"entry": todo[0].to_dict()})
            probe: dict[str, Any] | None = None
            for i, entry in enumerate(todo):
                t_graph = time.perf_counter()
                if options.probe_every > 0 and i % options.probe_every == 0:
                    fresh = _speed_probe(measurer, max(options.threads), options.graph_budget_s)
                    if fresh is not None:  # a failed probe keeps the previous reading (its age says so)
                        probe = fresh
                        report.speed_probe_ms.append(fresh["median_ms"])
                exported = exporter.result(options.graph_budget_s)
                if i + 1 < len(todo) and options.pipeline:
                    exporter.submit({"entry": todo[i + 1].to_dict()})
                model_id = None
                if exported.status == "ok":
                    info = exported.value
                    report.export_seconds.append(info["export_s"])
                    model_id = _store_model(db, entry, info)
                for cfg in configs:
                    cfg = _config_for(cfg, entry.batch_size)
                    key = run_key(entry.key, cfg.key())
                    if key in done:
                        continue
                    if exported.status != "ok":
                        record = Measurement.failure(cfg, protocol, "failed" if exported.status == "error"
                                                     else exported.status, f"export: {exported.error}").to_dict()
                        model_id = model_id or _store_failed_model(db, entry)
                    else:
                        t_measure = time.perf_counter()
                        record = _measure_quietly(measurer, {
                            "model_path": info["path"], "config": cfg.to_dict(), "protocol": protocol.to_dict(),
                            "metadata": {"vocab_size": info["metadata"].get("vocab_size")}}, cfg, protocol,
                            options, report, progress)
                        report.measure_seconds.append(time.perf_counter() - t_measure)
                    record["config"]["key"] = cfg.key()
                    record.setdefault("provenance", {})["collector"] = {
                        "zoo_key": entry.key, "pipelined": options.pipeline, "measure_cores": measure_cores,
                        "export_cores": export_cores, "seed": options.seed,
                    }
                    reading = probe_reading(probe)
                    if reading is not None:
                        record["provenance"]["speed_probe"] = reading
                    db.add_run(record, model_id, device_id, env_id, config_key=key)
                    if record["status"] in ("failed", "timeout", "crashed"):
                        report.failed += 1
                    else:
                        report.measured += 1
                        report.unstable += record["status"] == "unstable"
                if i + 1 < len(todo) and not options.pipeline:
                    exporter.submit({"entry": todo[i + 1].to_dict()})
                if exported.status == "ok" and not options.keep_files:
                    _drop_weights(info)
                report.families[entry.family] = report.families.get(entry.family, 0) + 1
                report.graph_seconds.append(time.perf_counter() - t_graph)
                report.wall_s = time.perf_counter() - started
                if progress is not None:
                    progress({"done": i + 1, "total": len(todo), "entry": entry.key, "status": exported.status})
        finally:
            exporter.close()
            measurer.close()
    report.wall_s = time.perf_counter() - started
    return report


def _speed_probe(measurer: Any, threads: int, timeout_s: float) -> dict[str, Any] | None:
    """The probe on the measurement worker's core; None if it failed (the collection goes on without it)."""
    outcome = measurer.run({"speed_probe": {"threads": threads}}, timeout_s)
    return outcome.value if outcome.status == "ok" else None


def _measure_quietly(measurer: Any, task: dict[str, Any], cfg: Any, protocol: Any, options: CollectOptions,
                     report: CollectReport, progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """Measure; when another process disturbed the timed phase, wait for a quiet machine and measure again.

    No waiting before the first attempt (a quiet check costs a second per graph, a quarter of a small
    graph's time): the timed phase's own ``background_cpu`` says whether it was disturbed. The last attempt
    is kept either way, with ``provenance["background_attempts"]`` listing the background load of every
    attempt, so a run that stayed disturbed is visible (and re-measurable) later.
    """
    from inferperf.measure.background import wait_for_quiet
    from inferperf.measure.result import Measurement

    def on_wait(load: float) -> None:
        if progress is not None:
            progress({"waiting": f"machine busy ({load:.2f} other cores): waiting to measure"})

    check = options.max_background is not None and not options.pipeline  # our own exporter is busy then
    attempts: list[float | None] = []
    record: dict[str, Any] = {}
    for attempt in range(1 + max(0, options.quiet_retries)):
        if attempt and check:
            report.quiet_wait_s += wait_for_quiet(options.max_background, timeout_s=options.quiet_timeout_s,
                                                  on_wait=on_wait)
        outcome = measurer.run(task, options.graph_budget_s)
        if outcome.status != "ok":
            status = "failed" if outcome.status == "error" else outcome.status
            return Measurement.failure(cfg, protocol, status, outcome.error or status).to_dict()
        record = outcome.value
        load = (record.get("provenance") or {}).get("background_cpu")
        attempts.append(load)
        if not check or load is None or load <= options.max_background:
            break
        report.remeasured += attempt < options.quiet_retries
    else:
        report.disturbed += 1
    record.setdefault("provenance", {})["background_attempts"] = attempts
    return record


def _done_statuses(options: CollectOptions) -> tuple[str, ...] | None:
    """Which recorded statuses count as done; None = every status (nothing is measured twice)."""
    if not (options.retry_failed or options.retry_unstable):
        return None
    statuses = ["ok"]
    if not options.retry_unstable:
        statuses.append("unstable")
    if not options.retry_failed:
        statuses += ["failed", "timeout", "crashed"]
    return tuple(statuses)


def _config_for(cfg: Any, batch_size: int) -> Any:
    from inferperf.measure.config import RunConfig

    d = cfg.to_dict()
    d["batch_size"] = batch_size
    return RunConfig.from_dict(d)


def _recorded_keys(db: Any, device_id: str, statuses: Iterable[str] | None) -> set[str]:
    from sqlalchemy import select

    from inferperf.store.schema import Run

    stmt = select(Run.config_key).where(Run.device_id == device_id)
    if statuses is not None:
        stmt = stmt.where(Run.status.in_(list(statuses)))
    with db.engine.connect() as conn:
        return {row[0] for row in conn.execute(stmt)}


def disturbed_keys(db: Any, device_id: str, max_cores: float) -> set[str]:
    """Configuration keys whose every recorded run was timed while other processes used > ``max_cores``."""
    from sqlalchemy import select

    from inferperf.store.schema import Run

    good: set[str] = set()
    bad: set[str] = set()
    stmt = select(Run.config_key, Run.provenance).where(Run.device_id == device_id)
    with db.engine.connect() as conn:
        for key, prov in conn.execute(stmt):
            prov = prov or {}
            attempts = prov.get("background_attempts") or [prov.get("background_cpu")]
            last = attempts[-1] if attempts else None
            (bad if last is not None and last > max_cores else good).add(key)
    return bad - good


def _store_model(db: Any, entry: Any, info: dict[str, Any]) -> int:
    from inferperf.ir.graph import ModelGraph
    from inferperf.store.register import store_measured_model

    # the graph cache outlives the weights (dropped after measuring): the dataset export reads it
    graph = ModelGraph.from_dict(json.loads(Path(info["graph_path"]).read_text()))
    meta = info["metadata"]
    model_id, _ = store_measured_model(
        db, info["path"], graph, entry.key, family=entry.family, framework=meta.get("framework") or "pytorch",
        source=f"zoo:{entry.zoo}", tags=[entry.zoo, entry.family, f"batch{entry.batch_size}"],
        input_spec=info["input_spec"], extra_summary={"zoo_params": entry.params},
    )
    return model_id


def _drop_weights(info: dict[str, Any]) -> None:
    """Zoo graphs are regenerated from their key on demand: keep the graph JSON, not gigabytes of weights."""
    from inferperf.store.paths import file_sha256, model_file_path

    path = Path(info["path"])
    if path.exists():
        stored = model_file_path(file_sha256(path))
        stored.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        Path(str(path) + ".data").unlink(missing_ok=True)


def _store_failed_model(db: Any, entry: Any) -> int:
    """A model row for an entry that never produced a file, so its failed run keeps its provenance."""
    placeholder = hashlib.sha256(f"unexported:{entry.key}".encode()).hexdigest()
    return db.add_model(entry.key, placeholder, family=entry.family, framework="pytorch",
                        source=f"zoo:{entry.zoo}", tags=[entry.zoo, entry.family, "export-failed"],
                        graph_summary={"zoo_params": json.loads(json.dumps(entry.params, default=str))})
