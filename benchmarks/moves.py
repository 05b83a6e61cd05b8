"""What the safe move costs: an apply of N files on one file system and onto another (a tmpfs), per file, the move
before this change and the safe move side by side in one run.

    python benchmarks/moves.py -o benchmarks/results/moves.json              # 1,000 files of 1 MiB
    python benchmarks/moves.py --files 100 -o /tmp/moves-small.json          # a quick check

Four ways of moving the same N files are timed, in turns (each ``--repeats`` times), on each file system:

- ``old``: the move lookalike had (``link`` + ``unlink`` on one file system; across,
  ``shutil.copyfileobj`` into a new file and ``copystat``, then ``unlink``; no flush, no check);
- ``new``: :func:`lookalike.store.safemove.move_file` (links and flushes the folders on one file system; across, a
  copy to a temporary name, hashed while read, flushed, read back and checked, then linked into place, and
  the source unlinked only then);
- ``old-apply``: the apply lookalike had, around the old move (the decisions' files checked, the manifest
  written first and last, each file's SHA-256 checked, the references updated);
- ``apply``: :func:`lookalike.dedup.moves.apply_discards` of N discard decisions (the same steps around the safe
  move, where the bytes are judged by content), on an in-memory ``References``.

The sources are written and flushed, then dropped from the page cache (``posix_fadvise``) before each run, so
every run reads them from the disk; the decisions of ``apply`` are made before it is timed (a person made them
earlier), and the apply checks each file's content again, as a new process would. "Another file system" is a tmpfs mounted in a private mount namespace
(``unshare --mount --map-root-user``), where the whole measurement then runs; without it only one file system
is measured and the report says why.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lookalike.dedup import moves
from lookalike.dedup.decisions import Decisions
from lookalike.references.core import References
from lookalike.store.files import file_sha256, write_text_atomic
from lookalike.store.safemove import move_file
from machine import machine_info

HERE = Path(__file__).resolve().parent
WAYS = ("old", "new", "old-apply", "apply")


def old_move(source: Path, destination: Path) -> None:
    """The move lookalike had before the safe move (files.move_without_overwrite at 1cb2d5e)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        with open(source, "rb") as src, open(destination, "xb") as dst:
            shutil.copyfileobj(src, dst)
        shutil.copystat(source, destination)
    os.unlink(source)


