"""A 64-bit fingerprint of a picture that survives resizing, re-compression, grey levels, borders and quarter turns.

Copies of one photo are found by comparing these fingerprints as well as the
embeddings: a quarter-size, turned or grey copy often lies farther from its
original in embedding space than a look-alike does, but keeps the same coarse
layout of light and dark. The fingerprint is computed from the pixels the
indexer has already decoded, so it costs a small resize and one 32 x 32 DCT.

How it is made:

1. the picture's uniform borders (letterbox bars, padding) are trimmed, so a
   padded copy is fingerprinted on the same content as its original (a second
   fingerprint; a third is of the picture a screenshot shows on its plain
   canvas among bars and text, see :func:`picture_box`);
2. the grey levels of what remains are shrunk to 32 x 32 (area average);
3. its 2-D DCT is taken, and the 63 lowest frequencies but the constant one
   (an 8 x 8 block) each give one bit: whether the coefficient is positive.

Thresholding at zero rather than at the median keeps the bits of a mirrored or
turned picture computable from the original's: mirroring negates the
coefficients of odd horizontal frequency, turning transposes the block
(:func:`orientations`), so a copy in any of the 8 orientations is found by
comparing 8 variants of one stored number.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = [
    "BITS",
    "MATCH_BITS",
    "ORIENTATION_MAPS",
    "Box",
    "COMPARED",
    "COMPARED_EITHER_WAY",
    "fingerprints",
    "hamming",
    "layout",
    "orientations",
    "picture_box",
    "trimmed_box",
    "WINDOWS",
    "window_fingerprints",
]

#: Size of the grey picture the DCT is taken of.
SIDE = 32
#: Most bits two fingerprints of copies differ in. Measured by benchmarks/copies.py: 1/8-size, q30, grey,
#: brightness, gamma and letterboxed copies of neardup originals lie within it (median 0-2 bits), while of 767k
#: pairs of distinct photos (landmarks, neardup originals, clothing) 7 do; copies are confirmed from the pixels.
MATCH_BITS = 10
#: Frequencies per axis kept (an 8 x 8 block: 64 bits, the constant term's always 0).
BLOCK = 8
BITS = BLOCK * BLOCK
#: A border row or column differs from the border colour by at most this many grey levels (JPEG ringing allowed).
BORDER_TOLERANCE = 8
#: Side of the thumbnail borders are looked for in: a bar of 1 % of the side is still seen.
TRIM_SIDE = 128
#: No more than this share of each side is ever trimmed, so a near-uniform picture keeps its content.
MAX_TRIM = 0.45
#: A picture is shown on a canvas when this share of the image's edge is of one colour (within BORDER_TOLERANCE).
CANVAS_EDGE = 0.5
#: A part along a whole edge of the canvas and thinner than this share of the other side is a bar of the window (a
#: status bar, a tool bar), not the picture shown.
BAR = 0.25
#: Least share of the image's area, and least side in thumbnail pixels, of a picture shown on a canvas: a speck on a
#: blank page is no picture (its fingerprint, all but constant, would match every other speck's).
MIN_PICTURE_AREA = 0.04
MIN_PICTURE_SIDE = 8

#: The fingerprints of :func:`layout` (whole, inside borders, shown on a canvas) compared between two pictures,
#: either way round: whole with whole, inside borders with inside borders, a whole picture with what lies inside
#: another's borders (the letterboxed copy of a photo whose own plain edge, a sky or a wall, its trimming leaves out)
#: and with the picture another shows on a canvas (a screenshot of it), and two pictures shown on canvases.
COMPARED = ((0, 0), (1, 1), (0, 1), (0, 2), (2, 2))
#: :data:`COMPARED` with each pair both ways round (the first picture's fingerprint, the second's), each once.
COMPARED_EITHER_WAY = tuple(dict.fromkeys(pair for a, b in COMPARED for pair in ((a, b), (b, a))))

Box = tuple[int, int, int, int]


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``D @ x`` transforms a column."""
    k = np.arange(n)[:, None]
    matrix = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(SIDE)[:BLOCK]  # only the lowest frequencies are ever used
#: Bit i of a fingerprint is the coefficient at (row i // 8, column i % 8): vertical, horizontal frequency.
_ROW, _COLUMN = np.divmod(np.arange(BITS), BLOCK)
_WEIGHTS = np.left_shift(np.uint64(1), np.arange(BITS, dtype=np.uint64))


