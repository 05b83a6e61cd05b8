"""lookalike beside fastdup, a peer with its own embedded ONNX model, on the same photos in one run.

fastdup (Visual Layer; non-commercial license: a benchmark comparison only,
never a dependency) runs offline from its PyPI wheel. Install it into a venv of
its own: ``python3 -m venv /work/fastdup-venv && /work/fastdup-venv/bin/pip
install fastdup`` and pass that Python with ``--fastdup-python``.

On the 2,000 ``neardup`` photos, in alternating rounds (lookalike, fastdup,
lookalike, ...) so that both see the same machine, each tool runs in a fresh
process with an empty cache / work folder:

- lookalike: ``lk.create(folder)`` then ``model.save`` (what ``lookalike index``
  does: embed, index, save), the default network and descriptor;
- fastdup: ``fastdup.create(work_dir, input_dir).run()`` with its defaults
  (embed, k-NN graph, connected components, image statistics).

Reported per tool: wall time of the whole process (start-up and imports
included: what a user waits for) and of the work alone, peak RSS, and the
retrieval quality of its embeddings on the same photos (UKBench N-S and mAP,
cosine; fastdup's 576-d features read with ``fastdup.load_binary_feature``).

Usage:
    python benchmarks/fastdup_peer.py --fastdup-python /work/fastdup-venv/bin/python
        [--data ../shared/data] [--rounds 3] [--out benchmarks/results/fastdup_peer.json]
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

import lookalike as lk
from lookalike.embed.registry import DEFAULT_MODEL, get_spec
from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]

# Each tool's child process prints one JSON line: its working seconds and its peak RSS (itself and any child).
PEAK = (
    "import resource\n"
    "def peak_mb():\n"
    "    return max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024\n"
)
LOOKALIKE = PEAK + (
    "import json, sys, time\n"
    "started = time.perf_counter()\n"
    "import lookalike as lk\n"
    "model = lk.create(sys.argv[1], model=sys.argv[3], precision=sys.argv[4], verbose=False)\n"
    "model.save(sys.argv[2])\n"
    "print(json.dumps({'work_s': time.perf_counter() - started, 'images': len(model.labels), 'peak_rss_mb': peak_mb()}))\n"
)
FASTDUP = PEAK + (
    "import json, sys, time\n"
    "started = time.perf_counter()\n"
    "import fastdup\n"
    "fastdup.create(work_dir=sys.argv[2], input_dir=sys.argv[1]).run(overwrite=True, verbose=False)\n"
    "names, _ = fastdup.load_binary_feature(sys.argv[2] + '/atrain_features.dat', d=576)\n"
    "print(json.dumps({'work_s': time.perf_counter() - started, 'images': len(names), 'peak_rss_mb': peak_mb()}))\n"
)


def run(command: list[str], env: dict[str, str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": wall}


def quality(vectors: np.ndarray, groups: list[str]) -> dict:
    model = lk.create(np.asarray(vectors, np.float32), model=None, metric="cosine", verbose=False)
    metrics = lk.evaluate_model(model, np.asarray(groups), verbose=False).metrics
    return {"N-S": round(float(metrics["N-S"]), 4), "mAP": round(float(metrics["mAP"]), 4)}


def fastdup_features(python: str, work_dir: Path) -> tuple[list[str], np.ndarray]:
    code = (
        "import fastdup, json, sys, numpy as np\n"
        "names, x = fastdup.load_binary_feature(sys.argv[1] + '/atrain_features.dat', d=576)\n"
        "np.save(sys.argv[1] + '/features.npy', x)\n"
        "print(json.dumps(list(names)))\n"
    )
    done = subprocess.run([python, "-c", code, str(work_dir)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(work_dir / "features.npy")


def summary(runs: list[dict]) -> dict:
    keys = ("wall_s", "work_s", "peak_rss_mb")
    return {f"{k}_median": round(float(np.median([r[k] for r in runs])), 2) for k in keys} | {"runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fastdup-python", required=True, help="the Python of a venv with fastdup installed")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--precision", help="int8 or fp32 (default: the network's own)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fastdup_peer.json")
    args = parser.parse_args()
    folder = args.data / "neardup"
    if not folder.is_dir():
        sys.exit(f"no {folder}: pass --data")
    precision = get_spec(args.model).with_precision(args.precision).precision
    report = {
        "benchmark": "fastdup_peer",
        "photos": str(folder),
        "lookalike": {"model": args.model, "precision": precision, "version": lk.__version__},
        "machine": machine_info(),
    }
    runs: dict[str, list[dict]] = {"lookalike": [], "fastdup": []}
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        work = Path(tmp)
        for round_ in range(args.rounds):
            for tool in ("lookalike", "fastdup") if round_ % 2 == 0 else ("fastdup", "lookalike"):
                target = work / f"{tool}-{round_}"
                shutil.rmtree(target, ignore_errors=True)
                if tool == "lookalike":
                    env = {**os.environ, "LOOKALIKE_CACHE": str(work / f"cache-{round_}")}
                    # The converted networks are reused (a one-time build per machine), the embeddings are not.
                    models = Path(lk.config.cache_dir()) / "models"
                    if models.is_dir():
                        shutil.copytree(models, work / f"cache-{round_}" / "models")
                    command = [sys.executable, "-c", LOOKALIKE, str(folder), str(target), args.model, precision]
                else:
                    env = dict(os.environ)
                    command = [args.fastdup_python, "-c", FASTDUP, str(folder), str(target)]
                result = run(command, env)
                runs[tool].append(result)
                print(f"round {round_ + 1} {tool}: {json.dumps(result)}", flush=True)
        report["tools"] = {tool: summary(tool_runs) for tool, tool_runs in runs.items()}
        names, vectors = fastdup_features(args.fastdup_python, work / "fastdup-0")
        report["tools"]["fastdup"]["quality"] = quality(vectors, [Path(n).parent.name for n in names])
        ours = lk.load_model(work / "lookalike-0")
        groups = [Path(p).parent.name for p in ours.references["path"]]
        report["tools"]["lookalike"]["quality"] = quality(np.asarray(ours.embeddings), groups)
    report["machine"]["load_average_at_end"] = machine_info()["load_average"]
    ours, theirs = report["tools"]["lookalike"], report["tools"]["fastdup"]
    report["ratios"] = {
        "wall_time_lookalike_over_fastdup": round(ours["wall_s_median"] / theirs["wall_s_median"], 3),
        "work_time_lookalike_over_fastdup": round(ours["work_s_median"] / theirs["work_s_median"], 3),
        "peak_rss_lookalike_over_fastdup": round(ours["peak_rss_mb_median"] / theirs["peak_rss_mb_median"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("ratios",)}, indent=2))
    for tool, values in report["tools"].items():
        print(
            f"{tool}: wall {values['wall_s_median']:.1f} s (work {values['work_s_median']:.1f} s), "
            f"peak RSS {values['peak_rss_mb_median']:.0f} MB, N-S {values['quality']['N-S']}, mAP {values['quality']['mAP']}"
        )


if __name__ == "__main__":
    main()
