"""Which photo of a group of copies to keep, and why.

A policy ranks the members; where it cannot tell them apart (byte-identical
or same-pixel files, or equal by its measure) the original is kept: the
earliest modified, then the name without a copy marker ("copy", "(1)", "-1"),
then the shorter path, and only then the larger file. Files a person marked
to keep, and files under a folder passed as ``keep_in``, come first.

``resolution`` counts the picture, not its padding or enlargement: flat
canvas outside what two copies share (a letterbox's bars, the corners a turn
fills in) is not counted, and a larger copy that holds no detail the smaller
one lacks (:func:`residual`, :func:`detail_beyond`) is its enlargement, never
kept over it, even when it is the older file if it bears the trace of the
enlargement's grid (:func:`interpolation_trace`); of two
copies of one size, the source of a JPEG re-save (:func:`resaves`) is kept,
and an edit (sharpened, blurred) ties with its original. ``sharpest`` prefers
the less degraded copy first, so the original is kept over a blurred, a
re-compressed or an enlarged copy.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, JpegImagePlugin

__all__ = [
    "POLICIES",
    "TOLERANCE",
    "Member",
    "detail_beyond",
    "enlargement",
    "has_copy_marker",
    "interpolation_trace",
    "original_key",
    "original_order",
    "rank",
    "residual",
    "residual_in",
    "resaves",
    "sharpness",
]

POLICIES = ("resolution", "sharpest", "size", "oldest", "first")

#: Names people and tools give copies: "IMG_1 copy.jpg", "copy_of_IMG_1.jpg", "IMG_1 (1).jpg", "IMG_1-1.jpg".
_COPY_MARKER = re.compile(r"(\bcopy\b|copy[ _-]of|[ _]?\(\d+\)$|-\d$|_\d$| \d$)", re.IGNORECASE)


def has_copy_marker(path: str) -> bool:
    """Whether a file's name looks like a copy's ("photo (1).jpg", "copy of photo.jpg", "photo-1.jpg")."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return bool(_COPY_MARKER.search(stem))


class Measures:
    """A picture's :func:`sharpness`, :func:`residual` and :func:`interpolation_trace`, computed when first asked for
    (by ``measure``), how closely it is a re-save of another file (by ``reproduced``: the other file's path -> one way
    of :func:`resaves`) and how much detail it holds beyond a smaller copy (by ``enlarged_from``: the copy's path ->
    :func:`detail_beyond`)."""

    def __init__(
        self,
        measure: Callable[[str, float], float],
        reproduced: Callable[[str], float],
        enlarged_from: Callable[[str], float] | None = None,
        shown_beside: Callable[[str], tuple[tuple, tuple] | None] | None = None,
    ):
        self._measure = measure
        self.reproduced = reproduced
        #: The other file's path -> :func:`detail_beyond` of this picture over that smaller one, -1 when they are not
        #: one picture at two sizes (None: not known).
        self.enlarged_from = enlarged_from
        #: The other file's path -> the share of each that is picture beside the other and where each shows the other
        #: (left, top, right, bottom as fractions; this one's first), None when their verdict does not say: for
        #: members the grouping did not link.
        self.shown_beside = shown_beside

    @property
    def sharpness(self) -> float:
        return self._measure("sharpness", 0.0)

    @property
    def compression(self) -> float:
        return self._measure("compression")

    def residual(self, factor: float, before: float = 1.0, region: tuple[float, ...] | None = None) -> float:
        factors = (round(factor, 2),) if before == 1 else (round(factor, 2), round(before, 2))
        return self._measure("residual", *factors, region=region)

    def interpolation(self, wide: float, tall: float) -> float:
        return self._measure("interpolation", round(wide, 4), round(tall, 4))


