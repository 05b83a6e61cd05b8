"""Geometric verification: do two photos show the same scene? Local features, matching and RANSAC.

Global embeddings find images that *look alike*; a near-duplicate (a crop, a
rotated, re-coloured or mirrored copy) also shares many local features that
sit at consistent positions. This module extracts local features (SIFT by
default, ORB as the fast option) from each decoded image, matches them between
a query and each candidate with Lowe's ratio test, and counts the matches
that one affine transform explains (RANSAC). That inlier count re-ranks a
shortlist of nearest neighbours: candidates with at least ``min_inliers``
inliers come first (most inliers first), the others keep their order after
them. The query is also matched mirrored, so flipped copies verify too.

OpenCV is installed with lookalike (dedup needs it too); an install without it says how to add it.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lookalike.errors import InvalidArgument, InvalidType, MissingExtra
from lookalike.index.hamming import two_nearest
from lookalike.ingest.decode import ImageError, load_rgb
from lookalike.validation import check_positive_int

__all__ = [
    "METHODS",
    "VERIFY_EXTRA",
    "align",
    "LocalFeatures",
    "Verifier",
    "reference_paths",
    "rerank",
    "verified_pairs",
    "verify_pairs",
    "verify_query",
    "verify_shortlist",
]

#: How to install what this module needs, for error messages.
VERIFY_EXTRA = "pip install 'lookalike[verify]'"
METHODS = ("sift", "orb")
#: RANSAC's reprojection tolerance, as a fraction of the longer image side (5 px at 640).
REPROJECTION_TOLERANCE = 0.008
#: Fewer tentative matches than this cannot define an affine transform worth trusting.
MIN_MATCHES = 4
#: How close to the border ORB keeps keypoints, in pixels: OpenCV's default (its patch size) in a picture longer than
#: ``min_side``, where the border is a small share that adds mostly a place's fixtures (a hanger's hook, a socket on
#: the wall: at 15 px, two garments hung in one spot were laid on each other by them); half of it in a picture
#: enlarged to ``min_side``, a thumbnail, whose keypoints would otherwise all come from its middle (OpenCV pads the
#: image for the patches that reach over the border).
ORB_EDGE, ORB_EDGE_ENLARGED = 31, 15
#: Shrunken grey images kept after extraction (about 200 kB each): their mirror images' features are asked for right
#: after theirs, when at all.
_GRAYS_KEPT = 32


def _cv2():
    """The cv2 module, or an ImportError that says which extra to install."""
    try:
        import cv2
    except ImportError as exc:
        raise MissingExtra(
            f"geometric verification needs OpenCV, which is not installed: {VERIFY_EXTRA} "
            f"(or pip install opencv-python-headless) [{exc}]"
        ) from exc
    return cv2


@dataclass(frozen=True)
class LocalFeatures:
    """The local features of one image: keypoint positions and their descriptors.

    Attributes
    ----------
    points : numpy.ndarray
        (n, 2) float32 keypoint positions (x, y) in the downscaled image.
    descriptors : numpy.ndarray
        (n, d) uint8 descriptors (SIFT: 128 values, ORB: 32 bytes).
    size : tuple of int
        (width, height) of the downscaled image the features come from.
    """

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.points)


def _sift_mirror_order() -> np.ndarray:
    """Where each value of a SIFT descriptor of the mirror image lies in the original keypoint's descriptor.

    A SIFT descriptor is 4 x 4 cells (rows, columns of the keypoint's own frame) of 8 orientation bins. Mirrored,
    a keypoint's orientation is mirrored too, and in its frame the cells' rows swap and each orientation bin
    ``o`` becomes ``-o``: OpenCV's descriptors of a mirrored image equal this permutation of the original's.
    """
    rows, columns, bins = np.meshgrid(np.arange(4), np.arange(4), np.arange(8), indexing="ij")
    return ((3 - rows) * 32 + columns * 8 + (-bins) % 8).reshape(-1)


_SIFT_MIRROR = _sift_mirror_order()


def _mirror_image(features: LocalFeatures) -> LocalFeatures:
    """The SIFT features of the mirror image, from the image's own (keypoints at pixel centres ``x -> w - 1 - x``)."""
    points = features.points.copy()
    points[:, 0] = features.size[0] - 1 - points[:, 0]
    return LocalFeatures(points, features.descriptors[:, _SIFT_MIRROR], features.size)


def _one_to_one(distances: np.ndarray, positions: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The tentative matches ``(query keypoints, reference keypoints)``: each query's nearest that passes Lowe's
    ratio test, and of the queries matched to one reference keypoint only the closest (the first on a tie), in the
    order each reference keypoint was first matched (what RANSAC samples from)."""
    queried = np.flatnonzero((positions[:, 1] >= 0) & (distances[:, 0] < ratio * distances[:, 1]))
    if not len(queried):
        return queried, queried
    train, distance = positions[queried, 0], distances[queried, 0]
    order = np.lexsort((queried, distance, train))
    closest = order[np.r_[True, train[order][1:] != train[order][:-1]]]
    first = np.full(int(train.max(initial=-1)) + 1, len(queried))
    np.minimum.at(first, train, np.arange(len(queried)))
    closest = closest[np.argsort(first[train[closest]], kind="stable")]
    return queried[closest], train[closest]


class Verifier:
    """Counts the geometrically consistent local-feature matches between images.

    Parameters
    ----------
    method : {"sift", "orb"}, default "sift"
        Local features. SIFT is the more reliable; ORB is several times
        faster to extract and less robust to blur, scale and re-colouring.
    min_inliers : int, default 15
        Inliers needed for a pair to count as verified (the same scene).
    max_side : int, default 640
        Images are decoded (EXIF orientation applied) and downscaled so that
        their longer side is at most this many pixels before extraction.
    min_side : int, default 0
        Smaller images are enlarged (bicubic) so that their longer side is
        this many pixels: a thumbnail then yields keypoints over all of it,
        at the scale its scene has in the larger image it was made from.
    max_features : int, default 1000
        Keypoints kept per image (the strongest).
    ratio : float, default 0.8
        Lowe's ratio test: a match is kept when its nearest descriptor is
        closer than ``ratio`` times the second nearest.
    flip : bool, default True
        Also match the mirrored query and keep the larger inlier count (the
        mirrored query is tried only when the direct one does not verify).
    threads : int, optional
        Worker threads for batches of queries or pairs (OpenCV releases the
        GIL); the number of CPUs when None.
    cache_size : int, default 4096
        Images whose features are kept in memory, by path (about 130 kB each
        with SIFT), so a reference shortlisted by many queries is read once.

    Examples
    --------
    >>> from lookalike.operations.verify import Verifier
    >>> verifier = Verifier(min_inliers=15)
    >>> verifier.inliers("photo.jpg", "photo_cropped.jpg") >= verifier.min_inliers  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        method: str = "sift",
        min_inliers: int = 15,
        max_side: int = 640,
        min_side: int = 0,
        max_features: int = 1000,
        ratio: float = 0.8,
        flip: bool = True,
        threads: int | None = None,
        cache_size: int = 4096,
    ):
        if method not in METHODS:
            raise InvalidArgument(f"method must be one of {METHODS}, got {method!r}")
        if isinstance(ratio, bool) or not isinstance(ratio, Real) or not 0 < ratio <= 1:
            raise InvalidArgument(f"ratio must be a number in (0, 1], got {ratio!r}")
        self.method = method
        self.min_inliers = check_positive_int("min_inliers", min_inliers, 1)
        self.max_side = check_positive_int("max_side", max_side, 32)
        self.min_side = check_positive_int("min_side", min_side, 0)
        if self.min_side > self.max_side:
            raise InvalidArgument(f"min_side ({min_side}) must not exceed max_side ({max_side})")
        self.max_features = check_positive_int("max_features", max_features, 8)
        self.ratio = float(ratio)
        self.flip = bool(flip)
        self.threads = check_positive_int("threads", threads if threads is not None else os.cpu_count() or 1, 1)
        self.cache_size = check_positive_int("cache_size", cache_size, 0)
        self._cv2 = _cv2()
        self._local = threading.local()  # OpenCV detectors and matchers are not shared between threads
        self._cache: OrderedDict[tuple[str, bool], LocalFeatures] = OrderedDict()
        self._grays: OrderedDict[str, Image.Image] = OrderedDict()  # the last images extracted, by path
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Verifier(method={self.method!r}, min_inliers={self.min_inliers}, max_side={self.max_side}, "
            f"min_side={self.min_side}, "
            f"max_features={self.max_features}, ratio={self.ratio}, flip={self.flip})"
        )

    # ----------------------------------------------------------- features
    def _tools(self):
        tools = getattr(self._local, "tools", None)
        if tools is None:
            cv2 = self._cv2
            if self.method == "sift":
                tools = (cv2.SIFT_create(nfeatures=self.max_features), cv2.BFMatcher(cv2.NORM_L2))
            else:
                tools = (cv2.ORB_create(nfeatures=self.max_features), cv2.BFMatcher(cv2.NORM_HAMMING))
            self._local.tools = tools
        return tools

    def _gray(self, source: Any, decoded: Image.Image | None = None) -> Image.Image:
        """The decoded, upright image as 8-bit grey, longer side at most ``max_side`` and at least ``min_side``."""
        if decoded is not None:  # the caller's picture, left as it is
            gray = decoded.convert("L")
            gray.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
        else:
            image = load_rgb(source, min_size=(self.max_side, self.max_side))
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            gray = image.convert("L")
        if max(gray.size) >= self.min_side:
            return gray
        scale = self.min_side / max(gray.size)
        return gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.BICUBIC)

    def _extract(self, gray: Image.Image) -> LocalFeatures:
        detector, _ = self._tools()
        if self.method == "orb":  # a picture no longer than min_side was enlarged to it (or is that small)
            detector.setEdgeThreshold(ORB_EDGE_ENLARGED if max(gray.size) <= self.min_side else ORB_EDGE)
        keypoints, descriptors = detector.detectAndCompute(np.asarray(gray), None)
        if descriptors is None:  # a blank or tiny image has no keypoints
            descriptors = np.zeros((0, 128 if self.method == "sift" else 32), np.uint8)
        # Converted in OpenCV: a Python loop over a thousand keypoints held the GIL for a tenth of a cold dedup.
        points = self._cv2.KeyPoint_convert(keypoints).reshape(-1, 2) if keypoints else np.zeros((0, 2), np.float32)
        # SIFT's float descriptors hold whole numbers 0..255: uint8 keeps them exactly in a quarter of the memory.
        return LocalFeatures(points, descriptors.astype(np.uint8, copy=False), gray.size)

    def features(
        self, source: Any, mirrored: bool = False, decoded: Image.Image | Callable[[], Image.Image] | None = None
    ) -> LocalFeatures:
        """The local features of an image (of its mirror image with ``mirrored=True``).

        Features of image files are cached by path (see ``cache_size``). ``decoded`` is the upright picture of
        ``source`` when the caller has decoded it already (it is not read again), or what gives it when the
        features are not cached.

        Raises
        ------
        lookalike.ImageError
            When the image cannot be read.
        """
        if mirrored and self.method == "sift":  # read off the image's own features: no second extraction
            return _mirror_image(self.features(source, decoded=decoded))
        key = (os.fspath(source), mirrored) if isinstance(source, (str, os.PathLike)) else None
        if key is not None:
            with self._lock:
                found = self._cache.get(key)
                if found is not None:
                    self._cache.move_to_end(key)
                    return found
        gray = self._recent_gray(key[0]) if key is not None else None
        if gray is None:
            gray = self._gray(source, decoded() if callable(decoded) else decoded)
            if key is not None:
                self._keep_gray(key[0], gray)
        found = self._extract(gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else gray)
        if key is not None and self.cache_size:
            with self._lock:
                self._cache[key] = found
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return found

    def _recent_gray(self, path: str) -> Image.Image | None:
        with self._lock:
            return self._grays.get(path)

    def _keep_gray(self, path: str, gray: Image.Image) -> None:
        """Keep an image just extracted: its mirror image is usually asked for next (when the direct features do not
        align a pair), and is then not decoded and shrunk again."""
        with self._lock:
            self._grays[path] = gray
            while len(self._grays) > _GRAYS_KEPT:
                self._grays.popitem(last=False)

    # ----------------------------------------------------------- matching
    def match(self, query: LocalFeatures, reference: LocalFeatures) -> int:
        """Inliers of the affine transform RANSAC finds between two feature sets (0 when none).

        Tentative matches pass Lowe's ratio test and are one-to-one on the
        reference side; the transform (rotation, uniform scale, translation)
        must map each inlier within 0.8 % of the image size.
        """
        return self.alignment(query, reference)[0]

    def alignment(
        self, query: LocalFeatures, reference: LocalFeatures, stretched: bool = False
    ) -> tuple[int, np.ndarray | None]:
        """``(inliers, transform)``: what :meth:`match` counts, and the 2 x 3 transform from the query's feature
        coordinates to the reference's (None when there is none). With ``stretched``, the transform may scale each
        of the query's sides by its own factor (a copy resized to another shape), though not shear it."""
        if len(query) < MIN_MATCHES or len(reference) < 2:
            return 0, None
        cv2 = self._cv2
        ours, theirs = query.descriptors, reference.descriptors
        if self.method == "sift":  # OpenCV's L2 matcher runs several times faster on float32 than on uint8
            found = self._tools()[1].knnMatch(ours.astype(np.float32), theirs.astype(np.float32), k=2)
            flat = np.array([(m.distance, m.trainIdx) for pair in found for m in pair], np.float64).reshape(-1, 2, 2)
            distances, positions = flat[..., 0], flat[..., 1].astype(np.int64)
        else:
            distances, positions = two_nearest(ours, theirs)
        queried, train = _one_to_one(distances, positions, self.ratio)
        if len(train) < MIN_MATCHES:
            return 0, None
        tolerance = REPROJECTION_TOLERANCE * max(*query.size, *reference.size)
        estimate = cv2.estimateAffine2D if stretched else cv2.estimateAffinePartial2D
        transform, mask = estimate(
            query.points[queried],
            reference.points[train],
            method=cv2.RANSAC,
            ransacReprojThreshold=tolerance,
            maxIters=2000,
            confidence=0.995,
        )
        if mask is None or transform is None or (stretched and not _unsheared(transform[:, :2])):
            return 0, None
        return int(mask.sum()), transform

    def inliers(self, query: Any, reference: Any) -> int:
        """Inliers between two images (paths, bytes, PIL images or arrays), trying the mirrored query too.

        Examples
        --------
        >>> Verifier().inliers("a.jpg", "a_mirrored.jpg")  # doctest: +SKIP
        212
        """
        return int(self._verify_one(query, [reference])[0])

    def _verify_one(self, query: Any, references: Sequence[Any], on_error: Callable | None = None) -> np.ndarray:
        """Inliers between one query and each reference; unreadable references get 0 (reported to on_error)."""
        direct = self.features(query)
        counts = np.zeros(len(references), dtype=np.int64)
        targets: list[LocalFeatures | None] = []
        for position, reference in enumerate(references):
            try:
                targets.append(self.features(reference))
            except ImageError as exc:
                if on_error is None:
                    raise
                on_error(exc)
                targets.append(None)
                continue
            counts[position] = self.match(direct, targets[-1])
        if self.flip:
            weak = [p for p, t in enumerate(targets) if t is not None and counts[p] < self.min_inliers]
            if weak:
                mirrored = self.features(query, mirrored=True)
                for position in weak:
                    counts[position] = max(counts[position], self.match(mirrored, targets[position]))
        return counts

    def _map(self, function: Callable, items: Sequence, verbose: bool, unit: str) -> list:
        """``function`` over ``items`` on the worker threads, in order, with a progress bar."""
        bar = tqdm(total=len(items), desc="Verifying", unit=unit, disable=None if verbose else True, leave=False)
        if self.threads == 1 or len(items) < 2:
            results = []
            for item in items:
                results.append(function(item))
                bar.update()
        else:
            with ThreadPoolExecutor(self.threads) as pool:
                results = []
                for result in pool.map(function, items):
                    results.append(result)
                    bar.update()
        bar.close()
        return results


