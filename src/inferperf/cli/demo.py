"""``inferperf demo``: the main job, end to end, on the embedded default (SQLite, in-process).

It grows with the project: today it ingests a real architecture, prints its graph summary, benchmarks it
with the measurement protocol into the embedded PerfDB (when the measurement engine is installed), and shows
the stored run.
"""

from __future__ import annotations

import typer

from inferperf.cli.main import app


@app.command()
def demo(
    model: str = typer.Option("resnet50", help="Architecture to run the demo on."),
    measure: bool = typer.Option(True, help="Benchmark the model after summarising it."),
) -> None:
    """Run the main job end to end on the embedded default."""
    from rich.console import Console

    from inferperf.cli.graph import graph

    console = Console()
    console.rule(f"[bold]1. graph IR of {model}")
    graph(model=model, batch=1, seq_len=None, image_size=None, inputs=None, overrides=None, nodes=False,
          csv=None, as_json=False)
    if not measure:
        return
    try:
        from inferperf.cli.measure import bench
    except ImportError:
        console.print("[yellow]measurement engine not installed; stopping after the graph summary[/yellow]")
        return
    console.rule(f"[bold]2. benchmark {model} (ONNX Runtime, 1 thread, batch 1, adaptive protocol)")
    bench(model=model, runtime="onnxruntime", batch="1", threads="1", opt_level="all", profile=True,
          db=None, as_json=False, timeout=600.0, max_time=15.0, seq_len=None, image_size=None)
