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

from typing import TYPE_CHECKING

import lazy_loader

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
    from lookalike.index.metrics import DEFAULT_METRIC, METRICS, check_metric

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "approximate": ["ApproximateIndex", "IndexFileError"],
        "base": ["BuildInfo", "Index"],
        "exact": ["ExactIndex"],
        "factory": ["AUTO_MAX_EXACT_VALUES", "METHODS", "build_index", "choose_method", "exact_limit", "read_index"],
        "metrics": ["DEFAULT_METRIC", "METRICS", "check_metric"],
    },
)
