"""The explorer's map: time, peak memory and neighbourhoods kept by t-SNE (openTSNE) and PCA, 10,000 to 100,000 references.

    python benchmarks/map_layout.py                                  # 10k and 100k, t-SNE and PCA
    python benchmarks/map_layout.py --sizes 10000 --methods tsne pca umap   # UMAP too, where umap-learn is installed

Data: synthetic clustered float32 vectors shaped like the default network's
embeddings (1280-d, unit length): 60 clusters of random sizes whose centres
fall around 6 super-centres, each cluster spread along 8 random directions of
its own (the positions along them are what make neighbours) plus a little
isotropic noise. Each (size, method) runs in its own process, so its peak RSS
is its own: the model is built (``lk.create(vectors, model=None)``: exact
search at 10,000, faiss IVF at 100,000, as ``method="auto"`` chooses) and
then ``model.compute_map(method)`` is timed: the neighbours from the model,
the layout and the k-means clusters. ``neighbours_s`` is the time before the
first t-SNE iteration (neighbours, affinities, the PCA start).

Neighbourhoods kept (``kept@10``, at sizes up to ``--score-max``): the mean
share of each reference's 10 nearest neighbours in the embedding space
(exact, faiss flat) that are among its 10 nearest on the map.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from machine import machine_info, run_worker

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "map_layout.json"
CLUSTERS, SUPER, INTRINSIC = 60, 6, 8


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` unit-length vectors in :data:`CLUSTERS` clusters of :data:`INTRINSIC` dimensions each (see the top)."""
    rng = np.random.default_rng(seed)
    supers = rng.normal(size=(SUPER, dim)).astype(np.float32)
    centres = supers[rng.integers(0, SUPER, CLUSTERS)] + 0.7 * rng.normal(size=(CLUSTERS, dim)).astype(np.float32)
    sizes = rng.multinomial(n, rng.dirichlet(np.full(CLUSTERS, 2.0)))
    out = np.empty((n, dim), np.float32)
    start = 0
    for c, m in enumerate(sizes):
        basis = 0.35 * rng.normal(size=(INTRINSIC, dim)).astype(np.float32)
        spread = rng.normal(size=(m, INTRINSIC)).astype(np.float32) @ basis
        out[start : start + m] = centres[c] + spread + 0.05 * rng.normal(size=(m, dim)).astype(np.float32)
        start += m
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out[rng.permutation(n)]


def kept(vectors: np.ndarray, coordinates: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's k nearest (exact, in ``vectors``) among its k nearest in ``coordinates``."""

    def neighbours(x: np.ndarray) -> np.ndarray:
        flat = faiss.IndexFlatL2(x.shape[1])
        x = np.ascontiguousarray(x, dtype=np.float32)
        flat.add(x)
        found = flat.search(x, k + 1)[1]
        return np.array([row[row != i][:k] for i, row in enumerate(found)])

    high, low = neighbours(vectors), neighbours(coordinates)
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(high, low, strict=True)]))


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def umap_layout(model, seed: int) -> np.ndarray:
    """UMAP (umap-learn) from the same neighbours lookalike gives t-SNE, for comparison."""
    import umap

    from lookalike.explore.layout import nearest_neighbours

    distances, positions = nearest_neighbours(model.core, 14)
    # umap-learn counts each point as its own nearest neighbour.
    positions = np.hstack([np.arange(len(positions))[:, None], positions])
    distances = np.hstack([np.zeros((len(distances), 1)), distances])
    reducer = umap.UMAP(n_neighbors=15, random_state=seed, precomputed_knn=(positions, distances, None))
    return reducer.fit_transform(np.asarray(model.embeddings)).astype(np.float32)


def worker(n: int, method: str, dim: int, score_max: int) -> dict:
    import lookalike as lk
    from lookalike.explore import layout

    vectors = clustered(n, dim)
    started = time.perf_counter()
    model = lk.create(vectors, model=None, verbose=False)
    result = {
        "n": n,
        "dim": dim,
        "method": method,
        "index": model.core.index.method,
        "index_s": round(time.perf_counter() - started, 2),
        "rss_before_map_mb": rss_mb(),
    }
    first_iteration: list[float] = []
    started = time.perf_counter()
    if method == "umap":
        coordinates = umap_layout(model, layout.SEED)
    else:
        progress = (lambda _: first_iteration.append(time.perf_counter())) if method == "tsne" else None
        coordinates = layout.compute(model.core, method, progress=progress).coordinates
    result["map_s"] = round(time.perf_counter() - started, 2)
    if first_iteration:
        # The first report comes after 25 iterations: take the time per iteration off it.
        per_iteration = (first_iteration[-1] - first_iteration[0]) / (25 * (len(first_iteration) - 1))
        result["neighbours_s"] = round(first_iteration[0] - started - 25 * per_iteration, 2)
        result["iterations_s"] = round(result["map_s"] - result["neighbours_s"], 2)
    result["peak_rss_mb"] = rss_mb()
    if n <= score_max:
        result["kept@10"] = round(kept(vectors, coordinates), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--methods", nargs="+", default=["tsne", "pca"], choices=["tsne", "pca", "umap"])
    parser.add_argument("--dim", type=int, default=1280, help="vector length (default %(default)s: EfficientNet-Lite0)")
    parser.add_argument("--score-max", type=int, default=20_000, help="largest size whose kept@10 is measured")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs=2, metavar=("N", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        n, method = args.worker
        print(json.dumps(worker(int(n), method, args.dim, args.score_max)))
        return
    report = {
        "what": "compute_map: time, peak RSS and neighbourhoods kept (kept@10) by t-SNE (openTSNE) and PCA",
        "data": f"synthetic {args.dim}-d unit float32 vectors: {CLUSTERS} clusters around {SUPER} super-centres, "
        f"each spread along {INTRINSIC} random directions, plus noise (benchmarks/map_layout.py clustered)",
        "machine": machine_info(),
        "results": [],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        for method in args.methods:
            command = [sys.executable, __file__, "--dim", str(args.dim), "--score-max", str(args.score_max)]
            run_worker([*command, "--worker", str(n), method], report, args.output, n=n, method=method)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
