"""Two source trees of lookalike side by side: ``import lookalike`` time and end-to-end indexing time.

For a change that should cost nothing (a restructuring), run the tree before
and the tree after in one run, alternating, on the same machine:

    git worktree add /tmp/before <commit>
    python benchmarks/trees.py --before /tmp/before --after . -o benchmarks/results/trees.json

Each tree runs in fresh processes with ``PYTHONPATH=<tree>/src``. Indexing is
``lookalike index`` of ``--images`` (default: the 2,000 photos of
``../shared/data/neardup``) with an empty embedding cache each time (the
converted networks stay cached, as on a user's second run), so the network
runs on every image.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info

HERE = Path(__file__).resolve().parent


def timed(command: list[str], tree: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**env, "PYTHONPATH": str(tree / "src")}, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--images", type=Path, default=HERE.parent.parent / "shared" / "data" / "neardup")
    parser.add_argument("--imports", type=int, default=15, help="fresh processes per tree for the import time")
    parser.add_argument("--indexings", type=int, default=3, help="indexing runs per tree")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "results" / "trees.json")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    result: dict = {
        "machine": machine_info(),
        "images": str(args.images),
        "trees": {k: str(v) for k, v in trees.items()},
    }
    env = dict(os.environ)
    imports: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.imports):
        for name, tree in trees.items():
            imports[name].append(timed([sys.executable, "-c", "import lookalike"], tree, env))
    indexing: dict[str, list[float]] = {name: [] for name in trees}
    cli = "import sys; from lookalike.cli import main; sys.exit(main(sys.argv[1:]))"
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        for run in range(args.indexings + 1):  # the first round only builds the networks into the cache
            for name, tree in trees.items():
                for stale in cache.glob("embeddings.sqlite*"):
                    stale.unlink()
                command = [sys.executable, "-c", cli, "index", str(args.images), "-o", f"{scratch}/{name}{run}", "-q"]
                seconds = timed(command, tree, {**env, "LOOKALIKE_CACHE": str(cache)})
                if run:
                    indexing[name].append(seconds)
    for what, runs in (("import_s", imports), ("index_s", indexing)):
        result[what] = {
            name: {"median": round(statistics.median(v), 3), "runs": [round(x, 3) for x in v]}
            for name, v in runs.items()
        }
        result[what]["after_over_before"] = round(
            runs and statistics.median(runs["after"]) / statistics.median(runs["before"]), 3
        )
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("import_s", "index_s")}, indent=2))


if __name__ == "__main__":
    main()
