"""``inferperf zoo`` (what the generators produce) and ``inferperf collect`` (profile them into PerfDB)."""

from __future__ import annotations

import json

import typer

from inferperf.cli.main import app

zoo_app = typer.Typer(help="Model zoo: canonical, random and real-architecture generators.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("families")
def families(
    zoo: str = typer.Option("all", help="random | canonical | real | all"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the zoo's families (the labels used for leave-one-family-out evaluation)."""
    from inferperf.zoo import generators

    items = [{"family": g.family, "zoo": g.zoo} for g in generators(zoo)]
    if as_json:
        typer.echo(json.dumps(items))
        return
    for it in items:
        typer.echo(f"{it['zoo']:<10} {it['family']}")


@zoo_app.command("list")
def list_entries(
    zoo: str = typer.Option("all", help="random | canonical | real | all"),
    limit: int = typer.Option(20, help="How many entries."),
    batch: str = typer.Option("1", help="Batch sizes, comma-separated."),
    seed: int = typer.Option(0, help="Sampling seed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the first entries the zoo would collect (round-robin over families, deterministic per seed)."""
    from inferperf.cli.measure import parse_int_list
    from inferperf.zoo import iter_zoo

    entries = [e.to_dict() for e in iter_zoo(zoo, limit=limit, batch_sizes=parse_int_list(batch, "batch"),
                                              seed=seed)]
    if as_json:
        typer.echo(json.dumps(entries))
        return
    for e in entries:
        typer.echo(f"{e['key']:<48} {e['family']:<22} b={e['batch_size']}")


@app.command()
def collect(
    zoo: str = typer.Option("all", "--zoo", help="random | canonical | real | all"),
    limit: int = typer.Option(None, "--limit", help="Stop after this many graphs (entries)."),
    per_family: int = typer.Option(None, "--per-family", help="At most this many samples per family."),
    family: list[str] = typer.Option(None, "--family", help="Only these families (repeatable)."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, comma-separated (each is its own graph)."),
    threads: str = typer.Option("1", "--threads", help="Intra-op thread counts, comma-separated."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (deterministic)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip configurations already recorded."),
    retry_failed: bool = typer.Option(False, help="On resume, measure recorded failures again."),
    retry_unstable: bool = typer.Option(False, help="On resume, measure runs flagged unstable again (appends)."),
    retry_disturbed: bool = typer.Option(False, help="On resume, measure again graphs whose runs were all timed "
                                                     "on a busy machine (appends)."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Per-kernel profile + fusion labels."),
    graph_budget: float = typer.Option(180.0, help="Seconds allowed per graph for export and for measuring."),
    max_time: float = typer.Option(5.0, help="Timing cap per configuration (seconds)."),
    pipeline: bool = typer.Option(False, "--pipeline/--no-pipeline",
                                  help="Export the next graph on one core while measuring on the other "
                                       "(faster, but inflates latency ~12%: not for reference data)."),
    keep_files: bool = typer.Option(False, help="Keep ONNX files with weights (default: graph JSON only)."),
    max_background: float = typer.Option(
        0.3, help="Wait until other processes use at most this many cores before measuring, and measure again "
                  "when they used more (negative: do not check)."),
    probe_every: int = typer.Option(20, min=0, help="Time the fixed speed probe every N graphs and store the latest "
                                                   "reading with each run (machine-speed drift; 0 = never)."),
    db: str = typer.Option(None, "--db", help="PerfDB URL or SQLite path."),
    as_json: bool = typer.Option(False, "--json", help="Print the collection report as JSON."),
) -> None:
    """Profile zoo graphs (end-to-end stats + kernels + fusion labels) into PerfDB; resumable."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from inferperf.cli.measure import parse_int_list
    from inferperf.errors import ConfigError
    from inferperf.jobs.collect import CollectOptions
    from inferperf.jobs.collect import collect as run_collect

    if not resume:
        raise ConfigError("--no-resume would measure recorded configurations again: use a new --db instead")
    options = CollectOptions(
        zoo=zoo, limit=limit, per_family=per_family, families=family or None,
        batch_sizes=tuple(parse_int_list(batch, "batch")), threads=tuple(parse_int_list(threads, "threads")),
        seed=seed, profile=profile, graph_budget_s=graph_budget, max_time_s=max_time, pipeline=pipeline,
        retry_failed=retry_failed, retry_unstable=retry_unstable, retry_disturbed=retry_disturbed,
        keep_files=keep_files, db=db,
        max_background=max_background if max_background >= 0 else None, probe_every=probe_every,
    )
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=console, disable=as_json) as bar:
        task = bar.add_task("collect", total=None)

        def on_graph(status: dict) -> None:
            if "waiting" in status:
                bar.update(task, description=status["waiting"])
                return
            bar.update(task, total=status["total"], completed=status["done"],
                       description=f"collect {status['entry'][:40]}")

        report = run_collect(options, progress=on_graph)
    out = report.to_dict()
    if as_json:
        typer.echo(json.dumps(out))
        return
    rate = out["graphs_per_hour"]
    typer.echo(f"planned {out['planned']}, skipped (done) {out['skipped']}, measured {out['measured']}, "
               f"failed {out['failed']}, unstable {out['unstable']}, re-measured on a busy machine "
               f"{out['remeasured']} in {out['wall_s']:.0f} s"
               + (f" ({rate:.0f} graphs/hour)" if rate else ""))
    probe = out.get("speed_probe_ms")
    if probe and probe["n"] > 1:
        typer.echo(f"speed probe: {probe['n']} readings, median {probe['median']:.3f} ms, max/min "
                   f"{probe['max'] / min(report.speed_probe_ms):.2f} (machine-speed drift over the run)")
