"""Download + index throughput from a loopback HTTP server, side by side with indexing the same files from disk.

The same N real JPEGs (``../shared/data/neardup``, else the vendored
``samples/clothing`` photos repeated) are indexed, in one run, four ways:

  a. from local disk (paths)                          -> the ceiling for (b)
  b. from a CSV of http://127.0.0.1 URLs, cold download cache (download + index)
  c. the same CSV again, every download cached        (what a re-run costs)
  d. download only (no embedding), cold cache         (the fetching stage alone)

The server is ``python -m http.server`` in its own process, so it does not
share this process's GIL. The embedding cache is off in (a)-(c): every image
is decoded and embedded each time. (a) runs first and again last; both are
reported, since these machines are shared and noisy.

Usage:
    python benchmarks/download.py [--count 1000] [--concurrency 16] [--out benchmarks/results/download.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NEARDUP = ROOT.parent / "shared" / "data" / "neardup"


def photo_files(count: int) -> tuple[list[Path], str]:
    """``count`` real JPEG paths and where they come from."""
    if NEARDUP.is_dir():
        files = sorted(NEARDUP.rglob("*.jpg"))[:count]
        if len(files) == count:
            return files, f"{NEARDUP} (first {count} of its JPEGs, sorted)"
    samples = sorted((ROOT / "samples" / "clothing").rglob("*.jpg"))
    return [samples[i % len(samples)] for i in range(count)], f"samples/clothing ({len(samples)} photos, repeated)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):  # wait until it accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        server.kill()
        raise RuntimeError("the loopback HTTP server did not start")
    return server, f"http://127.0.0.1:{port}"


def timed(label: str, function, count: int) -> dict:
    started = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - started
    print(f"{label:<28} {seconds:7.2f} s  {count / seconds:7.1f} img/s", flush=True)
    return {"seconds": round(seconds, 3), "images_per_s": round(count / seconds, 1), "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "download.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-download-"))
    # A fresh cache (cold downloads) that still reuses the converted ONNX network.
    cache = work / "cache"
    cache.mkdir()
    user_models = Path(os.environ.get("LOOKALIKE_CACHE", Path.home() / ".cache" / "lookalike")) / "models"
    if user_models.is_dir():
        (cache / "models").symlink_to(user_models, target_is_directory=True)
    os.environ["LOOKALIKE_CACHE"] = str(cache)

    import lookalike as lk
    from lookalike.ingest.download import DownloadCache, download

    files, origin = photo_files(args.count)
    served = work / "served"
    served.mkdir()
    for i, path in enumerate(files):
        (served / f"{i:05d}.jpg").symlink_to(path.resolve())
    server, base = start_server(served)
    try:
        urls = [f"{base}/{i:05d}.jpg" for i in range(len(files))]
        table = work / "urls.csv"
        pd.DataFrame({"id": [f"{i:05d}" for i in range(len(files))], "url": urls}).to_csv(table, index=False)
        settings = {"concurrency": args.concurrency}
        lk.create([str(files[0])], verbose=False, cache=False)  # load the network once, outside the timings
        n = len(files)

        local = timed("a. local files", lambda: lk.create([str(p) for p in files], verbose=False, cache=False), n)
        cold = timed(
            "b. URLs, cold downloads",
            lambda: lk.create(str(table), label="id", verbose=False, cache=False, download=settings),
            n,
        )
        warm = timed(
            "c. URLs, downloads cached",
            lambda: lk.create(str(table), label="id", verbose=False, cache=False, download=settings),
            n,
        )
        fetch = timed(
            "d. download only, cold",
            lambda: download(urls, settings, DownloadCache(work / "fetch-only"), verbose=False),
            n,
        )
        local_again = timed(
            "a'. local files again", lambda: lk.create([str(p) for p in files], verbose=False, cache=False), n
        )
    finally:
        server.terminate()
        server.wait(timeout=10)

    failed = [d.reason for d in fetch["result"] if d.path is None]
    assert not failed, failed[:3]
    for run in (cold, warm):
        assert len(run["result"].labels) == n and run["result"].failures.empty
    best_local = min(local["seconds"], local_again["seconds"])
    results = {
        "images": n,
        "source": origin,
        "bytes": sum(p.stat().st_size for p in files),
        "server": "python -m http.server on 127.0.0.1, separate process",
        "concurrency": args.concurrency,
        "embedding_cache": "off (every image decoded and embedded in a, b, c)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "note": "shared, noisy machine"},
        "runs": {
            name: {k: v for k, v in run.items() if k != "result"}
            for name, run in {
                "local_files": local,
                "urls_cold": cold,
                "urls_downloads_cached": warm,
                "download_only_cold": fetch,
                "local_files_again": local_again,
            }.items()
        },
        "ratios": {
            "urls_cold_vs_local_time": round(cold["seconds"] / best_local, 2),
            "urls_cached_vs_local_time": round(warm["seconds"] / best_local, 2),
            "download_only_vs_local_index_time": round(fetch["seconds"] / best_local, 2),
        },
        "build_stats": {"urls_cold": cold["result"].build_stats, "urls_cached": warm["result"].build_stats},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["ratios"]))


if __name__ == "__main__":
    main()