@dataclass
class Member:
    """What the keeper policies know of one member of a group."""

    position: int
    path: str | None
    name: str  # what ties are finally broken by: the path, or the label
    pixels: int  # width x height as stored
    picture: float = 0.0  # pixels of picture: canvas not counted
    shape: float = 1.0  # width / height
    measures: Measures | None = None  # its sharpness and residuals, read when compared; None without its pixels
    bytes: int = -1
    mtime: float = math.inf
    identity: int = -1  # members with equal identity have the same pixels
    kept: bool = False  # a person marked it to keep, or it lies in a keep_in folder
    resized: frozenset[int] = frozenset()  # members it is linked to as one picture at another size or quality
    shares: dict[int, float] = field(default_factory=dict)  # other member -> the share of it that is picture beside it
    # other member -> where it shows what they share (left, top, right, bottom as fractions)
    regions: dict[int, tuple[float, ...]] = field(default_factory=dict)

    @property
    def sides(self) -> tuple[float, float]:
        """Its upright width and height, from its pixels and shape."""
        return math.sqrt(self.pixels * self.shape), math.sqrt(self.pixels / self.shape)


def _pictures(a: Member, b: Member) -> tuple[float, float]:
    """The pixels of picture of ``a`` and ``b`` as their own link measured them, else as their least share says:
    beside a crop, a photo's plain background outside the crop looks like canvas, which beside its own letterboxed
    copy it is not."""
    if b.position in a.shares and a.position in b.shares:
        return a.pixels * a.shares[b.position], b.pixels * b.shares[a.position]
    return a.picture, b.picture


def enlargement(image: Image.Image) -> float:
    """The factor a picture was enlarged by from a smaller one (1 when it was not).

    An enlarged picture holds no detail the smaller one did not: shrunk by its factor and enlarged back, it is
    unchanged. The largest factor (of 1.5, 2, 3, 4) for which that holds within 1.5 grey levels is the enlargement.
    """
    return _enlargement(image.convert("L"))


def _enlargement(gray: Image.Image) -> float:
    values = np.asarray(gray, dtype=np.float32)
    if min(gray.size) < 32:
        return 1.0
    found = 1.0
    for factor in (1.5, 2.0, 3.0, 4.0):
        size = (max(8, round(gray.size[0] / factor)), max(8, round(gray.size[1] / factor)))
        back = np.asarray(
            gray.resize(size, Image.Resampling.BOX).resize(gray.size, Image.Resampling.BICUBIC), np.float32
        )
        if float(np.sqrt(np.mean((values - back) ** 2))) > 1.5:
            break
        found = factor
    return found


def sharpness(image: Image.Image) -> float:
    """How much fine detail a picture holds at its own size: the mean step between neighbouring grey levels, away
    from its 8-pixel JPEG block edges (which a heavily compressed copy is full of), relative to its contrast (a
    brightened copy is not sharper). Low for a blurred picture and for a compressed one whose fine detail is gone;
    copies of one size are compared by it."""
    values = np.asarray(image.convert("L"), dtype=np.float32)
    steps = np.abs(np.diff(values, axis=1))
    steps = steps[:, (np.arange(steps.shape[1]) % 8) != 7]
    return float(steps.mean() / (values.std() + 1e-6)) if steps.size else 0.0


