"""Indexing throughput, side by side in one run (issue 4).

For two photo sets, web-size (ImageNet sample copied to N files) and
camera-size (12+ MP JPEGs made from real photos, detail added), measure:

  a. model only: ONNX Runtime on pre-decoded tensors
  + decode only: lookalike's decode + preprocess on one core, and from it the
    ceiling of any pipeline that shares the cores between decoding and inference
  b. the straightforward loop: full PIL decode, resize, one image per inference
  c. lookalike end to end: files on disk -> saved model (cold embedding cache)
  d. warm re-index of the unchanged folder
  + peak RSS of (c), at two collection sizes, each in a fresh process

All of it for one network (``--model``, ``--precision``; the default network by default).

Usage:
    python benchmarks/extract.py [--model efficientnet_lite0] [--precision int8] [--data ../shared/data]
        [--web 2000] [--camera 200] [--rss-sizes 2000,20000] [--out benchmarks/results/extract.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from lookalike.embed.extractor import Embedder
from lookalike.embed.registry import DEFAULT_MODEL, ModelSpec, get_spec
from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]


def make_web_set(source: Path, folder: Path, count: int) -> list[Path]:
    """``count`` files copied round-robin from the ImageNet sample (web-size JPEGs)."""
    photos = sorted(source.glob("*.JPEG"))
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        target = folder / f"{i // 1000:03d}" / f"{i:06d}_{photos[i % len(photos)].name}"
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(photos[i % len(photos)], target)
        files.append(target)
    return files


def make_camera_set(source: Path, folder: Path, count: int) -> list[Path]:
    """``count`` 4000x3000 JPEGs: real photos upscaled, with sensor-like noise so they compress like camera files."""
    photos = sorted(source.glob("*.JPEG"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        target = folder / f"camera_{i:04d}.jpg"
        if not target.exists():
            image = Image.open(photos[i % len(photos)]).convert("RGB").resize((4000, 3000), Image.BICUBIC)
            image = image.filter(ImageFilter.SHARPEN)
            noise = rng.normal(0, 6, (3000, 4000, 3)).astype(np.float32)
            pixels = np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(target, quality=90)
        files.append(target)
    return files


def model_only(spec: ModelSpec, files: list[Path], seconds: float = 8.0) -> float:
    """Images/s of the network on pre-decoded tensors, batch 32, all cores."""
    embedder = Embedder(spec)
    batch = np.stack([embedder.load(f) for f in files[:32]])
    embedder.run(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        embedder.run(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def decode_only(spec: ModelSpec, files: list[Path], limit: int) -> float:
    """Images/s of lookalike's own decode + preprocess (draft, resize) on one core: the other half of the work."""
    embedder = Embedder(spec)
    start = time.perf_counter()
    for path in files[:limit]:
        embedder.load(path)
    return limit / (time.perf_counter() - start)


