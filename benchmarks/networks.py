"""Every built-in network in each precision it offers: inference speed side by side, and int8 against fp32.

On the same pre-decoded photos (``neardup``, each network's own preprocessing
and the default descriptor), alternating rounds so every variant sees the same
machine load:

- images/s with lookalike's layout (one worker per core: batch 16 on one
  intra-op thread; the figure is per core) and with one session on all cores
  (batch 32), as ``model only`` in benchmarks/extract.py;
- for networks with an int8 version: the cosine between the int8 and fp32
  embeddings of each photo (quality of each is in benchmarks/quality.py).

Usage:
    python benchmarks/networks.py [--photos 256] [--rounds 4] [--data ../shared/data]
        [--out benchmarks/results/networks.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lookalike.embed.extractor import Embedder
from lookalike.embed.registry import available_models, get_spec
from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = {"1 thread, batch 16": (1, 16), "all cores, batch 32": (0, 32)}


def variants() -> list[tuple[str, str]]:
    """(network, precision) of every built-in network (the zoo's need a download)."""
    found = []
    for name in available_models():
        spec = get_spec(name)
        if spec.feature_map:  # the built-in networks, built from PyPI packages
            found += [(name, "fp32")] + ([(name, "int8")] if spec.int8_file is not None else [])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--photos", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "networks.json")
    args = parser.parse_args()
    files = sorted((args.data / "neardup").rglob("*.jpg"))[: args.photos]
    if len(files) < args.photos:
        sys.exit(f"need {args.photos} photos under {args.data / 'neardup'}")
    report = {"benchmark": "networks", "photos": len(files), "machine": machine_info(), "networks": {}}
    embedders, pixels, timings = {}, {}, {}
    for name, precision in variants():
        key = f"{name}:{precision}"
        spec = get_spec(name).with_descriptor(None).with_precision(precision)
        embedders[key] = {layout: Embedder(spec, threads=threads or None) for layout, (threads, _) in LAYOUTS.items()}
        loader = next(iter(embedders[key].values()))
        pixels[key] = np.stack([loader.load(f) for f in files])
        timings[key] = {layout: [] for layout in LAYOUTS}
        for layout, embedder in embedders[key].items():  # warm-up: sessions built, arenas grown
            embedder.run(pixels[key][: LAYOUTS[layout][1]])
    for _ in range(args.rounds):
        for key, by_layout in embedders.items():
            for layout, embedder in by_layout.items():
                batch = LAYOUTS[layout][1]
                started = time.perf_counter()
                for start in range(0, len(files), batch):
                    embedder.run(pixels[key][start : start + batch])
                timings[key][layout].append(len(files) / (time.perf_counter() - started))
    for key, by_layout in embedders.items():
        entry = {layout: round(float(np.median(rates)), 1) for layout, rates in timings[key].items()}
        report["networks"][key] = {"images_per_second": entry, "dim": next(iter(by_layout.values())).spec.dim}
    for name, precision in variants():
        if precision == "int8":
            fp32, int8 = (next(iter(embedders[f"{name}:{p}"].values())) for p in ("fp32", "int8"))
            a, b = fp32.run(pixels[f"{name}:fp32"]), int8.run(pixels[f"{name}:int8"])
            cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            report["networks"][f"{name}:int8"]["cosine_to_fp32"] = {
                "mean": round(float(cosine.mean()), 4),
                "min": round(float(cosine.min()), 4),
            }
            report["networks"][f"{name}:int8"]["speedup_over_fp32"] = {
                layout: round(
                    report["networks"][f"{name}:int8"]["images_per_second"][layout]
                    / report["networks"][f"{name}:fp32"]["images_per_second"][layout],
                    2,
                )
                for layout in LAYOUTS
            }
    report["machine"]["load_average_at_end"] = machine_info()["load_average"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["networks"], indent=2))


if __name__ == "__main__":
    main()