def compression(path: str) -> float:
    """How coarsely a file's pixels were quantised: a JPEG's mean luminance quantisation step (about 3 at quality
    95, 12 at 85, 95 at 30), 1 for a lossless format (PNG, TIFF, BMP), 0 when unknown (another lossy format, or
    unreadable). Read from the file's header, not its pixels."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                tables = getattr(image, "quantization", None) or {}
                return float(np.mean(tables[0])) if 0 in tables else 0.0
            return 1.0 if image.format in _LOSSLESS else 0.0
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0.0


_LOSSLESS = ("PNG", "TIFF", "BMP", "PPM", "GIF")
#: Side of the centre a re-save is checked on (a multiple of 16, JPEG's largest block, so blocks stay whole): what a
#: camera photo's re-save costs is then its two decodes, not its encoding.
RESAVE_WINDOW = 1024


def resaves(first: str, second: str) -> tuple[float, float]:
    """How closely each JPEG file is the other's pixels saved again with its own quantisation and chroma subsampling
    (PSNR, dB; 99 when exactly): ``(second from first, first from second)``. A re-save is reproduced from its
    source, an edit from neither. 0 for a file that is not a JPEG, and both 0 when the two are not stored at one
    size or either cannot be read. Files are read as stored (no EXIF turn), so their blocks lie on one grid, and
    each is decoded once for both ways."""
    try:
        with Image.open(first) as one, Image.open(second) as other:
            if one.size != other.size:
                return 0.0, 0.0
            width, height = one.size
            left = max(0, (width - RESAVE_WINDOW) // 32 * 16)
            top = max(0, (height - RESAVE_WINDOW) // 32 * 16)
            box = (left, top, min(width, left + RESAVE_WINDOW), min(height, top + RESAVE_WINDOW))
            return _reproduced(one, other, box), _reproduced(other, one, box)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 0.0, 0.0


def _reproduced(source: Image.Image, target: Image.Image, box: tuple[int, int, int, int]) -> float:
    """:func:`resaves` one way: ``target`` (a JPEG) from ``source``'s pixels, over ``box``."""
    if target.format != "JPEG" or target.mode not in ("RGB", "L"):
        return 0.0
    wanted = target.convert(target.mode).crop(box)
    encoded = io.BytesIO()
    sampling = JpegImagePlugin.get_sampling(target) if target.mode == "RGB" else -1
    source.convert(target.mode).crop(box).save(encoded, "JPEG", qtables=target.quantization, subsampling=sampling)
    with Image.open(encoded) as again:
        error = np.mean((np.asarray(again, np.float32) - np.asarray(wanted, np.float32)) ** 2)
    return 99.0 if error == 0 else float(min(99.0, 10 * np.log10(255.0**2 / error)))


def residual(image: Image.Image, factor: float, before: float = 1.0) -> float:
    """What a picture loses when shrunk by ``factor`` and enlarged back, relative to its contrast: the detail it
    holds at its own size beyond what a ``factor`` times smaller picture can. An enlargement loses little. With
    ``before``, the picture is first shrunk by that much: what a copy of it ``before`` times smaller would lose."""
    gray = image.convert("L")
    if before > 1:
        gray = gray.resize((max(8, round(gray.size[0] / before)), max(8, round(gray.size[1] / before))), _BOX)
    values = np.asarray(gray, dtype=np.float32)
    size = (max(8, round(gray.size[0] / factor)), max(8, round(gray.size[1] / factor)))
    back = np.asarray(gray.resize(size, _BOX).resize(gray.size, Image.Resampling.BICUBIC), np.float32)
    return _relative_loss(values, back)


def _relative_loss(values: np.ndarray, approximation: np.ndarray) -> float:
    """How far ``approximation`` is from ``values`` (RMS), relative to the spread of ``values``."""
    return float(np.sqrt(np.mean((values - approximation) ** 2)) / (values.std() + 1e-6))


def residual_in(image: Image.Image, region: tuple[float, ...], factor: float, before: float = 1.0) -> float:
    """The :func:`residual` of the part of ``image`` within ``region`` (left, top, right, bottom as fractions), a
    little inside it (the region is found at a reduced size) and at the offset that fits the enlargement's grid
    best: shrunk from across two of its enlarged pixels, a picture enlarged twice loses detail it never had."""
    width, height = image.size
    left, top, right, bottom = region
    inset = REGION_INSET * (right - left) * width, REGION_INSET * (bottom - top) * height
    x0, y0 = round(left * width + inset[0]), round(top * height + inset[1])
    x1, y1 = round(right * width - inset[0]), round(bottom * height - inset[1])
    # Shrunk by a factor that is not a whole number of its pixels (799 pixels by 2), every enlarged pixel is split:
    # a factor within 5 % of a half is taken as that half, and the part cut to a whole number of its steps (the
    # pixels of a 1.5x enlargement repeat every 3).
    unit = 1
    snapped = round(factor * 2) / 2
    if snapped >= 1 and abs(factor - snapped) <= 0.05 * factor:
        factor, unit = snapped, round(snapped) if snapped.is_integer() else round(2 * snapped)
    across, down = (x1 - x0 - unit) // unit * unit, (y1 - y0 - unit) // unit * unit
    if across < unit or down < unit:
        return residual(image, factor, before)
    return min(
        residual(image.crop((x0 + dx, y0 + dy, x0 + dx + across, y0 + dy + down)), factor, before)
        for dx in range(unit)
        for dy in range(unit)
    )


