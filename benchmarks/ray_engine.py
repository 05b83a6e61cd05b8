"""Ray engine vs local engine: indexing throughput side by side in one run (issue 10).

Both index the same folder of ≥ 2,000 real photos end to end (files on disk ->
saved model), each in a fresh process with a fresh embedding cache, in
alternating rounds so that load from other jobs on the machine hits both
alike. The Ray figure is measured two ways:

  job:            the cluster is already up (as on a real cluster): listing,
                  actor start, embedding, shards, model assembly and save
  incl. startup:  the same plus ``ray.init`` of a local cluster

The headline is the ratio ray/local of the job figures (target ≥ 0.85).

Usage:
    python benchmarks/ray_engine.py [--photos /tmp/lookalike-bench/web] [--data ../shared/data]
        [--count 2000] [--rounds 2] [--out benchmarks/results/ray_engine.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import lookalike as lk
from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh process: times create()+save(); for Ray, ray.init is timed apart from the job.
_CODE = """
import json, sys, time
import lookalike as lk
folder, output, engine = sys.argv[1:4]
startup = 0.0
if engine == "ray":
    import ray
    t = time.perf_counter()
    ray.init(num_cpus=int(sys.argv[4]), include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    startup = time.perf_counter() - t
t = time.perf_counter()
model = lk.create(folder, verbose=False, engine=engine)
model.save(output)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "startup": startup, "images": len(model.labels), **model.build_stats}))
"""


def make_photo_set(data: Path, folder: Path, count: int) -> Path:
    """``count`` real JPEGs: ImageNet sample + near-duplicate photos, copied round-robin under distinct names."""
    photos = sorted((data / "imagenet-sample").glob("*.JPEG")) + sorted((data / "neardup").rglob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos under {data}: pass --photos FOLDER or --data SHARED_DATA")
    for i in range(count):
        target = folder / f"{i // 1000:03d}" / f"{i:06d}{photos[i % len(photos)].suffix}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photos[i % len(photos)], target)
    return folder


def run(engine: str, folder: Path, work: Path, cpus: int) -> dict:
    """One fresh-process, fresh-cache indexing run."""
    cache = work / f"cache-{engine}"
    shutil.rmtree(cache, ignore_errors=True)
    # The converted network is built once per machine: copy it in, so only the embeddings are cold.
    models = lk.config.cache_dir() / "models"
    if models.is_dir():
        shutil.copytree(models, cache / "models")
    output = work / f"{engine}.lookalike"
    env = {**os.environ, "LOOKALIKE_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", _CODE, str(folder), str(output), engine, str(cpus)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{engine} run failed:\n{done.stderr[-3000:]}")
    # Ray may log to stdout after the script's own line: take the last line that is the result
    result = next(json.loads(line) for line in reversed(done.stdout.splitlines()) if line.startswith('{"seconds"'))
    shutil.rmtree(cache, ignore_errors=True)
    return result


def summarize(runs: dict[str, list[dict]], cpus: int) -> dict:
    """Medians over the rounds so far, the ray/local ratios, and the conditions of the measurement."""
    images = runs["local"][0]["images"]
    local_s = statistics.median(r["seconds"] for r in runs["local"])
    ray_s = statistics.median(r["seconds"] for r in runs["ray"])
    startup_s = statistics.median(r["startup"] for r in runs["ray"])
    result = {
        "images": images,
        "cpus": cpus,
        "rounds": len(runs["ray"]),
        "local_img_s": images / local_s,
        "ray_img_s": images / ray_s,
        "ray_incl_startup_img_s": images / (ray_s + startup_s),
        "ratio_ray_over_local": local_s / ray_s,
        "ratio_ray_incl_startup_over_local": local_s / (ray_s + startup_s),
        "ray_startup_seconds": startup_s,
        "per_core_img_s_local": images / local_s / cpus,
        "runs": runs,
        "machine": machine_info(),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, help="a folder of ≥ COUNT photos (default: made from --data)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench-ray")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating local/ray rounds; the median is kept")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray_engine.json")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    folder = args.photos or make_photo_set(args.data, args.work / "photos", args.count)
    cpus = len(os.sched_getaffinity(0))
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    for round_ in range(args.rounds):
        for engine in ("local", "ray") if round_ % 2 == 0 else ("ray", "local"):
            runs[engine].append(run(engine, folder, args.work, cpus))
            last = runs[engine][-1]
            print(f"round {round_ + 1} {engine}: {last['images']} images in {last['seconds']:.1f} s", flush=True)
        result = summarize(runs, cpus)  # after every round: a run cut short still leaves its figures
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"local {result['local_img_s']:.1f} img/s, ray {result['ray_img_s']:.1f} img/s "
        f"(ratio {result['ratio_ray_over_local']:.2f}; with cluster start {result['ratio_ray_incl_startup_over_local']:.2f})"
    )


if __name__ == "__main__":
    main()
