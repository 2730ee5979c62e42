"""``inferperf serve`` (a KServe v2 inference server) and ``inferperf load`` (load scenarios → PerfDB).

Heavy imports (onnxruntime, FastAPI, uvicorn, LoadGen) stay inside the commands so ``inferperf --help``
stays fast.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.parse
from typing import Any

import typer

from inferperf.cli.main import app
from inferperf.errors import ConfigError


def parse_levels(text: str) -> list[int]:
    """``"1,2,4"`` → ``[1, 2, 4]``."""
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"--concurrency must be a comma-separated list of integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--concurrency values must be positive integers, got '{text}'")
    return values


def check_local_url(url: str) -> None:
    """Refuse load against anything but this machine (loopback) or a namespace of our own (link-local).

    A load generator is a traffic cannon; pointing it at another host must be a deliberate choice
    (``--allow-remote``), not a typo.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise ConfigError(f"--url must look like http://127.0.0.1:8000, got {url!r}")
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 80, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ConfigError(f"cannot resolve {parsed.hostname}: {exc}") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not (addr.is_loopback or addr.is_link_local):
            raise ConfigError(f"{parsed.hostname} resolves to {addr}, which is not a loopback or link-local "
                              "address; pass --allow-remote to load a remote server on purpose")


@app.command()
def serve(
    model: str = typer.Argument(..., help="An .onnx file or an architecture name."),
    port: int = typer.Option(8000, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (default: loopback only)."),
    max_batch: int = typer.Option(1, "--max-batch", help="Largest batch the dynamic batcher forms."),
    max_delay_ms: float = typer.Option(0.0, "--max-delay-ms", help="How long a batch may wait for more requests."),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests that may wait; beyond it the server answers 503."),
    threads: int = typer.Option(1, "--threads", help="Intra-op threads of the model session."),
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", help="Largest request body (413 beyond it)."),
    batching: str = typer.Option("auto", help="auto | rewritten | buckets (how variable batches are run)."),
    name: str = typer.Option(None, "--name", help="Model name in URLs (default: the file stem / architecture)."),
    seq_len: int = typer.Option(None, "--seq-len", help="Sequence length for text models."),
    image_size: int = typer.Option(None, "--image-size", help="Image size for vision models."),
) -> None:
    """Serve a model over HTTP (KServe v2 / Open Inference Protocol) with dynamic batching and /metrics."""
    from inferperf.serve.app import ServerSettings, serve_forever
    from inferperf.serve.model import load_served_model

    if max_queue < 1 or max_delay_ms < 0 or max_body_mb <= 0:
        raise ConfigError("--max-queue must be >= 1, --max-delay-ms >= 0 and --max-body-mb > 0")
    served = load_served_model(model, max_batch=max_batch, threads=threads, name=name, strategy=batching,
                               seq_len=seq_len, image_size=image_size)
    settings = ServerSettings(max_batch=min(max_batch, served.max_batch), max_delay_ms=max_delay_ms,
                              max_queue=max_queue, max_body_bytes=int(max_body_mb * 2**20))
    notes = f" ({'; '.join(served.notes)})" if served.notes else ""
    typer.echo(f"serving {served.name!r} at http://{host}:{port}/v2/models/{served.name} — batching "
               f"{served.batching}, max batch {settings.max_batch}, max delay {max_delay_ms:g} ms, queue "
               f"{max_queue}, cold start {served.cold_start.total_ms:.0f} ms{notes}", err=True)
    serve_forever(served, settings, host=host, port=port)


def _print_result(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()

    def f(x: Any, nd: int = 3) -> str:
        return "—" if x is None else f"{x:.{nd}f}"

    rows = out.get("points") or [out]
    table = Table(title=f"inferperf load — {out['scenario']}")
    for col in ("conc", "qps target", "qps", "p50 ms", "p99 ms", "p99.9 ms", "late %", "errors", "valid"):
        table.add_column(col, justify="right")
    for r in rows:
        lat = r.get("latency_ms") or {}
        late = r.get("late_ratio")
        table.add_row(str(r.get("concurrency") or "—"), f(r.get("qps_target"), 1), f(r.get("qps_achieved"), 1),
                      f(lat.get("p50")), f(lat.get("p99")), f(lat.get("p999")),
                      "—" if late is None else f"{100 * late:.2f}", str(r.get("errors", "—")),
                      "yes" if r.get("valid") else "[red]no[/red]")
    console.print(table)
    stages = out.get("stages") or {}
    parts = [f"{k} {v['mean_ms']:.3f}" for k, v in stages.items() if v]
    if parts:
        console.print("stages (mean ms): " + ", ".join(parts))
    if out.get("peak_qps") is not None or out.get("scenario") == "peak":
        console.print(f"peak rate within the SLO: {out.get('peak_qps')} queries/s")
    if out.get("cold_start_ms") is not None:
        console.print(f"cold start: {out['cold_start_ms']:.1f} ms")
    if out.get("network"):
        n = out["network"]
        why = f" ({n['reason']})" if n.get("reason") else ""
        console.print(f"network: {n.get('profile')} via {n.get('method')}{why}")
    for reason in out.get("invalid_reasons") or []:
        console.print(f"[red]invalid: {reason}[/red]")


@app.command()
def load(
    model: str = typer.Argument(None, help="An .onnx file or architecture (in-process / --serve), or the served "
                                           "model's name with --url."),
    url: str = typer.Option(None, "--url", help="A KServe v2 server to load, e.g. http://127.0.0.1:8000."),
    serve_: bool = typer.Option(False, "--serve", help="Start `inferperf serve MODEL` and load it over HTTP."),
    scenario: str = typer.Option("server", help="single-stream | multi-stream | server | offline | concurrency | "
                                                "peak"),
    qps: float = typer.Option(None, "--qps", help="Target rate (server); upper bound of the peak search."),
    duration: float = typer.Option(10.0, "--duration", help="Seconds per run."),
    target_p99_ms: float = typer.Option(None, "--target-p99-ms", help="Latency SLO (server constraint, peak)."),
    concurrency: str = typer.Option("1,2,4", help="Closed-loop levels for the concurrency sweep."),
    network: str = typer.Option(None, "--network", help="lan | wifi | 4g network profile (HTTP targets)."),
    samples_per_query: int = typer.Option(4, "--samples-per-query", help="Samples per multi-stream query."),
    max_batch: int = typer.Option(1, "--max-batch", help="Dynamic batching: largest batch."),
    max_delay_ms: float = typer.Option(0.0, "--max-delay-ms", help="Dynamic batching: longest wait."),
    max_queue: int = typer.Option(64, "--max-queue", help="Server queue bound (--serve)."),
    threads: int = typer.Option(1, "--threads", help="Intra-op threads of the model session."),
    workload: str = typer.Option("auto", help="auto | tensor | image | text, or a directory of images / a text "
                                              "file."),
    samples: int = typer.Option(64, "--samples", help="Distinct samples in the request pool."),
    seed: int = typer.Option(0, help="Seed of the arrival schedule and the synthetic samples."),
    generator: str = typer.Option("auto", help="auto | loadgen | openloop (in-process targets)."),
    arrival: str = typer.Option("poisson", help="poisson | uniform arrivals (server scenario)."),
    late_tolerance_ms: float = typer.Option(1.0, "--late-tolerance-ms", help="A send later than this is late."),
    min_queries: int = typer.Option(100, "--min-queries", help="Fewer completed queries make a run invalid."),
    peak_steps: int = typer.Option(6, "--peak-steps", help="Bisection steps of the peak search."),
    seq_len: int = typer.Option(None, "--seq-len", help="Sequence length for text models."),
    image_size: int = typer.Option(None, "--image-size", help="Image size for vision models."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a --url that is not on this machine."),
    db: str = typer.Option(None, "--db", help="PerfDB URL or SQLite path (default: $INFERPERF_HOME/perf.db)."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the runs in PerfDB."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Load a model in-process, a spawned server or a URL with an MLPerf-style scenario; store the runs."""
    from inferperf.load.runner import LoadOptions, run_load

    if url and not allow_remote:
        check_local_url(url)
    options = LoadOptions(
        scenario=scenario, qps=qps, duration_s=duration, target_p99_ms=target_p99_ms,
        concurrency=parse_levels(concurrency), network=network, samples_per_query=samples_per_query,
        max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue, threads=threads, workload=workload,
        samples=samples, seed=seed, generator=generator, arrival=arrival, late_tolerance_ms=late_tolerance_ms,
        min_queries=min_queries, peak_steps=peak_steps, seq_len=seq_len, image_size=image_size,
    )
    out = run_load(model, options, url=url, serve=serve_, db=db, store=not no_store)
    if as_json:
        typer.echo(json.dumps(out, default=str))
    else:
        _print_result(out)
