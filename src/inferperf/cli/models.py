"""``inferperf models``: the model repository — register, list, search, show, update, delete.

A registered model is its ONNX file stored content-addressed under ``$INFERPERF_HOME/models`` plus a row in
PerfDB with its metadata and graph summary. The same name with different bytes becomes a new version, so a
run's provenance always names the exact graph that was measured; deleting is a soft delete for the same
reason (runs keep pointing at their model). Heavy imports (onnx, torch, SQLAlchemy) stay inside commands.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from inferperf.cli.main import app
from inferperf.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from inferperf.store.db import PerfDB

models_app = typer.Typer(
    help="The model repository: register, list, search, show, update, delete models.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

DB_HELP = "Database URL or SQLite file (default: $INFERPERF_DB, else $INFERPERF_HOME/perf.db)."
REF_HELP = "Model id, NAME (newest version), NAME:VERSION, or a content-hash prefix (≥ 8 hex digits)."


def _open(db: str | None) -> PerfDB:
    from inferperf.store.db import PerfDB

    return PerfDB.open(db)


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _count(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def _when(iso_ts: str | None) -> str:
    if not iso_ts:
        return "-"
    return datetime.fromisoformat(iso_ts).astimezone().strftime("%Y-%m-%d %H:%M")


# ============================================================================================ update
# ============================================================================================ register
@models_app.command("register")
def register(
    model: str = typer.Argument(..., help="An .onnx file or an architecture name (see `inferperf archs`)."),
    name: str = typer.Option(
        None, "--name", help="Name to register under (default: file stem / architecture)."
    ),
    family: str = typer.Option(None, "--family", help="Model family label (default: the architecture's)."),
    framework: str = typer.Option(None, "--framework", help="Framework it came from (default: detected)."),
    source: str = typer.Option(None, "--source", help="Where it came from (URL, paper, path...)."),
    tags: list[str] = typer.Option(None, "--tag", help="A tag (repeatable)."),
    batch: int = typer.Option(
        1, "--batch", "-b", min=1, help="Batch size bound into a dynamic first dimension."
    ),
    seq_len: int = typer.Option(None, "--seq-len", min=1, help="Sequence length for text models."),
    image_size: int = typer.Option(None, "--image-size", min=1, help="Image size for vision models."),
    inputs: list[str] = typer.Option(None, "--input", help="Bind an input shape: NAME=1x3x224x224."),
    overrides: list[str] = typer.Option(None, "--set", help="Architecture config override KEY=VALUE."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the stored model as JSON."),
) -> None:
    """Register a model: ingest it (architectures are exported), store the ONNX file, record its metadata.

    The stored file has concrete shapes (dynamic dimensions bound by --batch/--seq-len/--input), which is the
    graph a benchmark measures. The same name with new bytes is a new version; the same bytes again is the
    same model (given --family/--tag/--source are applied to it).
    """
    from inferperf.dataset.export import save_graph_cache
    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_model, parse_input_shapes, parse_overrides
    from inferperf.store.paths import put_model_file

    loaded = load_model(
        model,
        batch_size=batch,
        seq_len=seq_len,
        image_size=image_size,
        input_shapes=parse_input_shapes(inputs),
        overrides=parse_overrides(overrides),
        name=name,
    )
    model_name = (name or loaded.name).strip()
    if not model_name:
        raise ConfigError("--name must not be empty")
    if family:
        loaded.metadata["family"] = family
    graph = build_graph(loaded.model, model_name, loaded.metadata)
    content_hash = put_model_file(loaded.path)
    save_graph_cache(content_hash, graph)  # so a dataset export needs no rebuild
    summary = {k: v for k, v in graph.summary().items() if k not in ("inputs", "outputs")}
    with _open(db) as store:
        existing = store.find_model(name=model_name, content_hash=content_hash, include_deleted=True)
        model_id = store.add_model(
            model_name,
            content_hash,
            family=family or loaded.metadata.get("family"),
            framework=framework or loaded.metadata.get("framework"),
            source=source or loaded.metadata.get("source"),
            tags=tags or (),
            input_spec=loaded.input_spec,
            graph_summary=summary,
        )
        if existing is not None and (family or framework or source or tags):
            store.update_model(
                model_id, family=family, framework=framework, source=source, add_tags=tags or ()
            )
        row = store.find_model(model_id)
        n_runs = store.count_runs(model=model_id)
    if row is None:  # deleted by another process between the two statements
        raise StoreError(f"model {model_name} vanished while it was being registered; try again")
    status = "new" if existing is None else ("restored" if existing["deleted"] else "existing")
    if as_json:
        _echo_json({**row, "n_runs": n_runs, "status": status})
        return
    what = {"new": "registered", "restored": "restored (was deleted)", "existing": "already registered as"}[
        status
    ]
    typer.echo(
        f"{what} {row['name']}:{row['version']}  (id {row['id']}, family {row['family'] or '-'}, "
        f"{summary['nodes']} nodes, {_count(summary['macs'])} MACs, {_count(summary['params'])} params, "
        f"sha256 {content_hash[:12]}…)"
    )


# ============================================================================================ list / search
def _print_models(models: list[dict[str, Any]], caption: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(caption=caption)
    for col, justify in (
        ("id", "right"),
        ("model", "left"),
        ("family", "left"),
        ("tags", "left"),
        ("nodes", "right"),
        ("MACs", "right"),
        ("params", "right"),
        ("runs", "right"),
        ("sha256", "left"),
    ):
        wrap = col == "tags"  # the one free-text column; the others must stay readable in 80 columns
        table.add_column(col, justify=justify, no_wrap=not wrap, min_width=12 if wrap else None)  # type: ignore[arg-type]
    for m in models:
        s = m.get("graph_summary") or {}
        table.add_row(
            str(m["id"]),
            f"{m['name']}:{m['version']}" + (" [red](deleted)[/]" if m.get("deleted") else ""),
            m.get("family") or "-",
            ", ".join(m.get("tags") or []) or "-",
            "-" if s.get("nodes") is None else str(s["nodes"]),
            _count(s.get("macs")),
            _count(s.get("params")),
            str(m.get("n_runs", "-")),
            m["content_hash"][:8],
        )
    Console().print(table)


@models_app.command("list")
def list_models(
    family: str = typer.Option(None, "--family", help="Only this family."),
    tag: str = typer.Option(None, "--tag", help="Only models with this tag."),
    all_versions: bool = typer.Option(False, "--all-versions", help="Every version, not only the newest."),
    deleted: bool = typer.Option(False, "--deleted", help="Include deleted models."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List registered models (newest version of each name unless --all-versions)."""
    with _open(db) as store:
        models = store.list_models(
            family=family, tag=tag, include_deleted=deleted, latest_only=not all_versions
        )
    if as_json:
        _echo_json(models)
    elif not models:
        typer.echo("no models match" if (family or tag) else "no models registered yet")
    else:
        _print_models(models, f"{len(models)} model(s)")