def _thumbnail(image: Image.Image) -> Image.Image:
    """Grey levels of ``image`` shrunk by a whole factor to about :data:`TRIM_SIDE` (box filter: fast, exact averages)."""
    gray = image.convert("L")
    factor = max(1, max(gray.size) // TRIM_SIDE)
    return gray.reduce(factor) if factor > 1 else gray


def trimmed_box(gray: Image.Image) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom) of ``gray`` inside its uniform borders; the whole image when it has none.

    A border is a run of rows (or columns) from an edge whose every pixel is
    within :data:`BORDER_TOLERANCE` grey levels of the edge's own colour.
    """
    pixels = np.asarray(gray, dtype=np.int16)
    rows, columns = pixels.shape
    top, bottom = _border(pixels), _border(pixels[::-1])
    left, right = _border(pixels.T), _border(pixels.T[::-1])
    if top + bottom >= rows or left + right >= columns:
        return (0, 0, columns, rows)
    return (left, top, columns - right, rows - bottom)


def _border(pixels: np.ndarray) -> int:
    """How many leading rows of ``pixels`` are uniform in the colour of the first (at most MAX_TRIM of them)."""
    limit = int(MAX_TRIM * len(pixels))
    first = pixels[0]
    colour = int(np.sort(first)[len(first) // 2])  # the median, robust to a few pixels of JPEG ringing
    if not limit or np.abs(first - colour).max() > BORDER_TOLERANCE:
        return 0
    spread = np.abs(pixels[:limit] - colour).max(axis=1)
    outside = np.flatnonzero(spread > BORDER_TOLERANCE)
    return int(outside[0]) if len(outside) else limit


def layout(image: Image.Image) -> tuple[tuple[int, int, int], tuple[Box, Box, Box]]:
    """The fingerprints of a decoded picture (any mode), as unsigned 64-bit integers, and the boxes (left, top,
    right, bottom, in its pixels) they are taken of: the whole picture, what lies inside its uniform borders, and
    the picture it shows on a plain canvas among other things (:func:`picture_box`). Where there are no borders or
    no canvas, a box is the whole picture and its fingerprint the whole one.

    Examples
    --------
    >>> from PIL import Image
    >>> picture = Image.linear_gradient("L").resize((300, 200))
    >>> (whole, trimmed, shown), boxes = layout(picture)
    >>> shown == whole, boxes[2]  # no canvas: the picture shown is the whole
    (True, (0, 0, 300, 200))
    >>> hamming(whole, layout(picture.resize((75, 50)))[0][0]) <= MATCH_BITS
    True
    """
    gray = _thumbnail(image)
    everything = (0, 0, *gray.size)
    whole = _bits(gray.resize((SIDE, SIDE), Image.Resampling.BOX))
    inside = trimmed_box(gray)
    trimmed = whole if inside == everything else _bits(gray.resize((SIDE, SIDE), Image.Resampling.BOX, box=inside))
    sx, sy = image.size[0] / gray.size[0], image.size[1] / gray.size[1]
    trimmed_in_image = (round(inside[0] * sx), round(inside[1] * sy), round(inside[2] * sx), round(inside[3] * sy))
    shown_box, shown = _picture_box(image, gray), whole
    if shown_box != (0, 0, *image.size):
        shown = _bits(image.crop(shown_box).convert("L").resize((SIDE, SIDE), Image.Resampling.BOX))
    return (whole, trimmed, shown), ((0, 0, *image.size), trimmed_in_image, shown_box)


def fingerprints(image: Image.Image) -> tuple[int, int, int]:
    """The fingerprints of :func:`layout`: whole, inside uniform borders, the picture shown on a canvas."""
    return layout(image)[0]


def picture_box(image: Image.Image) -> Box:
    """The box (in ``image``'s pixels) of the picture ``image`` shows on a plain canvas among other things: a photo
    in a screenshot of a chat or a web page, with bars, text and buttons around it. The canvas is the colour most of
    the edge holds; the picture is the largest connected part of what differs from it, but for bars along a whole
    edge (a status bar, a tool bar). The whole image where there is no canvas or nothing on it."""
    return _picture_box(image, _thumbnail(image))


def _picture_box(image: Image.Image, gray: Image.Image) -> Box:
    """:func:`picture_box`, given ``image``'s :func:`_thumbnail`."""
    everything = (0, 0, *image.size)
    pixels = np.asarray(gray, dtype=np.int16)
    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    near = np.convolve(np.bincount(edge, minlength=256), np.ones(2 * BORDER_TOLERANCE + 1), "same")
    colour = int(near.argmax())  # the level with the most edge pixels within the tolerance of it
    if near[colour] < CANVAS_EDGE * len(edge):
        return everything
    import cv2

    shown = (np.abs(pixels - colour) > BORDER_TOLERANCE).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(shown, connectivity=8)
    rows, columns = pixels.shape
    parts = [
        (int(area), int(x), int(y), int(x + w), int(y + h))
        for x, y, w, h, area in stats[1:count].tolist()
        if not (w == columns and h < BAR * rows) and not (h == rows and w < BAR * columns)
    ]
    if not parts:
        return everything
    _, left, top, right, bottom = max(parts)
    if (
        min(right - left, bottom - top) < MIN_PICTURE_SIDE
        or (right - left) * (bottom - top) < MIN_PICTURE_AREA * rows * columns
    ):
        return everything
    # Found on the thumbnail, the box is a thumbnail pixel wide of the picture's edges: one more on each side,
    # then the canvas trimmed off at the image's own size.
    sx, sy = image.size[0] / gray.size[0], image.size[1] / gray.size[1]
    left, top = max(0, int((left - 1) * sx)), max(0, int((top - 1) * sy))
    right, bottom = (
        min(image.size[0], int(np.ceil((right + 1) * sx))),
        min(image.size[1], int(np.ceil((bottom + 1) * sy))),
    )
    x0, y0, x1, y1 = trimmed_box(image.crop((left, top, right, bottom)).convert("L"))
    return (left + x0, top + y0, left + x1, top + y1)


#: Windows (left, top, right, bottom, as fractions) whose fingerprints are kept too: what the usual reframing crops
#: keep (8 % off every side; a quarter off two sides meeting at a corner). A copy cropped so has the fingerprint
#: of one of its original's windows, where no whole-picture fingerprint survives a crop.
WINDOWS = {
    "centre": (0.08, 0.08, 0.92, 0.92),
    "top_left": (0.0, 0.0, 0.75, 0.75),
    "top_right": (0.25, 0.0, 1.0, 0.75),
    "bottom_left": (0.0, 0.25, 0.75, 1.0),
    "bottom_right": (0.25, 0.25, 1.0, 1.0),
}


def window_fingerprints(image: Image.Image) -> tuple[int, ...]:
    """The fingerprints of :data:`WINDOWS` of a decoded picture, in their order."""
    gray = _thumbnail(image)
    width, height = gray.size
    return tuple(
        _bits(gray.resize((SIDE, SIDE), Image.Resampling.BOX, box=(x0 * width, y0 * height, x1 * width, y1 * height)))
        for x0, y0, x1, y1 in WINDOWS.values()
    )


def _bits(small: Image.Image) -> int:
    coefficients = _DCT @ np.asarray(small, dtype=np.float64) @ _DCT.T
    bits = coefficients.reshape(-1) > 0
    bits[0] = False  # the mean brightness says nothing about the layout
    return int(np.bitwise_or.reduce(_WEIGHTS[bits], initial=np.uint64(0)))


def _permutation(transpose: bool, flip_rows: bool, flip_columns: bool) -> tuple[np.ndarray, np.ndarray]:
    """Where each bit of an oriented fingerprint comes from, and which bits change sign."""
    source = (_COLUMN * BLOCK + _ROW) if transpose else np.arange(BITS)
    row, column = np.divmod(source, BLOCK)
    negated = ((row % 2 == 1) & flip_rows) ^ ((column % 2 == 1) & flip_columns)
    return source, negated & (source != 0)


_ORIENTATIONS = [_permutation(t, r, c) for t in (False, True) for r in (False, True) for c in (False, True)]
#: Where orientation i of :func:`orientations` takes a point (u, v) of the picture (as fractions of its width and
#: height): the i-th fingerprint is that of the picture turned or mirrored so.
ORIENTATION_MAPS = np.array(
    [
        [[1, 0, 0], [0, 1, 0]],  # as it is
        [[-1, 0, 1], [0, 1, 0]],  # mirrored left to right
        [[1, 0, 0], [0, -1, 1]],  # mirrored top to bottom
        [[-1, 0, 1], [0, -1, 1]],  # turned half round
        [[0, 1, 0], [1, 0, 0]],  # transposed
        [[0, 1, 0], [-1, 0, 1]],  # turned a quarter anticlockwise
        [[0, -1, 1], [1, 0, 0]],  # turned a quarter clockwise
        [[0, -1, 1], [-1, 0, 1]],  # transposed across the other diagonal
    ],
    dtype=np.float64,
)


def orientations(fingerprints: np.ndarray) -> np.ndarray:
    """The fingerprints of the same pictures in all 8 orientations (turns by 90 degrees, mirrored or not).

    Parameters
    ----------
    fingerprints : numpy.ndarray
        (n,) uint64 fingerprints.

    Returns
    -------
    numpy.ndarray
        (8, n) uint64; row 0 is ``fingerprints`` itself.
    """
    values = np.asarray(fingerprints, dtype=np.uint64)
    bits = ((values[:, None] >> np.arange(BITS, dtype=np.uint64)) & np.uint64(1)).astype(bool)
    out = np.empty((len(_ORIENTATIONS), len(values)), np.uint64)
    for i, (source, negated) in enumerate(_ORIENTATIONS):
        # A bit is "positive"; a negated coefficient is positive when it was not (the zero bit stays zero).
        moved = bits[:, source] ^ negated
        out[i] = (moved.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)
    return out


def hamming(a: int, b: int) -> int:
    """How many bits two fingerprints differ in."""
    return int(a ^ b).bit_count()
