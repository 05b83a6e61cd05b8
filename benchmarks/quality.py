"""Retrieval quality of every descriptor variant of each network on the shared labelled photo sets.

- ``neardup``: groups of 4 near-duplicates: UKBench N-S and mAP.
- ``clothing/validation``: 341 photos, 10 classes as groups: mAP, precision@1,
  precision@10; plus LDA learned from ``clothing/train`` (seed 003).

Each variant goes through the public API: ``create(files, descriptor=...)``
for what runs in the ONNX graph (the embedding cache is on, so a re-run only
scores), ``create(vectors, model=None, descriptor={"whiten": True})`` for
PCA-whitening fitted on the references, and ``create(train, train_label=...)``
then ``create(validation, projection=...)`` for LDA. Plain average-pooled
features are compared with the data README's figures, which lookalike must
not fall below.

Networks are given as NAME or NAME:PRECISION (``efficientnet_lite0:fp32``);
each has its own entry in the results file, and a run replaces only its own.

Usage:
    python benchmarks/quality.py [--models efficientnet_lite0,squeezenet_v1.1] [--data ../shared/data]
        [--out benchmarks/results/quality.json] [--groups 500] [--variants plain,gem,...] [--html DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import lookalike as lk
from lookalike.embed.registry import DEFAULT_MODEL
from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]

#: Variant name -> (descriptor computed in the graph, whiten on the references, metric).
VARIANTS = {
    "plain": ({}, False, "euclidean"),
    "plain-cosine": ({}, False, "cosine"),
    "plain+whiten": ({"normalize": True}, True, "euclidean"),
    "gem": ({"pooling": "gem", "normalize": True}, False, "euclidean"),
    "gem+whiten (fast)": ({"pooling": "gem", "normalize": True}, True, "euclidean"),
    "gem+flip": ({"pooling": "gem", "flip": True, "normalize": True}, False, "euclidean"),
    "gem+flip+whiten": ({"pooling": "gem", "flip": True, "normalize": True}, True, "euclidean"),
    "gem+flip+2 scales": (
        {"pooling": "gem", "flip": True, "scales": (1.0, 1.43), "normalize": True},
        False,
        "euclidean",
    ),
    "gem+flip+2 scales+whiten (best)": (
        {"pooling": "gem", "flip": True, "scales": (1.0, 1.43), "normalize": True},
        True,
        "euclidean",
    ),
}
#: Variants whose learned (LDA) version is measured on clothing/validation.
LDA_VARIANTS = ("plain", "gem", "gem+flip+2 scales")
#: Plain 512-d average-pooled SqueezeNet features, from the data README (full sets).
REFERENCE = {
    ("neardup", "plain"): {"N-S": 1.98},
    ("neardup", "plain-cosine"): {"N-S": 2.18},
    ("clothing/validation", "plain"): {"mAP": 0.30},
    ("clothing/validation", "plain-cosine"): {"mAP": 0.35},
}
SHOWN = {"neardup": ("N-S", "mAP", "precision@1"), "clothing/validation": ("mAP", "precision@1", "precision@10")}


def labelled_images(folder: Path, groups: int | None = None) -> pd.DataFrame:
    """``path, group`` of every image in ``folder`` (the first ``groups`` sub-folders when given)."""
    table = lk.load_images(folder)[["path"]]
    table["group"] = [Path(p).relative_to(folder).parts[0] for p in table["path"]]
    if groups is not None:
        table = table[table["group"].isin(sorted(table["group"].unique())[:groups])].reset_index(drop=True)
    return table


class Features:
    """Raw descriptors of one labelled set, per in-graph descriptor, through ``create`` (cached)."""

    def __init__(self, table: pd.DataFrame, network: str, precision: str | None):
        self.table, self.network, self.precision = table, network, precision
        self._done: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}

    def get(self, descriptor: dict) -> tuple[np.ndarray, np.ndarray]:
        key = json.dumps(descriptor, sort_keys=True)
        if key not in self._done:
            started = time.perf_counter()
            model = lk.create(
                self.table[["path"]],
                feature="path",
                model=self.network,
                precision=self.precision,
                descriptor=descriptor or "plain",
                verbose=False,
            )
            self._done[key] = (np.asarray(model.raw_embeddings), model.labels, time.perf_counter() - started)
        vectors, kept, _ = self._done[key]
        return vectors, kept


def score(vectors: np.ndarray, groups: np.ndarray, metric: str, whiten: bool, projection=None):
    model = lk.create(
        vectors, model=None, metric=metric, descriptor={"whiten": whiten}, projection=projection, verbose=False
    )
    return lk.evaluate_model(model, groups, k=(1, 4, 10), verbose=False)


def rounded(report) -> dict:
    return {key: None if value is None else round(value, 4) for key, value in report.metrics.items()}


def measure(
    network: tuple[str, str | None],
    name: str,
    table: pd.DataFrame,
    variants: list[str],
    html_dir: Path | None,
    train=None,
    compare: bool = True,
) -> dict:
    features = Features(table, *network)
    train_features = Features(train, *network) if train is not None else None
    result = {"images": len(table), "groups": int(table["group"].nunique()), "variants": {}}
    for variant in variants:
        descriptor, whiten, metric = VARIANTS[variant]
        vectors, kept = features.get(descriptor)
        groups = table["group"].to_numpy()[kept]
        report = score(vectors, groups, metric, whiten)
        # The README's figures are for the whole sets: a subset of groups is easier, so no comparison then.
        reference = REFERENCE.get((name, variant), {}) if compare and network[0] == "squeezenet_v1.1" else {}
        entry = {**rounded(report), "metric": metric, "reference": reference}
        entry["meets_reference"] = all(report.metrics[key] >= value - 0.005 for key, value in reference.items())
        result["variants"][variant] = entry
        print(f"  {name} {variant}: " + ", ".join(f"{k} {entry[k]}" for k in SHOWN[name]), flush=True)
        if html_dir is not None:
            html_dir.mkdir(parents=True, exist_ok=True)
            report.to_html(html_dir / f"{name.replace('/', '-')}-{variant.split(' ')[0]}.html")
        if train_features is not None and variant in LDA_VARIANTS:
            train_vectors, train_kept = train_features.get(descriptor)
            learned = lk.create(
                pd.DataFrame({"v": list(train_vectors), "cls": train["group"].to_numpy()[train_kept]}),
                feature="v",
                model=None,
                train_label="cls",
                verbose=False,
            )
            lda = score(vectors, groups, "euclidean", False, projection=learned.projection)
            result["variants"][f"{variant}+LDA"] = {**rounded(lda), "metric": "euclidean", "trained_on": "train"}
            print(f"  {name} {variant}+LDA: mAP {lda.metrics['mAP']:.4f}", flush=True)
    result["embed_seconds"] = {k: round(v[2], 1) for k, v in features._done.items()}
    return result


def markdown(results: dict) -> str:
    lines = ["| network | dataset | variant | scores | reference (plain) |", "|---|---|---|---|---|"]
    for network, entry in results["networks"].items():
        for name, result in entry["datasets"].items():
            for variant, values in result["variants"].items():
                scores = ", ".join(f"{key} {values[key]:.3f}" for key in SHOWN[name] if values.get(key) is not None)
                reference = ", ".join(f"{k} {v:.2f}" for k, v in values.get("reference", {}).items()) or "-"
                verdict = "" if values.get("meets_reference", True) else " **below**"
                lines.append(
                    f"| {network} | {name} ({result['images']}) | {variant} | {scores} | {reference}{verdict} |"
                )
    return "\n".join(lines)


def parse_network(text: str) -> tuple[str, str | None]:
    """NAME or NAME:PRECISION."""
    name, _, precision = text.partition(":")
    return name, precision or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", default=DEFAULT_MODEL, help="comma-separated NAME[:PRECISION] (default: %(default)s)"
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    parser.add_argument("--groups", type=int, help="only the first N near-duplicate groups (default: all 500)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--html", type=Path, help="also write an HTML report of the worst queries per variant here")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    missing = [n for n in ("neardup", "clothing/validation", "clothing/train") if not (args.data / n).is_dir()]
    if missing:
        sys.exit(f"missing data under {args.data}: {', '.join(missing)}")
    # One entry per network: a run replaces its own and keeps the others' (measured on other days).
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "networks" not in results:
        results = {"benchmark": "quality", "networks": {}}
    neardup = labelled_images(args.data / "neardup", args.groups)
    validation = labelled_images(args.data / "clothing" / "validation")
    train = labelled_images(args.data / "clothing" / "train")
    for text in args.models.split(","):
        network = parse_network(text)
        print(f"{text}:", flush=True)
        started = time.perf_counter()
        entry = {"lookalike": lk.__version__, "machine": machine_info(), "datasets": {}}
        entry["datasets"]["neardup"] = measure(
            network, "neardup", neardup, variants, args.html, compare=args.groups is None
        )
        entry["datasets"]["clothing/validation"] = measure(
            network, "clothing/validation", validation, variants, args.html, train
        )
        entry["total_seconds"] = round(time.perf_counter() - started, 1)
        results["networks"][text] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
