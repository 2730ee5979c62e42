"""``inferperf load``: set up the system under test, run a scenario, monitor resources, store the runs.

Targets:

- **in-process** (a model, no server): the model's session(s) behind a :class:`~inferperf.load.sut.QueueSUT`;
  the four MLPerf scenarios run through LoadGen, the concurrency sweep through the closed-loop generator.
- **served** (``--serve``): ``inferperf serve MODEL`` in a child process on a free loopback port (inside
  a netem-shaped network namespace when ``--network`` asks for it and the machine allows), driven over
  HTTP; cold start is the time from launch to ``/v2/health/ready``.
- **a URL** (``--url``): any KServe v2 server (ours, Triton, KServe), driven over HTTP.

HTTP scenarios use inferperf's own generators (LoadGen's callback SUT does not fit a remote server
well): Server = open-loop Poisson arrivals, SingleStream = one query at a time, MultiStream = N concurrent
requests per query, Offline = a closed loop at high concurrency, plus the sweep and the peak search.
Every run is stored in PerfDB with ``kind="load"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.errors import ConfigError
from inferperf.load.result import LoadResult
from inferperf.load.scenarios import SCENARIOS, best_throughput, concurrency_sweep, peak_search
from inferperf.load.validity import ValidityRules

GENERATORS = ("auto", "loadgen", "openloop")


@dataclass
class LoadOptions:
    """Everything ``inferperf load`` can be asked; see the CLI help for each flag."""

    scenario: str = "server"
    qps: float | None = None
    duration_s: float = 10.0
    target_p99_ms: float | None = None
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4])
    network: str | None = None
    samples_per_query: int = 4
    max_batch: int = 1
    max_delay_ms: float = 0.0
    max_queue: int = 64
    threads: int = 1
    workload: str = "auto"
    samples: int = 64
    seed: int = 0
    generator: str = "auto"
    arrival: str = "poisson"
    late_tolerance_ms: float = 1.0
    min_queries: int = 100
    max_connections: int = 256
    peak_steps: int = 6
    monitor: bool = True
    seq_len: int | None = None
    image_size: int | None = None
    server_start_timeout_s: float = 600.0

    def validate(self) -> LoadOptions:
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"--scenario must be one of {', '.join(SCENARIOS)}; got {self.scenario!r}")
        if self.generator not in GENERATORS:
            raise ConfigError(f"--generator must be one of {', '.join(GENERATORS)}; got {self.generator!r}")
        if self.scenario == "server" and not (self.qps and self.qps > 0):
            raise ConfigError("the server scenario needs a positive --qps")
        if self.scenario == "peak" and not (self.target_p99_ms and self.target_p99_ms > 0):
            raise ConfigError("the peak search needs --target-p99-ms (the latency SLO)")
        if not self.duration_s > 0:
            raise ConfigError("--duration must be positive")
        if self.samples < 1 or self.samples_per_query < 1 or self.max_batch < 1 or self.threads < 1:
            raise ConfigError("--samples, --samples-per-query, --max-batch and --threads must be >= 1")
        return self

    def rules(self, target_p99_ms: float | None = None) -> ValidityRules:
        return ValidityRules(min_duration_s=0.9 * self.duration_s, min_queries=self.min_queries,
                             late_tolerance_ms=self.late_tolerance_ms, target_p99_ms=target_p99_ms)


# ------------------------------------------------------------------------------------------------ targets


@dataclass
class _Target:
    kind: str  # in-process | http
    name: str
    specs: list[Any]
    metadata: dict[str, Any]
    describe: dict[str, Any]
    cold_start_ms: float | None = None
    session_create_ms: float | None = None
    first_inference_ms: float | None = None
    served: Any = None
    url: str | None = None
    server_pid: int | None = None
    model_path: str | None = None
    network: dict[str, Any] | None = None
    shaper: Any = None
    server_max_batch: int = 1


def _specs_from_metadata(meta: dict[str, Any]) -> list[Any]:
    from inferperf.serve.model import V2_TO_NUMPY, TensorSpec

    specs = []
    for item in meta.get("inputs") or []:
        dtype = V2_TO_NUMPY.get(item.get("datatype"))
        shape = list(item.get("shape") or [])
        if dtype is None or not shape:
            raise ConfigError(f"the server describes input {item.get('name')!r} as {item.get('datatype')} "
                              f"{shape}; only numeric tensors with a batch dimension can be generated")
        rest = shape[1:]
        if any(not isinstance(d, int) or d < 0 for d in rest):
            raise ConfigError(f"input {item.get('name')!r} has a dynamic non-batch dimension {shape}")
        specs.append(TensorSpec(str(item["name"]), dtype, tuple(rest)))
    if not specs:
        raise ConfigError("the server's model metadata lists no inputs")
    return specs


def _http_metadata(url: str, model_name: str | None) -> tuple[str, dict[str, Any]]:
    from inferperf.load.http_client import HttpError, get_json

    base = url.rstrip("/")
    if model_name is None:
        try:
            index = get_json(base + "/v2/repository/index", method="POST")
        except HttpError as exc:
            raise ConfigError(f"name the model (the server has no repository index: {exc})") from None
        if not index:
            raise ConfigError(f"{url} serves no model")
        model_name = str(index[0]["name"])
    return model_name, get_json(f"{base}/v2/models/{model_name}")


@contextlib.contextmanager
def _spawned_server(model: str, opts: LoadOptions, prefix: list[str], host: str) -> Iterator[tuple[str, Any, float]]:
    """``inferperf serve`` in a child process; yields (url, process, cold start ms)."""
    from inferperf.load.http_client import HttpError, get_json
    from inferperf.serve.app import free_port

    port = free_port("127.0.0.1") if host.startswith("127.") else 8000 + os.getpid() % 1000
    cmd = [*prefix, sys.executable, "-m", "inferperf", "serve", model, "--host", host, "--port", str(port),
           "--max-batch", str(opts.max_batch), "--max-delay-ms", str(opts.max_delay_ms),
           "--max-queue", str(opts.max_queue), "--threads", str(opts.threads)]
    if opts.seq_len:
        cmd += ["--seq-len", str(opts.seq_len)]
    if opts.image_size:
        cmd += ["--image-size", str(opts.image_size)]
    log_fd, log_path = tempfile.mkstemp(prefix="inferperf-serve-", suffix=".log")
    log = os.fdopen(log_fd, "w")
    env = {**os.environ, "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://{host}:{port}"
    try:
        deadline = t0 + opts.server_start_timeout_s
        while True:
            if proc.poll() is not None:
                tail = Path(log_path).read_text(errors="replace")[-2000:]
                raise ConfigError(f"the server exited with code {proc.returncode} during start-up:\n{tail}")
            try:
                if get_json(url + "/v2/health/ready", timeout_s=2).get("ready"):
                    break
            except HttpError:
                pass
            if time.perf_counter() > deadline:
                raise ConfigError(f"the server was not ready within {opts.server_start_timeout_s:g} s")
            time.sleep(0.05)
        cold_ms = (time.perf_counter() - t0) * 1e3
        yield url, proc, cold_ms
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        os.unlink(log_path)


# ------------------------------------------------------------------------------------------------ workloads


def _example_feeds(specs: list[Any], metadata: dict[str, Any]) -> Callable[[int, int], dict[str, np.ndarray]]:
    from inferperf.runtimes.base import InputSpec, make_feeds

    def make(rows: int, seed: int) -> dict[str, np.ndarray]:
        ispecs = [InputSpec(s.name, (rows, *s.row_shape), s.dtype) for s in specs]
        return make_feeds(ispecs, {s.name: (rows, *s.row_shape) for s in specs}, seed, metadata)

    return make


def _workload(target: _Target, opts: LoadOptions) -> Any:
    from inferperf.load.probes import WORKLOAD_KINDS, build_workload

    kind, source = (opts.workload, None) if opts.workload in WORKLOAD_KINDS else ("auto", opts.workload)
    return build_workload(target.specs, kind=kind, source=source, count=opts.samples, seed=opts.seed,
                          metadata=target.metadata, example_feeds=_example_feeds(target.specs, target.metadata))


def _http_work(target: _Target, workload: Any) -> Any:
    from inferperf.load.http_client import HttpClient, decode_infer_response, encode_infer_request
    from inferperf.load.openloop import HttpWork

    assert target.url is not None
    client = HttpClient(target.url)
    path = f"/v2/models/{target.name}/infer"

    def build(feeds: dict[str, np.ndarray]) -> bytes:
        body, headers = encode_infer_request(feeds)
        return client.request_bytes("POST", path, body, headers)

    post = workload.postprocess
    pipeline = workload.raw is not None

    def finish(body: bytes, hlen: int | None) -> float | None:
        t = time.perf_counter_ns()
        outputs, _ = decode_infer_response(body, hlen)
        post(outputs)
        return (time.perf_counter_ns() - t) / 1e6

    if not pipeline:
        prebuilt = [build(f) for f in workload.feeds]
        return HttpWork(len(prebuilt), lambda s: (prebuilt[s], None), None)

    def prepare(s: int) -> tuple[bytes, float | None]:
        t = time.perf_counter_ns()
        feeds = workload.sample_feeds(s)
        pre_ms = (time.perf_counter_ns() - t) / 1e6
        return build(feeds), pre_ms

    return HttpWork(workload.sample_count, prepare, finish if post is not None else None)


# ------------------------------------------------------------------------------------------------ runs


def _estimate_inprocess(runner: Any, max_batch: int) -> tuple[float, float]:
    """(median single-sample latency ms, batched samples/s) from a few warm runs: sizes LoadGen's queries."""
    one = []
    for i in range(5):
        t = time.perf_counter_ns()
        runner.run([i % runner.sample_count])
        one.append((time.perf_counter_ns() - t) / 1e6)
    batch = [i % runner.sample_count for i in range(max_batch)]
    t = time.perf_counter_ns()
    runner.run(batch)
    batched_s = (time.perf_counter_ns() - t) / 1e9
    return float(np.median(one)), len(batch) / max(batched_s, 1e-9)


