"""The map of a collection: every reference placed in 2-D so that images that look alike lie close together.

Two methods:

- ``"tsne"``: t-SNE by openTSNE (FFT-accelerated; the ``map`` extra,
  ``pip install 'lookalike[map]'``), from each reference's nearest neighbours
  as the model finds them: its faiss index when it has an approximate one, a
  flat faiss scan when it searches exactly. It keeps neighbourhoods: on
  clustered vectors, half of each point's 10 nearest neighbours are among its
  10 nearest on the map (``benchmarks/map_layout.py``).
- ``"pca"``: the first two principal axes, in seconds and without the extra,
  but they keep little of what is near what (3 % of those neighbours on the
  same vectors).

``"auto"`` is t-SNE when openTSNE is installed, PCA (saying how to install
it) otherwise. Both are deterministic: the same references give the same map.
Each map also carries a k-means clustering of the embeddings, to colour it.

A :class:`MapLayout` records which references it was computed from (their
number and a digest of their labels, metric and embeddings), so one saved
before ``add``/``remove``/``sync`` is known to be stale and computed again,
never shown wrongly. It is saved beside the model as ``map.npz`` (float32
coordinates, int32 clusters and a JSON record, read back with
``allow_pickle=False``), written atomically on its own like the duplicate
decisions: computing a map never rewrites the embeddings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from lookalike.config import cpu_count
from lookalike.errors import InvalidArgument, MissingExtra, ModelFormatError
from lookalike.index.exact import every_rows_neighbours
from lookalike.index.metrics import unit_rows
from lookalike.references.core import References
from lookalike.references.projection import BLOCK_ROWS, principal_axes
from lookalike.store import bundle
from lookalike.store.files import write_bytes_atomic
from lookalike.store.manifest import MAP_FILE

__all__ = [
    "MAP_FILE",
    "METHODS",
    "MapLayout",
    "clusters_of",
    "compute",
    "fingerprint",
    "nearest_neighbours",
    "pca_2d",
    "tsne_available",
]

METHODS = ("auto", "tsne", "pca")
MAP_EXTRA = "pip install 'lookalike[map]'"
VERSION = 1
#: Every random choice (t-SNE's, k-means') starts from this seed: the same references always give the same map.
SEED = 0
#: t-SNE's perplexity (about how many neighbours each point attends to); its kNN graph has 3x as many.
PERPLEXITY = 30.0
#: Fewer references than this have no neighbourhoods worth laying out: "auto" uses PCA.
MIN_TSNE = 4
#: Colours a person can still tell apart on a map, and enough groups to read it by.
MAX_CLUSTERS = 50
#: k-means trains on at most this many points per cluster (an even sample): the centres settle long before.
TRAIN_PER_CLUSTER = 256
#: Rows searched at once by the flat neighbour scan and by the cluster assignment.
BLOCK = 4096
#: openTSNE computes gradients by FFT interpolation from this many points on (Barnes-Hut below).
FFT_FROM = 10_000
#: t-SNE iterations: early exaggeration, then the rest (openTSNE's defaults, reported by the progress bar).
EARLY_ITERATIONS, ITERATIONS = 250, 500


def tsne_available() -> bool:
    """Whether openTSNE (the ``map`` extra) can be imported."""
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        return False
    return True


def _open_tsne():
    try:
        import openTSNE
    except ImportError as exc:
        raise MissingExtra(f"a t-SNE map needs openTSNE, which is not installed: {MAP_EXTRA} [{exc}]") from exc
    return openTSNE


# ------------------------------------------------------------------------------------ what a map covers


def fingerprint(references: References) -> str:
    """A digest of what a map depends on: the references' labels, metric and indexed embeddings.

    It changes with ``add``, ``remove``, ``sync`` (a re-embedded file) and a
    refitted projection; reading the embeddings costs about a second per GB.
    """
    digest = hashlib.sha256()
    labels = [v.item() if isinstance(v, np.generic) else v for v in references.labels]
    digest.update(json.dumps([references.metric, len(labels), references.dim, labels], default=str).encode())
    vectors = references.embeddings
    for start in range(0, len(vectors), BLOCK_ROWS):
        digest.update(np.ascontiguousarray(vectors[start : start + BLOCK_ROWS], dtype=np.float32).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class MapLayout:
    """A 2-D map of the references and a clustering of them, with what it was computed from.

    Attributes
    ----------
    coordinates : numpy.ndarray
        (n, 2) float32 position of each reference, in reference order.
    clusters : numpy.ndarray
        (n,) int32 k-means cluster of each reference's embedding; 0 is the largest.
    method : str
        ``"tsne"`` or ``"pca"``.
    fingerprint : str
        :func:`fingerprint` of the references it was computed from.
    explained : tuple of float, optional
        For PCA, the share of the variance along each axis.
    seconds : float
        Time the layout and clustering took.
    note : str
        Why ``"auto"`` chose PCA, when it did (with how to get t-SNE).
    saved : bool
        Read back from the model's folder rather than computed in this process.
    """

    coordinates: np.ndarray
    clusters: np.ndarray
    method: str
    fingerprint: str
    explained: tuple[float, float] | None = None
    seconds: float = 0.0
    note: str = ""
    saved: bool = False

    def __len__(self) -> int:
        return len(self.coordinates)

    @property
    def cluster_count(self) -> int:
        return int(self.clusters.max()) + 1 if len(self.clusters) else 0

    def covers(self, references: References, digest: str | None = None) -> bool:
        """Whether this map was computed from exactly these references (``digest``: their fingerprint, if known)."""
        if len(self) != len(references):
            return False
        return (digest or fingerprint(references)) == self.fingerprint

    # ---------------------------------------------------------------- storage
    def record(self) -> dict:
        return {
            "version": VERSION,
            "method": self.method,
            "count": len(self),
            "fingerprint": self.fingerprint,
            "explained": list(self.explained) if self.explained is not None else None,
            "seconds": self.seconds,
            "note": self.note,
        }

    def to_bytes(self) -> bytes:
        """The ``map.npz`` file: uncompressed arrays and the record as a JSON string, nothing pickled."""
        return bundle.to_bytes(
            {
                "coordinates": np.ascontiguousarray(self.coordinates, dtype=np.float32),
                "clusters": np.ascontiguousarray(self.clusters, dtype=np.int32),
            },
            self.record(),
        )

    def save(self, model_folder: str | os.PathLike) -> Path:
        """Write ``map.npz`` in the model's folder, atomically and on its own."""
        return write_bytes_atomic(Path(model_folder) / MAP_FILE, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> MapLayout:
        """Read a ``map.npz``; anything but what :meth:`to_bytes` writes raises ModelFormatError."""
        arrays, record = bundle.from_bytes(data, where, "map", {"coordinates", "clusters"})
        coordinates, clusters = arrays["coordinates"], arrays["clusters"]
        if record["version"] > VERSION:
            raise ModelFormatError(f"{where} has map version {record['version']}: upgrade lookalike")
        n = record.get("count")
        explained = record.get("explained")
        if (
            record.get("method") not in ("tsne", "pca")
            or not isinstance(record.get("fingerprint"), str)
            or not isinstance(n, int)
            or coordinates.shape != (n, 2)
            or coordinates.dtype != np.float32
            or clusters.shape != (n,)
            or clusters.dtype != np.int32
            or (explained is not None and (not isinstance(explained, list) or len(explained) != 2))
        ):
            raise ModelFormatError(f"{where} is damaged: its arrays do not match its record")
        return cls(
            coordinates,
            clusters,
            record["method"],
            record["fingerprint"],
            explained=tuple(float(v) for v in explained) if explained is not None else None,
            seconds=float(record.get("seconds") or 0.0),
            note=str(record.get("note") or ""),
            saved=True,
        )


# ------------------------------------------------------------------------------------ computing one


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``vectors`` onto their two principal axes.

    The axes come from :func:`lookalike.references.projection.principal_axes` (covariance
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


def nearest_neighbours(references: References, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, positions)``: each reference's ``k`` nearest other references, in the model's metric.

    An approximate index answers for itself; an exact model is scanned in
    float32 (:func:`lookalike.index.exact.every_rows_neighbours`) instead of
    its own exact search, which re-measures every candidate in float64 and
    took 9x as long for 90 neighbours of 10,000 references (the layout needs
    the neighbours, not the last digit).
    """
    if references.index.method != "brute_force":
        blocks = list(references.neighbour_blocks(k))
        return np.concatenate([b[1] for b in blocks]), np.concatenate([b[2] for b in blocks])
    return every_rows_neighbours(references.embeddings, references.metric, k)


def _tsne_distances(distances: np.ndarray, positions: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour distances as t-SNE's Gaussian kernel expects them: non-negative, euclidean-like, every slot filled."""
    if metric == "cosine":  # the chord between unit vectors, of which 1 - cos is half the square
        distances = np.sqrt(2.0 * np.maximum(distances, 0.0))
    elif metric == "dot":  # -q.r can be negative; the kernel's bandwidth is fitted per point, so shift each row
        distances = distances - distances[:, :1]
    missing = positions < 0
    if missing.any():
        # An approximate index may find fewer than k: point those slots at the point itself (t-SNE ignores
        # self-affinity) at its farthest distance found, the least weight.
        rows = np.nonzero(missing)[0]
        farthest = np.where(missing, -np.inf, distances).max(axis=1)
        positions = np.where(missing, np.arange(len(positions))[:, None], positions)
        distances = distances.copy()
        distances[missing] = np.maximum(farthest[rows], 0.0)
    return distances, positions


def _tsne(references: References, progress: Callable[[int], None] | None) -> np.ndarray:
    open_tsne = _open_tsne()
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = len(references)
    perplexity = min(PERPLEXITY, (n - 1) / 3)
    k = min(n - 1, int(math.ceil(3 * perplexity)))
    distances, positions = _tsne_distances(*nearest_neighbours(references, k), references.metric)
    # openTSNE's Barnes-Hut gradients (below 10,000 points) synchronise threads at every iteration: on 2 busy
    # cores two threads took 8-10 s for 600 points where one took 1.4-2.9 s. Its FFT gradients gain from both.
    threads = cpu_count() if n >= FFT_FROM else 1
    affinities = open_tsne.affinity.PerplexityBasedNN(
        knn_index=PrecomputedNeighbors(positions, distances),
        perplexity=perplexity,
        n_jobs=threads,
        random_state=SEED,
    )
    # Start from the principal axes (ours: blockwise, fixed signs) scaled down as openTSNE's own PCA start is.
    start = open_tsne.initialization.rescale(pca_2d(references.embeddings)[0].astype(np.float64))
    every = 25

    def report(*_) -> bool:
        progress(every)
        return False  # True would stop the optimisation

    callbacks = {"callbacks": report, "callbacks_every_iters": every} if progress is not None else {}
    embedding = open_tsne.TSNE(
        perplexity=perplexity,
        early_exaggeration_iter=EARLY_ITERATIONS,
        n_iter=ITERATIONS,
        n_jobs=threads,
        random_state=SEED,
        **callbacks,
    ).fit(affinities=affinities, initialization=start)
    return np.asarray(embedding, dtype=np.float32)


def clusters_of(vectors: np.ndarray, metric: str) -> np.ndarray:
    """k-means clusters of ``vectors`` (k = sqrt(n / 2), at most :data:`MAX_CLUSTERS`), numbered by size, largest 0.

    Trained with faiss on an even sample (:data:`TRAIN_PER_CLUSTER` points per
    cluster), then every vector is assigned in blocks: memory stays bounded for
    memory-mapped embeddings. Cosine models cluster directions (spherical k-means).
    """
    n = len(vectors)
    if n == 0:
        return np.zeros(0, np.int32)
    k = max(1, min(MAX_CLUSTERS, round(math.sqrt(n / 2))))
    spherical = metric == "cosine"
    sample = np.unique(np.linspace(0, n - 1, min(n, k * TRAIN_PER_CLUSTER)).round().astype(np.int64))
    train = np.ascontiguousarray(vectors[sample], dtype=np.float32)
    kmeans = faiss.Kmeans(
        vectors.shape[1],
        k,
        niter=20,
        seed=SEED + 1234,  # faiss's own default seed, offset by ours
        spherical=spherical,
        min_points_per_centroid=1,  # small collections have few points per cluster: say nothing about it
        max_points_per_centroid=TRAIN_PER_CLUSTER,
    )
    kmeans.train(unit_rows(train) if spherical else train)
    assigned = np.empty(n, np.int64)
    for start in range(0, n, BLOCK):
        block = np.ascontiguousarray(vectors[start : start + BLOCK], dtype=np.float32)
        assigned[start : start + len(block)] = kmeans.assign(unit_rows(block) if spherical else block)[1]
    # Number clusters by size (ties by first member), so colours follow the structure, not k-means' start.
    sizes = np.bincount(assigned, minlength=k)
    first = np.full(k, n)
    np.minimum.at(first, assigned, np.arange(n))
    order = np.lexsort((first, -sizes))
    rank = np.empty(k, np.int64)
    rank[order] = np.arange(k)
    return rank[assigned].astype(np.int32)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InvalidArgument(f"method must be one of {METHODS}, got {method!r}")
    return method


def _resolve(method: str, n: int, tsne_limit: int | None) -> tuple[str, str]:
    """The method ``method`` means for ``n`` references, and the note saying why when "auto" chose PCA."""
    if method == "tsne" and n < MIN_TSNE:
        raise InvalidArgument(f"a t-SNE map needs at least {MIN_TSNE} references, this model has {n}")
    if method != "auto":
        return method, ""
    if not tsne_available():
        return "pca", f"PCA, which keeps little of what is near what: for a t-SNE map, {MAP_EXTRA}"
    if n < MIN_TSNE:
        return "pca", ""
    if tsne_limit is not None and n > tsne_limit:
        return "pca", (
            f"PCA: a t-SNE map of {n:,} references takes minutes; compute and save it once with "
            "`lookalike map MODEL` (or model.compute_map() and model.save_map(path))"
        )
    return "tsne", ""


def reusable(layout: MapLayout | None, method: str, n: int, tsne_limit: int | None) -> bool:
    """Whether ``layout`` (assumed to cover the references) answers ``method``: "auto" takes a t-SNE map
    whatever its size, and a PCA one only when it would choose PCA again."""
    if layout is None:
        return False
    if method != "auto":
        return layout.method == method
    return layout.method == "tsne" or _resolve(method, n, tsne_limit)[0] == "pca"


def compute(
    references: References,
    method: str = "auto",
    previous: MapLayout | None = None,
    tsne_limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> MapLayout:
    """The map of ``references``: ``previous`` when it covers them and answers ``method``, else a new one.

    Parameters
    ----------
    references : lookalike.references.core.References
    method : {"auto", "tsne", "pca"}
        ``"auto"``: t-SNE when openTSNE is installed (and there are at most
        ``tsne_limit`` references), PCA otherwise, with a note saying why.
    previous : MapLayout, optional
        A map computed or saved before; reused when still valid.
    tsne_limit : int, optional
        Most references "auto" lays out with t-SNE (a saved t-SNE map is reused whatever the size).
    progress : callable, optional
        Called with the number of t-SNE iterations done since its last call
        (:data:`EARLY_ITERATIONS` + :data:`ITERATIONS` in all).
    """
    check_method(method)
    n = len(references)
    digest = fingerprint(references)
    if previous is not None and reusable(previous, method, n, tsne_limit) and previous.covers(references, digest):
        return previous
    resolved, note = _resolve(method, n, tsne_limit)
    started = time.perf_counter()
    explained = None
    if resolved == "tsne":
        coordinates = _tsne(references, progress)
    else:
        coordinates, share = pca_2d(references.embeddings)
        explained = (float(share[0]), float(share[1]))
    clusters = clusters_of(references.embeddings, references.metric)
    return MapLayout(
        coordinates,
        clusters,
        resolved,
        digest,
        explained=explained,
        seconds=time.perf_counter() - started,
        note=note,
    )
