"""Does dedup find every copy and never call another capture a copy? Real photos, planted copies, hard negatives.

The folder: every neardup group (its original, its own hard edits crop/rotate/overlay, and one copy of each
kind in ``copy_kinds.KINDS``), every photo of ``landmarks/`` (many captures of each of 8 buildings: the hard
negatives) and of ``clothing/`` (garments photographed alike). ``lookalike.create`` indexes it, then
``find_duplicates`` groups it at the default threshold; a second ``find_duplicates`` with the same judge shows
what cached verdicts cost.

Reported, each with the command that reproduces it:
- per kind of planted copy: the share grouped with its original at its expected tier or a stronger one;
- false copies: rows given a copy tier whose match is a photo of another source (another neardup group, another
  landmark photo, another garment), and photos that are not a copy of their group's keeper yet are discarded;
- neardup's hard edits: ``edited`` precision and recall for crops and rotations, overlays reported;
- keepers: the share of neardup groups whose original is kept over its q30, blurred and 2x enlarged copies, per
  policy (``resolution``, ``sharpest``), the original being the newest file so the policy alone must find it; and
  over its 1.25x, 1.5x and 2x enlargements made after it, and made before it (the original touched since: its
  time says nothing);
- times: index, first dedup (cold verdicts), second dedup (warm: the same model, its candidates found already),
  a dedup of the saved model in a new process (what a second ``lookalike dedup`` starts from: verdicts read back,
  candidates searched again), peak memory; in the explorer, from a decision's POST until its group comes back from
  a GET.

    python benchmarks/copies.py --groups 500 -o benchmarks/results/copies.json
    python benchmarks/copies.py --groups 40 --side 3000 -o benchmarks/results/copies_camera.json

``--side`` enlarges every photo first (bicubic): camera-sized files, which the tier checks read reduced.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageFilter

from copy_kinds import KINDS, make_copies
from lookalike.ingest.decode import load_rgb
from machine import MemoryWatch, machine_info, write_report

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
HARD_EDITS = ("crop", "rotate", "overlay")


def _place(photo: Path, target: Path, factor: float | None) -> None:
    """Copy ``photo`` to ``target``, or write it enlarged ``factor`` times (bicubic, JPEG quality 92)."""
    if factor is None:
        shutil.copyfile(photo, target)
        return
    with Image.open(photo) as image:
        image = image.convert("RGB")
        size = (round(image.width * factor), round(image.height * factor))
        image.resize(size, Image.Resampling.BICUBIC).save(target, quality=92)


def _factor(photo: Path, side: int | None) -> float | None:
    """What enlarges ``photo`` to ``side`` pixels on its longer side (None: kept as it is)."""
    if side is None:
        return None
    with Image.open(photo) as image:
        return side / max(image.size)


def build_folder(root: Path, groups: int, side: int | None = None) -> dict[str, tuple[str, str]]:
    """Write the benchmark's folder; path -> (source, kind): the neardup group (or landmark / garment photo itself)
    and what it is (``original``, a planted kind, a hard edit, ``landmark`` or ``garment``). With ``side``, every
    photo is first enlarged to that longer side, as camera photos (neardup's own edits by their original's factor,
    so that they stay edits of it)."""
    truth: dict[str, tuple[str, str]] = {}
    for group in sorted(p for p in (DATA / "neardup").iterdir() if p.is_dir())[:groups]:
        folder = root / "neardup" / group.name
        folder.mkdir(parents=True)
        original = folder / "original.jpg"
        factor = _factor(group / "original.jpg", side)
        _place(group / "original.jpg", original, factor)
        os.utime(original, (1.6e9, 1.6e9))  # the original is the oldest file, as in a real library
        truth[str(original)] = (group.name, "original")
        for edit in HARD_EDITS:
            _place(group / f"{edit}.jpg", folder / f"{edit}.jpg", factor)
            truth[str(folder / f"{edit}.jpg")] = (group.name, edit)
        for kind, path in make_copies(original, folder / "copies").items():
            truth[str(path)] = (group.name, kind)
    for photo in sorted((DATA / "landmarks").glob("*/*.jpg")):
        target = root / "landmarks" / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        _place(photo, target, _factor(photo, side))
        truth[str(target)] = (str(photo), "landmark")
    for photo in sorted((DATA / "clothing").glob("*/*/*.jpg")):
        target = root / "clothing" / photo.parent.parent.name / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        _place(photo, target, _factor(photo, side))
        truth[str(target)] = (str(photo), "garment")
    return truth


def score(table, truth: dict[str, tuple[str, str]]) -> dict:
    """What the groups got right and wrong, against the truth of the folder."""
    from lookalike.dedup.tiers import COPY_TIERS, TIERS

    group_of = dict(zip(table["path"], table["group"], strict=True))
    tier_of = dict(zip(table["path"], table["tier"], strict=True))
    originals = {source: path for path, (source, kind) in truth.items() if kind == "original"}
    found: dict[str, list[bool]] = {kind: [] for kind in list(KINDS) + list(HARD_EDITS)}
    for path, (source, kind) in truth.items():
        if kind not in found:
            continue
        original = originals[source]
        together = path in group_of and group_of[path] == group_of.get(original)
        expected = KINDS[kind][3] if kind in KINDS else "edited"
        tier = tier_of.get(path, "similar")
        found[kind].append(together and tier in COPY_TIERS and TIERS.index(tier) <= TIERS.index(expected))
    recall = {kind: round(sum(v) / len(v), 4) for kind, v in found.items() if v}
    false_links, false_discards = [], []
    keeper_of = {g: p for p, g, k in zip(table["path"], table["group"], table["keeper"], strict=True) if k}
    for row in table.itertuples():
        source = truth[row.path][0]
        if row.tier in COPY_TIERS and isinstance(row.matched_path, str) and truth[row.matched_path][0] != source:
            false_links.append((row.path, row.matched_path, row.tier, row.reason))
        if row.action == "discard" and truth[keeper_of[row.group]][0] != source:
            false_discards.append((row.path, keeper_of[row.group], row.tier, row.reason))
    edited = table[table["tier"] == "edited"]
    hard = {edit: [] for edit in HARD_EDITS}
    for row in edited.itertuples():
        source, kind = truth[row.path]
        if kind in HARD_EDITS and isinstance(row.matched_path, str):
            hard[kind].append(truth[row.matched_path][0] == source)
    keepers = [
        truth[p][1] == "original" for g, p in keeper_of.items() if truth[p][1] in KINDS or truth[p][1] == "original"
    ]
    return {
        "recall": recall,
        "false_copy_links": len(false_links),
        "false_copy_examples": false_links[:20],
        "discarded_not_copies_of_keeper": len(false_discards),
        "false_discard_examples": false_discards[:20],
        "edited_precision_hard": {k: round(sum(v) / len(v), 4) if v else None for k, v in hard.items()},
        "original_kept": round(sum(keepers) / max(len(keepers), 1), 4),
        "groups": int(table["group"].nunique()),
    }


#: File name -> what makes the copy from its original's pixels, and the JPEG quality it is saved at.
QUALITY_COPIES = {
    "q30 re-save.jpg": (lambda im: im, 30),
    "blurred.jpg": (lambda im: im.filter(ImageFilter.GaussianBlur(1.5)), 90),
    "enlarged 2x.jpg": (lambda im: im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC), 90),
}
#: Enlargements by factors that split the original's pixels and one that does not.
ENLARGEMENTS = {
    f"enlarged {factor}.jpg": (
        lambda im, factor=factor: im.resize(
            (round(im.width * factor), round(im.height * factor)), Image.Resampling.BICUBIC
        ),
        90,
    )
    for factor in (1.25, 1.5, 2.0)
}


def keeper_folder(root: Path, groups: int, copies: dict, original_time: float) -> dict[str, str]:
    """Each neardup original with ``copies`` of it (see QUALITY_COPIES), the original's modification time set to
    ``original_time`` (the newest file: the policy alone must find it; the oldest: as a copy's source is); path ->
    group."""
    truth = {}
    for group in sorted(p for p in (DATA / "neardup").iterdir() if p.is_dir())[:groups]:
        folder = root / group.name
        folder.mkdir(parents=True)
        original = folder / "original.jpg"
        shutil.copyfile(group / "original.jpg", original)
        truth[str(original)] = group.name
        pixels = load_rgb(original)
        for name, (make, quality) in copies.items():
            make(pixels).save(folder / name, quality=quality)
            truth[str(folder / name)] = group.name
        os.utime(original, (original_time, original_time))
    return truth


def keepers_kept(model, truth: dict[str, str], policy: str) -> dict:
    """The share of groups holding an original whose keeper is that original, under ``policy``."""
    table = model.find_duplicates(keep=policy)
    keepers = table[table["keeper"]]
    originals = {p for p in truth if p.endswith("original.jpg")}
    grouped = table[table["path"].isin(originals)]
    kept = keepers["path"].isin(originals).sum()
    return {"groups": int(len(grouped)), "original_kept": round(float(kept / max(len(grouped), 1)), 4)}


def review_latency(model, scratch: Path, decisions: int = 20) -> dict:
    """From a decision's POST to its group's GET in the explorer (the model saved, its groups already shown once)."""
    import httpx

    from lookalike.server.runner import start_in_thread

    path = scratch / "photos.lookalike"
    model.save(path)
    served = start_in_thread(lk_load(path), model_path=path)
    # One client for every request, as a page keeps its connection: a new httpx client per request costs about
    # 45 ms of its own (it builds a TLS context even for http://), which the runs before 2026-12-06 measured too.
    client = httpx.Client(timeout=3600)
    try:
        api = served.url + "api"
        started = time.perf_counter()
        first = client.get(api + "/duplicates", params={"limit": decisions}).json()
        shown = time.perf_counter() - started
        times = []
        for number, group in enumerate(first["groups"][:decisions]):
            keeper, other = group["members"][0], group["members"][1]
            body = {"action": "discard", "index": other["index"], "other": keeper["index"]}
            started = time.perf_counter()
            assert client.post(api + "/decisions", json=body).status_code == 200
            reply = client.get(api + "/duplicates", params={"offset": number, "limit": 1})
            times.append(time.perf_counter() - started)
            assert reply.status_code == 200
    finally:
        client.close()
        served.stop()
    return {
        "references": len(model.labels),
        "first_groups_seconds": round(shown, 1),
        "decision_to_group_ms_median": round(1000 * float(sorted(times)[len(times) // 2]), 1),
        "decision_to_group_ms_max": round(1000 * max(times), 1),
    }


def dedup_in_new_process(path: Path) -> float:
    """Seconds ``find_duplicates`` takes on the model saved at ``path``, loaded in a process of its own."""
    script = (
        "import sys, time; import lookalike as lk; model = lk.load_model(sys.argv[1]); "
        "started = time.perf_counter(); model.find_duplicates(); print(time.perf_counter() - started)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    return round(float(done.stdout.strip().splitlines()[-1]), 1)


def lk_load(path: Path):
    import lookalike as lk

    return lk.load_model(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=500, help="neardup groups (500: all, a 12,300-photo folder)")
    parser.add_argument("--keep", default="resolution,sharpest", help="keeper policies to score")
    parser.add_argument("--side", type=int, help="enlarge every photo to this longer side first, as camera photos")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "copies.json")
    args = parser.parse_args()
    import lookalike as lk

    report: dict = {"machine": machine_info(), "groups": args.groups, "side": args.side}
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["LOOKALIKE_CACHE"] = str(Path(scratch) / "cache")
        root = Path(scratch) / "photos"
        truth = build_folder(root, args.groups, args.side)
        report["photos"] = len(truth)
        watch = MemoryWatch()
        with watch:
            started = time.perf_counter()
            model = lk.create(str(root), verbose=False)
            report["index_seconds"] = round(time.perf_counter() - started, 1)
            # The default judge keeps its verdicts in the embedding cache, as `lookalike dedup` does: the warm run
            # and the explorer below reuse them.
            started = time.perf_counter()
            table = model.find_duplicates()
            report["dedup_seconds_cold"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            model.find_duplicates()
            report["dedup_seconds_warm"] = round(time.perf_counter() - started, 1)
        report["peak_anon_gb"] = round(watch.peak_anon_gb, 2)
        report["review"] = review_latency(model, Path(scratch))
        report["dedup_seconds_warm_new_process"] = dedup_in_new_process(Path(scratch) / "photos.lookalike")
        report["cold_over_index"] = round(
            (report["index_seconds"] + report["dedup_seconds_cold"]) / report["index_seconds"], 2
        )
        report["resolution"] = score(table, truth)
        quality = keeper_folder(Path(scratch) / "quality", args.groups, QUALITY_COPIES, 2e9)
        quality_model = lk.create(str(Path(scratch) / "quality"), verbose=False)
        report["keepers_over_q30_blurred_enlarged"] = {
            policy: keepers_kept(quality_model, quality, policy) for policy in args.keep.split(",")
        }
        for name, original_time in (("", 1.6e9), ("_original_newest", 2e9)):
            folder = Path(scratch) / f"enlarged{name}"
            enlarged = keeper_folder(folder, args.groups, ENLARGEMENTS, original_time)
            enlarged_model = lk.create(str(folder), verbose=False)
            report[f"keepers_over_enlargements_1.25_1.5_2x{name}"] = {
                policy: keepers_kept(enlarged_model, enlarged, policy) for policy in args.keep.split(",")
            }
    write_report(report, args.output)


if __name__ == "__main__":
    main()
