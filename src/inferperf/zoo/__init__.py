"""The model zoo: random (CS230 MLP/CNN + random DAGs), canonical (InferBench) and real families.

``iter_zoo`` yields :class:`ZooEntry` recipes — cheap, deterministic, picklable — round-robin over families
so that any prefix (``--limit 200``) is a diverse sample rather than 200 models of the first family. Nothing
heavy is imported here: torch and transformers load only when an entry is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache

from inferperf.errors import ConfigError
from inferperf.zoo.base import (
    MAX_MACS,
    MAX_PARAMS,
    SEED_STRIDE,
    ZOOS,
    Generator,
    SampledGenerator,
    ZooEntry,
    digest,
)

__all__ = [
    "MAX_MACS",
    "MAX_PARAMS",
    "ZOOS",
    "Generator",
    "ZooEntry",
    "find_entry",
    "generators",
    "get_generator",
    "iter_zoo",
    "zoo_families",
]


@cache
def _registry() -> dict[str, Generator]:
    from inferperf.zoo.canonical import CanonicalFC, CanonicalLSTM, CanonicalResNet, CanonicalTransformer
    from inferperf.zoo.random_dag import RandomDagGenerator, RandomTokenDagGenerator
    from inferperf.zoo.random_nets import MLPGenerator, PlainCNNGenerator
    from inferperf.zoo.real import real_generators

    gens: list[Generator] = [
        MLPGenerator(),
        PlainCNNGenerator(),
        RandomDagGenerator(),
        RandomTokenDagGenerator(),
        CanonicalFC(),
        CanonicalResNet(),
        CanonicalLSTM(),
        CanonicalTransformer(),
        *real_generators(),
    ]
    return {g.family: g for g in gens}


def _check_zoo(zoo: str) -> str:
    zoo = zoo.strip().lower()
    if zoo != "all" and zoo not in ZOOS:
        raise ConfigError(f"unknown zoo '{zoo}' (choose from all, {', '.join(ZOOS)})")
    return zoo


def generators(zoo: str = "all", families: Iterable[str] | None = None) -> list[Generator]:
    """Generators of a zoo in registry order, optionally restricted to named families."""
    zoo = _check_zoo(zoo)
    selected = [g for g in _registry().values() if zoo == "all" or g.zoo == zoo]
    if families is not None:
        wanted = list(families)
        unknown = [f for f in wanted if f not in _registry()]
        if unknown:
            raise ConfigError(f"unknown zoo famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}"
                              f" (known: {', '.join(_registry())})")
        selected = [g for g in selected if g.family in wanted]
        if not selected:
            raise ConfigError(f"none of {', '.join(wanted)} is in the '{zoo}' zoo")
    return selected


def zoo_families(zoo: str = "all") -> list[str]:
    return [g.family for g in generators(zoo)]


def get_generator(family: str) -> Generator:
    try:
        return _registry()[family]
    except KeyError:
        raise ConfigError(f"unknown zoo family '{family}' (known: {', '.join(_registry())})") from None


def iter_zoo(
    zoo: str = "all",
    limit: int | None = None,
    batch_sizes: Iterable[int] = (1,),
    seed: int = 0,
    families: Iterable[str] | None = None,
    per_family: int | None = None,
) -> Iterator[ZooEntry]:
    """Entries round-robin over families: one sample of each family in turn, all its batch sizes together.

    Canonical families are finite grids and drop out when exhausted; sampled families run until ``limit``
    or ``per_family`` samples (without either, the iterator is unbounded — always pass one of them when
    collecting a list). Deterministic for ``seed``.
    """
    sizes = tuple(int(b) for b in batch_sizes)
    if not sizes or any(b < 1 for b in sizes):
        raise ConfigError(f"batch sizes must be ≥ 1, got {list(sizes)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be ≥ 0, got {limit}")
    if per_family is not None and not 0 <= per_family <= SEED_STRIDE:
        raise ConfigError(f"per_family must be in 0..{SEED_STRIDE}, got {per_family}")
    streams = [(g, g.entries(seed, sizes)) for g in generators(zoo, families)]
    counts = dict.fromkeys((g.family for g, _ in streams), 0)
    emitted = 0
    while streams and (limit is None or emitted < limit):
        alive = []
        for gen, stream in streams:
            if per_family is not None and counts[gen.family] >= per_family:
                continue
            group = next(stream, None)
            if group is None:
                continue
            counts[gen.family] += 1
            alive.append((gen, stream))
            for entry in group:
                if limit is not None and emitted >= limit:
                    return
                emitted += 1
                yield entry
        streams = alive


_SAMPLED_KEY = re.compile(r"^(?P<family>[a-z0-9_]+)/s(?P<seed>\d+)-(?P<digest>[0-9a-f]{8})-b(?P<batch>\d+)$")
_GRID_KEY = re.compile(r"^(?P<family>canonical_[a-z]+)/(?P<stem>.+)-b(?P<batch>\d+)$")


def find_entry(key: str) -> ZooEntry:
    """Rebuild the entry a key names (keys are stored with measurements; params may not be)."""
    m = _SAMPLED_KEY.match(key)
    if m:
        gen = get_generator(m["family"])
        if not isinstance(gen, SampledGenerator):
            raise ConfigError(f"zoo key '{key}': {gen.family} is a grid family, its keys name grid points")
        sample = gen.sample_at(int(m["seed"]))
        if digest(sample.params) == m["digest"]:
            return ZooEntry(key, gen.zoo, gen.family, sample.params, int(m["batch"]), sample.seed)
        raise ConfigError(f"zoo key '{key}' no longer matches its generator (the sampling code changed)")
    m = _GRID_KEY.match(key)
    if m:
        gen = get_generator(m["family"])
        for sample in gen.samples(0):
            if sample.stem == m["stem"]:
                return ZooEntry(key, gen.zoo, gen.family, sample.params, int(m["batch"]), sample.seed)
        raise ConfigError(f"zoo key '{key}' is not a point of the {gen.family} grid")
    raise ConfigError(f"'{key}' is not a zoo key (e.g. random_dag/s00042-1a2b3c4d-b1)")
