"""``inferperf train``, ``inferperf predictors list``, ``inferperf evaluate`` and ``inferperf predict``.

Everything heavy (numpy, torch, torch_geometric, LightGBM, onnx) is imported inside the commands; module
import costs nothing at CLI start-up.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import typer

from inferperf.cli.main import app

if TYPE_CHECKING:
    from inferperf.dataset.core import GraphDataset

predictors_app = typer.Typer(
    help="Registered predictors and trained predictor artifacts.", no_args_is_help=True
)
app.add_typer(predictors_app, name="predictors")

DATASET_HELP = "Dataset directory (dataset.json or Parquet export) or file."
DB_HELP = "Read the training data from a performance database URL instead of a dataset directory."
HP_HELP = "Hyper-parameter NAME=VALUE (JSON value), repeatable, e.g. --set epochs=50 --set hidden=128."
COLLECT_HINT = (
    "collect measurements with `inferperf collect ...`, then train a predictor with "
    "`inferperf train --predictor additive-gbm --dataset DIR`"
)


def _echo_json(obj: Any) -> None:
    from inferperf.predict.base import json_clean

    typer.echo(json.dumps(json_clean(obj), indent=2, default=str))


def _load(dataset: str | None, db: str | None) -> GraphDataset:
    """The training data, without runs whose labels are not trustworthy (an export with ``--all`` keeps
    them): failed runs, and unstable runs whose median is imprecise
    (:func:`inferperf.dataset.parquet.trusted_label`)."""
    from inferperf.dataset.core import DatasetError, load_dataset

    if dataset and db:
        raise DatasetError("give either --dataset or --db, not both")
    if not dataset and not db:
        raise DatasetError("no training data: pass --dataset DIR (or --db URL)")
    if db:
        from inferperf.store.paths import resolve_db_url

        data = load_dataset(resolve_db_url(db))
    else:
        data = load_dataset(dataset)
    data = data.filter(lambda s: s.trusted)
    if len(data) == 0:
        raise DatasetError("the dataset holds no valid measurement to learn from")
    return data


def _this_device() -> tuple[str, str]:
    """(id, name) of this machine as a CPU/GPU device; the ceilings are not measured (that takes seconds)."""
    from inferperf.device.descriptor import describe_device

    d = describe_device(measure_ceilings=False)
    return d.device_id, d.name


def _pick_training_device(data: GraphDataset, device: str | None) -> list[str]:
    """The device ids to train on: ``--device``, else the dataset's only device, else this machine."""
    from inferperf.dataset.core import DatasetError

    ids = data.device_ids()
    if device == "all":
        return ids
    if device:
        if device not in ids:
            raise DatasetError(
                f"device {device!r} has no samples in the dataset; its devices: {', '.join(ids)}"
            )
        return [device]
    if len(ids) == 1:
        return ids
    here, name = _this_device()
    if here in ids:
        return [here]
    raise DatasetError(
        f"the dataset holds {len(ids)} devices ({', '.join(ids)}) and none is this machine "
        f"({here}, {name}): pass --device ID, or --device all for one cross-device predictor"
    )


