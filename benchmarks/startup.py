"""How long `lookalike` takes to start: `--help`, `info`, and `query` of one photo, before and after a change.

Each command runs in a fresh process, as a person runs it, against the code of
two commits side by side in one run: ``--before`` (default ``main``, exported
with ``git archive``) and this working tree. Every time is also given as a
ratio to ``python -c pass`` measured in the same rounds, so that a busy or a
slower machine does not read as a slower start. Rounds alternate the commands
and the two trees; the median of the rounds is reported.

The model is built once, by this tree, over the first ``--photos`` photos of
``../shared/data/neardup`` (1,000 by default; the query is a photo not in it),
with an embedding cache of its own, so that nothing of the user's is touched.
Both trees read it: the saved format is the same.

Usage:
    python benchmarks/startup.py [--before main] [--photos 1000] [--rounds 7]
        [--data ../shared/data] [--out benchmarks/results/startup.json]
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

from machine import exported, machine_info

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict[str, str]) -> float:
    """Seconds one run of ``command`` takes, from start to exit (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr.decode()[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="main", help="the commit to compare with (default: main)")
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "startup.json")
    args = parser.parse_args()
    photos = sorted((args.data / "neardup").rglob("*.jpg"))
    if len(photos) <= args.photos:
        sys.exit(f"need more than {args.photos} photos under {args.data / 'neardup'}")
    report = {
        "benchmark": "startup",
        "machine": machine_info(),
        "before": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", args.before], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "after": "working tree at "
        + subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "photos": args.photos,
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory(prefix="lookalike-startup-") as temp:
        temp = Path(temp)
        (temp / "before").mkdir()
        trees = {"before": exported(args.before, temp / "before"), "after": ROOT / "src"}
        envs = {
            side: {**os.environ, "PYTHONPATH": str(src), "LOOKALIKE_CACHE": str(temp / "cache")}
            for side, src in trees.items()
        }
        model, query = temp / "photos.lookalike", str(photos[args.photos])
        lookalike = [sys.executable, "-m", "lookalike.cli"]
        listed = temp / "photos.txt"
        listed.write_text("".join(f"{p}\n" for p in photos[: args.photos]))
        subprocess.run([*lookalike, "index", str(listed), "-o", str(model), "-q"], env=envs["after"], check=True)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "--help": [*lookalike, "--help"],
            "info": [*lookalike, "info", str(model)],
            "query": [*lookalike, "query", str(model), query, "-k", "5", "-q"],
        }
        for side in trees:  # the first query builds the network into the cache: not a start-up cost
            timed(commands["query"], envs[side])
        seconds: dict[str, dict[str, list[float]]] = {name: {"before": [], "after": []} for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                for side in trees:
                    seconds[name][side].append(timed(command, envs[side]))
    base = {side: statistics.median(seconds["python -c pass"][side]) for side in trees}
    report["results"] = {
        name: {
            **{f"{side}_s": round(statistics.median(times[side]), 3) for side in trees},
            **{f"{side}_ratio": round(statistics.median(times[side]) / base[side], 1) for side in trees},
        }
        for name, times in seconds.items()
    }
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))


if __name__ == "__main__":
    main()
