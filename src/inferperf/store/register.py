"""Storing a model that is about to be measured: one place for what ``bench`` and ``collect`` both do.

A measured model needs three things to outlive its run: the ONNX file in the content-addressed store (so a
run's provenance can point at the exact bytes), the graph JSON in the graph cache (the dataset export reads
it after the weights are gone), and a model row in PerfDB whose ``file_path`` is the stored copy.
"""

from __future__ import annotations

import os
from typing import Any

from inferperf.ir.graph import ModelGraph


def store_measured_model(
    db: Any,
    path: str | os.PathLike[str],
    graph: ModelGraph,
    name: str,
    *,
    family: str | None = None,
    framework: str | None = None,
    source: str | None = None,
    tags: list[str] | None = None,
    input_spec: Any = None,
    extra_summary: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """Put the file, cache the graph, add (or find) the model row; returns ``(model_id, content_hash)``."""
    from inferperf.dataset.export import save_graph_cache
    from inferperf.store.paths import model_file_path, put_model_file

    content_hash = put_model_file(path)
    save_graph_cache(content_hash, graph)
    summary = {k: v for k, v in graph.summary().items() if k not in ("inputs", "outputs")}
    summary.update(extra_summary or {})
    model_id = db.add_model(
        name, content_hash, family=family, framework=framework, source=source, tags=tags or [],
        input_spec=input_spec, graph_summary=summary, file_path=str(model_file_path(content_hash)),
    )
    return model_id, content_hash
