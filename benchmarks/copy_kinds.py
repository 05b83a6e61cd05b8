"""The kinds of copy a photo library collects, made from one original with Pillow (for benchmarks/copies.py and
the tests): each kind with the tier a dedup must give it or a stronger one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from lookalike.ingest.decode import load_rgb


def _resized(factor: int) -> Callable[[Image.Image], Image.Image]:
    def make(image: Image.Image) -> Image.Image:
        size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
        return image.resize(size, Image.Resampling.LANCZOS)

    return make


def _crop(left: float, top: float, right: float, bottom: float) -> Callable[[Image.Image], Image.Image]:
    def make(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.crop((round(left * w), round(top * h), round(w * (1 - right)), round(h * (1 - bottom))))

    return make


def _letterbox(image: Image.Image) -> Image.Image:
    side = max(image.size)
    canvas = Image.new("RGB", (side, side), (0, 0, 0))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def _watermark(image: Image.Image) -> Image.Image:
    out = image.copy()
    w, h = out.size
    box = (w - w // 4 - w // 40, h - h // 8 - h // 40, w - w // 40, h - h // 40)
    draw = ImageDraw.Draw(out)
    draw.rectangle(box, fill=(255, 255, 255))
    draw.text((box[0] + 4, box[1] + 2), "(c) 2026 lookalike", fill=(20, 20, 20))
    return out


def _gamma(image: Image.Image) -> Image.Image:
    table = [round(255 * (i / 255) ** 0.7) for i in range(256)] * 3
    return image.point(table)


#: kind -> (how it is made from the decoded original, file suffix, JPEG quality or None, weakest right tier).
KINDS: dict[str, tuple[Callable[[Image.Image], Image.Image] | None, str, int | None, str]] = {
    "byte copy": (None, ".jpg", None, "exact"),
    "png re-save": (lambda im: im, ".png", None, "same-pixels"),
    "half size q70": (_resized(2), ".jpg", 70, "resized"),
    "quarter size q50": (_resized(4), ".jpg", 50, "resized"),
    "eighth size": (_resized(8), ".jpg", 85, "resized"),
    "q30 re-save": (lambda im: im, ".jpg", 30, "resized"),
    "mirror": (ImageOps.mirror, ".jpg", 90, "edited"),
    "8% crop each side": (_crop(0.08, 0.08, 0.08, 0.08), ".jpg", 90, "edited"),
    "25% crop": (_crop(0.25, 0.0, 0.0, 0.25), ".jpg", 90, "edited"),
    "grayscale": (lambda im: ImageOps.grayscale(im).convert("RGB"), ".jpg", 90, "edited"),
    "brightness +25%": (lambda im: ImageEnhance.Brightness(im).enhance(1.25), ".jpg", 90, "edited"),
    "gamma 0.7": (_gamma, ".jpg", 90, "edited"),
    "letterbox": (_letterbox, ".jpg", 90, "edited"),
    "watermark": (_watermark, ".jpg", 90, "edited"),
    "quarter turn": (lambda im: im.transpose(Image.Transpose.ROTATE_90), ".jpg", 90, "edited"),
    "10 degree rotation": (lambda im: im.rotate(10, Image.Resampling.BICUBIC, expand=True), ".jpg", 90, "edited"),
}


def make_copies(original: Path, folder: Path, kinds: list[str] | None = None) -> dict[str, Path]:
    """Write each kind of copy of ``original`` into ``folder``; kind -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = load_rgb(original)
    out = {}
    for number, kind in enumerate(kinds or KINDS):
        make, suffix, quality, _ = KINDS[kind]
        path = folder / f"copy{number:02d}{suffix}"
        if make is None:
            shutil.copyfile(original, path)
        else:
            image = make(pixels)
            image.save(path, **({"quality": quality} if quality else {}))
        out[kind] = path
    return out
