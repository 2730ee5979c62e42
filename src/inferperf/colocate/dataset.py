"""A pair / trio co-location dataset: which models ran together, how, and how much each slowed down.

On disk a dataset is a directory::

    records.jsonl         one co-located measurement per line (2 or 3 members, see ColocationResult)
    graphs/<name>.json    the ModelGraph of every model that appears, so the dataset predicts offline

Collection is resumable (a group already recorded with the same thread split is skipped) and bounded by a
time budget, because each group costs a few seconds of exclusive-ish machine time.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferperf.colocate.measure import ColocationResult, measure_colocation
from inferperf.errors import ConfigError, InferperfError
from inferperf.ir.graph import ModelGraph

RECORDS_FILE = "records.jsonl"
GRAPHS_DIR = "graphs"


@dataclass
class ColoModel:
    """A model available for co-location: a name, an ONNX file with concrete shapes and its graph."""

    name: str
    path: str
    graph: ModelGraph
    family: str = ""


@dataclass
class ColoExample:
    """One member of one co-located group: the target model, the others, the resources, the label."""

    target: ModelGraph
    others: list[ModelGraph]
    threads: int
    other_threads: list[int]
    shared_cores: int
    n_cores: int
    slowdown: float
    group_key: str
    target_name: str


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class ColocationDataset:
    """Records + graphs of a co-location dataset directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @property
    def records_path(self) -> Path:
        return self.directory / RECORDS_FILE

    def records(self) -> list[dict[str, Any]]:
        if not self.records_path.is_file():
            return []
        out = []
        for line in self.records_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InferperfError(f"{self.records_path}: malformed line: {exc}") from None
        return out

    def add_graph(self, name: str, graph: ModelGraph) -> None:
        path = self.directory / GRAPHS_DIR / f"{_safe(name)}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(graph.to_dict(), default=str), encoding="utf-8")

    def graph(self, name: str) -> ModelGraph:
        path = self.directory / GRAPHS_DIR / f"{_safe(name)}.json"
        try:
            return ModelGraph.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InferperfError(f"{self.directory}: no graph for model {name!r}") from None

    def append(self, result: ColocationResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        record = {**result.to_dict(), **(extra or {})}
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.records_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str, allow_nan=True) + "\n")
        return record

    def examples(self, target: str = "slowdown") -> list[ColoExample]:
        """One example per member of each recorded group (``target``: ``slowdown`` or ``slowdown_mean``)."""
        graphs: dict[str, ModelGraph] = {}
        out = []
        for rec in self.records():
            members = rec["members"]
            names = [m["model"] for m in members]
            for name in names:
                if name not in graphs:
                    graphs[name] = self.graph(name)
            n_cores = int(rec.get("n_cores") or max(
                [c for m in members for c in (m.get("cores") or [])] or [0]) + 1)
            # a group is the set of models under one resource setting (threads and pinning per model)
            setting = sorted((m["model"], int(m["threads"]), tuple(m.get("cores") or ())) for m in members)
            key = ";".join(f"{n}x{t}@{','.join(map(str, c))}" for n, t, c in setting)
            for i, m in enumerate(members):
                value = m.get(target)
                if value is None or not math.isfinite(float(value)) or float(value) <= 0:
                    continue
                mine = set(m.get("cores") or [])
                others = [o for j, o in enumerate(members) if j != i]
                out.append(ColoExample(
                    target=graphs[m["model"]], others=[graphs[o["model"]] for o in others],
                    threads=int(m["threads"]), other_threads=[int(o["threads"]) for o in others],
                    shared_cores=sum(1 for o in others if mine & set(o.get("cores") or [])),
                    n_cores=n_cores, slowdown=float(value), group_key=key, target_name=m["model"],
                ))
        return out


def zoo_models(
    n: int,
    workdir: str | os.PathLike[str],
    *,
    families: Sequence[str] | None = None,
    seed: int = 0,
    max_macs: int = 2_000_000_000,
    min_macs: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[ColoModel]:
    """Export ``n`` zoo graphs (one per family, round-robin, ``min_macs`` to ``max_macs``) to ONNX files in
    ``workdir``. A floor on the size keeps inferences above the microsecond jitter of a shared machine."""
    from inferperf.ir.build import build_graph
    from inferperf.zoo import iter_zoo, zoo_families

    out: list[ColoModel] = []
    Path(workdir).mkdir(parents=True, exist_ok=True)
    n_families = len(list(families) if families else zoo_families())
    per_family = 2 * max(1, math.ceil(n / max(n_families, 1)))  # slack for entries over the MAC budget
    for entry in iter_zoo("all", families=families, per_family=per_family, seed=seed):
        if len(out) >= n:
            break
        if entry.macs is not None and not min_macs <= entry.macs <= max_macs:
            continue
        try:
            loaded = entry.load()
        except InferperfError as exc:
            if progress:
                progress(f"skip {entry.key}: {exc}")
            continue
        graph = build_graph(loaded.model, entry.key, loaded.metadata)
        if not min_macs <= graph.macs <= max_macs:
            continue
        path = Path(loaded.path)
        if not Path(f"{path}.data").exists():  # a self-contained file: keep a copy with the dataset's models
            target = Path(workdir) / f"{_safe(entry.key)}.onnx"
            shutil.copyfile(path, target)
            path = target
        out.append(ColoModel(entry.key, str(path), graph, entry.family))
        if progress:
            progress(f"exported {entry.key}")
    return out


def choose_groups(names: Sequence[str], pairs: int, trios: int, seed: int = 0) -> list[tuple[str, ...]]:
    """Up to ``pairs`` distinct pairs and ``trios`` distinct trios, sampled without repetition."""
    rng = random.Random(seed)
    all_pairs = list(itertools.combinations(sorted(names), 2))
    all_trios = list(itertools.combinations(sorted(names), 3))
    rng.shuffle(all_pairs)
    rng.shuffle(all_trios)
    return all_pairs[:pairs] + all_trios[:trios]


def collect(
    models: Sequence[ColoModel],
    out_dir: str | os.PathLike[str],
    *,
    pairs: int = 30,
    trios: int = 10,
    seed: int = 0,
    duration_s: float = 1.5,
    threads: int = 1,
    rounds: int = 1,
    time_budget_s: float | None = None,
    device_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ColocationDataset:
    """Measure sampled pairs and trios of ``models`` into ``out_dir`` (resumable, time-bounded)."""
    if len(models) < 2:
        raise ConfigError("co-location needs at least two models")
    by_name = {m.name: m for m in models}
    ds = ColocationDataset(out_dir)
    for m in models:
        ds.add_graph(m.name, m.graph)
    done = {("|".join(sorted(mm["model"] for mm in r["members"])), tuple(mm["threads"] for mm in r["members"]))
            for r in ds.records()}
    n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    t0 = time.monotonic()
    for group in choose_groups(list(by_name), pairs, trios, seed):
        if time_budget_s is not None and time.monotonic() - t0 > time_budget_s:
            if progress:
                progress("time budget reached")
            break
        split = tuple([threads] * len(group))
        if ("|".join(sorted(group)), split) in done:
            continue
        try:
            result = measure_colocation([by_name[g].path for g in group], threads=list(split), names=list(group),
                                        duration_s=duration_s, rounds=rounds, device_id=device_id)
        except InferperfError as exc:
            if progress:
                progress(f"failed {group}: {exc}")
            continue
        ds.append(result, {"n_cores": n_cores, "families": [by_name[g].family for g in group]})
        if progress:
            progress(" + ".join(f"{m.model} ×{m.slowdown:.2f}" for m in result.members))
    return ds
