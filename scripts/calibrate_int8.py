"""Measure the activation ranges that lookalike's int8 networks are quantized with (maintainers only).

Run once per network when its graph or the quantization settings change; the
JSON it writes ships inside the package (``src/lookalike/embed/calibration``),
so that every machine builds the same int8 graph without calibration photos.
Calibrates on CC0 photos (``clothing/train`` of the shared data, which is CC0:
see its LICENSE), never on the sets the benchmarks evaluate on.

Usage:
    python scripts/calibrate_int8.py efficientnet_lite0 [--photos ../shared/data/clothing/train] [--count 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lookalike.embed import quantize
from lookalike.embed.extractor import Embedder
from lookalike.embed.registry import get_spec

ROOT = Path(__file__).resolve().parents[1]
BATCH = 20


def network_input(pixels: np.ndarray, spec) -> np.ndarray:
    """uint8 NHWC RGB pixels -> the float NCHW tensor the bare network takes (what the pixel front end computes)."""
    prep = spec.preprocessing
    values = pixels.astype(np.float32)
    if prep.channel_order == "BGR":
        values = values[..., ::-1]
    values = (values * np.float32(prep.scale) - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "clothing" / "train")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    spec = get_spec(args.model).with_precision("fp32").with_descriptor("plain")
    photos = sorted(args.photos.rglob("*.jpg"))
    step = max(1, len(photos) // args.count)
    photos = photos[::step][: args.count]
    if len(photos) < args.count:
        raise SystemExit(f"only {len(photos)} photos under {args.photos}; need {args.count}")
    embedder = Embedder(spec)
    pixels = np.stack([embedder.load(p) for p in photos])
    feeds = ({spec.input_name: network_input(pixels[i : i + BATCH], spec)} for i in range(0, len(pixels), BATCH))
    out = quantize.calibration_file(args.model)
    quantize.calibrate(spec.onnx_file().read_bytes(), feeds, out)
    print(f"{out}: ranges of {spec.name} from {len(photos)} photos under {args.photos}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
