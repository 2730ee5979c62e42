"""Batched prediction speed of two hyper-parameter settings of one predictor, measured side by side.

Why: on this VM single runs of the same code vary by ±20%, more than most differences worth measuring, so
the two settings are timed alternately, several times, in one process, on the same batch (500 distinct
60–200-node graphs, caches emptied before every timing as in ``predict_speed.py``). Training skips the
family cross-fitting (intervals do not change the prediction's cost). Usage:

    .venv/bin/python benchmarks/predict_speed_ab.py --predictor additive-gbm --train-dataset data/reference \
        --b arena=false --out benchmarks/results/predict_speed_ab_arena.json
    .venv/bin/python benchmarks/predict_speed_ab.py --predictor additive-gbm --train-dataset data/reference \
        --a n_jobs=1 --out benchmarks/results/predict_speed_ab_n_jobs.json

Writes the rates of every repeat and their medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_speed import RESULTS, _cold_caches, train_artifacts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictor", default="additive-gbm")
    parser.add_argument("--train-dataset", required=True)
    parser.add_argument("--a", action="append", default=[], metavar="NAME=VALUE", help="setting A (default: none)")
    parser.add_argument("--b", action="append", default=[], metavar="NAME=VALUE", help="setting B")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--graphs", type=int, default=500)
    parser.add_argument("--out", default=str(RESULTS / "predict_speed_ab.json"))
    args = parser.parse_args()
    os.environ.setdefault("TMPDIR", "/tmp")

    import tempfile

    from inferperf.predict.base import Predictor, parse_hparams
    from inferperf.predict.synthetic import synthetic_dataset

    settings = {"A": parse_hparams(args.a), "B": parse_hparams(args.b)}
    with tempfile.TemporaryDirectory(dir=os.environ["TMPDIR"]) as tmp:
        # trained in a spawned process: this one holds the models and the batch only (see predict_speed.py)
        paths = train_artifacts({k: {"predictor": args.predictor, "hp": {"family_folds": 0, **hp}}
                                 for k, hp in settings.items()}, args.train_dataset, tmp)
        models = {k: Predictor.load(paths[k]) for k in settings}
    pool = synthetic_dataset(per_family=args.graphs // 2, batches=(1,), seed=11, scale=3)
    small = [s for s in pool if 60 <= len(s.graph.nodes) <= 200][: args.graphs]
    graphs, configs = [s.graph for s in small], [s.config for s in small]
    device = next(iter(models["A"].devices_))
    del pool, small
    for m in models.values():
        m.predict(graphs[:20], configs[:20], device)  # warm-up: imports, first-call allocations
    rates: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeats):
        for k, m in models.items():
            _cold_caches(graphs, m)
            t = time.perf_counter()
            m.predict(graphs, configs, device)
            rates[k].append(round(len(graphs) / (time.perf_counter() - t), 1))
    report = {
        "machine": platform.processor() or platform.machine(),
        "command": "python benchmarks/predict_speed_ab.py " + " ".join(sys.argv[1:]),
        "predictor": args.predictor,
        "settings": settings,
        "batched_graphs": len(graphs),
        "graphs_per_s": rates,
        "median_graphs_per_s": {k: statistics.median(v) for k, v in rates.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
