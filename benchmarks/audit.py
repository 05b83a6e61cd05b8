"""``lookalike audit`` beside cleanvision and fastdup on clothing photos with planted problems, and at 1M embeddings.

Part 1, photos (``benchmarks/audit_data.py`` plants the problems: 5 % of labels swapped, 100 copies across train
and validation, 25 each blurry / dark / overexposed / near-blank, 50 photos of other sets). Each tool runs in a
fresh process of its own venv with an empty cache (lookalike keeps only its converted network, as an install
would), alternating, on the same files; wall time is the whole process (imports, embedding, everything):

- lookalike: ``lk.audit(folder)``: indexes the folder, then audits it (classes and splits from the folders);
- cleanvision: ``Imagelab(folder).find_issues()`` (its defaults); its near/exact duplicate sets spanning the two
  splits are its leaks, the others its duplicates;
- fastdup: ``fastdup.create(work_dir, folder).run(annotations=..., nearest_neighbors_k=10)`` with the classes and
  splits as annotations; its findings as its documentation reads them: ``outliers()`` (its default 5 %
  percentile), ``invalid_instances()``, ``img_stats()`` at the thresholds of its galleries (blur < 50, mean < 13
  dark, mean > 220 bright), ``similarity()`` pairs at or above its component threshold 0.96 (across the splits:
  leaks; within: duplicates), and its "mislabel" reading of ``similarity()``: an image most of whose similar
  images (similarity >= 0.9) carry another label.

Precision counts the planted problems plus the unplanted findings a person confirmed by looking at them
(``benchmarks/audit_confirmed.json``: a sample of lookalike's unplanted findings per kind, each looked at; a
confirmed file counts for every tool that finds it); recall is over the planted problems. lookalike's expected
precision per kind is reported beside the measured one.

Part 2, scale (``--scale N``): N x 512 synthetic embeddings (a mixture of 1,000 Gaussians, as
``benchmarks/scale.py``), the mixture component as the class with 5 % of them swapped, 80/20 train/validation,
1,000 train rows copied into validation; ``similarity_graph(k=10)`` and ``model.audit()`` (leaks, label errors,
outliers) on the same model, each in a fresh process, wall time of the operation and peak RSS.

    python benchmarks/audit.py --data ../shared/data -o benchmarks/results/audit.json [--scale 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from audit_data import plant
from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("leak", "label-error", "outlier", "blurry", "dark", "bright", "low-information", "duplicate", "unreadable")

LOOKALIKE = """
import json, sys, time
started = time.perf_counter()
import lookalike as lk
report = lk.audit(sys.argv[1], verbose=False)
findings, scores = {}, {}
for row in report.findings.itertuples():
    findings.setdefault(row.kind, []).append(list(row.paths))
    scores.setdefault(row.kind, []).append(row.score)
print(json.dumps({"work_s": time.perf_counter() - started, "findings": findings, "scores": scores,
                  "kinds": report.kinds}))
"""

CLEANVISION = """
import json, sys, time
started = time.perf_counter()
from cleanvision import Imagelab
lab = Imagelab(data_path=sys.argv[1], verbose=False)
lab.find_issues(verbose=False)
issues = lab.issues
names = {"blurry": "blurry", "dark": "dark", "light": "bright", "low_information": "low-information",
         "grayscale": "grayscale", "odd_aspect_ratio": "odd-size", "odd_size": "odd-size"}
findings = {}
for issue, kind in names.items():
    column = f"is_{issue}_issue"
    if column in issues.columns:
        findings.setdefault(kind, []).extend([[p] for p in issues.index[issues[column]].tolist()])
for issue in ("exact_duplicates", "near_duplicates"):
    for group in lab.info.get(issue, {}).get("sets", []):
        group = sorted(group)
        for other in group[1:]:
            findings.setdefault("pairs", []).append([other, group[0]])
