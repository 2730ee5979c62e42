"""Datasets for the predictors: graphs + run configurations + devices + labels.

``core`` holds the in-memory container and its simple JSON format; the Parquet export and the loading from
a performance database live in sibling modules.
"""

from inferperf.dataset.core import (
    TARGETS,
    DatasetError,
    GraphDataset,
    Sample,
    graph_fingerprint,
    load_dataset,
)

__all__ = ["TARGETS", "DatasetError", "GraphDataset", "Sample", "graph_fingerprint", "load_dataset"]
