"""``inferperf colocate`` (measure or predict the slowdown of 2–3 co-located models) and
``inferperf colocate-train`` (fit the slowdown predictor on a co-location dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from inferperf.cli.main import app
from inferperf.errors import ConfigError, InferperfError


def _check_models(models: list[str]) -> None:
    if not 2 <= len(models) <= 3:
        raise ConfigError(f"colocate takes 2 or 3 ONNX models, got {len(models)}")
    for m in models:
        p = Path(m)
        if not p.is_file():
            raise ConfigError(f"model file not found: {m}")
        if p.suffix.lower() != ".onnx":
            raise ConfigError(f"{m}: colocate takes ONNX files (.onnx)")


@app.command()
def colocate(
    models: list[str] = typer.Argument(..., help="Two or three ONNX files to run at the same time."),
    measure: bool = typer.Option(False, "--measure", help="Run them: each alone, then all together."),
    predict: bool = typer.Option(False, "--predict", help="Predict each model's slowdown from the graphs."),
    threads_split: str = typer.Option(None, "--threads-split", help="Intra-op threads per model, e.g. 1,1."),
    cores: str = typer.Option(None, "--cores", help="Cores per model, ';'-separated, e.g. '0;1' (default: "
                                                    "consecutive cores by thread count)."),
    no_pin: bool = typer.Option(False, "--no-pin", help="Do not pin the processes to cores."),
    duration: float = typer.Option(2.0, "--duration", help="Seconds per measurement window."),
    batch: int = typer.Option(1, "--batch", "-b", help="Batch size (binds a symbolic first dimension)."),
    predictor: Path = typer.Option(None, "--predictor", help="Slowdown predictor directory (default: the "
                                                             "newest trained for this device)."),
    save: Path = typer.Option(None, "--save", help="Append the measurement to this co-location dataset dir."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Slowdown of each model when 2–3 models share this machine (separate processes, a thread split)."""
    from inferperf.colocate.measure import parse_cores, parse_split, plan_cores

    _check_models(models)
    if not (measure or predict):
        raise ConfigError("choose --measure (run the models together) or --predict (estimate from the graphs)")
    if duration <= 0:
        raise ConfigError(f"--duration must be > 0 seconds, got {duration}")
    threads = parse_split(threads_split, len(models))
    core_lists = parse_cores(cores, len(models))
    if core_lists is None and not no_pin:
        core_lists = plan_cores(threads)
    from inferperf.colocate.measure import prepare_model
    from inferperf.predict.fusion.data import this_device

    prepared = [prepare_model(m, batch_size=batch, name=Path(m).stem) for m in models]
    device = this_device(max(threads))
    out: dict = {"models": [Path(m).name for m in models], "threads": threads, "cores": core_lists,
                 "device": device["id"]}
    if predict:
        out["predicted"] = _predict(prepared, threads, core_lists, device["id"], predictor)
    if measure:
        from inferperf.colocate.measure import measure_colocation

        result = measure_colocation([p for p, _ in prepared], threads=threads, cores=core_lists, pin=not no_pin,
                                    duration_s=duration, names=[Path(m).stem for m in models],
                                    device_id=device["id"])
        out["measured"] = result.to_dict()
        if save is not None:
            import os

            from inferperf.colocate.dataset import ColocationDataset

            ds = ColocationDataset(save)
            for (_, graph), m in zip(prepared, models, strict=True):
                ds.add_graph(Path(m).stem, graph)
            n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            ds.append(result, {"n_cores": n_cores})
            out["saved_to"] = str(save)
    if as_json:
        typer.echo(json.dumps(out, default=str))
        return
    _print(out)


def _predict(prepared: list, threads: list[int], cores: list[list[int]] | None, device_id: str,
             predictor: Path | None) -> list[float]:
    import os

    from inferperf.colocate.predictor import SlowdownPredictor, newest_artifact

    path = predictor or newest_artifact(device_id)
    if path is None:
        raise InferperfError(
            f"no trained co-location predictor for device {device_id}: measure pairs with "
            "`inferperf colocate A.onnx B.onnx --measure --save DIR` (or collect one with "
            "inferperf.colocate.collect), then `inferperf colocate-train DIR`")
    model = SlowdownPredictor.load(path)
    n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return [float(v) for v in model.predict_group([g for _, g in prepared], threads, cores, n_cores)]


def _print(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"co-location on {out['device']}")
    for col in ("model", "threads", "cores", "solo ms", "together ms", "slowdown", "predicted"):
        table.add_column(col, justify="right" if col not in ("model",) else "left")
    measured = (out.get("measured") or {}).get("members") or []
    predicted = out.get("predicted") or []
    for i, name in enumerate(out["models"]):
        m = measured[i] if i < len(measured) else None
        table.add_row(
            name, str(out["threads"][i]), ",".join(map(str, (out["cores"] or [[]] * len(out["models"]))[i])) or "-",
            f"{m['solo_ms']:.3f}" if m else "-", f"{m['colocated_ms']:.3f}" if m else "-",
            f"×{m['slowdown']:.2f}" if m else "-", f"×{predicted[i]:.2f}" if i < len(predicted) else "-",
        )
    Console().print(table)


@app.command("colocate-train")
def colocate_train(
    dataset: Path = typer.Argument(..., help="A co-location dataset directory (records.jsonl + graphs/)."),
    out: Path = typer.Option(None, "--out", help="Where to write the predictor (default: under "
                                                 "$INFERPERF_HOME/colocate/<device>/)."),
    kind: str = typer.Option("mlp", "--kind", help="mlp (CS230) or linear."),
    target: str = typer.Option("slowdown", "--target", help="slowdown (median) or slowdown_mean."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Report MAPE on unseen groups first."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train the co-location slowdown predictor (MLP on the graphs of the co-located models)."""
    from inferperf.colocate.dataset import ColocationDataset
    from inferperf.colocate.predictor import SlowdownPredictor, default_artifact_dir, evaluate_unseen_groups

    if not (dataset / "records.jsonl").is_file():
        raise ConfigError(f"{dataset} is not a co-location dataset (no records.jsonl)")
    if target not in ("slowdown", "slowdown_mean"):
        raise ConfigError(f"--target must be slowdown or slowdown_mean, got {target!r}")
    examples = ColocationDataset(dataset).examples(target)
    report = evaluate_unseen_groups(examples) if evaluate else None
    model = SlowdownPredictor(kind=kind).fit(examples)
    records = ColocationDataset(dataset).records()
    device_id = next((r.get("device_id") for r in records if r.get("device_id")), None) or "unknown-device"
    path = model.save(out or default_artifact_dir(device_id), {"target": target, "n_examples": len(examples),
                                                               "dataset": str(dataset), "evaluation": report})
    result = {"path": str(path), "n_examples": len(examples), "depth": model.depth_, "evaluation": report}
    if as_json:
        typer.echo(json.dumps(result, default=float))
        return
    typer.echo(f"trained {kind} slowdown predictor on {len(examples)} members → {path}")
    if report:
        for name, r in report["models"].items():
            typer.echo(f"  unseen groups, {name:8s}: MAPE {r['mape']['mean']:.1f} ± {r['mape']['std']:.1f} %")