class _Runs:
    """Builds the function that performs one run of the chosen kind against the target."""

    def __init__(self, target: _Target, opts: LoadOptions, workload: Any) -> None:
        self.target = target
        self.opts = opts
        self.workload = workload
        self.use_loadgen = False
        if target.kind == "in-process":
            from inferperf.load.loadgen import loadgen_available
            from inferperf.load.sut import ModelRunner

            self.runner = ModelRunner(target.served, feeds=workload.feeds, raw=workload.raw,
                                      preprocess=workload.preprocess, postprocess=workload.postprocess)
            if opts.generator == "loadgen" and not loadgen_available():
                raise ConfigError("--generator loadgen: MLPerf LoadGen is not installed "
                                  "(pip install mlcommons-loadgen)")
            self.use_loadgen = opts.generator != "openloop" and loadgen_available()
            self.single_ms, self.batched_qps = _estimate_inprocess(self.runner, opts.max_batch)
        else:
            self.work = _http_work(target, workload)

    def _sut(self) -> Any:
        from inferperf.load.sut import QueueSUT

        return QueueSUT(self.runner, max_batch=self.opts.max_batch, max_delay_ms=self.opts.max_delay_ms)

    def _monitored(self, fn: Callable[[], LoadResult]) -> LoadResult:
        if not self.opts.monitor:
            return fn()
        from inferperf.load.monitor import ResourceMonitor

        pids = [os.getpid()] + ([self.target.server_pid] if self.target.server_pid else [])
        mon = ResourceMonitor(pids).start()
        try:
            result = fn()
        finally:
            summary = mon.stop()
        result.resources = summary
        return result

    def run(self, scenario: str, *, qps: float | None = None, concurrency: int | None = None) -> LoadResult:
        result = self._monitored(lambda: self._run(scenario, qps, concurrency))
        t = self.target
        result.target = dict(t.describe)
        result.cold_start_ms = t.cold_start_ms
        result.session_create_ms = t.session_create_ms
        result.first_inference_ms = t.first_inference_ms
        result.network = t.network
        return result

    def _run(self, scenario: str, qps: float | None, concurrency: int | None) -> LoadResult:
        opts = self.opts
        rules = opts.rules(opts.target_p99_ms if scenario in ("server", "peak") else None)
        if self.target.kind == "in-process":
            return self._run_inprocess(scenario, qps, concurrency, rules)
        return self._run_http(scenario, qps, concurrency, rules)

    def _run_inprocess(self, scenario: str, qps: float | None, concurrency: int | None,
                       rules: ValidityRules) -> LoadResult:
        from inferperf.load.openloop import run_closed_loop, run_open_loop
        from inferperf.load.schedule import arrival_schedule

        opts = self.opts
        n = self.runner.sample_count
        if scenario == "concurrency":
            return run_closed_loop(self._sut(), concurrency=concurrency or 1, duration_s=opts.duration_s,
                                   sample_count=n, rules=rules, scenario="concurrency")
        if self.use_loadgen:
            from inferperf.load.loadgen import LoadGenSettings, run_loadgen

            settings = LoadGenSettings(
                min_duration_s=opts.duration_s, max_duration_s=max(3 * opts.duration_s, opts.duration_s + 30),
                min_queries=opts.min_queries, qps=qps, target_latency_ms=opts.target_p99_ms,
                samples_per_query=opts.samples_per_query, expected_latency_ms=max(self.single_ms / 2, 0.001),
                expected_qps=2.0 * self.batched_qps, seed=opts.seed)
            return run_loadgen(scenario, self._sut(), sample_count=n, settings=settings, rules=rules)
        if scenario == "server":
            assert qps is not None
            schedule = arrival_schedule(qps, opts.duration_s, process=opts.arrival, seed=opts.seed)
            return run_open_loop(self._sut(), schedule, sample_count=n, rules=rules, scenario="server")
        if scenario == "single-stream":
            return run_closed_loop(self._sut(), concurrency=1, duration_s=opts.duration_s, sample_count=n,
                                   rules=rules, scenario="single-stream")
        if scenario == "offline":
            return run_closed_loop(self._sut(), concurrency=2 * opts.max_batch, duration_s=opts.duration_s,
                                   sample_count=n, rules=rules, scenario="offline")
        raise ConfigError("in-process multi-stream needs MLPerf LoadGen (pip install mlcommons-loadgen) "
                          "or an HTTP target")

    def _run_http(self, scenario: str, qps: float | None, concurrency: int | None,
                  rules: ValidityRules) -> LoadResult:
        from inferperf.load.openloop import run_closed_loop_http, run_open_loop_http
        from inferperf.load.schedule import arrival_schedule

        opts, t = self.opts, self.target
        assert t.url is not None
        common = {"rules": rules, "shaper": t.shaper}
        if scenario == "server":
            assert qps is not None
            schedule = arrival_schedule(qps, opts.duration_s, process=opts.arrival, seed=opts.seed)
            return run_open_loop_http(t.url, self.work, schedule, scenario="server",
                                      max_connections=opts.max_connections, **common)
        if scenario == "single-stream":
            return run_closed_loop_http(t.url, self.work, concurrency=1, duration_s=opts.duration_s,
                                        scenario="single-stream", **common)
        if scenario == "multi-stream":
            return run_closed_loop_http(t.url, self.work, concurrency=1, duration_s=opts.duration_s,
                                        samples_per_query=opts.samples_per_query, scenario="multi-stream", **common)
        if scenario == "offline":
            level = max([*opts.concurrency, 2 * t.server_max_batch])
            return run_closed_loop_http(t.url, self.work, concurrency=level, duration_s=opts.duration_s,
                                        scenario="offline", **common)
        return run_closed_loop_http(t.url, self.work, concurrency=concurrency or 1, duration_s=opts.duration_s,
                                    scenario="concurrency", **common)

    def peak_bounds(self) -> tuple[float, float]:
        """(low, high) rates to bisect: --qps is the upper bound; else twice a quick capacity estimate."""
        if self.opts.qps:
            return max(self.opts.qps / 32, 0.5), float(self.opts.qps)
        if self.target.kind == "in-process":
            capacity = self.batched_qps
        else:
            probe = self._run_http("concurrency", None, max(2 * self.target.server_max_batch, 4),
                                   ValidityRules(min_duration_s=0, min_queries=1))
            capacity = probe.qps_achieved or 1.0
        return max(capacity / 32, 0.5), 2.0 * capacity


