"""How much two images are the same: ``exact``, ``same-pixels``, ``resized``, ``edited`` or ``similar``.

A copy is one capture of a scene, however re-saved, resized, cropped, turned,
recoloured or overlaid; another capture of the same scene (other light,
viewpoint, people, clouds) is a look-alike, never a copy. Each pair is given
the strongest of these that holds, checked from the cheapest:

- ``exact``: the same bytes (SHA-256 of two files of one size; no decoding).
- ``same-pixels``: the same decoded pixels once EXIF orientation is applied (a
  re-saved PNG, changed metadata).
- ``resized``: the same picture at another size or quality: aspect ratios
  within 2 %, and, both shrunk to the smaller one's size, their grey levels
  agree everywhere (see below) with no change of tone allowed.
- ``edited``: the same capture cropped, turned, mirrored, recoloured, padded
  or marked: local features matched and one similarity transform found by
  RANSAC (OpenCV's ORB, the mirror image tried too), then the two pictures
  aligned by it and compared pixel by pixel (below). OpenCV does the
  matching (installed with lookalike).
- ``similar``: anything else, however close the embeddings or however many
  keypoints match: two captures of one building match hundreds of keypoints.

The pixel comparison is what tells one capture from two. The pair is
compared where it overlaps, at the smaller picture's scale (at most
:data:`COMPARE_SIDE` pixels a side): grey levels, the tone of one mapped onto
the other's by their histograms over the overlap (brightness, contrast,
gamma and grey copies keep their pixels' order), both lightly blurred (JPEG
artefacts and resampling). Every pixel differing by more than
:data:`CHANGED_LEVELS` grey levels (in a picture of little contrast, by more
than its own spread) is a change; canvas in both (fill reaching the edge) is
left out, since it agrees whatever the pictures show. One capture re-saved or
edited changes almost nothing, or one compact place (a watermark, a caption);
another capture changes a share of the overlap everywhere (moved people,
clouds, shadows, and the parallax of another viewpoint, which no single
transform undoes). A pair is a copy when at most :data:`MAX_CHANGED` of its
overlap changed. When a check cannot run (an unreadable file, no OpenCV), the
pair is ``similar`` and the verdict says why: a copy is never inferred from
names, sizes or embeddings alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from lookalike.errors import InvalidArgument
from lookalike.ingest.decode import ImageError, decode_image, load_rgb
from lookalike.ingest.fingerprint import (
    COMPARED_EITHER_WAY,
    MATCH_BITS,
    ORIENTATION_MAPS,
    hamming,
    layout,
    orientations,
)
from lookalike.store.files import cached_sha256

__all__ = [
    "COPY_TIERS",
    "MAX_CHANGED",
    "RESIZED_PSNR",
    "TIERS",
    "TIERS_VERSION",
    "Sameness",
    "Verdict",
    "check_tiers",
    "stronger",
]

TIERS = ("exact", "same-pixels", "resized", "edited", "similar")
#: What a person calls a copy, an edited copy included: what dedup acts on unless told otherwise.
COPY_TIERS = ("exact", "same-pixels", "resized", "edited")
#: Changes whenever a verdict could change: verdicts cached by an earlier version are judged again.
TIERS_VERSION = 21
#: Lowest PSNR (dB) of two images shrunk to a common size that still counts as ``resized``. Copies re-saved at JPEG
#: quality 30 or shrunk to 1/8 stay above it; two captures of one building (landmarks) reach 19 dB at most.
RESIZED_PSNR = 23.0
#: Largest compact patch of changes (a share of the picture) a ``resized`` copy may show: its re-compression and
#: resampling change scattered specks; a watermark of a quarter by an eighth of the picture changes 3 % in one place.
RESIZED_MARK = 0.005
#: Most mean change of colour (Cb, Cr levels at 8 x 8) a ``resized`` copy may show; a recoloured copy is edited.
MAX_COLOUR_CHANGE = 4.0
#: Longest side two pictures are compared at: enough for the changes another capture makes, cheap for 40 MP photos.
COMPARE_SIDE = 256
#: Grey levels (after tone mapping and blur) by which a pixel must differ to count as changed.
CHANGED_LEVELS = 20
#: Most of the overlap that may change for a pair to be one capture (see the module docstring and docs/dedup.md).
MAX_CHANGED = 0.05
#: Largest patch of changes (its bounding box, as a share of the overlap) an edit may add in one place: a watermark,
#: a caption, a logo.
MARK_SHARE = 0.125
#: Largest patch (its bounding box, as a share of the overlap) that still counts as one mark when it is flat in one
#: picture (a caption bar across the bottom, a box pasted on): another capture's changes are scene, not flat.
PASTED_SHARE = 0.25
#: Most of the overlap that may change for a pair to be one capture once a shading towards the corners of either
#: picture is undone (a vignette): 35 neardup originals with a vignette, and with a phone app's filter (vignette,
#: warmth, contrast, colour), change 2.2 % at most once it is undone (20 and 22 of them more than MAX_CHANGED before);
#: the nearest two captures of one building (landmarks, 13,475 pairs) 5.5 % (7.9 % before).
SHADED_CHANGED = 0.03
#: Most of the overlap that may change for a pair to be one capture when laid on each other with each side scaled
#: by its own factor (a crop resized to another shape).
STRETCHED_CHANGED = 0.03
#: Least contrast a tone mapping must keep (its output's spread over the target's) to stand for one capture's tones
#: changed: a mapping that flattens the picture explains nothing. A dark capture of a nave mapped onto a bright
#: one kept 0.44 of the contrast and changed 3 % of the overlap; brightened, gamma and grey copies keep 0.98 or more.
MIN_TONE_CONTRAST = 0.6
#: How many times the frame's resolution the other picture must have before it could show more detail than the
#: frame (a closer capture of the same scene): an enlarged crop holds no more.
ZOOM_SCALE = 1.4
#: Most detail (the 90th percentile of the grey levels' Laplacian, at the compared size) a frame may hold outside the
#: other picture for that to be fill, not more scene, when telling a closer capture: a photo padded to a 1,080 px
#: square with its own blurred enlargement measures 2-3 there; what lies around the closer of two captures of one
#: building (landmarks) 38-85.
FILL_DETAIL = 8.0
#: Least share of the smaller picture the other must cover for an edited copy (a crop of a crop still does).
MIN_OVERLAP = 0.6
_ASPECT_TOLERANCE = 0.02
#: Grey levels canvas (padding, a turn's corners) may vary by: JPEG ringing near the picture's edge.
CANVAS_TOLERANCE = 6
#: Share of what lies outside another picture that must be plain (no pixel within a pixel of it differing by more than
#: CANVAS_TOLERANCE) for it to be canvas, not more of the scene: a screenshot's bars and message text around a photo.
PLAIN_OUTSIDE = 0.75
#: Canvas is fill within this many grey levels of black or white (what padding and turning tools fill with: neardup
#: fills its turned photos with grey 16 to 20).
CANVAS_LEVELS = 40
#: Decoded images kept per Sameness, by path (a group's members are compared with each other).
_IMAGES_KEPT = 48
#: Side images are decoded at (at least) for the tier checks (JPEG draft mode: a 12 MP photo is read at a quarter of
#: each side): what local features (_FEATURES_SIDE) and the pixel comparison (COMPARE_SIDE) need. On 600 photos of
#: 3,000 px, 1,024 made decoding a third of a cold dedup. Two files of one size whose reduced pictures are resized
#: copies of each other are decoded whole to tell whether they hold the same pixels (the draft of a JPEG is not
#: the reduced PNG of its pixels).
DECODE_SIDE = 512
#: Pictures read whole (a keeper's measure, a digest of all pixels) kept per Sameness (a camera photo is 36 MB).
_WHOLE_KEPT = 2
#: Local features kept per Sameness (an image's and its mirror image's: about 40 kB each, 330 MB at most). A large
#: component of look-alikes asks for an image's features again long after: at 10,475 photos, keeping 2,048 extracted
#: 4,464 of 15,322 again and made cold dedup 14 % slower, for 70 MB less at the peak.
_FEATURES_KEPT = 8192
#: How local features lay one capture on another: ORB, not SIFT. Aligning one capture with itself edited needs
#: no invariance to a new viewpoint or light (the pixel test refuses those anyway), and ORB costs an eighth of SIFT
#: per image.
_FEATURES_METHOD = "orb"
#: Longest side local features are found at: crops down to a fifth of a photo still have hundreds of keypoints.
_FEATURES_SIDE = 480
#: Smaller pictures are enlarged to this longest side first. Neardup's crops are shrunk thumbnails (about 35-260 px)
#: of a part of their photo: enlarged, they are laid on it in 397 of 410 groups, against 311 at their own size.
_FEATURES_MIN_SIDE = 320
#: Keypoints per image for the edited tier: enough for crops of a quarter of a photo.
_KEYPOINTS = 1000


@dataclass(frozen=True)
class Verdict:
    """A pair's tier and why, in words a person reads in a report; for resized and edited copies, the share of each
    that is picture, not canvas, and for edited copies where each shows what they share (see :class:`Compared`);
    ``aligned``: a look-alike laid on the other by their fingerprints or local features (another capture of one
    scene, not a photo of something alike)."""

    tier: str
    reason: str
    pictures: tuple[float, float] | None = None
    aligned: bool = False
    regions: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def is_copy(self) -> bool:
        return self.tier in COPY_TIERS

    @property
    def same_scene(self) -> bool:
        """A copy, or another capture of the same scene (what a leak between a training and a test set is)."""
        return self.is_copy or self.aligned


def stronger(a: str, b: str) -> str:
    """The stronger of two tiers."""
    return a if TIERS.index(a) <= TIERS.index(b) else b


def check_tiers(tiers: Any, allowed: tuple[str, ...] = TIERS, name: str = "tiers") -> tuple[str, ...]:
    """A tier name or a list of them, validated, in strength order."""
    wanted = {tiers} if isinstance(tiers, str) else set(tiers)
    unknown = wanted - set(allowed)
    if unknown or not wanted:
        raise InvalidArgument(f"{name} must be some of {allowed}, got {tiers!r}")
    return tuple(t for t in TIERS if t in wanted)


class Sameness:
    """Gives pairs of image files their tier; decoded images and local features are kept per path, verdicts per
    pair of file versions (in memory, and in the embedding cache's database when ``cache`` is given).

    Parameters
    ----------
    edits : bool or lookalike.operations.verify.Verifier, optional
        Whether to look for the ``edited`` tier (crops, turns, mirrors,
        recolouring, overlays), which needs OpenCV: None looks for it when
        OpenCV is installed, True requires it, a Verifier sets how local
        features are matched.
    cache : lookalike.embed.cache.EmbeddingCache, optional
        Where verdicts are kept between runs: a pair judged before is not
        judged again while both files are unchanged (path, size, mtime).
    """

    def __init__(self, edits: Any = None, cache: Any = None):
        if edits is None:
            import importlib.util

            edits = importlib.util.find_spec("cv2") is not None
        self._verifier = None
        if edits:
            from lookalike.operations.verify import Verifier

            self._verifier = (
                edits
                if isinstance(edits, Verifier)
                else Verifier(
                    _FEATURES_METHOD,
                    threads=1,
                    max_side=_FEATURES_SIDE,
                    min_side=_FEATURES_MIN_SIDE,
                    max_features=_KEYPOINTS,
                    cache_size=_FEATURES_KEPT,
                )
            )
        self._images: OrderedDict[str, Image.Image | ImageError] = OrderedDict()
        self._layouts: dict[str, tuple] = {}
        self._sizes: dict[str, tuple[int, int] | ImageError] = {}
        self._files: dict[str, tuple[int, int, str]] = {}  # size (before any EXIF turn or reduction) and format
        self._whole_digests: dict[str, tuple | None] = {}  # (size, digest) of each file read whole
        self._whole_images: OrderedDict[str, Image.Image] = OrderedDict()  # the last few read whole for a measure
        self._lock = threading.Lock()
        self._cache = cache
        self._known: dict[tuple, Verdict | tuple[float, float]] = {}
        self._new: list[tuple] = []
        #: Verdicts and measures found here rather than read from the cache: none when a second dedup runs over
        #: unchanged files.
        self.computed = 0
        # What was judged with edits looked for is not what was judged without: they are kept apart.
        self._version = TIERS_VERSION * 2 + (self._verifier is not None)

    @property
    def checks_edits(self) -> bool:
        return self._verifier is not None

    def verdict(self, a: str | None, b: str | None, features: bool = True) -> Verdict:
        """How much the images at paths ``a`` and ``b`` are the same, and why; without ``features``, edits are
        looked for only as the pictures' fingerprints lay them (turns, mirrors, padding), not by local features."""
        if a is None or b is None:
            return Verdict("similar", "no image file to compare")
        if b < a:
            found = self.verdict(b, a, features)
            if not found.pictures:
                return found
            return replace(found, pictures=found.pictures[::-1], regions=found.regions and found.regions[::-1])
        keys = _versions(a, b)
        if keys is not None and (keys in self._known or self._stored(keys)):
            return self._known[keys]
        quick = _fingerprints_only(keys)
        if not features and quick is not None and (quick in self._known or self._stored(quick)):
            return self._known[quick]
        found = self._judge(a, b, features)
        if keys is not None:  # a pair not fully judged is kept apart from what was judged fully, unless a copy
            kept = keys if features or found.is_copy else quick
            self._known[kept] = found
            self._new.append((kept, found))
            self.computed += 1
        return found

    def recall(self, pairs: list[tuple[str, str]], fingerprints_only: Iterable[bool]) -> None:
        """Read the stored verdicts of many pairs at once (what :meth:`verdict` would otherwise read one by one);
        ``fingerprints_only``: for each pair, whether it will be judged without local features."""
        if self._cache is None:
            return
        from lookalike.embed.cache import FileKey

        key_of = functools.lru_cache(maxsize=None)(FileKey.of)  # each file is stat'ed once, not once per pair
        wanted = []
        for (a, b), quick in zip(pairs, fingerprints_only, strict=True):
            keys = _versions(*sorted((a, b)), key_of) if a is not None and b is not None else None
            if keys is not None:
                wanted += [keys, _fingerprints_only(keys)] if quick else [keys]
        wanted = [keys for keys in wanted if keys not in self._known]
        for position, text in self._cache.get_verdicts(wanted, self._version).items():
            self._known[wanted[position]] = _parsed(text)

    def _stored(self, keys: tuple) -> bool:
        """Whether the cache holds a verdict for ``keys`` (now in memory too)."""
        if self._cache is None:
            return False
        with self._lock:  # one connection to the database, shared by the threads judging groups
            found = self._cache.get_verdicts([keys], self._version)
        if found:
            self._known[keys] = _parsed(found[0])
        return bool(found)

    def save(self) -> None:
        """Keep the verdicts judged since the last save in the cache (nothing without one)."""
        if self._cache is not None and self._new:
            self._cache.put_verdicts(((*keys, _stored(found)) for keys, found in self._new), self._version)
        self._new = []

    def _judge(self, a: str, b: str, features: bool = True) -> Verdict:
        digests = cached_sha256(a), cached_sha256(b)
        if digests[0] is not None and digests[0] == digests[1]:
            return Verdict("exact", "the same bytes")
        # Pixels are decoded only when a check needs them: a pair of look-alikes whose local features are known
        # and whose shapes differ is told apart without decoding either again.
        try:
            sizes = self._size(a), self._size(b)
            if sizes[0] == sizes[1] and _pixels_digest(self._picture(a)) == _pixels_digest(self._picture(b)):
                return Verdict("same-pixels", "the same pixels")
            resized = _resized(self._picture(a), self._picture(b)) if _one_shape(*sizes) else None
            if resized is not None:
                return self._same_when_whole(a, b) or resized
            if self._verifier is None:
                return Verdict("similar", "crops and other edits not looked for: pip install 'lookalike[verify]'")
            return self._edited(a, b, sizes, features)
        except ImageError as exc:
            return Verdict("similar", f"not compared: {exc.source} cannot be read ({exc.reason})")

    def _same_when_whole(self, a: str, b: str) -> Verdict | None:
        """The ``same-pixels`` verdict when the files, of one size and decoded reduced, hold the same pixels whole.
        Two JPEG files are not read whole: the same pixels would have been the same reduced pictures already."""
        files = self._files.get(a), self._files.get(b)
        if None in files or sorted(files[0][:2]) != sorted(files[1][:2]) or files[0][2] == files[1][2] == "JPEG":
            return None
        if self._reduced(a) == self._reduced(b) == 1.0:
            return None  # decoded whole already: their pixels differ
        digests = self._whole_digest(a), self._whole_digest(b)
        return Verdict("same-pixels", "the same pixels") if None not in digests and len(set(digests)) == 1 else None

    def _whole_digest(self, path: str) -> tuple | None:
        """The size and a digest of the whole decoded pixels of ``path`` (None when it cannot be read), kept by path:
        a file is read whole once, however many copies of its size it is checked against."""
        if path not in self._whole_digests:
            try:
                image = self._whole(path)
                self._whole_digests[path] = (image.size, _pixels_digest(image))
            except ImageError:
                self._whole_digests[path] = None
        return self._whole_digests[path]

    def _reduced(self, path: str) -> float:
        """How many times the picture decoded of ``path`` is smaller than the file's own (1: decoded whole)."""
        found = self._files.get(path)
        return 1.0 if found is None else max(1.0, max(found[:2]) / max(self._size(path)))

    def tier(self, a: str | None, b: str | None) -> str:
        """The strongest tier that holds between the images at paths ``a`` and ``b``."""
        return self.verdict(a, b).tier

    def measure(self, path: str, what: str, *factors: float, region: tuple[float, ...] | None = None) -> float:
        """The :func:`~lookalike.dedup.keepers.sharpness` (``what="sharpness"``), the
        :func:`~lookalike.dedup.keepers.residual` at ``factors``, the :func:`~lookalike.dedup.keepers.compression` or
        (``what="interpolation"``, read whole) the :func:`~lookalike.dedup.keepers.interpolation_trace` at ``factors``
        of the image at ``path``, for the keeper policies; 0 when it cannot be read. With a ``region`` (left, top,
        right, bottom as fractions), of that part of the picture read whole: the photo in a screenshot, whose
        enlargement the screenshot's text hides and a reduced reading undoes. Kept while the file is unchanged."""
        from lookalike.dedup import keepers

        def measured() -> float:
            if what == "compression":  # read from the file's header
                return keepers.compression(path)
            try:
                image = self._picture(path) if region is None and what != "interpolation" else self._whole(path)
            except ImageError:
                return 0.0
            if what == "interpolation":
                return keepers.interpolation_trace(image, *factors)
            if what == "sharpness":
                return keepers.sharpness(image)
            return keepers.residual(image, *factors) if region is None else keepers.residual_in(image, region, *factors)

        where = f" in {' '.join(map(str, region))}" if region is not None else ""
        return self._kept(path, f"{what} {' '.join(map(str, factors))}{where}", measured)

    def _whole(self, path: str) -> Image.Image:
        """The picture at ``path`` read whole (ImageError when it cannot be), the last few kept: a member is measured
        at several factors at once, and a file's pixels digested whole are often measured next."""
        with self._lock:
            found = self._whole_images.get(path)
        if found is None:
            found = load_rgb(path)
            with self._lock:
                self._whole_images[path] = found
                while len(self._whole_images) > _WHOLE_KEPT:
                    self._whole_images.popitem(last=False)
        return found

    def reproduced(self, path: str, source: str) -> float:
        """How closely the file at ``path`` is the file at ``source`` saved again with its quantisation (one way of
        :func:`~lookalike.dedup.keepers.resaves`; the other way is kept too, read off the same decodes). Kept while
        both files are unchanged."""
        from lookalike.dedup import keepers

        def measured() -> float:
            found, other_way = keepers.resaves(source, path)
            self._kept(source, _beside("re-saved from", path), lambda: other_way)
            return found

        return self._kept(path, _beside("re-saved from", source), measured)

    def enlarged_from(self, path: str, source: str) -> float:
        """:func:`~lookalike.dedup.keepers.detail_beyond` of the picture at ``path`` over the smaller one at ``source``
        when the two are one picture at two sizes (-1 when they are not, 99 when either cannot be read: no
        enlargement). Both are read at one scale: the smaller as the tier checks read it, the larger at its size
        times their ratio (2 at most: an enlargement shrunk to twice the smaller's size is still one), so that a
        camera photo is not read whole beside its small copy. Kept while both files are unchanged."""
        from lookalike.dedup import keepers

        def measured() -> float:
            if self.verdict(path, source).tier not in ("same-pixels", "resized"):
                return -1.0
            try:  # both decoded first: a verdict read from the cache decoded neither
                small, big = self._picture(source), self._picture(path)
                stored = self._files[path], self._files[source]
                ratio = math.sqrt(stored[0][0] * stored[0][1] / max(1, stored[1][0] * stored[1][1]))
                target = (max(1, round(small.width * min(ratio, 2.0))), max(1, round(small.height * min(ratio, 2.0))))
                if big.width < target[0]:  # read reduced beyond the smaller's scale: read again, less reduced
                    big = decode_image(path, min_size=target)[0]
                if big.size != target:
                    big = big.resize(target, Image.Resampling.BOX)
                return keepers.detail_beyond(big, small)
            except ImageError:
                return 99.0

        return self._kept(path, _beside("enlarged from", source), measured)

    def shown_beside(self, path: str, other: str) -> tuple[tuple, tuple] | None:
        """``(pictures, regions)`` of the verdict on the pictures at ``path`` and ``other`` (``path``'s first) when it
        laid them on each other (None otherwise): the share of each that is picture, and where each shows the other."""
        found = self.verdict(path, other)
        return (found.pictures, found.regions) if found.pictures and found.regions else None

    def identity(self, path: str) -> int:
        """The first 60 bits of the file's SHA-256, -1 when it cannot be read: files with one identity are one
        picture to the keeper policies. Kept while the file is unchanged, so a second dedup reads no file whole."""

        def measured() -> int:
            digest = cached_sha256(path)
            return int(digest[:15], 16) if digest else -1

        return self._kept(path, "sha256", measured)

    def _kept(self, path: str, what: str, measured: Callable[[], float]) -> float:
        """What ``measured`` finds of the file at ``path``, kept like a verdict (the file paired with a name no file
        has: the path, NUL, ``what``) while the file is unchanged."""
        keys = _versions(path, path)
        if keys is not None:
            keys = (keys[0], replace(keys[1], path=f"{path}\0{what}"))
            if keys in self._known or self._stored(keys):
                return self._known[keys]
        found = measured()
        if keys is not None:
            self._known[keys] = found
            self._new.append((keys, found))
            self.computed += 1
        return found

    def _layout(self, path: str) -> tuple[tuple[int, int, int], tuple]:
        """An image's fingerprints and the boxes they are of (:func:`lookalike.ingest.fingerprint.layout`), computed
        once per path."""
        if path not in self._layouts:
            self._layouts[path] = layout(self._picture(path))
        return self._layouts[path]

    def _size(self, path: str) -> tuple[int, int]:
        """The upright size of the image at ``path``, kept once it was decoded (ImageError when it cannot be)."""
        if path not in self._sizes:
            self._image(path)
        found = self._sizes[path]
        if isinstance(found, ImageError):
            raise found
        return found

    def _picture(self, path: str) -> Image.Image:
        """The decoded image at ``path`` (ImageError when it cannot be)."""
        image = self._image(path)
        if isinstance(image, ImageError):
            raise image
        return image

    def _image(self, path: str) -> Image.Image | ImageError:
        with self._lock:
            if path in self._images:
                self._images.move_to_end(path)
                return self._images[path]
        try:
            image, info = decode_image(path, min_size=(DECODE_SIDE, DECODE_SIDE))
        except ImageError as exc:
            image, info = exc, None
        with self._lock:
            if info is not None:
                self._files[path] = (info.width, info.height, info.format)
            self._images[path] = image
            self._sizes[path] = image if isinstance(image, ImageError) else image.size
            while len(self._images) > _IMAGES_KEPT:
                self._images.popitem(last=False)
        return image

    def _edited(self, a: str, b: str, sizes: tuple[tuple[int, int], tuple[int, int]], features: bool = True) -> Verdict:
        """Whether ``b`` is ``a`` edited: laid on each other first as their fingerprints say (a turn, a mirror,
        padding: no features needed), then (with ``features``) as local features say, directly and mirrored."""
        from lookalike.operations.verify import align

        best = None
        reduced = self._reduced(a), self._reduced(b)
        for transform in _fingerprint_alignments(self._layout(a), self._layout(b)):
            best = _better(best, compare_aligned(self._picture(a), self._picture(b), transform, reduced))
            if _same_capture(best, mark_set_aside=False):
                break
        # Laid on each other by their layout alone, two pictures must agree with no mark set aside: two garments
        # photographed alike on one backdrop share a layout, and one's print passes for a mark on the other. A mark
        # is set aside only where local features lay them on each other too.
        confirmed = best is not None and best.changed_with_mark <= MAX_CHANGED
        pictures = (functools.partial(self._picture, a), functools.partial(self._picture, b))
        for mirrored in (False, True) if features else ():
            if confirmed and _same_capture(best):
                break
            for transform in align(self._verifier, a, b, mirrored, pictures):
                confirmed = True
                transform = _in_pixels(transform, *sizes)
                best = _better(best, compare_aligned(pictures[0](), pictures[1](), transform, reduced))
        if features and confirmed and not _same_capture(best):
            # Resized to another shape after a crop (a thumbnail of fixed size): each side scaled by its own factor.
            # Credited only where it explains nearly all that differs, as another view is foreshortened too.
            for mirrored in (False, True):
                for transform in align(self._verifier, a, b, mirrored, pictures, stretched=True):
                    found = compare_aligned(pictures[0](), pictures[1](), _in_pixels(transform, *sizes), reduced)
                    if found.changed <= STRETCHED_CHANGED:
                        how = ", ".join(filter(None, ("resized to another shape", found.undone)))
                        best = _better(best, replace(found, undone=how))
        if best is None:
            return Verdict("similar", "no geometric match")
        if not confirmed:
            differs = "" if best.zoomed else f", but {best.changed_with_mark:.0%} differs"
            return Verdict("similar", f"laid out alike{differs}, and no local features lay them on each other")
        if best.zoomed:
            return Verdict("similar", "another capture: one shows part of the other's scene in more detail", None, True)
        if best.overlap < MIN_OVERLAP:
            return Verdict("similar", f"they share {best.overlap:.0%} of the smaller picture", None, True)
        if best.changed > MAX_CHANGED:
            return Verdict("similar", f"another capture: {best.changed:.0%} of the aligned overlap differs", None, True)
        return Verdict(
            "edited",
            f"the same capture, edited{f' ({best.undone})' if best.undone else ''}: {best.changed:.1%} of the aligned"
            " overlap differs",
            best.pictures,
            regions=best.regions,
        )


def _versions(a: str, b: str, key_of: Callable[[str], Any] | None = None) -> tuple | None:
    """What identifies a pair of file versions (each file's key by ``key_of``, default ``FileKey.of``), or None
    when either cannot be read."""
    from lookalike.embed.cache import FileKey

    key_of = key_of or FileKey.of
    ka, kb = key_of(a), key_of(b)
    return None if ka is None or kb is None else (ka, kb)


def _beside(what: str, source: str) -> str:
    """The name a measure of a file beside the file at ``source`` (:meth:`Sameness.reproduced`,
    :meth:`Sameness.enlarged_from`) is kept under: ``what`` and that file's version (a new version of it is another
    source)."""
    from lookalike.embed.cache import FileKey

    key = FileKey.of(source)
    return f"{what} {source}\0{key.size}\0{key.mtime_ns}" if key is not None else f"{what} {source}"


def _fingerprints_only(keys: tuple | None) -> tuple | None:
    """The name a pair's verdict is kept under when judged without local features: the second file's path, NUL,
    ``fingerprints only`` (as :meth:`Sameness.measure` names what it measures)."""
    return None if keys is None else (keys[0], replace(keys[1], path=f"{keys[1].path}\0fingerprints only"))


def _stored(found: Verdict | float) -> str:
    if isinstance(found, Verdict):
        return json.dumps(
            {
                "tier": found.tier,
                "reason": found.reason,
                "pictures": found.pictures,
                "aligned": found.aligned,
                "regions": found.regions,
            }
        )
    return json.dumps({"detail": found})


def _parsed(text: str) -> Verdict | float:
    record = json.loads(text)
    if "detail" in record:
        return record["detail"]
    pictures = tuple(record["pictures"]) if record.get("pictures") else None
    regions = tuple(map(tuple, record["regions"])) if record.get("regions") else None
    return Verdict(record["tier"], record["reason"], pictures, bool(record.get("aligned")), regions)


def _same_capture(compared: Compared, mark_set_aside: bool = True) -> bool:
    """Whether two pictures laid on each other so are one capture (no other way of laying them is looked for then);
    without ``mark_set_aside``, with every change counted."""
    changed = compared.changed if mark_set_aside else compared.changed_with_mark
    return changed <= MAX_CHANGED and compared.overlap >= MIN_OVERLAP


def _better(best: Compared | None, found: Compared) -> Compared:
    return found if best is None or (found.changed, -found.overlap) < (best.changed, -best.overlap) else best


def _in_pixels(transform: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> np.ndarray:
    """A transform between coordinates as fractions of each picture's width, as one between the pixels of pictures
    of sizes ``a`` and ``b``."""
    forward = np.diag([b[0], b[0], 1.0]) @ np.vstack([transform, [0.0, 0.0, 1.0]])
    return (forward @ np.diag([1.0 / a[0], 1.0 / a[0], 1.0]))[:2]


def _fingerprint_alignments(layout_a: tuple, layout_b: tuple) -> list[np.ndarray]:
    """The transforms (2 x 3, the pixels of one picture to the other's) under which two pictures' fingerprints
    match: the orientation whose fingerprint is within MATCH_BITS, box onto box (the whole picture, what lies inside
    its uniform borders, or what it shows on a canvas; a whole photo onto the inside of its letterboxed copy's
    borders, onto the picture a screenshot shows). ``layout_a``, ``layout_b``: each picture's fingerprints and
    their boxes (:func:`lookalike.ingest.fingerprint.layout`)."""
    found = []
    turned = orientations(np.array(layout_a[0], np.uint64))  # (8, kinds): each of its fingerprints turned once
    for kind_a, kind_b in COMPARED_EITHER_WAY:  # the boxes of the fingerprints candidates are found by
        bits = [hamming(int(v), layout_b[0][kind_b]) for v in turned[:, kind_a]]
        best = int(np.argmin(bits))
        if bits[best] > MATCH_BITS:
            continue
        box_a, box_b = layout_a[1][kind_a], layout_b[1][kind_b]
        into = np.array(
            [
                [1.0 / (box_a[2] - box_a[0]), 0, -box_a[0] / (box_a[2] - box_a[0])],
                [0, 1.0 / (box_a[3] - box_a[1]), -box_a[1] / (box_a[3] - box_a[1])],
                [0, 0, 1],
            ]
        )
        out_of = np.array([[box_b[2] - box_b[0], 0, box_b[0]], [0, box_b[3] - box_b[1], box_b[1]], [0, 0, 1]])
        turn = np.vstack([ORIENTATION_MAPS[best], [0, 0, 1]])
        transform = (out_of @ turn @ into)[:2]
        if not any(np.allclose(transform, other) for other in found):  # no borders: both lay them alike
            found.append(transform)
    return found


def _one_shape(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether pictures of sizes ``a`` and ``b`` have one aspect ratio (within 2 %, and the half pixel a resize
    rounds the smaller to: a 240 x 180 photo shrunk 8 times is 30 x 22): one could be the other resized."""
    rounding = 1.0 / min(*a, *b)
    return abs(a[0] / a[1] - b[0] / b[1]) <= (_ASPECT_TOLERANCE + rounding) * max(a[0] / a[1], b[0] / b[1])


def _resized(a: Image.Image, b: Image.Image) -> Verdict | None:
    """The ``resized`` verdict when the two pictures are one at two sizes or qualities, else None."""
    if not _one_shape(a.size, b.size):
        return None
    (wa, ha), (wb, hb) = a.size, b.size
    size = _compare_size(a if wa * ha <= wb * hb else b)
    x, y = _gray(a, size), _gray(b, size)
    mse = float(np.mean((x - y) ** 2))
    psnr = math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
    if psnr < RESIZED_PSNR:
        return None
    compared, levels = _comparable(x, _canvas_of(a, size) & _canvas_of(b, size))
    if compared is None:
        return None
    changed, beside_mark = _changes(x, y, compared, levels)
    if changed > MAX_CHANGED or _colour_changed(a, b):
        return None
    if changed > RESIZED_MARK and changed - beside_mark > RESIZED_MARK:
        return None  # a mark was added in one place (a watermark, a caption): an edit, judged as one
    return Verdict("resized", f"the same picture at two sizes or qualities ({psnr:.0f} dB)", (1.0, 1.0))


def _colour_changed(a: Image.Image, b: Image.Image) -> bool:
    """Whether the colours of two pictures differ (their Cb and Cr at 8 x 8): a grey or recoloured copy keeps its
    original's grey levels, not its colours. A copy shrunk to 1/8 and re-compressed moves them by 3 levels at most."""
    x, y = (_kept_for(i, ("chroma",), lambda i=i: _chroma(i)) for i in (a, b))
    saturation = sorted((float(np.abs(x).mean()), float(np.abs(y).mean())))
    greyed = saturation[0] < 1.0 < 3.0 < saturation[1]
    return greyed or float(np.abs(x - y).mean()) > MAX_COLOUR_CHANGE


def _chroma(image: Image.Image) -> np.ndarray:
    """The picture's Cb and Cr at 8 x 8, about 0 (grey)."""
    return np.asarray(image.convert("YCbCr").resize((8, 8), Image.Resampling.BOX), np.float32)[..., 1:] - 128


def resized_psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR (dB) of two images' grey levels at the smaller one's size (at most :data:`COMPARE_SIDE`); 0 when their
    aspect ratios differ by more than 2 % (a crop is not a resize)."""
    if not _one_shape(a.size, b.size):
        return 0.0
    (wa, ha), (wb, hb) = a.size, b.size
    size = _compare_size(a if wa * ha <= wb * hb else b)
    mse = float(np.mean((_gray(a, size) - _gray(b, size)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _compare_size(image: Image.Image) -> tuple[int, int]:
    scale = min(1.0, COMPARE_SIDE / max(image.size))
    return (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))


#: What is read off each live picture at the sizes it was compared at (its grey levels, where it is canvas), by
#: ``id`` (a PIL image is not hashable), dropped with the picture: in a group of copies each picture is compared with
#: every other at one size, and converting and shrinking it again each time took an eighth of a cold dedup.
_GRAYS: dict[int, dict[tuple, np.ndarray]] = {}
_GRAYS_LOCK = threading.Lock()


def _kept_for(image: Image.Image, key: tuple, measured: Callable[[], Any]) -> Any:
    """What ``measured`` reads off ``image``, kept under ``key`` while the picture lives."""
    with _GRAYS_LOCK:
        kept = _GRAYS.get(id(image))
        if kept is None:
            kept = _GRAYS[id(image)] = {}
            weakref.finalize(image, _GRAYS.pop, id(image), None)
        found = kept.get(key)
    if found is None:
        found = measured()
        with _GRAYS_LOCK:
            kept[key] = found
    return found


def _gray(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return _kept_for(image, size, lambda: np.asarray(image.convert("L").resize(size, Image.Resampling.BOX))).astype(
        np.float32
    )


def _pixels_digest(image: Image.Image) -> bytes:
    """A digest of the picture's pixels, kept while it lives: a garment photographed on one backdrop has the size of
    many others, and turning both pictures into arrays again for every pair held the GIL for a twentieth of a dedup."""
    return _kept_for(image, ("digest",), lambda: hashlib.blake2b(image.tobytes(), digest_size=16).digest())


def _canvas_of(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Where ``image``, at ``size``, is canvas (:func:`_canvas`)."""
    return _kept_for(image, ("canvas", *size), lambda: _canvas(_gray(image, size)))


@dataclass(frozen=True)
class Compared:
    """Two pictures laid on each other.

    Attributes
    ----------
    overlap : float
        The share of the smaller picture (in scene terms) the other covers.
    changed : float
        The share of the overlap where they differ, the largest compact patch of changes not counted (a mark: see
        the module docstring).
    pictures : tuple of float
        The share of each that is picture: all of it, or the overlap alone when what lies outside it is flat
        canvas (a letterbox's bars, the corners a turn fills in).
    zoomed : bool
        Whether one shows part of the other's scene in more detail than the other has: a closer capture,
        never a copy (a copy cannot gain detail; an enlarged crop holds none).
    changed_with_mark : float
        The share of the overlap where they differ, a mark counted too.
    regions : tuple of tuple of float
        Where each shows what they share: (left, top, right, bottom) as fractions of its width and height.
    undone : str
        What edit beyond a crop, a turn and a change of tones was undone to lay them on each other ("" for none).
    """

    overlap: float
    changed: float
    pictures: tuple[float, float]
    zoomed: bool = False
    changed_with_mark: float = 1.0
    regions: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0))
    undone: str = ""


#: From OpenCV's pixel coordinates (centres at whole numbers) to those with pixel edges at whole numbers, and back.
_CENTRES_OUT_OF = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
_CENTRES_INTO = np.linalg.inv(_CENTRES_OUT_OF)


def compare_aligned(
    a: Image.Image, b: Image.Image, transform: np.ndarray, reduced: tuple[float, float] = (1.0, 1.0)
) -> Compared:
    """Compare ``a`` and ``b`` where ``transform`` (2 x 3, from ``a``'s pixel coordinates to ``b``'s, with pixel
    ``i`` spanning ``[i, i + 1]``; a mirror or a turn is a transform like any other) lays one on the other, at the
    lower-resolution picture's scale. ``reduced``: how many times each picture is smaller than its file (decoded
    reduced): whether one could be a closer capture depends on the files' resolutions, not on how they were read."""
    import cv2

    forward = np.vstack([transform, [0.0, 0.0, 1.0]])
    # The frame is the picture with fewer pixels per unit of scene: the other is shrunk into it, never enlarged.
    b_per_a = math.sqrt(abs(np.linalg.det(forward[:2, :2])))
    frame, other, to_other = (b, a, np.linalg.inv(forward)) if b_per_a < 1.0 else (a, b, forward)
    size = _compare_size(frame)
    to_other = to_other @ np.diag([frame.size[0] / size[0], frame.size[1] / size[1], 1.0])  # compared -> other
    step = max(1.0, math.sqrt(abs(np.linalg.det(to_other[:2, :2]))))  # the other's pixels per compared pixel
    other_size = (max(1, round(other.size[0] / step)), max(1, round(other.size[1] / step)))
    to_other = np.diag([other_size[0] / other.size[0], other_size[1] / other.size[1], 1.0]) @ to_other
    x, source = _gray(frame, size), _gray(other, other_size)
    warp = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    into_other = to_other
    # OpenCV puts pixel centres at whole coordinates, these transforms at half ones (a pixel spans [i, i + 1]).
    to_other = (_CENTRES_INTO @ to_other @ _CENTRES_OUT_OF)[:2]
    y = cv2.warpAffine(source, to_other, size, flags=warp, borderValue=0)
    covered = cv2.warpAffine(np.ones_like(source), to_other, size, flags=warp, borderValue=0) > 0.5
    # What of the other the frame covers: the frame's extent carried forward into the other's pixels.
    covering = cv2.warpAffine(np.ones_like(x), to_other, other_size, flags=cv2.INTER_LINEAR, borderValue=0) > 0.5
    frame_picture, other_picture = _picture(x, covered), _picture(source, covering)
    pictures = (other_picture, frame_picture) if frame is b else (frame_picture, other_picture)
    regions = (_box(covering), _box(covered)) if frame is b else (_box(covered), _box(covering))
    shares = (covered.mean(), covering.mean())
    overlap = float(max(shares))
    files_b_per_a = b_per_a * reduced[1] / reduced[0]
    scale = files_b_per_a if other is b else 1.0 / files_b_per_a
    if _zoomed_in(other, scale, shares[1], lambda: _scene_covered(x, covered, _canvas_of(frame, size))):
        return Compared(overlap, 1.0, pictures, zoomed=True)
    inside = cv2.erode(covered.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    canvas = cv2.warpAffine(_canvas_of(other, other_size).astype(np.float32), to_other, size, flags=warp, borderValue=0)
    inside, levels = _comparable(x, (canvas > 0.5) & _canvas_of(frame, size), inside)
    if inside is None:
        return Compared(overlap, 1.0, pictures)
    # Compared as they are and with the tone of one mapped onto the other's (a brightened or grey copy): a copy
    # whose tones did not change loses nothing to the mapping's approximations. One that is one capture as it is
    # (most re-saved and cropped copies) needs no mapping: it could only lower what passes already.
    changes, undone = [_changes(x, y, inside, levels)], [""]
    if changes[0][0] > MAX_CHANGED:
        mapped = _tone_mapped(y, x, inside)
        if mapped[inside].std() >= MIN_TONE_CONTRAST * x[inside].std():
            changes.append(_changes(x, mapped, inside, levels))
            undone.append("")
            if changes[-1][1] > MAX_CHANGED:
                # Shaded towards the corners of either picture (a vignette, a phone app's filter): a gain that
                # depends on the distance from that picture's centre alone. Credited only where it explains nearly
                # all that differs: it explains some of another capture's light too.
                centred = [_radii(size, np.eye(3), size)]
                theirs = _radii(size, into_other, other_size)
                if np.abs(theirs - centred[0]).max() > 0.05:  # one centre when one picture is the other's whole
                    centred.append(theirs)
                for radii in centred:
                    found = _changes(x, _shading_undone(x, mapped, inside, radii), inside, levels)
                    if found[1] <= SHADED_CHANGED:
                        changes.append(found)
                        undone.append("shaded towards the corners")
    best = min(range(len(changes)), key=lambda i: changes[i][1])
    return Compared(
        overlap,
        changes[best][1],
        pictures,
        changed_with_mark=min(c[0] for c in changes),
        regions=regions,
        undone=undone[best],
    )


def _radii(size: tuple[int, int], transform: np.ndarray, extent: tuple[int, int]) -> np.ndarray:
    """For each pixel of a picture of ``size``, its distance from the centre of the picture of ``extent`` that
    ``transform`` carries it into, along each side as a share of half that side (the corners at about 1.41)."""
    rows, columns = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32) + 0.5
    u = transform[0, 0] * columns + transform[0, 1] * rows + transform[0, 2]
    v = transform[1, 0] * columns + transform[1, 1] * rows + transform[1, 2]
    return np.hypot(u / extent[0] * 2 - 1, v / extent[1] * 2 - 1)


_SHADING_BANDS = 16


def _shading_undone(x: np.ndarray, y: np.ndarray, inside: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """``y`` multiplied by the shading that best lays it on ``x`` over ``inside``: a gain that only rises or only
    falls with the distance ``radii`` from a picture's centre (the median ratio of ``x`` to ``y`` in each of 16 bands
    of distance, made monotonic; read off every other pixel of every other row, as a shading is smooth)."""
    every = (slice(None, None, 2), slice(None, None, 2))
    sampled = inside[every]
    distance = radii[every][sampled]
    ratio = (x[every][sampled] + 1.0) / (y[every][sampled] + 1.0)
    which = np.minimum((distance * (_SHADING_BANDS / 1.5)).astype(np.int64), _SHADING_BANDS - 1)
    counts = np.bincount(which, minlength=_SHADING_BANDS)
    kept = np.flatnonzero(counts >= 16)
    if len(kept) < 2:
        return y
    medians = np.array([np.median(ratio[which == band]) for band in kept])
    weights = counts[kept].astype(float).tolist()
    rising = _increasing(medians.tolist(), weights)
    falling = -_increasing((-medians).tolist(), weights)
    errors = [float(np.sum(counts[kept] * (fit - medians) ** 2)) for fit in (rising, falling)]
    gain = rising if errors[0] <= errors[1] else falling
    centres = (kept + 0.5) * (1.5 / _SHADING_BANDS)
    return y * np.interp(radii, centres, gain).astype(np.float32)


def _box(mask: np.ndarray) -> tuple[float, ...]:
    """The bounding box of ``mask`` (left, top, right, bottom) as fractions of its width and height."""
    columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if not len(columns):
        return (0.0, 0.0, 1.0, 1.0)
    height, width = mask.shape
    box = (columns[0] / width, rows[0] / height, (columns[-1] + 1) / width, (rows[-1] + 1) / height)
    return tuple(round(float(v), 3) for v in box)


def _comparable(x: np.ndarray, canvas: np.ndarray, inside: np.ndarray | None = None) -> tuple[np.ndarray | None, float]:
    """Where two pictures laid on each other are compared (``inside``, all of ``x`` when None), and by how many grey
    levels a pixel must differ to count as changed; None when too little is left to compare.

    Canvas in both (``canvas``: the dark corners of two turned pictures, the white of two product shots) agrees
    whatever the pictures show: it is no evidence of one capture, and is left out. In a picture of little contrast
    (fog, a dark scene) another picture differs by less than CHANGED_LEVELS almost everywhere: a change is then what
    exceeds the picture's own spread of grey levels."""
    compared = ~canvas if inside is None else inside & ~canvas
    if compared.sum() < 64:
        return None, CHANGED_LEVELS
    return compared, min(CHANGED_LEVELS, float(x[compared].std()))


def _canvas(levels: np.ndarray) -> np.ndarray:
    """Where a picture is canvas: near-black or near-white fill (within CANVAS_TOLERANCE of its edge's level)
    reaching the picture's edge, as padding, a turn's corners or a studio backdrop."""
    import cv2

    edge = np.concatenate([levels[0], levels[-1], levels[:, 0], levels[:, -1]])
    level = float(np.median(edge))
    if CANVAS_LEVELS <= level <= 255 - CANVAS_LEVELS:
        return np.zeros(levels.shape, bool)
    flat = (np.abs(levels - level) <= CANVAS_TOLERANCE).astype(np.uint8)
    _, labels = cv2.connectedComponents(flat, connectivity=4)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, touching[touching > 0])


def _zoomed_in(other: Image.Image, scale: float, other_covered: float, frame_covered: Callable[[], float]) -> bool:
    """Whether ``other``, ``scale`` times the frame's resolution and lying within the frame's scene, shows it in
    more detail than the frame: a closer capture, not an enlarged crop (whose enlargement makes up the scale).
    ``frame_covered`` gives the share of the frame's scene ``other`` covers (read only when the rest could hold)."""
    from lookalike.dedup.keepers import enlargement

    if scale < ZOOM_SCALE or other_covered < 0.9 or frame_covered() >= 0.9:
        return False
    return enlargement(other) * ZOOM_SCALE < scale


def _scene_covered(x: np.ndarray, covered: np.ndarray, canvas: np.ndarray) -> float:
    """The share of the frame's scene (grey levels ``x``) that ``covered`` covers. Canvas (``canvas``) is no scene, nor
    is a smooth fill outside what is covered (FILL_DETAIL): a photo shrunk onto a padded square, white or its own
    blurred enlargement, as "no crop" apps post it, is all covered by its photo, which was taken for a closer capture
    of the padding's "scene"."""
    import cv2

    scene = ~canvas
    outside = scene & ~covered
    if outside.any() and np.percentile(np.abs(cv2.Laplacian(x, cv2.CV_32F))[outside], 90) <= FILL_DETAIL:
        scene &= covered
    return float((covered & scene).sum() / scene.sum()) if scene.any() else 1.0


def _picture(levels: np.ndarray, overlap: np.ndarray) -> float:
    """The share of a picture that is picture: all of it, or only the ``overlap`` when what lies outside is canvas:
    one flat colour, or flat areas with a little on them (a screenshot's bars and captions around a photo) where a
    scene going on beyond the other picture has texture throughout."""
    import cv2

    outside = ~overlap
    if outside.sum() < 0.01 * levels.size:
        return 1.0
    around = levels[outside]
    flat = np.abs(around - np.median(around)) <= CANVAS_TOLERANCE
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(levels, kernel) - cv2.erode(levels, kernel)  # each pixel's range of grey levels around it
    plain = spread[outside] <= CANVAS_TOLERANCE
    return float(overlap.mean()) if flat.mean() >= 0.9 or plain.mean() >= PLAIN_OUTSIDE else 1.0


def _tone_mapped(source: np.ndarray, target: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``source``'s grey levels mapped onto ``target``'s over ``inside``: each of 32 bands of ``source``'s levels
    goes to the median of ``target`` there, made increasing (weighted by each band's pixels), interpolated between.
    Medians leave a changed part (a watermark's white box) out of the mapping, where matching whole histograms
    would bend every level."""
    values, wanted = source[inside], target[inside]
    bands = np.linspace(values.min(), values.max() + 1e-3, 33)
    which = _band_of(values, bands)
    # Each band's values sorted, then each band's wanted levels sorted (grey levels are < 512, so the band times
    # 512 plus the level sorts by band, then level): medians are read at the middle of each run.
    counts = np.bincount(which, minlength=32)[:32]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    kept = np.flatnonzero(counts >= 16)
    low, high = starts[kept] + (counts[kept] - 1) // 2, starts[kept] + counts[kept] // 2
    by_value, by_wanted = np.sort(values), np.sort(which * 512.0 + wanted) - np.repeat(512.0 * np.arange(32), counts)
    centres = ((by_value[low] + by_value[high]) / 2).astype(np.float64)
    medians = (by_wanted[low] + by_wanted[high]) / 2
    out = np.zeros_like(source)
    if len(centres) < 2:
        out[inside] = values - values.mean() + wanted.mean()
        return out
    levels = _increasing(medians.tolist(), counts[kept].astype(float).tolist())
    out[inside] = _mapped(values, centres, levels)
    return out


def _band_of(values: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Each value's band among evenly spaced ``bands`` (``np.digitize(values, bands) - 1`` for values inside them),
    by arithmetic rather than a binary search per value (a tenth of the time), then corrected where rounding put a
    value beside its band."""
    which = np.floor((values - bands[0]) * ((len(bands) - 1) / (bands[-1] - bands[0]))).astype(np.int64)
    np.clip(which, 0, len(bands) - 2, out=which)
    which -= values < bands[which]
    which += values >= bands[which + 1]
    return which


#: Steps per grey level of the table a tone mapping is read off (its error is the mapping's slope over twice this).
_TONE_STEPS = 16


def _mapped(values: np.ndarray, centres: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``np.interp(values, centres, levels)`` for grey levels (0 to 255), read off a table of the mapping at every
    sixteenth of a level: a lookup per pixel, where interpolating each pixel took half of a tone-mapped comparison."""
    table = np.interp(np.arange(256 * _TONE_STEPS + 1, dtype=np.float64) / _TONE_STEPS, centres, levels)
    return table[np.rint(values * _TONE_STEPS).astype(np.intp)]


def _increasing(values: list[float], weights: list[float]) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights, strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight, count = blocks.pop()
            merged = blocks[-1]
            total = merged[1] + weight
            merged[0] = (merged[0] * merged[1] + mean * weight) / total
            merged[1], merged[2] = total, merged[2] + count
    return np.repeat([b[0] for b in blocks], [b[2] for b in blocks])


#: A Gaussian of sigma 1.5 pixels, the blur both pictures get before they are compared (JPEG blocks, resampling).
_TAPS = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2).astype(np.float32)
_TAPS /= _TAPS.sum()


def _blurred(values: np.ndarray) -> np.ndarray:
    """``values`` convolved with the Gaussian in both directions (edges mirrored, as ``np.pad``'s "reflect")."""
    import cv2

    return cv2.sepFilter2D(values.astype(np.float32), -1, _TAPS, _TAPS, borderType=cv2.BORDER_REFLECT_101)


def _changes(x: np.ndarray, y: np.ndarray, inside: np.ndarray, levels: float = CHANGED_LEVELS) -> tuple[float, float]:
    """The share of ``inside`` where ``x`` and ``y``, lightly blurred, differ by more than ``levels``; and that share
    not counting the marks: the largest compact patch of changes (a watermark, a caption: at most MARK_SHARE of the
    overlap's area), and the next when it is flat in one picture (a second caption): one capture edited changes one
    or two places, another capture changes many."""
    if inside.all():
        difference = np.abs(_blurred(x) - _blurred(y))
    else:  # normalised by the blurred mask: pixels near the overlap's edge are not darkened by what lies outside
        weight = np.maximum(_blurred(inside.astype(np.float32)), 1e-6)
        difference = np.abs(_blurred(np.where(inside, x, 0)) - _blurred(np.where(inside, y, 0))) / weight
        inside = inside & (weight > 0.5)
    count = int(inside.sum())
    if not count:
        return 1.0, 1.0
    changed = (difference > levels) & inside
    total = int(changed.sum())
    if not total:
        return 0.0, 0.0
    import cv2

    grown = cv2.dilate(changed.astype(np.uint8), np.ones((7, 7), np.uint8))
    found, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    boxes = stats[1:, cv2.CC_STAT_WIDTH] * stats[1:, cv2.CC_STAT_HEIGHT]
    sizes = np.bincount(labels[changed], minlength=found)[1:]
    marks_found = boxes <= MARK_SHARE * count
    largest = int(np.argmax(sizes))
    if not marks_found[largest] and boxes[largest] <= PASTED_SHARE * count:
        # A larger patch counts as one mark when it is flat in one picture: a caption bar, a box pasted on.
        where = changed & (labels == largest + 1)
        marks_found[largest] = max(_flat_share(x[where]), _flat_share(y[where])) >= 0.8
    mark = int(sizes[marks_found].max()) if marks_found.any() else 0
    if marks_found.any() and total - mark > MAX_CHANGED * count:
        # A second caption (a meme's bars above and below): another mark, flat in one picture. Looked for only when
        # one mark leaves too much changed: a resized copy's scattered differences are no marks.
        first = int(np.flatnonzero(marks_found)[np.argmax(sizes[marks_found])])
        others = [i for i in np.argsort(-sizes).tolist() if i != first]
        if others and boxes[others[0]] <= PASTED_SHARE * count:
            where = changed & (labels == others[0] + 1)
            if max(_flat_share(x[where]), _flat_share(y[where])) >= 0.8:
                mark += int(sizes[others[0]])
    return total / count, (total - mark) / count


def _flat_share(levels: np.ndarray) -> float:
    """The share of ``levels`` within CANVAS_TOLERANCE of their median: how much of a patch is one flat tone."""
    return float(np.mean(np.abs(levels - np.median(levels)) <= CANVAS_TOLERANCE)) if levels.size else 0.0
