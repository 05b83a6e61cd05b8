"""Retrieval quality of the default model on the shared labelled photo sets.

- ``neardup``: 2,000 photos, 500 groups of 4 near-duplicates: UKBench N-S and mAP.
- ``clothing/validation``: 341 photos, 10 classes as groups: mAP, precision@1, precision@10.

Each set is embedded once (embedding cache off, so the timing is real) and the
same embeddings are indexed with each metric (``create(..., model=None)``).
The numbers are compared with the data README's figures for plain SqueezeNet
average-pooled features, which lookalike must not fall below.

Usage:
    python benchmarks/quality.py [--data ../shared/data] [--out benchmarks/results/quality.json]
        [--metrics euclidean,cosine] [--html benchmarks/results/quality-html]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

import lookalike as lk

ROOT = Path(__file__).resolve().parents[1]

#: Folder under --data -> the metrics shown in the table.
DATASETS = {
    "neardup": ("N-S", "mAP", "precision@1"),
    "clothing/validation": ("mAP", "precision@1", "precision@10"),
}
#: Plain 512-d average-pooled SqueezeNet features, from the data README.
REFERENCE = {
    ("neardup", "euclidean"): {"N-S": 1.98},
    ("neardup", "cosine"): {"N-S": 2.18},
    ("clothing/validation", "euclidean"): {"mAP": 0.30},
    ("clothing/validation", "cosine"): {"mAP": 0.35},
}


def labelled_images(folder: Path) -> pd.DataFrame:
    """``path, group`` of every image in ``folder``, the group being its top-level sub-folder."""
    table = lk.load_images(folder)[["path"]]
    table["group"] = [Path(p).relative_to(folder).parts[0] for p in table["path"]]
    return table


def measure(name: str, folder: Path, metrics: list[str], html_dir: Path | None) -> dict:
    table = labelled_images(folder)
    started = time.perf_counter()
    embedded = lk.create(table[["path"]], verbose=True, cache=False)
    embed_seconds = time.perf_counter() - started
    kept = embedded.labels  # row numbers of the images that could be read
    vectors = pd.DataFrame({"path": table["path"].to_numpy()[kept], "embedding": list(embedded.embeddings)})
    groups = table["group"].to_numpy()[kept]
    result = {
        "images": len(table),
        "groups": int(table["group"].nunique()),
        "failures": int(len(embedded.failures)),
        "embed_seconds": round(embed_seconds, 2),
        "images_per_second": round(len(kept) / embed_seconds, 1),
        "metrics": {},
    }
    for metric in metrics:
        model = lk.create(vectors, feature="embedding", model=None, metric=metric, verbose=False)
        report = lk.evaluate_model(model, groups, k=(1, 4, 10), verbose=False)
        reference = REFERENCE.get((name, metric), {})
        result["metrics"][metric] = {
            **{key: None if value is None else round(value, 4) for key, value in report.metrics.items()},
            "evaluate_seconds": round(report.seconds, 3),
            "reference": reference,
            "meets_reference": all(report.metrics[key] >= value for key, value in reference.items()),
        }
        if html_dir is not None:
            html_dir.mkdir(parents=True, exist_ok=True)
            report.to_html(html_dir / f"{name.replace('/', '-')}-{metric}.html")
    return result


def markdown(results: dict) -> str:
    lines = [
        "| dataset | metric | scores | reference (plain SqueezeNet) |",
        "|---|---|---|---|",
    ]
    for name, result in results["datasets"].items():
        shown = DATASETS[name]
        for metric, values in result["metrics"].items():
            scores = ", ".join(f"{key} {values[key]:.3f}" for key in shown if values[key] is not None)
            reference = ", ".join(f"{key} {value:.2f}" for key, value in values["reference"].items()) or "-"
            verdict = "" if values["meets_reference"] else " **below**"
            lines.append(f"| {name} ({result['images']} images) | {metric} | {scores} | {reference}{verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    parser.add_argument("--metrics", default="euclidean,cosine", help="comma-separated distance metrics")
    parser.add_argument("--html", type=Path, help="also write an HTML report of the worst queries per run here")
    args = parser.parse_args()
    missing = [name for name in DATASETS if not (args.data / name).is_dir()]
    if missing:
        sys.exit(f"missing data under {args.data}: {', '.join(missing)}")
    results = {
        "benchmark": "quality",
        "lookalike": lk.__version__,
        "model": "squeezenet_v1.1",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "datasets": {},
    }
    started = time.perf_counter()
    for name in DATASETS:
        results["datasets"][name] = measure(name, args.data / name, args.metrics.split(","), args.html)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nwritten to {args.out} ({results['total_seconds']} s)")


if __name__ == "__main__":
    main()
