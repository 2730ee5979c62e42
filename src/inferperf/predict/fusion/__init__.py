"""Kernel-level latency prediction: learned operator fusion (LILOU) and the rule-based baseline (nn-Meter).

- :mod:`~inferperf.predict.fusion.data` — fusion / kernel labels from profiled runs, PerfDB loading;
- :mod:`~inferperf.predict.fusion.edge_classifier` — GAT-LSTM fusible-edge classifier;
- :mod:`~inferperf.predict.fusion.kernels` — union-find kernel extraction, the fused-graph result;
- :mod:`~inferperf.predict.fusion.kernel_model` — GAT kernel latency regressor + kernel type classifier;
- :mod:`~inferperf.predict.fusion.rules` — hand-written ORT CPU fusion rules + per-type LightGBM;
- :mod:`~inferperf.predict.fusion.predictor` — the ``fusion-kernel`` and ``rule-kernel`` predictors;
- :mod:`~inferperf.predict.fusion.evaluation` — fusion / kernel-type / end-to-end / held-out-share metrics.

Importing this package registers the two predictors; torch and torch_geometric load only when a model is
trained or used.
"""

from inferperf.predict.fusion.kernels import FusedGraph, PredictedKernel, UnionFind, extract_kernels
from inferperf.predict.fusion.predictor import FusionKernelPredictor, RuleKernelPredictor

__all__ = [
    "FusedGraph",
    "FusionKernelPredictor",
    "PredictedKernel",
    "RuleKernelPredictor",
    "UnionFind",
    "extract_kernels",
]
