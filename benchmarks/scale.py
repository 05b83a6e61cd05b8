"""Index backends at scale: build time, query latency, recall@10 and peak memory as references grow.

For each size (default 10k, 100k, 1M) and each method (brute_force, hnsw, ivf) a fresh
worker process generates the same synthetic references, builds the index with
``lookalike.index.build_index`` (which also tunes the search effort on 200 sampled
references and records recall@10), then measures, side by side in one run:

- build time (including the recall measurement and effort tuning);
- single-query latency p50/p99 at k=10 (one query at a time, as an interactive user asks);
- recall@10 on 500 held-out queries against exact search (``ExactIndex``, computed once per size);
- adding 10,000 references and removing 1,000 (index-level add/remove), and recall after;
- peak RSS of the worker (``ru_maxrss``): references + index + everything else.

Data: synthetic 512-d (``--dim``) float32 embeddings from a mixture of 1,000 Gaussians (centres ~ N(0, 1),
spread 0.6), the shape of CNN embeddings of many photo groups. Never an n x n matrix.

Run: ``python benchmarks/scale.py`` (writes ``benchmarks/results/scale.json``), or
``python benchmarks/scale.py --sizes 10000 100000`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import MemoryWatch, machine_info, run_worker

DIM = 512
CENTRES = 1000
QUERIES = 500
LATENCY_QUERIES = 200
#: Queries searched between the first and the measured single queries of ``--large``'s serving stage.
WARM_UP = 2000
K = 10
RESULTS = Path(__file__).parent / "results" / "scale.json"


def synthetic_blocks(n: int, seed: int, block: int = 100_000, dim: int = DIM):
    """n clustered float32 vectors, ``block`` rows at a time; the same centres for every seed."""
    centres = np.random.default_rng(12345).standard_normal((CENTRES, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, n, block):
        rows = min(block, n - start)
        out = centres[rng.integers(0, CENTRES, rows)]
        out += 0.6 * rng.standard_normal((rows, dim), dtype=np.float32)
        yield out


def synthetic(n: int, seed: int, block: int = 100_000, dim: int = DIM) -> np.ndarray:
    """n clustered float32 vectors in memory (see :func:`synthetic_blocks`)."""
    out = np.empty((n, dim), np.float32)
    for start, rows in zip(range(0, n, block), synthetic_blocks(n, seed, block, dim), strict=True):
        out[start : start + len(rows)] = rows
    return out


def synthetic_file(path: Path, n: int, seed: int, dim: int = DIM) -> None:
    """:func:`synthetic` written to an ``.npy`` file block by block (never all in memory)."""
    partial = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, dim))
    start = 0
    for rows in synthetic_blocks(n, seed, dim=dim):
        out[start : start + len(rows)] = rows
        start += len(rows)
    out.flush()
    del out
    partial.rename(path)


def _latency(index, queries: np.ndarray, count: int) -> dict:
    """Wall and CPU time per single query (CPU time is steadier on a busy machine)."""
    wall, cpu = [], []
    for row in queries[:count]:
        started, cpu_started = time.perf_counter(), time.process_time()
        index.search(row[None, :], K)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    wall_ms, cpu_ms = np.array(wall) * 1e3, np.array(cpu) * 1e3
    return {
        "p50_ms": round(float(np.percentile(wall_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(wall_ms, 99)), 3),
        "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 3),
        "queries": len(wall),
    }


def worker(n: int, method: str, metric: str, truth_path: Path, dim: int) -> dict:
    """One (size, method) measurement, in its own process so its peak RSS is its own."""
    from lookalike.index import ExactIndex, build_index
    from lookalike.index.recall import recall_at_k

    refs = synthetic(n, seed=1, dim=dim)
    queries = synthetic(QUERIES, seed=2, dim=dim)
    extra = synthetic(10_000, seed=3, dim=dim)
    if truth_path.exists():
        truth = np.load(truth_path)
    else:
        truth, _ = ExactIndex(refs, metric).search(queries, K)
        np.save(truth_path, truth)
    started, cpu = time.perf_counter(), time.process_time()
    index = build_index(refs, metric, method)
    build_s, build_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    # Exact search is its own ground truth: time it on a slice instead of repeating the whole batch.
    batch = queries[:50] if method == "brute_force" else queries
    batch_started = time.perf_counter()
    found, _ = index.search(batch, K)
    batch_s = time.perf_counter() - batch_started
    found = truth if method == "brute_force" else found
    result = {
        "n": n,
        "dim": dim,
        "method": method,
        "metric": metric,
        "spec": getattr(index, "spec", "numpy BLAS"),
        "search_effort": getattr(index, "search_effort", None),
        "build_s": round(build_s, 2),
        "build_cpu_s": round(build_cpu_s, 2),
        "build_time_recall@10": index.build.recall,
        "recall@10": round(recall_at_k(found, truth), 4),
        "latency": _latency(index, queries, LATENCY_QUERIES if method != "brute_force" or n <= 100_000 else 20),
        "batch_queries_per_s": round(len(batch) / batch_s, 1),
    }
    started = time.perf_counter()
    index.add(extra)
    result["add_10k_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    index.remove(np.arange(0, n, max(1, n // 1000))[:1000])
    result["remove_1k_s"] = round(time.perf_counter() - started, 3)
    if method != "brute_force":  # exact stays exact
        after, _ = index.search(queries, K)
        exact_after, _ = ExactIndex(index.vectors, metric).search(queries, K)
        result["recall@10_after_add_remove"] = round(recall_at_k(after, exact_after), 4)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def large_worker(stage: str, n: int, workdir: Path, metric: str, cache: str = "as-is") -> dict:
    """One stage of the large run, in its own process: ``build`` (create from a memory-mapped .npy, then save)
    or ``serve`` (load, single queries, batch queries, recall against exact search on a sample)."""
    import lookalike as lk
    from lookalike.index import ExactIndex
    from lookalike.index.recall import recall_at_k

    data, folder = workdir / f"embeddings-{n}.npy", workdir / f"model-{n}"
    if stage == "build":
        result: dict = {"stage": stage, "n": n, "metric": metric}
        if not data.exists():
            started = time.perf_counter()
            synthetic_file(data, n, seed=1)
            result["generate_s"] = round(time.perf_counter() - started, 1)
        x = np.load(data, mmap_mode="r")
        with MemoryWatch() as watch:
            started, cpu = time.perf_counter(), time.process_time()
            model = lk.create(x, model=None, metric=metric, verbose=False)
            result["build_s"] = round(time.perf_counter() - started, 1)
            result["build_cpu_per_wall"] = round((time.process_time() - cpu) / result["build_s"], 2)
            result["index"] = model.core.index.record()
            started = time.perf_counter()
            model.save(folder)
            result["save_s"] = round(time.perf_counter() - started, 1)
        return {**result, **watch.record(), "ru_maxrss_gb": _maxrss_gb()}
    if cache == "cold":  # the kernel forgets every cached page (needs root), as after a reboot
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    elif cache == "warm":  # the model's files read once, as on a server that has been answering for a while
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                with open(path, "rb") as f:
                    while f.read(1 << 24):
                        pass
    queries = synthetic(2 * LATENCY_QUERIES + WARM_UP, seed=2)
    first, warm_up, fresh = np.split(queries, [LATENCY_QUERIES, LATENCY_QUERIES + WARM_UP])
    with MemoryWatch() as watch:
        started = time.perf_counter()
        model = lk.load_model(folder)
        index = model.core.index
        result = {"stage": stage, "n": n, "page_cache": cache, "load_s": round(time.perf_counter() - started, 2)}
        # The first queries after loading read their lists and rows from disk unless the page cache holds them.
        result["latency_first_queries"] = _latency(index, first, LATENCY_QUERIES)
        started = time.perf_counter()
        found, _ = index.search(warm_up, K)
        result["batch_queries_per_s"] = round(len(warm_up) / (time.perf_counter() - started), 1)
        # Then new queries, once the index's lists have been read (their rows to re-rank are still new ones).
        result["latency"] = _latency(index, fresh, LATENCY_QUERIES)
        result["serving"] = {**watch.record(), **{k: round(v, 2) for k, v in watch.now().items()}}
    sample = warm_up[:100]
    # The same vectors from the input file: the model maps its copy for scattered reads (no read-ahead).
    truth, _ = ExactIndex(np.load(data, mmap_mode="r"), metric).search(sample, K)
    result["recall@10"] = round(recall_at_k(found[: len(sample)], truth), 4)
    result["recall_queries"] = len(sample)
    return result


def _maxrss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--methods", nargs="+", default=["brute_force", "hnsw", "ivf"])
    parser.add_argument("--metric", default="euclidean")
    parser.add_argument("--dim", type=int, default=DIM, help="vector length (default %(default)s; 1280: EfficientNet)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--large", type=int, metavar="N", help="instead: build and serve N references from disk")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/lookalike-scale"), help="files of --large")
    parser.add_argument("--stages", nargs="+", default=["build", "serve"], help="stages of --large to run")
    parser.add_argument(
        "--page-cache",
        choices=["as-is", "cold", "warm"],
        default="as-is",
        help="before serving: leave the page cache, empty it (needs root) or read the model's files into it",
    )
    parser.add_argument("--worker", nargs=3, metavar=("N", "METHOD", "TRUTH"), help=argparse.SUPPRESS)
    parser.add_argument("--large-worker", nargs=3, metavar=("STAGE", "N", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        n, method, truth = args.worker
        print(json.dumps(worker(int(n), method, args.metric, Path(truth), args.dim)))
        return
    if args.large_worker:
        stage, n, cache = args.large_worker
        print(json.dumps(large_worker(stage, int(n), args.workdir, args.metric, cache)))
        return
    data = f"synthetic {args.dim}-d float32, mixture of {CENTRES} Gaussians (centres N(0,1), spread 0.6)"
    if args.large:
        output = args.output or RESULTS.with_name(f"scale_{args.large // 1_000_000}m.json")
        report = {
            "what": "N references built from a memory-mapped .npy (auto index), saved, then served from a fresh "
            "process: build time, peak memory (anonymous: RssAnon sampled every 50 ms; and total RSS), single-query "
            "latency at k=10, recall@10 against exact search on 100 held-out queries",
            "data": f"{data}; written to disk block by block in {args.workdir}",
            "machine": machine_info(),
            "results": [],
        }
        args.workdir.mkdir(parents=True, exist_ok=True)
        if output.exists() and args.stages != ["build", "serve"]:  # a stage run again replaces its row
            kept = [
                r
                for r in json.loads(output.read_text())["results"]
                if (r.get("stage"), r.get("page_cache")) not in {(stage, args.page_cache) for stage in args.stages}
            ]
            report["results"] = kept
        for stage in args.stages:
            command = [sys.executable, __file__, "--metric", args.metric, "--workdir", str(args.workdir)]
            worker_args = ["--large-worker", stage, str(args.large), args.page_cache]
            run_worker([*command, *worker_args], report, output, stage=stage, page_cache=args.page_cache)
        print(f"wrote {output}")
        return
    output = args.output or RESULTS
    report = {
        "what": "index backends vs size: build, single-query latency at k=10, recall@10 vs exact, add/remove, peak RSS",
        "data": f"{data}; {QUERIES} held-out queries from the same mixture",
        "machine": machine_info(),
        "results": [],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            truth = Path(tmp) / f"truth-{n}.npy"
            for method in args.methods:
                command = [
                    *(sys.executable, __file__, "--metric", args.metric, "--dim", str(args.dim)),
                    *("--worker", str(n), method, str(truth)),
                ]
                run_worker(command, report, output, n=n, method=method)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
