"""Linear projections of embeddings, fitted on the references: PCA-whitening and LDA.

A projection is ``y = (x - mean) @ matrix``, then scaled to unit length. It is
fitted on the references' raw embeddings (the network's output), applied to
them and to every query, and saved with the model as two ``.npy`` files (no
pickle). Two kinds:

- ``"whiten"``: PCA-whitening, unsupervised. Decorrelates the dimensions and
  gives each the same variance, so that the few directions that vary most
  across unrelated photos (lighting, overall colour) stop dominating the
  distance. Refitted whenever the references change.
- ``"lda"``: linear discriminant analysis, learned from a label column of the
  references (seed 003: an embedding learned from the user's labels on top of
  the frozen network). It keeps the directions that separate the classes and
  shrinks those that vary within a class.

Both solve a symmetric eigenproblem with numpy, shrinking the covariance
towards a multiple of the identity so that a small reference set (fewer images
than dimensions) still gives a stable projection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.errors import InvalidArgument, ModelFormatError
from lookalike.store import storage

__all__ = ["KINDS", "Projection", "fit_lda", "fit_projection", "fit_whitening"]

KINDS = ("whiten", "lda")
#: The saved model's files holding a projection.
MEAN_FILE = "projection_mean.npy"
MATRIX_FILE = "projection_matrix.npy"
#: Default shrinkage of the covariance towards the identity (a fraction of its mean eigenvalue).
#: Measured on neardup (800 references): 0.01 -> N-S 2.65, 0.1 -> 2.90, 0.5 -> 3.05, 0.8 -> 3.05 (best descriptor).
WHITEN_SHRINKAGE = 0.5
#: Measured learning on clothing/train, scored on clothing/validation (gem): EfficientNet-Lite0 mAP 0.698 at
#: 0.1, 0.740 at 0.3, 0.749 at 0.5, 0.748 at 0.7, 0.731 at 0.9; SqueezeNet 0.668 at 0.1, 0.691 at 0.5. The
#: Ledoit-Wolf estimate (0.05-0.08 there) scored below 0.1.
LDA_SHRINKAGE = 0.5
#: Rows handled at once, so a memory-mapped million-row model never needs a float64 copy of itself.
BLOCK_ROWS = 65536
#: Subspace iteration (for a few axes of many dimensions): extra directions carried along, and rounds.
OVERSAMPLE = 10
ITERATIONS = 30
#: Up to this many dimensions a full eigendecomposition is cheap anyway.
SMALL_DIM = 32


@dataclass
class Projection:
    """``(x - mean) @ matrix``, then unit length: a fitted linear map applied to every embedding.

    Attributes
    ----------
    kind : {"whiten", "lda"}
    mean : numpy.ndarray
        (d_in,) float32, subtracted first.
    matrix : numpy.ndarray
        (d_in, d_out) float32.
    params : dict
        How it was fitted (shrinkage, dims, label column): what :meth:`refit` reuses.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    >>> projection = fit_whitening(x)
    >>> projection.apply(x).shape, projection.input_dim, projection.dim
    ((50, 8), 8, 8)
    """

    kind: str
    mean: np.ndarray
    matrix: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Project (n, input_dim) vectors to (n, dim) float32 unit vectors."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.input_dim:
            raise InvalidArgument(
                f"the {self.kind} projection takes vectors of length {self.input_dim}, got shape {vectors.shape}"
            )
        projected = (vectors - self.mean) @ self.matrix
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return np.ascontiguousarray(projected / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)

    def refit(self, vectors: np.ndarray, labels: np.ndarray | None = None) -> Projection:
        """The same kind of projection, with the same settings, fitted on new references.

        Call it whenever the references change (``add``/``remove``): whitening
        then follows the new set. ``labels`` are needed for ``"lda"``.
        """
        return fit_projection(self.kind, vectors, labels, **self.params)

    # --------------------------------------------------------------- storage
    def record(self) -> dict[str, Any]:
        """The manifest entry: kind, dimensions, settings and the names of the array files."""
        return {
            "kind": self.kind,
            "input_dim": self.input_dim,
            "dim": self.dim,
            "params": dict(self.params),
            "files": {"mean": MEAN_FILE, "matrix": MATRIX_FILE},
        }

    def files(self) -> dict[str, np.ndarray]:
        """File name -> array, for :func:`lookalike.store.storage.save`'s ``extra_files`` (written as ``.npy``)."""
        return {MEAN_FILE: self.mean, MATRIX_FILE: self.matrix}

    @classmethod
    def load(cls, saved: storage.SavedModel, record: dict[str, Any]) -> Projection:
        """Read a projection saved with a model; a damaged one raises ModelFormatError naming the file."""
        if not isinstance(record, dict) or record.get("kind") not in KINDS or not isinstance(record.get("files"), dict):
            raise ModelFormatError(f"{saved.manifest_path}: unknown projection {record!r}")
        mean, matrix = (saved.array(record["files"].get(key)) for key in ("mean", "matrix"))
        d_in, d_out = record.get("input_dim"), record.get("dim")
        if mean.shape != (d_in,) or matrix.shape != (d_in, d_out) or matrix.dtype != np.float32:
            raise ModelFormatError(
                f"{saved.folder}: projection arrays have shapes {mean.shape} and {matrix.shape}, "
                f"manifest says ({d_in},) and ({d_in}, {d_out})"
            )
        params = record.get("params") or {}
        if not isinstance(params, dict):
            raise ModelFormatError(f"{saved.manifest_path}: the projection's params are {params!r}, not an object")
        return cls(record["kind"], mean, matrix, dict(params))


