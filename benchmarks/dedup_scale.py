"""The neighbour stage of dedup at 100,000 references: time, peak memory and planted copies found.

Synthetic 1280-d (the default network's length) float32 embeddings from a mixture of 1,000 Gaussians
(``scale.synthetic``), of which ``--copies`` rows are near-copies of others (the original plus noise
of 2 % of its norm: distance well under the default cosine threshold 0.15). Each method runs in a fresh
worker process: ``lk.create(x, model=None, metric="cosine", method=...)`` then
``find_duplicates()`` at the default threshold of the default network; peak RSS is the worker's
``ru_maxrss``. Precomputed embeddings have no files, so every pair is tier ``similar``: this measures the
neighbour stage alone (tiering costs per candidate pair are in ``tiers.json``).

    python benchmarks/dedup_scale.py --n 100000 -o benchmarks/results/dedup_scale.json
    python benchmarks/dedup_scale.py --n 1000000 --dim 512 --methods auto -o benchmarks/results/dedup_scale_1m.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import machine_info
from scale import synthetic

THRESHOLD = 0.15  # efficientnet_lite0 int8 gem cosine: the default a user gets


def worker(n: int, copies: int, method: str, dim: int) -> dict:
    import lookalike as lk

    x = synthetic(n, seed=1, dim=dim)
    rng = np.random.default_rng(2)
    sources = rng.choice(n - copies, copies, replace=False)
    noise = rng.standard_normal((copies, x.shape[1]), dtype=np.float32)
    noise *= 0.02 * np.linalg.norm(x[sources], axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
    x[n - copies :] = x[sources] + noise
    started = time.perf_counter()
    model = lk.create(x, model=None, metric="cosine", method=method, verbose=False)
    built = time.perf_counter() - started
    started = time.perf_counter()
    table = model.find_duplicates(threshold=THRESHOLD, k=10, keep="first")
    seconds = time.perf_counter() - started
    group_of = dict(zip(table["label"].tolist(), table["group"].tolist(), strict=True))
    pairs = zip(sources.tolist(), range(n - copies, n), strict=True)
    found = sum(1 for s, c in pairs if s in group_of and group_of[s] == group_of.get(c))
    summary = model.summary(output="dict")
    return {
        "method": method,
        "index": summary["method"],
        "index_recall_at_10": summary["recall"],
        "build_seconds": round(built, 1),
        "dedup_seconds": round(seconds, 1),
        "groups": int(table["group"].nunique()),
        "planted_copies_found": found / copies,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--copies", type=int, default=5_000)
    parser.add_argument("--methods", nargs="+", default=["auto", "brute_force"])
    parser.add_argument("--dim", type=int, default=1280, help="vector length (1280: the default network's)")
    parser.add_argument("--worker", nargs=2, metavar=("N", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results/dedup_scale.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.copies, args.worker[1], args.dim)))
        return
    result = {"machine": machine_info(), "n": args.n, "dim": args.dim, "copies": args.copies, "threshold": THRESHOLD}
    runs = []
    for method in args.methods:
        command = [sys.executable, __file__, "--worker", str(args.n), method, "--copies", str(args.copies)]
        command += ["--dim", str(args.dim)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    result["runs"] = runs
    result["load_after"] = machine_info()["load_average"]
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
