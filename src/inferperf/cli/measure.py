"""``inferperf bench``, ``inferperf device`` and ``inferperf noise``: measurement from the command line.

Each configuration is measured in a child process (a crash, OOM or hang becomes a recorded failed run) and
stored in PerfDB in one transaction, with its device, environment and model. ``--json`` prints one object:
``{"device": {...}, "runs": [...]}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from inferperf.cli.main import app
from inferperf.errors import ConfigError


def parse_int_list(text: str, what: str) -> list[int]:
    """``"1,8,16"`` → ``[1, 8, 16]`` with a clear error for anything else."""
    try:
        values = [int(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"--{what} must be a comma-separated list of integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--{what} values must be positive integers, got '{text}'")
    return list(dict.fromkeys(values))


def _progress(disable: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), disable=disable, transient=True,
    )


def run_bench(
    model: str,
    *,
    runtime: str = "onnxruntime",
    batches: list[int] = (1,),  # type: ignore[assignment]
    threads: list[int] = (1,),  # type: ignore[assignment]
    opt_level: str = "all",
    profile: bool = False,
    attention_fusion: bool = False,
    db: str | None = None,
    timeout_s: float = 600.0,
    max_time_s: float = 10.0,
    protocol_mode: str = "adaptive",
    seq_len: int | None = None,
    image_size: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    overrides: dict[str, Any] | None = None,
    family: str | None = None,
    show_progress: bool = True,
    on_result: Any = None,
) -> dict[str, Any]:
    """Measure every (batch, threads) configuration of one model and store each run; the ``bench`` job."""
    from inferperf.device import describe_device
    from inferperf.ir.architectures import is_architecture_name
    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_model
    from inferperf.measure.config import ProtocolConfig, RunConfig
    from inferperf.measure.isolation import measure_model
    from inferperf.measure.protocol import library_versions
    from inferperf.store import PerfDB
    from inferperf.store.register import store_measured_model

    protocol = ProtocolConfig(mode=protocol_mode, max_time_s=max_time_s,
                              min_time_s=min(ProtocolConfig.min_time_s, max_time_s)).validate()
    configs = [
        RunConfig(runtime=runtime, batch_size=b, intra_op_threads=t, opt_level=opt_level, profile=profile,
                  attention_fusion=attention_fusion)
        for b in batches
        for t in threads
    ]
    for cfg in configs:
        cfg.validate()
    device = describe_device(threads=max(threads), measure_ceilings=True)
    device_dict = {**device.to_dict(), "id": device.fingerprint}
    runs: list[dict[str, Any]] = []
    with PerfDB.open(db) as perfdb, _progress(not show_progress) as progress:
        device_id = perfdb.upsert_device(device_dict)
        env_id = perfdb.upsert_environment({"libraries": library_versions(), "python": sys.version.split()[0]})
        task = progress.add_task(f"bench {model}", total=len(configs))
        loaded_by_batch: dict[int, Any] = {}
        for cfg in configs:
            progress.update(task, description=f"{model} b={cfg.batch_size} t={cfg.intra_op_threads}")
            loaded = loaded_by_batch.get(cfg.batch_size)
            if loaded is None:
                loaded = load_model(model, batch_size=cfg.batch_size, seq_len=seq_len, image_size=image_size,
                                    input_shapes=input_shapes, overrides=overrides)
                graph = build_graph(loaded.model, loaded.name, loaded.metadata)
                loaded.metadata["model_id"], _ = store_measured_model(
                    perfdb, loaded.path, graph, loaded.name, family=family or loaded.metadata.get("family"),
                    framework=loaded.metadata.get("framework"), source=loaded.metadata.get("source"),
                    input_spec=loaded.input_spec,
                )
                loaded_by_batch[cfg.batch_size] = loaded
            target: Any = loaded.path
            if runtime != "onnxruntime":
                if not is_architecture_name(model):
                    raise ConfigError(f"--runtime {runtime} needs an architecture name (an ONNX file runs on "
                                      "onnxruntime)")
                target = {
                    "factory": "inferperf.ir.architectures:build_with_inputs",
                    "kwargs": {"name": model, "overrides": overrides or {}, "batch_size": cfg.batch_size,
                               "seq_len": seq_len, "image_size": image_size},
                }
            metadata = {k: loaded.metadata.get(k) for k in ("vocab_size", "family", "architecture")}
            m = measure_model(target, cfg, protocol, timeout_s=timeout_s, metadata=metadata)
            record = m.to_dict()
            record["config"]["key"] = cfg.key()
            run_id = perfdb.add_run(record, loaded.metadata["model_id"], device_id, env_id,
                                    config_key=cfg.key())
            record["run_id"] = run_id
            record["model"] = {"name": loaded.name, "id": loaded.metadata["model_id"], "path": loaded.path}
            runs.append(record)
            if on_result is not None:
                on_result(record)
            progress.advance(task)
    return {"device": device_dict, "runs": runs}


#: other processes' CPU use (in cores) above which a measurement is reported as taken on a busy machine
BUSY_CORES = 0.3


def busy_warning(run: dict[str, Any]) -> str | None:
    """One line when other processes ran during the timed phase (their cache and memory traffic slows the
    model even on another core), else None."""
    load = (run.get("provenance") or {}).get("background_cpu")
    if load is None or load <= BUSY_CORES:
        return None
    return (f"the machine was busy while timing ({load:.2f} cores used by other processes): the latency is "
            "likely inflated; measure again on a quiet machine")


def _public_run(r: dict[str, Any], samples: bool) -> dict[str, Any]:
    out = dict(r)
    if not samples:
        out.pop("samples_ms", None)
    return out


def _print_runs(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    dev = result["device"]
    table = Table(title=f"{dev['name']} ({dev['id']})")
    for col in ("run", "b", "t", "p50 ms", "p90 ms", "p99 ms", "cv", "inf/s", "cold ms", "MB", "J", "status"):
        table.add_column(col, justify="right")
    for r in result["runs"]:
        lat = r.get("latency_ms") or {}
        cfg = r["config"]

        def f(x: Any, nd: int = 2) -> str:
            return "—" if x is None else f"{x:.{nd}f}"

        energy = f(r.get("energy_j"), 3) + ("*" if r.get("energy_source") == "estimate" else "")
        status = r["status"] if r["valid"] else f"[red]{r['status']}[/red]"
        table.add_row(str(r.get("run_id")), str(cfg["batch_size"]), str(cfg["intra_op_threads"]),
                      f(lat.get("p50"), 3), f(lat.get("p90"), 3), f(lat.get("p99"), 3), f(r.get("cv"), 3),
                      f(r.get("throughput"), 1), f(r.get("cold_start_ms"), 1), f(r.get("memory_mb"), 1),
                      energy, status)
    console.print(table)
    if any(r.get("energy_source") == "estimate" for r in result["runs"]):
        console.print("* energy is an estimate (no RAPL/NVML counter readable here), not a measurement")
    for r in result["runs"]:
        busy = busy_warning(r)
        if busy:
            console.print(f"[yellow]run {r.get('run_id')}: {busy}[/yellow]")
        if not r["valid"]:
            console.print(f"[red]run {r.get('run_id')}: {'; '.join(r['invalid_reasons']) or r.get('error')}[/red]")
        kernels = r.get("kernels")
        if kernels:
            top = sorted(kernels, key=lambda k: k["duration_ms"], reverse=True)[:8]
            kt = Table(title=f"run {r.get('run_id')}: top kernels of {len(kernels)}")
            for col in ("kernel", "type", "ms", "covers"):
                kt.add_column(col)
            for k in top:
                kt.add_row(k["name"][:48], k["kernel_type"], f"{k['duration_ms']:.3f}",
                           str(len(k.get("covered_nodes") or [])))
            console.print(kt)


@app.command()
def bench(
    model: str = typer.Argument(..., help="An .onnx file or an architecture name."),
    runtime: str = typer.Option("onnxruntime", help="onnxruntime | torch | torch-compile"),
    batch: str = typer.Option("1", "--batch", "-b", help="Batch sizes, comma-separated."),
    threads: str = typer.Option("1", "--threads", "-t", help="Intra-op thread counts, comma-separated."),
    opt_level: str = typer.Option("all", help="ORT graph optimization: disable | basic | extended | all."),
    profile: bool = typer.Option(False, "--profile", help="Also record per-kernel profile + fusion labels."),
    attention_fusion: bool = typer.Option(False, help="Apply onnxscript's ORT attention fusion first."),
    db: str = typer.Option(None, "--db", help="PerfDB URL or SQLite path (default: $INFERPERF_HOME/perf.db)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    samples: bool = typer.Option(False, "--samples", help="Include raw samples in --json output."),
    timeout: float = typer.Option(600.0, help="Seconds before a configuration's child process is killed."),
    max_time: float = typer.Option(10.0, help="Timing cap per configuration (seconds of timed calls)."),
    protocol: str = typer.Option("adaptive", help="adaptive | fixed (30 runs, no stopping rule)."),
    seq_len: int = typer.Option(None, "--seq-len", help="Sequence length for text models."),
    image_size: int = typer.Option(None, "--image-size", help="Image size for vision models."),
    inputs: list[str] = typer.Option(None, "--input", help="Bind an input shape: NAME=1x3x224x224."),
    overrides: list[str] = typer.Option(None, "--set", help="Architecture config override KEY=VALUE."),
) -> None:
    """Benchmark a model: adaptive protocol, cold start, memory, energy, optional kernel profile → PerfDB."""
    from inferperf.ir.ingest import parse_input_shapes, parse_overrides

    result = run_bench(
        model, runtime=runtime, batches=parse_int_list(batch, "batch"), threads=parse_int_list(threads, "threads"),
        opt_level=opt_level, profile=profile, attention_fusion=attention_fusion, db=db, timeout_s=timeout,
        max_time_s=max_time, protocol_mode=protocol, seq_len=seq_len, image_size=image_size,
        input_shapes=parse_input_shapes(inputs), overrides=parse_overrides(overrides), show_progress=not as_json,
    )
    if as_json:
        typer.echo(json.dumps({"device": result["device"],
                               "runs": [_public_run(r, samples) for r in result["runs"]]}, default=str))
    else:
        _print_runs(result)
    # unstable runs are stored flagged (valid=False) but were measured; a run that could not be measured fails
    if any(r["status"] in ("failed", "crashed", "timeout") for r in result["runs"]):
        raise typer.Exit(1)


@app.command()
def device(
    threads: int = typer.Option(1, help="Threads the ceilings are measured with."),
    refresh: bool = typer.Option(False, help="Re-measure the ceilings instead of using the cache."),
    ceilings: bool = typer.Option(True, help="Measure (or read cached) GEMM and bandwidth ceilings."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe this machine: CPU/GPU identity, caches, ISA, memory, measured ceilings, stable id."""
    from inferperf.device import describe_device

    d = describe_device(threads=threads, measure_ceilings=ceilings, refresh=refresh)
    data = {**d.to_dict(), "id": d.fingerprint}
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    cpu = data["cpu"]
    t = Table(title=f"{data['name']}  id={data['id']}", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    t.add_row("cpu", f"{cpu.get('model_name')} ({cpu.get('vendor')}, {cpu.get('arch')})")
    t.add_row("cores / logical", f"{cpu.get('physical_cores')} / {cpu.get('logical_cpus')}")
    t.add_row("frequency MHz", f"base {cpu.get('base_freq_mhz')}, max {cpu.get('max_freq_mhz')}, "
                               f"now {cpu.get('current_freq_mhz')}")
    t.add_row("caches", f"L1d {cpu.get('l1d_bytes')}, L2 {cpu.get('l2_bytes')}, L3 {cpu.get('l3_bytes')} bytes")
    t.add_row("ISA", " ".join(cpu.get("isa") or []))
    t.add_row("memory", f"{(cpu.get('memory_bytes') or 0) / 2**30:.1f} GiB")
    c = data.get("ceilings")
    if c:
        t.add_row("peak GEMM GFLOP/s", f"{c.get('peak_gflops'):.1f} @ {c.get('threads')} thread(s)")
        t.add_row("copy bandwidth GB/s", f"{c.get('mem_bandwidth_gbs'):.1f}")
    else:
        t.add_row("ceilings", str(data.get("ceilings_reason")))
    t.add_row("GPUs", ", ".join(g["name"] for g in data["gpus"]) or f"none ({data.get('gpu_reason')})")
    Console().print(t)


@app.command()
def noise(
    model: str = typer.Argument("resnet50", help="An .onnx file or an architecture name."),
    minutes: float = typer.Option(3.0, help="How long to keep re-measuring."),
    threads: int = typer.Option(1, help="Intra-op threads."),
    batch: int = typer.Option(1, help="Batch size."),
    max_time: float = typer.Option(5.0, help="Timing cap per repetition (seconds)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure one model repeatedly for several minutes and report the spread of medians (noise floor)."""
    import statistics
    import time

    from inferperf.ir.ingest import load_model
    from inferperf.measure.config import ProtocolConfig, RunConfig
    from inferperf.measure.isolation import measure_model

    loaded = load_model(model, batch_size=batch)
    cfg = RunConfig(batch_size=batch, intra_op_threads=threads).validate()
    protocol = ProtocolConfig(max_time_s=max_time, min_time_s=min(ProtocolConfig.min_time_s, max_time)).validate()
    medians: list[float] = []
    cvs: list[float] = []
    unstable = 0
    deadline = time.monotonic() + minutes * 60
    with _progress(as_json) as progress:
        task = progress.add_task(f"noise {model}", total=None)
        while time.monotonic() < deadline or len(medians) < 3:
            m = measure_model(loaded.path, cfg, protocol, timeout_s=max(120.0, 4 * max_time),
                              metadata={"vocab_size": loaded.metadata.get("vocab_size")})
            if not m.latency_ms:
                raise ConfigError(f"measurement failed: {m.error}")
            medians.append(m.latency_ms["p50"])
            cvs.append(m.cv or 0.0)
            unstable += 0 if m.valid else 1
            progress.update(task, description=f"noise {model}: {len(medians)} medians, last {medians[-1]:.3f} ms")
    med = statistics.median(medians)
    out = {
        "model": loaded.name, "threads": threads, "batch": batch, "minutes": minutes, "repetitions": len(medians),
        "medians_ms": medians, "median_of_medians_ms": med,
        "spread_rel": (max(medians) - min(medians)) / med,
        "stdev_rel": statistics.stdev(medians) / med if len(medians) > 1 else 0.0,
        "cv_median": statistics.median(cvs), "unstable_runs": unstable,
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"{loaded.name}: {len(medians)} medians over {minutes:g} min, median {med:.3f} ms, "
               f"spread (max-min)/median {100 * out['spread_rel']:.2f}%, stdev {100 * out['stdev_rel']:.2f}%, "
               f"typical CV {100 * out['cv_median']:.2f}%, unstable {unstable}")