def principal_axes(vectors: np.ndarray, count: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, variances, axes)``: the ``count`` principal axes of ``vectors`` (all by default), largest first.

    The (d, d) covariance is accumulated block by block in float64, so memory
    stays bounded by the block size whatever ``n`` is (``vectors`` may be
    memory-mapped); ``axes`` are columns, ``variances`` the covariance's
    eigenvalues along them. The one PCA of lookalike: the whitening and the
    explorer's 2-D map both use it.
    """
    n, d = vectors.shape
    mean = np.zeros(d)
    for start in range(0, n, BLOCK_ROWS):
        mean += vectors[start : start + BLOCK_ROWS].sum(axis=0, dtype=np.float64)
    mean /= n
    scatter = np.zeros((d, d))
    for start in range(0, n, BLOCK_ROWS):
        block = vectors[start : start + BLOCK_ROWS] - mean
        scatter += block.T @ block
    variances, axes = _top_axes(scatter / n, d if count is None else count)
    return mean, variances, axes


def _top_axes(scatter: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` largest eigenvalues (descending) and eigenvectors (columns) of a symmetric PSD matrix.

    Subspace iteration needs only matrix products and tiny decompositions: a
    full ``eigh`` of a 512x512 or 1024x1024 matrix is slow when LAPACK's
    threads compete with other work on the machine, and only two axes are needed.
    """
    d = scatter.shape[0]
    if d <= SMALL_DIM or count + OVERSAMPLE >= d:
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


def _shrunk(covariance: np.ndarray, shrinkage: float) -> np.ndarray:
    """``(1 - s) C + s (trace C / d) I``: full rank however few samples there are."""
    d = len(covariance)
    target = np.trace(covariance) / d
    return (1.0 - shrinkage) * covariance + shrinkage * target * np.eye(d)


def _check(vectors: np.ndarray, shrinkage: float, dims: int | None, what: str) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2 or not np.isfinite(x).all():
        raise InvalidArgument(f"{what} needs at least 2 finite embeddings, got an array of shape {np.shape(vectors)}")
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float)) or not 0 < shrinkage <= 1:
        raise InvalidArgument(f"shrinkage must be a number in (0, 1], got {shrinkage!r}")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= x.shape[1]):
        raise InvalidArgument(f"dims must be an integer from 1 to {x.shape[1]}, got {dims!r}")
    return x


def fit_whitening(vectors: np.ndarray, shrinkage: float = WHITEN_SHRINKAGE, dims: int | None = None) -> Projection:
    """PCA-whitening fitted on ``vectors`` (n, d): centre, rotate to the principal axes, equalise variances.

    Parameters
    ----------
    vectors : numpy.ndarray
        The references' embeddings.
    shrinkage : float, default 0.5
        Fraction of the mean variance added to every axis (after scaling the
        covariance by ``1 - shrinkage``), so that axes the references barely
        span are not blown up.
    dims : int, optional
        Keep only the ``dims`` axes of largest variance (all by default).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(1).normal(size=(100, 4)) * [10, 1, 1, 0.1]
    >>> y = fit_whitening(x, shrinkage=0.01).apply(x)
    >>> bool(np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5))
    True
    """
    x = _check(vectors, shrinkage, dims, "whitening")
    mean, values, axes = principal_axes(x)
    # Shrinking the covariance towards (trace / d) I keeps its axes and moves each variance the same way.
    values = (1.0 - shrinkage) * values + shrinkage * values.sum() / len(values)
    keep = dims or len(values)
    matrix = axes[:, :keep] / np.sqrt(np.maximum(values[:keep], 1e-12))
    params = {"shrinkage": float(shrinkage), "dims": dims}
    return Projection("whiten", mean.astype(np.float32), matrix.astype(np.float32), params)