print(json.dumps({"work_s": time.perf_counter() - started, "findings": findings}))
"""

FASTDUP = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
import pandas as pd
import fastdup
root = Path(sys.argv[1])
files = sorted(str(p) for p in root.rglob("*") if p.is_file())
rel = [Path(f).relative_to(root).parts for f in files]
annotations = pd.DataFrame({"filename": files, "label": [r[1] if len(r) > 2 else "" for r in rel],
                            "split": [r[0] for r in rel]})
fd = fastdup.create(work_dir=sys.argv[2], input_dir=str(root))
fd.run(annotations=annotations, nearest_neighbors_k=10, overwrite=True, verbose=False)
findings = {}
def column(frame, *names):
    return next(frame[n] for n in names if n in frame.columns)
outliers = fd.outliers()
findings["outlier"] = [[p] for p in column(outliers, "filename_outlier", "filename").tolist()]
try:
    invalid = fd.invalid_instances()
    findings["unreadable"] = [[p] for p in column(invalid, "filename").tolist()]
except Exception:
    findings["unreadable"] = []
stats = fd.img_stats()
names = column(stats, "filename")
findings["blurry"] = [[p] for p in names[stats["blur"] < 50].tolist()]
findings["dark"] = [[p] for p in names[stats["mean"] < 13].tolist()]
findings["bright"] = [[p] for p in names[stats["mean"] > 220].tolist()]
similar = fd.similarity()
a, b = column(similar, "filename_from", "from"), column(similar, "filename_to", "to")
close = similar["distance"] >= 0.96
findings["pairs"] = [[x, y] for x, y in zip(a[close], b[close]) if x < y]
label_of = dict(zip(annotations["filename"], annotations["label"]))
votes = {}
for x, y, s in zip(a, b, similar["distance"]):
    if s >= 0.9:
        votes.setdefault(x, []).append(label_of.get(y))
findings["label-error"] = [[x] for x, v in votes.items() if sum(l != label_of.get(x) for l in v) > len(v) / 2]
print(json.dumps({"work_s": time.perf_counter() - started, "findings": findings}))
"""


def peak_mb() -> float:
    return max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def run_tool(name: str, python: str, photos: Path, work: Path, models: Path | None) -> dict:
    """One tool in a fresh process (and a fresh cache or work folder): its findings and its wall time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")} if name == "lookalike" else dict(os.environ)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if name == "lookalike":
        env["LOOKALIKE_CACHE"] = str(work)
        if models is not None:
            shutil.copytree(models, work / "models")  # the converted network, as an install leaves it
    script = {"lookalike": LOOKALIKE, "cleanvision": CLEANVISION, "fastdup": FASTDUP}[name]
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-c", script, str(photos), str(work / "fd")], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-3000:], "wall_s": round(wall, 1)}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": round(wall, 1), "work_s": round(result["work_s"], 1)}


def _split_of(path: str) -> str:
    return Path(path).parts[-3]


def _as_kinds(findings: dict) -> dict[str, list[list[str]]]:
    """A peer's copy pairs split into leaks (across splits) and duplicates (within one), as lookalike reports them."""
    out = {k: v for k, v in findings.items() if k != "pairs"}
    for pair in findings.get("pairs", []):
        kind = "leak" if _split_of(pair[0]) != _split_of(pair[1]) else "duplicate"
        out.setdefault(kind, []).append(pair)
    return out


def score(findings: dict[str, list[list[str]]], truth: dict, confirmed: dict) -> dict:
    """Precision (planted + confirmed genuine) and recall (of the planted) per kind."""
    out = {}
    for kind in KINDS:
        found = findings.get(kind, [])
        genuine = set(confirmed.get(kind, {}).get("genuine", []))
        if kind == "leak":
            planted = {frozenset(p) for p in truth["leak"]}
            hits = [frozenset(p[:2]) in planted or p[0] in genuine for p in found]
            recalled = len({frozenset(p[:2]) for p in found} & planted)
        elif kind in truth:
            planted = {p[0] if isinstance(p, list) else p for p in truth[kind]}
            hits = [p[0] in planted or p[0] in genuine for p in found]
            recalled = len({p[0] for p in found} & planted)
        else:
            planted, hits, recalled = set(), [p[0] in genuine for p in found], 0
        out[kind] = {
            "found": len(found),
            "precision": round(sum(hits) / len(found), 3) if found else None,
            "recall": round(recalled / len(planted), 3) if planted else None,
        }
    return out


