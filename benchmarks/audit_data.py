"""The clothing photos (train/ and validation/) with planted problems, and what was planted: the audit benchmark's data.

Planted (with recipes of their own, not the audit's calibration recipes):
- 5 % of the labels swapped: the photo moved to another class folder of its split;
- 100 copies across the splits: a train photo copied into the same class of validation/, as an exact copy, a
  half-size resize, a quality-50 re-save, a 90 % crop or a mirror image (20 of each);
- 100 photos damaged in place, 25 each: blurry (box blur of 1.5-3 % of the longest side), dark (gamma 2.5-4),
  overexposed (150-220 added to every channel), near-blank (the photo's mean colour with faint noise);
- 50 outliers from other sets: 25 landmarks and 25 imagenet-sample classes that are not garments, hats or
  footwear, each dropped into a random class of a random split.

``truth.json`` beside the photos lists them: ``{"label-error": [[path, true class]], "leak": [[copy, original]],
"blurry": [path], "dark": ..., "bright": ..., "low-information": ..., "outlier": [path]}``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

#: imagenet-sample classes that are clothes, hats or shoes (or worn): never planted as outliers among clothes.
WORN = (
    "jersey", "shirt", "coat", "hat", "cap", "sock", "jean", "dress", "gown", "suit", "cardigan", "sweatshirt",
    "kimono", "bikini", "brassiere", "apron", "bonnet", "sombrero", "cowboy", "stole", "poncho", "abaya",
    "academic", "skirt", "pajama", "swimming", "vestment", "tie", "vest", "maillot", "mitten", "sandal", "shoe",
    "boot", "loafer", "clog", "sneaker", "helmet", "mask", "wig", "diaper", "bib", "cloak", "fur", "sarong",
    "trunks", "overskirt", "mortarboard", "bearskin", "crash", "jean", "buckle", "wool", "velvet", "sunglass",
)  # fmt: skip
COPY_KINDS = ("exact", "resized", "resaved", "cropped", "mirrored")


def _copy(source: Path, target: Path, kind: str) -> None:
    if kind == "exact":
        shutil.copyfile(source, target)
        return
    image = Image.open(source).convert("RGB")
    if kind == "resized":
        image = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    elif kind == "cropped":
        w, h = image.size
        image = image.crop((w // 20, h // 20, w - w // 20, h - h // 20))
    elif kind == "mirrored":
        image = ImageOps.mirror(image)
    image.save(target, quality=50 if kind == "resaved" else 90)


def _damage(path: Path, kind: str, rng: np.random.Generator) -> None:
    image = Image.open(path).convert("RGB")
    pixels = np.asarray(image, dtype=np.float32)
    if kind == "blurry":
        image = image.filter(ImageFilter.BoxBlur(max(image.size) * rng.uniform(0.015, 0.03)))
    elif kind == "dark":
        image = Image.fromarray((255 * (pixels / 255) ** rng.uniform(2.5, 4.0)).astype(np.uint8))
    elif kind == "bright":
        image = Image.fromarray(np.clip(pixels + rng.uniform(150, 220), 0, 255).astype(np.uint8))
    else:  # near-blank
        mean = pixels.reshape(-1, 3).mean(axis=0)
        noise = rng.normal(0, 2.0, pixels.shape)
        image = Image.fromarray(np.clip(mean + noise, 0, 255).astype(np.uint8))
    image.save(path, quality=90)


def plant(data: Path, out: Path, seed: int = 0) -> dict:
    """Copy ``data/clothing`` to ``out`` with the problems planted; write and return the truth."""
    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    for split in ("train", "validation"):
        shutil.copytree(data / "clothing" / split, out / split)
    photos = sorted(out.glob("*/*/*.jpg"))
    order = rng.permutation(len(photos))
    taken = iter(order.tolist())
    truth: dict[str, list] = {
        k: [] for k in ("label-error", "leak", "blurry", "dark", "bright", "low-information", "outlier")
    }
    classes = sorted(p.name for p in (out / "train").iterdir())
    for kind in ("blurry", "dark", "bright", "low-information"):
        for _ in range(25):
            path = photos[next(taken)]
            _damage(path, kind, rng)
            truth[kind].append(str(path))
    train = [i for i in taken if photos[i].parts[-3] == "train"][:100]
    for n, i in enumerate(train):
        source = photos[i]
        kind = COPY_KINDS[n % len(COPY_KINDS)]
        target = out / "validation" / source.parent.name / f"copy-{kind}-{source.name}"
        _copy(source, target, kind)
        truth["leak"].append([str(target), str(source)])
    used = set(truth["blurry"] + truth["dark"] + truth["bright"] + truth["low-information"])
    used |= {pair[1] for pair in truth["leak"]}
    free = [p for p in photos if str(p) not in used]
    for j in rng.choice(len(free), int(0.05 * len(photos)), replace=False).tolist():
        path = free[j]
        other = rng.choice([c for c in classes if c != path.parent.name])
        target = path.parent.parent / other / path.name
        path.rename(target)
        truth["label-error"].append([str(target), path.parent.name])
    landmarks = sorted((data / "landmarks").glob("*/*.jpg"))
    imagenet = [
        p for p in sorted((data / "imagenet-sample").glob("*.JPEG")) if not any(w in p.name.lower() for w in WORN)
    ]
    strangers = [landmarks[i] for i in rng.choice(len(landmarks), 25, replace=False)]
    strangers += [imagenet[i] for i in rng.choice(len(imagenet), 25, replace=False)]
    for source in strangers:
        split = rng.choice(["train", "validation"])
        target = out / split / rng.choice(classes) / f"stranger-{source.parent.name}-{source.stem}.jpg"
        Image.open(source).convert("RGB").save(target, quality=92)
        truth["outlier"].append(str(target))
    (out.parent / f"{out.name}-truth.json").write_text(json.dumps(truth, indent=1))
    return truth
