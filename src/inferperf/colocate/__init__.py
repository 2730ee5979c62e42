"""Co-location: measure 2–3 models running at once in separate processes, and predict their slowdown.

- :mod:`~inferperf.colocate.measure` — the measurement (thread split, core pinning, synchronised windows);
- :mod:`~inferperf.colocate.dataset` — pair / trio datasets from zoo graphs (resumable, time-bounded);
- :mod:`~inferperf.colocate.predictor` — the slowdown predictor (CS230: MLP on the co-located graphs).
"""

from inferperf.colocate.dataset import ColocationDataset, ColoExample, ColoModel, collect, zoo_models
from inferperf.colocate.measure import (
    ColocationError,
    ColocationResult,
    MemberResult,
    measure_colocation,
    plan_cores,
    prepare_model,
)
from inferperf.colocate.predictor import SlowdownPredictor, evaluate_unseen_groups

__all__ = [
    "ColoExample",
    "ColoModel",
    "ColocationDataset",
    "ColocationError",
    "ColocationResult",
    "MemberResult",
    "SlowdownPredictor",
    "collect",
    "evaluate_unseen_groups",
    "measure_colocation",
    "plan_cores",
    "prepare_model",
    "zoo_models",
]
