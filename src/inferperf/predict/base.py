"""The predictor interface, the registry of predictors, and trained artifacts on disk.

scikit-learn conventions: hyper-parameters are constructor arguments stored under the same name, nothing
is learned before :meth:`Predictor.fit`, learned state ends with ``_``. Every predictor learns the targets
of :data:`~inferperf.dataset.core.TARGETS` in log space (latency spans four orders of magnitude, and a
relative error is what users care about) from the graph plus the run configuration plus the device
features, so one artifact can answer for several batch sizes, thread counts and — when trained on several
— devices.

:meth:`Predictor.fit` is a template shared by all models: it holds out a dev split when none is given,
splits the dev set into a *selection* half (early stopping, model selection) and a *calibration* half
(split-conformal intervals, so the interval is not calibrated on the data that chose the model), fits the
OOD detector on the training graphs, and records what was seen. Subclasses implement ``_fit`` and
``_predict_log``.

Artifacts live in ``$INFERPERF_HOME/predictors/<device_id>/<name>-<timestamp>/`` (``multi-device`` when
trained on several devices): model weights plus ``meta.json`` with the feature encoding, the training-data
summary, hyper-parameters, library versions and evaluation results. This module imports no torch.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import platform
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inferperf.dataset.core import TARGETS, GraphDataset
from inferperf.errors import InferperfError
from inferperf.ir.graph import ModelGraph

ARTIFACT_FORMAT = 1
META_FILENAME = "meta.json"
MULTI_DEVICE_DIR = "multi-device"


class PredictorError(InferperfError):
    """A predictor cannot be built, trained, used or loaded as asked."""


class NotFittedError(PredictorError):
    """``predict``/``save`` called before ``fit``."""


class NoArtifactError(PredictorError):
    """No trained predictor exists for the requested device."""


# ======== Prediction
@dataclass
class Prediction:
    """What a predictor says about one (graph, configuration, device).

    ``interval_90`` is the split-conformal 90% interval of the latency (None when the artifact had too few
    calibration points); ``intervals`` has the interval of every predicted target. ``ood`` is True when the
    graph lies further from the training graphs than 99% of them lie from each other — treat the numbers,
    and especially the interval, with suspicion then.
    """

    latency_ms: float | None
    interval_90: tuple[float, float] | None
    memory_mb: float | None
    energy_j: float | None
    mig_profile: str | None
    predictor: str
    device: str
    ood: bool
    ood_score: float | None
    breakdown: dict[str, Any] | None = None
    intervals: dict[str, tuple[float, float] | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "interval_90": list(self.interval_90) if self.interval_90 else None,
            "memory_mb": self.memory_mb,
            "energy_j": self.energy_j,
            "mig_profile": self.mig_profile,
            "predictor": self.predictor,
            "device": self.device,
            "ood": self.ood,
            "ood_score": self.ood_score,
            "intervals": {k: (list(v) if v else None) for k, v in self.intervals.items()},
            "breakdown": self.breakdown,
        }


# ======== registry
@dataclass(frozen=True)
class PredictorSpec:
    name: str
    module: str
    cls: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, PredictorSpec] = {}


def _builtin(name: str, module: str, cls: str, description: str, **defaults: Any) -> None:
    _REGISTRY[name] = PredictorSpec(name, module, cls, description, dict(defaults))


_builtin(
    "lr-flops",
    "inferperf.predict.baselines",
    "LinearFlopsPredictor",
    "linear regression of log target on log FLOPs, log params, config and device (log-log)",
)
_builtin(
    "mlp-flat",
    "inferperf.predict.baselines",
    "FlatMLPPredictor",
    "MLP on the flattened node attribute list + adjacency (padded), depth chosen on dev (CS230)",
)
_builtin(
    "lgbm",
    "inferperf.predict.baselines",
    "LightGBMPredictor",
    "gradient-boosted trees (LightGBM) on static graph features + config + device",
)
for _conv, _desc in (
    ("sage", "GraphSAGE (DIPPM)"),
    ("gat", "GAT"),
    ("gcn", "GCN"),
    ("gin", "GIN"),
    ("none", "no GNN: static features only, same MLP head"),
):
    _builtin(
        f"gnn-{_conv}",
        "inferperf.predict.gnn",
        "GNNPredictor",
        f"graph-level multi-target GNN: 3 {_desc} blocks + pooling + static/config/device features"
        if _conv != "none"
        else f"graph-level multi-target GNN ablation — {_desc}",
        conv=_conv,
    )
_builtin(
    "additive",
    "inferperf.predict.additive",
    "AdditivePredictor",
    "non-negative additive cost model: per-op-category overheads + MACs per conv/matmul kind + bytes per "
    "category, priced by NNLS on relative error per device and thread count",
)
_builtin(
    "additive-gbm",
    "inferperf.predict.additive_gbm",
    "AdditiveGBMPredictor",
    "the additive cost model times a LightGBM correction factor learned from what each graph's time is made of",
)
_builtin(
    "fusion-kernel",
    "inferperf.predict.fusion.predictor",
    "FusionKernelPredictor",
    "LILOU: GAT-LSTM fusible-edge classifier, union-find kernels, GAT kernel latency + type with "
    "device/resource features, summed",
)
_builtin(
    "rule-kernel",
    "inferperf.predict.fusion.predictor",
    "RuleKernelPredictor",
    "nn-Meter style: hand-written ORT CPU fusion rules, LightGBM latency per kernel type, summed",
)


def register(name: str, description: str = "", **defaults: Any) -> Callable[[type], type]:
    """Class decorator adding a predictor under ``name`` (``defaults`` are fixed constructor arguments)."""

    def deco(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Predictor)):
            raise TypeError(f"{cls!r} is not a Predictor subclass")
        existing = _REGISTRY.get(name)
        if existing is not None and (existing.module, existing.cls) != (cls.__module__, cls.__qualname__):
            raise PredictorError(f"predictor name {name!r} is already registered by {existing.module}")
        doc = (cls.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = PredictorSpec(
            name,
            cls.__module__,
            cls.__qualname__,
            description or (existing.description if existing else "") or (doc[0] if doc else ""),
            dict(defaults or (existing.defaults if existing else {})),
        )
        return cls

    return deco


def list_predictors() -> list[dict[str, Any]]:
    """Registered predictors (no heavy import happens here)."""
    return [
        {"name": s.name, "description": s.description, "class": f"{s.module}.{s.cls}", "defaults": s.defaults}
        for s in _REGISTRY.values()
    ]


def _spec(name: str) -> PredictorSpec:
    spec = _REGISTRY.get(name)
    if spec is None:
        raise PredictorError(f"unknown predictor {name!r}; available: {', '.join(_REGISTRY)}")
    return spec


def predictor_class(name: str) -> type[Predictor]:
    spec = _spec(name)
    module = importlib.import_module(spec.module)
    obj: Any = module
    for part in spec.cls.split("."):
        obj = getattr(obj, part)
    return obj


def get_predictor(name: str, **hparams: Any) -> Predictor:
    """A new, unfitted predictor; ``hparams`` override the registered defaults."""
    spec = _spec(name)
    cls = predictor_class(name)
    params = {**spec.defaults, **hparams}
    valid = _init_params(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise PredictorError(
            f"predictor {name!r} has no hyper-parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(valid))}"
        )
    return cls(**params)


def _init_params(cls: type) -> list[str]:
    """Constructor argument names over the MRO (subclasses forward ``**kwargs`` to the base)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in klass.__dict__:
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                names.append(p.name)
    return names


