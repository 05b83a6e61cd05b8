"""No slowdown from a change: the graph, match, dedup and query benchmarks on an older commit and on this tree.

Each benchmark's own worker (``graph_scale.py``, ``match.py``, ``dedup_scale.py``; ``query_latency.py`` whole)
runs in a fresh process against the code of ``--before`` (exported with ``git archive``) and of this working
tree, by ``PYTHONPATH``; the benchmark scripts are this tree's for both. Rounds alternate the two trees, so a
busy machine slows both alike; the median of the rounds is reported with the ratio new / old (the goal of the
architecture step, issue 28: at most 1.05 each).

    python benchmarks/before_after.py --before a7f7540 -o benchmarks/results/before_after.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import REPOSITORY, exported, machine_info

HERE = Path(__file__).resolve().parent


def cases(size: float, scratch: Path) -> dict[str, tuple[list[str], str]]:
    """Benchmark name -> (the command after ``python``, the seconds field of its JSON row)."""
    latency = scratch / "query_latency.json"
    return {
        "graph_scale (similarity_graph k=10)": (
            [str(HERE / "graph_scale.py"), "--worker", "lookalike", str(int(200_000 * size))],
            "total_s",
        ),
        "match (threshold, 13,501 x 21,221)": (
            [str(HERE / "match.py"), "--worker", "blockwise", "13501", "21221"],
            "seconds",
        ),
        "match (k=10)": ([str(HERE / "match.py"), "--worker", "blockwise_topk", "13501", "21221"], "seconds"),
        "dedup_scale (find_duplicates, auto index)": (
            [
                str(HERE / "dedup_scale.py"),
                "--worker",
                str(int(50_000 * size)),
                "auto",
                "--copies",
                str(int(2_500 * size)),
            ],
            "dedup_seconds",
        ),
        "query_latency (p50 of one photo)": (
            [str(HERE / "query_latency.py"), "--models", "efficientnet_lite0", "--references", "300"]
            + ["--queries", "100", "--rounds", "1", "--out", str(latency)],
            str(latency),
        ),
    }


def seconds(command: list[str], field: str, source: Path) -> float:
    """One run of a benchmark on the code under ``source``: the seconds it reports."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env, cwd=HERE)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} on {source} failed:\n{done.stderr[-2000:]}")
    if field.endswith(".json"):  # query_latency writes its report: the median query of the default network
        report = json.loads(Path(field).read_text())
        return report["networks"]["efficientnet_lite0"]["query (decode + embed + search)"]["p50_ms"] / 1000
    return float(json.loads(done.stdout.strip().splitlines()[-1])[field])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the older commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=float, default=1.0, help="scale of the graph and dedup sets (1: 200k, 50k)")
    parser.add_argument("--only", default="", help="run the benchmarks whose name holds this text")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "results" / "before_after.json")
    args = parser.parse_args()
    report: dict = {"machine": machine_info(), "before": args.before, "rounds": args.rounds, "results": {}}
    head = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    report["after"] = head.stdout.strip() + " (working tree)"
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"before": exported(args.before, Path(scratch)), "after": REPOSITORY / "src"}
        for name, (command, field) in cases(args.size, Path(scratch)).items():
            if args.only not in name:
                continue
            times: dict[str, list[float]] = {"before": [], "after": []}
            for round_number in range(args.rounds):
                order = ("before", "after") if round_number % 2 == 0 else ("after", "before")
                for tree in order:
                    times[tree].append(seconds(command, field, trees[tree]))
            before, after = statistics.median(times["before"]), statistics.median(times["after"])
            report["results"][name] = {
                "before_s": round(before, 4),
                "after_s": round(after, 4),
                "ratio": round(after / before, 3),
                "runs": {tree: [round(t, 4) for t in found] for tree, found in times.items()},
            }
            print(name, json.dumps(report["results"][name]), flush=True)
            report["machine"]["load_average_at_end"] = machine_info()["load_average"]
            args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
