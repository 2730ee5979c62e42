"""What the load generators can sustain on this machine, so a serving result is never the client's limit.

1. In-process: inferperf's open-loop generator and MLPerf LoadGen (Server scenario) against a no-op
   system behind a QueueSUT, at increasing target rates: achieved rate, late-send share, sender CPU.
   Goal: >= 5,000 queries/s.
2. HTTP: ``inferperf serve`` on a trivial ONNX model (y = x @ W, 4 inputs) in its own process; closed-loop
   capacity at several concurrencies, then open-loop Poisson load at 80% of the best capacity (and at a
   fixed 1,000 req/s): achieved rate, late sends, client and server CPU. Goals: >= 1,000 req/s over HTTP;
   < 1% late sends at 80% of it.

Every figure depends on what else the 2 cores are doing; the machine's load average before and after is
recorded with the results. Writes ``benchmarks/results/load_generator.json``.

    TMPDIR=/tmp .venv/bin/python benchmarks/load_generator.py            # ~1.5 min
    TMPDIR=/tmp .venv/bin/python benchmarks/load_generator.py --quick    # ~20 s, checks it works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.load.http_client import HttpClient, encode_infer_request, wait_ready
from inferperf.load.openloop import HttpWork, run_closed_loop_http, run_open_loop, run_open_loop_http
from inferperf.load.result import LoadResult
from inferperf.load.schedule import arrival_schedule
from inferperf.load.sut import NoopRunner, QueueSUT
from inferperf.load.validity import ValidityRules
from inferperf.measure.protocol import library_versions
from inferperf.serve.app import free_port

RESULTS = Path(__file__).resolve().parent / "results"
RULES = ValidityRules(min_duration_s=0, min_queries=1)


def trivial_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "trivial",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def row(r: LoadResult, **extra: Any) -> dict[str, Any]:
    lat = r.latency
    return {**extra, "qps_target": r.qps_target, "qps_achieved": r.qps_achieved, "completed": r.completed,
            "errors": r.errors, "late_ratio": r.late_ratio, "max_late_ms": r.max_late_ms,
            "client_cpu": r.client_cpu, "p50_ms": lat.p50 if lat else None, "p99_ms": lat.p99 if lat else None,
            "valid": r.valid, "invalid_reasons": r.invalid_reasons}


def in_process(rates: list[float], duration: float) -> list[dict[str, Any]]:
    out = []
    have_loadgen = True
    try:
        from inferperf.load.loadgen import LoadGenSettings, run_loadgen
    except ImportError:
        have_loadgen = False
    for qps in rates:
        r = run_open_loop(QueueSUT(NoopRunner()), arrival_schedule(qps, duration, seed=1), sample_count=1024,
                          rules=RULES)
        out.append(row(r, generator="inferperf-openloop"))
        print(f"in-process openloop {qps:>7.0f}/s: achieved {r.qps_achieved:8.1f}, late {100 * r.late_ratio:5.2f}%, "
              f"sender cpu {100 * (r.client_cpu or 0):4.0f}%", flush=True)
        if have_loadgen:
            settings = LoadGenSettings(min_duration_s=duration, max_duration_s=duration * 3, min_queries=1, qps=qps)
            r = run_loadgen("server", QueueSUT(NoopRunner()), sample_count=1024, settings=settings, rules=RULES)
            out.append(row(r, generator="mlperf-loadgen"))
            print(f"in-process loadgen  {qps:>7.0f}/s: achieved {r.qps_achieved:8.1f}, "
                  f"late {100 * (r.late_ratio or 0):5.2f}%", flush=True)
    return out


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def http(model: Path, duration: float, levels: list[int], fixed_rates: list[float]) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "inferperf", "serve", str(model), "--port", str(port),
                               "--max-queue", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": os.environ.get("TMPDIR", "/tmp")})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 120)
        client = HttpClient(url)
        body, headers = encode_infer_request({"x": np.ones((1, 4), np.float32)})
        raw = client.request_bytes("POST", "/v2/models/trivial/infer", body, headers)
        work = HttpWork(1, lambda s: (raw, None))
        run_closed_loop_http(url, work, concurrency=4, duration_s=min(1.0, duration), rules=RULES)  # warm-up
        closed = []
        for c in levels:
            s0 = cpu_seconds(server.pid)
            r = run_closed_loop_http(url, work, concurrency=c, duration_s=duration, rules=RULES)
            server_cpu = (cpu_seconds(server.pid) - s0) / r.duration_s if r.duration_s else None
            closed.append(row(r, concurrency=c, server_cpu=server_cpu,
                              server_cpu_us_per_req=(server_cpu or 0) * 1e6 / (r.qps_achieved or 1)))
            print(f"http closed-loop c={c:<3}: {r.qps_achieved:8.1f} req/s, p99 {r.latency.p99:7.3f} ms, "
                  f"client cpu {100 * (r.client_cpu or 0):3.0f}%, server cpu {100 * (server_cpu or 0):3.0f}%",
                  flush=True)
        capacity = max(p["qps_achieved"] or 0 for p in closed)
        rates = [round(0.8 * capacity), *fixed_rates]
        open_runs = []
        for qps in rates:
            r = run_open_loop_http(url, work, arrival_schedule(qps, duration, seed=2), rules=RULES)
            open_runs.append(row(r, share_of_capacity=qps / capacity if capacity else None))
            print(f"http open-loop {qps:>6.0f}/s: achieved {r.qps_achieved:8.1f}, late {100 * r.late_ratio:5.2f}%, "
                  f"p99 {r.latency.p99 if r.latency else float('nan'):7.3f} ms, errors {r.errors}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=20)
    return {"closed_loop": closed, "capacity_req_s": capacity, "open_loop": open_runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--quick", action="store_true", help="short runs, only to check the script works")
    args = parser.parse_args()
    duration = 1.0 if args.quick else args.duration
    rates = [1000.0, 5000.0] if args.quick else [1000.0, 2500.0, 5000.0, 8000.0]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model = trivial_model(Path(tmp) / "trivial.onnx")
        inproc = in_process(rates, duration)
        over_http = http(model, duration, [1, 4, 16] if not args.quick else [1, 8], [1000.0])
    best_inproc = max((r["qps_achieved"] or 0) for r in inproc if r["generator"] == "inferperf-openloop")
    result = {
        "benchmark": "load_generator",
        "quick": args.quick,
        "duration_s": duration,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "goals": {"in_process_qps": 5000, "http_req_s": 1000, "late_ratio_at_80pct": 0.01},
        "in_process": inproc,
        "http": over_http,
        "summary": {
            "in_process_best_qps": best_inproc,
            "http_capacity_req_s": over_http["capacity_req_s"],
            "late_ratio_at_80pct_capacity": over_http["open_loop"][0]["late_ratio"],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "load_generator.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {out} (load average {load_before[0]:.2f} before, {result['load_average_after'][0]:.2f} after)")


if __name__ == "__main__":
    main()