def parse_hparams(items: Sequence[str] | None) -> dict[str, Any]:
    """``["hidden=64", "epochs=20", "pooling=sum"]`` → dict with JSON-decoded values where possible."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise PredictorError(f"hyper-parameter '{item}' must be NAME=VALUE")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def hparams_for(items: Sequence[str] | None, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-predictor hyper-parameters from ``--set`` items for several predictors at once.

    ``gnn-sage.epochs=50`` applies to that predictor only; a plain ``threads=1`` applies to every listed
    predictor that takes it. A key no listed predictor takes is an error (a typo must not pass silently).
    """
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in parse_hparams(items).items():
        target, _, param = key.rpartition(".") if "." in key else ("", "", key)
        if target:
            if target not in out:
                raise PredictorError(
                    f"--set {key}: {target!r} is not one of the predictors {', '.join(names)}"
                )
            out[target][param] = value
            continue
        takers = [n for n in names if param in _init_params(predictor_class(n))]
        if not takers:
            raise PredictorError(f"no predictor among {', '.join(names)} has a hyper-parameter {param!r}")
        for n in takers:
            out[n][param] = value
    for n, hp in out.items():
        get_predictor(n, **hp)  # validates the names
    return out


# ======== Predictor
def log_labels(dataset: GraphDataset, targets: Sequence[str] = TARGETS) -> np.ndarray:
    """[n, len(targets)] natural-log labels, NaN where missing."""
    y = np.full((len(dataset), len(targets)), np.nan)
    for i, s in enumerate(dataset):
        for j, t in enumerate(targets):
            v = s.label(t)
            if v is not None:
                y[i, j] = math.log(v)
    return y


