"""Nearest-neighbour search over embeddings; knows nothing of images.

Every index answers ``search(queries, k) -> (distances (m, k) float64, positions (m, k) int64)``
with the same distance definitions, and supports ``add``/``remove``:

- ``brute_force``: :class:`ExactIndex` (numpy BLAS in blocks)
- ``hnsw``, ``ivf`` or a faiss factory string: :class:`ApproximateIndex`

:func:`build_index` picks one from a method name (``"auto"`` by size).

The names below are imported on first use, so that a module needing only a light part of this package
(``index.base``, say, to read a saved model's record) does not load faiss.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Each public name -> the module defining it.
_WHERE = {
    "ApproximateIndex": "approximate",
    "IndexFileError": "approximate",
    "BuildInfo": "base",
    "Index": "base",
    "ExactIndex": "exact",
    "AUTO_MAX_EXACT_VALUES": "factory",
    "METHODS": "factory",
    "build_index": "factory",
    "choose_method": "factory",
    "exact_limit": "factory",
    "read_index": "factory",
    "METRICS": "metrics",
    "check_metric": "metrics",
}

__all__ = [
    "AUTO_MAX_EXACT_VALUES",
    "METHODS",
    "METRICS",
    "ApproximateIndex",
    "BuildInfo",
    "ExactIndex",
    "Index",
    "IndexFileError",
    "build_index",
    "check_metric",
    "choose_method",
    "exact_limit",
    "read_index",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # found once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