def matches(model: dict[str, Any], query: str) -> bool:
    """Case-insensitive substring match over name, family, tags and source."""
    q = query.lower()
    fields = [model.get("name"), model.get("family"), model.get("source"), *(model.get("tags") or [])]
    return any(q in str(f).lower() for f in fields if f)


@models_app.command("search")
def search(
    query: str = typer.Argument(..., help="Text to look for in names, families, tags and sources."),
    all_versions: bool = typer.Option(False, "--all-versions", help="Every version, not only the newest."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Find models whose name, family, tags or source contain QUERY (case-insensitive).

    Every version is searched (a tag may sit on an older one); without --all-versions only the newest
    matching version of each name is shown.
    """
    if not query.strip():
        raise ConfigError("the search query must not be empty")
    with _open(db) as store:
        found = [m for m in store.list_models() if matches(m, query.strip())]
    if not all_versions:
        newest = {m["name"]: m for m in found}  # list_models orders by name, version: the last one wins
        found = list(newest.values())
    if as_json:
        _echo_json(found)
    elif not found:
        typer.echo(f"no model matches '{query}'")
    else:
        _print_models(found, f"{len(found)} model(s) matching '{query}'")


# ============================================================================================ show
@models_app.command("show")
def show(
    ref: str = typer.Argument(..., help=REF_HELP),
    deleted: bool = typer.Option(False, "--deleted", help="Also find deleted models."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show one model: metadata, graph summary, file, versions and number of runs."""
    from inferperf.store.paths import model_file_path

    with _open(db) as store:
        model = store.resolve_model(ref, include_deleted=deleted)
        n_runs = store.count_runs(model=int(model["id"]))
        versions = store.list_models(name=model["name"], include_deleted=True)
    stored = model_file_path(model["content_hash"])
    info = {
        **model,
        "n_runs": n_runs,
        "stored_file": str(stored),
        "file_present": stored.is_file(),
        "versions": [
            {k: v.get(k) for k in ("id", "version", "content_hash", "created_at", "deleted", "n_runs")}
            for v in versions
        ],
    }
    if as_json:
        _echo_json(info)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    s = model.get("graph_summary") or {}
    t = Table(
        title=f"{model['name']}:{model['version']}" + ("  (deleted)" if model["deleted"] else ""),
        show_header=False,
        title_justify="left",
    )
    t.add_column("", style="bold")
    t.add_column("", overflow="fold")
    rows = [
        ("id", str(model["id"])),
        ("family", model.get("family") or "-"),
        ("framework", model.get("framework") or "-"),
        ("source", model.get("source") or "-"),
        ("tags", ", ".join(model.get("tags") or []) or "-"),
        ("sha256", model["content_hash"]),
        ("file", f"{stored}" + ("" if info["file_present"] else "  [red](missing from the model store)[/]")),
        ("inputs", json.dumps(model.get("input_spec"))),
        ("registered", _when(model.get("created_at"))),
        ("runs", str(n_runs)),
        ("nodes / edges / depth", f"{s.get('nodes', '-')} / {s.get('edges', '-')} / {s.get('depth', '-')}"),
        ("MACs / FLOPs", f"{_count(s.get('macs'))} / {_count(s.get('flops'))}"),
        ("params", _count(s.get("params"))),
        (
            "memory (weights + peak activations)",
            f"{(s.get('memory_bytes') or 0) / 2**20:.1f} MiB" if s.get("memory_bytes") is not None else "-",
        ),
        (
            "op counts",
            ", ".join(f"{op} {n}" for op, n in list((s.get("op_counts") or {}).items())[:12]) or "-",
        ),
        (
            "versions",
            ", ".join(f"v{v['version']}" + (" (deleted)" if v["deleted"] else "") for v in versions),
        ),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    for w in (s.get("warnings") or [])[:10]:
        console.print(f"[yellow]warning: {w}[/]")


# ============================================================================================ update
@models_app.command("update")
def update(
    ref: str = typer.Argument(..., help=REF_HELP),
    family: str = typer.Option(None, "--family", help="New family label ('' clears it)."),
    framework: str = typer.Option(None, "--framework", help="New framework ('' clears it)."),
    source: str = typer.Option(None, "--source", help="New source ('' clears it)."),
    tags: list[str] = typer.Option(None, "--tag", help="Add a tag (repeatable)."),
    untags: list[str] = typer.Option(None, "--untag", help="Remove a tag (repeatable)."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the updated model as JSON."),
) -> None:
    """Edit a model's metadata (family, framework, source, tags); its file and version never change."""
    if family is None and framework is None and source is None and not tags and not untags:
        raise ConfigError("nothing to update: pass --family, --framework, --source, --tag or --untag")
    with _open(db) as store:
        model = store.resolve_model(ref)
        updated = store.update_model(
            int(model["id"]),
            family=family,
            framework=framework,
            source=source,
            add_tags=tags or (),
            remove_tags=untags or (),
        )
    if as_json:
        _echo_json(updated)
        return
    typer.echo(
        f"updated {updated['name']}:{updated['version']}: family {updated['family'] or '-'}, "
        f"framework {updated['framework'] or '-'}, tags {', '.join(updated['tags']) or '-'}, "
        f"source {updated['source'] or '-'}"
    )


# ============================================================================================ delete
@models_app.command("delete")
def delete(
    ref: str = typer.Argument(..., help=REF_HELP),
    force: bool = typer.Option(False, "--force", help="Delete even when runs were measured on it."),
    all_versions: bool = typer.Option(
        False, "--all-versions", help="Delete every version of the model's name."
    ),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Delete a model (soft: hidden from listings, file and runs kept so every run keeps its provenance).

    A model with runs needs --force, so measurements are never hidden by accident.
    """
    with _open(db) as store:
        model = store.resolve_model(ref)
        targets = store.list_models(name=model["name"]) if all_versions else [model]
        for m in targets:
            m["n_runs"] = store.count_runs(model=int(m["id"]))
        with_runs = [m for m in targets if m["n_runs"]]
        if with_runs and not force:
            what = ", ".join(f"{m['name']}:{m['version']} ({m['n_runs']} runs)" for m in with_runs)
            raise StoreError(f"{what} measured; pass --force to delete anyway (the runs are kept)")
        for m in targets:
            store.soft_delete_model(int(m["id"]), force=force)
    deleted = [{k: m[k] for k in ("id", "name", "version", "n_runs")} for m in targets]
    if as_json:
        _echo_json({"deleted": deleted})
        return
    for m in deleted:
        kept = f"; its {m['n_runs']} run(s) are kept" if m["n_runs"] else ""
        typer.echo(f"deleted {m['name']}:{m['version']} (id {m['id']}){kept}")
