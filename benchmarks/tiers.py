"""How well the tiers of sameness tell copies from look-alikes (lookalike.dedup.tiers), on real photos.

Positives: for each of ``--groups`` neardup groups, the original against
generated copies of it (a byte copy, a PNG of its pixels, JPEG re-saves at
quality 90 and 60, resizes to 1/2 and 1/4 at quality 85) and against the
group's own edits (crop, rotate, overlay). Negatives: pairs of distinct
photos of one clothing class (validation set: the look-alikes a dedup must
not call copies), each pair in both orders' first.

Reported: per kind of copy, the share labelled with the expected tier or a
stronger one (recall); per tier, the share of negative pairs given it (false
tiers per pair), and the PSNR distribution of positives and negatives around
``RESIZED_PSNR``; the cost per pair.

    python benchmarks/tiers.py --groups 200 --negatives 2000 -o benchmarks/results/tiers.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.dedup.tiers import RESIZED_PSNR, TIERS, Sameness, resized_psnr
from lookalike.ingest.decode import load_rgb
from machine import machine_info

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
EXPECTED = {
    "byte copy": "exact",
    "png of the pixels": "same-pixels",
    "jpeg q90": "resized",
    "jpeg q60": "resized",
    "half size": "resized",
    "quarter size": "resized",
    "crop": "edited",
    "rotate": "edited",
    "overlay": "edited",
}


def make_copies(original: Path, folder: Path) -> dict[str, Path]:
    pixels = load_rgb(original)
    out = {"byte copy": folder / "copy.jpg", "png of the pixels": folder / "pixels.png"}
    shutil.copyfile(original, out["byte copy"])
    pixels.save(out["png of the pixels"])
    for quality in (90, 60):
        out[f"jpeg q{quality}"] = folder / f"q{quality}.jpg"
        pixels.save(out[f"jpeg q{quality}"], quality=quality)
    for name, factor in (("half size", 2), ("quarter size", 4)):
        out[name] = folder / f"{factor}.jpg"
        pixels.resize((pixels.width // factor, pixels.height // factor), Image.Resampling.LANCZOS).save(
            out[name], quality=85
        )
    for edit in ("crop", "rotate", "overlay"):
        if (original.parent / f"{edit}.jpg").is_file():
            out[edit] = original.parent / f"{edit}.jpg"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--negatives", type=int, default=2000)
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "tiers.json")
    args = parser.parse_args()
    result: dict = {"machine": machine_info(), "resized_psnr": RESIZED_PSNR, "groups": args.groups}
    rank = {tier: i for i, tier in enumerate(TIERS)}
    found: dict[str, list[str]] = {kind: [] for kind in EXPECTED}
    psnr_positive: list[float] = []
    started = time.perf_counter()
    pairs = 0
    groups = sorted(p for p in (DATA / "neardup").iterdir() if p.is_dir())[: args.groups]
    with tempfile.TemporaryDirectory() as scratch:
        for number, group in enumerate(groups):
            folder = Path(scratch) / str(number)
            folder.mkdir()
            original = group / "original.jpg"
            sameness = Sameness(verifier=True)
            for kind, copy in make_copies(original, folder).items():
                found[kind].append(sameness.tier(str(original), str(copy)))
                pairs += 1
                if kind.startswith(("jpeg", "half", "quarter")):
                    psnr_positive.append(resized_psnr(load_rgb(original), load_rgb(copy)))
            shutil.rmtree(folder)
    positive_seconds = time.perf_counter() - started
    result["recall"] = {
        kind: {
            "expected": EXPECTED[kind],
            "recall": round(float(np.mean([rank[t] <= rank[EXPECTED[kind]] for t in tiers])), 4),
            "tiers": {t: tiers.count(t) for t in TIERS if t in tiers},
        }
        for kind, tiers in found.items()
        if tiers
    }
    rng = np.random.default_rng(0)
    classes = sorted(p for p in (DATA / "clothing" / "validation").iterdir() if p.is_dir())
    negatives = [pair for c in classes for pair in combinations(sorted(c.glob("*.jpg")), 2)]
    chosen = [negatives[i] for i in rng.choice(len(negatives), min(args.negatives, len(negatives)), replace=False)]
    started = time.perf_counter()
    sameness = Sameness(verifier=True)
    negative_tiers = [sameness.tier(str(a), str(b)) for a, b in chosen]
    negative_seconds = time.perf_counter() - started
    psnr_negative = [resized_psnr(load_rgb(a), load_rgb(b)) for a, b in chosen[:500]]
    result["negatives"] = {
        "pairs": len(chosen),
        "false_rate": {t: round(negative_tiers.count(t) / len(chosen), 5) for t in TIERS if t != "similar"},
        "tiers": {t: negative_tiers.count(t) for t in TIERS},
    }
    result["psnr_db"] = {
        "resized_copies_min": round(float(np.min(psnr_positive)), 2),
        "resized_copies_p1": round(float(np.percentile(psnr_positive, 1)), 2),
        "lookalikes_max": round(float(np.max(psnr_negative)), 2),
        "lookalikes_p99": round(float(np.percentile(psnr_negative, 99)), 2),
    }
    result["ms_per_pair"] = {
        "copies": round(1000 * positive_seconds / max(pairs, 1), 1),
        "lookalikes": round(1000 * negative_seconds / len(chosen), 1),
    }
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("recall", "negatives", "psnr_db", "ms_per_pair")}, indent=2))


if __name__ == "__main__":
    main()
