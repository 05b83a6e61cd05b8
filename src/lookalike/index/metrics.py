"""Distance metrics. Every metric is a distance: smaller means more similar.

- ``euclidean``: ``||q - r||`` (Turi Create's default)
- ``cosine``: ``1 - cos(q, r)``, in [0, 2]
- ``dot``: ``-q.r`` (for embeddings trained for inner-product search)
"""

from __future__ import annotations

import faiss
import numpy as np

from lookalike.errors import InvalidArgument

METRICS = ("euclidean", "cosine", "dot")
#: The metric of a model made without one (Turi's default): ``create``, ``lookalike index``, and every command on a folder.
DEFAULT_METRIC = "euclidean"


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidArgument(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def row_norms(vectors: np.ndarray, block: int = 65536) -> np.ndarray:
    """Euclidean norm of each row, float32 (a block of rows at a time: ``vectors`` may be a file larger than memory)."""
    out = np.empty(len(vectors), np.float32)
    for start in range(0, len(vectors), block):
        rows = vectors[start : start + block]
        out[start : start + block] = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    return out


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its norm, float32 (a zero row stays zero): cosine as an inner product."""
    norms = row_norms(vectors)
    with np.errstate(divide="ignore"):
        inverse = np.where(norms > 0, 1.0 / norms, 0.0).astype(np.float32)
    return np.asarray(vectors, dtype=np.float32) * inverse[:, None]


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


#: Candidate values (rows x candidates x length) gathered at once when the references are not float32 in memory order
#: (a float16 file): each float32 temporary stays near 8 MiB.
EXACT_CHUNK_VALUES = 1 << 21


def exact_distances_at(metric: str, queries: np.ndarray, vectors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Precise distances (float64) of each query (m, d) to ``vectors[positions[i]]`` (m, c), without gathering them.

    Each pair is measured directly from its two rows by faiss's SIMD kernels (``fvec_L2sqr_by_idx``:
    the sum of squared differences, so identical rows are exactly 0 and near-duplicates keep their
    precision, unlike the ``|q|^2 + |r|^2 - 2 q.r`` expansion of a matrix product). Every distance in
    lookalike is measured this way (:func:`exact_distances` too), so a pair has one distance wherever
    it is measured. At 4,096 queries x 19 candidates of 512 values this takes 19 ms where gathering the
    candidates and measuring them in float64 took 460 ms.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    if vectors.dtype == np.float32 and vectors.flags.c_contiguous:
        return _measured(metric, queries, vectors, positions)
    m, c = positions.shape
    step = max(1, EXACT_CHUNK_VALUES // max(1, c * vectors.shape[1]))
    out = np.empty((m, c), np.float64)
    for start in range(0, m, step):  # rows of another type (float16 on disk): gather a few, as float32
        rows = slice(start, start + step)
        gathered = np.asarray(vectors[positions[rows]], dtype=np.float32).reshape(-1, vectors.shape[1])
        out[rows] = _measured(metric, queries[rows], gathered, np.arange(len(gathered)).reshape(-1, c))
    return out


def exact_distances(metric: str, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Precise distances (float64) between each query (m, d) and its candidates (m, c, d)."""
    m, c, d = candidates.shape
    rows = np.ascontiguousarray(candidates, dtype=np.float32).reshape(m * c, d)
    return exact_distances_at(metric, queries, rows, np.arange(m * c, dtype=np.int64).reshape(m, c))


def _measured(metric: str, queries: np.ndarray, vectors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """:func:`exact_distances_at` for float32 rows in memory order (``vectors`` may be memory-mapped)."""
    m, c = positions.shape
    if m == 0 or c == 0:
        return np.zeros((m, c), np.float64)
    if metric == "dot":
        dots = _by_idx("ip", queries, vectors, positions)
        return -dots.astype(np.float64)
    squared = _by_idx("l2", queries, vectors, positions).astype(np.float64)
    if metric == "euclidean":
        return np.sqrt(squared)
    # 1 - cos(q, r) = (|q - r|^2 - (|q| - |r|)^2) / (2 |q| |r|): exactly 0 for identical rows, and
    # no normalised copy of the references is needed.
    zeros = np.zeros((m, queries.shape[1]), np.float32)
    q_norms = np.sqrt(_by_idx("l2", zeros[:1], queries, np.arange(m).reshape(1, m))[0])
    r_norms = np.sqrt(_by_idx("l2", zeros, vectors, positions))
    q_norms = q_norms.astype(np.float64)[:, None]
    r_norms = r_norms.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine_distance = (squared - (q_norms - r_norms) ** 2) / (2.0 * q_norms * r_norms)
    # A zero vector has no direction: cosine similarity 0, distance 1.
    return np.where((q_norms > 0) & (r_norms > 0), np.clip(cosine_distance, 0.0, 2.0), 1.0)


#: Pairs measured one call at a time: faiss's ``*_by_idx`` opens an OpenMP region even for one query, and
#: right after a BLAS product (exact search) its threads fight OpenBLAS's still-spinning ones for the two
#: cores: 3-7 ms for one query's 18 candidates, against 10 us for 18 single-pair calls (same kernel, same bits).
_FEW_PAIRS = 256
#: faiss's batched kernel and the single-pair kernel it runs for each pair.
_KERNELS = {
    "l2": (faiss.fvec_L2sqr_by_idx, faiss.fvec_L2sqr),
    "ip": (faiss.fvec_inner_products_by_idx, faiss.fvec_inner_product),
}


def _by_idx(kind: str, queries: np.ndarray, vectors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(m, c) float32 squared distances (``"l2"``) or inner products (``"ip"``) of query i and ``vectors[positions[i, j]]``."""
    batched, single = _KERNELS[kind]
    m, c = positions.shape
    d = queries.shape[1]
    if m * c <= _FEW_PAIRS:
        out = [
            single(faiss.swig_ptr(queries[i]), faiss.swig_ptr(vectors[j]), d) for i in range(m) for j in positions[i]
        ]
        return np.array(out, np.float32).reshape(m, c)
    out = np.empty((m, c), np.float32)
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    batched(faiss.swig_ptr(out), faiss.swig_ptr(queries), faiss.swig_ptr(vectors), faiss.swig_ptr(positions), d, m, c)
    return out
