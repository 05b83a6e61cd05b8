"""Set-to-set matching: lookalike.match (blockwise) against seed 004's dense similarity matrix, side by side.

Seed 004 matched 13,501 x 21,221 images by computing the whole cosine
similarity matrix (1.15 GB in float32) and keeping the pairs above 0.845.
Here the same sizes, 512-d float32 embeddings (non-negative, like pooled CNN
features, with 2,000 planted near-duplicates of A in B), are matched both
ways in one run, each in a fresh process so that its peak RSS is its own:

- ``dense``: seed 004's approach (normalise, A @ B.T, threshold the matrix);
- ``blockwise``: ``lookalike.match(a, b, threshold=0.155)`` (similarity 0.845);
- ``blockwise_topk``: ``lookalike.match(a, b, k=10)``;
- ``blockwise_20k``: 20,000 x 20,000 with the threshold.

Both threshold runs must find the same pairs. Figures are wall-clock on a
2-core machine: compare the ratios (the JSON records the CPU flags and the load before and after).

Run: python benchmarks/match.py  -> benchmarks/results/match.json
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import machine_info

OUT = Path(__file__).resolve().parent / "results" / "match.json"
SIMILARITY = 0.845  # seed 004's threshold on cosine similarity
DIM = 512
PLANTED = 2000


def make_sets(n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(n_a, DIM))).astype(np.float32)
    b = np.abs(rng.normal(size=(n_b, DIM))).astype(np.float32)
    b[:PLANTED] = a[:PLANTED] * rng.uniform(0.8, 1.2, size=(PLANTED, DIM)).astype(np.float32)  # near-duplicates
    return a, b


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(kind: str, n_a: int, n_b: int) -> dict:
    a, b = make_sets(n_a, n_b)
    before = rss_mb()
    started = time.perf_counter()
    if kind == "dense":
        a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
        b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
        similarity = a_unit @ b_unit.T  # the whole |A| x |B| matrix
        rows, cols = np.nonzero(similarity >= SIMILARITY)
        pairs = len(rows)
        checksum = int(rows.sum() + cols.sum())
    else:
        import lookalike as lk

        if kind == "blockwise_topk":
            table = lk.match(a, b, k=10, metric="cosine")
        else:
            table = lk.match(a, b, threshold=1.0 - SIMILARITY, metric="cosine")
        pairs = len(table)
        checksum = int(table["a_label"].sum() + table["b_label"].sum())
    seconds = time.perf_counter() - started
    return {
        "kind": kind,
        "a": n_a,
        "b": n_b,
        "seconds": round(seconds, 3),
        "pairs": pairs,
        "checksum": checksum,
        "peak_rss_mb": round(rss_mb(), 1),
        "rss_before_mb": round(before, 1),
        "extra_rss_mb": round(rss_mb() - before, 1),
    }


def run(kind: str, n_a: int, n_b: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(n_a), str(n_b)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    machine = machine_info()
    runs = {
        "dense": run("dense", 13501, 21221),
        "blockwise": run("blockwise", 13501, 21221),
        "blockwise_topk": run("blockwise_topk", 13501, 21221),
        "blockwise_20k": run("blockwise_20k", 20000, 20000),
    }
    dense, blockwise = runs["dense"], runs["blockwise"]
    assert (dense["pairs"], dense["checksum"]) == (blockwise["pairs"], blockwise["checksum"]), "different pairs"
    results = {
        "runs": runs,
        "same_pairs_as_dense": True,
        "time_ratio_blockwise_over_dense": round(blockwise["seconds"] / dense["seconds"], 3),
        "extra_rss_ratio_blockwise_over_dense": round(blockwise["extra_rss_mb"] / dense["extra_rss_mb"], 3),
        "machine": machine,
        "load_after": machine_info()["load_average"],
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
