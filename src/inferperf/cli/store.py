"""``inferperf runs`` and ``inferperf db``: read the performance database, manage its schema.

SQLAlchemy and rich are imported inside the commands so that ``inferperf --help`` stays fast.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from inferperf.cli.main import app

if TYPE_CHECKING:
    from rich.console import Console

    from inferperf.store.db import PerfDB

runs_app = typer.Typer(help="List and inspect stored measurement runs.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the performance database schema.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")

DB_HELP = "Database URL or SQLite file (default: $INFERPERF_DB, else $INFERPERF_HOME/perf.db)."
STATUS_STYLE = {"ok": "green", "unstable": "yellow", "failed": "red", "timeout": "red", "crashed": "bold red"}


def _open(db: str | None, upgrade: bool = True) -> PerfDB:
    from inferperf.store.db import PerfDB

    return PerfDB.open(db, upgrade=upgrade)


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _ms(value: float | None) -> str:
    """Milliseconds with three significant digits (0.0123, 1.23, 123), '-' when not measured."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _when(iso_ts: str | None) -> str:
    """Local time to the second: listings are read by people comparing runs of one session."""
    if not iso_ts:
        return "-"
    return datetime.fromisoformat(iso_ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _threads(run: dict[str, Any]) -> str:
    intra = run.get("intra_op_threads")
    inter = (run.get("config") or {}).get("inter_op_threads")
    if intra is None:
        return "-"
    return f"{intra}" if inter in (None, 1) else f"{intra}/{inter}"


def _status(run: dict[str, Any]) -> str:
    status = run["status"]
    text = f"[{STATUS_STYLE.get(status, '')}]{status}[/]" if status in STATUS_STYLE else status
    if status == "ok" and not run.get("valid", True):
        text += " [yellow](invalid)[/]"
    return text


@runs_app.command("list")
def list_runs(
    model: str = typer.Option(None, "--model", "-m", help="Model id, name (all versions) or NAME:VERSION."),
    device: str = typer.Option(None, "--device", help="Device id (fingerprint) or name."),
    status: str = typer.Option(None, "--status", help="Only runs with this status (ok, unstable, failed, ...)."),
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="Show at most this many runs (newest first)."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List stored runs, newest first."""
    model_ref: int | str | None = int(model) if model is not None and model.isdigit() else model
    with _open(db) as store:
        runs = store.list_runs(model=model_ref, device=device, status=status, limit=limit)
        total = len(runs) if as_json else store.count_runs(model=model_ref, device=device, status=status)
    if as_json:
        _echo_json(runs)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not runs:
        console.print("no runs match" if (model or device or status) else "no runs stored yet")
        return
    caption = f"{len(runs)} of {total} runs" if total > len(runs) else f"{len(runs)} runs"
    table = Table(caption=caption)
    for col, justify in (
        ("id", "right"), ("created", "left"), ("model", "left"), ("device", "left"), ("runtime", "left"),
        ("batch", "right"), ("threads", "right"), ("p50 ms", "right"), ("p99 ms", "right"), ("cv", "right"),
        ("status", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in runs:
        latency = r.get("latency_ms") or {}
        table.add_row(
            str(r["id"]),
            _when(r["created_at"]),
            f"{r['model']}:{r['model_version']}",
            r["device"],
            r.get("runtime") or "-",
            "-" if r.get("batch_size") is None else str(r["batch_size"]),
            _threads(r),
            _ms(latency.get("p50")),
            _ms(latency.get("p99")),
            _pct(r.get("cv")),
            _status(r),
        )
    console.print(table)


@runs_app.command("show")
def show_run(
    run_id: int = typer.Argument(..., help="Run id (see `inferperf runs list`)."),
    samples: bool = typer.Option(False, "--samples", help="Include the raw latency samples."),
    kernels: int = typer.Option(15, "--kernels", help="Show the N slowest kernels when a profile exists."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (kernels included)."),
) -> None:
    """Show one run: configuration, latency statistics, resources, validity and provenance."""
    with _open(db) as store:
        run = store.get_run(run_id, with_samples=samples, with_kernels=as_json or kernels > 0)
        device = store.get_device(run["device_id"])
    if as_json:
        run["device_descriptor"] = device["descriptor"]
        _echo_json(run)
        return
    from rich.console import Console

    _print_run(Console(), run, device, top_kernels=kernels)


def _kv_table(title: str, rows: list[tuple[str, str]]) -> Any:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left", title_style="bold")
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for k, v in rows:
        table.add_row(k, v)
    return table


def _print_run(console: Console, run: dict[str, Any], device: dict[str, Any], top_kernels: int) -> None:
    config = dict(run.get("config") or {})
    protocol = config.pop("protocol", None)
    latency = run.get("latency_ms") or {}
    ci = run.get("ci95_ms")
    console.print(
        _kv_table(
            f"run {run['id']}",
            [
                ("status", _status(run)),
                ("invalid reasons", ", ".join(run.get("invalid_reasons") or []) or "-"),
                ("error", run.get("error") or "-"),
                ("kind", run.get("kind") or "-"),
                ("created", _when(run.get("created_at"))),
                ("started", _when(run.get("started_at"))),
                ("duration", _num(run.get("duration_s"), " s")),
                ("model", f"{run['model']}:{run['model_version']}  (id {run['model_id']}, "
                          f"family {run.get('model_family') or '-'}, sha256 {run['model_hash'][:12]}…)"),
                ("device", f"{device['name']}  ({device['kind']}, {device['id']})"),
                ("environment", run.get("environment_id") or "-"),
                ("config key", run.get("config_key") or "-"),
            ],
        )
    )
    console.print(_kv_table("configuration", [(k, json.dumps(v, default=str)) for k, v in config.items()]))
    if protocol:
        console.print(_kv_table("protocol", [(k, json.dumps(v, default=str)) for k, v in protocol.items()]))
    if latency:
        rows = [(k, _ms(latency.get(k)) + " ms") for k in ("p50", "p90", "p95", "p99", "p999", "mean", "min",
                                                           "max", "std")]
        rows += [
            ("cv", _pct(run.get("cv"))),
            ("95% CI of median", f"[{_ms(ci[0])}, {_ms(ci[1])}] ms" if ci else "-"),
            ("samples", "-" if run.get("n_samples") is None else str(run["n_samples"])),
            ("throughput", _num(run.get("throughput"), " /s", 1)),
        ]
        console.print(_kv_table("latency", rows))
    else:
        console.print("[yellow]no latency was measured[/]")
    console.print(
        _kv_table(
            "start-up, memory, energy",
            [
                ("cold start", _ms(run.get("cold_start_ms")) + " ms"),
                ("session create", _ms(run.get("session_create_ms")) + " ms"),
                ("first inference", _ms(run.get("first_inference_ms")) + " ms"),
                ("memory (RSS growth)", _num(run.get("memory_mb"), " MB", 1)),
                ("peak RSS", _num(run.get("peak_rss_mb"), " MB", 1)),
                ("arena", _num(run.get("arena_mb"), " MB", 1)),
                ("energy / call", _num(run.get("energy_j"), " J", 4)
                 + (f"  ({run['energy_source']})" if run.get("energy_source") else "")),
                ("power", _num(run.get("power_w"), " W", 1)),
                ("CPU utilisation", _pct(run.get("cpu_util"))),
            ],
        )
    )
    kernels = run.get("kernels") or []
    if kernels and top_kernels > 0:
        from rich.table import Table

        total = sum(k["duration_ms"] or 0.0 for k in kernels)
        slowest = sorted(kernels, key=lambda k: k["duration_ms"] or 0.0, reverse=True)[:top_kernels]
        table = Table(title=f"{min(top_kernels, len(kernels))} slowest of {len(kernels)} kernels",
                      title_justify="left", title_style="bold")
        for col in ("#", "kernel", "op", "provider", "ms", "share"):
            table.add_column(col, justify="right" if col in ("#", "ms", "share") else "left", overflow="fold")
        for k in slowest:
            share = (k["duration_ms"] or 0.0) / total if total > 0 else None
            table.add_row(str(k["ordinal"]), k["name"], k.get("op_type") or "-", k.get("provider") or "-",
                          _ms(k["duration_ms"]), _pct(share))
        console.print(table)
        edges = run.get("fusion_edges") or []
        if edges:
            fused = sum(1 for e in edges if e["fused"])
            console.print(f"fusion: {fused} of {len(edges)} graph edges fused")
    if run.get("provenance"):
        console.print(_kv_table("provenance", [(k, json.dumps(v, default=str)) for k, v in run["provenance"].items()]))
    if "samples_ms" in run:
        values = run["samples_ms"] or []
        console.print(f"[bold]{len(values)} raw samples (ms)[/]")
        console.print(" ".join(_ms(v) for v in values), soft_wrap=False)


@db_app.command("upgrade")
def db_upgrade(
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create the database or migrate it to the newest schema (opening it with any command does too)."""
    from inferperf.store.db import display_url

    with _open(db, upgrade=False) as store:
        before, head = store.schema_revision()
        after = store.upgrade()
        url = display_url(store.url)
    if as_json:
        _echo_json({"url": url, "from": before, "to": after, "head": head})
    elif before == after:
        typer.echo(f"{url}: already at revision {after} (newest)")
    else:
        typer.echo(f"{url}: upgraded from {before or 'empty'} to revision {after}")


@db_app.command("current")
def db_current(
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the database's schema revision and whether it is the newest; changes nothing."""
    from inferperf.store.db import display_url

    with _open(db, upgrade=False) as store:
        current, head = store.schema_revision()
        url = display_url(store.url)
    if as_json:
        _echo_json({"url": url, "current": current, "head": head, "up_to_date": current == head})
        return
    if current is None:
        state = "not initialised (run `inferperf db upgrade`, or any command that opens it)"
    elif current == head:
        state = "up to date"
    else:
        state = f"behind the newest revision {head}: run `inferperf db upgrade`"
    typer.echo(f"{url}: revision {current or '-'} — {state}")
