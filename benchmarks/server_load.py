"""Bounded load test of ``lookalike serve`` on loopback: concurrent uploads and neighbour lookups.

Starts the real server (``python -m lookalike.cli serve MODEL --port 0``) in
its own process, then runs ``--clients`` concurrent clients (httpx + asyncio)
for ``--duration`` seconds: each request is an image upload (``POST
/api/query``) with probability ``--upload-share``, else the neighbours of a
random reference (``GET /api/references/{i}/neighbours``), after a
``--baseline`` seconds of one client alone (one reused connection) for
comparison. Reports the server's start-up time, requests/s, p50/p95/p99
latency per kind, every error and the dropped connections (a request lost
with its connection: ``ReadError``, ``RemoteProtocolError``...), with the
machine (CPU flags, load average before and after), to
``benchmarks/results/server_load.json``. Client and server share this
machine's cores, so the figures are a floor, not a capacity.

    python benchmarks/server_load.py                       # the 80 bundled photos
    python benchmarks/server_load.py --model photos.lookalike --clients 50 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from machine import machine_info

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "clothing"
RESULTS = REPO / "benchmarks" / "results" / "server_load.json"
#: A request lost with its connection, as opposed to one the server answered (any status) or a client timeout.
DROPPED = (httpx.NetworkError, httpx.RemoteProtocolError)


def start_server(model: Path) -> tuple[subprocess.Popen, str, float]:
    """(process, base URL, seconds from launch until /api/health answers)."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", str(model), "--port", "0", "-q"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if " on http" not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    url = line.split(" on ")[1].split()[0].rstrip("/")
    while True:
        try:
            if httpx.get(url + "/api/health", timeout=5).status_code == 200:
                return process, url, time.perf_counter() - began
        except httpx.TransportError:
            time.sleep(0.05)


async def run_load(
    url: str, clients: int, duration: float, upload_share: float, photos: list[bytes], n: int, seed: int
):
    """Records of (kind, seconds, status or error name) for every request finished within ``duration``."""
    records: list[tuple[str, float, str]] = []
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker(number: int) -> None:
            rng = random.Random(seed + number)
            while time.perf_counter() < deadline:
                upload = rng.random() < upload_share
                began = time.perf_counter()
                try:
                    if upload:
                        files = {"image": ("photo.jpg", rng.choice(photos), "image/jpeg")}
                        response = await client.post("/api/query?k=10", files=files)
                    else:
                        response = await client.get(f"/api/references/{rng.randrange(n)}/neighbours?k=10")
                    outcome = str(response.status_code)
                except DROPPED as exc:
                    outcome = f"dropped connection ({type(exc).__name__})"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                records.append(("upload" if upload else "neighbours", time.perf_counter() - began, outcome))

        await asyncio.gather(*(worker(i) for i in range(clients)))
    return records


def latency_summary(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"count": 0}
    ms = np.array(seconds) * 1000
    return {
        "count": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a saved model (default: index samples/clothing now)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--upload-share", type=float, default=0.25, help="share of requests that are uploads")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of a single client first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    import lookalike as lk

    photo_paths = sorted(SAMPLES.rglob("*.jpg"))
    photos = [p.read_bytes() for p in photo_paths]
    with tempfile.TemporaryDirectory() as scratch:
        model_path = args.model
        if model_path is None:
            model_path = Path(scratch) / "samples.lookalike"
            lk.create(str(SAMPLES), verbose=False).save(model_path)
        n = len(lk.load_model(model_path).labels)
        machine = machine_info()
        process, url, startup = start_server(model_path)
        try:
            began = time.perf_counter()
            warm = httpx.post(url + "/api/query?k=10", files={"image": ("w.jpg", photos[0], "image/jpeg")}, timeout=120)
            first_upload = time.perf_counter() - began
            warm.raise_for_status()
            # Side by side in one run: one client alone first, so the concurrent figures can be read against
            # what this (shared, noisy) machine gives a single request.
            single = asyncio.run(run_load(url, 1, args.baseline, args.upload_share, photos, n, args.seed))
            began = time.perf_counter()
            records = asyncio.run(run_load(url, args.clients, args.duration, args.upload_share, photos, n, args.seed))
            elapsed = time.perf_counter() - began
        finally:
            process.terminate()
            process.wait(timeout=30)
        load_after = os.getloadavg()

    outcomes = Counter(outcome for _, _, outcome in records)
    errors = {outcome: count for outcome, count in outcomes.items() if outcome != "200"}
    result = {
        "what": "lookalike serve on 127.0.0.1: concurrent uploads (POST /api/query) and neighbour lookups",
        "machine": {
            **machine,
            "load_average_after": [round(v, 2) for v in load_after],
            "note": "client and server share these cores; see the load averages for other jobs",
        },
        "config": {
            "references": n,
            "clients": args.clients,
            "duration_s": args.duration,
            "upload_share": args.upload_share,
            "k": 10,
            "upload_images": f"{len(photos)} photos from samples/clothing, {min(map(len, photos))}-{max(map(len, photos))} bytes",
        },
        "startup_s": round(startup, 2),
        "first_upload_s": round(first_upload, 2),
        "requests": len(records),
        "requests_per_s": round(len(records) / elapsed, 1),
        "errors": errors,
        "dropped_connections": sum(c for outcome, c in outcomes.items() if outcome.startswith("dropped")),
        "all": latency_summary([s for _, s, _ in records]),
        "neighbours": latency_summary([s for kind, s, _ in records if kind == "neighbours"]),
        "upload": latency_summary([s for kind, s, _ in records if kind == "upload"]),
        "single_client": {
            "duration_s": args.baseline,
            "errors": {o: c for o, c in Counter(o for _, _, o in single).items() if o != "200"},
            "neighbours": latency_summary([s for kind, s, _ in single if kind == "neighbours"]),
            "upload": latency_summary([s for kind, s, _ in single if kind == "upload"]),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, args.output)
    print(json.dumps(result, indent=2))
    return 1 if errors or result["single_client"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
