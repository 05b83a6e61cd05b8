"""Is an int8 SqueezeNet worth offering? Speed and quality against float32, side by side (issue 4).

ONNX Runtime static quantization (QDQ, per-channel weights, Conv only)
of the default network with its uint8 pixel front end, calibrated on
real photos (``clothing/train``, never the evaluation set). Then, on the
same pre-decoded ``neardup`` batches:

- throughput of float32 and int8 sessions, alternated in rounds so both
  see the same machine load;
- N-S and mAP on ``neardup`` (cosine), and the cosine between the two
  models' embeddings of each photo.

lookalike would offer the int8 variant only if it is faster here and its
N-S stays within 0.02 of float32.

Usage:
    python benchmarks/int8.py [--data ../shared/data] [--calibration 160] [--rounds 5]
        [--out benchmarks/results/int8.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

import lookalike as lk
from lookalike.embed.extractor import Embedder
from lookalike.embed.frontend import PIXELS, with_pixel_input
from lookalike.embed.registry import get_spec

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32


class Batches(CalibrationDataReader):
    """Feeds the quantizer real photos as ``pixels`` batches."""

    def __init__(self, pixels: np.ndarray):
        self._batches = iter([pixels[i : i + BATCH] for i in range(0, len(pixels), BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {PIXELS: batch}


def decode_all(embedder: Embedder, files: list[Path]) -> np.ndarray:
    return np.stack([embedder.load(f) for f in files])


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(sess: ort.InferenceSession, output: str, pixels: np.ndarray) -> np.ndarray:
    parts = [sess.run([output], {PIXELS: pixels[i : i + BATCH]})[0] for i in range(0, len(pixels), BATCH)]
    return np.concatenate(parts).reshape(len(pixels), -1).astype(np.float32)


def quality(embeddings: np.ndarray, groups: list[str]) -> dict[str, float]:
    model = lk.create(embeddings, model=None, metric="cosine", verbose=False)
    metrics = lk.evaluate_model(model, groups, verbose=False).metrics
    return {"N-S": round(float(metrics["N-S"]), 4), "mAP": round(float(metrics["mAP"]), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--calibration", type=int, default=160, help="clothing/train photos to calibrate on")
    parser.add_argument("--rounds", type=int, default=5, help="alternated timing rounds per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8.json")
    args = parser.parse_args()
    if not (args.data / "neardup").is_dir():
        sys.exit(f"no neardup set under {args.data}: pass --data")

    spec = get_spec("squeezenet_v1.1")
    embedder = Embedder(spec)
    calibration_files = sorted((args.data / "clothing" / "train").rglob("*.jpg"))[::4][: args.calibration]
    neardup_files = sorted((args.data / "neardup").rglob("*.jpg"))
    groups = [f.parent.name for f in neardup_files]
    print(f"decoding {len(calibration_files)} calibration and {len(neardup_files)} neardup photos", flush=True)
    calibration = decode_all(embedder, calibration_files)
    pixels = decode_all(embedder, neardup_files)

    with tempfile.TemporaryDirectory() as tmp:
        float_path, prepared, int8_path = Path(tmp) / "float.onnx", Path(tmp) / "prep.onnx", Path(tmp) / "int8.onnx"
        network = with_pixel_input(onnx.load(str(spec.onnx_file())), spec.input_name, spec.preprocessing)
        onnx.save(network, str(float_path))
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        started = time.perf_counter()
        quantize_static(
            str(prepared),
            str(int8_path),
            Batches(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        quantize_seconds = time.perf_counter() - started
        sessions = {"float32": session(float_path, args.threads), "int8": session(int8_path, args.threads)}
        sizes = {"float32": float_path.stat().st_size, "int8": int8_path.stat().st_size}

        embeddings = {name: embed(s, spec.output_name, pixels) for name, s in sessions.items()}  # also warms up
        timings: dict[str, list[float]] = {name: [] for name in sessions}
        timed = pixels[:512]
        for _ in range(args.rounds):
            for name, s in sessions.items():
                started = time.perf_counter()
                embed(s, spec.output_name, timed)
                timings[name].append(len(timed) / (time.perf_counter() - started))

    a, b = embeddings["float32"], embeddings["int8"]
    cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    results = {
        name: {
            "images_per_second_median": round(float(np.median(timings[name])), 1),
            "images_per_second_rounds": [round(t, 1) for t in timings[name]],
            "onnx_bytes": sizes[name],
            "neardup_cosine": quality(embeddings[name], groups),
        }
        for name in sessions
    }
    speedup = results["int8"]["images_per_second_median"] / results["float32"]["images_per_second_median"]
    ns_drop = results["float32"]["neardup_cosine"]["N-S"] - results["int8"]["neardup_cosine"]["N-S"]
    report = {
        "benchmark": "int8",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "batch": BATCH,
        "calibration_photos": len(calibration_files),
        "quantize_seconds": round(quantize_seconds, 1),
        "models": results,
        "int8_speedup": round(speedup, 3),
        "int8_ns_drop": round(float(ns_drop), 4),
        "embedding_cosine_float_vs_int8": {
            "mean": round(float(cosines.mean()), 4),
            "min": round(float(cosines.min()), 4),
        },
        "offer_int8": bool(speedup > 1.0 and ns_drop <= 0.02),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
