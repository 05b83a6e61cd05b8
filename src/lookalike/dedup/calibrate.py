"""Choose a dedup threshold by what it means on your own photos.

A threshold is a distance, and a distance means nothing to a person. So:
copies of a sample of the collection's own photos are made (re-saved,
resized, cropped, mirrored, overlaid), embedded exactly as the references
were, and found as dedup finds them: a copy is found at a threshold when it is
a candidate (its embedding within the threshold of its original's, or its
copy fingerprint matching) and the tier checks call it a copy. Random pairs
of the collection's photos (distinct photos, but for the rare duplicate) give
the look-alikes a threshold lists, and, the closest of them judged by the same
checks, the false copies it risks.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from lookalike.config import cpu_count
from lookalike.dedup.candidates import fingerprints_match
from lookalike.dedup.tiers import Sameness
from lookalike.errors import InvalidArgument
from lookalike.index.metrics import exact_distances
from lookalike.ingest.decode import ImageError, load_rgb
from lookalike.ingest.pixel_facts import pixel_facts
from lookalike.references.core import References, as_references
from lookalike.validation import check_positive_int

__all__ = ["COPY_KINDS", "HARD_KINDS", "Calibration", "calibrate"]


# Each kind makes a copy of a decoded original; ``rng`` draws its strength, ``backdrop`` is another photo of the
# collection (what an overlay is pasted on). The gentle kinds are the copies a dedup must always find; the hard ones
# follow the recipe of ../shared/data/neardup's edits, so a collection's own photos predict recall on such edits.


def _resaved(image: Image.Image, rng: np.random.Generator, backdrop: Image.Image) -> Image.Image:
    return _jpeg(image, 60)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _resized(image: Image.Image, rng: np.random.Generator, backdrop: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.LANCZOS)


def _cropped(image: Image.Image, rng: np.random.Generator, backdrop: Image.Image) -> Image.Image:
    w, h = image.size
    return image.crop((w // 10, h // 10, w - w // 10, h - h // 10))  # 80 % of each side kept


def _mirrored(image: Image.Image, rng: np.random.Generator, backdrop: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)


def _overlaid(image: Image.Image, rng: np.random.Generator, backdrop: Image.Image) -> Image.Image:
    out = image.copy()
    w, h = out.size
    ImageDraw.Draw(out).rectangle((w // 20, h - h // 5, w - w // 20, h - h // 20), fill=(255, 255, 255))
    return out  # a caption bar over the lower sixth


def _heavy_crop(image: Image.Image, rng: np.random.Generator, backdrop: Image.Image) -> Image.Image:
    """20-45 % of the area, downscaled, JPEG quality 30-60."""
    w, h = image.size
    area, aspect = rng.uniform(0.20, 0.45), rng.uniform(0.75, 1.33)
    cw, ch = min(w, int(round(w * np.sqrt(area * aspect)))), min(h, int(round(h * np.sqrt(area / aspect))))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = image.crop((left, top, left + cw, top + ch))
    scale = rng.uniform(0.5, 1.0)
    crop = crop.resize((max(1, int(cw * scale)), max(1, int(ch * scale))), Image.Resampling.BILINEAR)
    return _jpeg(crop, int(rng.integers(30, 61)))


def _rotated(image: Image.Image, rng: np.random.Generator, backdrop: Image.Image) -> Image.Image:
    """15-35 degrees either way on an expanded canvas, brightness and contrast changed."""
    angle = rng.uniform(15, 35) * rng.choice([-1, 1])
    grey = int(rng.integers(0, 61))  # a dark canvas, as neardup's
    out = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(grey, grey, grey))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    return _jpeg(ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.3)), 85)


def _pasted(image: Image.Image, rng: np.random.Generator, backdrop: Image.Image) -> Image.Image:
    """Mirrored, grey or re-coloured, blurred, pasted at 55-80 % scale over another photo."""
    out = ImageOps.mirror(image)
    if rng.random() < 0.5:
        out = ImageOps.grayscale(out).convert("RGB")
    else:
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.0, 2.0))
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    scale = rng.uniform(0.55, 0.80)
    out = out.resize((max(1, int(out.width * scale)), max(1, int(out.height * scale))), Image.Resampling.BILINEAR)
    canvas = backdrop.resize(image.size, Image.Resampling.BILINEAR).copy()
    position = (int(rng.integers(0, image.width - out.width + 1)), int(rng.integers(0, image.height - out.height + 1)))
    canvas.paste(out, position)
    return _jpeg(canvas, 85)


CopyMaker = Callable[[Image.Image, np.random.Generator, Image.Image], Image.Image]

#: The kinds of copy measured: the gentle copies a dedup must find, then hard edits (see ``HARD_KINDS``).
COPY_KINDS: dict[str, CopyMaker] = {
    "re-saved": _resaved,
    "resized": _resized,
    "cropped": _cropped,
    "mirrored": _mirrored,
    "overlaid": _overlaid,
    "heavy crop": _heavy_crop,
    "rotated": _rotated,
    "pasted": _pasted,
}
#: The hard edits, each matching one kind of ../shared/data/neardup's edits (crop, rotate, overlay).
HARD_KINDS = {"heavy crop": "crop", "rotated": "rotate", "pasted": "overlay"}


@dataclass
class Found:
    """How each copy of one kind fares: its embedding distance to its original, whether their copy fingerprints
    match (a candidate at any threshold), and whether the pixels make it a copy (the tier checks)."""

    distance: np.ndarray
    fingerprint: np.ndarray
    copy: np.ndarray


class Calibration:
    """What each threshold finds and links by mistake on one collection.

    ``found``: per kind of copy, how each copy fares (:class:`Found`); ``pair_distances``: distances of random
    pairs of distinct references; ``pairs``: the collection's number of pairs; ``checked``: the closest of those
    random pairs, judged by the tier checks: (distance, is a copy).
    """

    def __init__(
        self, found: dict[str, Found], pair_distances: np.ndarray, pairs: int, photos: int, checked: np.ndarray
    ) -> None:
        self.found = found
        self.pair_distances = pair_distances
        self.pairs = pairs
        self.photos = photos
        self.checked = checked

    def at(self, threshold: float) -> dict[str, float]:
        """At ``threshold``: the share of each kind of copy found (a candidate, by its embedding within the threshold
        or by its fingerprint, and a copy by its pixels); look-alikes (pairs of distinct photos within it: listed,
        never acted on) and false links (distinct photos given a copy tier: acted on), per pair and expected."""
        found = {
            f"recall {kind}": float(np.mean(f.copy & ((f.distance <= threshold) | f.fingerprint)))
            for kind, f in self.found.items()
        }
        within = float(np.mean(self.pair_distances <= threshold))
        close = self.checked[self.checked[:, 0] <= threshold]
        copies = float(close[:, 1].mean()) if len(close) else 0.0
        return {
            "threshold": float(threshold),
            **found,
            "look-alikes per pair": within,
            "expected look-alikes": within * self.pairs,
            "false links per pair": within * copies,
            "expected false links": within * copies * self.pairs,
        }

    def table(self, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
        """:meth:`at` for each threshold; default: 20 steps up to the farthest copy."""
        if thresholds is None:
            top = float(max(f.distance.max() for f in self.found.values() if len(f.distance)))
            thresholds = np.linspace(top / 20, top, 20)
        return pd.DataFrame([self.at(t) for t in thresholds])

    def shown(self, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
        """:meth:`table` for people: thresholds to 3 digits, copies found in per cent, look-alikes and false links
        counted in whole pairs (a count of pairs, not 4.46409 of them)."""
        table = self.table(thresholds)
        shown = pd.DataFrame({"threshold": table["threshold"].map(lambda t: f"{t:.3g}")})
        for kind in self.found:
            shown[kind] = table[f"recall {kind}"].map(lambda share: f"{share:.0%}")
        shown["look-alikes"] = table["expected look-alikes"].map(_count)
        shown["false links"] = table["expected false links"].map(_count)
        return shown

    def summary(self, threshold: float) -> str:
        """One paragraph for people: what ``threshold`` finds and what it costs on this collection."""
        values = self.at(threshold)
        found = ", ".join(f"{values[f'recall {kind}']:.0%} of {kind} copies" for kind in self.found)
        looks = round(values["expected look-alikes"])
        false = values["expected false links"]
        links = f"about {false:.0f} pairs of distinct photos taken for copies" if false >= 0.5 else "no false copies"
        return (
            f"at threshold {threshold:.4g}: finds {found} (copies of {self.photos} of these photos); "
            f"lists about {looks:,} pairs of look-alikes (left alone) and {links} among the collection's "
            f"{self.pairs:,} pairs (a few may be real duplicates)"
        )


def _count(expected: float) -> str:
    """An expected number of pairs as people count them: whole pairs, "<1" for less than one but some."""
    if expected == 0:
        return "0"
    return "<1" if expected < 0.5 else f"{round(expected):,}"


def calibrate(
    references: References,
    sample: int = 30,
    pairs: int = 200_000,
    seed: int = 0,
    sameness: Sameness | None = None,
) -> Calibration:
    """Measure, on the collection itself, what each dedup threshold finds and what it links by mistake.

    Parameters
    ----------
    references : lookalike.references.core.References
        A model's references (``model.core``), built from image files.
    sample : int, default 30
        Photos copied (each in every kind of :data:`COPY_KINDS`).
    pairs : int, default 200,000
        Random pairs of distinct references measured for look-alikes (the closest are judged for false copies).
    sameness : lookalike.dedup.tiers.Sameness, optional
        What judges whether a copy is one (a new one by default).

    Returns
    -------
    Calibration
        ``.table()`` (threshold, recall per kind, look-alikes and false links
        per pair and expected), ``.at(t)`` and ``.summary(t)``.

    Examples
    --------
    >>> calibration = model.calibrate_duplicates()  # doctest: +SKIP
    >>> print(calibration.summary(0.15))  # doctest: +SKIP
    """
    references = as_references(references)
    sample = check_positive_int("sample", sample)
    pairs = check_positive_int("pairs", pairs)
    all_paths = references.file_paths()
    positions = np.flatnonzero([p is not None for p in all_paths])
    if not len(positions):
        raise InvalidArgument("calibration makes copies of the collection's photos: this model keeps no image files")
    if len(references) < 2:
        raise InvalidArgument("calibration needs at least two references")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(positions, min(sample, len(positions)), replace=False)
    originals, copies, kinds = [], [], []
    backdrop = None  # the previous photo read: what the next one's overlay is pasted over
    for position in chosen.tolist():
        try:
            image = load_rgb(all_paths[position])
        except ImageError:
            continue
        for kind, make in COPY_KINDS.items():
            originals.append(position)
            copies.append(make(image, rng, backdrop if backdrop is not None else ImageOps.flip(image)))
            kinds.append(kind)
        backdrop = image
    if not copies:
        raise InvalidArgument("none of the sampled photos could be read to make copies")
    result = references.embedder.extract(copies, batch_size=references.batch_size, verbose=False, facts=False)
    vectors = references.project(result.embeddings)
    kept = np.asarray(result.ok)
    origin = references.embeddings[np.asarray(originals)[kept]]
    distance = exact_distances(references.metric, vectors, origin[:, None, :])[:, 0]
    kind_of = np.asarray(kinds)[kept]
    judge = sameness if sameness is not None else Sameness()
    with tempfile.TemporaryDirectory() as scratch:
        copy_paths = []
        for number, copy in enumerate(copies):  # the tier checks compare files: each copy written as it was made
            copy_paths.append(os.path.join(scratch, f"{number}.png"))
            copy.save(copy_paths[-1], compress_level=1)  # lossless all the same; the default level took 5x longer
        is_copy = np.array(_verdicts(judge, [(all_paths[originals[i]], copy_paths[i]) for i in kept]), bool)
        matched = np.array([fingerprints_match(references, originals[i], pixel_facts(copies[i])) for i in kept], bool)
    found = {
        kind: Found(distance[kind_of == kind], matched[kind_of == kind], is_copy[kind_of == kind])
        for kind in COPY_KINDS
    }
    n = len(references)
    total = n * (n - 1) // 2
    if total <= pairs:  # a small collection: every pair, exactly
        first, second = np.triu_indices(n, k=1)
    else:
        first = rng.integers(0, n, pairs)
        second = (first + rng.integers(1, n, pairs)) % n  # never the same reference
    pair_distances = np.concatenate(
        [
            exact_distances(
                references.metric,
                references.embeddings[first[s : s + 8192]],
                references.embeddings[second[s : s + 8192]][:, None, :],
            )[:, 0]
            for s in range(0, len(first), 8192)
        ]
    )
    closest = np.argsort(pair_distances)[:CHECKED_PAIRS]
    verdicts = _verdicts(judge, [(all_paths[first[i]], all_paths[second[i]]) for i in closest])
    checked = np.array([(pair_distances[i], v) for i, v in zip(closest, verdicts, strict=True)], np.float64).reshape(
        -1, 2
    )
    photos = len(set(np.asarray(originals)[kept].tolist()))
    return Calibration(found, pair_distances, total, photos, checked)


def _verdicts(judge: Sameness, pairs: list[tuple[str, str]]) -> list[bool]:
    """Whether each pair of files is a copy, judged on every core (OpenCV and Pillow work outside the GIL)."""
    with ThreadPoolExecutor(min(cpu_count(), max(1, len(pairs)))) as pool:
        return list(pool.map(lambda pair: judge.verdict(*pair).is_copy, pairs))


#: Random pairs of distinct photos judged by the tier checks (the closest): what false copies a threshold risks.
CHECKED_PAIRS = 100