def straightforward(spec: ModelSpec, files: list[Path], limit: int) -> float:
    """Images/s of the naive loop: full decode, resize, normalise in numpy, infer one image, repeat."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(spec.network_file()), providers=["CPUExecutionProvider"])
    resize = Embedder(spec).preprocess  # the spec's resize (squash or centre crop), nothing more
    prep = spec.preprocessing
    mean, std = np.asarray(prep.mean, np.float32), np.asarray(prep.std, np.float32)
    start = time.perf_counter()
    for path in files[:limit]:
        pixels = resize(Image.open(path).convert("RGB")).astype(np.float32)
        if prep.channel_order == "BGR":
            pixels = pixels[:, :, ::-1]
        pixels = (pixels * np.float32(prep.scale) - mean) / std
        session.run([spec.output_name], {spec.input_name: pixels.transpose(2, 0, 1)[None].copy()})
    return limit / (time.perf_counter() - start)


def run_index(spec: ModelSpec, folder: Path, cache: Path, output: Path) -> dict:
    """Time ``lookalike index`` (as the Python API) in a fresh process; return seconds and peak RSS."""
    # The converted network is built once per machine: copy it in, so only the embeddings are cold.
    if not (cache / "models").exists():
        shutil.copytree(spec.network_file().parent, cache / "models")
    options = f"model={spec.name!r}, precision={spec.precision!r}"
    code = (
        "import time, resource, json, lookalike as lk\n"
        f"t = time.perf_counter(); m = lk.create({str(folder)!r}, {options}, verbose=False); m.save({str(output)!r})\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'images': len(m.labels),"
        " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    env = {**os.environ, "LOOKALIKE_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_set(spec: ModelSpec, name: str, files: list[Path], folder: Path, work: Path, naive_limit: int) -> dict:
    cache = work / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    output = work / f"{name}.lookalike"
    result = {"images": len(files)}
    result["a_model_only_img_s"] = model_only(spec, files)
    result["decode_one_core_img_s"] = decode_only(spec, files, naive_limit)
    # The best any pipeline can do when decoding and inference share the cores: per image, the CPU
    # time of one decode plus the network's (cores / a), spread over all cores.
    cores = len(os.sched_getaffinity(0))
    per_image = 1 / result["decode_one_core_img_s"] + cores / result["a_model_only_img_s"]
    result["ceiling_img_s"] = cores / per_image
    result["b_straightforward_img_s"] = straightforward(spec, files, naive_limit)
    cold = run_index(spec, folder, cache, output)
    result["c_end_to_end_img_s"] = cold["images"] / cold["seconds"]
    result["c_seconds"] = cold["seconds"]
    result["c_peak_rss_mb"] = cold["peak_rss_mb"]
    warm = run_index(spec, folder, cache, output)
    result["d_warm_reindex_seconds"] = warm["seconds"]
    result["ratio_c_over_a"] = result["c_end_to_end_img_s"] / result["a_model_only_img_s"]
    result["ratio_c_over_b"] = result["c_end_to_end_img_s"] / result["b_straightforward_img_s"]
    result["ratio_c_over_ceiling"] = result["c_end_to_end_img_s"] / result["ceiling_img_s"]
    result["ratio_warm_speedup"] = cold["seconds"] / warm["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--precision", help="int8 or fp32 (default: the network's own)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench")
    parser.add_argument("--web", type=int, default=2000)
    parser.add_argument("--camera", type=int, default=200)
    parser.add_argument("--rss-sizes", default="2000,20000", help="collection sizes for the peak-RSS check")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "extract.json")
    args = parser.parse_args()
    source = args.data / "imagenet-sample"
    if not source.is_dir():
        sys.exit(f"no {source}: pass --data pointing at the shared data folder")
    args.work.mkdir(parents=True, exist_ok=True)

    spec = get_spec(args.model).with_descriptor(None).with_precision(args.precision)
    web = make_web_set(source, args.work / "web", args.web)
    camera = make_camera_set(source, args.work / "camera", args.camera)
    report = {
        "model": {"name": spec.name, "precision": spec.precision, "descriptor": spec.descriptor.to_dict()},
        "machine": machine_info(),
        "web": measure_set(spec, "web", web, args.work / "web", args.work, naive_limit=min(500, len(web))),
        "camera": measure_set(
            spec, "camera", camera, args.work / "camera", args.work, naive_limit=min(60, len(camera))
        ),
        "rss": {},
    }
    for size in [int(s) for s in args.rss_sizes.split(",") if s]:
        folder = args.work / f"rss-{size}"
        make_web_set(source, folder, size)
        cache = args.work / f"cache-rss-{size}"
        shutil.rmtree(cache, ignore_errors=True)
        run = run_index(spec, folder, cache, args.work / f"rss-{size}.lookalike")
        embeddings_mb = size * spec.dim * 4 / 2**20
        report["rss"][str(size)] = {
            **run,
            "embeddings_mb": embeddings_mb,
            "beyond_embeddings_mb": run["peak_rss_mb"] - embeddings_mb,
        }
    report["machine"]["load_average_at_end"] = machine_info()["load_average"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(
        "| set | model only (a) | decode, 1 core | ceiling | straightforward (b) | lookalike index (c) "
        "| c/a | c/b | c/ceiling | warm re-index (d) | cold/warm |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("web", "camera"):
        r = report[name]
        print(
            f"| {name} ({r['images']}) | {r['a_model_only_img_s']:.0f} img/s | {r['decode_one_core_img_s']:.0f} img/s | "
            f"{r['ceiling_img_s']:.0f} img/s | {r['b_straightforward_img_s']:.0f} img/s | "
            f"{r['c_end_to_end_img_s']:.0f} img/s | {r['ratio_c_over_a']:.2f} | {r['ratio_c_over_b']:.2f} | "
            f"{r['ratio_c_over_ceiling']:.2f} | {r['d_warm_reindex_seconds']:.2f} s | {r['ratio_warm_speedup']:.0f}x |"
        )
    for size, r in report["rss"].items():
        print(
            f"peak RSS indexing {size} images: {r['peak_rss_mb']:.0f} MB ({r['beyond_embeddings_mb']:.0f} MB beyond embeddings)"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
