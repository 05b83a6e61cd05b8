"""Exact nearest-neighbour search in memory-bounded blocks (numpy BLAS + argpartition).

Never builds an n x n matrix: queries and references are both taken in
blocks, each block keeps only its best candidates, and the final top-k of
each query is re-measured precisely and ordered by (distance, reference
position), so ties always come out the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.index.base import BuildInfo
from lookalike.index.metrics import block_distances, check_metric, exact_distances_at, row_norms
from lookalike.index.rows import appended, without

#: Largest distance block held at once (floats): 2**24 floats = 64 MiB.
BLOCK_FLOATS = 1 << 24
#: Extra candidates kept per block so near-ties are settled by the precise re-measure.
_MARGIN = 8


class ExactIndex:
    """Brute-force search over a (n, d) float32 matrix of references.

    Parameters
    ----------
    vectors : numpy.ndarray
        (n, d) float32 references; kept by reference, not copied (it may be memory-mapped).
    metric : {"euclidean", "cosine", "dot"}
    """

    method = "brute_force"

    def __init__(self, vectors: np.ndarray, metric: str = "euclidean", build: BuildInfo | None = None):
        self.metric = check_metric(metric)
        self.vectors = vectors
        self.build = build or BuildInfo("brute_force", "requested")
        self._norms = row_norms(vectors) if len(vectors) else np.zeros(0, np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def record(self) -> dict[str, Any]:
        """What the manifest records: the method and how it was chosen."""
        return {"method": self.method, **self.build.record()}

    def files(self) -> dict[str, Callable[[Path], None]]:
        """Exact search keeps nothing beside the embeddings."""
        return {}

    def add(self, vectors: np.ndarray) -> None:
        """Append references (they take the next positions)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.vectors = appended(self.vectors, vectors)
        self._norms = np.concatenate([self._norms, row_norms(vectors)])

    def remove(self, positions: np.ndarray) -> None:
        """Drop the references at ``positions``; later references move up."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        self.vectors = without(self.vectors, positions)
        self._norms = np.delete(self._norms, positions)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest references of each query.

        Returns
        -------
        distances : (m, min(k, n)) float64
        positions : (m, min(k, n)) int64, positions in ``vectors``
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(self.vectors)
        k = min(k, n)
        m = len(queries)
        distances = np.empty((m, k), np.float64)
        positions = np.empty((m, k), np.int64)
        if k == 0 or m == 0:
            return distances, positions
        ref_block = min(n, 65536)
        # Bound both the distance block and the gathered candidates (m, k, d) in float64.
        dim = max(1, self.vectors.shape[1])
        query_block = max(1, min(m, BLOCK_FLOATS // ref_block, BLOCK_FLOATS // (2 * (k + _MARGIN) * dim)))
        q_norms = row_norms(queries)
        for q0 in range(0, m, query_block):
            q = queries[q0 : q0 + query_block]
            cand_d = np.empty((len(q), 0), np.float32)
            cand_i = np.empty((len(q), 0), np.int64)
            for r0 in range(0, n, ref_block):
                refs = self.vectors[r0 : r0 + ref_block]
                block = block_distances(
                    self.metric, q, q_norms[q0 : q0 + len(q)], refs, self._norms[r0 : r0 + len(refs)]
                )
                keep = min(k + _MARGIN, block.shape[1])
                part = (
                    _smallest(block, np.arange(r0, r0 + block.shape[1]), keep)
                    if keep < block.shape[1]
                    else np.broadcast_to(np.arange(block.shape[1]), block.shape)
                )
                cand_d = np.concatenate([cand_d, np.take_along_axis(block, part, 1)], axis=1)
                cand_i = np.concatenate([cand_i, part + r0], axis=1)
                if cand_d.shape[1] > k + _MARGIN:
                    best = _smallest(cand_d, cand_i, k + _MARGIN)
                    cand_d = np.take_along_axis(cand_d, best, 1)
                    cand_i = np.take_along_axis(cand_i, best, 1)
            precise = exact_distances_at(self.metric, q, self.vectors, cand_i)
            order = np.lexsort((cand_i, precise), axis=-1)[:, :k]
            distances[q0 : q0 + len(q)] = np.take_along_axis(precise, order, 1)
            positions[q0 : q0 + len(q)] = np.take_along_axis(cand_i, order, 1)
        return distances, positions


def _smallest(values: np.ndarray, positions: np.ndarray, keep: int) -> np.ndarray:
    """Column indices of the ``keep`` smallest values of each row; ties at the cut go to the lower position.

    ``argpartition`` alone keeps an arbitrary subset of the values tied at the
    cut, so with many equal distances (duplicate images) the lowest positions
    could be dropped before the final (distance, position) ordering.
    """
    part = np.argpartition(values, keep - 1, axis=1)[:, :keep]
    cut = np.take_along_axis(values, part, 1).max(axis=1)
    crowded = np.flatnonzero((values <= cut[:, None]).sum(axis=1) > keep)
    positions = np.broadcast_to(positions, values.shape)
    for row in crowded:  # rare: only rows whose ties straddle the cut
        part[row] = np.lexsort((positions[row], values[row]))[:keep]
    return part