# ------------------------------------------------------------------------------------------------ main


def run_load(
    model: str | None,
    options: LoadOptions,
    *,
    url: str | None = None,
    serve: bool = False,
    db: str | None = None,
    store: bool = True,
) -> dict[str, Any]:
    """Run the requested scenario and return the ``inferperf load --json`` object (runs stored in PerfDB)."""
    opts = options.validate()
    if url and serve:
        raise ConfigError("--url and --serve exclude each other")
    if not url and not model:
        raise ConfigError("name a model (an .onnx file or an architecture) or a --url")
    if opts.network and not (url or serve):
        raise ConfigError("--network shapes traffic between a client and a server: use --serve or --url")
    with contextlib.ExitStack() as stack:
        target = _setup_target(stack, model, url, serve, opts)
        workload = _workload(target, opts)
        target.describe["workload"] = workload.describe()
        runs = _Runs(target, opts, workload)
        output, results = _execute(runs, opts)
        if store:
            run_ids = _store(results, target, opts, db)
            output["run_ids"] = run_ids
            if len(run_ids) == 1:
                output["run_id"] = run_ids[0]
        return output


def _setup_target(stack: contextlib.ExitStack, model: str | None, url: str | None, serve: bool,
                  opts: LoadOptions) -> _Target:
    network = None
    shaper = None
    prefix: list[str] = []
    host = "127.0.0.1"
    if opts.network:
        from inferperf.load.network import AppShaper, NetemLink, get_profile, netem_status

        profile = get_profile(opts.network)
        usable, why = netem_status() if serve else (False, "the server at --url is outside a namespace of ours")
        if usable:
            link = stack.enter_context(NetemLink(profile))
            prefix, host = link.exec_prefix, link.server_ip
            network = link.describe()
        else:
            shaper = AppShaper(profile, seed=opts.seed)
            network = {"profile": profile.name, "method": "app", "reason": why, **profile.to_dict()}
    if url is None and not serve:
        from inferperf.serve.model import load_served_model

        assert model is not None
        served = load_served_model(model, max_batch=opts.max_batch, threads=opts.threads, seq_len=opts.seq_len,
                                   image_size=opts.image_size)
        stack.callback(served.close)
        cold = served.cold_start
        return _Target("in-process", served.name, list(served.inputs), dict(served.metadata),
                       {"kind": "in-process", "model": served.name, **served.describe(), "rows_per_sample": 1},
                       cold_start_ms=cold.total_ms, session_create_ms=cold.session_create_ms,
                       first_inference_ms=cold.first_inference_ms, served=served, model_path=served.model_path,
                       network=network, server_max_batch=opts.max_batch)
    cold_ms = None
    server_pid = None
    model_path = None
    if serve:
        assert model is not None
        url, proc, cold_ms = stack.enter_context(_spawned_server(model, opts, prefix, host))
        server_pid = proc.pid
    assert url is not None
    name, meta = _http_metadata(url, model if not serve and model else None)
    params = meta.get("parameters") or {}
    if serve:
        model_path = params.get("model_path")
    describe = {"kind": "http", "url": url, "model": name, "platform": meta.get("platform"),
                "server": {k: params.get(k) for k in ("batching", "max_batch", "max_delay_ms", "max_queue")},
                "spawned": serve, "rows_per_sample": 1}
    metadata = {k: params[k] for k in ("vocab_size", "family") if params.get(k) is not None}
    return _Target("http", name, _specs_from_metadata(meta), metadata, describe, cold_start_ms=cold_ms,
                   url=url, server_pid=server_pid, model_path=model_path, network=network, shaper=shaper,
                   server_max_batch=int(params.get("max_batch") or 1))


