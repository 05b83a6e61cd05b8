"""Latency of one query by photo, inside the process: decode + embed + search, no HTTP (what an upload costs).

For each network (side by side, in alternating rounds), a model is built over
the first ``--references`` neardup photos; then photos that are not in it are
queried one at a time, as the explorer's upload does (the file's bytes,
``model.query(bytes, k=10)``), after a warm-up query. Reported: p50 and p99
wall time per query, and the same for the decode + embed part alone.

Usage:
    python benchmarks/query_latency.py [--models efficientnet_lite0,squeezenet_v1.1] [--queries 200]
        [--references 1000] [--data ../shared/data] [--out benchmarks/results/query_latency.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import lookalike as lk
from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]


def parse_network(text: str) -> tuple[str, str | None]:
    name, _, precision = text.partition(":")
    return name, precision or None


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,squeezenet_v1.1")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--references", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "query_latency.json")
    args = parser.parse_args()
    photos = sorted((args.data / "neardup").rglob("*.jpg"))
    if len(photos) < args.references + args.queries:
        sys.exit(f"need {args.references + args.queries} photos under {args.data / 'neardup'}")
    references, queries = photos[: args.references], photos[-args.queries :]
    uploads = [q.read_bytes() for q in queries]
    networks = [parse_network(t) for t in args.models.split(",")]
    models = {
        text: lk.create([str(p) for p in references], model=name, precision=precision, verbose=False)
        for text, (name, precision) in zip(args.models.split(","), networks, strict=True)
    }
    timings: dict[str, dict[str, list[float]]] = {text: {"query": [], "embed": []} for text in models}
    for model in models.values():  # warm-up: the first query builds the ONNX Runtime session
        model.query(uploads[0], k=10, verbose=False)
    for _ in range(args.rounds):
        for text, model in models.items():
            for data in uploads:
                started = time.perf_counter()
                model.extract_features(data, verbose=False)
                timings[text]["embed"].append(time.perf_counter() - started)
                started = time.perf_counter()
                model.query(data, k=10, verbose=False)
                timings[text]["query"].append(time.perf_counter() - started)
    report = {
        "benchmark": "query_latency",
        "references": len(references),
        "queries": len(queries) * args.rounds,
        "machine": machine_info(),
        "networks": {
            text: {
                "precision": model.embedding_model["precision"],
                "dim": model.dim,
                "query (decode + embed + search)": percentiles(timings[text]["query"]),
                "decode + embed": percentiles(timings[text]["embed"]),
            }
            for text, model in models.items()
        },
    }
    report["machine"]["load_average_at_end"] = machine_info()["load_average"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["networks"], indent=2))


if __name__ == "__main__":
    main()
