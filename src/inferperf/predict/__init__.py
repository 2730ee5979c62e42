"""Predictors: learn from measured graphs, predict latency / memory / energy with an interval.

The public entry points are re-exported here; model implementations (torch, LightGBM) are imported only
when a predictor is built, so importing this package stays cheap.
"""

from inferperf.predict.base import (
    NoArtifactError,
    NotFittedError,
    Prediction,
    Predictor,
    PredictorError,
    best_artifact,
    get_predictor,
    list_artifacts,
    list_predictors,
    register,
)
from inferperf.predict.mig import mig_choice, mig_profile

__all__ = [
    "NoArtifactError",
    "NotFittedError",
    "Prediction",
    "Predictor",
    "PredictorError",
    "best_artifact",
    "get_predictor",
    "list_artifacts",
    "list_predictors",
    "mig_choice",
    "mig_profile",
    "register",
]