def _warn_once() -> Callable[[ImageError], None]:
    seen: set[str] = set()

    def warn(exc: ImageError) -> None:
        if exc.source not in seen:
            seen.add(exc.source)
            warnings.warn(f"reference {exc.source} not verified: {exc.reason}", RuntimeWarning, stacklevel=4)

    return warn


def rerank(
    distances: np.ndarray, neighbours: np.ndarray, inliers: np.ndarray, min_inliers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-order each row of a shortlist: verified candidates first, most inliers first; the rest after, as they were.

    Ties among verified candidates keep their original (distance) order.

    Parameters
    ----------
    distances, neighbours, inliers : numpy.ndarray
        (m, s) arrays: each query's shortlist in its original order.
    min_inliers : int
        Inliers that make a candidate verified.

    Returns
    -------
    distances, neighbours, inliers : numpy.ndarray
        The same values, each row re-ordered.

    Examples
    --------
    >>> import numpy as np
    >>> d, n, i = rerank(np.array([[1.0, 2.0, 3.0]]), np.array([[7, 8, 9]]), np.array([[3, 40, 90]]), 15)
    >>> n.tolist(), i.tolist()
    ([[9, 8, 7]], [[90, 40, 3]])
    """
    verified = inliers >= min_inliers
    columns = np.broadcast_to(np.arange(inliers.shape[1]), inliers.shape)
    order = np.lexsort((columns, -np.where(verified, inliers, 0), ~verified), axis=-1)
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    return take(distances), take(neighbours), take(inliers)


def verified_pairs(references, pairs: np.ndarray, verify: bool | Verifier, verbose: bool = False) -> np.ndarray:
    """The pairs of positions of ``references`` (a model's ``core``) that verify, each checked once (as ``(min, max)``).

    What :func:`lookalike.dedup.find_duplicates` runs with ``verify=``.

    Examples
    --------
    >>> verified_pairs(model.core, np.array([[0, 1], [1, 0], [0, 2]]), True)  # doctest: +SKIP
    array([[0, 1]])
    """
    verifier = _as_verifier(verify)
    pairs = np.unique(np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if not len(pairs):
        return pairs
    return pairs[verify_pairs(pairs, reference_paths(references), verifier, verbose) >= verifier.min_inliers]


def _as_verifier(verify: bool | Verifier) -> Verifier:
    if isinstance(verify, Verifier):
        return verify
    if verify is True:
        return Verifier()
    raise InvalidType(f"verify must be True or a lookalike.operations.verify.Verifier, got {verify!r}")


def reference_paths(references) -> list[str]:
    """The file path of each of ``references`` (a model's ``core``), or a clear error when they are not kept."""
    paths = references.file_paths()
    if any(p is None for p in paths):
        raise InvalidArgument(
            "verify needs the reference images' files, but this model keeps no path for them "
            "(it was built from in-memory images or embeddings): build it from files to verify"
        )
    return paths


def verify_shortlist(
    verify: bool | Verifier,
    queries: Sequence[Any],
    references: Sequence[Any],
    distances: np.ndarray,
    neighbours: np.ndarray,
    verbose: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verify each query against its shortlisted references and re-rank the shortlist.

    Parameters
    ----------
    verify : True or Verifier
        True for a default :class:`Verifier` (SIFT, 15 inliers, flip-aware).
    queries : sequence
        Query images (paths, bytes, PIL images or arrays), one per row.
    references : sequence
        The image of each reference position (paths).
    distances, neighbours : numpy.ndarray
        (m, s) shortlist of each query from the index, nearest first.
    verbose : bool, default True
        Show a progress bar.

    Returns
    -------
    distances, neighbours, inliers : numpy.ndarray
        The re-ranked shortlist (see :func:`rerank`) and each candidate's inlier count.
        A reference that cannot be read is left unverified, with a warning.

    Examples
    --------
    >>> d, n, inl = verify_shortlist(True, ["q.jpg"], paths, distances, neighbours)  # doctest: +SKIP
    """
    verifier = _as_verifier(verify)
    if len(queries) != len(neighbours):
        raise InvalidArgument(f"got {len(queries)} queries for {len(neighbours)} shortlists")
    on_error = _warn_once()
    rows = verifier._map(
        lambda row: verifier._verify_one(queries[row], [references[p] for p in neighbours[row]], on_error),
        range(len(queries)),
        verbose,
        "query",
    )
    inliers = np.array(rows, dtype=np.int64).reshape(neighbours.shape)
    return rerank(distances, neighbours, inliers, verifier.min_inliers)


def verify_query(
    references,
    vectors: np.ndarray,
    queries: Sequence[Any] | None,
    k: int,
    verify: bool | Verifier,
    shortlist: int,
    verbose: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best of each query's ``max(k, shortlist)`` nearest references after verification.

    What :meth:`lookalike.ImageSimilarityModel.query` runs with ``verify=``:
    ``references`` is the model's ``core``, ``vectors`` the query embeddings,
    ``queries`` the query images.

    Returns
    -------
    distances, neighbours, inliers : numpy.ndarray
        (m, min(k, n)) each, re-ranked (see :func:`rerank`).
    """
    shortlist = check_positive_int("shortlist", shortlist, 1)
    verifier = _as_verifier(verify)
    if queries is None:
        raise InvalidArgument("verify needs the query images, but these queries are embeddings")
    paths = reference_paths(references)
    distances, neighbours = references.search(vectors, max(k, shortlist))
    distances, neighbours, inliers = verify_shortlist(verifier, queries, paths, distances, neighbours, verbose)
    return distances[:, :k], neighbours[:, :k], inliers[:, :k]


def verify_pairs(
    pairs: np.ndarray | Sequence[tuple[int, int]],
    paths: Sequence[Any],
    verify: bool | Verifier = True,
    verbose: bool = True,
) -> np.ndarray:
    """Inlier count of each pair of images, e.g. to confirm candidate duplicates.

    Parameters
    ----------
    pairs : (m, 2) array of int
        Positions into ``paths``; the first of each pair is the query (its mirror image is tried too).
    paths : sequence
        The images (paths, or other sources :func:`lookalike.ingest.decode.load_rgb` reads).
    verify : True or Verifier
        The verifier to use (True: SIFT, 15 inliers, flip-aware).
    verbose : bool, default True

    Returns
    -------
    numpy.ndarray
        (m,) int64 inliers; a pair is verified when this is at least ``verifier.min_inliers``.
        A pair with an unreadable image gets 0, with a warning.

    Examples
    --------
    >>> from lookalike.operations.verify import Verifier, verify_pairs
    >>> inliers = verify_pairs([(0, 1), (0, 2)], ["a.jpg", "a_crop.jpg", "b.jpg"])  # doctest: +SKIP
    >>> inliers >= Verifier().min_inliers  # doctest: +SKIP
    array([ True, False])
    """
    verifier = _as_verifier(verify)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(paths)):
        raise InvalidArgument(f"pairs must hold positions into paths (0..{len(paths) - 1})")
    on_error = _warn_once()

    def one(pair: np.ndarray) -> int:
        try:
            return int(verifier._verify_one(paths[pair[0]], [paths[pair[1]]], on_error)[0])
        except ImageError as exc:  # the query side of the pair
            on_error(exc)
            return 0

    return np.array(verifier._map(one, list(pairs), verbose, "pair"), dtype=np.int64)


#: Most cosine between the two sides of a picture a stretched alignment carries (a copy resized to another shape
#: keeps its right angles; a picture sheared is another view), and the most one side may be scaled over the other.
MAX_SHEAR = 0.02
MAX_STRETCH = 2.0


def _unsheared(linear: np.ndarray) -> bool:
    """Whether the 2 x 2 ``linear`` part of a transform turns and scales each side, keeping right angles."""
    across, down = linear[:, 0], linear[:, 1]
    lengths = np.linalg.norm(across), np.linalg.norm(down)
    if min(lengths) <= 0 or max(lengths) > MAX_STRETCH * min(lengths):
        return False
    return abs(float(across @ down)) <= MAX_SHEAR * lengths[0] * lengths[1]


def align(
    verifier: Verifier,
    a: Any,
    b: Any,
    mirrored: bool = False,
    decoded: tuple[Any, Any] = (None, None),
    stretched: bool = False,
) -> list[np.ndarray]:
    """How local features lay image ``a`` (mirrored first with ``mirrored``) on image ``b``: one transform (2 x 3),
    from ``a``'s coordinates to ``b``'s as fractions of each picture's width (so that it holds at any size), when
    the match reaches ``verifier.min_inliers``; none otherwise. A mirrored ``a`` is mirrored back in the transform.
    ``decoded`` holds the pictures of ``a`` and ``b`` when the caller has decoded them (they are not read again), or
    what gives them when their features are not cached. With ``stretched``, the transform may scale each side by
    its own factor (:meth:`Verifier.alignment`).

    Raises :class:`lookalike.ImageError` when either cannot be read.
    """
    query = verifier.features(a, mirrored=mirrored, decoded=decoded[0])
    target = verifier.features(b, decoded=decoded[1])
    inliers, transform = verifier.alignment(query, target, stretched)
    if inliers < verifier.min_inliers:
        return []
    # Keypoints put pixel centres at whole coordinates; fractions of the width count from the picture's edge.
    centres = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    into = centres @ np.diag([query.size[0], query.size[0], 1.0])  # widths -> the feature image's keypoints
    if mirrored:  # a point of a at u is at 1 - u in the mirrored picture
        into = into @ np.array([[-1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out_of = np.diag([1.0 / target.size[0], 1.0 / target.size[0], 1.0]) @ np.linalg.inv(centres)
    return [(out_of @ np.vstack([transform, [0.0, 0.0, 1.0]]) @ into)[:2]]