def detail_beyond(big: Image.Image, small: Image.Image) -> float:
    """How much detail ``big`` holds beyond ``small``, a smaller copy of one shape: what ``big`` loses beside
    ``small`` enlarged to its size (bicubic), relative to ``big``'s contrast, over what ``small`` itself loses shrunk
    by their ratio (at most 2) and enlarged back. About 1 or more when ``big`` is the picture ``small`` was shrunk
    from (it holds the finer detail a smaller copy lacks), well below :data:`ENLARGED_RESIDUAL` when ``big`` is
    ``small`` enlarged, by any factor: measured on ``small``'s own pixel grid, where :func:`residual` of ``big`` alone
    splits the pixels of an enlargement by a factor that is not a whole number."""
    large, little = big.convert("L"), small.convert("L")
    values = np.asarray(large, dtype=np.float32)
    enlarged = np.asarray(little.resize(large.size, Image.Resampling.BICUBIC), np.float32)
    factor = math.sqrt(large.size[0] * large.size[1] / max(1, little.size[0] * little.size[1]))
    return _relative_loss(values, enlarged) / max(1e-9, residual(little, min(factor, 2.0)))


def interpolation_trace(image: Image.Image, wide: float, tall: float) -> float:
    """How plainly ``image`` bears the trace of an enlargement ``wide`` times along its width and ``tall`` times
    along its height. An interpolated pixel is a weighted mean of source pixels, smoother the farther it lies from
    one, so the strength of the second difference across the picture rises and falls with the enlargement's grid
    (Gallagher, "Detection of linear and cubic interpolation in JPEG compressed images", 2005): the peak of that
    rhythm's spectrum at the enlargement's frequency over the spectrum around it, the weaker of the two sides. 0 where
    that frequency cannot be told apart from a JPEG file's 8-pixel blocks or lies at the spectrum's ends (an
    enlargement by 2: :func:`detail_beyond` tells those). Read off the middle TRACE_SIDE pixels of each side: the
    grid runs through the whole picture, and a camera photo's whole would be half a gigabyte of arrays."""
    width, height = image.size
    left, top = max(0, (width - TRACE_SIDE) // 2), max(0, (height - TRACE_SIDE) // 2)
    middle = image.crop((left, top, min(width, left + TRACE_SIDE), min(height, top + TRACE_SIDE)))
    values = np.asarray(middle.convert("L"), np.float32)
    return min(_rhythm(values, wide), _rhythm(values.T, tall))


def _grid_frequency(factor: float) -> float | None:
    """The frequency (cycles a pixel) of the grid of an enlargement by ``factor``, None where it cannot be told from a
    JPEG file's 8-pixel blocks or lies at the spectrum's ends."""
    frequency = (1 / factor) % 1
    frequency = min(frequency, 1 - frequency)
    return None if min(abs(frequency - blocks / 8) for blocks in range(5)) < TRACE_MARGIN else frequency


def _rhythm(values: np.ndarray, factor: float) -> float:
    """:func:`interpolation_trace` along the rows of ``values``."""
    frequency = _grid_frequency(factor)
    if frequency is None or values.shape[1] < 64:
        return 0.0
    squares = np.square(values[:, :-2] - 2 * values[:, 1:-1] + values[:, 2:])
    # The more detailed half of the rows: plain rows (a backdrop, the sky) hold no rhythm, only noise.
    detailed = squares.mean(axis=1)
    second = np.sqrt(squares[detailed >= np.median(detailed)].mean(axis=0))
    n = len(second)
    spectrum = np.abs(np.fft.rfft((second - second.mean()) * np.hanning(n)))
    distance = np.abs(np.fft.rfftfreq(n) - frequency)
    around = (distance > 2.5 / n) & (distance < 0.04)
    return float(spectrum[distance <= 1.5 / n].max() / max(1e-9, np.median(spectrum[around])))


#: How far inside the region found for the shared part of two pictures its residual is measured (a share of each
#: side): the region's edge may hold a sliver of a screenshot's sharp bars.
REGION_INSET = 0.02
_BOX = Image.Resampling.BOX


def original_order(member: Member) -> tuple:
    """The tie-break: the original is the earliest modified, without a copy marker, with the shortest path."""
    return original_key(member.mtime, member.name, member.bytes, member.position)


def original_key(mtime: float, name: str, size: int, position: int) -> tuple:
    """:func:`original_order` of a file known by its modification time, name, size in bytes and position."""
    return (mtime, has_copy_marker(name), len(name), name, -size, position)


#: A copy with this many times the picture of another, of one shape, may be its enlargement: it is when, shrunk by
#: their ratio ``f`` and enlarged back, it loses less than ENLARGED_RESIDUAL times what it loses once shrunk to the
#: smaller's size (by ``f``), then by min(f, 2) and back. Measured against itself, not the smaller copy: a crop
#: shows other parts of the scene, with other detail; and by 2 at most, since a 60-pixel copy shrunk 8 times is
#: 8 pixels and loses everything. 100 neardup originals (benchmarks/copies.py): 2x to 4x enlargements re-saved at
#: q90 0.38 at most; originals at 1.33 to 8 times their copies' size 0.56 at least, 0.91 to 1.34 at the median.
#: 1.5x enlargements (0.35 to 0.77, 0.60 at the median) are mostly not told that way: one picture at two sizes is
#: measured beside the smaller instead (:func:`detail_beyond`, UNSURE_DETAIL).
ENLARGED_PIXELS = 1.3
ENLARGED_RESIDUAL = 0.5
#: A picture shown on a canvas (a screenshot, a letterbox) measuring between ENLARGED_RESIDUAL and this may or may
#: not be an enlargement, and ties with the smaller: the original is kept. Shown at a factor that is not a whole
#: number of halves its pixels are split however it is shrunk: 60 neardup originals shown 1.4 to 2.7 times their size
#: in screenshots of three other apps measured 0.23 to 0.81 (0.53 at the median), the originals themselves at those
#: factors 0.63 at least, 0.96 at the median (a screenshot was kept over its photo in 44 of the 60).
UNSURE_RESIDUAL = 0.8
#: One picture at two sizes whose larger holds between ENLARGED_RESIDUAL and this of the detail beyond the smaller
#: (:func:`detail_beyond`) ties: the original is kept. 60 neardup originals (q90) enlarged 1.25 to 3 times (bicubic,
#: Lanczos, bilinear) measured 0.62 at most (0.48 at most from 1.5 times), the originals beside their copies shrunk
#: 1.25 to 4 times (box, bicubic, Lanczos, bilinear; q50 to q90) 0.52 at least (0.60 at least from 1.5 times), 1.0
#: at the median.
UNSURE_DETAIL = 0.6
#: How plainly (:func:`interpolation_trace`) a larger copy older than the smaller, holding less than UNSURE_DETAIL
#: beyond it, must bear the trace of its enlargement by their ratio to be taken for it (a file made first is otherwise
#: taken for the source). 1,000 photos (neardup originals, clothing, landmarks, ImageNet) each beside 3 smaller copies
#: (shrunk 1.2 to 3 times: box, bicubic, Lanczos, bilinear; q50 to q90): 4 of the 3,000 reached it, none of the 16
#: holding less than UNSURE_DETAIL beyond their copy; the same photos enlarged once each (bicubic, Lanczos, bilinear;
#: q75 to q95) reached it in 0.92 where their ratio is looked at (benchmarks/enlargement_trace.py).
INTERPOLATED_TRACE = 3.0
#: Longest side of the part of a picture its :func:`interpolation_trace` is read off.
TRACE_SIDE = 1536
#: How near (cycles a pixel) an enlargement's frequency may lie to a JPEG block's (k / 8) or the spectrum's ends and
#: still be looked for.
TRACE_MARGIN = 0.02
#: How far (a fraction of a side) each edge of where two copies show each other may lie from the picture's edge for
#: them to show one extent of the scene (a stretched copy beside its photo), not one a crop of the other.
SAME_EXTENT = 0.015
#: How much more picture or detail a member must have to beat another: resampling and alignment make equal
#: pictures measure a little differently (a letterboxed copy measures 1-2 % more or less picture than its original).
TOLERANCE = 0.03
#: How much sharper one of two copies of one picture size must be to be kept over the other under ``resolution``
#: (when the two are one picture at two qualities) and, under ``sharpest``, when they are not (an edit): a mirrored,
#: gamma-changed or watermarked copy re-saved at q90 measures up to 12 % sharper than its original (40 neardup
#: originals: mirrors 5.6 %, gamma 0.7 12.1 % at most), while a blurred copy measures at most 0.57 times its
#: original and a q30 re-save 0.80 at the median; below this, the original is kept.
CLEARLY_SHARPER = 0.15
#: How closely (PSNR, dB) re-saving one file's pixels with another's JPEG quantisation must reproduce the other for it
#: to be a re-save of the first, and by how much more than the other way round. Pillow re-saves reproduce exactly
#: (99 dB here); 30 neardup originals (about q90) against copies: q30, q50 and q85 re-saves 99 dB from the original,
#: 33-49 dB the other way; q95 re-saves the reverse; sharpened, mildly sharpened and blurred copies 18-42 dB both ways,
#: within 2.5 dB of each other. Another encoder (rounding, chroma filters) reproduces less exactly than Pillow's own.
RESAVED_PSNR = 40.0
RESAVED_MARGIN = 3.0
#: How many times coarser one copy's JPEG quantisation must be for it to count as the more compressed (quality 30
#: against 75: about 3 times), whatever its measured sharpness (a q30 re-save's block artefacts can measure sharp).
COARSER = 1.5


def _more(a: float, b: float, tolerance: float = TOLERANCE) -> bool:
    return a > b * (1 + tolerance)


def _better(a: Member, b: Member, policy: str) -> bool:
    """Whether ``a`` should be kept over ``b`` by ``policy`` (False when they tie: the original is kept)."""
    if a.identity >= 0 and a.identity == b.identity:
        return False  # the same pixels: one picture
    if policy == "size":
        return a.bytes > b.bytes
    if policy == "oldest":
        return a.mtime < b.mtime
    if policy == "first":
        return a.position < b.position
    if a.measures is None or b.measures is None:
        return _more(*_pictures(a, b))
    # Pictures, not stored pixels: a turned copy's filled-in corners are no more picture.
    ours, theirs = _pictures(a, b)
    one_shape = abs(a.shape - b.shape) <= 0.02 * b.shape
    if not one_shape and _same_extent(a, b):
        # One scene at two shapes: a copy stretched (or squeezed) along one side holds no more picture than along the
        # other, and the two are one picture at two sizes (a stretched copy had more pixels: it was kept).
        ours, one_shape = theirs * _undistorted_ratio(a, b) ** 2, True
    (big, large), (small, little) = sorted(((a, ours), (b, theirs)), key=lambda m: -m[1])
    region = big.regions.get(small.position) if big.shares.get(small.position, 1.0) < 1 else None
    if (one_shape or region is not None) and large > ENLARGED_PIXELS * little:
        factor = (large / little) ** 0.5
        # One picture at two sizes is measured on the smaller's own pixels: an enlargement by any factor, or, unsure,
        # a tie. Other copies (a crop enlarged) show other parts of the scene than the smaller: measured alone. So is
        # a larger file older than the smaller: made first, it is no enlargement of it, and a soft camera original
        # (little detail beyond its half-size export) is kept over that export.
        older = big.mtime < small.mtime
        factors = tuple(larger / smaller for larger, smaller in zip(big.sides, small.sides, strict=True))
        traceable = None not in map(_grid_frequency, factors)
        beyond = _beyond(big, small) if one_shape and (traceable or not older) else None
        if beyond is not None and older:
            # Made first, the larger is taken for the source, unless it bears the trace of its enlargement by their
            # ratio: a copy's time is reset when it is copied back, or its source is touched later.
            if beyond < UNSURE_DETAIL and big.measures.interpolation(*factors) >= INTERPOLATED_TRACE:
                return a is small
            beyond = None
        if beyond is not None and beyond < UNSURE_DETAIL:
            return beyond < ENLARGED_RESIDUAL and a is small
        whole = beyond is None and _lost(big, factor) < ENLARGED_RESIDUAL
        # The shared part alone is measured where the larger has canvas around it and, whole, holds detail: a
        # screenshot's sharp text around a photo it shows enlarged, whatever the two files' shapes. A photo enlarged
        # whole (its smooth surroundings taken for canvas beside a crop of it) is judged whole, as before.
        shown = _lost(big, factor, region) if region is not None and not whole else 1.0
        if (one_shape and whole) or shown < ENLARGED_RESIDUAL:
            return a is small  # the larger holds no detail the smaller does not: its enlargement
        return a is big and shown >= UNSURE_RESIDUAL  # more pixels of real detail; unsure: the original is kept
    if not one_shape:
        return _more(ours, theirs)
    if policy == "sharpest":
        # Whatever the size; an edit (a watermark's text, a gamma change measure sharper) only when clearly.
        return _less_degraded(a, b, TOLERANCE if b.position in a.resized else CLEARLY_SHARPER)
    if not (_more(ours, theirs) or _more(theirs, ours)):
        # One size: only the source of a re-save beats the original. Sharpness is for `sharpest`: an edit (a
        # watermark's text, a gamma change, sharpening) measures sharper.
        return b.position in a.resized and _less_degraded(a, b, None)
    return _more(ours, theirs)


def _same_extent(a: Member, b: Member) -> bool:
    """Whether ``a`` and ``b`` each show all the other shows and nothing else (their link, or their verdict when the
    grouping did not link them, laid the whole of each on the whole of the other, with no canvas: a turned copy's
    corners, a letterbox's bars), whatever their shapes."""
    pictures = a.shares.get(b.position), b.shares.get(a.position)
    regions = a.regions.get(b.position), b.regions.get(a.position)
    if None in regions and a.measures.shown_beside is not None and b.path is not None:
        pictures, regions = a.measures.shown_beside(b.path) or ((None, None), (None, None))
    if None in pictures or None in regions or min(pictures) < 1 - SAME_EXTENT:
        return False
    return all(
        abs(edge - whole) <= SAME_EXTENT for region in regions for edge, whole in zip(region, (0, 0, 1, 1), strict=True)
    )


def _undistorted_ratio(a: Member, b: Member) -> float:
    """How many times larger than ``b`` ``a`` is along both sides (below 1: smaller along both), 1 when it is larger
    along one and smaller along the other: what of its size is more picture, the rest being a stretch. A turned
    copy's sides are paired the other way round when that makes the two one picture at two sizes (paired by the
    closer match instead, a near-square photo's stretched copy looked larger along both sides)."""
    (width_a, height_a), (width_b, height_b) = a.sides, b.sides
    along = width_a / width_b, height_a / height_b
    turned = width_a / height_b, height_a / width_b
    if max(turned) <= (1 + TOLERANCE) * min(turned) and max(along) > (1 + TOLERANCE) * min(along):
        along = turned
    if min(along) >= 1:
        return min(along)
    return max(along) if max(along) <= 1 else 1.0


def _beyond(big: Member, small: Member) -> float | None:
    """:func:`detail_beyond` of ``big`` over ``small`` (None when they are not one picture at two sizes)."""
    if big.measures.enlarged_from is None or small.path is None:
        return None
    found = big.measures.enlarged_from(small.path)
    return found if found >= 0 else None


def _lost(member: Member, factor: float, region: tuple[float, ...] | None = None) -> float:
    """How much detail ``member`` (the part of it within ``region``) holds that a ``factor`` times smaller picture
    lacks, relative to what such a picture holds itself: below ENLARGED_RESIDUAL, it is an enlargement."""
    measures = member.measures
    return measures.residual(factor, region=region) / max(
        1e-9, measures.residual(min(factor, 2.0), factor, region=region)
    )


def _less_degraded(a: Member, b: Member, margin: float | None) -> bool:
    """Whether ``a`` is the less degraded copy. Of one picture at two qualities quantised very differently (a q30
    re-save is COARSER times or more), the one the other is a re-save of: the finer when the coarser is it saved
    again with the coarser's quantisation, the coarser when the finer is a re-save of it (a q95 re-save holds
    nothing more than its q75 original). Else, with a ``margin``, the sharper by more than that; without one (an
    edit's sharpness says nothing of which came first: a sharpened copy measures sharper than its original as an
    original does than its blurred copy), neither."""
    ours, theirs = a.measures.compression, b.measures.compression
    if b.position in a.resized and ours > 0 and theirs > 0 and max(ours, theirs) >= COARSER * min(ours, theirs):
        finer, coarser = (a, b) if ours < theirs else (b, a)
        down = coarser.measures.reproduced(finer.path)  # the coarser, re-made from the finer
        up = finer.measures.reproduced(coarser.path)
        if max(down, up) >= RESAVED_PSNR and abs(down - up) >= RESAVED_MARGIN:
            return a is (finer if down > up else coarser)
    return margin is not None and _more(a.measures.sharpness, b.measures.sharpness, margin)


def rank(members: list[Member], policy: str) -> tuple[list[Member], str]:
    """``members`` with the one to keep first, and why it is kept.

    Members are taken in the order of :func:`original_order` (marked files first) and one replaces the
    candidate only when the policy finds it better (:func:`_better`): where they tie, the original stays. The
    policy is not transitive: when a member beats the last candidate, the members went round in a circle (an
    enlarged original below its half-size copy, below that copy's quarter-size one, below a q30 re-save of the
    original's size, below the original), and the original of the circle (the candidates on the way, and the
    members beating the last) is kept.
    """
    ordered = sorted(members, key=lambda m: (not m.kept, original_order(m)))
    candidates = [ordered[0]]
    for member in ordered[1:]:
        if member.kept == candidates[-1].kept and _better(member, candidates[-1], policy):
            candidates.append(member)
    last = candidates[-1]
    beating = [m for m in ordered if m.kept == last.kept and m is not last and _better(m, last, policy)]
    circle = sorted({m.position: m for m in candidates + beating}.values(), key=original_order) if beating else []
    best = circle[0] if circle else last
    ranked = [best] + [m for m in ordered if m is not best]
    return ranked, _why(ranked, policy, len(circle))


def _why(ranked: list[Member], policy: str, circle: int = 0) -> str:
    first = ranked[0]
    if first.kept:
        return "kept by you (or in a folder kept whole)"
    if circle:
        return f"the original of {circle} copies the {policy!r} policy prefers one over another in a circle"
    tied = [other for other in ranked[1:] if not _better(first, other, policy)]
    if tied and all(original_order(first) <= original_order(other) for other in tied):
        return "the original: as good as the others, and the earliest, with the plainest name"
    enlarged = policy == "resolution" and any(_more(other.picture, first.picture) for other in ranked[1:])
    return {
        "resolution": f"the most picture ({round(first.picture):,} pixels), the least degraded of its size"
        + ("; the larger copies are its enlargements, with no more detail" if enlarged else ""),
        "sharpest": "the most detail (sharpest, least compressed, not enlarged)",
        "size": f"the largest file ({first.bytes:,} bytes)",
        "oldest": "the oldest file",
        "first": "the first in the dataset's order",
    }[policy]
