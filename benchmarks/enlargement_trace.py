"""Does the trace of an enlargement's grid tell an enlargement from the photo it was made from?

The ``resolution`` keeper takes a larger file older than its smaller copy for the copy's source, unless the larger
holds little detail beyond the smaller (``keepers.detail_beyond`` below ``UNSURE_DETAIL``) and bears the trace of an
enlargement by exactly their ratio (``keepers.interpolation_trace`` at least ``INTERPOLATED_TRACE``). Measured on
real photos (neardup originals, every third garment, the landmark captures, the ImageNet sample):

- originals, each beside 3 smaller copies of it (shrunk 1.2 to 3 times: box, bicubic, Lanczos, bilinear; JPEG q50 to
  q90): how many reach the trace, and how many of those also hold less than ``UNSURE_DETAIL`` beyond their copy
  (an original the keeper would take for an enlargement: there must be none);
- enlargements, each photo once by one of those factors (bicubic, Lanczos, bilinear; q75 to q95): the share that
  reach the trace, of those whose ratio it is looked for at.

    python benchmarks/enlargement_trace.py -o benchmarks/results/enlargement_trace.json
"""

from __future__ import annotations

import argparse
import io
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from machine import machine_info, write_report

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
FACTORS = (1.2, 1.25, 1.33, 1.4, 1.5, 1.6, 1.75, 2.5, 3.0)
SHRINKS = ("BOX", "BICUBIC", "LANCZOS", "BILINEAR")
ENLARGES = ("BICUBIC", "LANCZOS", "BILINEAR")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _photos(data: Path, count: int, rng: random.Random) -> list[Path]:
    photos = (
        sorted(data.glob("neardup/*/original.jpg"))
        + sorted(data.glob("clothing/*/*/*.jpg"))[::3]
        + sorted(data.glob("landmarks/*/*.jpg"))
        + sorted(data.glob("imagenet-sample/*"))
    )
    rng.shuffle(photos)
    return photos[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument(
        "-o", "--output", type=Path, default=Path(__file__).parent / "results" / "enlargement_trace.json"
    )
    args = parser.parse_args()
    from lookalike.dedup.keepers import INTERPOLATED_TRACE, UNSURE_DETAIL, detail_beyond, interpolation_trace

    rng = random.Random(5)
    started = time.perf_counter()
    originals, enlargements = [], []
    for path in _photos(args.data, args.photos, rng):
        photo = Image.open(path).convert("RGB")
        for factor in rng.sample(FACTORS, 3):
            size = (max(1, round(photo.width / factor)), max(1, round(photo.height / factor)))
            small = _jpeg(
                photo.resize(size, getattr(Image.Resampling, rng.choice(SHRINKS))), rng.choice([50, 70, 85, 90])
            )
            trace = interpolation_trace(photo, photo.width / small.width, photo.height / small.height)
            originals.append((trace, detail_beyond(photo, small)))
        factor = rng.choice(FACTORS)
        size = (round(photo.width * factor), round(photo.height * factor))
        big = _jpeg(
            photo.resize(size, getattr(Image.Resampling, rng.choice(ENLARGES))), rng.choice([75, 85, 90, 92, 95])
        )
        enlargements.append(interpolation_trace(big, big.width / photo.width, big.height / photo.height))
    traces = np.array([trace for trace, _ in originals])
    beyond = np.array([detail for _, detail in originals])
    reached = traces >= INTERPOLATED_TRACE
    traced = np.array(enlargements)
    report = {
        "machine": machine_info(),
        "threshold": INTERPOLATED_TRACE,
        "originals": {
            "tests": len(originals),
            "reach_trace": int(reached.sum()),
            "little_detail_beyond_copy": int((beyond < UNSURE_DETAIL).sum()),
            "taken_for_enlargements": int((reached & (beyond < UNSURE_DETAIL)).sum()),
            "trace_99_9th_percentile": round(float(np.percentile(traces, 99.9)), 2),
            "trace_max": round(float(traces.max()), 2),
        },
        "enlargements": {
            "tests": len(enlargements),
            # 0 where the ratio's grid frequency is a JPEG block's or the spectrum's end (1.33, 1.6): not looked for.
            "untraceable_ratio": int((traced == 0).sum()),
            "reach_trace_where_traceable": round(float(np.mean(traced[traced > 0] >= INTERPOLATED_TRACE)), 3),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_report(report, args.output)


if __name__ == "__main__":
    main()
