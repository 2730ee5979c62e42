"""``inferperf demo``: the main job, end to end, on the embedded default (SQLite, in-process).

1. ingest a real architecture and show its graph summary;
2. train a predictor on the reference dataset shipped in the repository, with the architecture's whole
   family held out of training (so the prediction is for an architecture family never seen);
3. predict its latency (with the 90% interval), memory and out-of-distribution flag;
4. measure it with the adaptive protocol into the embedded PerfDB;
5. print predicted vs measured.

The shipped predictor knows the reference machine only. When this machine is another CPU (its fingerprint is
not a training device — e.g. AVX2 here, AVX-512 there: ResNet-50 ran 40 ms there and 94 ms on an AVX2 VM), a
prediction for the reference device is not a prediction for this one, and the demo says so. It then
calibrates the device few-shot: two small architectures of the same modality, from families other than the
held-out one, are measured here, and the geometric mean of measured / predicted rescales the prediction (the
interval is widened by the spread of those ratios). The held-out model itself is still measured only after
its prediction.
"""

from __future__ import annotations

from pathlib import Path

import typer

from inferperf.cli.main import app

#: the reference dataset shipped in the repository (features and labels, no weights)
REFERENCE_DATASET = Path(__file__).resolve().parents[3] / "data" / "reference"
@app.command()
def demo(
    model: str = typer.Option("resnet50", help="Architecture to run the demo on."),
    predictor: str = typer.Option("additive-gbm", help="Predictor to train (see `inferperf predictors list`)."),
    dataset: Path = typer.Option(REFERENCE_DATASET, help="Training dataset (an exported dataset directory)."),
    measure: bool = typer.Option(True, help="Measure the model after predicting it."),
    max_time: float = typer.Option(10.0, help="Timing cap for the measurement (seconds)."),
    calibrate: bool = typer.Option(True, help="On a machine that is not a training device, measure two small "
                                   "architectures of other families to rescale the prediction."),
) -> None:
    """Run the main job end to end: graph → train (family held out) → predict → measure → compare."""
    import os

    from rich.console import Console

    from inferperf.cli.graph import graph as graph_command
    from inferperf.errors import InferperfError

    os.environ.setdefault("TMPDIR", "/tmp")
    console = Console()
    console.rule(f"[bold]1. graph IR of {model}")
    graph_command(model=model, batch=1, seq_len=None, image_size=None, inputs=None, overrides=None, nodes=False,
                  csv=None, as_json=False)

    from inferperf.dataset import load_dataset
    from inferperf.ir.architectures import get_architecture
    from inferperf.ir.build import build_graph
    from inferperf.ir.ingest import load_model
    from inferperf.predict import get_predictor

    family = get_architecture(model).family
    if not dataset.exists():
        raise InferperfError(f"no reference dataset at {dataset}: run `inferperf collect` and "
                             "`inferperf dataset export --out data/reference` first")
    data = load_dataset(str(dataset))
    # only runs that met the stopping rule (unstable ones are stored, flagged, and left out here)
    train = data.filter(lambda s: s.trusted, exclude_families=[family],
                        target="latency_ms")
    console.rule(f"[bold]2. train {predictor} on {len(train)} runs, family '{family}' held out")
    console.print(f"families in training: {', '.join(sorted(train.families()))}")
    fitted = get_predictor(predictor).fit(train)

    console.rule(f"[bold]3. predict {model} (batch 1, 1 thread, ONNX Runtime)")
    loaded = load_model(model, batch_size=1)
    g = build_graph(loaded.model, loaded.name, loaded.metadata)
    config = {"runtime": "onnxruntime", "batch_size": 1, "intra_op_threads": 1, "inter_op_threads": 1,
              "opt_level": "all"}
    reference = train.devices()[0]
    pred = fitted.predict([g], [config], reference)[0]
    lo, hi = pred.interval_90 or (None, None)
    latency = pred.latency_ms
    console.print(f"predicted latency {pred.latency_ms:.2f} ms"
                  + (f", 90% interval [{lo:.2f}, {hi:.2f}] ms" if lo is not None else "")
                  + (f", memory {pred.memory_mb:.0f} MB" if pred.memory_mb else "")
                  + f" on the reference device {reference.get('name', '')} ({reference['id']})"
                  + (" [yellow](out of distribution: treat the interval with suspicion)[/yellow]" if pred.ood else ""))

    from inferperf.cli.calibration import isa_summary
    from inferperf.cli.measure import _print_runs, run_bench
    from inferperf.cli.predict import _this_device

    here_id, here_name = _this_device()
    trained_ids = {str(d["id"]) for d in train.devices()}
    device_note = ""
    if here_id not in trained_ids:
        console.print(f"[yellow]this machine ({here_name}, {here_id}; {isa_summary(None)}) is not a training device "
                      f"({', '.join(sorted(trained_ids))}; {isa_summary(reference)}): the prediction above is for "
                      "the reference device[/yellow]")
        device_note = "; this machine is not the training device"
        if measure and calibrate:
            from inferperf.cli.calibration import calibrate_device, pick_architectures

            modality = getattr(get_architecture(model), "modality", "vision")
            picks = pick_architectures(modality, family)
            console.rule(f"[bold]3b. calibrate this device: measure {', '.join(picks)} (other families)")
            cal = calibrate_device(fitted, reference, config, device_id=here_id, modality=modality,
                                   exclude_family=family, max_time_s=min(max_time, 3.0), report=console.print)
            if cal is not None:
                latency, interval = cal.apply(pred.latency_ms, (lo, hi) if lo is not None else None)
                lo, hi = interval or (None, None)
                device_note = f"; calibrated to this machine ×{cal.scale:.2f} from {len(cal.models)} other models"
                console.print(f"calibrated prediction for this machine: {latency:.2f} ms"
                              + (f", 90% interval [{lo:.2f}, {hi:.2f}] ms (widened by the calibration spread "
                                 f"×{cal.spread:.2f})" if lo is not None else ""))
    if not measure:
        return

    console.rule(f"[bold]4. measure {model} (adaptive protocol, child process, stored in PerfDB)")

    result = run_bench(model, batches=[1], threads=[1], max_time_s=max_time, profile=False)
    _print_runs(result)
    run = result["runs"][0]
    if not run.get("latency_ms"):
        raise InferperfError(f"the measurement failed: {run.get('error')}")
    measured = run["latency_ms"]["p50"]

    console.rule("[bold]5. predicted vs measured")
    err = 100.0 * (latency - measured) / measured
    inside = lo is not None and lo <= measured <= hi
    console.print(f"{model}: predicted {latency:.2f} ms vs measured median {measured:.2f} ms "
                  f"→ error {err:+.1f}%"
                  + (f"; the measurement is {'inside' if inside else 'outside'} the 90% interval" if lo else "")
                  + f"  (predictor {predictor}, family '{family}' never seen in training{device_note})")
    measured_mb = run.get("memory_mb")
    if pred.memory_mb and measured_mb:
        # the heap footprint does not depend on the CPU's speed: no calibration applies to it
        console.print(f"{model} memory: predicted {pred.memory_mb:.1f} MB vs measured {measured_mb:.1f} MB "
                      f"→ error {100.0 * (pred.memory_mb - measured_mb) / measured_mb:+.1f}%")