def _execute(runs: _Runs, opts: LoadOptions) -> tuple[dict[str, Any], list[LoadResult]]:
    if opts.scenario == "concurrency":
        points = concurrency_sweep(lambda c: runs.run("concurrency", concurrency=c), opts.concurrency)
        best = best_throughput(points)
        out = {**best.summary(), "scenario": "concurrency", "best_concurrency": best.concurrency,
               "points": [p.summary() for p in points]}
        return out, points
    if opts.scenario == "peak":
        assert opts.target_p99_ms is not None
        lo, hi = runs.peak_bounds()
        results: list[LoadResult] = []

        def run_at(qps: float) -> LoadResult:
            r = runs.run("server", qps=qps)
            r.scenario = "peak"
            results.append(r)
            return r

        search = peak_search(run_at, slo_ms=opts.target_p99_ms, lo_qps=lo, hi_qps=hi, max_steps=opts.peak_steps,
                             max_late_ratio=opts.rules().max_late_ratio)
        base = search.best.summary() if search.best else {
            "qps_target": None, "qps_achieved": None, "latency_ms": None, "valid": False,
            "invalid_reasons": [search.note or "no rate met the SLO"], "late_ratio": None, "stages": None,
            "cold_start_ms": runs.target.cold_start_ms}
        out = {**base, "scenario": "peak", "peak_qps": search.peak_qps, "search": search.to_dict()}
        return out, results
    kwargs: dict[str, Any] = {"qps": opts.qps} if opts.scenario == "server" else {}
    result = runs.run(opts.scenario, **kwargs)
    return result.summary(), [result]


