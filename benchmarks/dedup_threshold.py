"""Choose and check the default dedup threshold of the default network, per descriptor and metric.

On ../shared/data/neardup (500 folders x 4 near-duplicate JPEGs: an original and
three hard edits, crop / rotate / overlay), every pair of images is labelled
"same folder" or not. For each metric the chosen threshold is the largest
distance at which at least 99% of the pairs within it are true near-duplicates
(pair precision >= 0.99) and at most 1 in 10,000 pairs of the 341
clothing/validation photos (distinct garments, often photographed alike) is
linked; its precision and recall are reported for all pairs,
per kind of edit, and for the groups ``find_duplicates`` forms (connected
components, so pairs linked through a chain count too). Recall is also
measured on easy near-duplicates made here from the 250 imagenet-sample photos
(half-size, JPEG quality 30, 90% centre crop), and false links among those 250
distinct photos are counted, and so are the links among the 341 clothing/validation
photos: different garments, often of one class photographed on the same background,
a harder test of false links than imagenet-sample's unrelated scenes (most of the
few pairs it links are different garments; a handful may be true duplicates).

Distances depend on the network, its precision and the descriptor (plain vectors
are raw averages, gem ones have unit length), so each combination gets its own
thresholds; the results file keeps one entry per network and descriptor, and a run
replaces only its own.

Run: python benchmarks/dedup_threshold.py [--model efficientnet_lite0] [--precision int8] [--descriptor gem]
     -> benchmarks/results/dedup_threshold.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import lookalike as lk
from lookalike.dedup import find_duplicates
from lookalike.embed.registry import DEFAULT_DESCRIPTOR, DEFAULT_MODEL, DESCRIPTORS, get_spec
from machine import machine_info

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "dedup_threshold.json"
TARGET_PRECISION = 0.99
#: At most 1 in 10,000 pairs of distinct product photos linked. GeM at the precision rule alone
#: (cosine 0.16) linked 52 of clothing/validation's 57,970 pairs, jeans next to shorts on the same
#: hanger among them; plain's 0.12 linked 4, which this rule keeps.
MAX_DISTINCT_LINK_RATE = 1e-4


def pair_distances(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Dense distances of a 2,000-image evaluation set (a measurement script; the library never does this)."""
    v = vectors.astype(np.float64)
    if metric == "cosine":
        unit = v / np.linalg.norm(v, axis=1, keepdims=True)
        return np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    sq = (v * v).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * v @ v.T, 0.0))


def pr(within: np.ndarray, positive: np.ndarray) -> dict:
    tp = int((within & positive).sum())
    linked = int(within.sum())
    return {
        "precision": round(tp / linked, 4) if linked else None,
        "recall": round(tp / int(positive.sum()), 4),
        "pairs_linked": linked,
        "true_pairs": int(positive.sum()),
    }


def choose(distances: np.ndarray, positive: np.ndarray, distinct: np.ndarray) -> float:
    """Largest threshold that keeps both rules, rounded down to 2 significant digits.

    - pair precision >= TARGET_PRECISION on neardup (``distances``, ``positive``);
    - at most MAX_DISTINCT_LINK_RATE of the pairs of ``distinct`` linked: photos of different
      products taken alike (clothing/validation), the hard case for a tool that deletes files.
    """
    order = np.argsort(distances, kind="stable")
    hits = np.cumsum(positive[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precision >= TARGET_PRECISION)
    best = distances[order][ok[-1]]
    allowed = int(MAX_DISTINCT_LINK_RATE * len(distinct))
    if allowed < len(distinct):  # stay below the first distinct pair past the allowance
        best = min(best, np.nextafter(np.partition(distinct, allowed)[allowed], 0))
    scale = 10 ** (np.floor(np.log10(best)) - 1)
    return round(float(np.floor(best / scale) * scale), 6)


def looser(distances: np.ndarray, positive: np.ndarray, threshold: float) -> dict:
    """What a looser threshold would do: the nearest wrong pair, and precision/recall at multiples of ``threshold``."""
    curve = {}
    for factor in (1.25, 1.5, 2.0, 2.5):
        curve[f"{factor:g}x"] = {
            "threshold": round(threshold * factor, 6),
            **pr(distances <= threshold * factor, positive),
        }
    return {"nearest_wrong_pair": round(float(distances[~positive].min()), 6), "at_multiples": curve}


def easy_variants(folder: Path) -> list[tuple[Path, Path]]:
    """(original, edited copy) pairs: half size, JPEG quality 30, 90% centre crop of each imagenet-sample photo."""
    pairs = []
    for source in sorted((DATA / "imagenet-sample").glob("*.JPEG")):
        image = Image.open(source).convert("RGB")
        w, h = image.size
        edits = {
            "half": image.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS),
            "q30": image,
            "crop90": image.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
        }
        for name, edited in edits.items():
            target = folder / f"{source.stem}.{name}.jpg"
            edited.save(target, "JPEG", quality=30 if name == "q30" else 90)
            pairs.append((source, target))
    return pairs