def _progress(total: int, enabled: bool) -> Any:
    """A rich progress bar on stderr (a no-op object when disabled)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not enabled:

        class _Null:
            def __enter__(self) -> _Null:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def advance(self, label: str) -> None:
                return None

        return _Null()

    class _Bar:
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.progress.add_task("evaluating", total=total)

        def __enter__(self) -> _Bar:
            self.progress.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            self.progress.__exit__(*exc)  # type: ignore[arg-type]

        def advance(self, label: str) -> None:
            self.progress.update(self.task, advance=1, description=label)

    return _Bar()


def _thread_counts(text: str | None) -> set[int]:
    """``--threads 1,2`` as a set; a value that is not a positive integer is one clear error."""
    from inferperf.dataset.core import DatasetError

    if not text:
        return set()
    try:
        counts = {int(t) for t in text.split(",") if t.strip()}
    except ValueError:
        raise DatasetError(f"--threads takes comma-separated positive integers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise DatasetError(f"--threads takes comma-separated positive integers, got {text!r}")
    return counts


def _run_threads(config: dict[str, Any]) -> int | None:
    try:
        return int(config.get("intra_op_threads"))
    except (TypeError, ValueError):
        return None


def _n_fits(
    data: GraphDataset, n_predictors: int, protocol: str, seeds: int, families: list[str] | None
) -> int:
    per_seed = len(families or data.families()) if protocol == "leave-family-out" else 1
    return n_predictors * seeds * per_seed


# ======== train
@app.command()
def train(
    predictor: str = typer.Option("gnn-sage", "--predictor", "-p", help="Registered predictor name."),
    device: str = typer.Option(
        None, "--device", help="Device id to train for ('all': one cross-device model)."
    ),
    dataset: str = typer.Option(None, "--dataset", help=DATASET_HELP),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    hp: list[str] = typer.Option(None, "--set", help=HP_HELP),
    seed: int = typer.Option(0, "--seed", help="Random seed (dev split and initialisation)."),
    evaluate_protocol: str = typer.Option(
        None,
        "--evaluate",
        help="Also evaluate (leave-family-out | random) and store the result in the artifact.",
    ),
    seeds: int = typer.Option(3, "--seeds", help="Seeds for --evaluate."),
    out: str = typer.Option(
        None, "--out", help="Artifact directory (default: under $INFERPERF_HOME/predictors)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train a predictor on a dataset and save it as an artifact; prints the artifact path."""
    from pathlib import Path

    from inferperf.predict.base import get_predictor, new_artifact_dir, parse_hparams, record_evaluation

    hparams = parse_hparams(hp)
    get_predictor(predictor, **hparams)  # a bad name / hyper-parameter fails before data is read
    data = _load(dataset, db)
    ids = _pick_training_device(data, device)
    data = data.filter(lambda s: s.device_id in set(ids))
    model = get_predictor(predictor, **{**hparams, "seed": seed}).fit(data)
    path = Path(out) if out else new_artifact_dir(ids, model.name)
    model.save(path)
    result: dict[str, Any] = {
        "artifact": str(path),
        "predictor": model.name,
        "devices": ids,
        "samples": len(data),
        "fit_seconds": model.fit_seconds_,
    }
    if evaluate_protocol:
        from inferperf.predict.evaluate import evaluate, render_report

        n = _n_fits(data, 1, evaluate_protocol, seeds, None)
        with _progress(n, not as_json) as bar:
            report = evaluate(
                data,
                [model.name],
                evaluate_protocol,
                seeds=list(range(seeds)),
                hparams={model.name: hparams},
                progress=bar.advance,
            )
        result["evaluation"] = str(record_evaluation(path, report))
        if not as_json:
            render_report(report)
    if as_json:
        _echo_json(result)
    else:
        typer.echo(str(path))


