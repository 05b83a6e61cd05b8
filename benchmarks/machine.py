"""What every benchmark records about the machine it ran on: CPU, the instruction sets that change
which kernels ONNX Runtime and faiss use (AVX2, AVX-512, VNNI), and the load average, so that a
figure is never compared with one from another kind of machine or a busier moment unawares."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

#: The repository these benchmarks belong to (commits are exported from it).
REPOSITORY = Path(__file__).resolve().parents[1]

#: CPU flags that decide speed here: int8 needs VNNI to pay off most; faiss and MLAS use AVX-512 where present;
#: the SHA-256 of saved models' checksums runs several times faster with SHA-NI.
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "sha_ni")


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return []
    present = set(line.split())
    return [flag for flag in FLAGS if flag in present]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def machine_info() -> dict:
    """The machine now: call at the start of a run (and again at its end for the load)."""
    return {
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_report(report: dict, output: Path, indent: int = 2) -> None:
    """Record the load at the end of a run in ``report``, write it to ``output`` and print all of it but the machine."""
    report["machine"]["load_average_at_end"] = machine_info()["load_average"]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=indent) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=indent))


def run_worker(command: list[str], report: dict, output: Path, **identity: Any) -> dict:
    """Run one benchmark worker process (its last stdout line is its JSON row), add the row to ``report`` with
    its wall time, and write ``report`` to ``output`` at once, so that what is measured survives a cut-off."""
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        row = {**identity, "error": out.stderr.strip().splitlines()[-1:]}
    else:
        row = json.loads(out.stdout.strip().splitlines()[-1])
    row["wall_s"] = round(time.perf_counter() - started, 1)
    report["results"].append(row)
    print(json.dumps(row), flush=True)
    report["machine"]["load_average_at_end"] = machine_info()["load_average"]
    output.write_text(json.dumps(report, indent=2) + "\n")
    return row


class MemoryWatch:
    """Peak anonymous and total resident memory of this process, sampled from ``/proc/self/status``.

    ``ru_maxrss`` counts pages of memory-mapped files too, which the kernel drops when memory is short;
    ``RssAnon`` is the memory the process itself holds. Sampled every ``interval`` seconds in a thread
    (a peak shorter than that can be missed; the kernel keeps no high-water mark of RssAnon).
    """

    def __init__(self, interval: float = 0.05):
        import threading

        self.interval = interval
        self.peak_anon_gb = self.peak_rss_gb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> dict[str, float]:
        """RssAnon, RssFile and VmRSS now, in GB."""
        values = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmRSS"):
                    values[key] = int(rest.split()[0]) * 1024 / 1e9
        return values

    def _run(self) -> None:
        while not self._stop.is_set():
            values = self.now()
            self.peak_anon_gb = max(self.peak_anon_gb, values["RssAnon"])
            self.peak_rss_gb = max(self.peak_rss_gb, values["VmRSS"])
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def record(self) -> dict[str, float]:
        return {"peak_anon_gb": round(self.peak_anon_gb, 2), "peak_rss_gb": round(self.peak_rss_gb, 2)}


def exported(revision: str, folder: Path) -> Path:
    """The source tree of ``revision`` written under ``folder`` (git archive): its ``src`` folder."""
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", revision, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"
