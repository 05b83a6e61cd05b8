"""A 2-D map of a collection: the first two principal components of its embeddings."""

from __future__ import annotations

import numpy as np

from lookalike.projection import BLOCK_ROWS, principal_axes


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``vectors`` onto their two principal axes.

    The axes come from :func:`lookalike.projection.principal_axes` (covariance
    accumulated block by block, two axes by subspace iteration), so memory stays
    bounded by the block size whatever ``n`` is.

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
    mean, variances, axes = principal_axes(vectors, 2)
    # Eigenvectors' signs are arbitrary: fix them so the same model always draws the same map.
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    axes = axes * np.where(signs == 0, 1.0, signs)
    coordinates = np.empty((n, 2), np.float32)
    for start in range(0, n, BLOCK_ROWS):
        coordinates[start : start + BLOCK_ROWS] = (vectors[start : start + BLOCK_ROWS] - mean) @ axes
    total = float(_total_variance(vectors, mean))
    explained = variances / total if total > 0 else np.zeros(2)
    return coordinates, explained


def _total_variance(vectors: np.ndarray, mean: np.ndarray) -> float:
    """The covariance's trace (the sum of every axis' variance), block by block."""
    total = 0.0
    for start in range(0, len(vectors), BLOCK_ROWS):
        total += float(((vectors[start : start + BLOCK_ROWS] - mean) ** 2).sum())
    return total / len(vectors)