def _store(results: list[LoadResult], target: _Target, opts: LoadOptions, db: str | None) -> list[int]:
    from inferperf.device import describe_device
    from inferperf.measure.config import RunConfig
    from inferperf.measure.protocol import library_versions
    from inferperf.store import PerfDB
    from inferperf.store.paths import put_model_file

    device = describe_device(threads=opts.threads, measure_ceilings=False)
    device_dict = {**device.to_dict(), "id": device.fingerprint}
    config = RunConfig(batch_size=1, intra_op_threads=opts.threads).to_dict()
    config["serving"] = {"target": target.kind, "max_batch": opts.max_batch, "max_delay_ms": opts.max_delay_ms,
                         "max_queue": opts.max_queue, "network": opts.network}
    ids = []
    with PerfDB.open(db) as perfdb:
        device_id = perfdb.upsert_device(device_dict)
        env_id = perfdb.upsert_environment({"libraries": library_versions(), "python": sys.version.split()[0]})
        if target.model_path and Path(target.model_path).is_file():
            content_hash = put_model_file(target.model_path)
            source = target.metadata.get("source") or target.model_path
        else:
            canonical = json.dumps({"url": target.url, "name": target.name,
                                    "inputs": [[s.name, s.dtype, list(s.row_shape)] for s in target.specs]},
                                   sort_keys=True)
            content_hash = hashlib.sha256(canonical.encode()).hexdigest()
            source = target.url
        model_id = perfdb.add_model(target.name, content_hash, family=target.metadata.get("family"),
                                    framework="onnx", source=source,
                                    input_spec={s.name: {"shape": [-1, *s.row_shape], "dtype": s.dtype}
                                                for s in target.specs})
        for r in results:
            record = r.to_run_dict(config)
            if target.kind == "http" and not target.describe.get("spawned"):
                record["config"]["runtime"] = "remote"  # a server someone else runs: its runtime is unknown
            ids.append(perfdb.add_run(record, model_id, device_id, env_id, kind="load"))
    return ids
