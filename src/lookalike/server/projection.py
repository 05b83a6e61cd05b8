"""A 2-D map of a collection: the first two principal components of its embeddings."""

from __future__ import annotations

import numpy as np

#: Rows handled at once, so a memory-mapped million-row model never needs a float64 copy of itself.
BLOCK_ROWS = 65536
#: Subspace iteration: extra directions carried along (they speed convergence) and rounds.
OVERSAMPLE = 10
ITERATIONS = 30
#: Up to this many dimensions a full eigendecomposition is cheap anyway.
SMALL_DIM = 32


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``vectors`` onto their two principal axes.

    The (d, d) covariance is accumulated block by block and its two
    principal axes found by subspace iteration, so memory stays bounded by the block size whatever ``n`` is.

    Parameters
    ----------
    vectors : numpy.ndarray
        (n, d) embeddings (may be memory-mapped).

    Returns
    -------
    coordinates : numpy.ndarray
        (n, 2) float32 positions on the first and second principal axes.
    explained : numpy.ndarray
        (2,) share of the total variance along each axis (0 when there is none).

    Examples
    --------
    >>> import numpy as np
    >>> points = np.array([[0, 0, 0], [2, 0, 0], [4, 0, 1]], dtype=np.float32)
    >>> xy, share = pca_2d(points)
    >>> xy.shape, bool(share[0] > 0.9)
    ((3, 2), True)
    """
    n, d = vectors.shape
    if n == 0:
        return np.zeros((0, 2), np.float32), np.zeros(2)
    mean = np.zeros(d)
    for start in range(0, n, BLOCK_ROWS):
        mean += vectors[start : start + BLOCK_ROWS].sum(axis=0, dtype=np.float64)
    mean /= n
    scatter = np.zeros((d, d))
    for start in range(0, n, BLOCK_ROWS):
        block = vectors[start : start + BLOCK_ROWS] - mean
        scatter += block.T @ block
    variances, axes = _top_axes(scatter, 2)
    # Eigenvectors' signs are arbitrary: fix them so the same model always draws the same map.
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    axes = axes * np.where(signs == 0, 1.0, signs)
    coordinates = np.empty((n, 2), np.float32)
    for start in range(0, n, BLOCK_ROWS):
        coordinates[start : start + BLOCK_ROWS] = (vectors[start : start + BLOCK_ROWS] - mean) @ axes
    total = float(np.trace(scatter))
    explained = variances / total if total > 0 else np.zeros(2)
    return coordinates, explained


def _top_axes(scatter: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` largest eigenvalues (descending) and eigenvectors (columns) of a symmetric PSD matrix.

    Subspace iteration needs only matrix products and tiny decompositions: a
    full ``eigh`` of a 512x512 or 1024x1024 matrix is slow when LAPACK's
    threads compete with other work on the machine, and only two axes are needed.
    """
    d = scatter.shape[0]
    if d <= SMALL_DIM:
        values, vectors = np.linalg.eigh(scatter)
        order = np.argsort(values)[::-1][:count]
        values, vectors = values[order], vectors[:, order]
    else:
        width = min(d, count + OVERSAMPLE)
        basis = np.linalg.qr(np.random.default_rng(0).standard_normal((d, width)))[0]
        for _ in range(ITERATIONS):
            basis = np.linalg.qr(scatter @ basis)[0]
        values, small = np.linalg.eigh(basis.T @ scatter @ basis)
        order = np.argsort(values)[::-1][:count]
        values, vectors = values[order], basis @ small[:, order]
    missing = count - len(values)  # embeddings with fewer dimensions than axes asked for: flat extra axes
    return np.pad(np.clip(values, 0, None), (0, missing)), np.pad(vectors, ((0, 0), (0, missing)))
