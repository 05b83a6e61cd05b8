"""Geometric verification re-ranking: N-S on ../shared/data/neardup with and without it, and its cost per query.

For each base descriptor, one model is built on the first ``--groups`` groups
of neardup (4 images each) and scored twice by ``lookalike.evaluate_model``:
plain nearest neighbours, then each image's ``--shortlist`` nearest
re-ranked by :mod:`lookalike.operations.verify` (SIFT, RANSAC, >= 15 inliers, mirrored
query too). Each verified evaluation starts with an empty feature cache, so
its time includes extracting every image's features once.

Cost per query is measured side by side, alternating in rounds on the same
query images: ``model.query(image, k=5)`` against the same call with
``verify=`` (a fresh Verifier each time: the references' features are
extracted in the call, as for a one-off query) and with a reused Verifier
(references' features already cached, as in a session of many queries).

Usage::

    python benchmarks/rerank.py                      # 150 groups, bases plain and best
    python benchmarks/rerank.py --groups 500 --descriptors best
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

import lookalike as lk
from lookalike.embed.registry import DEFAULT_MODEL
from lookalike.jobs import _folder_table
from lookalike.operations.evaluate import evaluate_model
from lookalike.operations.verify import Verifier
from machine import machine_info

HERE = Path(__file__).resolve().parent
NEARDUP = HERE.parents[1] / "shared" / "data" / "neardup"


def _subset(groups: int):
    table = _folder_table(NEARDUP)
    keep = sorted(table["group"].unique())[:groups]
    return table[table["group"].isin(keep)].reset_index(drop=True)


def _quality(model, groups: np.ndarray, shortlist: int, threads: int, min_inliers: int) -> dict:
    started = time.perf_counter()
    plain = evaluate_model(model, groups, k=(1, 4), verbose=False)
    plain_seconds = time.perf_counter() - started
    started = time.perf_counter()
    verifier = Verifier(threads=threads, min_inliers=min_inliers)
    checked = evaluate_model(model, groups, k=(1, 4), verbose=False, verify=verifier, shortlist=shortlist)
    verify_seconds = time.perf_counter() - started
    n = len(groups)
    return {
        "plain": {k: round(v, 4) for k, v in plain.metrics.items()},
        "verified": {k: round(v, 4) for k, v in checked.metrics.items()},
        "N-S_gain": round(checked.metrics["N-S"] - plain.metrics["N-S"], 4),
        "evaluate_ms_per_query": {
            "plain": round(plain_seconds / n * 1000, 2),
            "verified": round(verify_seconds / n * 1000, 1),
        },
    }


def _latency(model, images: list[str], shortlist: int, rounds: int, threads: int, min_inliers: int) -> dict:
    """Median ms per single-image query: plain, verified cold (fresh Verifier), verified warm (reused Verifier)."""
    warm = Verifier(threads=threads, min_inliers=min_inliers)
    model.query(images[0], k=5, verify=warm, shortlist=shortlist, verbose=False)  # load the network, fill the cache
    for image in images:
        model.query(image, k=5, verify=warm, shortlist=shortlist, verbose=False)
    times: dict[str, list[float]] = {"plain": [], "verified_cold": [], "verified_warm": []}
    for _ in range(rounds):
        for image in images:
            for name in times:  # alternate, so that load changes hit every variant alike
                verify = {
                    "plain": False,
                    "verified_cold": Verifier(threads=threads, min_inliers=min_inliers),
                    "verified_warm": warm,
                }[name]
                started = time.perf_counter()
                model.query(image, k=5, verify=verify, shortlist=shortlist, verbose=False)
                times[name].append(time.perf_counter() - started)
    medians = {name: float(np.median(values)) * 1000 for name, values in times.items()}
    return {
        "median_ms": {name: round(value, 1) for name, value in medians.items()},
        "ratio_to_plain": {name: round(value / medians["plain"], 1) for name, value in medians.items()},
        "queries": len(images) * rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=150, help="neardup groups (4 images each)")
    parser.add_argument("--shortlist", type=int, default=20)
    parser.add_argument("--min-inliers", type=int, default=15, help="inliers that verify a pair (Verifier default 15)")
    parser.add_argument("--descriptors", default="plain,best", help="base descriptors, comma-separated")
    parser.add_argument("--metric", default="cosine")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="network (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="verification worker threads")
    parser.add_argument("--latency-images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-o", "--output", type=Path, default=HERE / "results" / "rerank.json")
    args = parser.parse_args()

    table = _subset(args.groups)
    groups = table["group"].to_numpy()
    results: dict = {
        "dataset": f"neardup, first {args.groups} groups ({len(table)} images)",
        "metric": args.metric,
        "shortlist": args.shortlist,
        "model": args.model,
        "verifier": repr(Verifier(threads=args.threads, min_inliers=args.min_inliers)),
        "machine": {**machine_info(), "opencv": cv2.__version__},
        "bases": {},
    }
    # Query images for latency: originals of groups spread over the subset (they are references too).
    latency_images = table[table["path"].str.endswith("original.jpg")]["path"].tolist()
    latency_images = latency_images[:: max(1, len(latency_images) // args.latency_images)][: args.latency_images]
    for descriptor in args.descriptors.split(","):
        model = lk.create(table[["path"]], model=args.model, metric=args.metric, descriptor=descriptor, verbose=False)
        print(f"[{descriptor}] evaluating {len(table)} images ...", flush=True)
        entry = _quality(model, groups, args.shortlist, args.threads, args.min_inliers)
        print(f"[{descriptor}] N-S {entry['plain']['N-S']} -> {entry['verified']['N-S']}", flush=True)
        entry["single_query"] = _latency(
            model, latency_images, args.shortlist, args.rounds, args.threads, args.min_inliers
        )
        print(f"[{descriptor}] single query ms {entry['single_query']['median_ms']}", flush=True)
        results["bases"][descriptor] = entry
    results["machine"]["load_average_at_end"] = machine_info()["load_average"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