def measure(network: str, precision: str | None, descriptor: str) -> dict:
    """The thresholds of ``descriptor`` on ``network`` for each metric, with their precision and recall."""
    started = time.perf_counter()
    machine = machine_info()

    def create(data, **options):
        return lk.create(data, model=network, precision=precision, descriptor=descriptor, verbose=False, **options)

    neardup = sorted((DATA / "neardup").rglob("*.jpg"))
    model = create([str(p) for p in neardup])
    paths = model.references["path"].to_numpy()
    groups = np.array([Path(p).parent.name for p in paths])
    edits = np.array([Path(p).stem for p in paths])
    upper = np.triu_indices(len(paths), 1)
    same = (groups[:, None] == groups[None, :])[upper]
    with tempfile.TemporaryDirectory() as tmp:
        easy = easy_variants(Path(tmp))
        easy_model = create([str(p) for pair in easy for p in pair])
        easy_vectors = easy_model.embeddings.reshape(len(easy), 2, -1)
        originals = create(sorted(str(p) for p in (DATA / "imagenet-sample").glob("*.JPEG")))
    clothing = create(sorted(str(p) for p in (DATA / "clothing" / "validation").rglob("*.jpg")))
    results = {
        "neardup_images": len(paths),
        "target_pair_precision": TARGET_PRECISION,
        "max_distinct_link_rate": MAX_DISTINCT_LINK_RATE,
        "metrics": {},
    }
    for metric in ("cosine", "euclidean"):
        full = pair_distances(model.embeddings, metric)
        distances = full[upper]
        garments = pair_distances(clothing.embeddings, metric)[np.triu_indices(len(clothing.labels), 1)]
        threshold = choose(distances, same, garments)
        entry = {"threshold": threshold, "pairs": pr(distances <= threshold, same), "by_edit": {}}
        for edit in ("crop", "rotate", "overlay"):
            rows = np.flatnonzero(edits == "original")
            cols = np.array([np.flatnonzero((groups == groups[r]) & (edits == edit))[0] for r in rows])
            entry["by_edit"][f"original-{edit}"] = {"recall": round(float((full[rows, cols] <= threshold).mean()), 4)}
        entry["looser"] = looser(distances, same, threshold)
        same_metric = create(model.references, metric=metric)
        dups = find_duplicates(same_metric, threshold=threshold)
        component = np.full(len(paths), -1)
        component[dups["label"].to_numpy()] = dups["group"].to_numpy()
        linked = ((component[:, None] == component[None, :]) & (component[:, None] >= 0))[upper]
        entry["groups"] = {**pr(linked, same), "groups_found": int(dups["group"].nunique())}
        easy_d = np.array([pair_distances(pair, metric)[0, 1] for pair in easy_vectors])
        entry["easy_edits_recall"] = {
            name: round(float((easy_d[i::3] <= threshold).mean()), 4)
            for i, name in enumerate(("half", "q30", "crop90"))
        }
        distinct = pair_distances(originals.embeddings, metric)[np.triu_indices(len(originals.labels), 1)]
        entry["imagenet_sample_false_links"] = int((distinct <= threshold).sum())
        entry["imagenet_sample_pairs"] = int(len(distinct))
        entry["clothing_validation_links"] = int((garments <= threshold).sum())
        entry["clothing_validation_pairs"] = int(len(garments))
        results["metrics"][metric] = entry
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["machine"] = machine
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--descriptor",
        default=DEFAULT_DESCRIPTOR,
        # A whitening is fitted on each reference set, so its distances mean nothing across sets: no default.
        choices=sorted(name for name, preset in DESCRIPTORS.items() if not preset.whiten),
        help="descriptor preset to calibrate (default: %(default)s, the default descriptor)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="network (default: %(default)s)")
    parser.add_argument("--precision", help="int8 or fp32 (default: the network's own)")
    args = parser.parse_args()
    precision = get_spec(args.model).with_precision(args.precision).precision
    results = measure(args.model, precision, args.descriptor)
    # One entry per network and descriptor: a run replaces its own and keeps the others' (measured on other days).
    everything = json.loads(OUT.read_text()) if OUT.exists() else {}
    if "networks" not in everything:  # results written before networks had their own entries were SqueezeNet's
        everything = {"networks": {"squeezenet_v1.1:fp32": everything.get("descriptors", {})}}
    everything["networks"].setdefault(f"{args.model}:{precision}", {})[args.descriptor] = results
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(everything, indent=2) + "\n")
    json.dump({args.descriptor: results}, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
