"""``inferperf dataset export|stats``: the performance database as an open Parquet dataset.

``export`` writes the directory described in ``docs/dataset.md`` (loadable back with
:func:`inferperf.dataset.parquet.read_dataset` or as a PyG dataset); ``stats`` describes a database or an
exported directory with the same counters, so the two can be compared before and after an export.
pyarrow, SQLAlchemy and the IR are imported inside the commands so ``inferperf --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from inferperf.cli.main import app
from inferperf.errors import ConfigError

dataset_app = typer.Typer(
    help="Export the performance database as an open dataset, and describe datasets.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")

DB_HELP = "Database URL or SQLite file (default: $INFERPERF_DB, else $INFERPERF_HOME/perf.db)."


def _kind(value: str) -> str | None:
    return None if value == "all" else value


def _progress_bar(disable: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=disable,
        transient=True,
    )


@dataset_app.command("export")
def export(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory to write (replaced atomically if it exists)."
    ),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    device: str = typer.Option(None, "--device", help="Only runs on this device (id or name)."),
    valid_only: bool = typer.Option(
        True, "--valid-only/--all", help="Only valid runs (default), or every run."
    ),
    with_kernels: bool = typer.Option(
        True, "--with-kernels/--no-kernels", help="Include kernel + fusion tables."
    ),
    kind: str = typer.Option("bench", "--kind", help="Run kind to export ('all' for every kind)."),
    include_deleted: bool = typer.Option(False, "--include-deleted", help="Include runs of deleted models."),
    as_json: bool = typer.Option(False, "--json", help="Print the dataset's meta.json."),
) -> None:
    """Export runs, graphs, kernels and devices to Parquet (graphs rebuilt from the model store, cached)."""
    from inferperf.dataset.export import export_dataset

    with _progress_bar(as_json) as bar:
        task = bar.add_task("exporting runs", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=max(done, total) if total is not None else None)

        meta = export_dataset(
            db,
            out,
            device=device,
            valid_only=valid_only,
            with_kernels=with_kernels,
            kind=_kind(kind),
            include_deleted=include_deleted,
            progress=progress,
        )
    if as_json:
        typer.echo(json.dumps({k: v for k, v in meta.items() if k != "encoding"}, indent=2, default=str))
        return
    c = meta["counts"]
    typer.echo(
        f"wrote {meta['path']}: {c['runs']} runs of {c['graphs']} graphs ({c['nodes']} nodes, "
        f"{c['edges']} edges), {c['kernels']} kernels, {c['fusion_edges']} fusion edges, "
        f"{c['devices']} device(s); families: "
        + (", ".join(f"{f} {n}" for f, n in meta["families"].items()) or "-")
    )
    for g in meta["skipped"]["graphs"]:
        typer.echo(f"skipped {g['runs']} run(s) of {g['model']}: {g['reason']}", err=True)
    if meta["skipped"]["reasons"].get("deleted_model"):
        typer.echo(
            f"left out {meta['skipped']['reasons']['deleted_model']} run(s) of deleted models "
            "(--include-deleted exports them)",
            err=True,
        )
    for w in meta["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    if c["runs"] == 0:
        typer.echo("warning: the dataset is empty (no run matched)", err=True)


@dataset_app.command("stats")
def stats(
    db: str = typer.Option(None, "--db", help=DB_HELP),
    dataset: Path = typer.Option(
        None, "--dataset", help="An exported dataset directory instead of a database."
    ),
    device: str = typer.Option(None, "--device", help="Only runs on this device (database only)."),
    valid_only: bool = typer.Option(
        False, "--valid-only/--all", help="Count only valid runs (database only)."
    ),
    kind: str = typer.Option("bench", "--kind", help="Run kind ('all' for every kind; database only)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Graphs, runs, families and devices of a database or an exported dataset."""
    if db is not None and dataset is not None:
        raise ConfigError("pass either --db or --dataset, not both")
    if dataset is not None:
        from inferperf.dataset.parquet import dataset_stats

        result = dataset_stats(dataset)
    else:
        from inferperf.dataset.export import database_stats

        result = database_stats(db, device=device, valid_only=valid_only, kind=_kind(kind))
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{result['source']}[/]: {result['graphs']} graphs, {result['runs']} runs "
        f"({result['valid_runs']} valid, {result['profiled_runs']} profiled, {result['kernels']} kernels)"
    )
    if result["families"]:
        t = Table(title="families", title_justify="left")
        for col in ("family", "graphs", "runs"):
            t.add_column(col, justify="left" if col == "family" else "right")
        for fam, n in result["families"].items():
            t.add_row(fam, str(result["family_graphs"].get(fam, 0)), str(n))
        console.print(t)
    if result["devices"]:
        t = Table(title="devices", title_justify="left")
        for col in ("id", "name", "kind", "runs"):
            t.add_column(col, justify="right" if col == "runs" else "left")
        for d in result["devices"]:
            t.add_row(d["id"], d["name"], d.get("kind") or "-", str(d["runs"]))
        console.print(t)
    if result["batch_sizes"]:
        console.print("batch sizes: " + ", ".join(f"{b} ({n})" for b, n in result["batch_sizes"].items()))


@dataset_app.command("import")
def import_(
    path: Path = typer.Argument(..., help="An exported dataset directory (inferperf dataset export)."),
    db: str = typer.Option(None, "--db", help="PerfDB URL or SQLite path (default: $INFERPERF_HOME/perf.db)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Merge an exported dataset into PerfDB (idempotent), e.g. to resume a collection in a new session."""
    from inferperf.dataset.importer import import_dataset

    with _progress_bar(as_json) as bar:
        task = bar.add_task(f"import {path}", total=None)
        counts = import_dataset(path, db, progress=lambda done, total: bar.update(task, completed=done,
                                                                                   total=total))
    if as_json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(f"imported {counts['runs']} runs of {counts['models']} models "
                   f"({counts['skipped_runs']} already present or without a graph)")
