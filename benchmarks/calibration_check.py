"""Does calibration on a collection's own photos predict what dedup finds of real edits? Checked on neardup.

The collection is the ``--groups`` originals of ../shared/data/neardup. ``model.calibrate_duplicates()``
makes its own copies of ``--sample`` of them (each kind of ``lookalike.dedup.calibrate.COPY_KINDS``) and
predicts, per threshold, the share of each kind of copy found. neardup's own edits of every original
(crop, rotate, overlay: made by other code, with other random draws) give the share really found.
Reported for each hard kind and its neardup edit, at each threshold of a sweep and at the default:
predicted recall, measured recall and their difference (target: within 0.05).

    python benchmarks/calibration_check.py --groups 500 --sample 100 -o benchmarks/results/calibration_check.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import lookalike as lk
from lookalike.dedup import default_threshold
from lookalike.dedup.calibrate import HARD_KINDS
from lookalike.index.metrics import exact_distances
from machine import machine_info

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "neardup"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--sample", type=int, default=100, help="originals calibration copies")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results/calibration_check.json"))
    args = parser.parse_args()
    result: dict = {"machine": machine_info(), "groups": args.groups, "sample": args.sample}
    folders = sorted(p for p in DATA.iterdir() if p.is_dir())[: args.groups]
    originals = lk.create([str(f / "original.jpg") for f in folders], metric="cosine", verbose=False)
    started = time.perf_counter()
    calibration = originals.calibrate_duplicates(sample=args.sample)
    result["calibration_seconds"] = round(time.perf_counter() - started, 2)
    measured = {}
    for kind in HARD_KINDS.values():
        edits = originals.extract_features([str(f / f"{kind}.jpg") for f in folders], verbose=False)
        edits = originals.core.project(edits)
        measured[kind] = exact_distances("cosine", edits, originals.embeddings[:, None, :])[:, 0]
    default = default_threshold(originals.core)
    top = max(float(np.quantile(d, 0.95)) for d in measured.values())
    rows = []
    for threshold in sorted({*np.linspace(top / 10, top, 10).round(4).tolist(), default}):
        predicted = calibration.at(threshold)
        row = {"threshold": threshold}
        for ours, theirs in HARD_KINDS.items():
            row[f"{ours} predicted"] = round(predicted[f"recall {ours}"], 3)
            row[f"{theirs} measured"] = round(float(np.mean(measured[theirs] <= threshold)), 3)
            row[f"{theirs} difference"] = round(row[f"{ours} predicted"] - row[f"{theirs} measured"], 3)
        rows.append(row)
    result["default_threshold"] = default
    result["sweep"] = rows
    differences = {theirs: [abs(r[f"{theirs} difference"]) for r in rows] for theirs in HARD_KINDS.values()}
    result["largest_difference"] = {kind: max(values) for kind, values in differences.items()}
    result["at_default"] = next(r for r in rows if r["threshold"] == default)
    result["machine_after"] = machine_info()["load_average"]
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("at_default", "largest_difference")}, indent=2))


if __name__ == "__main__":
    main()