def photos_part(args: argparse.Namespace, report: dict) -> None:
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    photos = work / "photos"
    planted = plant(args.data, photos, seed=0)
    report["planted"] = {kind: len(v) for kind, v in planted.items()}
    truth = {
        k: [[_relative(p, photos) for p in v] if isinstance(v, list) else _relative(v, photos) for v in vs]
        for k, vs in planted.items()
    }
    report["photos"] = sum(1 for _ in photos.rglob("*.jpg"))
    confirmed = json.loads(args.confirmed.read_text()) if args.confirmed.exists() else {}
    report["confirmed"] = {
        k: {"checked": len(v["checked"]), "genuine": len(v["genuine"])} for k, v in confirmed.items()
    }
    models = Path(args.models) if args.models else None
    # A first run on a machine converts lookalike's network into its cache; later runs start from it.
    report["lookalike_networks"] = "converted before the run (--models)" if models else "converted in each run"
    tools = {"lookalike": sys.executable, "cleanvision": args.cleanvision_python, "fastdup": args.fastdup_python}
    runs: dict[str, list[dict]] = {name: [] for name in tools}
    for _ in range(args.rounds):
        for name, python in tools.items():
            if python:
                runs[name].append(run_tool(name, python, photos, work / f"work-{name}", models))
                print(name, runs[name][-1].get("wall_s"), runs[name][-1].get("error", "")[-300:], flush=True)
    report["tools"] = {}
    for name, results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            report["tools"][name] = {"error": results[0]["error"] if results else "not run"}
            continue
        findings = {k: [[_relative(p, photos) for p in f] for f in v] for k, v in _as_kinds(ok[-1]["findings"]).items()}
        entry = {
            "wall_s": [r["wall_s"] for r in ok],
            "work_s": [r["work_s"] for r in ok],
            "kinds": score(findings, truth, confirmed),
        }
        if name == "lookalike":
            entry["expected_precision"] = {k: ok[-1]["kinds"][k]["expected_precision"] for k in KINDS}
            entry["scores"] = ok[-1]["scores"]
        report["tools"][name] = entry
        report.setdefault("findings", {})[name] = {
            k: [[_relative(p, photos) for p in f] for f in v] for k, v in findings.items()
        }
    report["truth"] = {
        k: [[_relative(p, photos) for p in (v if isinstance(v, list) else [v])] for v in vs] for k, vs in truth.items()
    }
    at_peers(report, truth, confirmed)
    shutil.rmtree(work, ignore_errors=True)


def at_peers(report: dict, truth: dict, confirmed: dict) -> None:
    """lookalike's recall at each peer's precision, kind by kind: its findings taken from the surest down (whole
    ties of score at a time) as far as their precision stays at or above the peer's. The peers each report one
    operating point; lookalike's scores give every one, so the two are compared where the peer stands."""
    ours = report["tools"].get("lookalike", {})
    if "scores" not in ours:
        return
    found, scores = report["findings"]["lookalike"], ours.pop("scores")
    compared: dict = {}
    for peer, tool in report["tools"].items():
        if peer == "lookalike" or "kinds" not in tool:
            continue
        for kind, theirs in tool["kinds"].items():
            if not theirs["precision"] or kind not in found or kind not in truth:
                continue
            ranked = sorted(zip(scores[kind], found[kind], strict=True), key=lambda pair: -pair[0])
            best = 0.0
            for cut in range(1, len(ranked) + 1):
                if cut < len(ranked) and ranked[cut][0] == ranked[cut - 1][0]:
                    continue  # a tie of scores is taken whole
                measured = score({kind: [f for _, f in ranked[:cut]]}, truth, confirmed)[kind]
                if measured["precision"] >= theirs["precision"]:
                    best = max(best, measured["recall"])
            compared.setdefault(peer, {})[kind] = {
                "precision": theirs["precision"],
                "recall": theirs["recall"],
                "lookalike_recall": best,
            }
    ours["recall_at_peer_precision"] = compared


def _relative(path: str, photos: Path) -> str:
    """A path inside the planted folder as ``photos/...`` (the folder is temporary): what the confirmations name."""
    try:
        return str(Path("photos") / Path(path).relative_to(photos))
    except ValueError:
        return path


def rescore(report: dict, confirmed: dict) -> None:
    """Score the saved findings again with the confirmations (after a person looked at a sample of them)."""
    truth = {k: [v if k in ("leak", "label-error") else v[0] for v in vs] for k, vs in report["truth"].items()}
    report["confirmed"] = {
        k: {"checked": len(v["checked"]), "genuine": len(v["genuine"])} for k, v in confirmed.items()
    }
    for name, findings in report["findings"].items():
        report["tools"][name]["kinds"] = score(findings, truth, confirmed)


