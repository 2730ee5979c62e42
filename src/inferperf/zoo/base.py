"""Zoo entries and the generator contract.

A zoo entry is a *recipe*, not a model: a small frozen, picklable spec whose ``build()`` makes the
``torch.nn.Module`` on demand. The collection pipeline iterates thousands of them, skips those it already
measured by ``key`` and builds each one in a child process, so nothing heavy may happen while iterating.

Every family has one :class:`Generator`. A generator turns ``(seed, index)`` into the generator
hyper-parameters of one sample (pure Python, no torch), and later turns those parameters back into a module.
Keys are built from the family, the sample's seed and a digest of the parameters, so a change of the sampling
code that changes a graph also changes its key (and a stale "already measured" record is never reused).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inferperf.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from inferperf.ir.ingest import LoadedModel

#: the three zoos; "all" selects every one
ZOOS: tuple[str, ...] = ("random", "canonical", "real")

#: budget on multiply-accumulates of one sample at batch size 1: 2 GMACs is ≈ 100–200 ms on one core of the
#: reference CPU (AVX2, ~20–40 GFLOP/s effective), the top of the latency range the datasets target
MAX_MACS: int = 2_000_000_000

#: budget on weights: 25 M float32 parameters ≈ 100 MB, which keeps exports, caches and memory labels small
MAX_PARAMS: int = 25_000_000

#: samples per family and seed; the sample seed is ``seed * SEED_STRIDE + index`` so keys of different seeds
#: never collide
SEED_STRIDE: int = 100_000


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo at one batch size: everything needed to rebuild it, nothing built.

    ``params`` are the generator's hyper-parameters (JSON-serialisable); they also carry ``macs`` and
    ``weights`` estimates (batch 1) for the synthetic zoos, which the scheduler can use to order jobs.
    """

    key: str
    zoo: str
    family: str
    params: dict[str, Any]
    batch_size: int = 1
    seed: int = 0

    def __hash__(self) -> int:  # params is a dict: hash the stable key instead
        return hash(self.key)

    @property
    def generator(self) -> Generator:
        from inferperf.zoo import get_generator

        return get_generator(self.family)

    def build(self) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        """The module in eval mode (seeded random weights) and its named example inputs.

        Call ``module(**inputs)`` to run it; the input names are the ONNX input names after export.
        """
        return self.generator.build(self)

    def load(self) -> LoadedModel:
        """Build and export to ONNX through :mod:`inferperf.ir.ingest`; metadata names the zoo entry."""
        loaded = self.generator.load(self)
        loaded.metadata.update(
            {
                "zoo": self.zoo,
                "family": self.family,
                "zoo_key": self.key,
                "zoo_params": self.params,
                "batch_size": self.batch_size,
                "seed": self.seed,
            }
        )
        return loaded

    @property
    def macs(self) -> int | None:
        """Estimated multiply-accumulates at batch 1 (None where the generator cannot estimate cheaply)."""
        value = self.params.get("macs")
        return int(value) if value is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "zoo": self.zoo,
            "family": self.family,
            "params": self.params,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZooEntry:
        try:
            return cls(
                key=str(data["key"]),
                zoo=str(data["zoo"]),
                family=str(data["family"]),
                params=dict(data["params"]),
                batch_size=int(data["batch_size"]),
                seed=int(data["seed"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a zoo entry record: {exc}") from None


@dataclass(frozen=True)
class Sample:
    """One generated architecture before the batch size is applied: ``stem`` becomes the key's middle."""

    stem: str
    params: dict[str, Any]
    seed: int


class Generator(ABC):
    """A family of models: samples hyper-parameters, builds modules from them.

    Subclasses set ``zoo`` and ``family`` and implement :meth:`samples` and :meth:`build_module`.
    """

    zoo: str = ""
    family: str = ""
    description: str = ""

    @abstractmethod
    def samples(self, seed: int) -> Iterator[Sample]:
        """Samples in a deterministic order for ``seed``; may be finite (a grid) or practically unbounded."""

    @abstractmethod
    def build_module(self, params: dict[str, Any], batch_size: int, seed: int) -> tuple[Any, dict[str, Any]]:
        """Module (eval mode) and named example inputs for the given parameters and batch size."""

    def build(self, entry: ZooEntry) -> tuple[Any, dict[str, Any]]:
        import torch

        torch.manual_seed(entry.seed)
        module, inputs = self.build_module(entry.params, entry.batch_size, entry.seed)
        return module.eval(), inputs

    def load(self, entry: ZooEntry) -> LoadedModel:
        from inferperf.ir.ingest import load_torch_module

        module, inputs = self.build(entry)
        loaded = load_torch_module(module, inputs, input_names=list(inputs), name=safe_name(entry.key))
        loaded.name = entry.key
        return loaded

    def entries(self, seed: int, batch_sizes: tuple[int, ...]) -> Iterator[list[ZooEntry]]:
        """Per sample, the list of its entries (one per batch size), so round-robin keeps them together."""
        for sample in self.samples(seed):
            yield [
                ZooEntry(
                    key=f"{self.family}/{sample.stem}-b{b}",
                    zoo=self.zoo,
                    family=self.family,
                    params=copy.deepcopy(sample.params),  # entries never share a mutable dict
                    batch_size=b,
                    seed=sample.seed,
                )
                for b in batch_sizes
            ]


class SampledGenerator(Generator):
    """A family sampled per index: sample ``i`` of seed ``k`` depends only on ``(family, k·SEED_STRIDE + i)``.

    That makes any sample reachable from its key without replaying the ones before it.
    """

    @abstractmethod
    def draw_params(self, sample_seed_value: int) -> dict[str, Any]:
        """Deterministic parameters of the sample with this seed."""

    def sample_at(self, sample_seed_value: int) -> Sample:
        params = self.draw_params(sample_seed_value)
        return Sample(sampled_stem(sample_seed_value, params), params, sample_seed_value)

    def samples(self, seed: int) -> Iterator[Sample]:
        for index in itertools.count():
            yield self.sample_at(sample_seed(seed, index))


class BudgetedGenerator(SampledGenerator):
    """A sampled family whose specs carry ``macs`` / ``weights`` and are rejection-sampled into the budget."""

    @abstractmethod
    def draw(self, rng: random.Random) -> dict[str, Any]:
        """One candidate spec drawn from ``rng`` (may be over budget)."""

    def draw_params(self, sample_seed_value: int) -> dict[str, Any]:
        return rejection_sample(self.family, sample_seed_value, self.draw)


# ------------------------------------------------------------------------------------------------ helpers


def sample_rng(family: str, seed_value: int) -> random.Random:
    """A generator-private RNG: string seeds hash with SHA-512, so it is stable across processes."""
    return random.Random(f"inferperf.zoo:{family}:{seed_value}")


def sample_seed(seed: int, index: int) -> int:
    if seed < 0:
        raise ConfigError(f"zoo seed must be ≥ 0, got {seed}")
    if not 0 <= index < SEED_STRIDE:
        raise ConfigError(f"a family has at most {SEED_STRIDE} samples per seed")
    return seed * SEED_STRIDE + index


def digest(params: dict[str, Any]) -> str:
    """Eight hex digits of the canonical JSON of the parameters (part of every sampled key)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def sampled_stem(sample_seed_value: int, params: dict[str, Any]) -> str:
    return f"s{sample_seed_value:05d}-{digest(params)}"


def safe_name(key: str) -> str:
    """A file-name-safe label for a key (ingest names cache files after the label)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def pow2(rng: random.Random, lo_exp: int, hi_exp: int) -> int:
    """2^e with e uniform in [lo_exp, hi_exp] (the CS230 "base 2 scale" sampling)."""
    return 2 ** rng.randint(lo_exp, hi_exp)


def round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def within_budget(params: dict[str, Any], max_macs: int = MAX_MACS, max_weights: int = MAX_PARAMS) -> bool:
    return int(params["macs"]) <= max_macs and int(params["weights"]) <= max_weights


class BudgetError(ConfigError):
    """A sampler could not find a spec inside the MACs / weights budget (a sampler bug, not bad luck)."""


def rejection_sample(
    family: str, sample_seed_value: int, draw: Any, max_tries: int = 2000
) -> dict[str, Any]:
    """Draw specs from one seeded RNG until one fits the budget; deterministic for the sample seed.

    Rejecting whole specs (instead of clipping the offending layer) keeps every accepted spec a genuine draw
    of the sampler, only conditioned on fitting the machine.
    """
    rng = sample_rng(family, sample_seed_value)
    for _ in range(max_tries):
        params = draw(rng)
        if within_budget(params):
            return params
    raise BudgetError(f"{family}: no spec within {MAX_MACS} MACs / {MAX_PARAMS} weights in {max_tries} tries")