# ======== predictors list
@predictors_app.command("list")
def predictors_list(
    device: str = typer.Option(None, "--device", help="Only artifacts trained on this device id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Registered predictors and the trained artifacts under $INFERPERF_HOME/predictors."""
    from inferperf.predict.base import list_artifacts, list_predictors

    preds = list_predictors()
    arts = list_artifacts(device)
    if as_json:
        _echo_json({"predictors": preds, "artifacts": [a.to_dict() for a in arts]})
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{len(preds)} predictors")
    table.add_column("name", style="bold")
    table.add_column("description")
    for p in preds:
        table.add_row(p["name"], p["description"])
    console.print(table)
    if not arts:
        console.print("no trained predictors yet — " + COLLECT_HINT)
        return
    at = Table(title=f"{len(arts)} trained artifacts")
    for col in ("predictor", "devices", "created", "LOFO MAPE %", "path"):
        at.add_column(col, overflow="fold")
    for a in arts:
        mape = f"{a.lofo_mape:.1f}" if a.lofo_mape is not None else "–"
        at.add_row(a.predictor, ", ".join(a.devices), a.created, mape, str(a.path))
    console.print(at)


# ======== evaluate
@app.command()
def evaluate(
    predictors: str = typer.Option("lr-flops,lgbm,gnn-sage", "--predictors", help="Comma-separated names."),
    protocol: str = typer.Option("leave-family-out", "--protocol", help="leave-family-out | random."),
    seeds: int = typer.Option(3, "--seeds", help="Number of seeds (0..N-1)."),
    dataset: str = typer.Option(None, "--dataset", help=DATASET_HELP),
    db: str = typer.Option(None, "--db", help=DB_HELP),
    device: str = typer.Option(None, "--device", help="Only samples of this device id."),
    threads: str = typer.Option(
        None, "--threads", help="Only runs at these intra-op thread counts (comma-separated), e.g. 1 for the "
        "reference protocol; default every run."
    ),
    families: str = typer.Option(None, "--families", help="Comma-separated subset of families to hold out."),
    hp: list[str] = typer.Option(
        None,
        "--set",
        help=HP_HELP + " Plain NAME applies to every predictor that takes it; PREDICTOR.NAME to one.",
    ),
    out: str = typer.Option(None, "--out", help="Also write the JSON report to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report."),
) -> None:
    """Evaluate predictors: leave-one-family-out or random 70/15/15, mean ± std over seeds."""
    from pathlib import Path

    from inferperf.dataset.core import DatasetError
    from inferperf.predict.base import hparams_for
    from inferperf.predict.evaluate import evaluate as run_evaluation
    from inferperf.predict.evaluate import render_report, report_json

    names = [p.strip() for p in predictors.split(",") if p.strip()]
    hparams = hparams_for(hp, names)
    counts = _thread_counts(threads)
    data = _load(dataset, db)
    if device:
        data = data.filter(device=device)
    if counts:
        data = data.filter(lambda s: _run_threads(s.config) in counts)
        if not len(data):
            raise DatasetError(f"no runs at {threads} intra-op thread(s) in the dataset")
    fams = [f.strip() for f in families.split(",")] if families else None
    n = _n_fits(data, len(names), protocol, seeds, fams)
    with _progress(n, not as_json) as bar:
        report = run_evaluation(
            data,
            names,
            protocol,
            seeds=list(range(seeds)),
            hparams=hparams,
            families=fams,
            progress=bar.advance,
        )
    clean = report_json(report)
    if out:
        Path(out).write_text(json.dumps(clean, indent=1))
    if as_json:
        typer.echo(json.dumps(clean, indent=2))
    else:
        render_report(report)


# ======== predict
@app.command()
def predict(
    model: str = typer.Argument(..., help="An .onnx file or an architecture name (see `inferperf archs`)."),
    batch: int = typer.Option(None, "--batch", "-b", help="Batch size."),
    seq_len: int = typer.Option(None, "--seq-len", help="Sequence length for text models."),
    image_size: int = typer.Option(None, "--image-size", help="Image height/width for vision models."),
    threads: int = typer.Option(1, "--threads", help="Intra-op threads of the configuration to predict."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime of the configuration to predict."),
    device: str = typer.Option(None, "--device", help="Device id (default: this machine)."),
    predictor: str = typer.Option(None, "--predictor", "-p", help="Use the best artifact of this predictor."),
    artifact: str = typer.Option(None, "--artifact", help="Use this artifact directory."),
    mig_gpu: str = typer.Option(None, "--mig-gpu", help="Choose a MIG profile of this GPU (e.g. A100-40GB)."),
    kernels: bool = typer.Option(
        False, "--kernels", "--breakdown",
        help="Also show where the time goes: the predicted kernels (fusion-kernel, rule-kernel) or the priced "
        "cost terms (additive).",
    ),
    calibrate: bool = typer.Option(
        False, "--calibrate",
        help="This machine has no trained predictor: use the best artifact of another device and rescale it by "
        "measuring two small architectures of other families here (few-shot device calibration).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Predict latency (with a 90% interval), memory, energy and MIG profile of a model on a device."""
    from inferperf.predict.base import NoArtifactError, PredictorError, best_artifact, read_meta

    os.environ.setdefault("TMPDIR", "/tmp")
    if calibrate and device:
        raise PredictorError("--calibrate rescales to this machine; it does not combine with --device")
    here_id, here_name = _this_device() if calibrate or not (device or artifact) else (None, None)
    if artifact:
        from pathlib import Path

        path = Path(artifact)
        meta = read_meta(path)
        device_id = device or next(iter(meta.get("devices") or {}), None)
        if device_id is None:
            raise NoArtifactError(f"{path} records no training device")
        if calibrate and here_id in (meta.get("devices") or {}):
            device_id = here_id
    else:
        if device:
            device_id, device_name = device, device
        else:
            device_id, device_name = here_id, here_name
        best = best_artifact(device_id, predictor)
        if best is None and calibrate:
            best = best_artifact(None, predictor)
            if best is not None:
                device_id = best.devices[0]
        if best is None:
            what = f"no trained {predictor!r} predictor" if predictor else "no trained predictor"
            other = "" if calibrate or device or best_artifact(None, predictor) is None else (
                "; or pass --calibrate to rescale another device's predictor to this machine")
            raise NoArtifactError(f"{what} for device {device_id} ({device_name}): {COLLECT_HINT}{other}")
        path = best.path

    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_model
    from inferperf.predict.base import Predictor

    loaded = load_model(model, batch_size=batch, seq_len=seq_len, image_size=image_size)
    graph = build_graph(loaded.model, name=loaded.name, metadata=loaded.metadata)
    trained = Predictor.load(path)
    config = {
        "runtime": runtime,
        "batch_size": batch or graph.batch_size or 1,
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "opt_level": "all",
    }
    result = trained.predict([graph], [config], device_id, mig_gpu=mig_gpu)[0]
    out = result.to_dict()
    if calibrate and device_id != here_id:
        from inferperf.cli.calibration import calibrate_device

        meta = loaded.metadata or {}
        cal = calibrate_device(trained, trained.resolve_device(device_id), config, device_id=here_id,
                               modality=meta.get("modality"), exclude_family=meta.get("family"),
                               report=None if as_json else typer.echo)
        if cal is None:
            raise PredictorError("--calibrate: no calibration model could be measured on this machine")
        out["uncalibrated_latency_ms"] = out["latency_ms"]
        out["latency_ms"], interval = cal.apply(out["latency_ms"], result.interval_90)
        out["interval_90"] = list(interval) if interval else None
        if out.get("intervals"):
            out["intervals"]["latency_ms"] = out["interval_90"]
        out["device"] = cal.device
        out["calibration"] = cal.to_dict()
    out["artifact"] = str(path)
    out["model"] = loaded.name
    out["config"] = config
    breakdown = out.get("breakdown") or {}
    if kernels and "top_kernels" not in breakdown and "by_term" not in breakdown:
        raise PredictorError(
            f"--kernels: the {out['predictor']!r} predictor predicts the whole graph, not its kernels; use "
            "--predictor fusion-kernel or rule-kernel (kernels) or additive (cost terms)"
        )
    if as_json:
        _echo_json(out)
        return
    _print_prediction(out, mig_asked=bool(mig_gpu))
    if kernels:
        _print_breakdown(breakdown)


def _term_label(term: str) -> str:
    """A reader's name for an additive cost column (``mmacs_conv_dense`` → "compute: conv_dense MACs")."""
    fixed = {"call": "per-call overhead", "n_all": "dispatch: every operator", "mmacs_all": "compute: every MAC",
             "mb_all": "memory traffic: every byte", "mb_im2col": "im2col buffers (convs off the NCHWc path)"}
    if term in fixed:
        return fixed[term]
    prefix, _, rest = term.partition("_")
    return {"n": f"dispatch: {rest} operators", "mmacs": f"compute: {rest} MACs",
            "mb": f"memory traffic: {rest} bytes"}.get(prefix, term)


def _print_breakdown(breakdown: dict[str, Any]) -> None:
    """The kernels (or cost terms) behind a prediction: the answer to "where does the time go"."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    total = breakdown.get("latency_ms")
    if breakdown.get("top_kernels"):
        console.print(f"{breakdown.get('n_kernels')} kernels, {breakdown.get('fused_edges')} of "
                      f"{breakdown.get('n_edges')} edges fused")
        top = Table(title="top kernels by predicted time")
        for col in ("kernel type", "ms", "share", "nodes"):
            top.add_column(col, justify="right" if col in ("ms", "share") else "left")
        for k in breakdown["top_kernels"]:
            nodes = k.get("nodes") or []
            shown = ", ".join(nodes[:3]) + (f" (+{len(nodes) - 3})" if len(nodes) > 3 else "")
            share = k.get("share")
            top.add_row(k["kernel_type"], f"{k['latency_ms']:.4g}", "–" if share is None else f"{share:.1%}", shown)
        console.print(top)
        by_type = Table(title="time per kernel type")
        by_type.add_column("kernel type")
        by_type.add_column("share", justify="right")
        for kind, share in (breakdown.get("by_type") or {}).items():
            by_type.add_row(kind, f"{share:.1%}")
        console.print(by_type)
    if breakdown.get("by_term"):
        terms = Table(title="latency by cost term (additive model)")
        terms.add_column("term")
        terms.add_column("ms", justify="right")
        terms.add_column("share", justify="right")
        tsum = sum(breakdown["by_term"].values()) or None
        for term, ms in breakdown["by_term"].items():
            terms.add_row(_term_label(term), f"{ms:.4g}", f"{ms / tsum:.1%}" if tsum else "–")
        console.print(terms)
    if total is not None and breakdown.get("fixed_ms") is not None:
        console.print(f"[dim]fixed per-run overhead {breakdown['fixed_ms']:.4g} ms of {total:.4g} ms[/dim]")
    if breakdown.get("correction_factor") is not None:
        console.print(f"[dim]the terms include the learned correction ×{breakdown['correction_factor']:.3f} "
                      "(additive-gbm)[/dim]")
    extrapolated = breakdown.get("share_extrapolation")
    if extrapolated:
        console.print(f"[yellow]compute share {extrapolated['share']:.3g} was never measured: predicted at "
                      f"{extrapolated['predicted_at']:.3g} and scaled ×{extrapolated['factor']:.3f} "
                      f"(latency ∝ share^-{extrapolated['exponent']:.2f})[/yellow]")


def _print_prediction(out: dict[str, Any], mig_asked: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(v: float | None, unit: str) -> str:
        return "–" if v is None else f"{v:.4g} {unit}"

    table = Table(title=f"{out['model']} on {out['device']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    lat = fmt(out["latency_ms"], "ms")
    if out.get("interval_90"):
        lo, hi = out["interval_90"]
        lat += f"   (90%: {lo:.4g} – {hi:.4g} ms)"
    table.add_row("latency", lat)
    table.add_row("memory", fmt(out["memory_mb"], "MiB"))
    table.add_row("energy", fmt(out["energy_j"], "J"))
    table.add_row("MIG profile", out["mig_profile"] or "–")
    score = out.get("ood_score")
    ood = ("yes — unlike the training graphs; treat with caution" if out["ood"] else "no") + (
        f" (score {score:.2f})" if score is not None else ""
    )
    table.add_row("out of distribution", ood)
    table.add_row("predictor", f"{out['predictor']}  ({out['artifact']})")
    Console().print(table)
    mig_note = (out.get("breakdown") or {}).get("mig")
    # on a CPU nobody asked about MIG: say why there is no profile only when it was asked for
    if mig_note and out["mig_profile"] is None and (mig_asked or "not a MIG-capable GPU" not in mig_note):
        Console().print(f"[dim]MIG: {mig_note}[/dim]")
