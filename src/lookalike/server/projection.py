"""A 2-D map of a collection: the first two principal components of its embeddings."""

from __future__ import annotations

import numpy as np

#: Rows handled at once, so a memory-mapped million-row model never needs a float64 copy of itself.
BLOCK_ROWS = 65536


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``vectors`` onto their two principal axes.

    The (d, d) covariance is accumulated block by block and decomposed with
    an SVD, so memory stays bounded by the block size whatever ``n`` is.

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
    axes, variances, _ = np.linalg.svd(scatter, hermitian=True)
    axes = axes[:, :2]
    if axes.shape[1] < 2:  # one-dimensional embeddings: the second axis is flat
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
        variances = np.pad(variances, (0, 2 - len(variances)))
    # An SVD's signs are arbitrary: fix them so the same model always draws the same map.
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    axes = axes * np.where(signs == 0, 1.0, signs)
    coordinates = np.empty((n, 2), np.float32)
    for start in range(0, n, BLOCK_ROWS):
        coordinates[start : start + BLOCK_ROWS] = (vectors[start : start + BLOCK_ROWS] - mean) @ axes
    total = variances.sum()
    explained = variances[:2] / total if total > 0 else np.zeros(2)
    return coordinates, explained
