"""What checksums cost a load: a 1M x 512 float32 model loaded with them (format 2) and without (format 1).

    python benchmarks/storage_load.py -o benchmarks/results/storage_load.json

The model (``lk.create(vectors, model=None, method="brute_force")``) is saved
once in format 2; its format-1 twin is the same files hard-linked into a flat
folder with the manifest stripped of its checksums, so the two loads read the
same bytes and differ only by the checks. Each load runs warm (files in the
page cache) and cold (the files' pages dropped with ``posix_fadvise``, the
disk read again); ``lookalike info --verify`` (``storage.verify``, every byte
hashed) is timed the same way, and the save too.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import lookalike as lk
from lookalike.store import storage
from machine import machine_info

HERE = Path(__file__).resolve().parent


def drop_cache(folder: Path) -> None:
    """Evict the files of ``folder`` from the page cache (they were flushed by the save)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def format1_twin(saved: Path, twin: Path) -> None:
    """The saved model as lookalike before generations wrote it: flat, no checksums (files hard-linked)."""
    generation = saved / json.loads((saved / "CURRENT").read_text())["generation"]
    twin.mkdir()
    manifest = json.loads((generation / "manifest.json").read_text())
    for name in manifest.pop("checksums")["files"]:
        os.link(generation / name, twin / name)
    (twin / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}, indent=2))


def timed(run, folder: Path, cold: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of ``run()``."""
    gc.collect()
    if cold:
        drop_cache(folder)
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del result
    return wall, cpu


def summary(samples: list[tuple[float, float]]) -> dict:
    return {
        "wall_median_s": round(statistics.median(s[0] for s in samples), 4),
        "cpu_median_s": round(statistics.median(s[1] for s in samples), 4),
        "wall_s": [round(s[0], 4) for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=None, help="where the model is saved (default: a temp folder)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "results" / "storage_load.json")
    args = parser.parse_args()
    result: dict = {"machine": machine_info(), "count": args.count, "dim": args.dim, "repeats": args.repeats}
    vectors = np.random.default_rng(0).standard_normal((args.count, args.dim), dtype=np.float32)
    model = lk.create(vectors, model=None, method="brute_force")
    del vectors
    work = Path(tempfile.mkdtemp(dir=args.work_dir, prefix="storage-load-"))
    try:
        saved, twin = work / "format2", work / "format1"
        started = time.perf_counter()
        model.save(saved)
        result["save_s"] = round(time.perf_counter() - started, 3)
        del model
        format1_twin(saved, twin)
        result["bytes"] = sum(p.stat().st_size for p in twin.iterdir())
        runs = {
            "load_with_checksums": (lambda: lk.load_model(saved), saved),
            "load_without_checksums": (lambda: lk.load_model(twin), twin),
            "verify_every_byte": (lambda: storage.verify(saved), saved),
        }
        for cold in (False, True):
            samples: dict[str, list] = {name: [] for name in runs}
            for _ in range(args.repeats):  # alternating, so that a busier moment hits both alike
                for name, (run, folder) in runs.items():
                    samples[name].append(timed(run, folder, cold))
            result["cold" if cold else "warm"] = {name: summary(values) for name, values in samples.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine_at_end"] = machine_info()
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