def drop_from_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def make_files(folder: Path, count: int, size: int, seed: int) -> list[Path]:
    """``count`` files of ``size`` random bytes (each different), flushed to the disk."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"sub{i % 10}" / f"IMG_{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        with open(path, "wb") as f:
            f.write(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
            f.flush()
            os.fsync(f.fileno())
        paths.append(path)
    return paths


def decided(paths: list[Path], keeper: Path) -> Decisions:
    """A discard decision for each file (hashed when it was made, as a person's decisions are), then the files'
    times moved on by 1 ns, so that the apply checks their content again as a new process would."""
    decisions = Decisions()
    for path in paths:
        decisions.discard(path, keeper)
        found = path.stat()
        os.utime(path, ns=(found.st_atime_ns, found.st_mtime_ns + 1))
    return decisions


def references_of(paths: list[Path], keeper: Path, root: Path) -> References:
    every = [str(keeper), *map(str, paths)]
    return References(
        np.zeros((len(every), 4), np.float32),
        np.arange(len(every)),
        pd.DataFrame({"path": every}),
        "euclidean",
        method="brute_force",
        feature_column="path",
        roots=(str(root),),
    )


def apply_all(paths: list[Path], keeper: Path, root: Path, destination: Path, decisions: Decisions) -> None:
    """An apply of one discard decision per file (each a copy of ``keeper``) over in-memory references."""
    report = moves.apply_discards(references_of(paths, keeper, root), decisions, destination)
    assert len(report.moved) == len(paths) and report.stopped is None, report.summary()


def old_apply_all(paths: list[Path], keeper: Path, root: Path, destination: Path, decisions: Decisions) -> None:
    """The apply lookalike had (moves.py at 1cb2d5e): the decisions checked, the manifest written first and last,
    each file's SHA-256 checked, then the old move; the references updated."""
    references = references_of(paths, keeper, root)
    planned, _ = moves.plan(references, decisions, destination)
    destination.mkdir(parents=True)
    manifest = destination / "lookalike-moves-old.json"
    write_text_atomic(manifest, json.dumps({"version": 1, "moves": planned}, indent=1))
    moved = []
    for move in planned:
        if file_sha256(move["source"]) == move["sha256"]:
            old_move(Path(move["source"]), Path(move["destination"]))
            moved.append(move["source"])
    references.remove(np.arange(1, len(moved) + 1))
    decisions.mark_moved({m["source"]: m["destination"] for m in planned})
    write_text_atomic(manifest, json.dumps({"version": 1, "finished": True, "moves": planned}, indent=1))
    assert len(moved) == len(paths)


def run_once(way: str, work: Path, target: Path, count: int, size: int, seed: int) -> dict:
    source_root = work / f"src-{seed}"
    paths = make_files(source_root, count, size, seed)
    keeper = source_root / "keeper.jpg"
    keeper.write_bytes(b"the keeper")
    decisions = decided(paths, keeper) if way.endswith("apply") else None
    for path in paths:
        drop_from_cache(path)
    destination = target / f"dest-{seed}"
    started, cpu = time.perf_counter(), time.process_time()
    if way == "old":
        for path in paths:
            old_move(path, destination / path.relative_to(source_root))
    elif way == "new":
        destination.mkdir()
        for path in paths:
            move_file(path, destination / path.relative_to(source_root), root=destination)
    elif way == "old-apply":
        old_apply_all(paths, keeper, source_root, destination, decisions)
    else:
        apply_all(paths, keeper, source_root, destination, decisions)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    moved = [p for p in destination.rglob("IMG_*") if p.is_file()]
    assert len(moved) == count and not any(p.exists() for p in paths), way
    shutil.rmtree(source_root)
    shutil.rmtree(destination)
    return {
        "way": way,
        "seconds": round(wall, 4),
        "cpu_seconds": round(cpu, 4),
        "ms_per_file": round(1000 * wall / count, 4),
        "mb_per_s": round(count * size / wall / 1e6, 1),
    }


def measure(work: Path, other: Path | None, count: int, size: int, repeats: int) -> dict:
    """Every way on one file system (``work``) and onto ``other``, in turns; medians per way."""
    targets = {"one file system": work}
    if other is not None:
        targets["across file systems (tmpfs)"] = other
    results, seed = {}, 0
    for name, target in targets.items():
        runs = []
        for _ in range(repeats):
            for way in WAYS:
                seed += 1
                runs.append(run_once(way, work, target, count, size, seed))
                print(json.dumps({"target": name, **runs[-1]}), file=sys.stderr, flush=True)
        medians = {way: round(statistics.median(r["ms_per_file"] for r in runs if r["way"] == way), 4) for way in WAYS}
        results[name] = {
            "ms_per_file_median": medians,
            "new_over_old": round(medians["new"] / medians["old"], 2),
            "apply_over_old_apply": round(medians["apply"] / medians["old-apply"], 2),
            "runs": runs,
        }
    return results


def worker(args: argparse.Namespace) -> None:
    """Runs inside the mount namespace (or alone): the measurement, as JSON on the last line."""
    work = Path(tempfile.mkdtemp(dir=args.work_dir, prefix="moves-bench-"))
    try:
        other = Path(args.other) if args.other else None
        print(json.dumps(measure(work, other, args.files, args.file_kb * 1024, args.repeats)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-kb", type=int, default=1024, help="size of each file (a phone JPEG: 1-5 MB)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=None, help="the disk measured (default: the temp folder)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "results" / "moves.json")
    parser.add_argument("--other", help=argparse.SUPPRESS)  # the worker: where the tmpfs is mounted
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    report = {
        "machine": machine_info(),
        "files": args.files,
        "file_bytes": args.file_kb * 1024,
        "repeats": args.repeats,
        "sources": "written, flushed and dropped from the page cache before each run",
    }
    mount_point = Path(tempfile.mkdtemp(prefix="moves-tmpfs-"))
    size_mb = args.files * args.file_kb // 1024 + 64
    own = [sys.executable, str(Path(__file__).resolve()), "--worker", "--files", str(args.files)]
    own += ["--file-kb", str(args.file_kb), "--repeats", str(args.repeats)]
    own += ["--work-dir", str(args.work_dir)] if args.work_dir else []
    mount = f'mount -t tmpfs -o size={size_mb}m tmpfs "$0" && exec "$@"'
    namespaced = ["unshare", "--mount", "--map-root-user", "sh", "-c", mount, str(mount_point)]
    probe = subprocess.run([*namespaced, "true"], capture_output=True, text=True) if shutil.which("unshare") else None
    if probe is not None and probe.returncode == 0:
        command = [*namespaced, *own, "--other", str(mount_point)]
    else:
        report["across_file_systems"] = f"not measured: cannot mount a tmpfs here ({probe and probe.stderr.strip()})"
        command = own
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the measurement failed (exit {done.returncode})")
        report["results"] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        mount_point.rmdir()
    report["load_average_at_end"] = machine_info()["load_average"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in report.items() if k != "results"}
            | {
                name: {key: value for key, value in row.items() if key != "runs"}
                for name, row in report["results"].items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
