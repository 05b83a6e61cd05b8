"""Nearest-neighbour search over embeddings; knows nothing of images.

Every index answers ``search(queries, k) -> (distances (m, k) float64, positions (m, k) int64)``
with the same distance definitions, and supports ``add``/``remove``:

- ``brute_force``: :class:`ExactIndex` (numpy BLAS in blocks)
- ``hnsw``, ``ivf`` or a faiss factory string: :class:`ApproximateIndex`

:func:`build_index` picks one from a method name (``"auto"`` by size).
"""

from lookalike.index.approximate import ApproximateIndex, IndexFileError
from lookalike.index.base import BuildInfo, Index
from lookalike.index.exact import ExactIndex
from lookalike.index.factory import (
    AUTO_MAX_EXACT_VALUES,
    METHODS,
    build_index,
    choose_method,
    exact_limit,
    read_index,
)
from lookalike.index.metrics import METRICS, check_metric

__all__ = [
    "BuildInfo",
    "Index",
    "AUTO_MAX_EXACT_VALUES",
    "METHODS",
    "METRICS",
    "ApproximateIndex",
    "ExactIndex",
    "IndexFileError",
    "build_index",
    "check_metric",
    "choose_method",
    "exact_limit",
    "read_index",
]