def _scale_data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectors, classes (5 % swapped), splits, the swapped rows and the 1,000 copied (train, validation) pairs."""
    rng = np.random.default_rng(1)
    centres = np.random.default_rng(12345).standard_normal((1000, 512), dtype=np.float32)
    component = rng.integers(0, 1000, n)
    x = np.empty((n, 512), np.float32)
    for start in range(0, n, 100_000):
        part = component[start : start + 100_000]
        x[start : start + len(part)] = centres[part] + 0.6 * rng.standard_normal((len(part), 512), dtype=np.float32)
    split = (rng.random(n) < 0.2).astype(np.int8)  # 1: validation
    train, valid = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    copies = np.stack([rng.choice(train, 1000, replace=False), rng.choice(valid, 1000, replace=False)], axis=1)
    x[copies[:, 1]] = x[copies[:, 0]] + 0.01 * rng.standard_normal((1000, 512), dtype=np.float32)
    component[copies[:, 1]] = component[copies[:, 0]]
    classes = component.copy()
    swapped = rng.choice(n, n // 20, replace=False)
    classes[swapped] = (classes[swapped] + rng.integers(1, 1000, len(swapped))) % 1000
    return x, classes, split, swapped, copies


def scale_worker(kind: str, n: int) -> dict:
    import pandas as pd

    import lookalike as lk

    x, classes, split, swapped, copies = _scale_data(n)
    model = lk.create(x, model=None, metric="euclidean", verbose=False)
    model.references["cls"] = classes
    model.references["split"] = np.where(split == 1, "validation", "train")
    base = peak_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    out: dict = {"kind": kind, "n": n, "index": model.core.index.record().get("spec")}
    if kind == "graph":
        with tempfile.TemporaryDirectory() as tmp:
            model.similarity_graph(k=10, output_type="table", path=Path(tmp) / "edges.parquet")
            seconds = time.perf_counter() - wall
    else:
        report = model.audit(class_column="cls", split_column="split", threshold=1.0)
        seconds = time.perf_counter() - wall
        f = report.findings
        first = f["positions"].map(lambda p: p[0])
        leaks = {frozenset(p) for p in f.loc[f["kind"] == "leak", "positions"]}
        errors = set(first[f["kind"] == "label-error"].tolist())
        out.update(
            {
                "counts": {k: v["count"] for k, v in report.kinds.items() if v["count"]},
                "leak_recall": round(len(leaks & {frozenset(map(int, c)) for c in copies}) / len(copies), 4),
                "leak_precision": round(len(leaks & {frozenset(map(int, c)) for c in copies}) / max(len(leaks), 1), 4),
                "label_error_recall": round(len(errors & set(swapped.tolist())) / len(swapped), 4),
                "label_error_precision": round(len(errors & set(swapped.tolist())) / max(len(errors), 1), 4),
                "expected_precision": {k: v["expected_precision"] for k, v in report.kinds.items() if v["count"]},
            }
        )
        del pd  # imported for the reference table's columns above
    out.update(
        {
            "seconds": round(seconds, 1),
            "cpu_per_wall": round((time.process_time() - cpu) / seconds, 2),
            "vectors_gb": round(x.nbytes / 1e9, 2),
            "peak_rss_gb": round(peak_mb() / 1e3, 2),
            "peak_before_gb": round(base / 1e3, 2),
        }
    )
    return out


def scale_part(args: argparse.Namespace, report: dict) -> None:
    results = {}
    for kind in ("graph", "audit"):
        done = subprocess.run(
            [sys.executable, __file__, "--worker", kind, str(args.scale)], capture_output=True, text=True
        )
        if done.returncode != 0:
            results[kind] = {"error": done.stderr.strip()[-3000:]}
        else:
            results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        print(kind, results[kind], flush=True)
    report["scale"] = results
    if "seconds" in results.get("graph", {}) and "seconds" in results.get("audit", {}):
        report["scale"]["audit_to_graph_time"] = round(results["audit"]["seconds"] / results["graph"]["seconds"], 2)
        report["scale"]["audit_peak_to_vectors"] = round(
            results["audit"]["peak_rss_gb"] / results["audit"]["vectors_gb"], 2
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cleanvision-python", default="/work/venv-cleanvision/bin/python")
    parser.add_argument("--fastdup-python", default="/work/venv-fastdup/bin/python")
    parser.add_argument("--models", help="lookalike's converted networks (a cache's models/ folder) to start from")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--confirmed", type=Path, default=ROOT / "benchmarks" / "audit_confirmed.json")
    parser.add_argument("--scale", type=int, default=0, help="also the N x 512 part (0: skip it)")
    parser.add_argument("--skip-photos", action="store_true")
    parser.add_argument("--rescore", action="store_true", help="score the findings saved in --output again")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "results" / "audit.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(scale_worker(args.worker[0], int(args.worker[1]))))
        return
    if args.rescore:
        report = json.loads(args.output.read_text())
        rescore(report, json.loads(args.confirmed.read_text()))
        args.output.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({name: tool["kinds"] for name, tool in report["tools"].items()}, indent=1))
        return
    report: dict = {"machine": machine_info()}
    if not args.skip_photos:
        photos_part(args, report)
    if args.scale:
        scale_part(args, report)
    report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
