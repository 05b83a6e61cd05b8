"""Exact nearest-neighbour search in memory-bounded blocks (numpy BLAS + argpartition).

Never builds an n x n matrix: queries and references are both taken in
blocks, each block keeps only its best candidates, and the final top-k of
each query is re-measured precisely and ordered by (distance, reference
position), so ties always come out the same way. The same blocks answer the
other question, every reference within a distance (:func:`pairs_within`,
:meth:`ExactIndex.range_search`): the fast float32 block with a bound on its
rounding error picks the candidates, each re-measured from the two rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.index.base import BuildInfo
from lookalike.index.metrics import (
    block_distances,
    check_metric,
    exact_distances,
    exact_distances_at,
    row_norms,
    unit_rows,
)
from lookalike.index.rows import appended, drop_self, without

#: Rows added to or searched in faiss's flat index at a time.
FLAT_BLOCK = 4096
#: Largest distance block held at once (floats): 2**24 floats = 64 MiB.
BLOCK_FLOATS = 1 << 24
#: Extra candidates kept per block so near-ties are settled by the precise re-measure.
_MARGIN = 8
#: Rows of queries and of references in one block of a range search: 4096 x 2048 float32 = 32 MiB.
RANGE_BLOCK_A = 4096
RANGE_BLOCK_B = 2048
#: Relative slack on the fast float32 distances, so that no pair within the threshold is missed before re-measuring.
_SLACK = 1e-4
#: The most references a range search returns per query, nearest first: a dense region (a burst of 10,000
#: copies) costs this much memory per query, not n.
MAX_PER_QUERY = 1000


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

    def range_search(
        self, queries: np.ndarray, threshold: float, max_per_query: int = MAX_PER_QUERY
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every reference at most ``threshold`` from each query (the ``max_per_query`` nearest when more are).

        Returns
        -------
        lims : (m + 1,) int64
            Query ``i``'s results are ``distances[lims[i]:lims[i + 1]]``, nearest first (faiss's layout).
        distances : float64
        positions : int64, positions in ``vectors``
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        found_q, found_r, found_d = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.float64)]
        for q, r, d in pairs_within(queries, self.vectors, self.metric, threshold):
            found_q.append(q)
            found_r.append(r)
            found_d.append(d)
        q, r, d = np.concatenate(found_q), np.concatenate(found_r), np.concatenate(found_d)
        order = np.lexsort((r, d, q))
        q, r, d = q[order], r[order], d[order]
        rank = np.arange(len(q)) - np.searchsorted(q, q)  # place of each result among its query's, nearest first
        kept = rank < max_per_query
        q, r, d = q[kept], r[kept], d[kept]
        lims = np.searchsorted(q, np.arange(len(queries) + 1)).astype(np.int64)
        return lims, d, r


def pairs_within(
    a: np.ndarray,
    b: np.ndarray,
    metric: str,
    threshold: float,
    block_a: int = RANGE_BLOCK_A,
    block_b: int = RANGE_BLOCK_B,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(a positions, b positions, distances)`` of every pair at most ``threshold`` apart, block by block.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(5, 8)).astype(np.float32)
    >>> [len(p) for p, _, _ in pairs_within(x, x, "euclidean", 0.0)]
    [5]
    """
    if metric == "cosine":
        yield from _cosine_pairs_within(a, b, threshold, block_a, block_b)
        return
    a_norms, b_norms = row_norms(a), row_norms(b)
    # block_distances gives squared euclidean: compare it with the squared threshold.
    fast_threshold = threshold * threshold if metric == "euclidean" else threshold
    for a0 in range(0, len(a), block_a):
        qa, qn = a[a0 : a0 + block_a], a_norms[a0 : a0 + block_a]
        for b0 in range(0, len(b), block_b):
            rb, rn = b[b0 : b0 + block_b], b_norms[b0 : b0 + block_b]
            fast = block_distances(metric, qa, qn, rb, rn)
            i, j = np.nonzero(fast <= fast_threshold + _slack(metric, qn, rn))
            del fast
            if len(i) == 0:
                continue
            precise = exact_distances(metric, qa[i], rb[j][:, None, :])[:, 0]
            close = precise <= threshold
            yield a0 + i[close], b0 + j[close], precise[close]


def _cosine_pairs_within(
    a: np.ndarray, b: np.ndarray, threshold: float, block_a: int, block_b: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`pairs_within` for cosine: both sides normalised once, so that a block costs its product and one
    row reduction (scaling, subtracting and comparing every cell took a third of the time a whole dense matrix takes)."""
    a_unit, b_unit = unit_rows(a), unit_rows(b)
    floor = np.float32(1.0 - threshold - _SLACK)
    for a0 in range(0, len(a), block_a):
        qa = a_unit[a0 : a0 + block_a]
        for b0 in range(0, len(b), block_b):
            similar = qa @ b_unit[b0 : b0 + block_b].T
            # A row's maximum is a fast SIMD reduction; only the rows that reach the floor are searched cell by cell.
            rows = np.flatnonzero(similar.max(axis=1) >= floor)
            if len(rows) == 0:
                continue
            i, j = np.nonzero(similar[rows] >= floor)
            i = rows[i]
            del similar
            precise = exact_distances("cosine", a[a0 + i], b[b0 + j][:, None, :])[:, 0]
            close = precise <= threshold
            yield a0 + i[close], b0 + j[close], precise[close]


def _slack(metric: str, a_norms: np.ndarray, b_norms: np.ndarray) -> float:
    """A bound on the float32 rounding error of a block's fast distances (generous: extra candidates are re-measured)."""
    if metric == "cosine":
        return _SLACK
    a_max = float(a_norms.max(initial=0.0))
    b_max = float(b_norms.max(initial=0.0))
    if metric == "euclidean":
        return _SLACK * (a_max * a_max + b_max * b_max)
    return _SLACK * a_max * b_max


def every_rows_neighbours(vectors: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, positions)`` of the ``k`` nearest other rows of every row, in float32 (faiss's flat search).

    For a whole-collection pass that needs the neighbours, not the last digit
    of their distances (the 2-D map): :meth:`ExactIndex.search` re-measures
    every candidate in float64 and ties are not ordered by position here.
    """
    import faiss  # here, not at the top: exact search itself never needs it, and faiss takes a while to import

    dim = vectors.shape[1]
    flat = faiss.IndexFlatL2(dim) if metric == "euclidean" else faiss.IndexFlatIP(dim)
    prepared = (lambda block: unit_rows(block)) if metric == "cosine" else (lambda block: block)
    for start in range(0, len(vectors), FLAT_BLOCK):
        flat.add(prepared(np.ascontiguousarray(vectors[start : start + FLAT_BLOCK], dtype=np.float32)))
    distances = np.empty((len(vectors), k), np.float64)
    positions = np.empty((len(vectors), k), np.int64)
    for start in range(0, len(vectors), FLAT_BLOCK):
        block = prepared(np.ascontiguousarray(vectors[start : start + FLAT_BLOCK], dtype=np.float32))
        found, where = flat.search(block, k + 1)
        if metric == "euclidean":
            found = np.sqrt(np.maximum(found, 0))
        else:  # inner products: cosine's distance is 1 - cos, dot's is -q.r
            found = 1.0 - found if metric == "cosine" else -found
        found, where = drop_self(found.astype(np.float64), where.astype(np.int64), start)
        distances[start : start + len(block)], positions[start : start + len(block)] = found, where
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
