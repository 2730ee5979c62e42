"""``inferperf graph`` and ``inferperf archs``: what a model is, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from inferperf.cli.main import app


def _fmt_count(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f}"


def _fmt_bytes(x: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f} B"


@app.command()
def graph(
    model: str = typer.Argument(..., help="An .onnx file or an architecture name (see `inferperf archs`)."),
    batch: int = typer.Option(None, "--batch", "-b", help="Batch size (binds a dynamic first dimension)."),
    seq_len: int = typer.Option(None, "--seq-len", help="Sequence length for text models."),
    image_size: int = typer.Option(None, "--image-size", help="Image height/width for vision models."),
    inputs: list[str] = typer.Option(None, "--input", help="Bind an input shape: NAME=1x3x224x224."),
    overrides: list[str] = typer.Option(None, "--set", help="Architecture config override KEY=VALUE."),
    nodes: bool = typer.Option(False, "--nodes", help="Add the per-node table."),
    csv: Path = typer.Option(None, "--csv", help="Write the per-node table to this CSV file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Summarise a model's graph: nodes, edges, MACs/FLOPs, params, memory, op counts, warnings."""
    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_model, parse_input_shapes, parse_overrides

    loaded = load_model(
        model,
        batch_size=batch,
        seq_len=seq_len,
        image_size=image_size,
        input_shapes=parse_input_shapes(inputs),
        overrides=parse_overrides(overrides),
    )
    g = build_graph(loaded.model, name=loaded.name, metadata=loaded.metadata)
    rows = [_node_row(n) for n in g.nodes]
    if csv is not None:
        _write_csv(csv, rows)
    if as_json:
        out = g.summary()
        out["path"] = loaded.path
        if nodes:
            out["node_table"] = rows
        typer.echo(json.dumps(out, default=str))
        return
    _print_summary(g, loaded.path, rows if nodes else None)


@app.command()
def archs(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the named architectures (built from config classes with random weights, no download)."""
    from inferperf.ir.architectures import list_architectures

    items = [
        {"name": a.name, "family": a.family, "modality": a.modality, "model_class": a.model_class,
         "description": a.description}
        for a in list_architectures()
    ]
    if as_json:
        typer.echo(json.dumps(items))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(items)} architectures")
    for col in ("name", "family", "modality", "description"):
        table.add_column(col)
    for it in items:
        table.add_row(it["name"], it["family"], it["modality"], it["description"])
    Console().print(table)


def _node_row(n) -> dict:  # noqa: ANN001 - a Node
    return {
        "index": n.index,
        "name": n.name,
        "op": n.qualified_type,
        "output_shape": "x".join(map(str, n.outputs[0].shape)) if n.outputs and n.outputs[0].shape else "?",
        "macs": n.macs,
        "flops": n.flops,
        "params": n.params,
        "bytes_read": n.bytes_read,
        "bytes_written": n.bytes_written,
        "intensity": round(n.arithmetic_intensity, 3),
        "has_formula": n.has_formula,
        "module": n.module,
    }


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv as csvmod

    from inferperf.errors import InferperfError

    try:
        with open(path, "w", newline="") as fh:
            writer = csvmod.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["index"])
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise InferperfError(f"cannot write {path}: {exc.strerror}") from None


def _print_summary(g, path: str, rows: list[dict] | None) -> None:  # noqa: ANN001 - a ModelGraph
    from rich.console import Console
    from rich.table import Table

    console = Console()
    s = g.summary()
    meta = g.metadata
    table = Table(title=f"{g.name}  ({meta.get('family') or meta.get('framework') or 'onnx'})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("inputs", ", ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in s["inputs"]))
    table.add_row("nodes / edges / depth", f"{s['nodes']} / {s['edges']} / {s['depth']}")
    table.add_row("MACs", _fmt_count(s["macs"]))
    table.add_row("FLOPs", _fmt_count(s["flops"]))
    table.add_row("params", _fmt_count(s["params"]))
    table.add_row("weights", _fmt_bytes(s["weight_bytes"]))
    table.add_row("peak activations", _fmt_bytes(s["peak_activation_bytes"]))
    table.add_row("memory (weights + peak act.)", _fmt_bytes(s["memory_bytes"]))
    table.add_row("opset", str(s["opset"]))
    top = list(s["op_counts"].items())[:12]
    table.add_row("op counts", ", ".join(f"{k}×{v}" for k, v in top) + (" …" if len(s["op_counts"]) > 12 else ""))
    table.add_row("file", path)
    console.print(table)
    if rows:
        nt = Table(title="nodes")
        for col in ("index", "name", "op", "output_shape", "macs", "params", "intensity"):
            nt.add_column(col, overflow="fold")
        for r in rows:
            nt.add_row(str(r["index"]), r["name"], r["op"], r["output_shape"], _fmt_count(r["macs"]),
                       _fmt_count(r["params"]), str(r["intensity"]))
        console.print(nt)
    for w in g.warnings[:20]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if len(g.warnings) > 20:
        console.print(f"[yellow]… and {len(g.warnings) - 20} more warnings (see --json)[/yellow]")