def fit_lda(
    vectors: np.ndarray,
    labels: np.ndarray,
    shrinkage: float = LDA_SHRINKAGE,
    dims: int | None = None,
    label_column: str | None = None,
) -> Projection:
    """Linear discriminant analysis: the directions that best separate ``labels`` among ``vectors``.

    Solves ``S_b w = lambda S_w w`` (between-class over shrunk within-class
    scatter) by whitening ``S_w`` and taking the eigenvectors of the whitened
    ``S_b`` with the largest eigenvalues: at most ``classes - 1`` of them.

    Parameters
    ----------
    vectors : numpy.ndarray
        (n, d) embeddings of the labelled references.
    labels : array-like
        The class of each row; at least 2 classes, each with at least 2 members.
    shrinkage : float, default 0.5
        Shrinkage of the within-class covariance towards the identity.
    dims : int, optional
        Output dimensions (at most ``classes - 1``, the default).
    label_column : str, optional
        Recorded with the projection, so that :meth:`Projection.refit` finds the labels again.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> labels = np.repeat([0, 1, 2], 20)
    >>> x = rng.normal(size=(60, 5)) + 3 * np.eye(5)[labels]
    >>> fit_lda(x, labels).dim
    2
    """
    x = _check(vectors, shrinkage, None, "LDA")
    labels = np.asarray(labels)
    if len(labels) != len(x):
        raise InvalidArgument(f"LDA needs one label per embedding: {len(labels)} labels for {len(x)} embeddings")
    classes, codes = np.unique(labels.astype(str), return_inverse=True)
    sizes = np.bincount(codes)
    if len(classes) < 2 or sizes.min() < 2:
        raise InvalidArgument(
            f"LDA needs at least 2 classes with at least 2 images each; got {len(classes)} classes, "
            f"the smallest with {sizes.min()} image(s)"
        )
    top = len(classes) - 1
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= top):
        raise InvalidArgument(f"LDA dims must be an integer from 1 to {top} (classes - 1), got {dims!r}")
    mean = x.mean(axis=0)
    centroids = np.stack([x[codes == c].mean(axis=0) for c in range(len(classes))])
    within = x - centroids[codes]
    spread = (centroids - mean) * np.sqrt(sizes / len(x))[:, None]
    # Whiten the within-class scatter, then find the between-class directions in that space.
    values, axes = np.linalg.eigh(_shrunk(within.T @ within / len(x), shrinkage))
    whitening = axes / np.sqrt(np.maximum(values, 1e-12))
    between = (spread @ whitening).T @ (spread @ whitening)
    strengths, directions = np.linalg.eigh(between)
    order = np.argsort(strengths)[::-1][: dims or top]
    matrix = whitening @ directions[:, order]
    params = {"shrinkage": float(shrinkage), "dims": dims, "label_column": label_column}
    return Projection("lda", mean.astype(np.float32), matrix.astype(np.float32), params)


def fit_projection(kind: str, vectors: np.ndarray, labels: np.ndarray | None = None, **params: Any) -> Projection:
    """Fit a projection by kind name: ``"whiten"`` (``labels`` unused) or ``"lda"`` (``labels`` required)."""
    if kind == "whiten":
        return fit_whitening(vectors, shrinkage=params.get("shrinkage", WHITEN_SHRINKAGE), dims=params.get("dims"))
    if kind == "lda":
        if labels is None:
            raise InvalidArgument("an LDA projection is learned from labels: pass them (train_label= in create)")
        return fit_lda(
            vectors, labels, **{k: v for k, v in params.items() if k in ("shrinkage", "dims", "label_column")}
        )
    raise InvalidArgument(f"unknown projection {kind!r}: use one of {KINDS}")
