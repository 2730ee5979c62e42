"""Serving overhead and the dynamic-batching gain, side by side on one model (ResNet-50 by default).

1. Overhead per request: the same model, one sample at a time, (a) called in-process (ServedModel.infer,
   no queue, no HTTP) and (b) through ``inferperf serve`` over HTTP with binary tensors, one request
   outstanding. The difference of the medians is what HTTP + the batching queue cost per request; the
   HTTP run's stage breakdown (transmission, queue, server handling, inference) says where it goes.
2. Dynamic batching at saturation: closed-loop load at a high concurrency against the server with
   ``--max-batch 1`` and with ``--max-batch N --max-delay-ms D``, and the same pair in-process (QueueSUT),
   so the HTTP layer's share of any gain is visible.

Alternating A/B is not possible for server restarts, so each configuration runs once per round and the
rounds are repeated (``--rounds``); medians over rounds are reported. Writes
``benchmarks/results/serving_overhead.json``.

    TMPDIR=/tmp .venv/bin/python benchmarks/serving_overhead.py                  # ResNet-50, ~4 min
    TMPDIR=/tmp .venv/bin/python benchmarks/serving_overhead.py --quick          # ~1 min, checks it works
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.load.http_client import HttpClient, encode_infer_request, get_json, wait_ready
from inferperf.load.openloop import HttpWork, run_closed_loop, run_closed_loop_http
from inferperf.load.result import LoadResult
from inferperf.load.sut import ModelRunner, QueueSUT
from inferperf.load.validity import ValidityRules
from inferperf.measure.protocol import library_versions
from inferperf.serve.app import free_port
from inferperf.serve.model import load_served_model

RESULTS = Path(__file__).resolve().parent / "results"
RULES = ValidityRules(min_duration_s=0, min_queries=1)


def summary(r: LoadResult) -> dict[str, Any]:
    lat = r.latency
    return {"qps_achieved": r.qps_achieved, "completed": r.completed, "errors": r.errors,
            "p50_ms": lat.p50 if lat else None, "p99_ms": lat.p99 if lat else None,
            "batch_sizes": r.batch_sizes, "client_cpu": r.client_cpu,
            "stages_mean_ms": {k: v["mean_ms"] for k, v in r.stages.items() if v}}


def in_process_single(served: Any, feeds: list[dict[str, np.ndarray]], duration: float) -> dict[str, Any]:
    samples = []
    deadline = time.perf_counter() + duration
    i = 0
    while time.perf_counter() < deadline:
        t = time.perf_counter_ns()
        served.infer(feeds[i % len(feeds)], 1)
        samples.append((time.perf_counter_ns() - t) / 1e6)
        i += 1
    return {"p50_ms": float(np.median(samples)), "p99_ms": float(np.percentile(samples, 99)), "n": len(samples)}


class Server:
    def __init__(self, model: str, max_batch: int, max_delay_ms: float, threads: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inferperf", "serve", model, "--port", str(self.port), "--max-batch",
             str(max_batch), "--max-delay-ms", str(max_delay_ms), "--threads", str(threads), "--max-queue", "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": os.environ.get("TMPDIR", "/tmp")})
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        wait_ready(self.url, 900)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def http_work(url: str, feeds: list[dict[str, np.ndarray]]) -> HttpWork:
    name = get_json(url + "/v2/repository/index", method="POST")[0]["name"]
    client = HttpClient(url)
    raws = []
    for f in feeds:
        body, headers = encode_infer_request(f)
        raws.append(client.request_bytes("POST", f"/v2/models/{name}/infer", body, headers))
    return HttpWork(len(raws), lambda s: (raws[s], None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop level of the saturation runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    duration = 2.0 if args.quick else args.duration
    rounds = 1 if args.quick else args.rounds
    load_before = os.getloadavg()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # keep ORT's flush-to-zero off the main thread
        served = pool.submit(load_served_model, args.model, max_batch=args.max_batch, threads=args.threads).result()
    feeds = [served.example_feeds(1, seed) for seed in range(8)]
    print(f"{served.name}: batching {served.batching}, cold start {served.cold_start.total_ms:.0f} ms", flush=True)

    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "in_process_single", "http_single", "in_process_b1", "in_process_batched", "http_b1", "http_batched")}
    for rnd in range(rounds):
        rows["in_process_single"].append(in_process_single(served, feeds, duration))
        runner = ModelRunner(served, feeds=feeds)
        for key, mb, delay in (("in_process_b1", 1, 0.0), ("in_process_batched", args.max_batch, args.max_delay_ms)):
            r = run_closed_loop(QueueSUT(runner, max_batch=mb, max_delay_ms=delay), concurrency=args.concurrency,
                                duration_s=duration, sample_count=len(feeds), rules=RULES)
            rows[key].append(summary(r))
        with Server(args.model, 1, 0.0, args.threads) as srv:
            work = http_work(srv.url, feeds)
            r = run_closed_loop_http(srv.url, work, concurrency=1, duration_s=duration, rules=RULES)
            rows["http_single"].append(summary(r))
            r = run_closed_loop_http(srv.url, work, concurrency=args.concurrency, duration_s=duration, rules=RULES)
            rows["http_b1"].append(summary(r))
        with Server(args.model, args.max_batch, args.max_delay_ms, args.threads) as srv:
            work = http_work(srv.url, feeds)
            r = run_closed_loop_http(srv.url, work, concurrency=args.concurrency, duration_s=duration, rules=RULES)
            rows["http_batched"].append(summary(r))
        print(f"round {rnd + 1}: " + ", ".join(
            f"{k} {v[-1].get('qps_achieved') or 0:.1f}/s p50 {v[-1]['p50_ms']:.2f} ms" for k, v in rows.items()),
            flush=True)
    served.close()

    def med(key: str, field: str) -> float | None:
        vals = [r[field] for r in rows[key] if r.get(field) is not None]
        return statistics.median(vals) if vals else None

    overhead = (med("http_single", "p50_ms") or 0) - (med("in_process_single", "p50_ms") or 0)
    result = {
        "benchmark": "serving_overhead",
        "model": args.model,
        "batching": served.batching,
        "quick": args.quick,
        "duration_s": duration,
        "rounds": rounds,
        "max_batch": args.max_batch,
        "max_delay_ms": args.max_delay_ms,
        "concurrency": args.concurrency,
        "threads": args.threads,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "libraries": library_versions(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "runs": rows,
        "summary": {
            "in_process_p50_ms": med("in_process_single", "p50_ms"),
            "http_p50_ms": med("http_single", "p50_ms"),
            "overhead_per_request_ms": overhead,
            # the same thing measured inside each HTTP request (client latency minus the server's inference
            # time), immune to the drift between runs that the difference of two medians carries
            "overhead_from_stages_ms": stage_overhead(rows["http_single"]),
            "http_stages_mean_ms": rows["http_single"][-1]["stages_mean_ms"],
            "throughput_in_process_b1": med("in_process_b1", "qps_achieved"),
            "throughput_in_process_batched": med("in_process_batched", "qps_achieved"),
            "throughput_http_b1": med("http_b1", "qps_achieved"),
            "throughput_http_batched": med("http_batched", "qps_achieved"),
            "batching_gain_http": (med("http_batched", "qps_achieved") or 0) / (med("http_b1", "qps_achieved") or 1),
            "batching_gain_in_process": (med("in_process_batched", "qps_achieved") or 0)
            / (med("in_process_b1", "qps_achieved") or 1),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "serving_overhead.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {out}")


def stage_overhead(runs: list[dict[str, Any]]) -> float | None:
    """Median over rounds of the mean non-inference stage time per request (transmission, queue, server)."""
    values = [sum(v for k, v in (r.get("stages_mean_ms") or {}).items() if k != "inference" and v is not None)
              for r in runs if r.get("stages_mean_ms")]
    return float(np.median(values)) if values else None


if __name__ == "__main__":
    main()