class Predictor(ABC):
    """Base class of every predictor (see the module docstring for the conventions)."""

    #: the registry name; a class serving several names (the GNN variants) sets it per instance
    name: ClassVar[str] = ""
    #: family folds for the unseen-family interval when ``family_folds`` is None: cheap fits cross-fit by
    #: default, expensive ones (neural networks) opt in
    default_family_folds: ClassVar[int] = 0

    def __init__(
        self,
        *,
        seed: int = 0,
        alpha: float = 0.1,
        min_group: int = 30,
        dev_fraction: float = 0.15,
        ood_k: int = 5,
        ood_quantile: float = 0.99,
        mig_margin: float = 0.1,
        family_folds: int | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.seed = seed
        #: processes that derive per-graph inputs of a large batch (None: every available CPU; 1: none forked);
        #: results do not depend on it
        self.n_jobs = n_jobs
        self.family_folds = family_folds
        self.alpha = alpha
        self.min_group = min_group
        self.dev_fraction = dev_fraction
        self.ood_k = ood_k
        self.ood_quantile = ood_quantile
        self.mig_margin = mig_margin

    # ---- sklearn-style parameters --------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in _init_params(type(self))}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    @property
    def fitted(self) -> bool:
        return bool(getattr(self, "fitted_", False))

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(
                f"predictor {self.name!r} is not trained yet: call fit() (or load an artifact) "
                "before predict() or save()"
            )

    # ---- training ------------------------------------------------------------------------------------
    def fit(self, dataset: GraphDataset, dev: GraphDataset | None = None) -> Predictor:
        """Train on ``dataset``; ``dev`` selects the model (early stopping) and calibrates intervals.

        Without ``dev``, ``dev_fraction`` of the graphs are held out of ``dataset`` for it. The dev set is
        split by graph into a selection half and a calibration half when it has at least 2·``min_group``
        graphs; a smaller dev set serves both purposes (intervals then come out slightly too narrow).
        """
        from inferperf.predict.conformal import ConformalCalibrator
        from inferperf.predict.features import static_matrix
        from inferperf.predict.ood import OODDetector

        if not isinstance(dataset, GraphDataset):
            raise PredictorError(f"fit() takes a GraphDataset, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise PredictorError("cannot train on an empty dataset")
        targets = [t for t in TARGETS if any(s.label(t) is not None for s in dataset)]
        if "latency_ms" not in targets:
            raise PredictorError("the training data has no latency_ms labels")
        given = list(dataset) + (list(dev) if dev is not None else [])
        self._derive_all([s.graph for s in given], [s.config for s in given], [s.device for s in given])
        train = dataset
        if dev is None or len(dev) == 0:
            n_groups = len({s.group_key for s in dataset})
            if n_groups >= 10 and self.dev_fraction > 0:
                train, dev = dataset.random_split(self.seed, (1 - self.dev_fraction, self.dev_fraction))
            else:
                dev = None
        select, calib = dev, dev
        if dev is not None and len({s.group_key for s in dev}) >= 2 * self.min_group:
            select, calib = dev.random_split(self.seed + 1, (0.5, 0.5))

        self.targets_ = targets
        self.devices_ = {str(d["id"]): d for d in train.devices()}
        if dev is not None:
            for d in dev.devices():
                self.devices_.setdefault(str(d["id"]), d)
        t0 = time.perf_counter()
        self._fit(train, select)
        self.fit_seconds_ = round(time.perf_counter() - t0, 3)
        self.fitted_ = True

        self.conformal_ = ConformalCalibrator(alpha=self.alpha, min_group=self.min_group)
        if calib is not None and len(calib):
            pred = self._predict_natural(
                [s.graph for s in calib], [s.config for s in calib], [s.device for s in calib]
            )
            truth = np.exp(log_labels(calib, TARGETS))
            self.conformal_.fit(TARGETS, truth, pred, [s.family for s in calib])
            self._fit_unseen_family_intervals(train)
        unique = {s.graph_key: s for s in train}
        self.ood_ = OODDetector(k=self.ood_k, quantile=self.ood_quantile, seed=self.seed).fit(
            static_matrix([s.graph for s in unique.values()]), [s.group_key for s in unique.values()]
        )
        self.training_ = train.summary()
        self.dev_ = dev.summary() if dev is not None else None
        self.calibration_n_ = len(calib) if calib is not None else 0
        return self

    def _fit_unseen_family_intervals(self, train: GraphDataset) -> None:
        """Cross-fit over families: every training family predicted by a copy trained without it, so the
        interval of a family never seen is sized by the errors of extrapolation, not of interpolation."""
        folds = self.default_family_folds if self.family_folds is None else int(self.family_folds)
        families = sorted({s.family for s in train if s.family})
        if folds < 2 or len(families) < folds + 1:
            return
        order = np.random.default_rng(self.seed).permutation(len(families))
        fold_of = {families[i]: k % folds for k, i in enumerate(order)}
        truth_parts, pred_parts = [], []
        for k in range(folds):
            held = GraphDataset([s for s in train if fold_of.get(s.family) == k])
            rest = GraphDataset([s for s in train if fold_of.get(s.family) != k])
            if not len(held) or not len(rest):
                continue
            copy = type(self)(**{**self.get_params(), "family_folds": 0})
            copy.name = self.name
            copy.targets_, copy.devices_ = self.targets_, self.devices_
            copy._fit(rest, None)
            pred_parts.append(copy._predict_natural(
                [s.graph for s in held], [s.config for s in held], [s.device for s in held]
            ))
            truth_parts.append(np.exp(log_labels(held, TARGETS)))
        if pred_parts:
            self.conformal_.fit_unseen(TARGETS, np.vstack(truth_parts), np.vstack(pred_parts), families)

    def _derived_keys(self) -> tuple[str, ...]:
        """Names of the memo entries :meth:`_derive` leaves on a graph (see :mod:`inferperf.predict.parallel`);
        empty (the default): the predictor derives nothing costly per graph."""
        return ()

    def _derive(self, graph: ModelGraph, config: dict[str, Any], device: dict[str, Any]) -> None:
        """Compute and memoise on ``graph`` what prediction will read of it (the entries named by
        :meth:`_derived_keys`); nothing by default."""
        return None

    def _derive_all(self, graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]],
                    devices: Sequence[dict[str, Any]]) -> None:
        """:meth:`_derive` for a batch, in ``n_jobs`` processes when it is large enough to pay for them."""
        keys = self._derived_keys()
        if keys and len(graphs):
            from inferperf.predict.parallel import derive_all

            derive_all(graphs, configs, devices, self._derive, keys, self.n_jobs)

    @abstractmethod
    def _fit(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        """Learn from ``train``; ``dev`` (may be None) is for early stopping / model selection only."""

    @abstractmethod
    def _predict_log(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
    ) -> np.ndarray:
        """[n, len(TARGETS)] natural-log predictions; NaN for targets this model was not trained on."""

    def _predict_natural(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
    ) -> np.ndarray:
        if not graphs:
            return np.zeros((0, len(TARGETS)))
        with np.errstate(over="ignore"):
            return np.exp(np.asarray(self._predict_log(graphs, configs, devices), dtype=np.float64))

    # ---- prediction ----------------------------------------------------------------------------------
    def resolve_device(self, device: dict[str, Any] | str) -> dict[str, Any]:
        """A device dict; a device id seen in training resolves to the stored dict (so the features used
        at prediction equal the features used in training)."""
        self._require_fitted()
        if isinstance(device, str):
            if device not in self.devices_:
                raise PredictorError(
                    f"device {device!r} was not in this predictor's training data (trained on: "
                    f"{', '.join(self.devices_)}); pass a device dict with its features"
                )
            return self.devices_[device]
        if not isinstance(device, dict) or "id" not in device:
            raise PredictorError("device must be a device id or a dict with 'id' and 'features'")
        if not device.get("features") and str(device["id"]) in self.devices_:
            return self.devices_[str(device["id"])]
        return device

    def predict_arrays(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
        groups: Sequence[str | None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Vectorised prediction: ``pred``, ``lo``, ``hi`` ([n, len(TARGETS)]) and ``ood_score`` ([n])."""
        from inferperf.predict.features import static_matrix

        self._require_fitted()
        n = len(graphs)
        if not (len(configs) == n == len(devices)):
            raise PredictorError(f"{n} graphs but {len(configs)} configs and {len(devices)} devices")
        self._derive_all(graphs, configs, devices)
        if groups is None:
            groups = [g.metadata.get("family") for g in graphs]
        pred = self._predict_natural(graphs, configs, devices)
        lo = np.full_like(pred, np.nan)
        hi = np.full_like(pred, np.nan)
        for j, t in enumerate(TARGETS):
            lo[:, j], hi[:, j] = self.conformal_.intervals(t, pred[:, j], groups)
        ood = self.ood_.score(static_matrix(graphs)) if n else np.zeros(0)
        return {"pred": pred, "lo": lo, "hi": hi, "ood_score": ood}

    def predict(
        self,
        graphs: Sequence[ModelGraph] | ModelGraph,
        configs: Sequence[dict[str, Any]] | dict[str, Any],
        device: dict[str, Any] | str,
        mig_gpu: str | None = None,
    ) -> list[Prediction]:
        """One :class:`Prediction` per graph. ``configs`` may be one dict for all graphs; ``device`` is a
        device dict (``{"id", "name", "features"}``) or the id of a training device. The MIG profile is
        chosen for ``mig_gpu``, or for the device's own GPU when it is a MIG-capable NVIDIA GPU."""
        from inferperf.predict.mig import UnknownGpuError, mig_choice

        self._require_fitted()
        if isinstance(graphs, ModelGraph):
            graphs = [graphs]
        graphs = list(graphs)
        if isinstance(configs, dict):
            configs = [configs] * len(graphs)
        configs = list(configs)
        dev = self.resolve_device(device)
        arrays = self.predict_arrays(graphs, configs, [dev] * len(graphs))
        gpu = mig_gpu or _device_gpu_name(dev)
        extra = self._breakdowns(graphs, configs, dev)
        out: list[Prediction] = []
        idx = {t: j for j, t in enumerate(TARGETS)}
        for i in range(len(graphs)):
            values = {t: _opt(arrays["pred"][i, j]) for t, j in idx.items()}
            intervals = {
                t: (
                    (float(arrays["lo"][i, j]), float(arrays["hi"][i, j]))
                    if values[t] is not None and np.isfinite(arrays["lo"][i, j])
                    else None
                )
                for t, j in idx.items()
                if t in self.targets_
            }
            score = _opt(arrays["ood_score"][i], allow_zero=True)
            breakdown: dict[str, Any] = {}
            mig = None
            if gpu and values["memory_mb"] is not None:
                try:
                    choice = mig_choice(values["memory_mb"], gpu, self.mig_margin)
                    mig = choice.profile
                    breakdown["mig"] = choice.reason
                except UnknownGpuError as exc:
                    breakdown["mig"] = str(exc)
            elif not gpu:
                breakdown["mig"] = (
                    "not applicable: the device is not a MIG-capable GPU (pass a GPU to choose for)"
                )
            if score is not None and score > 1.0:
                breakdown["ood"] = (
                    "the graph is unlike every training graph: the interval assumes it resembles them "
                    "and is likely too narrow"
                )
            breakdown.update(extra[i])
            out.append(
                Prediction(
                    latency_ms=values["latency_ms"],
                    interval_90=intervals.get("latency_ms"),
                    memory_mb=values["memory_mb"],
                    energy_j=values["energy_j"],
                    mig_profile=mig,
                    predictor=self.name,
                    device=str(dev["id"]),
                    ood=bool(score is not None and score > 1.0),
                    ood_score=score,
                    breakdown=breakdown or None,
                    intervals=intervals,
                )
            )
        return out

    def _breakdowns(
        self, graphs: Sequence[ModelGraph], configs: Sequence[dict[str, Any]], device: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """:meth:`_breakdown` of every graph; a predictor whose breakdown needs a batched computation (a model
        evaluated on all graphs at once) overrides this instead."""
        return [self._breakdown(g, c, device) for g, c in zip(graphs, configs, strict=True)]

    def _breakdown(self, graph: ModelGraph, config: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
        """What the predictor can say about where the time goes, merged into ``Prediction.breakdown`` (the
        kernel-level predictors: their kernels; ``additive``: its cost terms); nothing by default."""
        return {}

    def predict_dataset(self, dataset: GraphDataset) -> dict[str, np.ndarray]:
        """:meth:`predict_arrays` over a dataset's samples, with each sample's family as its group."""
        return self.predict_arrays(
            [s.graph for s in dataset],
            [s.config for s in dataset],
            [s.device for s in dataset],
            [s.family for s in dataset],
        )

    # ---- persistence ---------------------------------------------------------------------------------
    @abstractmethod
    def _save_state(self, directory: Path) -> dict[str, Any]:
        """Write the learned weights into ``directory``; return JSON-able state for meta.json."""

    @abstractmethod
    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_save_state`."""

    def save(self, path: str | Path, extra_meta: dict[str, Any] | None = None) -> Path:
        """Write the artifact directory (created if needed) and return it."""
        from inferperf.ir.features import encoding_info
        from inferperf.predict.features import feature_layout

        self._require_fitted()
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        state = self._save_state(directory)
        ood_params, ood_arrays = self.ood_.state()
        np.savez_compressed(directory / "ood.npz", **ood_arrays)
        meta = {
            "format": ARTIFACT_FORMAT,
            "predictor": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "hyperparameters": self.get_params(),
            "encoding": encoding_info(),
            "feature_layout": feature_layout(),
            "targets": list(self.targets_),
            "devices": self.devices_,
            "training": self.training_,
            "dev": self.dev_,
            "calibration_n": self.calibration_n_,
            "fit_seconds": self.fit_seconds_,
            "conformal": self.conformal_.state(),
            "ood": ood_params,
            "state": state,
            "library_versions": library_versions(),
            "created": datetime.now(UTC).isoformat(timespec="microseconds"),
            "evaluation": {},
        }
        meta.update(extra_meta or {})
        # JSON has no NaN: a missing device feature (no RAPL, unknown bandwidth) is written as null
        _write_json(directory / META_FILENAME, json_clean(meta))
        return directory

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """Rebuild a trained predictor; refuses an artifact whose feature encoding differs from this one."""
        from inferperf.ir.features import check_encoding
        from inferperf.predict.conformal import ConformalCalibrator
        from inferperf.predict.features import check_layout
        from inferperf.predict.ood import OODDetector

        directory = Path(path)
        meta = read_meta(directory)
        if meta.get("format") != ARTIFACT_FORMAT:
            raise PredictorError(
                f"{directory}: artifact format {meta.get('format')!r} is not supported "
                f"(this inferperf reads format {ARTIFACT_FORMAT})"
            )
        check_encoding(meta.get("encoding"))
        check_layout(meta.get("feature_layout"))
        name = meta.get("predictor", "")
        obj = get_predictor(name, **meta.get("hyperparameters", {}))
        if cls is not Predictor and not isinstance(obj, cls):
            raise PredictorError(f"{directory} holds a {name!r} predictor, not a {cls.__name__}")
        obj._load_state(directory, meta.get("state") or {})
        obj.targets_ = list(meta["targets"])
        obj.devices_ = dict(meta["devices"])
        obj.training_ = meta.get("training")
        obj.dev_ = meta.get("dev")
        obj.calibration_n_ = int(meta.get("calibration_n", 0))
        obj.fit_seconds_ = meta.get("fit_seconds")
        obj.conformal_ = ConformalCalibrator.from_state(meta["conformal"])
        with np.load(directory / "ood.npz") as npz:
            obj.ood_ = OODDetector.from_state(meta["ood"], {k: npz[k] for k in npz.files})
        obj.fitted_ = True
        obj.artifact_path_ = directory
        return obj


def _opt(x: float, allow_zero: bool = False) -> float | None:
    f = float(x)
    if not math.isfinite(f):
        return None
    return f if (allow_zero or f > 0) else None


def _device_gpu_name(device: dict[str, Any]) -> str | None:
    """The device's GPU model when it has a MIG table, else None."""
    from inferperf.predict.mig import UnknownGpuError, resolve_gpu

    feats = device.get("features") or {}
    if not feats.get("is_gpu"):
        return None
    for candidate in (device.get("gpu_name"), device.get("name")):
        if candidate:
            try:
                return resolve_gpu(str(candidate).removeprefix("gpu-").replace("-", " "))
            except UnknownGpuError:
                continue
    return None


# ======== artifacts
def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (
        "inferperf",
        "numpy",
        "scipy",
        "torch",
        "torch-geometric",
        "lightgbm",
        "scikit-learn",
        "onnx",
    ):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _write_json(path: Path, obj: Any) -> None:
    """Atomic write (a reader never sees half a meta.json)."""
    text = json.dumps(obj, indent=1, default=_json_default, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_clean(obj: Any) -> Any:
    """NaN/inf → None recursively (JSON has no NaN; a missing value must read as missing)."""
    if isinstance(obj, dict):
        return {k: json_clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILENAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PredictorError(f"{directory} is not a predictor artifact (no {META_FILENAME})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise PredictorError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict):
        raise PredictorError(f"{path} is not a predictor artifact description")
    return meta


def artifacts_root(home: Path | None = None) -> Path:
    from inferperf.store.paths import inferperf_home

    return (home or inferperf_home()) / "predictors"


def new_artifact_dir(device_ids: Sequence[str], name: str, home: Path | None = None) -> Path:
    """``predictors/<device>/<name>-<UTC timestamp>`` (not created)."""
    sub = device_ids[0] if len(device_ids) == 1 else MULTI_DEVICE_DIR
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return artifacts_root(home) / sub / f"{name}-{stamp}"


@dataclass
class ArtifactInfo:
    path: Path
    predictor: str
    devices: list[str]
    created: str
    lofo_mape: float | None
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "predictor": self.predictor,
            "devices": self.devices,
            "created": self.created,
            "leave_family_out_mape": self.lofo_mape,
        }


def _lofo_mape(meta: dict[str, Any]) -> float | None:
    try:
        v = meta["evaluation"]["leave-family-out"]["latency_ms"]["mape"]
    except (KeyError, TypeError):
        return None
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def list_artifacts(device_id: str | None = None, home: Path | None = None) -> list[ArtifactInfo]:
    """Readable artifacts (newest first), optionally only those trained on ``device_id``."""
    root = artifacts_root(home)
    if not root.is_dir():
        return []
    found: list[ArtifactInfo] = []
    for meta_path in root.glob(f"*/*/{META_FILENAME}"):
        try:
            meta = read_meta(meta_path.parent)
        except PredictorError:
            continue
        devices = [str(d) for d in (meta.get("devices") or {})]
        if device_id is not None and device_id not in devices:
            continue
        found.append(
            ArtifactInfo(
                meta_path.parent,
                str(meta.get("predictor", "?")),
                devices,
                str(meta.get("created", "")),
                _lofo_mape(meta),
                meta,
            )
        )
    found.sort(key=lambda a: (a.created, a.path.name), reverse=True)
    return found


def best_artifact(
    device_id: str | None, predictor: str | None = None, home: Path | None = None
) -> ArtifactInfo | None:
    """The artifact to predict with: lowest recorded leave-family-out latency MAPE, else the newest (of any
    device when ``device_id`` is None)."""
    arts = [a for a in list_artifacts(device_id, home) if predictor is None or a.predictor == predictor]
    if not arts:
        return None
    evaluated = [a for a in arts if a.lofo_mape is not None]
    if evaluated:
        return min(evaluated, key=lambda a: a.lofo_mape)  # type: ignore[arg-type, return-value]
    return arts[0]


def record_evaluation(directory: str | Path, report: dict[str, Any]) -> Path:
    """Save an evaluation report next to an artifact and its headline numbers into meta.json."""
    directory = Path(directory)
    meta = read_meta(directory)
    protocol = str(report.get("protocol"))
    path = directory / f"evaluation-{protocol}.json"
    _write_json(path, json_clean(report))
    headline: dict[str, Any] = {}
    for pred_name, pred_report in (report.get("predictors") or {}).items():
        if pred_name != meta.get("predictor"):
            continue
        for target, tr in (pred_report.get("targets") or {}).items():
            headline[target] = {m: v.get("mean") for m, v in (tr.get("mean") or {}).items()}
    meta.setdefault("evaluation", {})[protocol] = json_clean(
        {**headline, "file": path.name, "seeds": report.get("seeds")}
    )
    _write_json(directory / META_FILENAME, meta)
    return path
