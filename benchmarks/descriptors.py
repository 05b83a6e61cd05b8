"""Indexing throughput of each descriptor, side by side in one run, as a ratio to the plain pipeline.

The same photos are indexed end to end (files -> ``create``, embedding cache
off, so every image is decoded and run) with each descriptor, in interleaved
rounds so that a noisy machine slows all of them alike; the median time of
each gives its images per second and its ratio to ``plain``. The target: the
default descriptor at >= 0.8x plain.

Usage:
    python benchmarks/descriptors.py [--data ../shared/data] [--images 250] [--rounds 3]
        [--out benchmarks/results/descriptors.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import lookalike as lk
from lookalike.embed.registry import DEFAULT_DESCRIPTOR

ROOT = Path(__file__).resolve().parents[1]

DESCRIPTORS = {
    "plain": "plain",
    "gem": {"pooling": "gem", "normalize": True},
    "fast (gem+whiten)": "fast",
    "gem+flip": {"pooling": "gem", "flip": True, "normalize": True},
    "best (gem+flip+2 scales+whiten)": "best",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--images", type=int, default=250, help="photos from imagenet-sample (web-size JPEGs)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "descriptors.json")
    args = parser.parse_args()
    files = [str(p) for p in sorted((args.data / "imagenet-sample").glob("*.JPEG"))[: args.images]]
    lk.create(files[:8], verbose=False, cache=False)  # build the ONNX file and warm up before timing
    seconds: dict[str, list[float]] = {name: [] for name in DESCRIPTORS}
    for round_number in range(args.rounds):
        for name, descriptor in DESCRIPTORS.items():
            started = time.perf_counter()
            lk.create(files, descriptor=descriptor, verbose=False, cache=False)
            seconds[name].append(time.perf_counter() - started)
            print(f"round {round_number + 1} {name}: {seconds[name][-1]:.1f} s", flush=True)
    plain = statistics.median(seconds["plain"])
    results = {
        "benchmark": "descriptors",
        "lookalike": lk.__version__,
        "default_descriptor": DEFAULT_DESCRIPTOR,
        "images": len(files),
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "note": "end-to-end create() with the embedding cache off; median of interleaved rounds",
        "descriptors": {
            name: {
                "median_seconds": round(statistics.median(times), 2),
                "images_per_second": round(len(files) / statistics.median(times), 1),
                "ratio_to_plain": round(plain / statistics.median(times), 3),
                "seconds": [round(t, 2) for t in times],
            }
            for name, times in seconds.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for name, values in results["descriptors"].items():
        print(f"{name:<34} {values['images_per_second']:>7} img/s  {values['ratio_to_plain']:.2f}x plain")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
