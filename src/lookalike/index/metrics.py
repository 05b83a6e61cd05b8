"""Distance metrics. Every metric is a distance: smaller means more similar.

- ``euclidean``: ``||q - r||`` (Turi Create's default)
- ``cosine``: ``1 - cos(q, r)``, in [0, 2]
- ``dot``: ``-q.r`` (for embeddings trained for inner-product search)
"""

from __future__ import annotations

import numpy as np

from lookalike.errors import InvalidArgument

METRICS = ("euclidean", "cosine", "dot")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidArgument(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row, float32."""
    return np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)).astype(np.float32)


def block_distances(
    metric: str, queries: np.ndarray, q_norms: np.ndarray, refs: np.ndarray, r_norms: np.ndarray
) -> np.ndarray:
    """Fast (BLAS) distances between a block of queries and a block of references.

    Squared euclidean is returned for ``euclidean`` (same order, no sqrt);
    callers re-measure their final candidates with :func:`exact_distances`.
    """
    dots = queries @ refs.T
    if metric == "euclidean":
        dots *= -2.0
        dots += q_norms[:, None] ** 2
        dots += r_norms[None, :] ** 2
        return dots
    if metric == "cosine":
        with np.errstate(divide="ignore"):
            q_inv = np.where(q_norms > 0, 1.0 / q_norms, 0.0).astype(np.float32)
            r_inv = np.where(r_norms > 0, 1.0 / r_norms, 0.0).astype(np.float32)
        dots *= q_inv[:, None]
        dots *= r_inv[None, :]
        return 1.0 - dots
    return -dots


#: Candidate values (rows x candidates x length) measured at once: each float64 temporary stays near 16 MiB.
EXACT_CHUNK_VALUES = 1 << 21


def exact_distances_at(metric: str, queries: np.ndarray, vectors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """:func:`exact_distances` of each query (m, d) to ``vectors[positions[i]]`` (m, c), gathered a few rows at a
    time: a block of 4,096 queries with 11 candidates of 1,280 values would otherwise take ~2 GB of temporaries."""
    m, c = positions.shape
    step = max(1, EXACT_CHUNK_VALUES // max(1, c * vectors.shape[1]))
    out = np.empty((m, c), np.float64)
    for start in range(0, m, step):
        rows = slice(start, start + step)
        out[rows] = exact_distances(metric, queries[rows], vectors[positions[rows]])
    return out


def exact_distances(metric: str, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Precise distances (float64) between each query (m, d) and its candidates (m, c, d)."""
    q = queries.astype(np.float64)[:, None, :]
    c = candidates.astype(np.float64)
    if metric == "euclidean":
        return np.sqrt(((c - q) ** 2).sum(-1))
    if metric == "dot":
        return -(c * q).sum(-1)
    # 1 - cos = |u - v|^2 / 2 for unit vectors: exactly 0 for identical directions.
    with np.errstate(invalid="ignore", divide="ignore"):
        qn = np.linalg.norm(q, axis=-1, keepdims=True)
        cn = np.linalg.norm(c, axis=-1, keepdims=True)
        q_unit = np.where(qn > 0, q / qn, 0.0)
        c_unit = np.where(cn > 0, c / cn, 0.0)
    half_sq = ((c_unit - q_unit) ** 2).sum(-1) / 2.0
    # A zero vector has no direction: cosine similarity 0, distance 1.
    return np.where((qn[..., 0] > 0) & (cn[..., 0] > 0), np.clip(half_sq, 0.0, 2.0), 1.0)
