"""Every pair of captures of one building judged by the copy tiers: none may be a copy.

``../shared/data/landmarks`` holds 398 photos of 8 Oxford buildings, many captures of each (other days, light,
viewpoints, people). Dedup only judges the pairs its candidates give (close embeddings, matching fingerprints);
this judges all 13,475 pairs of one building directly, with local features, the hardest negatives there are for a
test of "one capture". Reported: the tiers given, every pair given a copy tier (there must be none), how the aligned
pairs' changed share is spread (the nearest misses), and the time.

    python benchmarks/landmark_pairs.py -o benchmarks/results/landmark_pairs.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from pathlib import Path

from machine import machine_info, write_report

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "landmark_pairs.json")
    args = parser.parse_args()
    report: dict = {"machine": machine_info()}
    with tempfile.TemporaryDirectory(prefix="landmark-pairs-") as cache:
        os.environ["LOOKALIKE_CACHE"] = cache  # verdicts judged now, not read from an earlier run's cache
        from lookalike.config import cpu_count
        from lookalike.dedup.tiers import COPY_TIERS, Sameness

        pairs = []
        for building in sorted(p for p in (args.data / "landmarks").iterdir() if p.is_dir()):
            pairs += list(combinations(sorted(str(p) for p in building.glob("*.jpg")), 2))
        judge = Sameness(edits=True)
        started = time.perf_counter()
        with ThreadPoolExecutor(cpu_count()) as pool:
            verdicts = list(pool.map(lambda pair: judge.verdict(*pair), pairs))
        seconds = time.perf_counter() - started
    changed = Counter()
    for verdict in verdicts:
        if "% of the aligned overlap differs" in verdict.reason or "% differs" in verdict.reason:
            share = int(verdict.reason.split("%")[0].split()[-1])
            changed[f"{share // 5 * 5}-{share // 5 * 5 + 4}%"] += 1
    report.update(
        {
            "pairs": len(pairs),
            "tiers": dict(Counter(v.tier for v in verdicts)),
            "copies": [
                [a, b, v.tier, v.reason] for (a, b), v in zip(pairs, verdicts, strict=True) if v.tier in COPY_TIERS
            ],
            "aligned_changed_share": dict(sorted(changed.items(), key=lambda item: int(item[0].split("-")[0]))),
            "seconds": round(seconds, 1),
            "ms_per_pair": round(1000 * seconds / max(len(pairs), 1), 2),
        }
    )
    write_report(report, args.output)


if __name__ == "__main__":
    main()
